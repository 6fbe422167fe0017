/* The window: a header bar, and the repositories' view below it. */
#include "window.h"

#include <glib-unix.h>

#define APP_ID "org.vmsync.Gtk"

struct app {
    AdwApplication *gtk;
    const char *initial_repo;
    AdwApplicationWindow *window;
    AdwToastOverlay *toasts;
};

/* Every control gets an accessible name: screen readers read it, and the
 * tests find controls by it. */
void set_accessible_name(GtkWidget *w, const char *name)
{
    gtk_accessible_update_property(GTK_ACCESSIBLE(w), GTK_ACCESSIBLE_PROPERTY_LABEL, name, -1);
}

static GtkWidget *build_content(struct app *a)
{
    GtkWidget *box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 0);
    GtkWidget *header = adw_header_bar_new();
    GtkWidget *status = adw_status_page_new();
    adw_status_page_set_title(ADW_STATUS_PAGE(status), "No repository yet");
    adw_status_page_set_description(ADW_STATUS_PAGE(status),
                                    "Add a repository to see its images.");
    gtk_widget_set_vexpand(status, TRUE);
    gtk_box_append(GTK_BOX(box), header);
    gtk_box_append(GTK_BOX(box), status);
    a->toasts = ADW_TOAST_OVERLAY(adw_toast_overlay_new());
    adw_toast_overlay_set_child(a->toasts, box);
    return GTK_WIDGET(a->toasts);
}

static void on_activate(GApplication *gapp, gpointer data)
{
    struct app *a = data;
    if (a->window) {
        gtk_window_present(GTK_WINDOW(a->window));
        return;
    }
    a->window = ADW_APPLICATION_WINDOW(adw_application_window_new(GTK_APPLICATION(gapp)));
    gtk_window_set_title(GTK_WINDOW(a->window), "vmsync");
    gtk_window_set_default_size(GTK_WINDOW(a->window), 820, 560);
    adw_application_window_set_content(a->window, build_content(a));
    gtk_window_present(GTK_WINDOW(a->window));
}

/* SIGTERM and SIGINT close the window as its close button does, so that
 * the process always ends through the same path. */
static gboolean on_quit_signal(gpointer data)
{
    struct app *a = data;
    g_application_quit(G_APPLICATION(a->gtk));
    return G_SOURCE_CONTINUE;
}

int app_run(const char *repo)
{
    struct app a = {.initial_repo = repo};
    /* NON_UNIQUE: each process is its own instance, so that tests (and two
     * users' sessions) never hand their window to another process. */
    a.gtk = adw_application_new(APP_ID, G_APPLICATION_NON_UNIQUE);
    g_signal_connect(a.gtk, "activate", G_CALLBACK(on_activate), &a);
    guint term = g_unix_signal_add(SIGTERM, on_quit_signal, &a);
    guint intr = g_unix_signal_add(SIGINT, on_quit_signal, &a);
    int status = g_application_run(G_APPLICATION(a.gtk), 0, NULL);
    g_source_remove(term);
    g_source_remove(intr);
    g_object_unref(a.gtk);
    return status;
}
