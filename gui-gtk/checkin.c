/* Checking in: a dialog that names the file (the one the window checked the
 * image out to, else typed), works out on a worker what changed since the
 * checkout and how much will travel, takes a message and runs vms_checkin
 * with its progress.  A check-in the repository refuses (VMS_EK_CONFLICT:
 * another got there first, or the lease is no longer ours) is told in plain
 * words, with only the options that keep everyone's work: save the file as a
 * new image, or keep it as it is. */
#include "app.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct holder {
    bool known, held;
    uint32_t version;
    int64_t since;
    char user[128], host[256];
};

struct checkin {
    struct job job;
    struct app *app;
    struct repo_slot *slot;
    char *name;
    uint32_t parent;           /* the version checked out: the lease's */
    GtkWindow *window;         /* NULL once closed: the struct outlives it while a job runs */
    GtkEntry *file, *message;
    GtkWidget *compare, *send, *cancel;
    GtkLabel *summary, *status;
    GtkProgressBar *bar;
    GtkListBox *changes;
    bool running;
    bool compared;             /* the changes shown are the file's: it may be checked in */
    gint stop;                 /* atomic: Cancel, which the comparison's scan polls */
    char *job_file, *job_message; /* the fields as the job started */
    struct rate_meter meter;
    struct diff_list diff;     /* the comparison's */
    uint64_t new_bytes;
    struct vms_stats stats;    /* the check-in's */
    bool newer;                /* after a refusal: LATEST was recorded after PARENT */
    bool log_known;
    struct vms_version latest;
    struct holder holder;
};

/* Saving the file of a refused check-in as a new image. */
struct save_as {
    struct job job;
    struct app *app;
    struct repo_slot *slot;
    char *old_name, *file, *message, *name;
    GtkEntry *entry;
    struct vms_stats stats;
};

static void checkin_free(struct checkin *ck)
{
    g_free(ck->name);
    g_free(ck->job_file);
    g_free(ck->job_message);
    diff_list_clear(&ck->diff);
    g_free(ck);
}

/* ---- remembering the checkout's file ---- */

void checkin_remember(struct app *a, struct repo_slot *slot, const char *image, const char *file)
{
    fsp_error err = {0};
    char *abs = realpath(file, NULL);
    int rc = abs ? 0 : fsp_fail(&err, FSP_EK_OPEN, -errno, "%s: cannot open: %s", file,
                                strerror(errno));
    if (!rc)
        rc = vms_config_set_checkout(a->cfg, repo_slot_url(slot), image, abs, &err);
    if (!rc)
        rc = app_save_settings(a, &err);
    if (rc)
        app_toast_error(a, &err);
    free(abs);
}

/* ---- the comparison, on a worker ---- */

static int on_scan_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    struct checkin *ck = ctx;
    struct vms_event ev = {.phase = VMS_PHASE_SCAN_IMAGE, .done = done, .total = total};
    job_post_event(&ck->job, &ev);
    return g_atomic_int_get(&ck->stop);
}

/* Objects keyed by their SHA-256: its first bytes are as good a hash as any. */
static guint object_hash(gconstpointer key)
{
    guint h;
    memcpy(&h, key, sizeof h);
    return h;
}

static gboolean object_equal(gconstpointer a, gconstpointer b)
{
    return !memcmp(a, b, FSP_SHA256_LEN);
}

struct tally {
    GHashTable *old, *counted;
    uint64_t bytes;
};

static int note_old_object(void *ctx, const uint8_t hash[FSP_SHA256_LEN], uint64_t len)
{
    struct tally *t = ctx;
    g_hash_table_add(t->old, g_memdup2(hash, FSP_SHA256_LEN));
    return 0;
}

static int count_new_object(void *ctx, const uint8_t hash[FSP_SHA256_LEN], uint64_t len)
{
    struct tally *t = ctx;
    /* the same object may come more than once: it travels once */
    if (!g_hash_table_contains(t->old, hash) &&
        g_hash_table_add(t->counted, g_memdup2(hash, FSP_SHA256_LEN)))
        t->bytes += len;
    return 0;
}

/* The raw bytes of the objects NOW needs that OLD has not: what a check-in
 * sends at most (the repository may hold some from other images). */
static int count_new_data(const char *old, const char *now, uint64_t *bytes, fsp_error *err)
{
    struct tally t = {.old = g_hash_table_new_full(object_hash, object_equal, g_free, NULL),
                      .counted = g_hash_table_new_full(object_hash, object_equal, g_free, NULL)};
    int rc = vms_manifest_objects(old, note_old_object, &t, err);
    if (!rc)
        rc = vms_manifest_needed(now, count_new_object, &t, err);
    *bytes = t.bytes;
    g_hash_table_destroy(t.old);
    g_hash_table_destroy(t.counted);
    return rc;
}

/* The checked-out version's manifest and the file's, in a private folder
 * removed whatever happens, then the engine's diff between them. */
static int run_compare(struct job *j, vms_client *c, fsp_error *err)
{
    struct checkin *ck = j->data;
    char *dir = private_dir_make("vmsync-checkin", err);
    if (!dir)
        return err->code;
    char *old = g_build_filename(dir, "checked-out.vmsm", NULL);
    char *now = g_build_filename(dir, "file.vmsm", NULL);
    struct vms_manifest_create_opts o = {.progress = on_scan_progress, .ctx = ck};
    int rc = vms_fetch_manifest(c, ck->name, ck->parent, old, err);
    if (!rc)
        rc = vms_manifest_create(ck->job_file, now, &o, err);
    if (!rc)
        rc = vms_diff(old, now, diff_list_add, &ck->diff, err);
    if (rc == -ENOMEM && !err->msg[0]) /* diff_list_add's, which has no ERR to fill */
        rc = fsp_fail(err, FSP_EK_NOMEM, rc, "out of memory");
    if (!rc)
        rc = count_new_data(old, now, &ck->new_bytes, err);
    private_dir_remove(dir);
    g_free(old);
    g_free(now);
    return rc;
}

/* ---- the check-in, on a worker ---- */

static int note_version(void *ctx, const struct vms_version *v)
{
    struct checkin *ck = ctx;
    if (v->number > ck->parent) {
        ck->latest = *v; /* oldest first: the last one is the latest */
        ck->newer = true;
    }
    return 0;
}

static int note_holder(void *ctx, const struct vms_lease_info *l)
{
    struct holder *h = ctx;
    h->held = true;
    h->version = l->version;
    h->since = l->since;
    snprintf(h->user, sizeof h->user, "%s", l->user);
    snprintf(h->host, sizeof h->host, "%s", l->host);
    return 0;
}

/* What the refusal's dialog tells beyond the engine's words: who recorded a
 * version since the checkout, who holds the lease now. */
static void learn_conflict(struct checkin *ck, vms_client *c)
{
    fsp_error ignored = {0};
    ck->log_known = vms_log(c, ck->name, note_version, ck, &ignored) == 0;
    ck->holder.known = vms_leases(c, ck->name, note_holder, &ck->holder, &ignored) == 0;
}

static int run_checkin(struct job *j, vms_client *c, fsp_error *err)
{
    struct checkin *ck = j->data;
    struct vms_checkin_opts o = {.name = ck->name, .image = ck->job_file,
                                 .message = ck->job_message};
    int rc = vms_checkin(c, &o, &ck->stats, err);
    if (rc && err->kind == VMS_EK_CONFLICT)
        learn_conflict(ck, c);
    return rc;
}

/* ---- saving as a new image ---- */

static int note_taken(void *ctx, const struct vms_version *v)
{
    *(struct vms_version *)ctx = *v;
    return 0;
}

/* A name in use is refused before the scan, in words that name who holds
 * it; new_image refuses one taken since, in the step that records, since
 * an import on top of someone's image would bury their work. */
static int refuse_taken_name(vms_client *c, const char *name, fsp_error *err)
{
    struct vms_version v = {0};
    fsp_error probe = {0};
    int rc = vms_log(c, name, note_taken, &v, &probe);
    if (rc && probe.kind != VMS_EK_NOTFOUND) {
        *err = probe;
        return rc;
    }
    if (!rc && v.number)
        return fsp_fail(err, VMS_EK_CONFLICT, -EEXIST,
                        "%s: already exists (version %u, checked in by %s@%s): choose another "
                        "name", name, v.number, v.user, v.host);
    return 0;
}

static int run_save(struct job *j, vms_client *c, fsp_error *err)
{
    struct save_as *sa = j->data;
    struct vms_import_opts o = {.image = sa->file, .name = sa->name, .message = sa->message,
                                .new_image = true};
    int rc = refuse_taken_name(c, sa->name, err);
    return rc ? rc : vms_import(c, &o, &sa->stats, err);
}

static void save_as_free(gpointer data)
{
    struct save_as *sa = data;
    g_free(sa->old_name);
    g_free(sa->file);
    g_free(sa->message);
    g_free(sa->name);
    g_free(sa);
}

static void ask_new_name(struct save_as *sa);

/* A dialog owns SA until it answers "save" and hands SA on: closed any
 * other way (with its parent, say), it frees SA as it goes. */
#define SAVE_AS_KEY "vmsync-save-as"
static void dialog_own(GtkWidget *dlg, struct save_as *sa)
{
    g_object_set_data_full(G_OBJECT(dlg), SAVE_AS_KEY, sa, save_as_free);
}

static struct save_as *dialog_hand_on(AdwMessageDialog *dlg)
{
    return g_object_steal_data(G_OBJECT(dlg), SAVE_AS_KEY);
}

/* A name refused (or any failure): the question comes back, with the reason
 * in a toast, so that the file can still be saved. */
static void save_done(struct job *j, int rc, const fsp_error *err)
{
    struct save_as *sa = j->data;
    if (rc) {
        app_toast_error(sa->app, err);
        ask_new_name(sa);
        return;
    }
    char *text = saved_as_text(sa->name, sa->stats.version);
    app_toast(sa->app, text ? text : "saved");
    free(text);
    images_view_refresh(sa->app->images);
    save_as_free(sa);
}

static void on_name_answer(AdwMessageDialog *dlg, const char *response, gpointer data)
{
    struct save_as *sa = data;
    const char *name = gtk_editable_get_text(GTK_EDITABLE(sa->entry));
    if (strcmp(response, "save"))
        return; /* SA goes with the dialog */
    if (!*name) {
        app_toast(sa->app, "Name the new image.");
        return;
    }
    dialog_hand_on(dlg);
    g_free(sa->name);
    sa->name = g_strdup(name);
    sa->job = (struct job){.run = run_save, .done = save_done, .data = sa};
    app_toast(sa->app, "Saving as a new image…");
    if (!job_start(sa->slot, &sa->job)) {
        app_toast(sa->app, BUSY_TEXT);
        save_as_free(sa);
    }
}

static void ask_new_name(struct save_as *sa)
{
    if (!sa->app->window) { /* closed meanwhile: nobody to ask */
        save_as_free(sa);
        return;
    }
    char *file = quoted_name(sa->file);
    char *body = g_strdup_printf("Your file %s becomes version 1 of a new image. Nothing "
                                 "else changes.", file ? file : "?");
    GtkWidget *w = adw_message_dialog_new(GTK_WINDOW(sa->app->window), "Save as a new image",
                                          body);
    AdwMessageDialog *dlg = ADW_MESSAGE_DIALOG(w);
    sa->entry = GTK_ENTRY(gtk_entry_new());
    char *suggested = sa->name ? g_strdup(sa->name)
                               : g_strdup_printf("%s-%s", sa->old_name, sa->app->me.host);
    gtk_editable_set_text(GTK_EDITABLE(sa->entry), suggested);
    gtk_entry_set_activates_default(sa->entry, TRUE);
    set_accessible_name(GTK_WIDGET(sa->entry), "New image name");
    adw_message_dialog_set_extra_child(dlg, GTK_WIDGET(sa->entry));
    adw_message_dialog_add_responses(dlg, "cancel", "_Cancel", "save", "_Save", NULL);
    adw_message_dialog_set_response_appearance(dlg, "save", ADW_RESPONSE_SUGGESTED);
    adw_message_dialog_set_default_response(dlg, "save");
    adw_message_dialog_set_close_response(dlg, "cancel");
    g_signal_connect(dlg, "response", G_CALLBACK(on_name_answer), sa);
    dialog_own(w, sa);
    gtk_window_present(GTK_WINDOW(w));
    g_free(suggested);
    g_free(body);
    free(file);
}

/* ---- the refusal, in plain words ---- */

/* "keep": the file stays as it is, and SA goes with the dialog. */
static void on_conflict_answer(AdwMessageDialog *dlg, const char *response, gpointer data)
{
    if (!strcmp(response, "save"))
        ask_new_name(dialog_hand_on(dlg));
}

static struct save_as *save_as_new(struct checkin *ck)
{
    struct save_as *sa = g_new0(struct save_as, 1);
    *sa = (struct save_as){.app = ck->app, .slot = ck->slot, .old_name = g_strdup(ck->name),
                           .file = g_strdup(ck->job_file),
                           .message = g_strdup(ck->job_message)};
    return sa;
}

/* The heading and body; the engine's words when the queries after it failed. */
static void conflict_words(struct checkin *ck, const fsp_error *err, char **heading, char **body)
{
    struct vms_lease_info held = {.image = ck->name, .version = ck->holder.version,
                                  .user = ck->holder.user, .host = ck->holder.host,
                                  .since = ck->holder.since};
    struct checkin_conflict k = {.name = ck->name, .file = ck->job_file, .parent = ck->parent,
                                 .newer = ck->newer ? &ck->latest : NULL,
                                 .holder = ck->holder.held ? &held : NULL};
    if (ck->log_known && ck->holder.known) {
        *heading = conflict_heading(&k);
        *body = conflict_text(&k);
    } else {
        *heading = strdup("The check-in was refused");
        *body = error_text(err);
    }
}

static void show_conflict(struct checkin *ck, const fsp_error *err)
{
    if (!ck->app->window)
        return; /* closed meanwhile: the file stays as it is */
    char *heading, *body;
    conflict_words(ck, err, &heading, &body);
    GtkWidget *w = adw_message_dialog_new(GTK_WINDOW(ck->app->window), heading ? heading : "",
                                          body ? body : "");
    AdwMessageDialog *dlg = ADW_MESSAGE_DIALOG(w);
    /* no option overwrites anyone's version */
    adw_message_dialog_add_responses(dlg, "keep", "_Keep my file", "save",
                                     "_Save as a new image…", NULL);
    adw_message_dialog_set_default_response(dlg, "keep");
    adw_message_dialog_set_close_response(dlg, "keep");
    g_signal_connect(dlg, "response", G_CALLBACK(on_conflict_answer), NULL);
    dialog_own(w, save_as_new(ck));
    gtk_window_present(GTK_WINDOW(w));
    free(heading);
    free(body);
}

/* ---- the dialog: jobs and their answers ---- */

static void set_running(struct checkin *ck, bool running)
{
    ck->running = running;
    gtk_widget_set_sensitive(ck->compare, !running);
    /* not insensitive: a focused entry made so loses the focus unawares
     * (its cursor blinks on, and GTK warns) */
    gtk_editable_set_editable(GTK_EDITABLE(ck->file), !running);
    gtk_widget_set_visible(GTK_WIDGET(ck->bar), running);
    gtk_widget_set_sensitive(ck->send, !running && ck->compared);
}

static void on_event(struct job *j, const struct vms_event *ev)
{
    struct checkin *ck = j->data;
    if (!ck->window)
        return;
    rate_meter_update(&ck->meter, ev, now_seconds());
    gtk_progress_bar_set_fraction(ck->bar,
                                  checkin_fraction(&ck->meter, repo_slot_remote(ck->slot)));
    char *text = progress_text(&ck->meter);
    gtk_label_set_text(ck->status, text ? text : "");
    free(text);
}

static void clear_changes(struct checkin *ck)
{
    list_box_clear(ck->changes);
    gtk_label_set_text(ck->summary, "");
    ck->compared = false;
    gtk_widget_set_sensitive(ck->send, FALSE);
}

static void add_change_line(struct checkin *ck, const char *text)
{
    GtkWidget *l = gtk_label_new(text);
    gtk_label_set_xalign(GTK_LABEL(l), 0);
    gtk_label_set_selectable(GTK_LABEL(l), FALSE);
    gtk_label_set_ellipsize(GTK_LABEL(l), PANGO_ELLIPSIZE_MIDDLE);
    gtk_list_box_append(ck->changes, l);
}

static void show_changes(struct checkin *ck)
{
    for (size_t i = 0; i < ck->diff.n && i < CHANGES_SHOWN; i++) {
        char *line = diff_entry_text(&ck->diff.items[i]);
        add_change_line(ck, line ? line : "out of memory");
        free(line);
    }
    char *more = diff_more_text(&ck->diff);
    if (more)
        add_change_line(ck, more);
    free(more);
    char *text = changes_text(&ck->diff.counts, ck->new_bytes);
    gtk_label_set_text(ck->summary, text ? text : "");
    free(text);
    ck->compared = true;
    gtk_widget_set_sensitive(ck->send, TRUE);
    gtk_widget_grab_focus(GTK_WIDGET(ck->message));
}

/* Common to both jobs' answers: the dialog, when still open, is idle again
 * and says a cancel or an error in its status line, as every view of the
 * window does; closed, the error is a toast.  A refusal has its own dialog. */
static void job_ended(struct checkin *ck, int rc, const fsp_error *err)
{
    ck->running = false;
    bool told = !rc || err->kind == FSP_EK_CANCELLED || err->kind == VMS_EK_CONFLICT;
    if (!ck->window) {
        if (!told)
            app_toast_error(ck->app, err);
        return;
    }
    set_running(ck, false);
    char *text = told ? NULL : error_text(err);
    gtk_label_set_text(ck->status, rc && err->kind == FSP_EK_CANCELLED ? "Cancelled."
                                   : text ? text : "");
    free(text);
}

static void compare_done(struct job *j, int rc, const fsp_error *err)
{
    struct checkin *ck = j->data;
    job_ended(ck, rc, err);
    if (!ck->window)
        checkin_free(ck);
    else if (!rc)
        show_changes(ck);
}

/* Told even when the dialog was closed meanwhile: a check-in that ended
 * despite the cancel still happened. */
static void checkin_done(struct job *j, int rc, const fsp_error *err)
{
    struct checkin *ck = j->data;
    struct app *a = ck->app;
    bool ended = !rc || err->kind == VMS_EK_CONFLICT; /* nothing left to retry here */
    job_ended(ck, rc, err);
    if (!rc) {
        char *text = checked_in_text(ck->name, ck->stats.version);
        app_toast(a, text ? text : "checked in");
        free(text);
    } else if (err->kind == VMS_EK_CONFLICT)
        show_conflict(ck, err);
    if (!ck->window)
        checkin_free(ck);
    else if (ended)
        gtk_window_close(ck->window); /* frees CK: no job runs */
    if (ended)
        images_view_refresh(a->images);
}

static void start(struct checkin *ck, job_run_fn run, job_done_fn done)
{
    g_free(ck->job_file);
    g_free(ck->job_message);
    ck->job_file = g_strdup(gtk_editable_get_text(GTK_EDITABLE(ck->file)));
    ck->job_message = g_strdup(gtk_editable_get_text(GTK_EDITABLE(ck->message)));
    ck->job = (struct job){.run = run, .done = done, .event = on_event, .data = ck};
    ck->meter = (struct rate_meter){0};
    g_atomic_int_set(&ck->stop, 0);
    gtk_progress_bar_set_fraction(ck->bar, 0);
    gtk_label_set_text(ck->status, "Starting…");
    set_running(ck, true);
    if (!job_start(ck->slot, &ck->job)) {
        set_running(ck, false);
        gtk_label_set_text(ck->status, "");
        app_toast(ck->app, BUSY_TEXT);
    }
}

static void start_compare(struct checkin *ck)
{
    if (!*gtk_editable_get_text(GTK_EDITABLE(ck->file))) {
        app_toast(ck->app, "Name the file that holds the checkout.");
        return;
    }
    clear_changes(ck);
    diff_list_clear(&ck->diff);
    ck->new_bytes = 0;
    start(ck, run_compare, compare_done);
}

/* ---- the dialog: its controls ---- */

static void on_compare(GtkButton *b, gpointer data) { start_compare(data); }

static void on_send(GtkButton *b, gpointer data)
{
    struct checkin *ck = data;
    if (!ck->running && ck->compared)
        start(ck, run_checkin, checkin_done);
}

static void request_stop(struct checkin *ck)
{
    g_atomic_int_set(&ck->stop, 1);
    repo_slot_cancel(ck->slot);
}

static void on_cancel(GtkButton *b, gpointer data)
{
    struct checkin *ck = data;
    if (ck->running) {
        request_stop(ck);
        gtk_label_set_text(ck->status, "Cancelling…");
    } else
        gtk_window_close(ck->window);
}

/* Another file than the one compared: its changes are not known yet. */
static void on_file_changed(GtkEditable *e, gpointer data)
{
    struct checkin *ck = data;
    if (!ck->running)
        clear_changes(ck);
}

/* The window is gone (closed, or with its parent); CK goes too, or when its
 * job, told to stop, has answered. */
static void on_destroy(GtkWidget *w, gpointer data)
{
    struct checkin *ck = data;
    ck->window = NULL;
    if (ck->running)
        request_stop(ck);
    else
        checkin_free(ck);
}

static GtkWidget *button(const char *mnemonic, const char *name, GCallback cb, void *data)
{
    GtkWidget *b = gtk_button_new_with_mnemonic(mnemonic);
    set_accessible_name(b, name);
    g_signal_connect(b, "clicked", cb, data);
    return b;
}

static GtkWidget *build_file_row(struct checkin *ck, GtkWidget *box, const char *initial)
{
    GtkWidget *row = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 6);
    ck->file = GTK_ENTRY(gtk_entry_new());
    gtk_editable_set_text(GTK_EDITABLE(ck->file), initial ? initial : "");
    gtk_widget_set_hexpand(GTK_WIDGET(ck->file), TRUE);
    field_label(box, "_File that holds the checkout", GTK_WIDGET(ck->file), "File to check in");
    ck->compare = button("Show _changes", "Show changes", G_CALLBACK(on_compare), ck);
    gtk_box_append(GTK_BOX(row), GTK_WIDGET(ck->file));
    gtk_box_append(GTK_BOX(row), ck->compare);
    return row;
}

static GtkWidget *build_changes(struct checkin *ck)
{
    ck->changes = GTK_LIST_BOX(gtk_list_box_new());
    gtk_list_box_set_selection_mode(ck->changes, GTK_SELECTION_NONE);
    set_accessible_name(GTK_WIDGET(ck->changes), "Changes");
    GtkWidget *scroll = gtk_scrolled_window_new();
    gtk_scrolled_window_set_child(GTK_SCROLLED_WINDOW(scroll), GTK_WIDGET(ck->changes));
    gtk_widget_set_vexpand(scroll, TRUE);
    gtk_widget_set_size_request(scroll, -1, 160);
    return scroll;
}

static GtkWidget *build_buttons(struct checkin *ck)
{
    GtkWidget *row = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 6);
    gtk_widget_set_halign(row, GTK_ALIGN_END);
    ck->cancel = button("_Cancel", "Cancel", G_CALLBACK(on_cancel), ck);
    ck->send = button("C_heck in", "Check in", G_CALLBACK(on_send), ck);
    gtk_widget_add_css_class(ck->send, "suggested-action");
    gtk_widget_set_sensitive(ck->send, FALSE);
    gtk_box_append(GTK_BOX(row), ck->cancel);
    gtk_box_append(GTK_BOX(row), ck->send);
    return row;
}

static GtkWidget *build_body(struct checkin *ck, const char *initial_file)
{
    GtkWidget *box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 6);
    g_object_set(box, "margin-start", 18, "margin-end", 18, "margin-top", 12,
                 "margin-bottom", 18, NULL);
    gtk_box_append(GTK_BOX(box), build_file_row(ck, box, initial_file));
    ck->bar = GTK_PROGRESS_BAR(gtk_progress_bar_new());
    set_accessible_name(GTK_WIDGET(ck->bar), "Check-in progress");
    gtk_widget_set_visible(GTK_WIDGET(ck->bar), FALSE);
    gtk_box_append(GTK_BOX(box), GTK_WIDGET(ck->bar));
    ck->status = wrapped_label(box);
    ck->summary = wrapped_label(box);
    gtk_box_append(GTK_BOX(box), build_changes(ck));
    ck->message = GTK_ENTRY(gtk_entry_new());
    gtk_entry_set_activates_default(ck->message, TRUE);
    field_label(box, "_Message", GTK_WIDGET(ck->message), "Message");
    gtk_box_append(GTK_BOX(box), GTK_WIDGET(ck->message));
    gtk_box_append(GTK_BOX(box), build_buttons(ck));
    return box;
}

static void build_window(struct checkin *ck, const char *initial_file)
{
    char *name = quoted_name(ck->name);
    char *title = g_strdup_printf("Check in %s", name ? name : "?");
    /* a dialog to assistive technology, as the message dialogs are */
    ck->window = g_object_new(ADW_TYPE_WINDOW, "accessible-role", GTK_ACCESSIBLE_ROLE_DIALOG,
                              "title", title, "modal", TRUE, "transient-for", ck->app->window,
                              "default-width", 640, "default-height", 560,
                              "destroy-with-parent", TRUE, NULL);
    GtkWidget *content = gtk_box_new(GTK_ORIENTATION_VERTICAL, 0);
    gtk_box_append(GTK_BOX(content), adw_header_bar_new());
    gtk_box_append(GTK_BOX(content), build_body(ck, initial_file));
    adw_window_set_content(ADW_WINDOW(ck->window), content);
    gtk_window_set_default_widget(ck->window, ck->send);
    close_on_escape(ck->window);
    g_signal_connect(ck->window, "destroy", G_CALLBACK(on_destroy), ck);
    g_signal_connect(ck->file, "changed", G_CALLBACK(on_file_changed), ck);
    g_free(title);
    free(name);
}

static void checkin_dialog(struct app *a, struct repo_slot *slot, const char *image,
                           uint32_t version)
{
    struct checkin *ck = g_new0(struct checkin, 1);
    *ck = (struct checkin){.app = a, .slot = slot, .name = g_strdup(image), .parent = version};
    const struct vms_config_checkout *known = vms_config_find_checkout(a->cfg, repo_slot_url(slot), image);
    build_window(ck, known ? known->file : NULL);
    gtk_window_present(ck->window);
    if (known)
        start_compare(ck);
    else
        gtk_widget_grab_focus(GTK_WIDGET(ck->file));
}

/* ---- the button on the image's row ---- */

struct checkin_button {
    struct app *app;
    struct repo_slot *slot;
    char *name;
    uint32_t version;
};

static void checkin_button_free(gpointer data, GClosure *unused)
{
    struct checkin_button *cb = data;
    g_free(cb->name);
    g_free(cb);
}

static void on_checkin_clicked(GtkButton *b, gpointer data)
{
    struct checkin_button *cb = data;
    checkin_dialog(cb->app, cb->slot, cb->name, cb->version);
}

GtkWidget *checkin_button_new(struct app *a, struct repo_slot *slot,
                              const struct image_row *image)
{
    GtkWidget *b = gtk_button_new_with_label("Check in…");
    char *name = quoted_name(image->name);
    char *label = g_strdup_printf("Check in %s", name ? name : "?");
    set_accessible_name(b, label);
    gtk_widget_set_valign(b, GTK_ALIGN_CENTER);
    struct checkin_button *cb = g_new(struct checkin_button, 1);
    *cb = (struct checkin_button){.app = a, .slot = slot, .name = g_strdup(image->name),
                                  .version = image->lease_version};
    g_signal_connect_data(b, "clicked", G_CALLBACK(on_checkin_clicked), cb,
                          checkin_button_free, 0);
    g_free(label);
    free(name);
    return b;
}
