/* A sink that prints a manifest as JSON while it streams, so printing a
 * manifest of millions of entries needs no more memory than one entry. */
#include "vmsync.h"

#include <errno.h>

#include <stdlib.h>
#include <string.h>

#define NO_HASH (FSP_STREAM_UNREADABLE | FSP_STREAM_NOT_HASHED)

struct vms_json {
    struct fsp_sink sink;
    FILE *out;
    uint32_t flags;
    bool in_volume, first_entry, first_volume;
    /* Warnings and layout runs arrive interleaved with entries but print in
     * their own arrays, so they are buffered in memory-backed streams. */
    char *warnings, *layout;
    size_t warnings_len, layout_len;
    FILE *warnings_f, *layout_f;
    uint64_t n_warnings, n_runs;
};

/* Names on disk are bytes; JSON needs UTF-8, so a byte that is not part of a
 * valid sequence prints as U+FFFD (vms_json_member adds the bytes). */
void vms_json_string(FILE *out, const char *s)
{
    if (!s) {
        fputs("null", out);
        return;
    }
    putc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = vms_utf8_len((const char *)p);
        if (!n)
            fputs("\\ufffd", out);
        else if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\u%04x", *p);
        else
            fwrite(p, 1, n, out);
        p += n ? n : 1;
    }
    putc('"', out);
}

void vms_json_member(FILE *out, const char *key, const char *value)
{
    fprintf(out, "\"%s\":", key);
    vms_json_string(out, value);
    if (!value || vms_utf8_valid(value))
        return;
    fprintf(out, ",\"%s_bytes\":\"", key);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        fprintf(out, "%02x", *p);
    putc('"', out);
}

void vms_json_levels(FILE *out, const uint64_t *counts)
{
    int lo = 0, hi = 0;
    for (int l = VMS_STATS_LEVELS - 1; l >= 0; l--)
        if (counts[l]) {
            lo = l;
            hi = hi ? hi : l;
        }
    fprintf(out, "\"level_min\":%d,\"level_max\":%d,\"segments_at_level\":{", lo, hi);
    const char *sep = "";
    for (int l = 0; l < VMS_STATS_LEVELS; l++)
        if (counts[l]) {
            fprintf(out, "%s\"%d\":%llu", sep, l, (unsigned long long)counts[l]);
            sep = ",";
        }
    putc('}', out);
}

static void print_hash(FILE *out, const char *key, const uint8_t *h)
{
    char hex[2 * FSP_SHA256_LEN + 1];
    fsp_hex(h, FSP_SHA256_LEN, hex);
    fprintf(out, ",\"%s\":\"%s\"", key, hex);
}

static int j_image(void *ctx, const struct fsp_image_info *i)
{
    vms_json *j = ctx;
    fprintf(j->out, "{\"format\":\"vmsync-manifest\",\"version\":%d,\n\"image\":{\"size\":%llu,"
                    "\"format\":",
            VMS_MANIFEST_VERSION, (unsigned long long)i->size);
    vms_json_string(j->out, i->format);
    fputs(",\"table\":", j->out);
    vms_json_string(j->out, i->table);
    fputs("},\n\"volumes\":[", j->out);
    j->first_volume = true;
    return 0;
}

static void close_volume(vms_json *j)
{
    if (j->in_volume)
        fputs("]}", j->out);
    j->in_volume = false;
}

static void print_str_field(FILE *out, const char *key, const char *value)
{
    putc(',', out);
    vms_json_member(out, key, value);
}

static int j_volume(void *ctx, const struct fsp_volume_info *v)
{
    vms_json *j = ctx;
    close_volume(j);
    fprintf(j->out, "%s\n{\"index\":%u,\"start\":%llu,\"length\":%llu,\"fs\":\"%s\"",
            j->first_volume ? "" : ",", v->index, (unsigned long long)v->start,
            (unsigned long long)v->length, fsp_fs_kind_name(v->fs_kind));
    print_str_field(j->out, "fs_type", v->fs_type);
    fprintf(j->out, ",\"block_size\":%u,\"fs_length\":%llu", v->block_size,
            (unsigned long long)v->fs_length);
    print_str_field(j->out, "label", v->fs_label);
    print_str_field(j->out, "uuid", v->fs_uuid);
    print_str_field(j->out, "part_type", v->part_type);
    print_str_field(j->out, "part_name", v->part_name);
    print_str_field(j->out, "part_uuid", v->part_uuid);
    fputs(",\"entries\":[", j->out);
    j->first_volume = false;
    j->in_volume = true;
    j->first_entry = true;
    return 0;
}

static void print_flag_list(FILE *out, const char *key, uint32_t flags, const char *const *names,
                            size_t n_names)
{
    if (!flags)
        return;
    fprintf(out, ",\"%s\":[", key);
    bool first = true;
    for (size_t i = 0; i < n_names; i++) {
        if (flags & (1u << i)) {
            fprintf(out, "%s\"%s\"", first ? "" : ",", names[i]);
            first = false;
        }
    }
    putc(']', out);
}

static void print_streams(FILE *out, const struct fsp_entry *e)
{
    static const char *const stream_flags[] = {"sparse", "compressed", "resident", "encrypted",
                                               "unreadable", "not_hashed"};
    fputs(",\"streams\":[", out);
    for (uint32_t i = 0; i < e->n_streams; i++) {
        const struct fsp_stream *st = &e->streams[i];
        fputs(i ? ",{" : "{", out);
        vms_json_member(out, "name", st->name);
        fprintf(out, ",\"size\":%llu", (unsigned long long)st->size);
        if (!(st->flags & NO_HASH))
            print_hash(out, "sha256", st->sha256);
        print_flag_list(out, "flags", st->flags, stream_flags, 6);
        fprintf(out, ",\"extents\":%u,\"chunks\":%u}", st->n_extents, st->n_chunks);
    }
    putc(']', out);
}

static void print_xattrs(FILE *out, const struct fsp_entry *e)
{
    if (!e->n_xattrs)
        return;
    fputs(",\"xattrs\":[", out);
    for (uint32_t i = 0; i < e->n_xattrs; i++) {
        fputs(i ? ",{" : "{", out);
        vms_json_member(out, "name", e->xattrs[i].name);
        fprintf(out, ",\"size\":%u}", e->xattrs[i].len);
    }
    putc(']', out);
}

static const struct fsp_stream *data_stream(const struct fsp_entry *e)
{
    return e->n_streams && !e->streams[0].name ? &e->streams[0] : NULL;
}

static int j_entry(void *ctx, uint64_t seq, const struct fsp_entry *e)
{
    static const char *const entry_flags[] = {"hardlink", "volatile", "damaged"};
    vms_json *j = ctx;
    FILE *out = j->out;
    fprintf(out, "%s\n{\"seq\":%llu", j->first_entry ? "" : ",", (unsigned long long)seq);
    j->first_entry = false;
    print_str_field(out, "path", e->path);
    fprintf(out, ",\"type\":\"%s\",\"size\":%llu", fsp_entry_type_name(e->type),
            (unsigned long long)e->size);
    const struct fsp_stream *data = data_stream(e);
    if (data && e->type == FSP_T_REG && !(data->flags & NO_HASH))
        print_hash(out, "sha256", data->sha256);
    fprintf(out, ",\"ino\":%llu,\"mode\":%u,\"uid\":%u,\"gid\":%u,\"nlink\":%u,\"mtime\":\"%lld.%09u\"",
            (unsigned long long)e->ino, e->mode, e->uid, e->gid, e->nlink,
            (long long)e->mtime.sec, e->mtime.nsec);
    if (e->attributes)
        fprintf(out, ",\"attributes\":%u", e->attributes);
    print_flag_list(out, "flags", e->flags, entry_flags, 3);
    if (e->symlink)
        print_str_field(out, "symlink", e->symlink);
    if (e->dos_name)
        print_str_field(out, "dos_name", e->dos_name);
    if (e->type == FSP_T_CHR || e->type == FSP_T_BLK)
        fprintf(out, ",\"rdev\":[%llu,%llu]", (unsigned long long)(e->rdev >> 32),
                (unsigned long long)(e->rdev & 0xffffffffu));
    if (e->security_len)
        fprintf(out, ",\"security_size\":%u", e->security_len);
    print_xattrs(out, e);
    print_streams(out, e);
    putc('}', out);
    return 0;
}

static int j_warning(void *ctx, uint32_t volume, const char *path, const char *msg)
{
    vms_json *j = ctx;
    fprintf(j->warnings_f, "%s\n{\"volume\":%u", j->n_warnings++ ? "," : "", volume);
    print_str_field(j->warnings_f, "path", path);
    print_str_field(j->warnings_f, "message", msg);
    putc('}', j->warnings_f);
    return 0;
}

static int j_layout(void *ctx, const struct fsp_layout_run *run)
{
    vms_json *j = ctx;
    if (!(j->flags & VMS_JSON_LAYOUT))
        return 0;
    fprintf(j->layout_f, "%s\n{\"offset\":%llu,\"length\":%llu,\"kind\":\"%s\",\"volume\":%u",
            j->n_runs++ ? "," : "", (unsigned long long)run->offset,
            (unsigned long long)run->length, fsp_layout_kind_name(run->kind), run->volume);
    if (run->kind == FSP_L_FILE)
        fprintf(j->layout_f, ",\"entry\":%llu,\"stream\":%u,\"stream_offset\":%llu",
                (unsigned long long)run->entry_seq, run->stream,
                (unsigned long long)run->stream_offset);
    putc('}', j->layout_f);
    return 0;
}

static int j_done(void *ctx, const struct fsp_summary *s)
{
    vms_json *j = ctx;
    close_volume(j);
    fflush(j->warnings_f);
    fflush(j->layout_f);
    fprintf(j->out, "],\n\"warnings\":[%s]", j->warnings ? j->warnings : "");
    if (j->flags & VMS_JSON_LAYOUT)
        fprintf(j->out, ",\n\"layout\":[%s]", j->layout ? j->layout : "");
    fprintf(j->out,
            ",\n\"summary\":{\"entries\":%llu,\"allocated_bytes\":%llu,\"file_bytes\":%llu,"
            "\"raw_bytes\":%llu,\"zero_bytes\":%llu,\"warnings\":%llu}",
            (unsigned long long)s->entries, (unsigned long long)s->allocated_bytes,
            (unsigned long long)s->file_bytes, (unsigned long long)s->raw_bytes,
            (unsigned long long)s->zero_bytes, (unsigned long long)s->warnings);
    print_hash(j->out, "digest", s->digest);
    fputs("}\n", j->out);
    return 0;
}

int vms_json_new(FILE *out, uint32_t flags, vms_json **jp, fsp_error *err)
{
    vms_json *j = calloc(1, sizeof *j);
    *jp = NULL;
    if (!j)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    j->out = out;
    j->flags = flags;
    j->warnings_f = open_memstream(&j->warnings, &j->warnings_len);
    j->layout_f = open_memstream(&j->layout, &j->layout_len);
    if (!j->warnings_f || !j->layout_f) {
        vms_json_free(j);
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    }
    j->sink = (struct fsp_sink){.image = j_image, .volume = j_volume, .entry = j_entry,
                                .warning = j_warning, .layout = j_layout, .done = j_done, .ctx = j};
    *jp = j;
    return 0;
}

const struct fsp_sink *vms_json_sink(vms_json *j) { return &j->sink; }

void vms_json_free(vms_json *j)
{
    if (!j)
        return;
    if (j->warnings_f)
        fclose(j->warnings_f);
    if (j->layout_f)
        fclose(j->layout_f);
    free(j->warnings);
    free(j->layout);
    free(j);
}
