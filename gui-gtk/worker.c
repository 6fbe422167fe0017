/* Engine work on worker threads: see worker.h. */
#include "worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ask.h"

struct repo_slot {
    char *url, *identity;
    char **trusted_keys;     /* the handle reads them as it opens */
    const struct who *me;
    struct vms_remote_opts remote;
    struct vms_client_opts opts;
    double rate;        /* main loop only */
    GMutex lock;        /* guards the fields below, shared with the worker */
    vms_client *client; /* published once opened; used on workers, one at a time */
    struct job *running;
    bool shut;          /* the window is closing: no job starts any more */
    struct vms_event newest;
    bool event_pending; /* an idle callback is queued to deliver NEWEST */
    struct ask_line ask; /* the engine's questions to the user */
};

static int forward_event(void *ctx, const struct vms_event *ev);
static enum vms_host_key_answer ask_host_key(void *ctx, const struct vms_host_key *k);

struct repo_slot *repo_slot_new(const char *url, const char *identity,
                                const struct repo_trust *trust, const struct who *me)
{
    struct repo_slot *s = g_new0(struct repo_slot, 1);
    s->url = g_strdup(url);
    s->identity = g_strdup(identity);
    s->trusted_keys = g_new0(char *, trust->n_keys + 1);
    for (size_t i = 0; i < trust->n_keys; i++)
        s->trusted_keys[i] = g_strdup(trust->keys[i]);
    s->me = me;
    s->remote.identity = s->identity;
    /* known_hosts left NULL: the engine picks the file as it does for the CLI */
    s->remote.host_key = ask_host_key;
    s->remote.host_key_ctx = s;
    s->opts = (struct vms_client_opts){.remote = &s->remote, .user = me->user,
                                       .host = me->host, .event = forward_event, .ctx = s,
                                       .trusted_keys = (const char *const *)s->trusted_keys,
                                       .n_trusted_keys = trust->n_keys};
    g_mutex_init(&s->lock);
    ask_line_init(&s->ask);
    return s;
}

void repo_slot_set_limits(struct repo_slot *s, uint64_t bwlimit, int timeout,
                          uint64_t (*rate_now)(void *ctx), void *ctx)
{
    s->remote.bwlimit = bwlimit;
    s->remote.timeout = timeout;
    s->remote.bwlimit_now = bwlimit ? NULL : rate_now;
    s->remote.bwlimit_ctx = ctx;
}

void repo_slot_free(struct repo_slot *s)
{
    if (!s)
        return;
    /* every job holds the application (job_start), so none runs now */
    g_warn_if_fail(!repo_slot_busy(s));
    vms_client_close(s->client);
    g_mutex_clear(&s->lock);
    ask_line_clear(&s->ask);
    g_free(s->url);
    g_free(s->identity);
    g_strfreev(s->trusted_keys);
    g_free(s);
}

const char *repo_slot_url(const struct repo_slot *s) { return s->url; }
bool repo_slot_remote(const struct repo_slot *s) { return !strncmp(s->url, "ssh://", 6); }

double repo_slot_rate(const struct repo_slot *s) { return s->rate; }
void repo_slot_set_rate(struct repo_slot *s, double rate) { s->rate = rate; }

bool repo_slot_busy(const struct repo_slot *s)
{
    g_mutex_lock((GMutex *)&s->lock);
    bool busy = s->running != NULL;
    g_mutex_unlock((GMutex *)&s->lock);
    return busy;
}

void repo_slot_cancel(struct repo_slot *s)
{
    g_mutex_lock(&s->lock);
    /* the client is closed only when no job runs, so it is alive here */
    if (s->running && s->client)
        vms_client_cancel(s->client);
    g_mutex_unlock(&s->lock);
    /* a worker waiting for the user waits in no engine call: answer it */
    ask_line_cancel(&s->ask);
}

void repo_slot_shut(struct repo_slot *s)
{
    g_mutex_lock(&s->lock);
    s->shut = true;
    g_mutex_unlock(&s->lock);
    repo_slot_cancel(s);
}

const char *repo_slot_ask(struct repo_slot *s, const struct question *q)
{
    return ask_wait(&s->ask, q);
}

/* ---- host keys: on the worker, while the handle connects ---- */

static const struct ask_choice host_key_choices[] = {
    {"refuse", "_Refuse", ADW_RESPONSE_DEFAULT},
    {"once", "Accept _once", ADW_RESPONSE_DEFAULT},
    {"remember", "Re_member", ADW_RESPONSE_DEFAULT},
};
static const struct ask_choice told_choices[] = {{"close", "_Close", ADW_RESPONSE_DEFAULT}};

/* An unknown key is the user's to judge (Refuse is the default: a key is
 * trusted only on purpose); any other state is refused whatever the
 * answer, so the dialog only says why. */
static enum vms_host_key_answer ask_host_key(void *ctx, const struct vms_host_key *k)
{
    struct repo_slot *s = ctx;
    bool askable = host_key_askable(k);
    char *heading = host_key_heading(k), *body = host_key_body(k);
    struct question q = {.heading = heading ? heading : "Host key", .body = body ? body : "",
                         .choices = askable ? host_key_choices : told_choices,
                         .n_choices = askable ? G_N_ELEMENTS(host_key_choices) : 1,
                         .default_id = askable ? "refuse" : "close",
                         .refuse_id = askable ? "refuse" : "close"};
    const char *answer = heading && body ? repo_slot_ask(s, &q) : "refuse";
    free(heading);
    free(body);
    if (!askable || !strcmp(answer, "refuse"))
        return VMS_HOST_KEY_REFUSE;
    return strcmp(answer, "remember") ? VMS_HOST_KEY_ACCEPT_ONCE : VMS_HOST_KEY_REMEMBER;
}

/* ---- events: worker to main loop ---- */

static gboolean deliver_event(gpointer data)
{
    struct repo_slot *s = data;
    g_mutex_lock(&s->lock);
    struct vms_event ev = s->newest;
    struct job *j = s->running;
    s->event_pending = false;
    g_mutex_unlock(&s->lock);
    if (j && j->event)
        j->event(j, &ev);
    return G_SOURCE_REMOVE;
}

/* On the worker.  DONE is left to the job's own completion; the rest keep
 * numbers only (SUBJECT and ERROR live during this call alone). */
static int forward_event(void *ctx, const struct vms_event *ev)
{
    struct repo_slot *s = ctx;
    if (ev->phase == VMS_PHASE_DONE)
        return 0;
    g_mutex_lock(&s->lock);
    s->newest = *ev;
    s->newest.subject = NULL;
    s->newest.error = NULL;
    bool queue = !s->event_pending;
    s->event_pending = true;
    g_mutex_unlock(&s->lock);
    if (queue)
        g_idle_add(deliver_event, s);
    return 0;
}

void job_post_event(struct job *j, const struct vms_event *ev) { forward_event(j->slot, ev); }

/* ---- private folders ---- */

char *private_dir_make(const char *prefix, fsp_error *err)
{
    char *templ = g_strdup_printf("%s-XXXXXX", prefix);
    char *dir = g_build_filename(g_get_tmp_dir(), templ, NULL);
    g_free(templ);
    if (mkdtemp(dir))
        return dir;
    fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot create a temporary folder: %s", dir,
             strerror(errno));
    g_free(dir);
    return NULL;
}

void private_dir_remove(char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *entry;
    while (d && (entry = g_dir_read_name(d))) {
        char *path = g_build_filename(dir, entry, NULL);
        unlink(path);
        g_free(path);
    }
    if (d)
        g_dir_close(d);
    rmdir(dir);
    g_free(dir);
}

/* ---- jobs ---- */

struct outcome {
    int rc;
    fsp_error err;
};

static void run_on_worker(GTask *task, gpointer src, gpointer data, GCancellable *unused)
{
    struct job *j = data;
    struct repo_slot *s = j->slot;
    struct outcome *o = g_new0(struct outcome, 1);
    /* only this job's worker writes CLIENT, so reading it unlocked is safe;
     * repo_slot_cancel reads it from the main loop, under the lock */
    vms_client *c = s->client;
    if (!c) {
        o->rc = vms_client_open(s->url, &s->opts, &c, &o->err);
        g_mutex_lock(&s->lock);
        s->client = c;
        g_mutex_unlock(&s->lock);
    }
    if (!o->rc)
        o->rc = j->run(j, c, &o->err);
    g_task_return_pointer(task, o, g_free);
}

static void finish_on_main(GObject *src, GAsyncResult *res, gpointer data)
{
    struct job *j = data;
    struct repo_slot *s = j->slot;
    struct outcome *o = g_task_propagate_pointer(G_TASK(res), NULL);
    g_mutex_lock(&s->lock);
    s->running = NULL;
    g_mutex_unlock(&s->lock);
    j->done(j, o->rc, &o->err);
    g_free(o);
    g_application_release(g_application_get_default());
}

bool job_start(struct repo_slot *s, struct job *j)
{
    g_mutex_lock(&s->lock);
    bool free_now = !s->running && !s->shut;
    if (free_now)
        s->running = j;
    g_mutex_unlock(&s->lock);
    if (!free_now)
        return false;
    j->slot = s;
    ask_line_reset(&s->ask);
    /* the process outlives its window until the job's DONE has run, so
     * that no worker is left using a handle being closed */
    g_application_hold(g_application_get_default());
    GTask *task = g_task_new(NULL, NULL, finish_on_main, j);
    g_task_set_task_data(task, j, NULL);
    g_task_run_in_thread(task, run_on_worker);
    g_object_unref(task);
    return true;
}
