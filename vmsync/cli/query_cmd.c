/* The repository's queries: images, leases, audit, and release.  Names,
 * users, hosts and details come from the catalog: data, printed with
 * vms_put_name and vms_put_text, and kept lossless in JSON. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct query {
    const char *repo;
    struct vms_client_opts s;
    struct vms_remote_opts remote;
    vms_client *client;
    bool json;
    int64_t since;
    FILE *out;   /* stdout, or with --json a buffer printed once the query succeeded */
    char *buf;
    size_t buf_len, rows;
};

enum { OPT_HOST = 1000, OPT_CACHE, OPT_JSON, OPT_SINCE };

#define QUERY_HELP                                                                             \
    "      --json             one JSON document\n"                                            \
    "      --host NAME        this client's name in leases and the audit log\n"               \
    "                         (default: $VMSYNC_HOST, else the hostname)\n"                   \
    "      --cache DIR        local cache (default: $VMSYNC_CACHE, else ~/.cache/vmsync)\n"   \
    "  -h, --help             this help\n"                                                    \
    "\n" CLI_REMOTE_HELP

/* Returns -1 to go on with operands from optind, else an exit status. */
static int parse(int argc, char **argv, const char *usage, bool takes_since, struct query *q,
                 int min, int max, const char *what)
{
    static const struct option opts[] = {
        {"host", required_argument, 0, OPT_HOST}, {"cache", required_argument, 0, OPT_CACHE},
        {"json", no_argument, 0, OPT_JSON},       {"since", required_argument, 0, OPT_SINCE},
        {"help", no_argument, 0, 'h'},            CLI_REMOTE_OPTIONS,
        {0, 0, 0, 0}};
    fsp_error err = {0};
    int opt;
    while ((opt = getopt_long(argc, argv, "hi:", opts, NULL)) != -1) {
        int why = 0;
        if (opt == 'h')
            return fputs(usage, stdout), 0;
        else if (opt == OPT_HOST)
            q->s.host = optarg;
        else if (opt == OPT_CACHE)
            q->s.cache_dir = optarg;
        else if (opt == OPT_JSON)
            q->json = true;
        else if (opt == OPT_SINCE && !takes_since)
            return cli_usage_error(usage, "%s", "only audit takes --since");
        else if (opt == OPT_SINCE && vms_parse_time(optarg, &q->since, &err))
            return cli_usage_error(usage, "bad --since: %s", err.msg);
        else if (opt != OPT_SINCE)
            why = cli_remote_option(&q->remote, opt, usage);
        if (why)
            return why == 2 ? 2 : cli_bad_option(usage, argv);
    }
    int took = cli_take_repo(argc, argv, 0, min, max, usage);
    if (took >= 0)
        return took;
    int operands = argc - optind;
    if (operands < min || operands > max)
        return cli_usage_error(usage, "%s", what);
    return -1;
}

/* The handle the query's one operation runs on; closed right after it. */
static int query_open(struct query *q, fsp_error *err)
{
    cli_remote_init(&q->remote);
    return cli_client_open(q->repo, &q->s, &q->client, err);
}

static void query_close(struct query *q) { cli_client_close(&q->client); }

static int start(struct query *q, const char *repo)
{
    q->repo = repo;
    q->s.remote = &q->remote;
    q->out = q->json ? open_memstream(&q->buf, &q->buf_len) : stdout;
    if (!q->out)
        return perror("vmsync"), 6;
    return -1;
}

/* Prints the buffered JSON document, or the error alone; the exit status. */
static int finish(struct query *q, int rc, const fsp_error *err)
{
    if (q->json) {
        fclose(q->out);
        if (!rc)
            fwrite(q->buf, 1, q->buf_len, stdout);
        free(q->buf);
    }
    return rc ? cli_report(err) : 0;
}

static void put_time(FILE *out, int64_t t)
{
    char when[40] = "";
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm))
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    fputs(when, out);
}

static void put_holder(FILE *out, const char *user, const char *host)
{
    vms_put_name(out, user);
    fputc('@', out);
    vms_put_name(out, host);
}

/* ,"lease":{...} or ,"lease":null */
static void json_lease_fields(FILE *out, const struct vms_lease_info *l)
{
    fprintf(out, "\"version\":%u,", l->version);
    vms_json_member(out, "user", l->user);
    fputc(',', out);
    vms_json_member(out, "host", l->host);
    fprintf(out, ",\"since\":%lld", (long long)l->since);
}

/* Opens the document's array: {"repository":REPO,"KEY":[ */
static void json_open(struct query *q, const char *key)
{
    if (!q->json)
        return;
    fputc('{', q->out);
    vms_json_member(q->out, "repository", q->repo);
    fprintf(q->out, ",\"%s\":[", key);
}

static void json_close(struct query *q)
{
    if (q->json)
        fputs(q->rows ? "\n]}\n" : "]}\n", q->out);
}

static void json_row_start(struct query *q) { fputs(q->rows++ ? ",\n {" : "\n {", q->out); }

/* ---- images ------------------------------------------------------------------------- */

static int show_image(void *ctx, const struct vms_image_info *i)
{
    struct query *q = ctx;
    if (q->json) {
        json_row_start(q);
        vms_json_member(q->out, "image", i->name);
        fprintf(q->out, ",\"latest\":%u,\"size\":%llu,\"created\":%lld,\"lease\":", i->latest,
                (unsigned long long)i->size, (long long)i->created);
        if (i->lease) {
            fputc('{', q->out);
            json_lease_fields(q->out, i->lease);
            fputc('}', q->out);
        } else
            fputs("null", q->out);
        fputc('}', q->out);
        return 0;
    }
    vms_put_name(q->out, i->name);
    fprintf(q->out, "@%u  %.1f MiB  ", i->latest, i->size / 1048576.0);
    put_time(q->out, i->created);
    fputs("  lease: ", q->out);
    if (i->lease) {
        put_holder(q->out, i->lease->user, i->lease->host);
        fputs(" since ", q->out);
        put_time(q->out, i->lease->since);
        fprintf(q->out, " (version %u)\n", i->lease->version);
    } else
        fputs("none\n", q->out);
    return 0;
}

int cmd_images(int argc, char **argv)
{
    static const char *const usage =
        "usage: vmsync images REPO [--json]\n"
        "\n"
        "Lists every image by name: its latest version, that version's size and time,\n"
        "and its lease (who holds it, on which host, since when), or none.\n" QUERY_HELP;
    struct query q = {0};
    int status = parse(argc, argv, usage, false, &q, 1, 1, "images needs REPO");
    if (status < 0)
        status = start(&q, argv[optind]);
    if (status >= 0)
        return status;
    fsp_error err = {0};
    json_open(&q, "images");
    int rc = query_open(&q, &err);
    if (!rc)
        rc = vms_images(q.client, show_image, &q, &err);
    query_close(&q);
    json_close(&q);
    return finish(&q, rc, &err);
}

/* ---- leases ------------------------------------------------------------------------- */

static int show_lease(void *ctx, const struct vms_lease_info *l)
{
    struct query *q = ctx;
    if (q->json) {
        json_row_start(q);
        vms_json_member(q->out, "image", l->image);
        fputc(',', q->out);
        json_lease_fields(q->out, l);
        fputc('}', q->out);
        return 0;
    }
    vms_put_name(q->out, l->image);
    fprintf(q->out, "@%u  ", l->version);
    put_holder(q->out, l->user, l->host);
    fputs("  since ", q->out);
    put_time(q->out, l->since);
    fputc('\n', q->out);
    return 0;
}

int cmd_leases(int argc, char **argv)
{
    static const char *const usage =
        "usage: vmsync leases REPO [NAME] [--json]\n"
        "\n"
        "Lists every lease (or NAME's): the image, the version checked out, the\n"
        "holder (user and host) and since when.\n" QUERY_HELP;
    struct query q = {0};
    int status = parse(argc, argv, usage, false, &q, 1, 2, "leases needs REPO and optionally NAME");
    if (status < 0)
        status = start(&q, argv[optind]);
    if (status >= 0)
        return status;
    fsp_error err = {0};
    json_open(&q, "leases");
    int rc = query_open(&q, &err);
    if (!rc)
        rc = vms_leases(q.client, optind + 2 == argc ? argv[optind + 1] : NULL, show_lease, &q, &err);
    query_close(&q);
    json_close(&q);
    return finish(&q, rc, &err);
}

/* ---- audit -------------------------------------------------------------------------- */

static void show_entry_json(struct query *q, const struct vms_audit_entry *e)
{
    json_row_start(q);
    fprintf(q->out, "\"at\":%lld,", (long long)e->at);
    vms_json_member(q->out, "user", e->user);
    fputc(',', q->out);
    vms_json_member(q->out, "host", e->host);
    fputc(',', q->out);
    vms_json_member(q->out, "action", e->action);
    fputc(',', q->out);
    if (e->image)
        vms_json_member(q->out, "image", e->image);
    else
        fputs("\"image\":null", q->out);
    fprintf(q->out, ",\"version\":%u,", e->version);
    vms_json_member(q->out, "detail", e->detail);
    fputc('}', q->out);
}

static int show_entry(void *ctx, const struct vms_audit_entry *e)
{
    struct query *q = ctx;
    if (q->json) {
        show_entry_json(q, e);
        return 0;
    }
    put_time(q->out, e->at);
    fputs("  ", q->out);
    put_holder(q->out, e->user, e->host);
    fputs("  ", q->out);
    vms_put_name(q->out, e->action);
    fputs("  ", q->out);
    if (e->image) {
        vms_put_name(q->out, e->image);
        fprintf(q->out, "@%u", e->version);
    } else
        fputc('-', q->out);
    if (e->detail[0]) {
        fputs("  ", q->out);
        vms_put_text(q->out, e->detail);
    }
    fputc('\n', q->out);
    return 0;
}

int cmd_audit(int argc, char **argv)
{
    static const char *const usage =
        "usage: vmsync audit REPO [NAME] [--since T] [--json]\n"
        "\n"
        "Prints the audit log, oldest first (of NAME only, when given): time, user@host,\n"
        "action (import, checkout, checkin, export, steal, release), image@version and\n"
        "detail.\n"
        "\n"
        "      --since T          entries from T on: Unix seconds, or a UTC date and\n"
        "                         time like 2026-12-01 or 2026-12-01T10:00:00Z\n" QUERY_HELP;
    struct query q = {0};
    int status = parse(argc, argv, usage, true, &q, 1, 2, "audit needs REPO and optionally NAME");
    if (status < 0)
        status = start(&q, argv[optind]);
    if (status >= 0)
        return status;
    fsp_error err = {0};
    json_open(&q, "entries");
    const char *name = optind + 2 == argc ? argv[optind + 1] : NULL;
    int rc = query_open(&q, &err);
    if (!rc)
        rc = vms_audit_log(q.client, name, q.since, show_entry, &q, &err);
    query_close(&q);
    json_close(&q);
    return finish(&q, rc, &err);
}

/* ---- release ------------------------------------------------------------------------ */

int cmd_release(int argc, char **argv)
{
    static const char *const usage =
        "usage: vmsync release REPO NAME [--json]\n"
        "\n"
        "Gives back NAME's lease without checking in: only its holder (the same user\n"
        "on the same host) may; anyone else is refused (exit 8), naming the holder.\n"
        "No lease to give back is no error: it says so and exits 0.\n" QUERY_HELP;
    struct query q = {0};
    int status = parse(argc, argv, usage, false, &q, 2, 2, "release needs REPO and NAME");
    if (status < 0)
        status = start(&q, argv[optind]);
    if (status >= 0)
        return status;
    const char *name = argv[optind + 1];
    fsp_error err = {0};
    bool released = false;
    int rc = query_open(&q, &err);
    if (!rc)
        rc = vms_release(q.client, name, &released, &err);
    query_close(&q);
    if (q.json) {
        fputc('{', q.out);
        vms_json_member(q.out, "image", name);
        fprintf(q.out, ",\"released\":%s}\n", released ? "true" : "false");
    } else if (!rc) {
        vms_put_name(q.out, name);
        fputs(released ? ": lease released\n" : ": no lease to release\n", q.out);
    }
    return finish(&q, rc, &err);
}
