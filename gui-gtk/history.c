/* The history of an image: its versions (vms_log on a worker) with who, when
 * and the message, and the files changed between any two of them (both
 * manifests fetched into a private temporary folder, then vms_diff, on a
 * worker too).  The window stays usable, and may be closed, while either
 * runs. */
#include "app.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


struct history {
    struct app *app;
    struct repo_slot *slot;  /* owned by the app, which outlives every job */
    char *name;
    GtkWindow *window;
    GtkLabel *status, *summary;
    GtkListBox *versions, *changes;
    GtkSpinButton *from, *to;
    GtkWidget *compare;
    unsigned jobs;           /* started and not yet done: each keeps this alive */
    bool closed;             /* the window is gone: a late answer touches no widget */
};

struct log_job {
    struct job job;
    struct history *h;
    GArray *versions;        /* struct vms_version, oldest first */
    GArray *signatures;      /* enum vms_signature_state of each, judged on the worker */
};

struct compare_job {
    struct job job;
    struct history *h;
    char *name;
    uint32_t from, to;
    struct diff_list diff;
};

static void history_free(struct history *h)
{
    g_free(h->name);
    g_free(h);
}

/* The end of a job: the last one out frees a closed history.  True when the
 * window is still there to show the answer. */
static bool job_ended(struct history *h)
{
    h->jobs--;
    if (!h->closed)
        return true;
    if (!h->jobs)
        history_free(h);
    return false;
}

static bool start_job(struct history *h, struct job *j)
{
    if (!job_start(h->slot, j)) {
        gtk_label_set_text(h->status, BUSY_TEXT);
        return false;
    }
    h->jobs++;
    return true;
}

static void set_label(GtkLabel *l, char *text)
{
    gtk_label_set_text(l, text ? text : "out of memory");
    free(text);
}

/* ---- the versions ---- */

static GtkWidget *signature_label_new(enum vms_signature_state state, const struct vms_version *v)
{
    char *text = signature_text(state, v);
    GtkWidget *l = gtk_label_new(text ? text : "out of memory");
    gtk_label_set_selectable(GTK_LABEL(l), TRUE); /* the fingerprint, to compare */
    gtk_label_set_wrap(GTK_LABEL(l), TRUE);
    gtk_label_set_wrap_mode(GTK_LABEL(l), PANGO_WRAP_WORD_CHAR);
    gtk_label_set_max_width_chars(GTK_LABEL(l), 30);
    gtk_label_set_xalign(GTK_LABEL(l), 1);
    if (state == VMS_SIGNATURE_BAD)
        gtk_widget_add_css_class(l, "error");
    else if (state == VMS_SIGNATURE_TRUSTED)
        gtk_widget_add_css_class(l, "success");
    free(text);
    return l;
}

static GtkWidget *version_row_new(const struct vms_version *v, enum vms_signature_state state)
{
    GtkWidget *row = adw_action_row_new();
    char *title = version_title_text(v), *message = version_message_text(v);
    char *name = g_strdup_printf("Version %u", v->number);
    adw_preferences_row_set_use_markup(ADW_PREFERENCES_ROW(row), FALSE);
    adw_preferences_row_set_title(ADW_PREFERENCES_ROW(row), title ? title : "?");
    adw_action_row_set_subtitle(ADW_ACTION_ROW(row), message ? message : "");
    adw_action_row_add_suffix(ADW_ACTION_ROW(row), signature_label_new(state, v));
    set_accessible_name(row, name);
    g_free(name);
    free(title);
    free(message);
    return row;
}

/* Newest first; From and To default to the one before the latest and the
 * latest. */
static void show_versions(struct history *h, const GArray *versions, const GArray *signatures)
{
    for (guint i = versions->len; i-- > 0;) {
        const struct vms_version *v = &g_array_index(versions, struct vms_version, i);
        enum vms_signature_state state = g_array_index(signatures, enum vms_signature_state, i);
        gtk_list_box_append(h->versions, version_row_new(v, state));
    }
    uint32_t latest = versions->len
                          ? g_array_index(versions, struct vms_version, versions->len - 1).number
                          : 0;
    gtk_spin_button_set_range(h->from, 1, latest ? latest : 1);
    gtk_spin_button_set_range(h->to, 1, latest ? latest : 1);
    gtk_spin_button_set_value(h->from, latest > 1 ? latest - 1 : 1);
    gtk_spin_button_set_value(h->to, latest ? latest : 1);
    gtk_widget_set_sensitive(h->compare, latest > 0);
    gtk_label_set_text(h->status, latest ? "" : "This image has no version.");
}

struct collecting {
    struct log_job *lj;
    const vms_client *client;
};

/* Each signature is judged by the handle's trusted keys, on the worker:
 * the check is a public-key verification per version. */
static int collect_version(void *ctx, const struct vms_version *v)
{
    struct collecting *k = ctx;
    enum vms_signature_state state = vms_signature_state(k->client, v);
    g_array_append_val(k->lj->versions, *v);
    g_array_append_val(k->lj->signatures, state);
    return 0;
}

static int run_log(struct job *j, vms_client *c, fsp_error *err)
{
    struct collecting k = {.lj = j->data, .client = c};
    return vms_log(c, k.lj->h->name, collect_version, &k, err);
}

static void log_job_free(struct log_job *lj)
{
    g_array_free(lj->versions, TRUE);
    g_array_free(lj->signatures, TRUE);
    g_free(lj);
}

static void log_done(struct job *j, int rc, const fsp_error *err)
{
    struct log_job *lj = j->data;
    struct history *h = lj->h;
    if (job_ended(h)) {
        if (rc)
            set_label(h->status, error_text(err));
        else
            show_versions(h, lj->versions, lj->signatures);
    }
    log_job_free(lj);
}

static void start_log(struct history *h)
{
    struct log_job *lj = g_new0(struct log_job, 1);
    lj->h = h;
    lj->versions = g_array_new(FALSE, FALSE, sizeof(struct vms_version));
    lj->signatures = g_array_new(FALSE, FALSE, sizeof(enum vms_signature_state));
    lj->job = (struct job){.run = run_log, .done = log_done, .data = lj};
    gtk_label_set_text(h->status, "Reading the history…");
    if (!start_job(h, &lj->job))
        log_job_free(lj);
}

/* ---- comparing two versions, on a worker ---- */

static int fetch_and_diff(struct compare_job *cj, vms_client *c, const char *dir,
                          fsp_error *err)
{
    char *a = g_build_filename(dir, "from.manifest", NULL);
    char *b = g_build_filename(dir, "to.manifest", NULL);
    int rc = vms_fetch_manifest(c, cj->name, cj->from, a, err);
    if (!rc)
        rc = vms_fetch_manifest(c, cj->name, cj->to, b, err);
    if (!rc)
        rc = vms_diff(a, b, diff_list_add, &cj->diff, err);
    if (rc == -ENOMEM && !err->msg[0]) /* our callback's, which has no ERR to fill */
        rc = fsp_fail(err, FSP_EK_NOMEM, rc, "out of memory");
    g_free(a);
    g_free(b);
    return rc;
}

static int run_compare(struct job *j, vms_client *c, fsp_error *err)
{
    struct compare_job *cj = j->data;
    char *dir = private_dir_make("vmsync-history", err);
    if (!dir)
        return err->code;
    int rc = fetch_and_diff(cj, c, dir, err);
    private_dir_remove(dir);
    return rc;
}

/* ---- comparing: the answer, on the main loop ---- */

static void append_change_label(struct history *h, char *text)
{
    GtkWidget *l = gtk_label_new(text ? text : "out of memory");
    gtk_label_set_xalign(GTK_LABEL(l), 0);
    gtk_label_set_selectable(GTK_LABEL(l), TRUE);
    gtk_label_set_wrap(GTK_LABEL(l), TRUE);
    gtk_label_set_wrap_mode(GTK_LABEL(l), PANGO_WRAP_WORD_CHAR);
    g_object_set(l, "margin-start", 12, "margin-end", 12, "margin-top", 4, "margin-bottom", 4,
                 NULL);
    gtk_list_box_append(h->changes, l);
    free(text);
}

static void show_changes(struct history *h, const struct compare_job *cj)
{
    set_label(h->summary, diff_counts_text(&cj->diff, cj->from, cj->to));
    for (size_t i = 0; i < cj->diff.n && i < CHANGES_SHOWN; i++)
        append_change_label(h, diff_entry_text(&cj->diff.items[i]));
    if (cj->diff.n > CHANGES_SHOWN)
        append_change_label(h, diff_more_text(&cj->diff));
}

static void compare_done(struct job *j, int rc, const fsp_error *err)
{
    struct compare_job *cj = j->data;
    struct history *h = cj->h;
    if (job_ended(h)) {
        gtk_widget_set_sensitive(h->compare, TRUE);
        if (rc)
            set_label(h->summary, error_text(err));
        else
            show_changes(h, cj);
    }
    diff_list_clear(&cj->diff);
    g_free(cj->name);
    g_free(cj);
}

static void on_compare(GtkButton *b, gpointer data)
{
    struct history *h = data;
    /* takes what was typed, even before the field was left */
    gtk_spin_button_update(h->from);
    gtk_spin_button_update(h->to);
    struct compare_job *cj = g_new0(struct compare_job, 1);
    *cj = (struct compare_job){.h = h, .name = g_strdup(h->name),
                               .from = (uint32_t)gtk_spin_button_get_value_as_int(h->from),
                               .to = (uint32_t)gtk_spin_button_get_value_as_int(h->to)};
    cj->job = (struct job){.run = run_compare, .done = compare_done, .data = cj};
    list_box_clear(h->changes);
    char *text = g_strdup_printf("Comparing version %u with version %u…", cj->from, cj->to);
    gtk_label_set_text(h->summary, text);
    g_free(text);
    if (start_job(h, &cj->job))
        gtk_widget_set_sensitive(h->compare, FALSE);
    else {
        gtk_label_set_text(h->summary, "");
        g_free(cj->name);
        g_free(cj);
    }
}

/* ---- the window ---- */

/* A closed window leaves its jobs running to their end (a cancel shortens a
 * fetch); the last one frees the history. */
static void on_destroy(GtkWidget *w, gpointer data)
{
    struct history *h = data;
    h->closed = true;
    if (h->jobs)
        repo_slot_cancel(h->slot); /* ours: the slot runs one job, and ours started */
    else
        history_free(h);
}

static GtkWidget *scrolled(GtkWidget *child, int min_height)
{
    GtkWidget *s = gtk_scrolled_window_new();
    gtk_scrolled_window_set_child(GTK_SCROLLED_WINDOW(s), child);
    gtk_scrolled_window_set_min_content_height(GTK_SCROLLED_WINDOW(s), min_height);
    gtk_widget_set_vexpand(s, TRUE);
    return s;
}

static GtkListBox *boxed_list(const char *accessible)
{
    GtkListBox *l = GTK_LIST_BOX(gtk_list_box_new());
    gtk_list_box_set_selection_mode(l, GTK_SELECTION_NONE);
    gtk_widget_add_css_class(GTK_WIDGET(l), "boxed-list");
    set_accessible_name(GTK_WIDGET(l), accessible);
    return l;
}

static GtkSpinButton *version_field(GtkWidget *box, const char *mnemonic, const char *name)
{
    GtkWidget *spin = gtk_spin_button_new_with_range(1, 1, 1);
    GtkWidget *label = gtk_label_new_with_mnemonic(mnemonic);
    gtk_label_set_mnemonic_widget(GTK_LABEL(label), spin);
    set_accessible_name(spin, name);
    gtk_box_append(GTK_BOX(box), label);
    gtk_box_append(GTK_BOX(box), spin);
    return GTK_SPIN_BUTTON(spin);
}

static GtkWidget *build_compare_bar(struct history *h)
{
    GtkWidget *bar = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 6);
    h->from = version_field(bar, "_From version", "From");
    h->to = version_field(bar, "_To version", "To");
    h->compare = gtk_button_new_with_mnemonic("_Compare");
    set_accessible_name(h->compare, "Compare");
    gtk_widget_add_css_class(h->compare, "suggested-action");
    gtk_widget_set_sensitive(h->compare, FALSE); /* until the versions are known */
    g_signal_connect(h->compare, "clicked", G_CALLBACK(on_compare), h);
    gtk_box_append(GTK_BOX(bar), h->compare);
    return bar;
}

static GtkWidget *build_body(struct history *h)
{
    GtkWidget *box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 12);
    g_object_set(box, "margin-start", 18, "margin-end", 18, "margin-top", 12,
                 "margin-bottom", 18, NULL);
    h->versions = boxed_list("Versions");
    h->changes = boxed_list("Changed files");
    h->status = wrapped_label(box);
    gtk_box_append(GTK_BOX(box), scrolled(GTK_WIDGET(h->versions), 160));
    gtk_box_append(GTK_BOX(box), build_compare_bar(h));
    h->summary = wrapped_label(box);
    gtk_box_append(GTK_BOX(box), scrolled(GTK_WIDGET(h->changes), 160));
    return box;
}

static GtkWindow *history_window_new(struct history *h)
{
    char *name = quoted_name(h->name), *title = g_strdup_printf("History of %s", name ? name : "?");
    GtkWindow *w = GTK_WINDOW(adw_window_new());
    gtk_window_set_title(w, title);
    gtk_window_set_transient_for(w, GTK_WINDOW(h->app->window));
    gtk_window_set_modal(w, TRUE);
    /* closing the main window closes this one too, so its state is freed */
    gtk_window_set_destroy_with_parent(w, TRUE);
    gtk_window_set_default_size(w, 720, 620);
    GtkWidget *content = gtk_box_new(GTK_ORIENTATION_VERTICAL, 0);
    gtk_box_append(GTK_BOX(content), adw_header_bar_new());
    gtk_box_append(GTK_BOX(content), build_body(h));
    adw_window_set_content(ADW_WINDOW(w), content);
    gtk_window_set_default_widget(w, h->compare);
    close_on_escape(w);
    g_free(title);
    free(name);
    return w;
}

void history_dialog(struct app *a, struct repo_slot *slot, const char *name)
{
    struct history *h = g_new0(struct history, 1);
    *h = (struct history){.app = a, .slot = slot, .name = g_strdup(name)};
    h->window = history_window_new(h);
    g_signal_connect(h->window, "destroy", G_CALLBACK(on_destroy), h);
    gtk_window_present(h->window);
    start_log(h);
}

/* ---- the button on an image's row ---- */

struct history_button {
    struct app *app;
    struct repo_slot *slot;
    char *name;
};

static void history_button_free(gpointer data, GClosure *unused)
{
    struct history_button *hb = data;
    g_free(hb->name);
    g_free(hb);
}

static void on_history_clicked(GtkButton *b, gpointer data)
{
    struct history_button *hb = data;
    history_dialog(hb->app, hb->slot, hb->name);
}

GtkWidget *history_button_new(struct app *a, struct repo_slot *slot, const char *name)
{
    GtkWidget *b = gtk_button_new_with_label("History");
    char *shown = quoted_name(name), *label = g_strdup_printf("History of %s", shown ? shown : "?");
    set_accessible_name(b, label);
    gtk_widget_set_valign(b, GTK_ALIGN_CENTER);
    struct history_button *hb = g_new(struct history_button, 1);
    *hb = (struct history_button){.app = a, .slot = slot, .name = g_strdup(name)};
    g_signal_connect_data(b, "clicked", G_CALLBACK(on_history_clicked), hb, history_button_free,
                          0);
    g_free(label);
    free(shown);
    return b;
}
