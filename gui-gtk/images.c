/* The images page: every image of the selected repository with its latest
 * version, size and state, listed by vms_images on a worker. */
#include "app.h"

#include <errno.h>
#include <stdlib.h>

struct images_view {
    struct app *app;
    GtkWidget *page;
    GtkLabel *title, *status;
    GtkListBox *list;
    struct repo_slot *slot;  /* shown now; owned by the app */
    GArray *rows;            /* struct image_row: the list shown */
    unsigned generation;     /* bumped per listing: a late answer for another is dropped */
};

struct list_job {
    struct job job;
    struct images_view *view;
    unsigned generation;
    GArray *rows;            /* struct image_row */
};

static void set_status(struct images_view *v, const char *text)
{
    gtk_label_set_text(v->status, text);
    gtk_widget_set_visible(GTK_WIDGET(v->status), text && *text);
}

static void clear_list(struct images_view *v) { list_box_clear(v->list); }

struct checkout_button {
    struct images_view *view;
    guint index;             /* into the view's rows */
};

static void on_checkout_clicked(GtkButton *b, gpointer data)
{
    struct checkout_button *cb = data;
    struct images_view *v = cb->view;
    if (v->rows && cb->index < v->rows->len)
        checkout_dialog(v->app, v->slot, &g_array_index(v->rows, struct image_row, cb->index));
}

static GtkWidget *checkout_button_new(struct images_view *v, guint index, const char *name)
{
    GtkWidget *b = gtk_button_new_with_mnemonic("C_heck out…");
    char *label = g_strdup_printf("Check out %s", name);
    set_accessible_name(b, label);
    g_free(label);
    gtk_widget_set_valign(b, GTK_ALIGN_CENTER);
    struct checkout_button *cb = g_new(struct checkout_button, 1);
    *cb = (struct checkout_button){.view = v, .index = index};
    g_signal_connect_data(b, "clicked", G_CALLBACK(on_checkout_clicked), cb,
                          (GClosureNotify)(void (*)(void))g_free, 0);
    return b;
}

static GtkWidget *image_row_widget(struct images_view *v, guint index)
{
    const struct image_row *r = &g_array_index(v->rows, struct image_row, index);
    bool downloading = checkout_downloading(v->app, v->slot, r->name);
    enum image_state st = image_state(r, &v->app->me, repo_slot_remote(v->slot), downloading);
    char *name = quoted_name(r->name), *summary = image_summary_text(r, st);
    GtkWidget *row = adw_action_row_new();
    adw_preferences_row_set_use_markup(ADW_PREFERENCES_ROW(row), FALSE);
    adw_preferences_row_set_title(ADW_PREFERENCES_ROW(row), name ? name : "?");
    adw_action_row_set_subtitle(ADW_ACTION_ROW(row), summary ? summary : "");
    set_accessible_name(row, name ? name : "?");
    adw_action_row_add_suffix(ADW_ACTION_ROW(row), checkout_button_new(v, index, name ? name : "?"));
    adw_action_row_add_suffix(ADW_ACTION_ROW(row), history_button_new(v->app, v->slot, r->name));
    if (st == IMAGE_CHECKED_OUT) {
        adw_action_row_add_suffix(ADW_ACTION_ROW(row), checkin_button_new(v->app, v->slot, r));
        adw_action_row_add_suffix(ADW_ACTION_ROW(row), release_button_new(v->app, v->slot, r));
    }
    free(name);
    free(summary);
    return row;
}

/* ---- the listing, on a worker ---- */

static int collect_image(void *ctx, const struct vms_image_info *info)
{
    struct list_job *lj = ctx;
    struct image_row r;
    if (image_row_copy(info, &r))
        return -ENOMEM;
    g_array_append_val(lj->rows, r);
    return 0;
}

static int run_listing(struct job *j, vms_client *c, fsp_error *err)
{
    struct list_job *lj = j->data;
    return vms_images(c, collect_image, lj, err);
}

static void rows_free(GArray *rows)
{
    for (guint i = 0; rows && i < rows->len; i++)
        image_row_clear(&g_array_index(rows, struct image_row, i));
    if (rows)
        g_array_free(rows, TRUE);
}

static void append_rows(struct images_view *v)
{
    for (guint i = 0; i < v->rows->len; i++)
        gtk_list_box_append(v->list, image_row_widget(v, i));
}

/* Takes ROWS over. */
static void show_rows(struct images_view *v, GArray *rows)
{
    clear_list(v);
    rows_free(v->rows);
    v->rows = rows;
    append_rows(v);
    set_status(v, rows->len ? "" : "This repository holds no image yet.");
}

/* The rows' states change with the window's own checkout, which keeps the
 * slot busy: the list is drawn again from what it holds, not listed anew. */
void images_view_restate(struct images_view *v)
{
    if (!v->rows)
        return;
    clear_list(v);
    append_rows(v);
}

static void list_job_free(struct list_job *lj)
{
    rows_free(lj->rows);
    g_free(lj);
}

static void listing_done(struct job *j, int rc, const fsp_error *err)
{
    struct list_job *lj = j->data;
    struct images_view *v = lj->view;
    if (v && lj->generation == v->generation) {
        if (rc) {
            char *text = error_text(err);
            set_status(v, text ? text : "out of memory"); /* shown there only */
            free(text);
        } else {
            show_rows(v, lj->rows);
            lj->rows = NULL;
        }
    }
    list_job_free(lj);
}

/* false when the slot is busy: nothing changes, its own answer comes */
static bool start_listing(struct images_view *v)
{
    struct list_job *lj = g_new0(struct list_job, 1);
    lj->view = v;
    lj->rows = g_array_new(FALSE, FALSE, sizeof(struct image_row));
    lj->job = (struct job){.run = run_listing, .done = listing_done, .data = lj};
    /* started first: a busy slot keeps the list and the listing it runs */
    if (!job_start(v->slot, &lj->job)) {
        list_job_free(lj);
        return false;
    }
    lj->generation = ++v->generation;
    clear_list(v);
    rows_free(v->rows);
    v->rows = NULL;
    set_status(v, "Listing the images…");
    return true;
}

void images_view_show(struct images_view *v, struct repo_slot *slot)
{
    char *title = quoted_name(repo_slot_url(slot));
    v->slot = slot;
    gtk_label_set_text(v->title, title ? title : "?");
    free(title);
    if (start_listing(v))
        return;
    v->generation++; /* another repository's rows, or its listing, are not this one's */
    clear_list(v);
    rows_free(v->rows);
    v->rows = NULL;
    set_status(v, BUSY_TEXT);
}

void images_view_refresh(struct images_view *v)
{
    if (v->slot && !start_listing(v))
        app_toast(v->app, BUSY_TEXT);
}

static void on_refresh(GtkButton *b, gpointer data) { images_view_refresh(data); }

/* ---- the page ---- */

static GtkWidget *build_top(struct images_view *v)
{
    GtkWidget *top = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 6);
    v->title = GTK_LABEL(gtk_label_new(""));
    gtk_label_set_xalign(v->title, 0);
    gtk_label_set_ellipsize(v->title, PANGO_ELLIPSIZE_MIDDLE);
    gtk_widget_add_css_class(GTK_WIDGET(v->title), "title-2");
    gtk_widget_set_hexpand(GTK_WIDGET(v->title), TRUE);
    GtkWidget *refresh = gtk_button_new_from_icon_name("view-refresh-symbolic");
    gtk_widget_set_tooltip_text(refresh, "List the images again");
    set_accessible_name(refresh, "Refresh images");
    g_signal_connect(refresh, "clicked", G_CALLBACK(on_refresh), v);
    gtk_box_append(GTK_BOX(top), GTK_WIDGET(v->title));
    gtk_box_append(GTK_BOX(top), refresh);
    return top;
}

struct images_view *images_view_new(struct app *a)
{
    struct images_view *v = g_new0(struct images_view, 1);
    v->app = a;
    v->page = gtk_box_new(GTK_ORIENTATION_VERTICAL, 12);
    g_object_set(v->page, "margin-start", 18, "margin-end", 18, "margin-top", 18,
                 "margin-bottom", 18, NULL);
    v->status = GTK_LABEL(gtk_label_new(""));
    gtk_label_set_wrap(v->status, TRUE);
    gtk_label_set_xalign(v->status, 0);
    v->list = GTK_LIST_BOX(gtk_list_box_new());
    gtk_list_box_set_selection_mode(v->list, GTK_SELECTION_NONE);
    gtk_widget_add_css_class(GTK_WIDGET(v->list), "boxed-list");
    set_accessible_name(GTK_WIDGET(v->list), "Images");
    GtkWidget *scroll = gtk_scrolled_window_new();
    gtk_scrolled_window_set_child(GTK_SCROLLED_WINDOW(scroll), GTK_WIDGET(v->list));
    gtk_widget_set_vexpand(scroll, TRUE);
    gtk_box_append(GTK_BOX(v->page), build_top(v));
    gtk_box_append(GTK_BOX(v->page), GTK_WIDGET(v->status));
    gtk_box_append(GTK_BOX(v->page), scroll);
    return v;
}

GtkWidget *images_view_widget(struct images_view *v) { return v->page; }

/* Jobs still queued keep a pointer to the view: they end before this runs
 * (each holds the application), so none is left. */
void images_view_free(struct images_view *v)
{
    rows_free(v->rows);
    g_free(v);
}
