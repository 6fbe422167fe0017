/* Checkout and export: rebuild an image version from local seeds and the
 * repository.
 *
 * The plan turns the target's layout into write tasks, each a piece of one
 * object (a small file whole, a chunk of a large file, a 4 KiB metadata piece)
 * copied to an offset of the output.  Every object is read once, from a seed
 * when one holds it (checked against its hash) or else from the repository,
 * and all its tasks are written.  ZERO runs and unallocated space are left as
 * holes of the sparse output.  A seed object's bytes are still read and
 * checked, but where the seed is a raw file on the output's filesystem its
 * blocks are shared rather than written (share.h).
 *
 * A checkout is that plan, kept (vms_plan: the target, the tasks, the seed
 * index, the stored sizes of what is fetched), and a run of it that writes.
 * The plan also judges OUT and reads a journal left beside it, so that its
 * figures say what the run will move; the run judges OUT again only when it
 * changed in between.
 *
 * The output is written to OUT.vmsync-part; a journal beside it records which
 * objects are in place (after the data is synced), so an interrupted checkout
 * resumes where it stopped.  The finished image is renamed into place only
 * when its canonical digest equals the version's: computed from the layout
 * with the hashes of what this process wrote from checked bytes, and the rest
 * read back (outdigest.h); a mismatch is confirmed by a scan of the image.
 *
 * An existing OUT is replaced only when no work would be lost: vmsync wrote
 * it (OUT.vmsync-record says so, see written.h) and it still holds a version
 * of the image.  A file vmsync did not write, or one changed since and not
 * checked in, is refused unless --force. */
#include "engine/outdigest.h"
#include "engine/prefetch.h"
#include "engine/seeds.h"
#include "manifest/written.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JOURNAL_EVERY (32u << 20) /* bytes written between journal syncs */
#define JOURNAL_SECONDS 10.0      /* or seconds, whichever comes first: a narrow link is slow */
#define JOURNAL_MAGIC "VMSJRNL1"

struct object {
    uint8_t hash[FSP_SHA256_LEN];
    uint32_t len;
    const struct vms_seed_loc *seed; /* NULL: from the repository */
    uint32_t stored;                 /* the repository's size of it, when the plan fetches it */
    bool to_fetch;                   /* the plan fetches it (a run may fetch more) */
    bool done;
    bool checked_write; /* this process wrote every task from bytes that hash to it */
    size_t first_task, n_tasks;
    size_t first_ref, n_refs; /* the chunks of streams it is, in refs */
};

/* Chunk CHUNK of the target's stream STREAM. */
struct chunk_ref {
    size_t stream, chunk;
};

struct task {
    uint64_t out_offset;
    uint32_t obj_offset, len;
    size_t obj;
};

struct checkout {
    struct vms_ctx *c;
    const struct vms_checkout_opts *o;
    struct vms_stats *stats;
    struct vms_version version;
    struct vms_loaded *target;
    struct vms_seed_index seeds;
    struct object *objs;
    size_t n_objs, cap_objs;
    struct vms_hashmap obj_by_hash;
    struct task *tasks;
    size_t n_tasks, cap_tasks;
    struct chunk_ref *refs; /* grouped by object */
    struct vms_order_hash *in_order; /* chunked streams hashed as written, this run */
    char part[PATH_MAX], journal_path[PATH_MAX];
    int out_fd;
    struct vms_share share; /* seed ranges shared with OUT (or copied from the seed file) */
    bool write_seeds;       /* write what was read and checked: a shared seed changed */
    bool prefetch;          /* into the cache, ahead (prefetch.c) */
    FILE *journal;
    uint64_t unsynced_bytes;
    double synced_at; /* when the journal was last synced (vms_ctx_elapsed) */
    uint8_t (*journal_pending)[FSP_SHA256_LEN];
    size_t n_pending, cap_pending;
    uint64_t done_bytes, total_bytes;
    uint64_t fetch_shown; /* the FETCH progress last reported, which never goes back */
    bool in_place; /* OUT already holds the version: nothing to rebuild */
    bool out_existed;            /* OUT was there when the guard looked */
    struct vms_written out_seen; /* OUT's identity when the guard let it be replaced */
    char holder[128];            /* the lease holder's user, as the repository records it */
};

/* ---- planning ---------------------------------------------------------------- */

static int object_for(struct checkout *co, const uint8_t hash[FSP_SHA256_LEN], uint64_t len, size_t *index)
{
    if (vms_grow(&co->objs, &co->cap_objs, co->n_objs + 1, sizeof *co->objs))
        return -ENOMEM;
    int rc = vms_hashmap_put(&co->obj_by_hash, hash, co->n_objs);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        *index = *vms_hashmap_get(&co->obj_by_hash, hash);
        return 0;
    }
    struct object *o = &co->objs[co->n_objs];
    memset(o, 0, sizeof *o);
    memcpy(o->hash, hash, FSP_SHA256_LEN);
    o->len = (uint32_t)len;
    *index = co->n_objs++;
    return 0;
}

static int add_task(struct checkout *co, const uint8_t hash[FSP_SHA256_LEN], uint64_t obj_len,
                    uint64_t obj_offset, uint64_t out_offset, uint64_t len)
{
    size_t obj;
    if (!len)
        return 0;
    if (obj_offset + len > obj_len || obj_len > (1u << 24))
        return -EINVAL;
    int rc = object_for(co, hash, obj_len, &obj);
    if (rc || (rc = vms_grow(&co->tasks, &co->cap_tasks, co->n_tasks + 1, sizeof *co->tasks)))
        return rc;
    co->tasks[co->n_tasks++] = (struct task){out_offset, (uint32_t)obj_offset, (uint32_t)len, obj};
    return 0;
}

/* Stream bytes [from, to) of S go to the output at OUT: from the stream's
 * object when it is small, else from the chunks that overlap the range. */
static int plan_stream_range(struct checkout *co, const struct vms_lstream *s, uint64_t from,
                             uint64_t to, uint64_t out)
{
    if (!s->n_chunks)
        return add_task(co, s->sha256, s->size, from, out, to - from);
    for (size_t k = 0; k < s->n_chunks; k++) {
        const struct fsp_chunk *ch = &co->target->chunks[s->first_chunk + k];
        uint64_t lo = ch->offset > from ? ch->offset : from;
        uint64_t hi = ch->offset + ch->length < to ? ch->offset + ch->length : to;
        if (lo >= hi)
            continue;
        int rc = add_task(co, ch->sha256, ch->length, lo - ch->offset, out + (lo - from), hi - lo);
        if (rc)
            return rc;
    }
    return 0;
}

/* A FILE run holds a range of one stream. */
static int plan_file_run(struct checkout *co, const struct vms_lrun *run)
{
    const struct vms_lstream *s = &co->target->streams[run->stream];
    uint64_t from = run->stream_offset;
    uint64_t to = from + run->length < s->size ? from + run->length : s->size;
    return from < to ? plan_stream_range(co, s, from, to, run->offset) : 0;
}

/* Whether the repository holds every object of S (volatile streams are stored
 * only on request). */
static bool stream_stored(struct checkout *co, const struct vms_lstream *s)
{
    const struct vms_loaded *t = co->target;
    size_t n = s->n_chunks ? s->n_chunks : 1;
    uint8_t(*hashes)[FSP_SHA256_LEN] = malloc(n * FSP_SHA256_LEN);
    uint8_t *present = malloc(n);
    fsp_error ignored;
    bool all = hashes && present;
    for (size_t k = 0; all && k < n; k++)
        memcpy(hashes[k], s->n_chunks ? t->chunks[s->first_chunk + k].sha256 : s->sha256,
               FSP_SHA256_LEN);
    all = all && !vms_repo_has(co->c->repo, (const uint8_t(*)[FSP_SHA256_LEN])hashes, n, present,
                               NULL, &ignored);
    for (size_t k = 0; all && k < n; k++)
        all = present[k];
    free(hashes);
    free(present);
    return all;
}

/* --keep-volatile: the layout has zeros where volatile files are, so their
 * content goes back through their own extents. */
static int plan_volatile(struct checkout *co)
{
    const struct vms_loaded *t = co->target;
    for (size_t i = 0; i < t->n_streams; i++) {
        const struct vms_lstream *s = &t->streams[i];
        if (!(s->entry_flags & FSP_ENTRY_VOLATILE) || (s->entry_flags & FSP_ENTRY_HARDLINK) ||
            (s->flags & (FSP_STREAM_UNREADABLE | FSP_STREAM_NOT_HASHED)) || !s->n_extents)
            continue;
        if (!stream_stored(co, s)) {
            vms_ctx_warn(co->c, "%s@%u: a volatile file's content is not in the repository "
                         "(it was imported without volatile contents); it stays zero-filled",
                         co->o->name, co->version.number);
            continue;
        }
        uint64_t end = s->valid_size < s->size ? s->valid_size : s->size;
        for (size_t k = 0; k < s->n_extents; k++) {
            const struct fsp_extent *x = &t->extents[s->first_extent + k];
            uint64_t to = x->logical + x->length < end ? x->logical + x->length : end;
            int rc = (x->flags & FSP_EXT_UNWRITTEN) || x->logical >= to
                         ? 0 : plan_stream_range(co, s, x->logical, to, x->physical);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int plan_raw_run(struct checkout *co, const struct vms_lrun *run)
{
    for (size_t p = 0; p < run->n_hashes; p++) {
        uint64_t off = (uint64_t)p * FSP_PIECE_SIZE;
        uint64_t len = run->length - off < FSP_PIECE_SIZE ? run->length - off : FSP_PIECE_SIZE;
        int rc = add_task(co, co->target->hashes[run->first_hash + p], len, 0, run->offset + off, len);
        if (rc)
            return rc;
    }
    return 0;
}

/* Groups the tasks by object, so each object is read once. */
static int group_tasks(struct checkout *co)
{
    struct task *sorted = malloc((co->n_tasks ? co->n_tasks : 1) * sizeof *sorted);
    if (!sorted)
        return -ENOMEM;
    for (size_t i = 0; i < co->n_tasks; i++)
        co->objs[co->tasks[i].obj].n_tasks++;
    size_t next = 0;
    for (size_t i = 0; i < co->n_objs; i++) {
        co->objs[i].first_task = next;
        next += co->objs[i].n_tasks;
        co->objs[i].n_tasks = 0;
    }
    for (size_t i = 0; i < co->n_tasks; i++) {
        struct object *o = &co->objs[co->tasks[i].obj];
        sorted[o->first_task + o->n_tasks++] = co->tasks[i];
    }
    free(co->tasks);
    co->tasks = sorted;
    co->cap_tasks = co->n_tasks;
    return 0;
}

/* Calls FN for each chunk of a chunked stream whose object the plan has. */
static void each_chunk(struct checkout *co, void (*fn)(struct checkout *, size_t, size_t, size_t))
{
    const struct vms_loaded *t = co->target;
    for (size_t i = 0; i < t->n_streams; i++)
        for (size_t k = 0; k < t->streams[i].n_chunks; k++) {
            const uint64_t *obj = vms_hashmap_get(&co->obj_by_hash,
                                                  t->chunks[t->streams[i].first_chunk + k].sha256);
            if (obj)
                fn(co, *obj, i, k);
        }
}

static void count_ref(struct checkout *co, size_t obj, size_t stream, size_t chunk)
{
    co->objs[obj].n_refs++;
}

static void put_ref(struct checkout *co, size_t obj, size_t stream, size_t chunk)
{
    struct object *o = &co->objs[obj];
    co->refs[o->first_ref + o->n_refs++] = (struct chunk_ref){stream, chunk};
}

/* Which chunks of which streams each object is, for hashing the streams
 * as their chunks are written. */
static int index_chunks(struct checkout *co)
{
    each_chunk(co, count_ref);
    size_t next = 0;
    for (size_t i = 0; i < co->n_objs; i++) {
        co->objs[i].first_ref = next;
        next += co->objs[i].n_refs;
        co->objs[i].n_refs = 0;
    }
    if (!(co->refs = malloc((next + 1) * sizeof *co->refs)))
        return -ENOMEM;
    each_chunk(co, put_ref);
    return 0;
}

static int plan(struct checkout *co, fsp_error *err)
{
    const struct vms_loaded *t = co->target;
    int rc = 0;
    for (size_t i = 0; i < t->n_runs && !rc; i++) {
        if (t->runs[i].kind == FSP_L_FILE)
            rc = plan_file_run(co, &t->runs[i]);
        else if (t->runs[i].kind == FSP_L_RAW)
            rc = plan_raw_run(co, &t->runs[i]);
        else
            co->stats->bytes_zero += t->runs[i].length;
    }
    if (!rc && co->o->keep_volatile)
        rc = plan_volatile(co);
    if (!rc)
        rc = group_tasks(co);
    if (!rc)
        rc = index_chunks(co);
    if (rc == -EINVAL)
        return fsp_fail(err, FSP_EK_CORRUPT, rc, "%s@%u: the manifest's layout does not fit its streams",
                        co->o->name, co->version.number);
    return rc ? fsp_fail(err, FSP_EK_NOMEM, rc, "out of memory planning the checkout") : 0;
}

/* ---- seeds --------------------------------------------------------------- */

static int load_seeds(struct checkout *co, fsp_error *err)
{
    struct vms_seed_needs needs = {0};
    uint64_t *sizes;
    if (vms_seed_needs_of(co->target, &needs, &sizes))
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < co->o->n_seeds && !rc; i++) {
        struct vms_loaded *m;
        bool rescanned;
        vms_ctx_scanning(co->c, VMS_PHASE_SCAN_SEED, (uint32_t)i + 1, (uint32_t)co->o->n_seeds);
        /* a manifest stands for an image another laptop holds: a plan only */
        rc = vms_is_manifest(co->o->seeds[i])
                 ? vms_loaded_read(co->o->seeds[i], &m, err)
                 : vms_seed_load(co->c, co->o->seeds[i], &needs, &m, &rescanned, err);
        int indexed = rc ? 0 : vms_seed_index_add(&co->seeds, co->o->seeds[i], m);
        if (indexed && co->seeds.n_seeds <= i)
            vms_loaded_free(m); /* not in the index, so still ours */
        if (indexed)
            rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory indexing seeds");
    }
    free(sizes);
    for (size_t i = 0; !rc && i < co->n_objs; i++)
        co->objs[i].seed = vms_seed_find(&co->seeds, co->objs[i].hash);
    return rc;
}

/* The hashes of the objects no seed supplies (and not yet written), with
 * their indexes in co->objs.  *N may be 0. */
static int objects_to_fetch(struct checkout *co, uint8_t (**hashes)[FSP_SHA256_LEN], size_t **indexes,
                            size_t *n, fsp_error *err)
{
    *hashes = malloc((co->n_objs ? co->n_objs : 1) * FSP_SHA256_LEN);
    *indexes = malloc((co->n_objs ? co->n_objs : 1) * sizeof **indexes);
    if (!*hashes || !*indexes)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    *n = 0;
    for (size_t i = 0; i < co->n_objs; i++) {
        if (co->objs[i].done || co->objs[i].seed)
            continue;
        memcpy((*hashes)[*n], co->objs[i].hash, FSP_SHA256_LEN);
        (*indexes)[(*n)++] = i;
    }
    return 0;
}

/* The repository (a bundle, say) lacks objects that no seed gives: named,
 * the first of them, so that the user can tell which seed is missing. */
static int lacking(struct checkout *co, const uint8_t hash[FSP_SHA256_LEN], size_t missing,
                   fsp_error *err)
{
    char hex[2 * FSP_SHA256_LEN + 1];
    fsp_hex(hash, FSP_SHA256_LEN, hex);
    return fsp_fail(err, FSP_EK_CORRUPT, -ENOENT,
                    "%s@%u: the repository lacks %zu of its objects, and no seed holds them "
                    "(the first: object %s)", co->o->name, co->version.number, missing, hex);
}

/* Asks the repository, in one request, for the stored size of every object
 * the plan fetches: a client shows what will travel, and an object it lacks
 * fails the plan before anything is written. */
static int ask_repository(struct checkout *co, fsp_error *err)
{
    uint8_t(*hashes)[FSP_SHA256_LEN] = NULL;
    size_t *indexes = NULL, n = 0, missing = 0;
    uint8_t *present = NULL;
    struct vms_object_size *sizes = NULL;
    int rc = objects_to_fetch(co, &hashes, &indexes, &n, err);
    if (!rc && (!(present = malloc(n + 1)) || !(sizes = malloc((n + 1) * sizeof *sizes))))
        rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    if (!rc && n)
        rc = vms_repo_has(co->c->repo, (const uint8_t(*)[FSP_SHA256_LEN])hashes, n, present, sizes,
                          err);
    size_t first_missing = 0;
    for (size_t k = 0; !rc && k < n; k++) {
        co->objs[indexes[k]].to_fetch = true;
        co->objs[indexes[k]].stored = sizes[k].stored;
        if (!present[k] && !missing++)
            first_missing = k;
    }
    if (!rc && missing)
        rc = lacking(co, hashes[first_missing], missing, err);
    free(hashes);
    free(indexes);
    free(present);
    free(sizes);
    return rc;
}

/* ---- writing and the resume journal -------------------------------------- */

static int out_error(struct checkout *co, int code, const char *what, fsp_error *err)
{
    const char *hint = code == -ENOSPC ? "; the partial image is kept for a resume: free space and "
                                         "run the same command, or delete it"
                                       : "";
    return fsp_fail(err, FSP_EK_IO, code, "%s: cannot %s: %s%s", co->part, what, strerror(-code), hint);
}

static int sync_journal(struct checkout *co, fsp_error *err)
{
    if (!co->n_pending)
        return 0;
    int rc = vms_share_flush(&co->share, err);
    if (rc)
        return rc;
    if (fdatasync(co->out_fd) < 0)
        return out_error(co, -errno, "sync", err);
    if (fwrite(co->journal_pending, FSP_SHA256_LEN, co->n_pending, co->journal) != co->n_pending ||
        fflush(co->journal) || fdatasync(fileno(co->journal)) < 0)
        return fsp_fail(err, FSP_EK_IO, -EIO, "%s: cannot write the resume journal", co->journal_path);
    co->n_pending = 0;
    co->unsynced_bytes = 0;
    co->synced_at = vms_ctx_elapsed(co->c);
    return 0;
}

static int write_at(struct checkout *co, const uint8_t *p, uint64_t len, uint64_t at, fsp_error *err)
{
    for (uint64_t left = len; left;) {
        ssize_t n = pwrite(co->out_fd, p, left, (off_t)(at + (len - left)));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return out_error(co, n < 0 ? -errno : -ENOSPC, "write", err);
        p += n;
        left -= (size_t)n;
    }
    return 0;
}

static int report_fetched(struct checkout *co, uint64_t done, fsp_error *err)
{
    if (done > co->fetch_shown)
        co->fetch_shown = done;
    return vms_ctx_progress(co->c, VMS_PHASE_FETCH, co->fetch_shown, co->total_bytes, err);
}

static int report_placed(struct checkout *co, enum vms_phase phase, fsp_error *err)
{
    if (phase == VMS_PHASE_FETCH)
        return report_fetched(co, co->done_bytes, err);
    return vms_ctx_progress(co->c, phase, co->done_bytes, co->total_bytes, err);
}

/* The object's tasks are written (or their sharing pending): it is done,
 * and in the journal at its next sync. */
static int object_placed(struct checkout *co, size_t index, fsp_error *err)
{
    struct object *o = &co->objs[index];
    o->done = true;
    co->done_bytes += o->len;
    if (vms_grow(&co->journal_pending, &co->cap_pending, co->n_pending + 1, FSP_SHA256_LEN))
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    memcpy(co->journal_pending[co->n_pending++], o->hash, FSP_SHA256_LEN);
    bool due = co->unsynced_bytes >= JOURNAL_EVERY ||
               vms_ctx_elapsed(co->c) - co->synced_at >= JOURNAL_SECONDS;
    int rc = due ? sync_journal(co, err) : 0;
    return rc ? rc : report_placed(co, o->seed ? VMS_PHASE_SEED_COPY : VMS_PHASE_FETCH, err);
}

/* The object's tasks are written: the streams it is a chunk of go on
 * being hashed in order when its bytes were the checked DATA. */
static void note_written(struct checkout *co, size_t index, const uint8_t *data)
{
    const struct object *o = &co->objs[index];
    for (size_t r = 0; co->in_order && r < o->n_refs; r++) {
        const struct chunk_ref *ref = &co->refs[o->first_ref + r];
        if (o->checked_write)
            vms_order_hash_chunk(co->in_order, ref->stream, ref->chunk, data);
        else
            vms_order_hash_break(co->in_order, ref->stream);
    }
}

static int write_object(struct checkout *co, size_t index, const uint8_t *data, fsp_error *err)
{
    const struct object *o = &co->objs[index];
    int rc = 0;
    for (size_t i = 0; i < o->n_tasks && !rc; i++) {
        const struct task *t = &co->tasks[o->first_task + i];
        rc = write_at(co, data + t->obj_offset, t->len, t->out_offset, err);
        co->unsynced_bytes += t->len;
    }
    co->objs[index].checked_write = !rc;
    note_written(co, index, data);
    return rc ? rc : object_placed(co, index, err);
}

struct seed_task {
    struct checkout *co;
    const struct task *t;
    const uint8_t *data; /* the object, as read from the seed and checked */
    fsp_error *err;
    bool placed; /* some bytes went from the seed's file, not from DATA */
};

/* A run of a task's bytes: its blocks shared with the seed where they can
 * be, else written from what was read. */
static int place_seed_piece(void *ctx, struct vms_seed *seed, uint64_t off, int64_t file_off,
                            uint64_t len)
{
    struct seed_task *st = ctx;
    uint64_t at = st->t->out_offset + (off - st->t->obj_offset);
    int rc = file_off < 0 || st->co->write_seeds ? 1
                          : vms_share_range(&st->co->share, &seed->share, (uint64_t)file_off, at, len,
                                            st->err);
    st->placed |= rc == 0;
    return rc == 1 ? write_at(st->co, st->data + off, len, at, st->err) : rc;
}

static int write_seed_object(struct checkout *co, size_t index, const uint8_t *data, fsp_error *err)
{
    struct object *o = &co->objs[index];
    int rc = 0;
    bool placed = false;
    for (size_t i = 0; i < o->n_tasks && !rc; i++) {
        struct seed_task st = {co, &co->tasks[o->first_task + i], data, err, false};
        rc = vms_seed_pieces(&co->seeds, o->seed, st.t->obj_offset, st.t->len, place_seed_piece, &st);
        co->unsynced_bytes += st.t->len;
        placed |= st.placed;
    }
    o->checked_write = !rc && !placed;
    note_written(co, index, data);
    return rc ? rc : object_placed(co, index, err);
}

/* Marks the objects an interrupted run already wrote; returns the count. */
static size_t replay_journal(struct checkout *co, FILE *journal)
{
    uint8_t hash[FSP_SHA256_LEN];
    size_t replayed = 0;
    while (fread(hash, 1, sizeof hash, journal) == sizeof hash) {
        uint64_t *i = vms_hashmap_get(&co->obj_by_hash, hash);
        if (i && !co->objs[*i].done) {
            co->objs[*i].done = true;
            co->stats->bytes_resumed += co->objs[*i].len;
            co->done_bytes += co->objs[*i].len;
            replayed++;
        }
    }
    return replayed;
}

static void name_outputs(struct checkout *co)
{
    snprintf(co->part, sizeof co->part, "%s.vmsync-part", co->o->out);
    snprintf(co->journal_path, sizeof co->journal_path, "%s.vmsync-journal", co->o->out);
}

static void journal_header(const struct checkout *co, uint8_t header[8 + FSP_SHA256_LEN])
{
    memcpy(header, JOURNAL_MAGIC, 8);
    if (co->o->keep_volatile)
        header[7] = 'V'; /* its part holds volatile files' bytes: no plain checkout resumes it */
    memcpy(header + 8, co->version.manifest, FSP_SHA256_LEN);
}

/* The journal of an interrupted checkout of this very version, opened in
 * MODE and read past its header; NULL when there is none. */
static FILE *open_journal(const struct checkout *co, const char *mode)
{
    uint8_t header[8 + FSP_SHA256_LEN], found[sizeof header];
    journal_header(co, header);
    FILE *j = fopen(co->journal_path, mode);
    if (j && fread(found, 1, sizeof found, j) == sizeof found && !memcmp(found, header, sizeof header) &&
        access(co->part, W_OK) == 0)
        return j;
    if (j)
        fclose(j);
    return NULL;
}

/* Opens the partial output and its journal, resuming when both belong to this
 * very version; otherwise starts them afresh. */
static int open_output(struct checkout *co, bool allow_resume, fsp_error *err)
{
    uint8_t header[8 + FSP_SHA256_LEN];
    journal_header(co, header);
    FILE *j = allow_resume ? open_journal(co, "r+be") : NULL;
    bool resume = j != NULL;
    if (!resume) {
        unlink(co->part);
        j = fopen(co->journal_path, "w+be");
        if (!j || fwrite(header, 1, sizeof header, j) != sizeof header || fflush(j))
            return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot create: %s", co->journal_path, strerror(errno));
    }
    co->journal = j;
    co->out_fd = open(co->part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (co->out_fd < 0)
        return out_error(co, -errno, "create", err);
    vms_share_init(&co->share, co->out_fd, co->part);
    if (ftruncate(co->out_fd, (off_t)co->target->image_size) < 0)
        return out_error(co, -errno, "size", err);
    if (resume) {
        size_t n = replay_journal(co, j);
        fseeko(j, 0, SEEK_END);
        vms_ctx_warn(co->c, "resuming an interrupted checkout: %zu objects already in place", n);
    }
    return 0;
}

/* What an interrupted checkout to OUT left in place is not planned again
 * (the run replays the journal for itself). */
static void note_resumed(struct checkout *co)
{
    FILE *j = co->o->out ? open_journal(co, "rbe") : NULL;
    if (j) {
        replay_journal(co, j);
        fclose(j);
    }
}

static void close_output(struct checkout *co)
{
    if (co->out_fd >= 0)
        close(co->out_fd);
    co->out_fd = -1;
    co->share.pending = NULL; /* unsynced, so not in the journal: redone by a resume */
    if (co->journal)
        fclose(co->journal);
    co->journal = NULL;
}

/* ---- fetching ---------------------------------------------------------------- */

static int copy_from_seeds(struct checkout *co, fsp_error *err)
{
    uint8_t *buf = malloc(1u << 24);
    if (!buf)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < co->n_objs && !rc; i++) {
        struct object *o = &co->objs[i];
        if (o->done || !o->seed || (rc = vms_ctx_cancelled(co->c, err)) != 0)
            continue;
        fsp_error seed_err;
        if (vms_seed_read(&co->seeds, o->seed, o->hash, buf, &seed_err)) {
            o->seed = NULL; /* the seed changed under us: the repository still has it */
            continue;
        }
        co->stats->objects_from_seeds++;
        co->stats->bytes_from_seeds += o->len;
        rc = write_seed_object(co, i, buf, err);
    }
    free(buf);
    return rc;
}

struct fetch_batch {
    struct checkout *co;
    size_t *indexes;
    fsp_error *err;
};

static int on_object(void *ctx, size_t k, const uint8_t *data, size_t len, size_t stored)
{
    struct fetch_batch *b = ctx;
    struct object *o = &b->co->objs[b->indexes[k]];
    if (len != o->len)
        return fsp_fail(b->err, FSP_EK_CORRUPT, -EBADMSG, "an object has the wrong length");
    struct vms_stats *st = b->co->stats;
    st->objects_fetched++;
    st->bytes_fetched_raw += len;
    st->bytes_fetched_compressed += stored;
    return write_object(b->co, b->indexes[k], data, b->err);
}

/* A segment's objects are placed only once all of it arrived, seconds later
 * on a narrow link: meanwhile the bar moves by what its bytes on the wire
 * hold at the compression seen so far (a cancel comes by its token). */
static void fetch_arriving(void *ctx, uint64_t got)
{
    struct checkout *co = ctx;
    const struct vms_stats *st = co->stats;
    double ratio = st->bytes_fetched_compressed
                       ? (double)st->bytes_fetched_raw / (double)st->bytes_fetched_compressed
                       : 1;
    uint64_t guess = (uint64_t)((double)got * ratio), left = co->total_bytes - co->done_bytes;
    fsp_error ignored;
    report_fetched(co, co->done_bytes + (guess < left ? guess : left), &ignored);
}

/* One request for everything the seeds do not supply: over a remote link it
 * costs one round trip, and the agent streams the rest. */
static int fetch_from_repo(struct checkout *co, fsp_error *err)
{
    uint8_t(*hashes)[FSP_SHA256_LEN] = NULL;
    size_t *indexes = NULL, n = 0;
    int rc = objects_to_fetch(co, &hashes, &indexes, &n, err);
    struct fetch_batch b = {co, indexes, err};
    vms_ctx_watch_arrivals(co->c, fetch_arriving, co);
    if (!rc && n)
        rc = vms_repo_get(co->c->repo, (const uint8_t(*)[FSP_SHA256_LEN])hashes, n, on_object, &b, err);
    vms_ctx_watch_arrivals(co->c, NULL, NULL);
    free(hashes);
    free(indexes);
    return rc;
}

/* ---- finishing ------------------------------------------------------------- */

/* Scans the rebuilt image (raw, even when the disk starts like a qcow2
 * header); *SAME when its digest is the version's.  One that does not even
 * read as an image is not the same either (said as a warning). */
static int scan_output(struct checkout *co, bool *same, fsp_error *err)
{
    struct fsp_summary sum;
    vms_ctx_scanning(co->c, VMS_PHASE_VERIFY, 0, 0);
    int rc = vms_ctx_scan_summary_raw(co->c, co->part, &sum, err);
    if (rc && (err->kind == FSP_EK_FORMAT || err->kind == FSP_EK_CORRUPT)) {
        vms_ctx_warn(co->c, "%s", err->msg);
        *same = false;
        return 0;
    }
    *same = !rc && !memcmp(sum.digest, co->version.digest, FSP_SHA256_LEN);
    if (!rc) {
        memcpy(co->stats->canonical_digest, sum.digest, FSP_SHA256_LEN);
        co->stats->bytes_rescanned += sum.allocated_bytes;
    }
    return rc;
}

/* Whether the object of HASH was written whole from checked bytes. */
static bool written_checked(const struct checkout *co, const uint8_t hash[FSP_SHA256_LEN])
{
    const uint64_t *i = vms_hashmap_get(&co->obj_by_hash, hash);
    return i && co->objs[*i].checked_write;
}

/* What the writer vouches for (outdigest.h).  A chunked stream's chunks are
 * checked one by one, so it counts only when hashed whole as written. */
static void mark_written(const struct checkout *co, bool *stream_ok, bool *piece_ok)
{
    const struct vms_loaded *t = co->target;
    for (size_t i = 0; i < t->n_streams; i++) {
        const struct vms_lstream *s = &t->streams[i];
        stream_ok[i] = s->n_chunks ? vms_order_hash_ok(co->in_order, i)
                                   : s->size && written_checked(co, s->sha256);
    }
    for (size_t h = 0; h < t->n_hashes; h++)
        piece_ok[h] = written_checked(co, t->hashes[h]);
}

/* Whether the digest may be taken from the layout and the writer's word:
 * not when asked for a full rescan, nor when volatile contents were
 * written where the layout has zeros (they might overlap what was checked). */
static bool verify_from_layout(const struct checkout *co)
{
    return !co->o->full_verify && !co->o->keep_volatile;
}

/* *SAME when the digest from the layout, the writer's hashes and what is
 * read back is the version's. */
static int digest_output(struct checkout *co, bool *same, bool *zeros_differ, fsp_error *err)
{
    const struct vms_loaded *t = co->target;
    bool *stream_ok = malloc(t->n_streams + 1), *piece_ok = malloc(t->n_hashes + 1);
    struct vms_out_counts counts = {0};
    uint8_t digest[FSP_SHA256_LEN];
    int rc = stream_ok && piece_ok ? 0 : fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    if (!rc) {
        mark_written(co, stream_ok, piece_ok);
        vms_ctx_scanning(co->c, VMS_PHASE_VERIFY, 0, 0);
        struct vms_out_marks marks = {stream_ok, piece_ok};
        rc = vms_out_digest(co->c, t, co->part, &marks, digest, &counts, err);
    }
    free(stream_ok);
    free(piece_ok);
    co->stats->bytes_verified_while_writing += counts.recorded;
    co->stats->bytes_rescanned += counts.rescanned;
    *zeros_differ = counts.zeros_differ;
    *same = !rc && !counts.zeros_differ && !memcmp(digest, co->version.digest, FSP_SHA256_LEN);
    if (*same)
        memcpy(co->stats->canonical_digest, digest, FSP_SHA256_LEN);
    return rc;
}

/* The digest from the layout where it may be; an image that does not match
 * it is scanned whole before it is judged, so that only the scan refuses.
 * Bytes where the layout says zeros are the exception: the scan does not read
 * every such run (volatile files, unwritten extents), so it cannot overrule. */
static int verify_output(struct checkout *co, bool *same, fsp_error *err)
{
    *same = false;
    bool zeros_differ = false;
    int rc = verify_from_layout(co) ? digest_output(co, same, &zeros_differ, err) : 0;
    if (!rc && !*same && !zeros_differ)
        rc = scan_output(co, same, err);
    return rc;
}

static int sync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* A library caller may leave the format unset: raw, as the CLI's default. */
static const char *output_format(const struct checkout *co)
{
    return co->o->format ? co->o->format : "raw";
}

/* OUT is as it was when the guard allowed replacing it: a VM started on it
 * during the checkout has not written work the rename would drop. */
static int output_untouched(struct checkout *co, fsp_error *err)
{
    struct stat st;
    bool exists = lstat(co->o->out, &st) == 0;
    if (co->o->force || (!exists && !co->out_existed) ||
        (exists && co->out_existed && vms_written_unchanged(&co->out_seen, &st)))
        return 0;
    return fsp_fail(err, VMS_EK_CONFLICT, -EEXIST,
                    "%s: changed while vmsync rebuilt the image, so it is not replaced: run the "
                    "checkout again to see whether it holds work", co->o->out);
}

/* Puts the verified image in place under its final name and format. */
static int install_output(struct checkout *co, fsp_error *err)
{
    const char *out = co->o->out;
    if (!strcmp(output_format(co), "qcow2")) {
        char converted[PATH_MAX + 16];
        snprintf(converted, sizeof converted, "%s.vmsync-qcow2", out);
        int rc = vms_convert_qcow2(co->c, co->part, converted, co->version.size, err);
        if (!rc)
            rc = output_untouched(co, err);
        if (!rc && (sync_path(converted) < 0 || rename(converted, out) < 0))
            rc = fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot rename into place: %s", out, strerror(errno));
        /* A failed conversion keeps the verified raw image and its journal,
         * so that the next run converts again without fetching anything. */
        unlink(rc ? converted : co->part);
        return rc;
    }
    int rc = output_untouched(co, err);
    if (rc)
        return rc;
    if (rename(co->part, out) < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot rename into place: %s", out, strerror(errno));
    return 0;
}

/* Notes what OUT now holds, for the next checkout to the same place.  The
 * image is in place whatever happens here: a missing record only means that
 * the next checkout there asks for --force. */
static void remember_output(struct checkout *co)
{
    struct vms_written w = {.version = co->version.number};
    fsp_error why;
    snprintf(w.image, sizeof w.image, "%s", co->o->name);
    snprintf(w.format, sizeof w.format, "%s", output_format(co));
    snprintf(w.holder, sizeof w.holder, "%s", co->holder);
    memcpy(w.digest, co->version.digest, FSP_SHA256_LEN);
    if (vms_written_save(co->o->out, &w, &why))
        vms_ctx_warn(co->c, "%s; a later checkout to %s will have to be forced", why.msg,
                     co->o->out);
}

static int rebuild(struct checkout *co, bool allow_resume, bool *same, fsp_error *err)
{
    vms_order_hash_free(co->in_order);
    co->in_order = NULL; /* without one, chunked streams are read back */
    vms_order_hash_new(co->target, &co->in_order);
    int rc = open_output(co, allow_resume, err);
    if (!rc)
        rc = copy_from_seeds(co, err);
    if (!rc)
        rc = fetch_from_repo(co, err);
    /* What arrived whole is kept for the next run, whatever stopped this one
     * (a dropped link, most likely). */
    fsp_error ignored;
    int synced = sync_journal(co, rc ? &ignored : err);
    if (!rc)
        rc = synced;
    co->stats->bytes_shared = co->share.bytes_shared;
    close_output(co);
    if (!rc)
        rc = verify_output(co, same, err);
    return rc;
}

static void reset_progress(struct checkout *co)
{
    for (size_t i = 0; i < co->n_objs; i++)
        co->objs[i].done = co->objs[i].checked_write = false;
    co->done_bytes = 0;
    struct vms_stats *st = co->stats;
    st->bytes_resumed = st->bytes_from_seeds = st->objects_from_seeds = 0;
    st->bytes_fetched_raw = st->bytes_fetched_compressed = st->objects_fetched = 0;
}

/* Why an image that did not verify is worth one rebuild from scratch, or
 * NULL.  Seed ranges the kernel placed (shared, or copied from the file)
 * were read and checked just before, so a write to the seed in between shows
 * only in the verification. */
static const char *worth_rebuilding(const struct checkout *co)
{
    if (co->stats->bytes_resumed)
        return "the resumed image did not verify";
    return co->share.bytes_placed ? "did not verify: a seed changed after it was read" : NULL;
}

static int execute(struct checkout *co, fsp_error *err)
{
    bool same = false;
    int rc = rebuild(co, true, &same, err);
    const char *why = rc || same ? NULL : worth_rebuilding(co);
    if (why) {
        vms_ctx_warn(co->c, "%s: %s; rebuilding it from scratch", co->part, why);
        reset_progress(co);
        co->write_seeds = co->share.bytes_placed > 0; /* the seed may be changing still */
        rc = rebuild(co, false, &same, err);
    }
    if (!rc && !same)
        rc = fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG,
                      "%s: the rebuilt image's canonical digest does not match %s@%u; not installed",
                      co->part, co->o->name, co->version.number);
    if (!rc)
        rc = install_output(co, err);
    if (!rc) {
        unlink(co->journal_path);
        remember_output(co);
    }
    return rc;
}

/* ---- the operation --------------------------------------------------------- */

static int load_target(struct checkout *co, fsp_error *err)
{
    char path[PATH_MAX];
    int rc = vms_repo_version(co->c->repo, co->o->name, co->o->version, &co->version, err);
    if (!rc) /* before anything is fetched or written */
        rc = vms_ctx_require_signature(co->c, &co->version, err);
    if (!rc)
        rc = vms_ctx_manifest(co->c, co->version.manifest, path, sizeof path, err);
    if (!rc)
        rc = vms_loaded_read(path, &co->target, err);
    if (!rc) {
        co->stats->version = co->version.number;
        co->stats->image_size = co->target->image_size;
        memcpy(co->stats->canonical_digest, co->version.digest, FSP_SHA256_LEN);
    }
    return rc;
}

/* ---- an existing OUT ---------------------------------------------------------- */

struct digest_search {
    const uint8_t *digest;
    bool found;
};

static int match_digest(void *ctx, const struct vms_version *v)
{
    struct digest_search *d = ctx;
    d->found = d->found || !memcmp(v->digest, d->digest, FSP_SHA256_LEN);
    return 0;
}

/* Whether some version of NAME holds DIGEST: then OUT's content is safe in
 * the repository (it was checked in, say) and may be replaced. */
static bool is_a_version(struct checkout *co, const char *name, const uint8_t digest[FSP_SHA256_LEN])
{
    struct digest_search d = {digest, false};
    fsp_error ignored;
    return !vms_repo_list(co->c->repo, name, match_digest, &d, &ignored) && d.found;
}

/* What OUT holds now: the recorded version when OUT is untouched since, else
 * what a scan finds (a VM that merely opened it may have touched its times).
 * False when OUT no longer reads as an image. */
static bool current_digest(struct checkout *co, const struct vms_written *w, const struct stat *st,
                           uint8_t digest[FSP_SHA256_LEN])
{
    struct fsp_summary sum;
    fsp_error ignored;
    if (vms_written_unchanged(w, st)) {
        memcpy(digest, w->digest, FSP_SHA256_LEN);
        return true;
    }
    vms_ctx_warn(co->c, "%s: changed since vmsync wrote %s@%u there; reading it to see what it holds",
                 co->o->out, w->image, w->version);
    vms_ctx_scanning(co->c, VMS_PHASE_SCAN_OUTPUT, 0, 0);
    if (vms_ctx_scan_summary(co->c, co->o->out, &sum, &ignored))
        return false;
    memcpy(digest, sum.digest, FSP_SHA256_LEN);
    return true;
}

/* May OUT be replaced?  It may when it is absent, with --force, or when vmsync
 * wrote it and it still holds a version of the image; when it holds the very
 * version asked for (and in that format), there is nothing to rebuild. */
static int guard_output(struct checkout *co, fsp_error *err)
{
    const char *out = co->o->out;
    struct stat st;
    struct vms_written w;
    uint8_t now[FSP_SHA256_LEN];
    if (co->o->force || !out || lstat(out, &st) < 0)
        return 0;
    co->out_existed = true;
    vms_written_identity(&co->out_seen, &st);
    if (!S_ISREG(st.st_mode) || !vms_written_load(out, &st, &w))
        return fsp_fail(err, VMS_EK_CONFLICT, -EEXIST,
                        "%s: already exists, and vmsync did not write it", out);
    bool readable = current_digest(co, &w, &st, now);
    if (readable && !memcmp(now, co->version.digest, FSP_SHA256_LEN) &&
        !strcmp(w.format, output_format(co))) {
        co->in_place = true;
        return 0;
    }
    if (readable && (!memcmp(now, w.digest, FSP_SHA256_LEN) || is_a_version(co, w.image, now)))
        return 0;
    return fsp_fail(err, VMS_EK_CONFLICT, -EEXIST,
                    "%s: changed since vmsync wrote %s@%u there, and no version holds the change: "
                    "check it in first", out, w.image, w.version);
}

/* OUT holds the version already: said, and its record refreshed when a scan
 * was needed to tell or the lease is now another's.  An export takes no
 * lease, so the checkout's holder in the record still stands. */
static void keep_in_place(struct checkout *co)
{
    struct stat st;
    struct vms_written w;
    co->stats->in_place = true;
    if (lstat(co->o->out, &st) < 0 || !vms_written_load(co->o->out, &st, &w))
        return;
    if (co->o->export_only)
        snprintf(co->holder, sizeof co->holder, "%s", w.holder);
    if (!vms_written_unchanged(&w, &st) || w.version != co->version.number || strcmp(w.holder, co->holder))
        remember_output(co);
}

/* Whether the client takes over the lease someone else holds (it is asked
 * after the refusal, so that it sees the holder that refused it). */
static bool client_steals(struct checkout *co)
{
    struct vms_lease held;
    bool found = false;
    fsp_error ignored; /* the refusal stands when the holder cannot be read */
    if (!co->o->steal || vms_repo_lease_get(co->c->repo, co->o->name, &held, &found, &ignored))
        return false;
    struct vms_lease_info info = {held.image, held.version, held.user, held.host, held.since};
    return found && co->o->steal(co->o->steal_ctx, &info) != 0;
}

/* Takes the lease and learns whom the repository knows as its holder (an
 * agent records its own --user, not ours): OUT's record keeps it, so that a
 * check-in re-run after its lease is gone can tell its own version. */
static int take_lease(struct checkout *co, fsp_error *err)
{
    struct vms_lease held;
    bool found = false;
    if (co->o->export_only || !vms_repo_writable(co->c->repo))
        return 0; /* a read-only repository (a bundle) keeps no leases */
    int rc = vms_repo_lease_take(co->c->repo, co->o->name, co->version.number, false, err);
    if (rc && err->kind == VMS_EK_CONFLICT && client_steals(co))
        rc = vms_repo_lease_take(co->c->repo, co->o->name, co->version.number, true, err);
    if (!rc)
        rc = vms_repo_lease_get(co->c->repo, co->o->name, &held, &found, err);
    if (!rc && found)
        snprintf(co->holder, sizeof co->holder, "%s", held.user);
    return rc;
}

static int audit(struct checkout *co, fsp_error *err)
{
    char detail[PATH_MAX + 128];
    if (!vms_repo_writable(co->c->repo))
        return 0; /* nor an audit log */
    snprintf(detail, sizeof detail, "%s; %llu bytes from seeds, %llu fetched", co->o->out,
             (unsigned long long)co->stats->bytes_from_seeds,
             (unsigned long long)co->stats->bytes_fetched_compressed);
    return vms_repo_audit(co->c->repo, co->o->export_only ? "export" : "checkout", co->o->name,
                          co->version.number, detail, err);
}

/* ---- the plan ------------------------------------------------------------------ */

struct vms_plan {
    struct checkout co;
    struct vms_checkout_opts o;  /* the caller's, its strings copied */
    char **strings;              /* the copies: name, out, format, then the seeds */
    struct vms_stats planning;   /* co.stats while planning */
    struct vms_plan_figures figures;
};

static char *copy_string(vms_plan *p, size_t i, const char *s)
{
    return s ? (p->strings[i] = strdup(s)) : NULL;
}

static int copy_opts(vms_plan *p, const struct vms_checkout_opts *o, fsp_error *err)
{
    if (!o->name)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "a checkout needs the image's name");
    size_t n = 4 + o->n_seeds; /* and a prefetched image of NAME */
    bool ok = (p->strings = calloc(n, sizeof *p->strings)) != NULL;
    p->o = *o;
    p->o.seeds = (const char *const *)(p->strings ? p->strings + 3 : NULL);
    ok = ok && (p->o.name = copy_string(p, 0, o->name)) != NULL;
    ok = ok && (!o->out || (p->o.out = copy_string(p, 1, o->out)));
    ok = ok && (!o->format || (p->o.format = copy_string(p, 2, o->format)));
    for (size_t i = 0; ok && i < o->n_seeds; i++)
        ok = copy_string(p, 3 + i, o->seeds[i]) != NULL;
    return ok ? 0 : fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
}

static void fill_figures(vms_plan *p)
{
    struct vms_plan_figures *f = &p->figures;
    const struct checkout *co = &p->co;
    f->version = co->version.number;
    f->image_size = co->target->image_size;
    memcpy(f->canonical_digest, co->version.digest, FSP_SHA256_LEN);
    f->bytes_zero = p->planning.bytes_zero;
    f->bytes_resumed = p->planning.bytes_resumed;
    f->in_place = co->in_place;
    for (size_t i = 0; i < co->n_objs; i++) {
        const struct object *o = &co->objs[i];
        if (o->to_fetch) {
            f->objects_to_fetch++;
            f->bytes_to_fetch_raw += o->len;
            f->bytes_to_fetch_stored += o->stored;
        } else if (o->seed && !o->done) {
            f->objects_from_seeds++;
            f->bytes_from_seeds += o->len;
        }
    }
}

/* Everything a rebuild of OUT needs: the writes, the seeds that supply
 * objects, what a journal says is in place, the sizes of the rest. */
static int plan_objects(struct checkout *co, fsp_error *err)
{
    int rc = plan(co, err);
    if (!rc)
        rc = load_seeds(co, err);
    for (size_t i = 0; !rc && i < co->n_objs; i++)
        co->total_bytes += co->objs[i].len;
    if (!rc)
        note_resumed(co);
    if (!rc)
        rc = ask_repository(co, err);
    return rc;
}

/* What a prefetch of NAME from this repository left in the cache is one more
 * seed; a prefetch itself builds the next version from the last. */
static int add_prefetched_seed(struct vms_ctx *c, vms_plan *p, fsp_error *err)
{
    char path[PATH_MAX];
    struct stat st;
    fsp_error too_long;
    if (vms_prefetch_path(c, p->o.name, path, sizeof path, &too_long) || stat(path, &st) < 0 ||
        !S_ISREG(st.st_mode))
        return 0; /* none (a name too long for one has none either) */
    for (size_t i = 0; i < p->o.n_seeds; i++)
        if (!strcmp(p->o.seeds[i], path))
            return 0;
    if (!(p->strings[3 + p->o.n_seeds] = strdup(path)))
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    p->o.n_seeds++;
    return 0;
}

static int make_plan(struct vms_ctx *c, const struct vms_checkout_opts *o, vms_plan **out,
                     fsp_error *err)
{
    vms_plan *p = calloc(1, sizeof *p);
    if (!p)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    p->co = (struct checkout){.c = c, .o = &p->o, .stats = &p->planning, .out_fd = -1};
    double started = vms_ctx_elapsed(c);
    int rc = copy_opts(p, o, err);
    if (!rc)
        rc = add_prefetched_seed(c, p, err);
    if (!rc && p->o.out)
        name_outputs(&p->co);
    if (!rc)
        rc = load_target(&p->co, err);
    if (!rc)
        rc = guard_output(&p->co, err);
    if (!rc && !p->co.in_place)
        rc = plan_objects(&p->co, err);
    if (!rc)
        fill_figures(p);
    p->figures.seconds = vms_ctx_elapsed(c) - started;
    p->co.c = NULL;
    if (rc)
        vms_plan_free(p);
    else
        *out = p;
    return rc;
}

/* ---- the run ----------------------------------------------------------------- */

/* The plan's verdict on OUT stands while OUT is as the plan saw it; else
 * OUT is judged again (it may now hold the version, or work to keep). */
static int guard_again(struct checkout *co, fsp_error *err)
{
    struct stat st;
    const char *out = co->o->out;
    bool exists = lstat(out, &st) == 0;
    if (co->o->force ||
        (exists == co->out_existed && (!exists || vms_written_unchanged(&co->out_seen, &st))))
        return 0;
    bool planned_in_place = co->in_place;
    co->in_place = co->out_existed = false;
    int rc = guard_output(co, err);
    if (!rc && planned_in_place && !co->in_place)
        rc = fsp_fail(err, VMS_EK_CONFLICT, -ESTALE,
                      "%s: no longer holds %s@%u, as it did when the checkout was planned: plan again",
                      out, co->o->name, co->version.number);
    return rc;
}

/* A run starts from the plan, whatever an earlier run of it did. */
static void begin_run(vms_plan *p, struct vms_ctx *c, struct vms_stats *stats)
{
    struct checkout *co = &p->co;
    memset(stats, 0, sizeof *stats);
    co->c = c;
    co->stats = stats;
    co->n_pending = 0;
    co->unsynced_bytes = 0;
    co->synced_at = 0;
    co->holder[0] = 0;
    reset_progress(co);
    stats->version = p->figures.version;
    stats->image_size = p->figures.image_size;
    stats->bytes_zero = p->figures.bytes_zero;
    memcpy(stats->canonical_digest, p->figures.canonical_digest, FSP_SHA256_LEN);
}

/* A seed given as its manifest tells a plan what some laptop holds, but has
 * no bytes to give. */
static int refuse_manifest_seeds(const struct checkout *co, fsp_error *err)
{
    for (size_t i = 0; i < co->o->n_seeds; i++)
        if (vms_is_manifest(co->o->seeds[i]))
            return fsp_fail(err, FSP_EK_USAGE, -EINVAL,
                            "%s: a manifest, not an image: a plan may count on it, a checkout "
                            "cannot copy from it", co->o->seeds[i]);
    return 0;
}

static int run_plan(struct vms_ctx *c, vms_plan *p, struct vms_stats *stats, fsp_error *err)
{
    struct checkout *co = &p->co;
    begin_run(p, c, stats);
    int rc = refuse_manifest_seeds(co, err);
    if (!rc)
        rc = co->o->out ? guard_again(co, err)
                        : fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s@%u: the plan names no image to write",
                                   co->o->name, co->version.number);
    if (!rc)
        rc = take_lease(co, err);
    if (!rc && co->in_place)
        keep_in_place(co);
    else if (!rc)
        rc = execute(co, err);
    if (!rc && !(co->prefetch && co->in_place)) /* a timer's idle runs are no news */
        rc = audit(co, err);
    close_output(co);
    vms_seed_index_close_images(&co->seeds); /* a plan kept for later holds no seed open */
    co->c = NULL;
    co->stats = &p->planning;
    return rc;
}

/* ---- the operations ------------------------------------------------------------ */

int vms_checkout_plan(vms_client *cl, const struct vms_checkout_opts *o, vms_plan **out,
                      fsp_error *err)
{
    struct vms_ctx c;
    *out = NULL;
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc)
        rc = make_plan(&c, o, out, err);
    return vms_ctx_close(&c, rc, err);
}

int vms_checkout_run(vms_client *cl, vms_plan *p, struct vms_stats *stats, fsp_error *err)
{
    struct vms_ctx c;
    memset(stats, 0, sizeof *stats);
    int rc = vms_ctx_open(&c, cl, stats, err);
    if (!rc)
        rc = run_plan(&c, p, stats, err);
    stats->seconds = vms_ctx_elapsed(&c);
    return vms_ctx_close(&c, rc, err);
}

int vms_ctx_checkout(struct vms_ctx *c, const struct vms_checkout_opts *o, bool prefetch,
                     struct vms_stats *stats, fsp_error *err)
{
    vms_plan *p = NULL;
    int rc = make_plan(c, o, &p, err);
    if (!rc && prefetch && !p->figures.in_place)
        rc = vms_prefetch_room(p->o.out, p->o.name, &p->figures, err);
    if (!rc) {
        p->co.prefetch = prefetch;
        rc = run_plan(c, p, stats, err);
    }
    vms_plan_free(p);
    return rc;
}

int vms_checkout(vms_client *cl, const struct vms_checkout_opts *o,
                 struct vms_stats *stats, fsp_error *err)
{
    struct vms_ctx c;
    memset(stats, 0, sizeof *stats);
    int rc = vms_ctx_open(&c, cl, stats, err);
    if (!rc)
        rc = vms_ctx_checkout(&c, o, false, stats, err);
    stats->seconds = vms_ctx_elapsed(&c);
    return vms_ctx_close(&c, rc, err);
}

const struct vms_plan_figures *vms_plan_figures(const vms_plan *p) { return &p->figures; }

int vms_plan_objects(const vms_plan *p, vms_plan_object_cb cb, void *ctx)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < p->co.n_objs; i++) {
        const struct object *o = &p->co.objs[i];
        if (o->to_fetch)
            rc = cb(ctx, &(struct vms_plan_object){o->hash, o->len, o->stored});
    }
    return rc;
}

double vms_plan_seconds(const vms_plan *p, uint64_t bytes_per_second)
{
    return bytes_per_second ? (double)p->figures.bytes_to_fetch_stored / (double)bytes_per_second : 0;
}

void vms_plan_free(vms_plan *p)
{
    if (!p)
        return;
    struct checkout *co = &p->co;
    close_output(co);
    vms_seed_index_free(&co->seeds);
    vms_order_hash_free(co->in_order); /* it reads the target's streams */
    vms_loaded_free(co->target);
    vms_hashmap_free(&co->obj_by_hash);
    free(co->objs);
    free(co->tasks);
    free(co->refs);
    free(co->journal_pending);
    for (size_t i = 0; p->strings && i < 3 + p->o.n_seeds; i++)
        free(p->strings[i]);
    free(p->strings);
    free(p);
}

/* ---- small repository queries used by the CLI ------------------------------ */

int vms_version_lookup(vms_client *cl, const char *name, uint32_t version, struct vms_version *out,
                       fsp_error *err)
{
    struct vms_ctx c;
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc)
        rc = vms_repo_version(c.repo, name, version, out, err);
    return vms_ctx_close(&c, rc, err);
}

int vms_fetch_manifest(vms_client *cl, const char *name, uint32_t version,
                       const char *dest, fsp_error *err)
{
    struct vms_ctx c;
    struct vms_version v;
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc)
        rc = vms_repo_version(c.repo, name, version, &v, err);
    if (!rc)
        rc = vms_repo_get_manifest(c.repo, v.manifest, dest, err);
    return vms_ctx_close(&c, rc, err);
}

int vms_verify(vms_client *cl, const char *name, uint32_t version, const char *image,
               bool *same, uint8_t expected[FSP_SHA256_LEN], uint8_t actual[FSP_SHA256_LEN],
               fsp_error *err)
{
    struct vms_ctx c;
    struct vms_version v;
    int rc = vms_ctx_open(&c, cl, NULL, err);
    if (!rc)
        rc = vms_repo_version(c.repo, name, version, &v, err);
    if (!rc)
        rc = vms_ctx_require_signature(&c, &v, err);
    struct fsp_summary sum;
    vms_ctx_scanning(&c, VMS_PHASE_VERIFY, 0, 0);
    if (!rc)
        rc = vms_ctx_scan_summary(&c, image, &sum, err);
    if (!rc) {
        memcpy(expected, v.digest, FSP_SHA256_LEN);
        memcpy(actual, sum.digest, FSP_SHA256_LEN);
        *same = !memcmp(expected, actual, FSP_SHA256_LEN);
    }
    return vms_ctx_close(&c, rc, err);
}
