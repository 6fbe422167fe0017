/* Releasing a lease this window's user and host hold: a confirmation in
 * plain words, then vms_release on a worker, a toast, and the list again.
 * Only rows checked out here get the button; the engine refuses another
 * holder's lease anyway. */
#include "app.h"

#include <stdlib.h>
#include <string.h>

struct release {
    struct job job;
    struct app *app;
    struct repo_slot *slot;
    char *name;
    uint32_t version;        /* the version checked out, for the question */
    bool released;
};

static void release_free(gpointer data, GClosure *unused)
{
    struct release *r = data;
    g_free(r->name);
    g_free(r);
}

static int run_release(struct job *j, vms_client *c, fsp_error *err)
{
    struct release *r = j->data;
    return vms_release(c, r->name, &r->released, err);
}

static void release_done(struct job *j, int rc, const fsp_error *err)
{
    struct release *r = j->data;
    if (rc)
        app_toast_error(r->app, err);
    else {
        char *text = release_done_text(r->name, r->released);
        app_toast(r->app, text ? text : "out of memory");
        free(text);
    }
    images_view_refresh(r->app->images);
    release_free(r, NULL);
}

static struct release *release_copy(const struct release *r)
{
    struct release *c = g_new0(struct release, 1);
    *c = (struct release){.app = r->app, .slot = r->slot, .name = g_strdup(r->name),
                          .version = r->version};
    return c;
}

/* R is the dialog's (freed with it, whatever closes it); the job gets its
 * own copy. */
static void on_answer(AdwMessageDialog *dlg, const char *response, gpointer data)
{
    if (strcmp(response, "release"))
        return;
    struct release *r = release_copy(data);
    r->job = (struct job){.run = run_release, .done = release_done, .data = r};
    if (!job_start(r->slot, &r->job)) {
        app_toast(r->app, BUSY_TEXT);
        release_free(r, NULL);
    }
}

/* ASKED is the button's: the dialog keeps a copy, as the row may be listed
 * again while it is open. */
static void release_dialog(const struct release *asked)
{
    char *heading = release_question_text(asked->name);
    char *body = release_body_text(asked->name, asked->version);
    GtkWidget *w = adw_message_dialog_new(GTK_WINDOW(asked->app->window), heading ? heading : "?",
                                          body ? body : "?");
    AdwMessageDialog *dlg = ADW_MESSAGE_DIALOG(w);
    adw_message_dialog_add_responses(dlg, "cancel", "_Cancel", "release", "_Release", NULL);
    adw_message_dialog_set_response_appearance(dlg, "release", ADW_RESPONSE_DESTRUCTIVE);
    /* Enter keeps the lease: giving it back is the step to take on purpose */
    adw_message_dialog_set_default_response(dlg, "cancel");
    adw_message_dialog_set_close_response(dlg, "cancel");
    g_signal_connect_data(dlg, "response", G_CALLBACK(on_answer), release_copy(asked),
                          release_free, 0);
    gtk_window_present(GTK_WINDOW(w));
    free(heading);
    free(body);
}

/* ---- the button on a row checked out here ---- */

static void on_release_clicked(GtkButton *b, gpointer data) { release_dialog(data); }

GtkWidget *release_button_new(struct app *a, struct repo_slot *slot, const struct image_row *r)
{
    GtkWidget *b = gtk_button_new_with_label("Release");
    char *shown = quoted_name(r->name), *label = g_strdup_printf("Release %s", shown ? shown : "?");
    set_accessible_name(b, label);
    gtk_widget_set_valign(b, GTK_ALIGN_CENTER);
    struct release asked = {.app = a, .slot = slot, .name = r->name, .version = r->lease_version};
    g_signal_connect_data(b, "clicked", G_CALLBACK(on_release_clicked), release_copy(&asked),
                          release_free, 0);
    g_free(label);
    free(shown);
    return b;
}
