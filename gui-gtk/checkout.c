/* Checking out: a dialog for the version, the output and its format, and
 * the seeds; then vms_checkout_plan on a worker and its figures shown before
 * anything moves; then vms_checkout_run with one bar, the true rate and the
 * time left, and a cancel button (vms_client_cancel).  Running it again
 * after a cancel resumes: the new plan counts what is already in place.
 * When another host holds the lease, the run asks before it takes it over. */
#include "app.h"
#include "ask.h"

#include <stdlib.h>
#include <string.h>

struct checkout_panel {
    struct app *app;
    GtkWidget *box;
    GtkLabel *title, *detail;
    GtkProgressBar *bar;
    GtkWidget *cancel;
    struct checkout *running; /* NULL when idle */
};

struct checkout {
    struct job job;
    struct app *app;
    struct repo_slot *slot;
    char *name, *out, *format;
    uint32_t version;
    GPtrArray *seeds;        /* char *, the paths chosen */
    vms_plan *plan;          /* made by the plan job, run by the run job */
    struct vms_stats stats;
    struct rate_meter meter;
    double fetch_rate;       /* the last true rate of the fetch phase */
    bool downloading;        /* the run is under way: its row says so */
};

struct checkout_dialog {
    struct app *app;
    struct repo_slot *slot;
    char *name;
    GtkSpinButton *version;
    GtkEntry *out, *extra_seed;
    GtkDropDown *format;
    GPtrArray *seed_checks;  /* GtkCheckButton *, each named by its path */
    GtkBox *seed_box;        /* where the seed checks are */
    GtkFileChooserNative *chooser; /* while the user picks a seed */
};

static void checkout_free(struct checkout *c)
{
    vms_plan_free(c->plan);
    g_free(c->name);
    g_free(c->out);
    g_free(c->format);
    g_ptr_array_free(c->seeds, TRUE);
    g_free(c);
}

/* ---- the panel ---- */

static void panel_show(struct checkout_panel *p, struct checkout *c, const char *what)
{
    char *name = quoted_name(c->name), *out = quoted_name(c->out), *title = NULL;
    title = g_strdup_printf("%s %s@%u to %s", what, name ? name : "?", c->version,
                            out ? out : "?");
    gtk_label_set_text(p->title, title);
    gtk_progress_bar_set_fraction(p->bar, 0);
    gtk_label_set_text(p->detail, "Starting…");
    gtk_widget_set_visible(p->box, TRUE);
    p->running = c;
    g_free(title);
    free(name);
    free(out);
}

static void panel_hide(struct checkout_panel *p)
{
    gtk_widget_set_visible(p->box, FALSE);
    p->running = NULL;
}

static void on_event(struct job *j, const struct vms_event *ev)
{
    struct checkout *c = j->data;
    struct checkout_panel *p = c->app->checkout;
    rate_meter_update(&c->meter, ev, now_seconds());
    if (ev->phase == VMS_PHASE_FETCH && rate_meter_rate(&c->meter) > 0)
        c->fetch_rate = rate_meter_rate(&c->meter);
    char *text = progress_text(&c->meter);
    gtk_progress_bar_set_fraction(p->bar, checkout_fraction(&c->meter));
    gtk_label_set_text(p->detail, text ? text : "");
    free(text);
}

static void on_cancel(GtkButton *b, gpointer data)
{
    struct checkout_panel *p = data;
    if (p->running)
        repo_slot_cancel(p->running->slot);
}

struct checkout_panel *checkout_panel_new(struct app *a)
{
    struct checkout_panel *p = g_new0(struct checkout_panel, 1);
    p->app = a;
    p->box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 6);
    g_object_set(p->box, "margin-start", 18, "margin-end", 18, "margin-bottom", 12, NULL);
    p->title = GTK_LABEL(gtk_label_new(""));
    p->detail = GTK_LABEL(gtk_label_new(""));
    p->bar = GTK_PROGRESS_BAR(gtk_progress_bar_new());
    set_accessible_name(GTK_WIDGET(p->bar), "Checkout progress");
    p->cancel = gtk_button_new_with_mnemonic("_Cancel checkout");
    set_accessible_name(p->cancel, "Cancel checkout");
    gtk_widget_set_halign(p->cancel, GTK_ALIGN_END);
    g_signal_connect(p->cancel, "clicked", G_CALLBACK(on_cancel), p);
    gtk_label_set_xalign(p->title, 0);
    gtk_label_set_xalign(p->detail, 0);
    gtk_box_append(GTK_BOX(p->box), GTK_WIDGET(p->title));
    gtk_box_append(GTK_BOX(p->box), GTK_WIDGET(p->bar));
    gtk_box_append(GTK_BOX(p->box), GTK_WIDGET(p->detail));
    gtk_box_append(GTK_BOX(p->box), p->cancel);
    gtk_widget_set_visible(p->box, FALSE);
    return p;
}

GtkWidget *checkout_panel_widget(struct checkout_panel *p) { return p->box; }
void checkout_panel_free(struct checkout_panel *p) { g_free(p); }

/* ---- the run ---- */

/* A version no trusted key signed is refused before anything is written.
 * Its reason names the repository, the version and the signer's
 * fingerprint, too long for a toast: a dialog says it whole. */
static void tell_refusal(struct app *a, const char *name, const fsp_error *err)
{
    if (err->kind != VMS_EK_UNTRUSTED || !a->window) {
        app_toast_error(a, err);
        return;
    }
    char *heading = untrusted_heading(name), *body = untrusted_text(err);
    GtkWidget *w = adw_message_dialog_new(GTK_WINDOW(a->window), heading ? heading : "?",
                                          body ? body : "out of memory");
    adw_message_dialog_add_response(ADW_MESSAGE_DIALOG(w), "close", "_Close");
    gtk_window_present(GTK_WINDOW(w));
    free(heading);
    free(body);
}

static int run_checkout(struct job *j, vms_client *client, fsp_error *err)
{
    struct checkout *c = j->data;
    return vms_checkout_run(client, c->plan, &c->stats, err);
}

static void checkout_done(struct job *j, int rc, const fsp_error *err)
{
    struct checkout *c = j->data;
    struct app *a = c->app;
    panel_hide(a->checkout);
    if (c->fetch_rate > 0)
        repo_slot_set_rate(c->slot, c->fetch_rate);
    if (rc && err->kind == FSP_EK_CANCELLED)
        app_toast(a, CHECKOUT_CANCELLED_TEXT); /* asked for: no error that stays */
    else if (rc)
        tell_refusal(a, c->name, err);
    else {
        char *name = quoted_name(c->name);
        char *text = g_strdup_printf("%s@%u is checked out", name ? name : "?", c->stats.version);
        app_toast(a, text);
        g_free(text);
        free(name);
        checkin_remember(a, c->slot, c->name, c->out);
    }
    checkout_free(c);
    images_view_refresh(a->images);
}

static void start_run(struct checkout *c)
{
    c->job = (struct job){.run = run_checkout, .done = checkout_done, .event = on_event,
                          .data = c};
    c->meter = (struct rate_meter){0};
    c->downloading = true;
    panel_show(c->app->checkout, c, "Checking out");
    if (!job_start(c->slot, &c->job)) {
        panel_hide(c->app->checkout);
        app_toast(c->app, BUSY_TEXT);
        checkout_free(c);
        return;
    }
    images_view_restate(c->app->images);
}

bool checkout_downloading(const struct app *a, const struct repo_slot *slot, const char *name)
{
    const struct checkout *c = a->checkout ? a->checkout->running : NULL;
    return c && c->downloading && c->slot == slot && !strcmp(c->name, name);
}

/* ---- another host's lease: asked on the run's worker ---- */

static const struct ask_choice steal_choices[] = {
    {"cancel", "_Cancel", ADW_RESPONSE_DEFAULT},
    {"steal", "_Take over", ADW_RESPONSE_DESTRUCTIVE},
};

/* Cancel is the default: taking another's lease over is done on purpose. */
static int confirm_steal(void *ctx, const struct vms_lease_info *held)
{
    struct checkout *c = ctx;
    char *heading = steal_heading(held), *body = steal_body(held);
    struct question q = {.heading = heading, .body = body, .choices = steal_choices,
                         .n_choices = G_N_ELEMENTS(steal_choices), .default_id = "cancel",
                         .refuse_id = "cancel"};
    bool steal = heading && body && !strcmp(repo_slot_ask(c->slot, &q), "steal");
    free(heading);
    free(body);
    return steal;
}

/* ---- the plan ---- */

#define PLAN_KEY "vmsync-plan"

/* The plan's dialog owns C (and its plan, which keeps the output file
 * open) until "run" hands it on: closed any other way, C goes with it. */
static void on_plan_answer(AdwMessageDialog *dlg, const char *response, gpointer data)
{
    if (!strcmp(response, "run"))
        start_run(g_object_steal_data(G_OBJECT(dlg), PLAN_KEY));
}

static void show_plan(struct checkout *c)
{
    if (!c->app->window) { /* the plan ended as the window closed */
        checkout_free(c);
        return;
    }
    char *name = quoted_name(c->name);
    char *body = plan_text(vms_plan_figures(c->plan), repo_slot_rate(c->slot));
    char *heading = g_strdup_printf("Check out %s@%u?", name ? name : "?",
                                    vms_plan_figures(c->plan)->version);
    GtkWidget *w = adw_message_dialog_new(GTK_WINDOW(c->app->window), heading, body);
    AdwMessageDialog *dlg = ADW_MESSAGE_DIALOG(w);
    adw_message_dialog_add_responses(dlg, "cancel", "_Cancel", "run", "C_heck out", NULL);
    adw_message_dialog_set_response_appearance(dlg, "run", ADW_RESPONSE_SUGGESTED);
    adw_message_dialog_set_default_response(dlg, "run");
    adw_message_dialog_set_close_response(dlg, "cancel");
    g_object_set_data_full(G_OBJECT(dlg), PLAN_KEY, c, (GDestroyNotify)checkout_free);
    g_signal_connect(dlg, "response", G_CALLBACK(on_plan_answer), NULL);
    gtk_window_present(GTK_WINDOW(w));
    g_free(heading);
    free(body);
    free(name);
}

static int run_plan(struct job *j, vms_client *client, fsp_error *err)
{
    struct checkout *c = j->data;
    struct vms_checkout_opts o = {.name = c->name, .version = c->version, .out = c->out,
                                  .format = c->format,
                                  .seeds = (const char *const *)c->seeds->pdata,
                                  .n_seeds = c->seeds->len,
                                  /* the plan keeps it for the run, which takes the lease */
                                  .steal = confirm_steal, .steal_ctx = c};
    return vms_checkout_plan(client, &o, &c->plan, err);
}

static void plan_done(struct job *j, int rc, const fsp_error *err)
{
    struct checkout *c = j->data;
    panel_hide(c->app->checkout);
    if (rc) {
        tell_refusal(c->app, c->name, err);
        checkout_free(c);
        return;
    }
    show_plan(c);
}

static void start_plan(struct checkout *c)
{
    c->job = (struct job){.run = run_plan, .done = plan_done, .event = on_event, .data = c};
    panel_show(c->app->checkout, c, "Planning");
    if (!job_start(c->slot, &c->job)) {
        panel_hide(c->app->checkout);
        app_toast(c->app, BUSY_TEXT);
        checkout_free(c);
    }
}

/* ---- the dialog ---- */

static const char *const formats[] = {"raw", "qcow2", NULL};

static struct checkout *checkout_from_dialog(struct checkout_dialog *d)
{
    struct checkout *c = g_new0(struct checkout, 1);
    c->app = d->app;
    c->slot = d->slot;
    c->name = g_strdup(d->name);
    c->version = (uint32_t)gtk_spin_button_get_value_as_int(d->version);
    c->out = g_strdup(gtk_editable_get_text(GTK_EDITABLE(d->out)));
    c->format = g_strdup(formats[gtk_drop_down_get_selected(d->format) ? 1 : 0]);
    c->seeds = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < d->seed_checks->len; i++) {
        GtkCheckButton *b = g_ptr_array_index(d->seed_checks, i);
        if (gtk_check_button_get_active(b))
            g_ptr_array_add(c->seeds, g_strdup(g_object_get_data(G_OBJECT(b), "path")));
    }
    const char *extra = gtk_editable_get_text(GTK_EDITABLE(d->extra_seed));
    if (*extra)
        g_ptr_array_add(c->seeds, g_strdup(extra));
    return c;
}

static void dialog_free(gpointer data, GClosure *unused)
{
    struct checkout_dialog *d = data;
    if (d->chooser)
        gtk_native_dialog_destroy(GTK_NATIVE_DIALOG(d->chooser));
    g_clear_object(&d->chooser);
    g_ptr_array_free(d->seed_checks, TRUE);
    g_free(d->name);
    g_free(d);
}

static void on_dialog_answer(AdwMessageDialog *dlg, const char *response, gpointer data)
{
    struct checkout_dialog *d = data;
    if (!strcmp(response, "plan")) {
        if (!*gtk_editable_get_text(GTK_EDITABLE(d->out)))
            app_toast(d->app, "Name the file to check the image out to.");
        else
            start_plan(checkout_from_dialog(d));
    }
}

/* A field of the dialog: its label, then TARGET below it. */
static void add_field(GtkWidget *box, const char *mnemonic, GtkWidget *target, const char *name)
{
    field_label(box, mnemonic, target, name);
    gtk_box_append(GTK_BOX(box), target);
}

/* GTK 4.8's drop-down takes the focus with a toggle button inside it, which
 * has no name of its own: a screen reader (and Tab) would meet an unnamed
 * button.  It gets the drop-down's name. */
static void name_drop_down_button(GtkDropDown *dd, const char *name)
{
    GtkWidget *inner = gtk_widget_get_first_child(GTK_WIDGET(dd));
    if (inner && GTK_IS_TOGGLE_BUTTON(inner))
        set_accessible_name(inner, name);
}

static bool looks_like_image(const char *name)
{
    static const char *const suffixes[] = {".img", ".raw", ".qcow2", ".vmdk", ".vhdx",
                                           ".vhd", ".vdi", NULL};
    for (int i = 0; suffixes[i]; i++)
        if (g_str_has_suffix(name, suffixes[i]))
            return true;
    return false;
}

/* A checked seed row for PATH (taken over), or the row already there checked.
 * On by default: the user named the folder for its seeds, or picked the file,
 * and an unneeded seed costs little (its scan is cached, and a file whose size
 * matches nothing needed is never read). */
static void add_seed_check(struct checkout_dialog *d, char *path)
{
    for (guint i = 0; i < d->seed_checks->len; i++) {
        GtkCheckButton *old = g_ptr_array_index(d->seed_checks, i);
        if (!strcmp(g_object_get_data(G_OBJECT(old), "path"), path)) {
            gtk_check_button_set_active(old, TRUE);
            g_free(path);
            return;
        }
    }
    char *shown = quoted_name(path);
    GtkWidget *b = gtk_check_button_new_with_label(shown ? shown : "?");
    gtk_check_button_set_active(GTK_CHECK_BUTTON(b), TRUE);
    set_accessible_name(b, shown ? shown : "?");
    g_object_set_data_full(G_OBJECT(b), "path", path, g_free);
    g_ptr_array_add(d->seed_checks, b);
    gtk_box_append(d->seed_box, b);
    free(shown);
}

/* A check button per image file in the configured seed folders.  A folder
 * listing is quick, unlike a seed's scan, which the plan does on a worker. */
static void add_seed_checks(struct checkout_dialog *d)
{
    const struct vms_config *cfg = d->app->cfg;
    for (size_t i = 0; i < cfg->n_seed_folders; i++) {
        GDir *dir = g_dir_open(cfg->seed_folders[i], 0, NULL);
        const char *entry;
        while (dir && (entry = g_dir_read_name(dir)))
            if (looks_like_image(entry))
                add_seed_check(d, g_build_filename(cfg->seed_folders[i], entry, NULL));
        if (dir)
            g_dir_close(dir);
    }
}

static void on_seed_chosen(GtkNativeDialog *chooser, int response, gpointer data)
{
    struct checkout_dialog *d = data;
    GFile *f = response == GTK_RESPONSE_ACCEPT
                   ? gtk_file_chooser_get_file(GTK_FILE_CHOOSER(chooser)) : NULL;
    char *path = f ? g_file_get_path(f) : NULL;
    if (path)
        add_seed_check(d, path);
    if (f)
        g_object_unref(f);
    g_clear_object(&d->chooser);
}

/* Any file may be a seed (a seed's format is found by its content, not its
 * name), so the chooser filters nothing. */
static void on_add_seed_clicked(GtkButton *b, gpointer data)
{
    struct checkout_dialog *d = data;
    if (d->chooser)
        return;
    GtkWindow *parent = GTK_WINDOW(gtk_widget_get_root(GTK_WIDGET(b)));
    d->chooser = gtk_file_chooser_native_new("Seed image", parent, GTK_FILE_CHOOSER_ACTION_OPEN,
                                             "_Add", "_Cancel");
    g_signal_connect(d->chooser, "response", G_CALLBACK(on_seed_chosen), d);
    gtk_native_dialog_show(GTK_NATIVE_DIALOG(d->chooser));
}

static GtkWidget *add_seed_button_new(struct checkout_dialog *d)
{
    GtkWidget *b = gtk_button_new_with_mnemonic("_Add seed…");
    set_accessible_name(b, "Add seed");
    gtk_widget_set_halign(b, GTK_ALIGN_START);
    g_signal_connect(b, "clicked", G_CALLBACK(on_add_seed_clicked), d);
    return b;
}

static GtkWidget *build_fields(struct checkout_dialog *d, uint32_t latest)
{
    GtkWidget *box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 6);
    d->version = GTK_SPIN_BUTTON(gtk_spin_button_new_with_range(1, latest ? latest : 1, 1));
    gtk_spin_button_set_value(d->version, latest);
    add_field(box, "_Version", GTK_WIDGET(d->version), "Version");
    d->out = GTK_ENTRY(gtk_entry_new());
    char *def = g_strdup_printf("%s/%s.img", g_get_home_dir(), d->name);
    gtk_editable_set_text(GTK_EDITABLE(d->out), def);
    g_free(def);
    add_field(box, "_Output file", GTK_WIDGET(d->out), "Output file");
    gtk_entry_set_activates_default(d->out, TRUE);
    d->format = GTK_DROP_DOWN(gtk_drop_down_new_from_strings(formats));
    add_field(box, "_Format", GTK_WIDGET(d->format), "Format");
    name_drop_down_button(d->format, "Format");
    GtkWidget *seeds = gtk_label_new("Seeds: local images to copy from");
    gtk_label_set_xalign(GTK_LABEL(seeds), 0);
    gtk_box_append(GTK_BOX(box), seeds);
    d->seed_box = GTK_BOX(gtk_box_new(GTK_ORIENTATION_VERTICAL, 6));
    gtk_box_append(GTK_BOX(box), GTK_WIDGET(d->seed_box));
    add_seed_checks(d);
    gtk_box_append(GTK_BOX(box), add_seed_button_new(d));
    d->extra_seed = GTK_ENTRY(gtk_entry_new());
    add_field(box, "Another _seed file", GTK_WIDGET(d->extra_seed), "Seed file");
    gtk_entry_set_activates_default(d->extra_seed, TRUE);
    return box;
}

void checkout_dialog(struct app *a, struct repo_slot *slot, const struct image_row *image)
{
    if (a->checkout->running) {
        app_toast(a, "A checkout is running: wait for it, or cancel it.");
        return;
    }
    if (!a->window)
        return;
    struct checkout_dialog *d = g_new0(struct checkout_dialog, 1);
    *d = (struct checkout_dialog){.app = a, .slot = slot, .name = g_strdup(image->name),
                                  .seed_checks = g_ptr_array_new()};
    char *name = quoted_name(image->name);
    char *heading = g_strdup_printf("Check out %s", name ? name : "?");
    GtkWidget *w = adw_message_dialog_new(GTK_WINDOW(a->window), heading,
                                          "Nothing moves until you have seen the plan.");
    AdwMessageDialog *dlg = ADW_MESSAGE_DIALOG(w);
    adw_message_dialog_set_extra_child(dlg, build_fields(d, image->latest));
    adw_message_dialog_add_responses(dlg, "cancel", "_Cancel", "plan", "_Plan", NULL);
    adw_message_dialog_set_response_appearance(dlg, "plan", ADW_RESPONSE_SUGGESTED);
    adw_message_dialog_set_default_response(dlg, "plan");
    adw_message_dialog_set_close_response(dlg, "cancel");
    /* D goes with the dialog, whatever closes it (its parent, say) */
    g_signal_connect_data(dlg, "response", G_CALLBACK(on_dialog_answer), d, dialog_free, 0);
    gtk_window_present(GTK_WINDOW(w));
    g_free(heading);
    free(name);
}
