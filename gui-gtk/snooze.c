/* Downloads ahead: the header bar's button that pauses the prefetch timer's
 * work (vms_prefetch_snooze) for an hour or for the working day, or lets it
 * go on.  The snooze belongs to the cache, not to a repository, so the
 * window reads and writes it through a handle of its own that never opens
 * one: the slots' handles may be busy on their workers meanwhile. */
#include "app.h"

#include <stdlib.h>
#include <time.h>

struct snooze {
    struct app *app;
    GtkMenuButton *button;
    GtkLabel *state;
};

static int with_cache_handle(struct app *a, int64_t until, int64_t *now_until, fsp_error *err)
{
    struct vms_client_opts o = {.user = a->me.user, .host = a->me.host};
    vms_client *cl = NULL;
    int rc = vms_client_open(".", &o, &cl, err); /* "." is never opened */
    if (!rc && until >= 0)
        rc = vms_prefetch_snooze(cl, until, err);
    if (!rc)
        *now_until = vms_prefetch_snoozed_until(cl);
    vms_client_close(cl);
    return rc;
}

static void show_until(struct snooze *z, int64_t until, bool toast)
{
    char *text = snooze_state_text(until, (int64_t)time(NULL));
    gtk_label_set_text(z->state, text ? text : "out of memory");
    if (toast)
        app_toast(z->app, text ? text : "out of memory");
    free(text);
}

/* until < 0 reads the state; otherwise it sets it first (0: go on now) */
static void apply(struct snooze *z, int64_t until, bool toast)
{
    fsp_error err = {0};
    int64_t now_until = 0;
    if (with_cache_handle(z->app, until, &now_until, &err))
        app_toast_error(z->app, &err);
    else
        show_until(z, now_until, toast);
}

static void snooze_for(struct snooze *z, int64_t seconds)
{
    gtk_menu_button_popdown(z->button);
    apply(z, seconds ? (int64_t)time(NULL) + seconds : 0, true);
}

static void on_hour(GtkButton *b, gpointer data) { snooze_for(data, 3600); }
static void on_day(GtkButton *b, gpointer data) { snooze_for(data, 8 * 3600); }
static void on_resume(GtkButton *b, gpointer data) { snooze_for(data, 0); }
static void on_popover_shown(GtkWidget *w, gpointer data) { apply(data, -1, false); }

static void add_button(GtkWidget *box, const char *label, GCallback cb, struct snooze *z)
{
    GtkWidget *b = gtk_button_new_with_label(label);
    gtk_widget_add_css_class(b, "flat");
    g_signal_connect(b, "clicked", cb, z);
    gtk_box_append(GTK_BOX(box), b);
}

GtkWidget *snooze_button_new(struct app *a)
{
    struct snooze *z = g_new0(struct snooze, 1);
    z->app = a;
    z->button = GTK_MENU_BUTTON(gtk_menu_button_new());
    gtk_menu_button_set_icon_name(z->button, "media-playback-pause-symbolic");
    gtk_widget_set_tooltip_text(GTK_WIDGET(z->button), "Downloads ahead of checkouts");
    set_accessible_name(GTK_WIDGET(z->button), "Downloads ahead");
    GtkWidget *box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 6);
    z->state = wrapped_label(box);
    gtk_label_set_max_width_chars(z->state, 36);
    add_button(box, "Pause for 1 hour", G_CALLBACK(on_hour), z);
    add_button(box, "Pause for 8 hours", G_CALLBACK(on_day), z);
    add_button(box, "Go on now", G_CALLBACK(on_resume), z);
    GtkWidget *popover = gtk_popover_new();
    gtk_popover_set_child(GTK_POPOVER(popover), box);
    g_signal_connect(popover, "show", G_CALLBACK(on_popover_shown), z);
    gtk_menu_button_set_popover(z->button, popover);
    g_object_set_data_full(G_OBJECT(z->button), "snooze", z, g_free);
    return GTK_WIDGET(z->button);
}
