/* What the window's parts share: the application's state, on the main loop
 * only (workers see their own job and slot, never this). */
#ifndef VMSYNC_GTK_APP_H
#define VMSYNC_GTK_APP_H

#include "vmsync.h"
#include "window.h"
#include "worker.h"

struct images_view;
struct checkout_panel;

struct app {
    AdwApplication *gtk;
    const char *initial_repo;
    AdwApplicationWindow *window; /* NULL once destroyed */
    AdwToastOverlay *toasts;
    AdwToast *last_toast;    /* a reference, to dismiss it when another comes */
    gint64 last_toast_at;    /* when it was added (g_get_monotonic_time) */
    char *next_toast;        /* the newest text waiting for last_toast to settle */
    guint next_toast_timeout, next_toast_source;
    GtkListBox *repo_list;   /* one row per cfg->repos entry, in order */
    GtkStack *content;       /* "empty" or "images" */
    struct images_view *images;
    struct checkout_panel *checkout; /* the one checkout the window runs at a time */
    struct vms_config *cfg;
    char cfg_path[4096];
    char *cfg_broken;        /* the load's error: the file is not saved over */
    struct who me;
    GPtrArray *slots;        /* struct repo_slot *, parallel to cfg->repos */
};

/* A toast with TEXT as it is (not markup); an error's, in the CLI's words,
 * stays until dismissed or replaced. */
void app_toast(struct app *a, const char *text);
void app_toast_error(struct app *a, const fsp_error *err);

/* Adds the repository at URL (a folder, made absolute, or an ssh:// URL) to
 * the configuration, saves it, and shows it selected.  0 or a negative
 * errno with ERR filled. */
int app_add_repo(struct app *a, const char *url, const char *identity, fsp_error *err);
/* Saves the settings, unless the file failed to load: then it refuses,
 * naming the load's error, and the settings live in memory only. */
int app_save_settings(struct app *a, fsp_error *err);
/* The dialog that asks for a repository and adds it. */
void repo_add_dialog(struct app *a);

/* The images page (images.c). */
struct images_view *images_view_new(struct app *a);
GtkWidget *images_view_widget(struct images_view *v);
/* Shows SLOT's images, listing them anew on a worker. */
void images_view_show(struct images_view *v, struct repo_slot *slot);
void images_view_free(struct images_view *v);
/* Lists the shown repository's images again (after a checkout). */
void images_view_refresh(struct images_view *v);

/* The header bar's "Downloads ahead" button: pause the prefetch timer's
 * work for a while, or let it go on (snooze.c). */
GtkWidget *snooze_button_new(struct app *a);

/* Checking out (checkout.c): the dialog that asks what and where, the plan,
 * the run with its progress panel at the bottom of the window, and cancel. */
struct checkout_panel *checkout_panel_new(struct app *a);
GtkWidget *checkout_panel_widget(struct checkout_panel *p);
void checkout_panel_free(struct checkout_panel *p);
void checkout_dialog(struct app *a, struct repo_slot *slot, const struct image_row *image);

/* decisions: while the window's checkout runs, the image's row says "being
 * downloaded".  Whether that checkout is fetching NAME from SLOT now
 * (checkout.c): */
bool checkout_downloading(const struct app *a, const struct repo_slot *slot, const char *name);
/* Draws the rows again with their states, without listing anew (images.c). */
void images_view_restate(struct images_view *v);
/* Checking in (checkin.c): the row's button opens the dialog (the file, what
 * changed since the checkout, a message, the send, and a refusal in plain
 * words with safe options).  checkin_remember records in the settings the
 * file a checkout from the window wrote, for the dialog to offer; a failure
 * is a toast. */
GtkWidget *checkin_button_new(struct app *a, struct repo_slot *slot,
                              const struct image_row *image);
void checkin_remember(struct app *a, struct repo_slot *slot, const char *image, const char *file);
/* History and releasing (history.c, release.c): the versions of an image
 * with the files changed between any two, and giving back a lease held
 * here.  Each makes the suffix button of an image's row. */
void history_dialog(struct app *a, struct repo_slot *slot, const char *name);
GtkWidget *history_button_new(struct app *a, struct repo_slot *slot, const char *name);
GtkWidget *release_button_new(struct app *a, struct repo_slot *slot, const struct image_row *r);

#endif
