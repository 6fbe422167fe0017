/* The window's view models: see model.h. */
#include "model.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void who_resolve(struct who *me)
{
    const char *host = getenv("VMSYNC_HOST"), *user = getenv("USER");
    if (host && *host)
        snprintf(me->host, sizeof me->host, "%s", host);
    else if (gethostname(me->host, sizeof me->host - 1) < 0)
        snprintf(me->host, sizeof me->host, "unknown");
    struct passwd *pw = user && *user ? NULL : getpwuid(getuid());
    snprintf(me->user, sizeof me->user, "%s", user && *user ? user : pw ? pw->pw_name : "unknown");
}

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

int image_row_copy(const struct vms_image_info *in, struct image_row *out)
{
    const struct vms_lease_info *l = in->lease;
    *out = (struct image_row){.latest = in->latest, .size = in->size, .created = in->created};
    out->name = dup_or_empty(in->name);
    if (l) {
        out->leased = true;
        out->lease_version = l->version;
        out->since = l->since;
        out->holder_user = dup_or_empty(l->user);
        out->holder_host = dup_or_empty(l->host);
    }
    bool ok = out->name && (!l || (out->holder_user && out->holder_host));
    if (!ok)
        image_row_clear(out);
    return ok ? 0 : -ENOMEM;
}

void image_row_clear(struct image_row *r)
{
    free(r->name);
    free(r->holder_user);
    free(r->holder_host);
    *r = (struct image_row){0};
}

enum image_state image_state(const struct image_row *r, const struct who *me, bool remote,
                             bool downloading)
{
    if (downloading)
        return IMAGE_DOWNLOADING;
    if (!r->leased)
        return IMAGE_NOT_HERE;
    bool same_host = !strcmp(r->holder_host, me->host);
    bool same_user = remote || !strcmp(r->holder_user, me->user);
    return same_host && same_user ? IMAGE_CHECKED_OUT : IMAGE_HELD_ELSEWHERE;
}

/* Runs PUT into a string, as the CLI would print to a terminal. */
static char *put_to_string(void (*put)(FILE *, const char *), const char *raw)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    put(f, raw ? raw : "");
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

char *quoted_name(const char *raw) { return put_to_string(vms_put_name, raw); }
char *quoted_text(const char *raw) { return put_to_string(vms_put_text, raw); }
char *error_text(const fsp_error *err) { return quoted_text(err->msg); }

void format_time(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    buf[0] = 0;
    if (gmtime_r(&tt, &tm))
        strftime(buf, len, "%Y-%m-%d %H:%M UTC", &tm);
}

void format_mib(uint64_t bytes, char *buf, size_t len)
{
    snprintf(buf, len, "%.1f MiB", bytes / 1048576.0);
}

static char *holder_text(const struct image_row *r)
{
    char *user = quoted_name(r->holder_user), *host = quoted_name(r->holder_host), *out = NULL;
    char since[40];
    format_time(r->since, since, sizeof since);
    if (user && host && asprintf(&out, "held by %s@%s since %s (version %u)", user, host, since,
                                 r->lease_version) < 0)
        out = NULL;
    free(user);
    free(host);
    return out;
}

char *image_state_text(const struct image_row *r, enum image_state s)
{
    char *out = NULL;
    switch (s) {
    case IMAGE_NOT_HERE:
        return strdup("not here");
    case IMAGE_DOWNLOADING:
        return strdup("being downloaded");
    case IMAGE_CHECKED_OUT:
        if (asprintf(&out, "checked out here (version %u)", r->lease_version) < 0)
            return NULL;
        return out;
    case IMAGE_HELD_ELSEWHERE:
        return holder_text(r);
    }
    return NULL;
}

char *image_summary_text(const struct image_row *r, enum image_state s)
{
    char size[32], *state = image_state_text(r, s), *out = NULL;
    format_mib(r->size, size, sizeof size);
    if (state && asprintf(&out, "version %u · %s · %s", r->latest, size, state) < 0)
        out = NULL;
    free(state);
    return out;
}

/* ---- a checkout's plan and progress ---- */

static void format_rate(double rate, char *buf, size_t len)
{
    snprintf(buf, len, "%.1f MiB/s", rate / 1048576.0);
}

static void format_seconds(double s, char *buf, size_t len)
{
    if (s < 0)
        snprintf(buf, len, "unknown");
    else if (s < 100)
        snprintf(buf, len, "%.0f s", s < 1 ? 1 : s);
    else
        snprintf(buf, len, "%.0f min", s / 60);
}

char *plan_text(const struct vms_plan_figures *f, double rate)
{
    char disk[32], fetch[32], secs[32], speed[32], *out = NULL;
    int n;
    if (f->in_place)
        n = asprintf(&out, "The file already holds version %u: nothing to move.", f->version);
    else {
        format_mib(f->bytes_from_seeds + f->bytes_resumed, disk, sizeof disk);
        format_mib(f->bytes_to_fetch_raw, fetch, sizeof fetch);
        format_seconds(rate > 0 ? f->bytes_to_fetch_raw / rate : -1, secs, sizeof secs);
        format_rate(rate, speed, sizeof speed);
        if (rate > 0)
            n = asprintf(&out, "%s from your disk, %s to download, about %s at the measured "
                         "rate (%s)", disk, fetch, secs, speed);
        else
            n = asprintf(&out, "%s from your disk, %s to download; the time is unknown: no "
                         "rate has been measured yet", disk, fetch);
    }
    return n < 0 ? NULL : out;
}

void rate_meter_update(struct rate_meter *m, const struct vms_event *ev, double now)
{
    if (ev->phase != m->phase)
        *m = (struct rate_meter){.phase = ev->phase};
    m->done = ev->done;
    m->total = ev->total;
    m->times[m->head] = now;
    m->dones[m->head] = ev->done;
    m->head = (m->head + 1) % RATE_SAMPLES;
    if (m->n < RATE_SAMPLES)
        m->n++;
}

double rate_meter_rate(const struct rate_meter *m)
{
    if (m->n < 2)
        return 0;
    unsigned newest = (m->head + RATE_SAMPLES - 1) % RATE_SAMPLES;
    unsigned oldest = (m->head + RATE_SAMPLES - m->n) % RATE_SAMPLES;
    double span = m->times[newest] - m->times[oldest];
    if (span < 0.5 || m->dones[newest] < m->dones[oldest])
        return 0;
    return (m->dones[newest] - m->dones[oldest]) / span;
}

double rate_meter_eta(const struct rate_meter *m)
{
    double rate = rate_meter_rate(m);
    if (rate <= 0 || m->total < m->done)
        return -1;
    return (m->total - m->done) / rate;
}

/* Where each phase sits on the one bar: from [0] to [1]. */
static const double phase_spans[][2] = {
    [VMS_PHASE_CONNECT] = {0, 0.02},      [VMS_PHASE_SCAN_SEED] = {0.02, 0.1},
    [VMS_PHASE_SCAN_OUTPUT] = {0.02, 0.1}, [VMS_PHASE_SEED_COPY] = {0.1, 0.85},
    [VMS_PHASE_FETCH] = {0.1, 0.85},      [VMS_PHASE_VERIFY] = {0.85, 0.95},
    [VMS_PHASE_CONVERT] = {0.95, 1},      [VMS_PHASE_DONE] = {1, 1},
};

double checkout_fraction(const struct rate_meter *m)
{
    if ((unsigned)m->phase >= sizeof phase_spans / sizeof phase_spans[0])
        return 0;
    const double *span = phase_spans[m->phase];
    double within = m->total ? (double)m->done / m->total : 0;
    return span[0] + (span[1] - span[0]) * (within > 1 ? 1 : within);
}

static const char *phase_words(enum vms_phase p)
{
    switch (p) {
    case VMS_PHASE_CONNECT: return "Connecting";
    case VMS_PHASE_SCAN_SEED: return "Reading a seed";
    case VMS_PHASE_SCAN_OUTPUT: return "Reading the output";
    case VMS_PHASE_SEED_COPY: return "Copying from your disk";
    case VMS_PHASE_FETCH: return "Fetching";
    case VMS_PHASE_SCAN_IMAGE: return "Reading the image";
    case VMS_PHASE_SEND: return "Sending";
    case VMS_PHASE_VERIFY: return "Verifying";
    case VMS_PHASE_CONVERT: return "Converting to qcow2";
    default: return "Working";
    }
}

char *progress_text(const struct rate_meter *m)
{
    char done[32], total[32], speed[32] = "rate unknown", left[32], when[48], *out = NULL;
    double rate = rate_meter_rate(m);
    format_mib(m->done, done, sizeof done);
    format_mib(m->total, total, sizeof total);
    format_seconds(rate_meter_eta(m), left, sizeof left);
    if (rate > 0) {
        format_rate(rate, speed, sizeof speed);
        snprintf(when, sizeof when, "%s left", left);
    } else
        snprintf(when, sizeof when, "time left unknown");
    if (asprintf(&out, "%s: %s of %s · %s · %s", phase_words(m->phase), done, total, speed,
                 when) < 0)
        return NULL;
    return out;
}

/* ---- toasts ---- */

unsigned toast_wait_ms(int64_t shown, int64_t now)
{
    int64_t left = shown + (int64_t)TOAST_SETTLE_MS * 1000 - now;
    if (left <= 0)
        return 0;
    if (left > (int64_t)TOAST_SETTLE_MS * 1000) /* a clock that went back: wait it all */
        return TOAST_SETTLE_MS;
    return (unsigned)((left + 999) / 1000);
}

/* ---- decisions: a host key, another host's lease ---- */

bool host_key_askable(const struct vms_host_key *k) { return k->state == VMS_HOST_KEY_UNKNOWN; }

/* K's strings as the CLI prints them, each freed by key_words_free. */
struct key_words {
    char *host, *type, *fingerprint, *file;
};

static bool key_words_get(const struct vms_host_key *k, struct key_words *w)
{
    *w = (struct key_words){quoted_text(k->host), quoted_text(k->type),
                            quoted_text(k->fingerprint), quoted_text(k->known_hosts)};
    return w->host && w->type && w->fingerprint && w->file;
}

static void key_words_free(struct key_words *w)
{
    free(w->host);
    free(w->type);
    free(w->fingerprint);
    free(w->file);
}

char *host_key_heading(const struct vms_host_key *k)
{
    static const char *const words[][2] = {
        [VMS_HOST_KEY_UNKNOWN] = {"Trust the host key of ", "?"},
        [VMS_HOST_KEY_CHANGED] = {"The host key of ", " has changed"},
        [VMS_HOST_KEY_OTHER_TYPE] = {"", " offers a key of another type"},
    };
    static const char *const refused[2] = {"The host key of ", " is refused"};
    unsigned st = (unsigned)k->state;
    const char *const *w = st < sizeof words / sizeof words[0] && words[st][1] ? words[st] : refused;
    char *host = quoted_text(k->host), *out = NULL;
    if (host && asprintf(&out, "%s%s%s", w[0], host, w[1]) < 0)
        out = NULL;
    free(host);
    return out;
}

static int unknown_key_body(char **out, const struct key_words *w)
{
    return asprintf(out, "%s offers the host key %s %s, which %s does not hold.\n\n"
                    "Check the fingerprint with the server's administrator before you trust "
                    "it. Accept once connects this time only; Remember also adds the key to %s.",
                    w->host, w->type, w->fingerprint, w->file, w->file);
}

static int changed_key_body(char **out, const struct key_words *w)
{
    return asprintf(out, "%s now offers the host key %s %s, not the one %s holds for it.\n\n"
                    "The connection is refused: someone may be intercepting it. If the "
                    "server's key was really replaced, remove its old line from %s.",
                    w->host, w->type, w->fingerprint, w->file, w->file);
}

static int other_type_body(char **out, const struct key_words *w)
{
    return asprintf(out, "%s offers the host key %s %s, of another type than the one %s "
                    "holds for it.\n\nThe connection is refused: someone may be intercepting "
                    "it. If the server's keys were really replaced, remove its old line from %s.",
                    w->host, w->type, w->fingerprint, w->file, w->file);
}

/* A state this window does not know yet: the engine refuses it. */
static int refused_key_body(char **out, const struct key_words *w)
{
    return asprintf(out, "%s offers the host key %s %s, which %s does not vouch for.\n\n"
                    "The connection is refused.", w->host, w->type, w->fingerprint, w->file);
}

char *host_key_body(const struct vms_host_key *k)
{
    struct key_words w;
    char *out = NULL;
    int n = -1;
    if (key_words_get(k, &w)) {
        switch (k->state) {
        case VMS_HOST_KEY_UNKNOWN: n = unknown_key_body(&out, &w); break;
        case VMS_HOST_KEY_CHANGED: n = changed_key_body(&out, &w); break;
        case VMS_HOST_KEY_OTHER_TYPE: n = other_type_body(&out, &w); break;
        default: n = refused_key_body(&out, &w); break;
        }
    }
    key_words_free(&w);
    return n < 0 ? NULL : out;
}

char *steal_heading(const struct vms_lease_info *held)
{
    char *name = quoted_name(held->image), *out = NULL;
    if (name && asprintf(&out, "Take over the lease of %s?", name) < 0)
        out = NULL;
    free(name);
    return out;
}

char *steal_body(const struct vms_lease_info *held)
{
    char *name = quoted_name(held->image), *user = quoted_name(held->user),
         *host = quoted_name(held->host), *out = NULL, since[40];
    format_time(held->since, since, sizeof since);
    if (name && user && host &&
        asprintf(&out, "%s is checked out by %s@%s since %s (version %u).\n\n"
                 "If you take it over, the lease becomes yours: their copy stays on their "
                 "machine, but they can no longer check it in. The take-over is recorded in "
                 "the repository's audit log.", name, user, host, since, held->version) < 0)
        out = NULL;
    free(name);
    free(user);
    free(host);
    return out;
}

/* ---- checkin ---- */

void change_counts_add(struct change_counts *n, const struct vms_diff_item *d)
{
    switch (d->change) {
    case VMS_ADDED: n->added++; break;
    case VMS_REMOVED: n->removed++; break;
    case VMS_CHANGED: n->changed++; break;
    case VMS_MOVED: n->moved++; break;
    }
}

char *changes_text(const struct change_counts *n, uint64_t new_bytes)
{
    char mib[32], *out = NULL;
    format_mib(new_bytes, mib, sizeof mib);
    if (asprintf(&out, "%llu added, %llu removed, %llu changed, %llu moved · about %s of new "
                 "data (before compression)", (unsigned long long)n->added,
                 (unsigned long long)n->removed, (unsigned long long)n->changed,
                 (unsigned long long)n->moved, mib) < 0)
        return NULL;
    return out;
}

double checkin_fraction(const struct rate_meter *m, bool remote)
{
    double within = m->total ? (double)m->done / m->total : 0;
    within = within > 1 ? 1 : within;
    if (!remote)
        return m->phase == VMS_PHASE_SCAN_IMAGE ? within : 0;
    switch (m->phase) {
    case VMS_PHASE_CONNECT: return 0.02 * within;
    case VMS_PHASE_SCAN_IMAGE: return 0.02 + 0.48 * within;
    case VMS_PHASE_SEND: return 0.5 + 0.5 * within;
    default: return 0;
    }
}

/* "NAME@VERSION" then TAIL. */
static char *ref_text(const char *name, uint32_t version, const char *tail)
{
    char *shown = quoted_name(name), *out = NULL;
    if (shown && asprintf(&out, "%s@%u%s", shown, version, tail) < 0)
        out = NULL;
    free(shown);
    return out;
}

char *checked_in_text(const char *name, uint32_t version)
{
    return ref_text(name, version, " is checked in");
}

char *saved_as_text(const char *name, uint32_t version)
{
    return ref_text(name, version, " is saved as a new image");
}

char *conflict_heading(const struct checkin_conflict *k)
{
    char *name = quoted_name(k->name), *out = NULL;
    if (name && asprintf(&out, k->newer ? "Someone else checked %s in first"
                                        : "%s is no longer checked out to you", name) < 0)
        out = NULL;
    free(name);
    return out;
}

/* "bob@lab checked in desk@3 on 2026-12-01 10:00 UTC, after the version 1
 * you checked out. " */
static void put_newer(FILE *f, const struct checkin_conflict *k, const char *name)
{
    char when[40];
    format_time(k->newer->created, when, sizeof when);
    vms_put_name(f, k->newer->user);
    fputc('@', f);
    vms_put_name(f, k->newer->host);
    fprintf(f, " checked in %s@%u on %s, after the version %u you checked out. ", name,
            k->newer->number, when, k->parent);
}

/* "bob@lab holds it now, since ... (version 3). ", or the lease was given back. */
static void put_holder(FILE *f, const struct checkin_conflict *k)
{
    char since[40];
    if (!k->holder) {
        fputs(k->newer ? "Nobody holds it now. " : "Its lease was given back: nobody holds it "
                                                   "now. ", f);
        return;
    }
    format_time(k->holder->since, since, sizeof since);
    vms_put_name(f, k->holder->user);
    fputc('@', f);
    vms_put_name(f, k->holder->host);
    fprintf(f, k->newer ? " holds it now, since %s (version %u). "
                        : " took it over on %s (version %u): the lease is no longer yours. ",
            since, k->holder->version);
}

char *conflict_text(const struct checkin_conflict *k)
{
    char *name = quoted_name(k->name), *file = quoted_name(k->file), *buf = NULL;
    size_t len = 0;
    FILE *f = name && file ? open_memstream(&buf, &len) : NULL;
    if (f) {
        if (k->newer)
            put_newer(f, k, name);
        put_holder(f, k);
        fprintf(f, "Nothing was recorded and nothing was lost: your file %s is untouched. "
                "You can save it as a new image, or keep your file as it is.", file);
        if (fclose(f) != 0) {
            free(buf);
            buf = NULL;
        }
    }
    free(name);
    free(file);
    return buf;
}

/* ---- history: versions, the files changed between two, releasing ---- */

char *version_title_text(const struct vms_version *v)
{
    char when[40], parent[32] = "", *user = quoted_name(v->user), *host = quoted_name(v->host);
    char *out = NULL;
    format_time(v->created, when, sizeof when);
    if (v->parent + 1 != v->number)
        snprintf(parent, sizeof parent, " · parent %u", v->parent);
    if (user && host && asprintf(&out, "version %u · %s · %s@%s%s", v->number, when, user, host,
                                 parent) < 0)
        out = NULL;
    free(user);
    free(host);
    return out;
}

char *version_message_text(const struct vms_version *v)
{
    return v->message[0] ? quoted_text(v->message) : strdup("(no message)");
}

/* The fingerprint is shown whole: it is what `vmsync key show` prints to
 * compare with. */
char *signature_text(enum vms_signature_state state, const struct vms_version *v)
{
    char fp[VMS_FINGERPRINT_TEXT_LEN], *out = NULL;
    int n = 0;
    vms_fingerprint_text(v->signer, fp);
    if (state == VMS_SIGNATURE_TRUSTED)
        n = asprintf(&out, "signed by a trusted key (%s)", fp);
    else if (state == VMS_SIGNATURE_UNTRUSTED)
        n = asprintf(&out, "signed by %s, a key not trusted here", fp);
    else if (state == VMS_SIGNATURE_BAD)
        n = asprintf(&out, "BAD SIGNATURE: it does not verify with the trusted key %s", fp);
    else
        out = strdup(state == VMS_SIGNATURE_NONE ? "not signed" : vms_signature_state_name(state));
    return n < 0 ? NULL : out;
}

char *untrusted_heading(const char *name)
{
    char *shown = quoted_name(name), *out = NULL;
    if (shown && asprintf(&out, "%s was not checked out", shown) < 0)
        out = NULL;
    free(shown);
    return out;
}

char *untrusted_text(const fsp_error *err)
{
    char *why = error_text(err), *out = NULL;
    if (why && asprintf(&out, "%s. Nothing was written. The keys that the settings trust "
                              "([trust]) decide which versions are taken.", why) < 0)
        out = NULL;
    free(why);
    return out;
}

static int diff_list_grow(struct diff_list *l)
{
    if (l->n < l->cap)
        return 0;
    size_t cap = l->cap ? 2 * l->cap : 64;
    struct diff_entry *items = realloc(l->items, cap * sizeof *items);
    if (!items)
        return -ENOMEM;
    l->items = items;
    l->cap = cap;
    return 0;
}

int diff_list_add(void *ctx, const struct vms_diff_item *item)
{
    struct diff_list *l = ctx;
    if (item->change < VMS_ADDED || item->change > VMS_MOVED)
        return 0; /* no such change: the header names four */
    if (diff_list_grow(l))
        return -ENOMEM;
    struct diff_entry *e = &l->items[l->n];
    *e = (struct diff_entry){.change = item->change, .what = item->what};
    e->path = strdup(item->path ? item->path : "");
    e->old_path = item->old_path ? strdup(item->old_path) : NULL;
    if (!e->path || (item->old_path && !e->old_path)) {
        free(e->path);
        free(e->old_path);
        return -ENOMEM;
    }
    l->n++;
    change_counts_add(&l->counts, item);
    return 0;
}

void diff_list_clear(struct diff_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].path);
        free(l->items[i].old_path);
    }
    free(l->items);
    *l = (struct diff_list){0};
}

char *diff_more_text(const struct diff_list *l)
{
    char *out = NULL;
    if (l->n <= CHANGES_SHOWN)
        return NULL;
    int n = asprintf(&out, "and %zu more: vmsync diff lists them all", l->n - CHANGES_SHOWN);
    return n < 0 ? NULL : out;
}

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

char *diff_counts_text(const struct diff_list *l, uint32_t from, uint32_t to)
{
    char *out = NULL;
    int n;
    if (!l->n)
        n = asprintf(&out, "version %u → version %u: no file changed", from, to);
    else
        n = asprintf(&out, "version %u → version %u: %llu added, %llu removed, %llu changed, "
                     "%llu moved", from, to, (unsigned long long)l->counts.added,
                     (unsigned long long)l->counts.removed, (unsigned long long)l->counts.changed,
                     (unsigned long long)l->counts.moved);
    return n < 0 ? NULL : out;
}

/* "content, size": the names of WHAT's bits. */
static void put_what(FILE *f, uint32_t what)
{
    const char *sep = "";
    for (uint32_t bit = 1; bit <= VMS_WHAT_STREAMS; bit <<= 1)
        if (what & bit) {
            fprintf(f, "%s%s", sep, vms_what_name(bit));
            sep = ", ";
        }
}

/* In a move, a path holding " -> " is quoted, as the CLI does, so that the
 * line splits one way only. */
static void put_path(FILE *f, const char *path, bool in_move)
{
    if (in_move && strstr(path, " -> "))
        vms_put_quoted(f, path);
    else
        vms_put_name(f, path);
}

char *diff_item_text(const struct vms_diff_item *d)
{
    static const char *const words[] = {"?", "added", "removed", "changed", "moved"};
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    fprintf(f, "%s ", words[d->change <= VMS_MOVED ? d->change : 0]);
    if (d->change == VMS_MOVED && d->old_path) {
        put_path(f, d->old_path, true);
        fputs(" -> ", f);
    }
    put_path(f, d->path ? d->path : "", d->change == VMS_MOVED);
    if (d->change == VMS_CHANGED) {
        fputs(" (", f);
        put_what(f, d->what);
        fputc(')', f);
    }
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

char *diff_entry_text(const struct diff_entry *e)
{
    struct vms_diff_item d = {.change = e->change, .path = e->path, .old_path = e->old_path,
                              .what = e->what};
    return diff_item_text(&d);
}

char *release_question_text(const char *name)
{
    char *shown = quoted_name(name), *out = NULL;
    if (shown && asprintf(&out, "Release %s?", shown) < 0)
        out = NULL;
    free(shown);
    return out;
}

char *release_body_text(const char *name, uint32_t version)
{
    char *shown = quoted_name(name), *out = NULL;
    if (shown && asprintf(&out, "You give back the lease on %s@%u, so that others can check it "
                          "out. The file you checked out stays where it is, but checking that "
                          "file in later needs a new checkout first. The release is recorded "
                          "in the repository's audit log.", shown, version) < 0)
        out = NULL;
    free(shown);
    return out;
}

char *release_done_text(const char *name, bool released)
{
    char *shown = quoted_name(name), *out = NULL;
    if (shown && asprintf(&out, released ? "%s is released" : "%s had no lease to release",
                          shown) < 0)
        out = NULL;
    free(shown);
    return out;
}

char *snooze_state_text(int64_t until, int64_t now)
{
    char when[40], *out = NULL;
    if (until <= now)
        return strdup("Downloads ahead run on their schedule");
    format_time(until, when, sizeof when);
    return asprintf(&out, "Downloads ahead are paused until %s", when) < 0 ? NULL : out;
}
