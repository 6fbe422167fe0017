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
