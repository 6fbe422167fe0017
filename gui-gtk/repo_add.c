/* Adding a repository: a folder (typed, or chosen in the file chooser), an
 * ssh:// URL with an optional key file, or an https:// one. */
#include "app.h"

#include <string.h>

struct add_dialog {
    struct app *app;
    GtkEntry *location, *identity;
    GtkFileChooserNative *chooser; /* while choosing a folder */
};

static GtkEntry *labelled_entry(GtkWidget *box, const char *label, const char *name,
                                const char *hint)
{
    GtkWidget *e = gtk_entry_new();
    gtk_entry_set_placeholder_text(GTK_ENTRY(e), hint);
    field_label(box, label, e, name);
    gtk_box_append(GTK_BOX(box), e);
    /* Enter in either field presses Add */
    gtk_entry_set_activates_default(GTK_ENTRY(e), TRUE);
    return GTK_ENTRY(e);
}

static void on_folder_chosen(GtkNativeDialog *chooser, int response, gpointer data)
{
    struct add_dialog *d = data;
    GFile *f = response == GTK_RESPONSE_ACCEPT
                   ? gtk_file_chooser_get_file(GTK_FILE_CHOOSER(chooser)) : NULL;
    char *path = f ? g_file_get_path(f) : NULL;
    if (path)
        gtk_editable_set_text(GTK_EDITABLE(d->location), path);
    g_free(path);
    if (f)
        g_object_unref(f);
    g_clear_object(&d->chooser);
}

static void on_choose_clicked(GtkButton *b, gpointer data)
{
    struct add_dialog *d = data;
    if (d->chooser)
        return;
    GtkWindow *parent = GTK_WINDOW(gtk_widget_get_root(GTK_WIDGET(b)));
    d->chooser = gtk_file_chooser_native_new("Repository folder", parent,
                                             GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER, "_Choose",
                                             "_Cancel");
    g_signal_connect(d->chooser, "response", G_CALLBACK(on_folder_chosen), d);
    gtk_native_dialog_show(GTK_NATIVE_DIALOG(d->chooser));
}

static GtkWidget *build_fields(struct add_dialog *d)
{
    GtkWidget *box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 6);
    d->location = labelled_entry(box, "_Folder, ssh:// or https:// URL", "Repository location",
                                 "/srv/vmsync, ssh://user@host/path or https://host/path");
    GtkWidget *choose = gtk_button_new_with_mnemonic("C_hoose a folder…");
    set_accessible_name(choose, "Choose a folder");
    g_signal_connect(choose, "clicked", G_CALLBACK(on_choose_clicked), d);
    gtk_box_append(GTK_BOX(box), choose);
    d->identity = labelled_entry(box, "_Key file (ssh:// only, optional)", "Key file",
                                 "~/.ssh/id_ed25519");
    return box;
}

static void on_response(AdwMessageDialog *dlg, const char *response, gpointer data)
{
    struct add_dialog *d = data;
    fsp_error err = {0};
    if (!strcmp(response, "add")) {
        const char *url = gtk_editable_get_text(GTK_EDITABLE(d->location));
        const char *key = gtk_editable_get_text(GTK_EDITABLE(d->identity));
        if (app_add_repo(d->app, url, key, &err))
            app_toast_error(d->app, &err);
    }
}

static void add_dialog_free(gpointer data, GClosure *unused)
{
    struct add_dialog *d = data;
    if (d->chooser)
        gtk_native_dialog_destroy(GTK_NATIVE_DIALOG(d->chooser));
    g_clear_object(&d->chooser);
    g_free(d);
}

void repo_add_dialog(struct app *a)
{
    if (!a->window)
        return;
    struct add_dialog *d = g_new0(struct add_dialog, 1);
    d->app = a;
    GtkWidget *w = adw_message_dialog_new(GTK_WINDOW(a->window), "Add a repository",
                                          "A folder holding a repository, an ssh:// URL "
                                          "served by vmsync-agent, or an https:// URL of a "
                                          "tree that vmsync publish wrote (read-only).");
    AdwMessageDialog *dlg = ADW_MESSAGE_DIALOG(w);
    adw_message_dialog_set_extra_child(dlg, build_fields(d));
    adw_message_dialog_add_responses(dlg, "cancel", "_Cancel", "add", "_Add", NULL);
    adw_message_dialog_set_response_appearance(dlg, "add", ADW_RESPONSE_SUGGESTED);
    adw_message_dialog_set_default_response(dlg, "add");
    adw_message_dialog_set_close_response(dlg, "cancel");
    /* D goes with the dialog, whatever closes it (its parent, say) */
    g_signal_connect_data(dlg, "response", G_CALLBACK(on_response), d, add_dialog_free, 0);
    gtk_window_present(GTK_WINDOW(w));
}
