/* The window: a header bar, the repositories on the left, the selected
 * one's images on the right. */
#include "app.h"

#include <errno.h>
#include <glib-unix.h>
#include <stdlib.h>
#include <string.h>

#define APP_ID "org.vmsync.Gtk"

void set_accessible_name(GtkWidget *w, const char *name)
{
    gtk_accessible_update_property(GTK_ACCESSIBLE(w), GTK_ACCESSIBLE_PROPERTY_LABEL, name, -1);
}

void field_label(GtkWidget *box, const char *mnemonic, GtkWidget *target, const char *name)
{
    GtkWidget *l = gtk_label_new_with_mnemonic(mnemonic);
    gtk_label_set_xalign(GTK_LABEL(l), 0);
    gtk_label_set_mnemonic_widget(GTK_LABEL(l), target);
    set_accessible_name(target, name);
    gtk_box_append(GTK_BOX(box), l);
}

GtkLabel *wrapped_label(GtkWidget *box)
{
    GtkLabel *l = GTK_LABEL(gtk_label_new(""));
    gtk_label_set_xalign(l, 0);
    gtk_label_set_wrap(l, TRUE);
    gtk_box_append(GTK_BOX(box), GTK_WIDGET(l));
    return l;
}

void list_box_clear(GtkListBox *list)
{
    GtkWidget *child;
    while ((child = gtk_widget_get_first_child(GTK_WIDGET(list))))
        gtk_list_box_remove(list, child);
}

void close_on_escape(GtkWindow *w)
{
    GtkEventController *keys = gtk_shortcut_controller_new();
    gtk_shortcut_controller_add_shortcut(
        GTK_SHORTCUT_CONTROLLER(keys),
        gtk_shortcut_new(gtk_keyval_trigger_new(GDK_KEY_Escape, 0),
                         gtk_named_action_new("window.close")));
    gtk_widget_add_controller(GTK_WIDGET(w), keys);
}

/* The overlay queues toasts behind the one shown, and an error's stays
 * until dismissed: the newest news replaces it instead of waiting. */
static void replace_toast(struct app *a, const char *text, guint timeout)
{
    /* a toast's title is markup: escape, so a file name is shown as it is */
    char *markup = g_markup_escape_text(text, -1);
    AdwToast *t = adw_toast_new(markup);
    adw_toast_set_timeout(t, timeout);
    if (a->last_toast) {
        adw_toast_dismiss(a->last_toast);
        g_object_unref(a->last_toast);
    }
    a->last_toast = g_object_ref(t);
    a->last_toast_at = g_get_monotonic_time();
    adw_toast_overlay_add_toast(a->toasts, t);
    g_free(markup);
}

static gboolean show_next_toast(gpointer data)
{
    struct app *a = data;
    a->next_toast_source = 0;
    replace_toast(a, a->next_toast, a->next_toast_timeout);
    g_clear_pointer(&a->next_toast, g_free);
    return G_SOURCE_REMOVE;
}

/* libadwaita 1.2 frees a toast dismissed while it still slides in, as soon
 * as its hide ends, which can be before its show does (a toast that
 * replaced another slides in for 500 ms, a hide takes 300); the show's end
 * then reads the freed toast and the window crashes ("Saving as a new
 * image…" then, 14 ms later, the name's refusal did so).  So a toast stays
 * until it has settled, and what comes meanwhile waits: the newest of it. */
static void show_toast(struct app *a, const char *text, guint timeout)
{
    guint wait = a->last_toast ? toast_wait_ms(a->last_toast_at, g_get_monotonic_time()) : 0;
    if (!wait && !a->next_toast_source) {
        replace_toast(a, text, timeout);
        return;
    }
    g_free(a->next_toast);
    a->next_toast = g_strdup(text);
    a->next_toast_timeout = timeout;
    if (!a->next_toast_source)
        a->next_toast_source = g_timeout_add(wait, show_next_toast, a);
}

void app_toast(struct app *a, const char *text) { show_toast(a, text, 5); }

void app_toast_error(struct app *a, const fsp_error *err)
{
    char *text = error_text(err);
    show_toast(a, text ? text : "out of memory", 0); /* stays until dismissed */
    free(text);
}

static GtkWidget *repo_row_new(const char *url)
{
    char *shown = quoted_name(url);
    GtkWidget *label = gtk_label_new(shown ? shown : "?");
    gtk_label_set_xalign(GTK_LABEL(label), 0);
    gtk_label_set_ellipsize(GTK_LABEL(label), PANGO_ELLIPSIZE_MIDDLE);
    gtk_widget_set_margin_start(label, 12);
    gtk_widget_set_margin_end(label, 12);
    gtk_widget_set_margin_top(label, 10);
    gtk_widget_set_margin_bottom(label, 10);
    GtkWidget *row = gtk_list_box_row_new();
    gtk_list_box_row_set_child(GTK_LIST_BOX_ROW(row), label);
    set_accessible_name(row, shown ? shown : "?");
    free(shown);
    return row;
}

/* The settings' [bandwidth] windows: parsed once, then only read (by the
 * jobs' threads too) until the process ends. */
static struct vms_bw_window *bw_windows;
static size_t n_bw_windows;

static uint64_t rate_by_clock(void *ctx)
{
    (void)ctx;
    return vms_bw_rate_at(bw_windows, n_bw_windows, time(NULL));
}

/* The lines were checked when the file was read: one failing now is left out. */
static void load_windows(const struct vms_config *c)
{
    fsp_error err = {0};
    bw_windows = g_new0(struct vms_bw_window, c->n_bw_limits + 1);
    for (size_t i = 0; i < c->n_bw_limits; i++)
        if (!vms_bw_window_parse(c->bw_limits[i], &bw_windows[n_bw_windows], &err))
            n_bw_windows++;
}

/* Makes the list and the slots match the configuration (rows are only ever
 * added, so existing slots and their handles stay). */
static void sync_repo_list(struct app *a)
{
    for (size_t i = a->slots->len; i < a->cfg->n_repos; i++) {
        const struct vms_config_repo *r = &a->cfg->repos[i];
        struct repo_trust trust = {a->cfg->trusted_keys, a->cfg->n_trusted_keys};
        struct repo_slot *slot = repo_slot_new(r->url, r->identity, &trust, &a->me);
        repo_slot_set_limits(slot, r->bwlimit, r->timeout, n_bw_windows ? rate_by_clock : NULL, NULL);
        g_ptr_array_add(a->slots, slot);
        gtk_list_box_append(a->repo_list, repo_row_new(r->url));
    }
}

static void select_repo(struct app *a, size_t i)
{
    GtkListBoxRow *row = gtk_list_box_get_row_at_index(a->repo_list, (int)i);
    if (row)
        gtk_list_box_select_row(a->repo_list, row);
}

static void on_repo_selected(GtkListBox *list, GtkListBoxRow *row, gpointer data)
{
    struct app *a = data;
    if (!row) {
        gtk_stack_set_visible_child_name(a->content, "empty");
        return;
    }
    int i = gtk_list_box_row_get_index(row);
    gtk_stack_set_visible_child_name(a->content, "images");
    images_view_show(a->images, g_ptr_array_index(a->slots, i));
}

/* A local folder becomes absolute and must exist: the same path names it in
 * the file whichever folder the window was started from.  A URL is the
 * engine's to judge, when the handle opens. */
static bool is_url(const char *url)
{
    return !strncmp(url, "ssh://", 6) || !strncmp(url, "https://", 8) || !strncmp(url, "http://", 7);
}

static int normalise_location(const char *url, char **out, fsp_error *err)
{
    if (is_url(url)) {
        *out = g_strdup(url);
        return 0;
    }
    char *abs = realpath(url, NULL);
    if (!abs)
        return fsp_fail(err, FSP_EK_OPEN, -errno, "%s: cannot open: %s", url, strerror(errno));
    if (!g_file_test(abs, G_FILE_TEST_IS_DIR)) {
        free(abs);
        return fsp_fail(err, FSP_EK_OPEN, -ENOTDIR, "%s: not a directory", url);
    }
    *out = g_strdup(abs);
    free(abs);
    return 0;
}

int app_add_repo(struct app *a, const char *url, const char *identity, fsp_error *err)
{
    char *where = NULL;
    bool added = false;
    int rc = normalise_location(url, &where, err);
    if (!rc)
        rc = vms_config_add_repo(a->cfg, where, identity && *identity ? identity : NULL, &added, err);
    if (!rc) {
        /* listed even when it cannot be saved: the window works in memory */
        sync_repo_list(a);
        for (size_t i = 0; i < a->cfg->n_repos; i++)
            if (!strcmp(a->cfg->repos[i].url, where))
                select_repo(a, i);
    }
    if (!rc && added)
        rc = app_save_settings(a, err);
    g_free(where);
    return rc;
}

int app_save_settings(struct app *a, fsp_error *err)
{
    /* the file as loaded was not all of it: saving would wipe the rest */
    if (a->cfg_broken)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL,
                        "%s: not saved, as it could not be read (%s): fix it and start "
                        "vmsync-gtk again", a->cfg_path, a->cfg_broken);
    return vms_config_save(a->cfg, a->cfg_path, err);
}

static void on_add_clicked(GtkButton *b, gpointer data) { repo_add_dialog(data); }

static GtkWidget *build_header(struct app *a)
{
    GtkWidget *header = adw_header_bar_new();
    GtkWidget *add = gtk_button_new_from_icon_name("list-add-symbolic");
    gtk_widget_set_tooltip_text(add, "Add a repository (Ctrl+N)");
    set_accessible_name(add, "Add repository");
    g_signal_connect(add, "clicked", G_CALLBACK(on_add_clicked), a);
    adw_header_bar_pack_start(ADW_HEADER_BAR(header), add);
    adw_header_bar_pack_end(ADW_HEADER_BAR(header), snooze_button_new(a));
    return header;
}

static GtkWidget *build_sidebar(struct app *a)
{
    a->repo_list = GTK_LIST_BOX(gtk_list_box_new());
    set_accessible_name(GTK_WIDGET(a->repo_list), "Repositories");
    gtk_widget_add_css_class(GTK_WIDGET(a->repo_list), "navigation-sidebar");
    g_signal_connect(a->repo_list, "row-selected", G_CALLBACK(on_repo_selected), a);
    GtkWidget *scroll = gtk_scrolled_window_new();
    gtk_scrolled_window_set_child(GTK_SCROLLED_WINDOW(scroll), GTK_WIDGET(a->repo_list));
    gtk_scrolled_window_set_policy(GTK_SCROLLED_WINDOW(scroll), GTK_POLICY_NEVER,
                                   GTK_POLICY_AUTOMATIC);
    gtk_widget_set_size_request(scroll, 240, -1);
    return scroll;
}

static GtkWidget *build_empty_page(void)
{
    GtkWidget *status = adw_status_page_new();
    adw_status_page_set_icon_name(ADW_STATUS_PAGE(status), "drive-harddisk-symbolic");
    adw_status_page_set_title(ADW_STATUS_PAGE(status), "No repository yet");
    adw_status_page_set_description(ADW_STATUS_PAGE(status),
                                    "Add a repository to see its images.");
    return status;
}

static GtkWidget *build_content(struct app *a)
{
    a->content = GTK_STACK(gtk_stack_new());
    gtk_stack_add_named(a->content, build_empty_page(), "empty");
    a->images = images_view_new(a);
    gtk_stack_add_named(a->content, images_view_widget(a->images), "images");
    gtk_widget_set_hexpand(GTK_WIDGET(a->content), TRUE);
    GtkWidget *panes = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 0);
    gtk_box_append(GTK_BOX(panes), build_sidebar(a));
    gtk_box_append(GTK_BOX(panes), gtk_separator_new(GTK_ORIENTATION_VERTICAL));
    gtk_box_append(GTK_BOX(panes), GTK_WIDGET(a->content));
    gtk_widget_set_vexpand(panes, TRUE);
    GtkWidget *box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 0);
    gtk_box_append(GTK_BOX(box), build_header(a));
    gtk_box_append(GTK_BOX(box), panes);
    a->checkout = checkout_panel_new(a);
    gtk_box_append(GTK_BOX(box), checkout_panel_widget(a->checkout));
    a->toasts = ADW_TOAST_OVERLAY(adw_toast_overlay_new());
    adw_toast_overlay_set_child(a->toasts, box);
    return GTK_WIDGET(a->toasts);
}

/* Closing the window cancels what runs; the process ends once each job has
 * reported back (each holds the application). */
static gboolean on_close_request(GtkWindow *w, gpointer data)
{
    struct app *a = data;
    for (guint i = 0; i < a->slots->len; i++)
        repo_slot_shut(g_ptr_array_index(a->slots, i));
    return FALSE;
}

/* A [trust] key that cannot be read fails the opening of every handle (no
 * version is taken on a trust that cannot be checked), so it is said at the
 * start, naming the settings file and the key's, as the file's own errors
 * are. */
static int check_trusted_keys(const struct app *a, fsp_error *err)
{
    struct vms_public_key key;
    fsp_error why = {0};
    int rc = 0;
    for (size_t i = 0; !rc && i < a->cfg->n_trusted_keys; i++)
        rc = vms_public_key_load(a->cfg->trusted_keys[i], &key, &why);
    if (rc)
        rc = fsp_fail(err, why.kind, rc, "%s: [trust]: %s; no repository opens until it is fixed",
                      a->cfg_path, why.msg);
    return rc;
}

/* The settings (the system file's and the user's, which alone is saved),
 * then REPO from the command line.  Errors are toasts: the
 * window opens whatever the file holds, so the user can see what is wrong.
 * A file that failed to load is never saved over (app_save_settings). */
static void load_settings(struct app *a)
{
    fsp_error err = {0};
    int rc = vms_config_default_path(a->cfg_path, sizeof a->cfg_path, &err);
    if (!rc)
        rc = vms_config_load_all(vms_config_system_path(), a->cfg_path, &a->cfg, &err);
    if (rc) {
        app_toast_error(a, &err);
        a->cfg_broken = g_strdup(err.msg);
        a->cfg = calloc(1, sizeof *a->cfg);
    } else if (check_trusted_keys(a, &err))
        app_toast_error(a, &err);
    load_windows(a->cfg);
    sync_repo_list(a);
    if (a->initial_repo && app_add_repo(a, a->initial_repo, NULL, &err))
        app_toast_error(a, &err);
    else if (a->cfg->n_repos && !a->initial_repo)
        select_repo(a, 0);
}

/* ---- the icon and the keyboard ---- */

/* Run from the build tree (build/vmsync-gtk), the icon is not installed:
 * gui-gtk/data/icons beside the build folder, laid out as an installed
 * hicolor theme, joins the theme's search path.  (GTK puts only a themed
 * icon on the window, not one lying loose in a search folder.)  An
 * installed icon wins, as the theme already has it. */
static void find_icon_when_not_installed(void)
{
    GtkIconTheme *theme = gtk_icon_theme_get_for_display(gdk_display_get_default());
    char *exe = g_file_read_link("/proc/self/exe", NULL);
    if (!exe || gtk_icon_theme_has_icon(theme, APP_ID)) {
        g_free(exe);
        return;
    }
    char *bindir = g_path_get_dirname(exe);
    char *icons = g_build_filename(bindir, "..", "gui-gtk", "data", "icons", NULL);
    char *svg = g_build_filename(icons, "hicolor", "scalable", "apps", APP_ID ".svg", NULL);
    if (g_file_test(svg, G_FILE_TEST_IS_REGULAR))
        gtk_icon_theme_add_search_path(theme, icons);
    g_free(svg);
    g_free(icons);
    g_free(bindir);
    g_free(exe);
}

static void on_add_action(GSimpleAction *act, GVariant *param, gpointer data)
{
    repo_add_dialog(data);
}

static void on_refresh_action(GSimpleAction *act, GVariant *param, gpointer data)
{
    struct app *a = data;
    images_view_refresh(a->images);
}

static void on_close_action(GSimpleAction *act, GVariant *param, gpointer data)
{
    struct app *a = data;
    gtk_window_close(GTK_WINDOW(a->window)); /* through close-request, as the button */
}

/* Ctrl+N adds a repository, F5 and Ctrl+R list the images again, Ctrl+W and
 * Ctrl+Q close the window. */
static void add_shortcuts(struct app *a)
{
    static const GActionEntry entries[] = {
        {.name = "add-repository", .activate = on_add_action},
        {.name = "refresh", .activate = on_refresh_action},
        {.name = "close", .activate = on_close_action},
    };
    static const char *const add[] = {"<Control>n", NULL};
    static const char *const refresh[] = {"F5", "<Control>r", NULL};
    static const char *const close[] = {"<Control>w", "<Control>q", NULL};
    g_action_map_add_action_entries(G_ACTION_MAP(a->window), entries, G_N_ELEMENTS(entries), a);
    gtk_application_set_accels_for_action(GTK_APPLICATION(a->gtk), "win.add-repository", add);
    gtk_application_set_accels_for_action(GTK_APPLICATION(a->gtk), "win.refresh", refresh);
    gtk_application_set_accels_for_action(GTK_APPLICATION(a->gtk), "win.close", close);
}

static void on_activate(GApplication *gapp, gpointer data)
{
    struct app *a = data;
    if (a->window) {
        gtk_window_present(GTK_WINDOW(a->window));
        return;
    }
    find_icon_when_not_installed();
    gtk_window_set_default_icon_name(APP_ID);
    a->window = ADW_APPLICATION_WINDOW(adw_application_window_new(GTK_APPLICATION(gapp)));
    /* NULL once destroyed: late answers then open no dialog on it */
    g_object_add_weak_pointer(G_OBJECT(a->window), (gpointer *)&a->window);
    gtk_window_set_title(GTK_WINDOW(a->window), "vmsync");
    gtk_window_set_default_size(GTK_WINDOW(a->window), 900, 580);
    adw_application_window_set_content(a->window, build_content(a));
    /* kept past the window's end: a job that ends after the close (it was
     * cancelled, or its question answered "no") updates these widgets,
     * unseen, instead of freed ones */
    g_object_ref(a->toasts);
    add_shortcuts(a);
    g_signal_connect(a->window, "close-request", G_CALLBACK(on_close_request), a);
    load_settings(a);
    gtk_window_present(GTK_WINDOW(a->window));
}

/* SIGTERM and SIGINT close the window as its close button does, so that
 * the process always ends through the same path. */
static gboolean on_quit_signal(gpointer data)
{
    struct app *a = data;
    if (a->window)
        gtk_window_close(GTK_WINDOW(a->window));
    return G_SOURCE_CONTINUE;
}

static void app_free(struct app *a)
{
    images_view_free(a->images);
    checkout_panel_free(a->checkout);
    for (guint i = 0; i < a->slots->len; i++)
        repo_slot_free(g_ptr_array_index(a->slots, i));
    g_ptr_array_free(a->slots, TRUE);
    vms_config_free(a->cfg);
    g_free(bw_windows);
    g_free(a->cfg_broken);
    if (a->next_toast_source)
        g_source_remove(a->next_toast_source); /* the window is gone: nobody sees it */
    g_free(a->next_toast);
    if (a->last_toast)
        g_object_unref(a->last_toast);
    if (a->toasts)
        g_object_unref(a->toasts);
}

int app_run(const char *repo)
{
    struct app a = {.initial_repo = repo, .slots = g_ptr_array_new()};
    who_resolve(&a.me);
    /* NON_UNIQUE: each process is its own instance, so that tests (and two
     * users' sessions) never hand their window to another process. */
    a.gtk = adw_application_new(APP_ID, G_APPLICATION_NON_UNIQUE);
    g_signal_connect(a.gtk, "activate", G_CALLBACK(on_activate), &a);
    guint term = g_unix_signal_add(SIGTERM, on_quit_signal, &a);
    guint intr = g_unix_signal_add(SIGINT, on_quit_signal, &a);
    int status = g_application_run(G_APPLICATION(a.gtk), 0, NULL);
    g_source_remove(term);
    g_source_remove(intr);
    app_free(&a);
    g_object_unref(a.gtk);
    return status;
}
