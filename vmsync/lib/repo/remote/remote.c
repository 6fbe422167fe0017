/* An ssh:// repository: libssh to the server, vmsync-agent at the other end
 * of the channel, the protocol of proto.h between them.
 *
 * Every call is one request and its reply, except the bulk ones: a GET is one
 * request for a whole list, answered by a stream of segments; puts are
 * spooled to a temporary file and offered in rounds (OFFER, WANT, the wanted
 * objects as segments, PUT_END), so a check-in costs a few round trips
 * whatever the number of objects.  Objects the agent acknowledged are durable
 * on the server before the version that uses them is recorded. */
#include "repo/remote/remote.h"

#include "base/cancel.h"
#include "base/fileio.h"
#include "base/keyset.h"
#include "manifest/delta.h"
#include "wire/proto.h"
#include "wire/xfer.h"

#include <errno.h>
#include <fcntl.h>
#include <libssh/libssh.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SPOOL_ROUND (64u << 20) /* spooled bytes that trigger an offer round */
#define KEEPALIVE_SECONDS 10
#define PING_SECONDS 60 /* well inside the agent's --idle-timeout (600 s by default) */
#define SEND_CHUNK (32u << 10) /* a write that blocks holds up a cancel: keep each small */
#define OWED_MAX 16 /* answers owed before the next request waits for them */

struct spooled {
    uint64_t offset;
    uint32_t len;
};

/* An answer not read yet: its type, and for MANIFEST_ID the id it must name. */
struct owed {
    uint8_t reply;
    uint8_t id[FSP_SHA256_LEN];
};

typedef struct vms_remote vms_remote;

struct vms_remote {
    struct vms_repo base; /* first: a vms_repo * is a vms_remote * */
    char url[PATH_MAX];
    char user[128], host[256], port[8], path[PATH_MAX];
    struct vms_remote_opts opts;
    char known_hosts[PATH_MAX]; /* the file libssh reads and vmsync names */
    ssh_session ssh;
    ssh_channel ch;
    struct vms_conn conn;
    struct vms_traffic traffic;
    time_t last_io;
    time_t last_frame; /* the last protocol message sent: the agent's idle clock */
    uint32_t proto;    /* the protocol version the session speaks */

    /* puts not yet offered */
    int spool_fd;
    uint64_t spool_size;
    struct vms_keyset spool_keys;
    struct spooled *spool;
    size_t spool_cap;
    struct vms_keyset offered; /* offered before: the agent has them */

    /* requests sent ahead: their answers are read, in order, before any other */
    struct owed owed[OWED_MAX];
    size_t n_owed;
    int failed_rc; /* the first owed answer that failed: the handle's error from then on */
    bool hung_up;  /* our end of the channel is closed: no request may follow */
    fsp_error failed;
    struct vms_repo_progress progress; /* CONNECT and SEND */
    const vms_cancel *cancel; /* progress.cancel */
};

/* The operations of repo.h, filled into remote_ops at the end. */
static vms_repo_close_fn vms_remote_close;
static vms_repo_path_fn vms_remote_path;
static vms_repo_traffic_fn vms_remote_traffic;
static vms_repo_keep_alive_fn vms_remote_keep_alive;
static vms_repo_has_fn vms_remote_has;
static vms_repo_put_fn vms_remote_put;
static vms_repo_flush_fn vms_remote_flush;
static vms_repo_settle_fn vms_remote_settle;
static vms_repo_get_fn vms_remote_get;
static vms_repo_put_manifest_fn vms_remote_put_manifest;
static vms_repo_put_manifest_delta_fn vms_remote_put_manifest_delta;
static vms_repo_get_manifest_fn vms_remote_get_manifest;
static vms_repo_version_fn vms_remote_version;
static vms_repo_add_version_fn vms_remote_add_version;
static vms_repo_list_fn vms_remote_list;
static vms_repo_lease_take_fn vms_remote_lease_take;
static vms_repo_lease_get_fn vms_remote_lease_get;
static vms_repo_lease_release_fn vms_remote_lease_release;
static vms_repo_forget_fn vms_remote_forget;
static vms_repo_stats_fn vms_remote_stats;
static vms_repo_audit_fn vms_remote_audit;
static vms_repo_images_fn vms_remote_images;
static vms_repo_leases_fn vms_remote_leases;
static vms_repo_audit_log_fn vms_remote_audit_log;
static vms_repo_gc_fn vms_remote_gc;
static const struct vms_repo_ops remote_ops;

/* ---- the URL ------------------------------------------------------------------ */

/* ssh://[user@]host[:port]/path; the path is relative to the agent's root. */
static int parse_url(vms_remote *r, const char *url, fsp_error *err)
{
    snprintf(r->url, sizeof r->url, "%s", url);
    const char *p = url + 6, *slash = strchr(p, '/'), *at = memchr(p, '@', slash ? (size_t)(slash - p) : 0);
    if (!slash || slash == p)
        return fsp_fail(err, FSP_EK_USAGE, -EINVAL,
                        "%s: not an ssh URL: expected ssh://[user@]host[:port]/path", url);
    if (at) {
        if ((size_t)(at - p) >= sizeof r->user || at == p)
            return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: bad user name", url);
        memcpy(r->user, p, (size_t)(at - p));
        p = at + 1;
    }
    const char *host_end = slash;
    if (*p == '[') { /* [v6 address] */
        const char *close = memchr(p, ']', (size_t)(slash - p));
        if (!close)
            return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: bad host", url);
        host_end = close + 1;
        p++;
        if ((size_t)(close - p) >= sizeof r->host)
            return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: bad host", url);
        memcpy(r->host, p, (size_t)(close - p));
    } else {
        const char *colon = memchr(p, ':', (size_t)(slash - p));
        host_end = colon ? colon : slash;
        if (host_end == p || (size_t)(host_end - p) >= sizeof r->host)
            return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: bad host", url);
        memcpy(r->host, p, (size_t)(host_end - p));
    }
    if (*host_end == ':') {
        size_t n = (size_t)(slash - host_end - 1);
        char *end;
        long port = n && n < sizeof r->port ? strtol(host_end + 1, &end, 10) : 0;
        if (port < 1 || port > 65535 || end != slash)
            return fsp_fail(err, FSP_EK_USAGE, -EINVAL, "%s: bad port", url);
        snprintf(r->port, sizeof r->port, "%ld", port);
    }
    snprintf(r->path, sizeof r->path, "%s", slash + 1);
    return 0;
}

/* ---- the SSH transport --------------------------------------------------------- */

static int ssh_fail(vms_remote *r, int kind, const char *what, fsp_error *err)
{
    return fsp_fail(err, kind, kind == VMS_EK_DENIED ? -EACCES : -ECONNABORTED, "%s: %s: %s",
                    r->url, what, ssh_get_error(r->ssh));
}

/* What the agent said on stderr before it went away, for the message. */
static void agent_stderr(vms_remote *r, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = 0;
    while (n + 1 < cap) {
        int got = ssh_channel_read_nonblocking(r->ch, out + n, (uint32_t)(cap - 1 - n), 1);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    out[n] = 0;
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = 0;
}

static int lost(vms_remote *r, const char *how, fsp_error *err)
{
    char said[512];
    agent_stderr(r, said, sizeof said);
    return fsp_fail(err, VMS_EK_NETWORK, -ECONNRESET,
                    "%s: %s%s%s; run the same command again to resume", r->url, how,
                    said[0] ? ": the agent said: " : "", said);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ssh_channel_poll_timeout that the cancel token also ends (-ECANCELED): the
 * socket and the token are polled together, and libssh only reads what the
 * socket has.  What ssh_channel_poll_timeout returns otherwise: bytes
 * available, 0 at the time limit, SSH_EOF, SSH_ERROR. */
static int wait_readable(vms_remote *r, int timeout_ms)
{
    double deadline = now_ms() + timeout_ms;
    for (;;) {
        if (vms_cancel_fired(r->cancel)) /* a link that never pauses ends too */
            return -ECANCELED;
        int avail = ssh_channel_poll_timeout(r->ch, 0, 0);
        if (avail != 0)
            return avail;
        double left = deadline - now_ms();
        if (left <= 0)
            return 0;
        /* slices of at most 200 ms, so that nothing libssh holds unread waits long */
        int ms = left < 200 ? (int)left + 1 : 200;
        int rc = vms_cancel_poll(r->cancel, ssh_get_fd(r->ssh), POLLIN, ms);
        if (rc == -ECANCELED)
            return rc;
    }
}

static int ssh_recv(void *io, void *buf, size_t n, fsp_error *err)
{
    vms_remote *r = io;
    int timeout_ms = (r->opts.timeout > 0 ? r->opts.timeout : 60) * 1000;
    for (size_t done = 0; done < n;) {
        int avail = wait_readable(r, timeout_ms);
        if (avail == -ECANCELED)
            return vms_cancel_fail(err, "while waiting for the server");
        if (avail == 0)
            return fsp_fail(err, VMS_EK_NETWORK, -ETIMEDOUT,
                            "%s: no data from the server for %d s (is the link down?); run the "
                            "same command again to resume", r->url, timeout_ms / 1000);
        if (avail == SSH_EOF)
            return lost(r, "the agent closed the connection", err);
        if (avail < 0)
            return lost(r, "the connection was lost", err);
        size_t want = n - done < (size_t)avail ? n - done : (size_t)avail;
        int got = ssh_channel_read(r->ch, (uint8_t *)buf + done, (uint32_t)want, 0);
        if (got < 0)
            return lost(r, "the connection was lost", err);
        done += (size_t)got;
    }
    r->last_io = time(NULL);
    return 0;
}

/* Waits until the channel may take bytes: the server's window open and the
 * socket with room.  The window's size (> 0), 0 at the time limit,
 * -ECANCELED when the token fired, or SSH_EOF / SSH_ERROR.  A closed window
 * opens with a message from the server, so then the socket is polled for
 * input and libssh reads it. */
static int wait_writable(vms_remote *r, int timeout_ms)
{
    double deadline = now_ms() + timeout_ms;
    for (;;) {
        if (vms_cancel_fired(r->cancel))
            return -ECANCELED;
        uint32_t window = ssh_channel_window_size(r->ch);
        double left = deadline - now_ms();
        if (left <= 0)
            return 0;
        int ms = left < 200 ? (int)left + 1 : 200;
        int rc = vms_cancel_poll(r->cancel, ssh_get_fd(r->ssh), window ? POLLOUT : POLLIN, ms);
        if (rc == -ECANCELED)
            return rc;
        if (window && rc > 0)
            return window < INT_MAX ? (int)window : INT_MAX;
        int avail = window ? 0 : ssh_channel_poll_timeout(r->ch, 0, 0);
        if (avail == SSH_ERROR || avail == SSH_EOF)
            return avail;
    }
}

/* Each chunk fits the window and waits for room in the socket, so that a
 * link that stalls while sending is cancelled there, not after the timeout. */
static int ssh_send(void *io, const void *buf, size_t n, fsp_error *err)
{
    vms_remote *r = io;
    int timeout_ms = (r->opts.timeout > 0 ? r->opts.timeout : 60) * 1000;
    for (size_t done = 0; done < n;) {
        int room = wait_writable(r, timeout_ms);
        if (room == -ECANCELED)
            return vms_cancel_fail(err, "while sending");
        if (room == 0)
            return fsp_fail(err, VMS_EK_NETWORK, -ETIMEDOUT,
                            "%s: the server took nothing for %d s (is the link down?); run the "
                            "same command again to resume", r->url, timeout_ms / 1000);
        size_t chunk = n - done < SEND_CHUNK ? n - done : SEND_CHUNK;
        chunk = room > 0 && (size_t)room < chunk ? (size_t)room : chunk;
        const uint8_t *from = (const uint8_t *)buf + done;
        int put = room > 0 ? ssh_channel_write(r->ch, from, (uint32_t)chunk) : -1;
        if (put <= 0)
            return lost(r, "the connection was lost while sending", err);
        done += (size_t)put;
    }
    r->last_io = r->last_frame = time(NULL);
    return 0;
}

/* The server's key type and SHA256 fingerprint, "(unknown)" when libssh
 * cannot tell. */
static void fingerprint(vms_remote *r, char *type, size_t type_cap, char *fp, size_t fp_cap)
{
    ssh_key key = NULL;
    unsigned char *hash = NULL;
    size_t hlen = 0;
    snprintf(type, type_cap, "(unknown)");
    snprintf(fp, fp_cap, "(unknown)");
    if (ssh_get_server_publickey(r->ssh, &key) != SSH_OK)
        return;
    snprintf(type, type_cap, "%s", ssh_key_type_to_char(ssh_key_type(key)));
    if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) == 0) {
        char *hex = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
        if (hex)
            snprintf(fp, fp_cap, "%s", hex);
        ssh_string_free_char(hex);
        ssh_clean_pubkey_hash(&hash);
    }
    ssh_key_free(key);
}

/* The known hosts file: the caller's, else ~/.ssh/config's, else the one in
 * $HOME.  libssh's own default follows the password database's home, which
 * is not $HOME under sudo or a service: the file read, the file named in
 * messages and the file a remembered key goes to must be one. */
static void choose_known_hosts(vms_remote *r)
{
    char *from_config = NULL;
    if (r->opts.known_hosts) {
        snprintf(r->known_hosts, sizeof r->known_hosts, "%s", r->opts.known_hosts);
    } else if (ssh_options_get(r->ssh, SSH_OPTIONS_KNOWNHOSTS, &from_config) == SSH_OK) {
        snprintf(r->known_hosts, sizeof r->known_hosts, "%s", from_config);
        ssh_string_free_char(from_config);
        return;
    } else {
        const char *home = getenv("HOME");
        snprintf(r->known_hosts, sizeof r->known_hosts, "%s/.ssh/known_hosts", home ? home : "");
    }
    ssh_options_set(r->ssh, SSH_OPTIONS_KNOWNHOSTS, r->known_hosts);
}

/* Adds the server's key to the known hosts file (making its folder if needed). */
static int remember_key(vms_remote *r, const char *file, fsp_error *err)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        mkdir(dir, 0700);
    }
    if (ssh_session_update_known_hosts(r->ssh) != SSH_OK)
        return ssh_fail(r, FSP_EK_IO, "cannot add the host key to the known hosts file", err);
    return 0;
}

/* The client's answer about a key known_hosts does not vouch for; it is only
 * told about a changed one, which is refused whatever it says. */
static enum vms_host_key_answer ask_client(vms_remote *r, const struct vms_host_key *k)
{
    if (!r->opts.host_key)
        return VMS_HOST_KEY_REFUSE;
    enum vms_host_key_answer a = r->opts.host_key(r->opts.host_key_ctx, k);
    return k->state == VMS_HOST_KEY_UNKNOWN ? a : VMS_HOST_KEY_REFUSE;
}

static int refuse_key(vms_remote *r, const struct vms_host_key *k, fsp_error *err)
{
    if (k->state == VMS_HOST_KEY_CHANGED)
        return fsp_fail(err, VMS_EK_DENIED, -EACCES,
                        "%s: the host key has CHANGED (now %s %s); refusing to connect: someone "
                        "may be intercepting the connection.  If the server's key was really "
                        "replaced, remove its old line from %s",
                        r->url, k->type, k->fingerprint, k->known_hosts);
    if (k->state == VMS_HOST_KEY_OTHER_TYPE)
        return fsp_fail(err, VMS_EK_DENIED, -EACCES,
                        "%s: the server offers a key of another type (%s %s) than the one in %s; "
                        "refusing to connect",
                        r->url, k->type, k->fingerprint, k->known_hosts);
    return fsp_fail(err, VMS_EK_DENIED, -EACCES,
                    "%s: unknown host key %s %s (not in %s); check the fingerprint with the "
                    "server's administrator before trusting it",
                    r->url, k->type, k->fingerprint, k->known_hosts);
}

static int check_host_key(vms_remote *r, fsp_error *err)
{
    char type[64], fp[128];
    struct vms_host_key k = {.host = r->host, .type = type, .fingerprint = fp,
                             .known_hosts = r->known_hosts};
    fingerprint(r, type, sizeof type, fp, sizeof fp);
    switch (ssh_session_is_known_server(r->ssh)) {
    case SSH_KNOWN_HOSTS_OK: return 0;
    case SSH_KNOWN_HOSTS_CHANGED: k.state = VMS_HOST_KEY_CHANGED; break;
    case SSH_KNOWN_HOSTS_OTHER: k.state = VMS_HOST_KEY_OTHER_TYPE; break;
    case SSH_KNOWN_HOSTS_NOT_FOUND:
    case SSH_KNOWN_HOSTS_UNKNOWN: k.state = VMS_HOST_KEY_UNKNOWN; break;
    default: return ssh_fail(r, VMS_EK_DENIED, "cannot check the host key", err);
    }
    switch (ask_client(r, &k)) {
    case VMS_HOST_KEY_ACCEPT_ONCE: return 0;
    case VMS_HOST_KEY_REMEMBER: return remember_key(r, k.known_hosts, err);
    default: return refuse_key(r, &k, err);
    }
}

/* The handshake runs libssh in nonblocking mode, so that its waits are ours:
 * each step is tried again until libssh stops saying "again", polling the
 * socket and the token in between. */
enum handshake_step { STEP_CONNECT, STEP_LOGIN_KEY, STEP_LOGIN_AUTO, STEP_CHANNEL, STEP_EXEC };

static int try_step(vms_remote *r, enum handshake_step step, ssh_key key, const char *cmd)
{
    switch (step) {
    case STEP_CONNECT: return ssh_connect(r->ssh);
    case STEP_LOGIN_KEY: return ssh_userauth_publickey(r->ssh, NULL, key);
    case STEP_LOGIN_AUTO: return ssh_userauth_publickey_auto(r->ssh, NULL, NULL);
    case STEP_CHANNEL: return ssh_channel_open_session(r->ch);
    case STEP_EXEC: return ssh_channel_request_exec(r->ch, cmd);
    }
    return SSH_ERROR;
}

/* STEP's result once it is not "again", or -ECANCELED, or -ETIMEDOUT after
 * the timeout without an end (libssh's own timeout holds only when blocking). */
static int run_step(vms_remote *r, enum handshake_step step, ssh_key key, const char *cmd)
{
    double deadline = now_ms() + (r->opts.timeout > 0 ? r->opts.timeout : 60) * 1000.0;
    for (;;) {
        int rc = try_step(r, step, key, cmd);
        bool again = step == STEP_LOGIN_KEY || step == STEP_LOGIN_AUTO ? rc == SSH_AUTH_AGAIN
                                                                       : rc == SSH_AGAIN;
        if (!again)
            return rc;
        double left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        short events = POLLIN | (ssh_get_poll_flags(r->ssh) & SSH_WRITE_PENDING ? POLLOUT : 0);
        if (vms_cancel_poll(r->cancel, ssh_get_fd(r->ssh), events, left < 50 ? (int)left + 1 : 50) ==
            -ECANCELED)
            return -ECANCELED;
    }
}

/* A failed step's error: cancelled, timed out, or libssh's reason. */
static int step_fail(vms_remote *r, int rc, int kind, const char *what,
                     fsp_error *err)
{
    if (rc == -ECANCELED)
        return vms_cancel_fail(err, "while connecting");
    if (rc == -ETIMEDOUT)
        return fsp_fail(err, VMS_EK_NETWORK, -ETIMEDOUT, "%s: %s: no answer from the server for %d s",
                        r->url, what, r->opts.timeout > 0 ? r->opts.timeout : 60);
    return ssh_fail(r, kind, what, err);
}

static int authenticate(vms_remote *r, fsp_error *err)
{
    int rc;
    if (r->opts.identity) {
        ssh_key key = NULL;
        if (ssh_pki_import_privkey_file(r->opts.identity, NULL, NULL, NULL, &key) != SSH_OK)
            return fsp_fail(err, VMS_EK_DENIED, -EACCES,
                            "%s: cannot read the private key (missing, unreadable, not a key, or "
                            "protected by a passphrase: load it into ssh-agent instead)",
                            r->opts.identity);
        rc = run_step(r, STEP_LOGIN_KEY, key, NULL);
        ssh_key_free(key);
    } else {
        rc = run_step(r, STEP_LOGIN_AUTO, NULL, NULL); /* ssh-agent, then ~/.ssh/id_* */
    }
    if (rc == SSH_AUTH_SUCCESS)
        return 0;
    if (rc == -ECANCELED || rc == -ETIMEDOUT)
        return step_fail(r, rc, VMS_EK_NETWORK, "logging in", err);
    const char *user = r->user[0] ? r->user : "(local user)";
    return fsp_fail(err, VMS_EK_DENIED, -EACCES,
                    "%s: the server refused %s for user %s: %s", r->url,
                    r->opts.identity ? r->opts.identity : "the keys of ssh-agent and ~/.ssh", user,
                    ssh_get_error(r->ssh));
}

/* The steps of VMS_PHASE_CONNECT: connected, host key checked, authenticated,
 * agent started, agent's hello. */
#define CONNECT_STEPS 5

static int connected_step(vms_remote *r, uint64_t step, fsp_error *err)
{
    return vms_repo_report(&r->progress, VMS_PHASE_CONNECT, step, CONNECT_STEPS, err);
}

/* The channel, with the agent at its other end. */
static int start_agent(vms_remote *r, fsp_error *err)
{
    r->ch = ssh_channel_new(r->ssh);
    if (!r->ch)
        return ssh_fail(r, VMS_EK_NETWORK, "cannot open a channel", err);
    int rc = run_step(r, STEP_CHANNEL, NULL, NULL);
    if (rc != SSH_OK)
        return step_fail(r, rc, VMS_EK_NETWORK, "cannot open a channel", err);
    /* With command= in authorized_keys (the usual set-up) sshd runs the agent
     * whatever we ask for. */
    rc = run_step(r, STEP_EXEC, NULL, r->opts.agent ? r->opts.agent : "vmsync-agent");
    return rc == SSH_OK ? 0 : step_fail(r, rc, VMS_EK_NETWORK, "cannot start the agent", err);
}

static int connect_ssh(vms_remote *r, fsp_error *err)
{
    r->ssh = ssh_new();
    if (!r->ssh)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    long timeout = r->opts.timeout > 0 ? r->opts.timeout : 60;
    ssh_options_set(r->ssh, SSH_OPTIONS_HOST, r->host);
    ssh_options_parse_config(r->ssh, NULL); /* ~/.ssh/config, as ssh would */
    if (r->port[0])
        ssh_options_set(r->ssh, SSH_OPTIONS_PORT_STR, r->port);
    if (r->user[0])
        ssh_options_set(r->ssh, SSH_OPTIONS_USER, r->user);
    choose_known_hosts(r);
    ssh_options_set(r->ssh, SSH_OPTIONS_TIMEOUT, &timeout);
    ssh_set_blocking(r->ssh, 0);
    int rc = connected_step(r, 0, err);
    if (!rc) {
        int step = run_step(r, STEP_CONNECT, NULL, NULL);
        rc = step == SSH_OK ? 0 : step_fail(r, step, VMS_EK_NETWORK, "cannot connect", err);
    }
    if (!rc)
        rc = connected_step(r, 1, err);
    if (!rc)
        rc = check_host_key(r, err);
    if (!rc)
        rc = connected_step(r, 2, err);
    if (!rc)
        rc = authenticate(r, err);
    if (!rc)
        rc = connected_step(r, 3, err);
    if (!rc)
        rc = start_agent(r, err);
    if (!rc)
        rc = connected_step(r, 4, err);
    ssh_set_blocking(r->ssh, 1); /* the rest waits through wait_readable and wait_writable */
    return rc;
}

/* ---- requests ------------------------------------------------------------------
 * The agent answers requests in the order they came.  A request whose answer
 * nothing needs before the next one goes out is sent without waiting: its
 * answer is owed, and read before the next reply (or by settle).  That turns
 * the tail of a check-in (objects acknowledged, manifest stored, version
 * recorded; lease released, audit entry) into two round trips, not five.
 * Nothing is recorded on the strength of an unread answer: the agent records
 * a version only once it holds the manifest and every object it needs. */

static int bad_reply(vms_remote *r, uint8_t type, fsp_error *err)
{
    char what[64];
    snprintf(what, sizeof what, "a malformed %s", vms_msg_name(type));
    return vms_proto_fail(&r->conn, err, what);
}

static int read_owed(vms_remote *r, const struct owed *o, fsp_error *err)
{
    struct vms_rbuf body;
    uint8_t id[FSP_SHA256_LEN];
    int rc = vms_conn_expect(&r->conn, o->reply, &body, err);
    if (rc)
        return rc;
    if (o->reply == VMS_M_PUT_OK)
        vms_get_varint(&body);
    if (o->reply == VMS_M_MANIFEST_ID) {
        vms_get_hash(&body, id);
        if (memcmp(id, o->id, FSP_SHA256_LEN))
            return bad_reply(r, o->reply, err);
    }
    return vms_get_done(&body) ? 0 : bad_reply(r, o->reply, err);
}

/* The handle's first failure, once an owed answer reported one. */
static int failed_before(vms_remote *r, fsp_error *err)
{
    if (r->failed_rc)
        *err = r->failed;
    return r->failed_rc;
}

static int settle(vms_remote *r, fsp_error *err)
{
    for (size_t i = 0; i < r->n_owed && !r->failed_rc; i++)
        r->failed_rc = read_owed(r, &r->owed[i], &r->failed);
    r->n_owed = 0;
    return failed_before(r, err);
}

static int vms_remote_settle(vms_repo *repo, fsp_error *err) { return settle((vms_remote *)repo, err); }

/* The agent reads the requests before our end of file, answers them and
 * ends: its answers and the session's end come back in one round trip. */
static void vms_remote_hang_up(vms_repo *repo)
{
    vms_remote *r = (vms_remote *)repo;
    if (r->ch && !r->hung_up && ssh_channel_send_eof(r->ch) == SSH_OK)
        r->hung_up = true;
}

/* A request after the hang-up would never be answered. */
static int after_hang_up(vms_remote *r, fsp_error *err)
{
    if (r->hung_up)
        return fsp_fail(err, VMS_EK_NETWORK, -EPIPE, "%s: the session was ended", r->url);
    return failed_before(r, err);
}

/* Sends request TYPE, then reads what is owed: its own reply comes next. */
static int send_request(vms_remote *r, uint8_t type, const struct vms_wbuf *b, fsp_error *err)
{
    int rc = after_hang_up(r, err);
    if (!rc)
        rc = vms_conn_send(&r->conn, type, b, err);
    return rc ? rc : settle(r, err);
}

/* Notes that the next answer due (after those already owed) is REPLY; ID is
 * the manifest a MANIFEST_ID must name (NULL otherwise). */
static int owe(vms_remote *r, uint8_t reply, const uint8_t *id, fsp_error *err)
{
    int rc = r->n_owed == OWED_MAX ? settle(r, err) : 0;
    if (rc)
        return rc;
    struct owed *o = &r->owed[r->n_owed++];
    o->reply = reply;
    if (id)
        memcpy(o->id, id, FSP_SHA256_LEN);
    return 0;
}

/* Sends request TYPE without waiting for its REPLY, which read_owed checks. */
static int send_owing(vms_remote *r, uint8_t type, struct vms_wbuf *b, uint8_t reply, fsp_error *err)
{
    int rc = after_hang_up(r, err);
    if (!rc)
        rc = vms_conn_send(&r->conn, type, b, err);
    vms_wbuf_free(b);
    return rc ? rc : owe(r, reply, NULL, err);
}

static int request(vms_remote *r, uint8_t type, const struct vms_wbuf *b, uint8_t reply,
                   struct vms_rbuf *body, fsp_error *err)
{
    int rc = send_request(r, type, b, err);
    if (!rc)
        rc = vms_conn_expect(&r->conn, reply, body, err);
    return rc;
}

/* Sends TYPE with B and expects OK. */
static int simple(vms_remote *r, uint8_t type, struct vms_wbuf *b, fsp_error *err)
{
    struct vms_rbuf body;
    int rc = request(r, type, b, VMS_M_OK, &body, err);
    vms_wbuf_free(b);
    return rc || vms_get_done(&body) ? rc : bad_reply(r, VMS_M_OK, err);
}

/* HELLO and OPEN go out together: one round trip to a usable session. */
static int hello(vms_remote *r, uint32_t version, const char *user, const char *host,
                 fsp_error *err)
{
    struct vms_wbuf b = {0}, o = {0};
    vms_put_varint(&b, VMS_PROTO_MAGIC);
    vms_put_varint(&b, version);
    vms_put_str(&b, user);
    vms_put_str(&b, host);
    vms_put_str(&b, "vmsync " VMSYNC_VERSION);
    vms_put_str(&o, r->path);
    struct vms_rbuf body;
    int rc = vms_conn_send(&r->conn, VMS_M_HELLO, &b, err);
    if (!rc)
        rc = vms_conn_send(&r->conn, VMS_M_OPEN, &o, err);
    vms_wbuf_free(&b);
    vms_wbuf_free(&o);
    if (!rc)
        rc = vms_conn_expect(&r->conn, VMS_M_HELLO_OK, &body, err);
    if (rc)
        return rc;
    uint64_t spoken = vms_get_varint(&body);
    char software[256];
    vms_get_strbuf(&body, software, sizeof software);
    if (!vms_get_done(&body))
        return bad_reply(r, VMS_M_HELLO_OK, err);
    if (spoken != version)
        return fsp_fail(err, FSP_EK_USAGE, -EPROTO,
                        "%s: the agent (%s) speaks protocol %llu, this vmsync %u", r->url, software,
                        (unsigned long long)spoken, version);
    r->proto = version;
    rc = vms_conn_expect(&r->conn, VMS_M_OK, &body, err);
    return rc || vms_get_done(&body) ? rc : bad_reply(r, VMS_M_OK, err);
}

/* HELLO in this vmsync's protocol, or, when the agent refuses it as too new
 * (and so ends that session), on a new channel in the last protocol before
 * manifest deltas: such an agent gets manifests whole. */
static int greet(vms_remote *r, const char *user, const char *host, fsp_error *err)
{
    int rc = hello(r, VMS_PROTO_VERSION, user, host, err);
    if (rc != -EPROTONOSUPPORT)
        return rc;
    ssh_channel_close(r->ch);
    ssh_channel_free(r->ch);
    r->ch = NULL;
    rc = start_agent(r, err);
    return rc ? rc : hello(r, VMS_PROTO_VERSION_DELTA - 1, user, host, err);
}

/* A session that ended before the agent's hello may be a shell that could not
 * run the agent: 127 (not found) or 126 (not executable) is the exit status
 * of the channel then, and the user must install it, not retry. */
static int agent_missing(vms_remote *r, int rc, fsp_error *err)
{
    if (rc != -ECONNRESET || !r->ch || !ssh_channel_is_eof(r->ch))
        return rc;
    int status = ssh_channel_get_exit_status(r->ch);
    if (status != 127 && status != 126)
        return rc;
    char said[512];
    agent_stderr(r, said, sizeof said);
    return fsp_fail(err, VMS_EK_DENIED, -ENOENT, "%s: the agent command %s %s on %s (install "
                    "vmsync-agent there)%s%s", r->url, r->opts.agent ? r->opts.agent : "vmsync-agent",
                    status == 127 ? "was not found" : "cannot be run", r->host,
                    said[0] ? ": the server said: " : "", said);
}

int vms_remote_open(const char *url, const char *user, const char *host,
                    const struct vms_remote_opts *opts, const struct vms_repo_progress *progress,
                    vms_repo **out, fsp_error *err)
{
    *out = NULL;
    vms_remote *r = calloc(1, sizeof *r);
    if (!r)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    r->base.ops = &remote_ops;
    r->spool_fd = -1;
    if (opts)
        r->opts = *opts;
    r->progress = *progress;
    r->cancel = progress->cancel;
    r->conn = (struct vms_conn){.send = ssh_send, .recv = ssh_recv, .io = r, .peer = r->url};
    int rc = parse_url(r, url, err);
    if (!rc)
        rc = connect_ssh(r, err);
    if (!rc)
        rc = agent_missing(r, greet(r, user, host, err), err);
    if (!rc)
        rc = connected_step(r, CONNECT_STEPS, err);
    if (rc) {
        vms_remote_close(&r->base);
        return rc;
    }
    r->last_io = r->last_frame = time(NULL);
    *out = &r->base;
    return 0;
}

/* Up to 10 s of silence (a minute in all).  Replies nobody will read (those after a failure)
 * are read and dropped: left there, they would end the wait at once, and
 * the agent, still at work on what it was sent, would outlive the client. */
static void wait_for_agent_end(vms_remote *r)
{
    char drop[4096];
    for (int quiet = 0, turns = 0; quiet < 100 && turns < 600 && ssh_channel_is_open(r->ch) &&
                                   !ssh_channel_is_eof(r->ch);
         turns++) {
        int n = ssh_channel_poll_timeout(r->ch, 100, 0);
        if (n < 0)
            break;
        if (n > 0)
            ssh_channel_read_nonblocking(r->ch, drop, sizeof drop, 0);
        quiet = n > 0 ? 0 : quiet + 1;
    }
}

static void vms_remote_close(vms_repo *repo)
{
    vms_remote *r = (vms_remote *)repo;
    if (!r)
        return;
    if (r->ssh && vms_cancel_fired(r->cancel))
        ssh_set_blocking(r->ssh, 0); /* nothing waits on a link the user gave up on */
    if (r->ch && !vms_cancel_fired(r->cancel)) {
        /* Let the agent finish (commit, log) before the connection goes:
         * sshd may end a session's processes when its connection closes. */
        if (!r->hung_up)
            ssh_channel_send_eof(r->ch);
        wait_for_agent_end(r);
    }
    if (r->ch) {
        ssh_channel_close(r->ch);
        ssh_channel_free(r->ch);
    }
    if (r->ssh) {
        ssh_disconnect(r->ssh);
        ssh_free(r->ssh);
    }
    if (r->spool_fd >= 0)
        close(r->spool_fd);
    vms_keyset_free(&r->spool_keys);
    vms_keyset_free(&r->offered);
    free(r->spool);
    vms_conn_free(&r->conn);
    free(r);
}

static const char *vms_remote_path(const vms_repo *repo) { return ((const vms_remote *)repo)->url; }

static void vms_remote_traffic(const vms_repo *repo, struct vms_traffic *out)
{
    const vms_remote *r = (const vms_remote *)repo;
    *out = r->traffic;
    out->wire_in = r->conn.wire_in;
    out->wire_out = r->conn.wire_out;
    out->round_trips = r->conn.round_trips;
}

/* A check-in sends in rounds while its scan goes on: the figures count from
 * the session's first round, so that a rate can be measured across them. */
static int send_progress(void *ctx, uint64_t done, uint64_t total)
{
    vms_remote *r = ctx;
    uint64_t before = r->traffic.bytes_sent_raw;
    return r->progress.fn ? r->progress.fn(r->progress.ctx, VMS_PHASE_SEND, before + done,
                                           before + total)
                          : 0;
}

/* ---- catalog calls ------------------------------------------------------------- */

static int vms_remote_version(vms_repo *repo, const char *image, uint32_t version, struct vms_version *out,
                              fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    struct vms_wbuf b = {0};
    vms_put_str(&b, image);
    vms_put_varint(&b, version);
    struct vms_rbuf body;
    int rc = request(r, VMS_M_VERSION, &b, VMS_M_VERSION_INFO, &body, err);
    vms_wbuf_free(&b);
    if (!rc)
        vms_get_version(&body, out);
    return rc || vms_get_done(&body) ? rc : bad_reply(r, VMS_M_VERSION_INFO, err);
}

static int vms_remote_list(vms_repo *repo, const char *image, vms_version_cb cb, void *ctx, fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    struct vms_wbuf b = {0};
    vms_put_u8(&b, image == NULL);
    vms_put_str(&b, image ? image : "");
    int rc = send_request(r, VMS_M_LIST, &b, err);
    vms_wbuf_free(&b);
    int stopped = 0;
    while (!rc) {
        uint8_t type;
        struct vms_rbuf body;
        rc = vms_conn_recv(&r->conn, &type, &body, err);
        if (rc || type == VMS_M_END)
            break;
        if (type == VMS_M_ERROR)
            return vms_conn_error(&r->conn, &body, err);
        struct vms_version v;
        vms_get_version(&body, &v);
        if (type != VMS_M_VERSION_INFO || !vms_get_done(&body))
            return bad_reply(r, type, err);
        if (!stopped)
            stopped = cb(ctx, &v); /* the stream is read to its END either way */
    }
    return rc ? rc : stopped;
}

/* The agent answers with the key's public half: the private one stays there. */
static int vms_remote_key_public(vms_repo *repo, struct vms_public_key *out, fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    struct vms_rbuf body;
    memset(out, 0, sizeof *out);
    int rc = request(r, VMS_M_KEY, NULL, VMS_M_KEY_INFO, &body, err);
    if (rc)
        return rc;
    vms_get_raw(&body, out->key, VMS_PUBLIC_KEY_LEN);
    vms_get_strbuf(&body, out->comment, sizeof out->comment);
    if (!vms_get_done(&body))
        return bad_reply(r, VMS_M_KEY_INFO, err);
    return vms_sha256(out->key, VMS_PUBLIC_KEY_LEN, out->fingerprint)
               ? fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory")
               : 0;
}

static int vms_remote_add_version(vms_repo *repo, const char *image, uint32_t parent,
                                  const uint8_t manifest[FSP_SHA256_LEN],
                                  const uint8_t digest[FSP_SHA256_LEN], uint64_t size,
                                  const char *message, uint32_t *number, fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    struct vms_wbuf b = {0};
    vms_put_str(&b, image);
    vms_put_varint(&b, parent);
    vms_put_hash(&b, manifest);
    vms_put_hash(&b, digest);
    vms_put_varint(&b, size);
    vms_put_str(&b, message ? message : "");
    struct vms_rbuf body;
    int rc = request(r, VMS_M_ADD_VERSION, &b, VMS_M_NUMBER, &body, err);
    vms_wbuf_free(&b);
    if (!rc)
        *number = (uint32_t)vms_get_bounded(&body, UINT32_MAX);
    return rc || vms_get_done(&body) ? rc : bad_reply(r, VMS_M_NUMBER, err);
}

static int vms_remote_lease_take(vms_repo *repo, const char *image, uint32_t version, bool steal,
                                 fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    struct vms_wbuf b = {0};
    vms_put_str(&b, image);
    vms_put_varint(&b, version);
    vms_put_u8(&b, steal);
    return simple(r, VMS_M_LEASE_TAKE, &b, err);
}

static int vms_remote_lease_get(vms_repo *repo, const char *image, struct vms_lease *out, bool *found,
                                fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    struct vms_wbuf b = {0};
    vms_put_str(&b, image);
    struct vms_rbuf body;
    int rc = request(r, VMS_M_LEASE_GET, &b, VMS_M_LEASE_INFO, &body, err);
    vms_wbuf_free(&b);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    *found = vms_get_u8(&body) != 0;
    vms_get_strbuf(&body, out->image, sizeof out->image);
    out->version = (uint32_t)vms_get_bounded(&body, UINT32_MAX);
    vms_get_textbuf(&body, out->user, sizeof out->user); /* as a local client named them */
    vms_get_textbuf(&body, out->host, sizeof out->host);
    out->since = vms_get_svarint(&body);
    return vms_get_done(&body) ? 0 : bad_reply(r, VMS_M_LEASE_INFO, err);
}

static int vms_remote_lease_release(vms_repo *repo, const char *image, fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    struct vms_wbuf b = {0};
    vms_put_str(&b, image);
    return send_owing(r, VMS_M_LEASE_RELEASE, &b, VMS_M_OK, err);
}

/* An agent older than FORGET takes it for a malformed request (and ends the
 * session): say what to do instead. */
static int vms_remote_forget(vms_repo *repo, const char *image, uint32_t version, bool dry_run,
                             fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    struct vms_wbuf b = {0};
    vms_put_str(&b, image);
    vms_put_varint(&b, version);
    vms_put_u8(&b, dry_run);
    int rc = simple(r, VMS_M_FORGET, &b, err);
    if (rc == -EPROTO && err->kind == FSP_EK_CORRUPT && strstr(err->msg, "FORGET") == NULL)
        rc = fsp_fail(err, FSP_EK_USAGE, -EPROTONOSUPPORT,
                      "%s: the agent does not know forget (it is older than this vmsync): "
                      "upgrade vmsync-agent on the server",
                      r->url);
    return rc;
}

static int vms_remote_audit(vms_repo *repo, const char *action, const char *image, uint32_t version,
                            const char *detail, fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    struct vms_wbuf b = {0};
    vms_put_str(&b, action);
    vms_put_str(&b, image);
    vms_put_varint(&b, version);
    vms_put_str(&b, detail ? detail : "");
    return send_owing(r, VMS_M_AUDIT, &b, VMS_M_OK, err);
}

/* ---- queries ------------------------------------------------------------------ */

/* A stream of rows of one message type up to END: DECODE reads one row (false
 * when malformed), DELIVER hands it to the caller's callback. */
struct rows {
    uint8_t type;
    bool (*decode)(struct rows *w, struct vms_rbuf *body);
    int (*deliver)(struct rows *w);
};

/* Sends request TYPE with B, then reads the rows to their END, even after
 * the callback stopped, so that the session stays in step. */
static int read_rows(vms_remote *r, uint8_t type, struct vms_wbuf *b, struct rows *w,
                     fsp_error *err)
{
    int rc = send_request(r, type, b, err), stopped = 0;
    vms_wbuf_free(b);
    while (!rc) {
        uint8_t got;
        struct vms_rbuf body;
        rc = vms_conn_recv(&r->conn, &got, &body, err);
        if (rc || got == VMS_M_END)
            break;
        if (got == VMS_M_ERROR)
            return vms_conn_error(&r->conn, &body, err);
        if (got != w->type || !w->decode(w, &body) || !vms_get_done(&body))
            return bad_reply(r, got, err);
        if (!stopped)
            stopped = w->deliver(w);
    }
    return rc ? rc : stopped;
}

/* A lease's fields after its image, as LEASE_INFO and IMAGE_INFO carry them;
 * the strings the callback sees point into this. */
struct lease_fields {
    char image[256], user[128], host[256];
    struct vms_lease_info info;
};

static void get_lease_fields(struct vms_rbuf *b, struct lease_fields *l)
{
    l->info.version = (uint32_t)vms_get_bounded(b, UINT32_MAX);
    vms_get_textbuf(b, l->user, sizeof l->user);
    vms_get_textbuf(b, l->host, sizeof l->host);
    l->info.since = vms_get_svarint(b);
    l->info.image = l->image;
    l->info.user = l->user;
    l->info.host = l->host;
}

struct image_rows {
    struct rows w;
    struct lease_fields lease;
    struct vms_image_info info;
    bool leased;
    vms_image_cb cb;
    void *ctx;
};

static bool decode_image(struct rows *w, struct vms_rbuf *b)
{
    struct image_rows *q = (struct image_rows *)w;
    vms_get_strbuf(b, q->lease.image, sizeof q->lease.image);
    q->info.name = q->lease.image;
    q->info.latest = (uint32_t)vms_get_bounded(b, UINT32_MAX);
    q->info.size = vms_get_varint(b);
    q->info.created = vms_get_svarint(b);
    q->leased = vms_get_u8(b) != 0;
    get_lease_fields(b, &q->lease);
    q->info.lease = q->leased ? &q->lease.info : NULL;
    return !b->bad;
}

static int deliver_image(struct rows *w)
{
    struct image_rows *q = (struct image_rows *)w;
    return q->cb(q->ctx, &q->info);
}

static int vms_remote_images(vms_repo *repo, vms_image_cb cb, void *ctx, fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    struct image_rows q = {{VMS_M_IMAGE_INFO, decode_image, deliver_image}, .cb = cb, .ctx = ctx};
    struct vms_wbuf b = {0};
    return read_rows(r, VMS_M_IMAGES, &b, &q.w, err);
}

struct usage_rows {
    struct rows w;
    char image[256];
    struct vms_image_usage u;
    vms_image_usage_cb cb;
    void *ctx;
    int stopped; /* the callback's first non-zero: STATS_INFO is read all the same */
};

static bool decode_usage(struct rows *w, struct vms_rbuf *b)
{
    struct usage_rows *q = (struct usage_rows *)w;
    vms_get_textbuf(b, q->image, sizeof q->image);
    q->u = (struct vms_image_usage){.name = q->image,
                                    .versions = (uint32_t)vms_get_bounded(b, UINT32_MAX)};
    uint64_t *fields[] = {&q->u.unique_objects, &q->u.unique_raw, &q->u.unique_stored,
                          &q->u.shared_objects, &q->u.shared_raw};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        *fields[i] = vms_get_varint(b);
    return !b->bad;
}

static int deliver_usage(struct rows *w)
{
    struct usage_rows *q = (struct usage_rows *)w;
    if (q->cb && !q->stopped)
        q->stopped = q->cb(q->ctx, &q->u);
    return 0;
}

static int read_stats_info(vms_remote *r, struct vms_repo_stats *s, fsp_error *err)
{
    struct vms_rbuf body;
    int rc = vms_conn_expect(&r->conn, VMS_M_STATS_INFO, &body, err);
    if (rc)
        return rc;
    struct vms_gc_stats *g = &s->gc;
    uint64_t *fields[] = {&s->images, &s->versions, &s->objects, &s->raw_bytes,
                          &s->stored_bytes, &s->packs, &s->pack_bytes, &s->referenced_bytes,
                          &g->objects_before, &g->objects_dropped, &g->packs_before,
                          &g->packs_rewritten, &g->packs_removed, &g->bytes_before,
                          &g->bytes_freed};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        *fields[i] = vms_get_varint(&body);
    if (!vms_get_done(&body))
        return bad_reply(r, VMS_M_STATS_INFO, err);
    g->objects_kept = g->objects_before > g->objects_dropped ? g->objects_before - g->objects_dropped : 0;
    g->packs_kept = g->packs_before > g->packs_rewritten + g->packs_removed
                        ? g->packs_before - g->packs_rewritten - g->packs_removed : 0;
    g->bytes_kept = g->bytes_before > g->bytes_freed ? g->bytes_before - g->bytes_freed : 0;
    return 0;
}

/* An agent older than STATS ends the session on it, as on FORGET. */
static int vms_remote_stats(vms_repo *repo, struct vms_repo_stats *out, vms_image_usage_cb cb,
                            void *ctx, fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    struct usage_rows q = {{VMS_M_IMAGE_USAGE, decode_usage, deliver_usage}, .cb = cb, .ctx = ctx};
    struct vms_wbuf b = {0};
    int rc = read_rows(r, VMS_M_STATS, &b, &q.w, err);
    if (!rc)
        rc = read_stats_info(r, out, err);
    if (!rc)
        rc = q.stopped;
    if (rc == -EPROTO && err->kind == FSP_EK_CORRUPT && strstr(err->msg, "STATS") == NULL)
        rc = fsp_fail(err, FSP_EK_USAGE, -EPROTONOSUPPORT,
                      "%s: the agent does not know stats (it is older than this vmsync): "
                      "upgrade vmsync-agent on the server",
                      r->url);
    return rc;
}

struct lease_rows {
    struct rows w;
    struct lease_fields lease;
    vms_lease_cb cb;
    void *ctx;
};

static bool decode_lease(struct rows *w, struct vms_rbuf *b)
{
    struct lease_rows *q = (struct lease_rows *)w;
    bool found = vms_get_u8(b) != 0;
    vms_get_strbuf(b, q->lease.image, sizeof q->lease.image);
    get_lease_fields(b, &q->lease);
    return found && !b->bad;
}

static int deliver_lease(struct rows *w)
{
    struct lease_rows *q = (struct lease_rows *)w;
    return q->cb(q->ctx, &q->lease.info);
}

static int vms_remote_leases(vms_repo *repo, const char *image, vms_lease_cb cb, void *ctx, fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    struct lease_rows q = {{VMS_M_LEASE_INFO, decode_lease, deliver_lease}, .cb = cb, .ctx = ctx};
    struct vms_wbuf b = {0};
    vms_put_u8(&b, image == NULL);
    vms_put_str(&b, image ? image : "");
    return read_rows(r, VMS_M_LEASES, &b, &q.w, err);
}

struct audit_rows {
    struct rows w;
    char user[128], host[256], action[64], image[256], detail[VMS_AUDIT_DETAIL_MAX];
    struct vms_audit_entry e;
    vms_audit_cb cb;
    void *ctx;
};

static bool decode_audit(struct rows *w, struct vms_rbuf *b)
{
    struct audit_rows *q = (struct audit_rows *)w;
    q->e.at = vms_get_svarint(b);
    vms_get_textbuf(b, q->user, sizeof q->user);
    vms_get_textbuf(b, q->host, sizeof q->host);
    vms_get_textbuf(b, q->action, sizeof q->action);
    vms_get_textbuf(b, q->image, sizeof q->image);
    q->e.version = (uint32_t)vms_get_bounded(b, UINT32_MAX);
    vms_get_textbuf(b, q->detail, sizeof q->detail);
    q->e.user = q->user;
    q->e.host = q->host;
    q->e.action = q->action;
    q->e.image = q->image[0] ? q->image : NULL;
    q->e.detail = q->detail;
    return !b->bad;
}

static int deliver_audit(struct rows *w)
{
    struct audit_rows *q = (struct audit_rows *)w;
    return q->cb(q->ctx, &q->e);
}

static int vms_remote_audit_log(vms_repo *repo, const char *image, int64_t since, vms_audit_cb cb,
                         void *ctx, fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    struct audit_rows *q = calloc(1, sizeof *q); /* a few KiB: off the stack */
    if (!q)
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    q->w = (struct rows){VMS_M_AUDIT_ENTRY, decode_audit, deliver_audit};
    q->cb = cb;
    q->ctx = ctx;
    struct vms_wbuf b = {0};
    vms_put_u8(&b, image == NULL);
    vms_put_str(&b, image ? image : "");
    vms_put_svarint(&b, since);
    int rc = read_rows(r, VMS_M_AUDIT_LOG, &b, &q->w, err);
    free(q);
    return rc;
}

static int vms_remote_gc(vms_repo *repo, struct vms_gc_stats *stats, fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    (void)stats;
    return fsp_fail(err, FSP_EK_USAGE, -ENOTSUP,
                    "%s: gc runs on the server itself: vmsync gc /path/to/repository", r->url);
}

/* ---- manifests ------------------------------------------------------------------ */

/* On the bench's manifests (2.7 and 3.1 MB decoded) level 12 comes within
 * 3 % of level 19's delta (9.7 against 9.5 KB, 12.2 against 11.9) in a
 * seventh of the CPU (0.1 s against 0.6 to 0.8 s): a few hundred bytes are
 * worth less than that on any link. */
#define MANIFEST_DELTA_LEVEL 12

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

static int receive_manifest(vms_remote *r, const uint8_t id[FSP_SHA256_LEN], int fd,
                            fsp_error *err)
{
    struct vms_wbuf all = {0};
    int rc = 0;
    for (;;) {
        uint8_t type;
        struct vms_rbuf body;
        rc = vms_conn_recv(&r->conn, &type, &body, err);
        if (rc || type == VMS_M_END)
            break;
        if (type == VMS_M_ERROR) {
            rc = vms_conn_error(&r->conn, &body, err);
            break;
        }
        size_t n = (size_t)(body.end - body.p);
        if (type != VMS_M_DATA || n == 0 || n > VMS_DATA_MAX || all.len + n > VMS_MANIFEST_MAX) {
            rc = bad_reply(r, type, err);
            break;
        }
        vms_put_raw(&all, body.p, n);
    }
    if (!rc && all.failed)
        rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory for a manifest");
    uint8_t actual[FSP_SHA256_LEN];
    if (!rc && (vms_sha256(all.p, all.len, actual) || memcmp(actual, id, FSP_SHA256_LEN)))
        rc = fsp_fail(err, FSP_EK_CORRUPT, -EBADMSG,
                      "%s: a manifest arrived damaged (its content does not match its id)", r->url);
    if (!rc && (rc = vms_write_all(fd, all.p, all.len)) != 0)
        fsp_fail(err, FSP_EK_IO, rc, "cannot write a manifest: %s", strerror(-rc));
    vms_wbuf_free(&all);
    return rc;
}

static int vms_remote_get_manifest(vms_repo *repo, const uint8_t id[FSP_SHA256_LEN], const char *dest,
                                   fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", dest, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot create: %s", tmp, strerror(errno));
    struct vms_wbuf b = {0};
    vms_put_hash(&b, id);
    int rc = send_request(r, VMS_M_GET_MANIFEST, &b, err);
    vms_wbuf_free(&b);
    if (!rc)
        rc = receive_manifest(r, id, fd, err);
    if (!rc && fsync(fd) < 0)
        rc = fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot write: %s", tmp, strerror(errno));
    close(fd);
    if (!rc && rename(tmp, dest) < 0)
        rc = fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot rename: %s", dest, strerror(errno));
    if (rc)
        unlink(tmp);
    return rc;
}

static int read_file(const char *path, struct vms_wbuf *out, fsp_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fsp_fail(err, FSP_EK_OPEN, -errno, "%s: %s", path, strerror(errno));
    struct stat st;
    int rc = fstat(fd, &st) < 0 ? -errno : 0;
    if (!rc && (uint64_t)st.st_size > VMS_MANIFEST_MAX)
        rc = -EFBIG;
    if (!rc) {
        uint8_t *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
        rc = buf ? vms_pread_all(fd, buf, (size_t)st.st_size, 0) : -ENOMEM;
        if (!rc)
            vms_put_raw(out, buf, (size_t)st.st_size);
        if (!rc && out->failed)
            rc = -ENOMEM;
        free(buf);
    }
    close(fd);
    return rc ? fsp_fail(err, FSP_EK_IO, rc, "%s: cannot read: %s", path, strerror(-rc)) : 0;
}

/* P[0..LEN) as DATA frames, then END, and the agent's MANIFEST_ID, which must
 * be EXPECTED; into ID.  Waited for, not owed: a delta the agent cannot
 * rebuild is answered -ESTALE, and then the file goes whole. */
static int send_manifest_data(vms_remote *r, const uint8_t *p, size_t len,
                              const uint8_t expected[FSP_SHA256_LEN], uint8_t id[FSP_SHA256_LEN],
                              fsp_error *err)
{
    int rc = 0;
    for (size_t off = 0; !rc && off < len; off += VMS_DATA_MAX) {
        struct vms_wbuf chunk = {.p = (uint8_t *)p + off, .len = min_size(len - off, VMS_DATA_MAX)};
        rc = vms_conn_send(&r->conn, VMS_M_DATA, &chunk, err);
    }
    struct vms_rbuf body;
    if (!rc)
        rc = request(r, VMS_M_END, NULL, VMS_M_MANIFEST_ID, &body, err);
    if (!rc) {
        vms_get_hash(&body, id);
        if (!vms_get_done(&body) || memcmp(id, expected, FSP_SHA256_LEN))
            rc = bad_reply(r, VMS_M_MANIFEST_ID, err);
    }
    return rc;
}

/* The id is the manifest's hash, known here: the agent's MANIFEST_ID is owed,
 * and must name it. */
static int vms_remote_put_manifest(vms_repo *repo, const char *path, uint8_t id[FSP_SHA256_LEN],
                                   fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    struct vms_wbuf file = {0}, b = {0};
    int rc = after_hang_up(r, err);
    if (!rc)
        rc = read_file(path, &file, err);
    if (!rc && vms_sha256(file.p, file.len, id))
        rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    if (!rc) {
        vms_put_varint(&b, file.len);
        rc = vms_conn_send(&r->conn, VMS_M_PUT_MANIFEST, &b, err);
    }
    for (size_t off = 0; !rc && off < file.len; off += VMS_DATA_MAX) {
        struct vms_wbuf chunk = {.p = file.p + off, .len = min_size(file.len - off, VMS_DATA_MAX)};
        rc = vms_conn_send(&r->conn, VMS_M_DATA, &chunk, err);
    }
    if (!rc)
        rc = vms_conn_send(&r->conn, VMS_M_END, NULL, err);
    if (!rc)
        rc = owe(r, VMS_M_MANIFEST_ID, id, err);
    vms_wbuf_free(&file);
    vms_wbuf_free(&b);
    return rc;
}

/* The manifest at PATH as a delta against the one at BASE_PATH; its id
 * into ID.  Failing here only means the manifest goes whole. */
static int make_manifest_delta(const char *path, const char *base_path, struct vms_wbuf *delta,
                               uint8_t id[FSP_SHA256_LEN])
{
    struct vms_wbuf base = {0}, target = {0};
    fsp_error ignored;
    int rc = vms_sha256_file(path, id);
    if (!rc)
        rc = vms_manifest_decode(base_path, VMS_MANIFEST_MAX, &base, &ignored);
    if (!rc)
        rc = vms_manifest_decode(path, VMS_MANIFEST_MAX, &target, &ignored);
    if (!rc)
        rc = vms_delta_make(&base, &target, MANIFEST_DELTA_LEVEL, delta, &ignored);
    vms_wbuf_free(&base);
    vms_wbuf_free(&target);
    return rc;
}

static int vms_remote_put_manifest_delta(vms_repo *repo, const char *path,
                                         const uint8_t base[FSP_SHA256_LEN], const char *base_path,
                                         uint8_t id[FSP_SHA256_LEN], fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    struct vms_wbuf delta = {0}, b = {0};
    uint8_t expected[FSP_SHA256_LEN];
    if (r->proto < VMS_PROTO_VERSION_DELTA || make_manifest_delta(path, base_path, &delta, expected) ||
        delta.len > VMS_MANIFEST_DELTA_MAX) {
        vms_wbuf_free(&delta);
        return vms_remote_put_manifest(repo, path, id, err);
    }
    vms_put_hash(&b, base);
    vms_put_hash(&b, expected);
    vms_put_varint(&b, delta.len);
    int rc = after_hang_up(r, err);
    if (!rc)
        rc = vms_conn_send(&r->conn, VMS_M_PUT_MANIFEST_DELTA, &b, err);
    if (!rc)
        rc = send_manifest_data(r, delta.p, delta.len, expected, id, err);
    vms_wbuf_free(&delta);
    vms_wbuf_free(&b);
    if (rc == -ESTALE) /* the agent could not rebuild this very file: it goes whole */
        rc = vms_remote_put_manifest(repo, path, id, err);
    return rc;
}

/* ---- objects: lookups and fetches ---------------------------------------------- */

static int vms_remote_has(vms_repo *repo, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                          uint8_t *present, struct vms_object_size *sizes, fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    int rc = 0;
    for (size_t first = 0; !rc && first < n; first += VMS_LIST_MAX) {
        size_t k = min_size(n - first, VMS_LIST_MAX);
        struct vms_wbuf b = {0};
        vms_put_varint(&b, k);
        vms_put_raw(&b, hashes[first], k * FSP_SHA256_LEN);
        struct vms_rbuf body;
        rc = request(r, VMS_M_HAS, &b, VMS_M_HAVE, &body, err);
        vms_wbuf_free(&b);
        if (rc)
            break;
        if (vms_get_varint(&body) != k)
            return bad_reply(r, VMS_M_HAVE, err);
        for (size_t i = 0; i < k; i++) {
            uint64_t v = vms_get_bounded(&body, (uint64_t)UINT32_MAX + 1);
            uint32_t len = (uint32_t)vms_get_bounded(&body, VMS_OBJECT_MAX);
            present[first + i] = v != 0;
            if (sizes)
                sizes[first + i] = (struct vms_object_size){len, v ? (uint32_t)(v - 1) : 0};
        }
        if (!vms_get_done(&body))
            return bad_reply(r, VMS_M_HAVE, err);
    }
    return rc;
}

struct get_ctx {
    vms_remote *r;
    size_t first;
    vms_object_cb cb;
    void *ctx;
};

static int on_received(void *ctx, size_t index, const uint8_t *data, size_t len, size_t wire)
{
    struct get_ctx *g = ctx;
    g->r->traffic.objects_received++;
    g->r->traffic.bytes_received_raw += len;
    g->r->traffic.bytes_received += wire;
    return g->cb(g->ctx, g->first + index, data, len, wire);
}

/* The rate of the next request: the fixed one, else the clock's. */
static uint64_t rate_now(const vms_remote *r)
{
    if (r->opts.bwlimit || !r->opts.bwlimit_now)
        return r->opts.bwlimit;
    uint64_t rate = r->opts.bwlimit_now(r->opts.bwlimit_ctx);
    return rate && rate < VMS_BWLIMIT_MIN ? VMS_BWLIMIT_MIN : rate;
}

_Static_assert(VMS_STATS_LEVELS == VMS_LEVEL_MAX + 1, "every level of a segment has its count");

static void count_levels(vms_remote *r, const uint64_t *at_level)
{
    for (int l = 0; l < VMS_STATS_LEVELS; l++)
        r->traffic.segments_at_level[l] += at_level[l];
}

static void segment_arriving(void *ctx, size_t got)
{
    const vms_remote *r = ctx;
    if (r->progress.arriving)
        r->progress.arriving(r->progress.ctx, got);
}

static int get_some(vms_remote *r, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                    struct get_ctx *g, fsp_error *err)
{
    struct vms_wbuf b = {0};
    vms_put_varint(&b, (uint64_t)r->opts.level);
    vms_put_varint(&b, rate_now(r));
    vms_put_varint(&b, n);
    vms_put_raw(&b, hashes, n * FSP_SHA256_LEN);
    int rc = send_request(r, VMS_M_GET, &b, err);
    vms_wbuf_free(&b);
    struct vms_xfer_receiver rx = {
        .hashes = hashes, .n = n, .cb = on_received, .ctx = g, .peer = r->url, .chain = r->proto >= VMS_PROTO_VERSION_CHAINED};
    while (!rc && rx.next < n) {
        struct vms_rbuf body;
        rc = vms_conn_expect_watched(&r->conn, VMS_M_SEGMENT, &body, segment_arriving, r, err);
        if (!rc)
            rc = vms_xfer_receive(&rx, &body, err);
    }
    r->traffic.segments_received += rx.segments;
    r->traffic.segments_chained += rx.chained;
    count_levels(r, rx.at_level);
    vms_xfer_receiver_free(&rx);
    return rc;
}

static int vms_remote_get(vms_repo *repo, const uint8_t (*hashes)[FSP_SHA256_LEN], size_t n,
                          vms_object_cb cb, void *ctx, fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    int rc = 0;
    for (size_t first = 0; !rc && first < n; first += VMS_LIST_MAX) {
        struct get_ctx g = {r, first, cb, ctx};
        rc = get_some(r, hashes + first, min_size(n - first, VMS_LIST_MAX), &g, err);
    }
    return rc;
}

/* ---- objects: puts ----------------------------------------------------------------- */

/* A long local scan sends nothing; keep NAT tables and sshd's ClientAlive
 * checks satisfied meanwhile, and now and then a PING for the agent, which
 * ends a session that says nothing for its --idle-timeout.  Called only
 * between requests. */
static int vms_remote_keep_alive(vms_repo *repo, fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    time_t t = time(NULL);
    if (t - r->last_frame >= PING_SECONDS) {
        struct vms_rbuf body;
        return request(r, VMS_M_PING, NULL, VMS_M_PONG, &body, err);
    }
    if (t - r->last_io < KEEPALIVE_SECONDS)
        return 0;
    ssh_send_ignore(r->ssh, "");
    ssh_channel_poll(r->ch, 0); /* answers the server's keepalive requests */
    r->last_io = t;
    return 0;
}

static int spool_open(vms_remote *r, fsp_error *err)
{
    if (r->spool_fd >= 0)
        return 0;
    const char *dir = getenv("TMPDIR");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/vmsync-spool-XXXXXX", dir && *dir ? dir : "/var/tmp");
    r->spool_fd = mkostemp(path, O_CLOEXEC);
    if (r->spool_fd < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "%s: cannot create a spool file: %s", path,
                        strerror(errno));
    unlink(path); /* nothing to clean up after a crash */
    return 0;
}

static int vms_remote_put(vms_repo *repo, const uint8_t hash[FSP_SHA256_LEN], const void *data, size_t len,
                          fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    int rc = vms_remote_keep_alive(repo, err);
    if (rc)
        return rc;
    if (len > VMS_OBJECT_MAX)
        return fsp_fail(err, FSP_EK_USAGE, -EFBIG, "%s: an object of %zu bytes is over the limit",
                        r->url, len);
    if (vms_keyset_find(&r->offered, hash, NULL))
        return 0;
    size_t index;
    bool added;
    rc = spool_open(r, err);
    if (!rc && vms_keyset_add(&r->spool_keys, hash, &index, &added))
        rc = fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    if (rc || !added)
        return rc;
    if (index >= r->spool_cap) {
        size_t cap = r->spool_cap ? 2 * r->spool_cap : 1024;
        struct spooled *s = realloc(r->spool, cap * sizeof *s);
        if (!s)
            return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
        r->spool = s;
        r->spool_cap = cap;
    }
    r->spool[index] = (struct spooled){r->spool_size, (uint32_t)len};
    rc = vms_pwrite_all(r->spool_fd, data, len, r->spool_size);
    if (rc)
        return fsp_fail(err, FSP_EK_IO, rc, "cannot write the spool file: %s", strerror(-rc));
    r->spool_size += len;
    return r->spool_size >= SPOOL_ROUND || r->spool_keys.n >= VMS_LIST_MAX ? vms_remote_flush(repo, err)
                                                                           : 0;
}

struct wanted {
    vms_remote *r;
    size_t *index; /* into the spool */
};

static int read_spooled(void *ctx, size_t i, uint8_t *out, fsp_error *err)
{
    struct wanted *w = ctx;
    const struct spooled *s = &w->r->spool[w->index[i]];
    int rc = vms_pread_all(w->r->spool_fd, out, s->len, s->offset);
    return rc ? fsp_fail(err, FSP_EK_IO, rc, "cannot read the spool file: %s", strerror(-rc)) : 0;
}

/* The objects of the WANT bitmap in BODY, as a transfer source. */
static int wanted_list(vms_remote *r, struct vms_rbuf *body, struct wanted *w,
                       struct vms_xfer_source *src, fsp_error *err)
{
    size_t n = r->spool_keys.n;
    if (vms_get_varint(body) != n)
        return bad_reply(r, VMS_M_WANT, err);
    const uint8_t *bits = vms_get_span(body, (n + 7) / 8);
    if (!vms_get_done(body))
        return bad_reply(r, VMS_M_WANT, err);
    uint8_t(*hashes)[FSP_SHA256_LEN] = malloc((n ? n : 1) * FSP_SHA256_LEN);
    uint32_t *lens = malloc((n ? n : 1) * sizeof *lens);
    w->index = malloc((n ? n : 1) * sizeof *w->index);
    if (!hashes || !lens || !w->index) {
        free(hashes);
        free(lens);
        return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(bits[i / 8] >> (i % 8) & 1))
            continue;
        memcpy(hashes[k], r->spool_keys.keys[i], FSP_SHA256_LEN);
        lens[k] = r->spool[i].len;
        w->index[k++] = i;
    }
    *src = (struct vms_xfer_source){
        .hashes = (const uint8_t(*)[FSP_SHA256_LEN])hashes, .lens = lens, .n = k,
        .read = read_spooled, .ctx = w};
    return 0;
}

static int offer_round(vms_remote *r, fsp_error *err)
{
    size_t n = r->spool_keys.n;
    struct vms_wbuf b = {0};
    vms_put_varint(&b, n);
    vms_put_raw(&b, r->spool_keys.keys, n * FSP_SHA256_LEN);
    struct vms_rbuf body;
    int rc = request(r, VMS_M_OFFER, &b, VMS_M_WANT, &body, err);
    vms_wbuf_free(&b);
    struct wanted w = {r, NULL};
    struct vms_xfer_source src = {0};
    if (!rc)
        rc = wanted_list(r, &body, &w, &src, err);
    struct vms_xfer_opts o = {.level = r->opts.level, .bwlimit = rate_now(r),
                              .progress = send_progress, .progress_ctx = r, .cancel = r->cancel};
    struct vms_xfer_report rep;
    if (!rc)
        rc = vms_xfer_send(&src, &o, &r->conn, &rep, err);
    if (!rc) {
        vms_put_varint(&b, src.n);
        rc = send_owing(r, VMS_M_PUT_END, &b, VMS_M_PUT_OK, err);
    }
    if (!rc) {
        r->traffic.objects_sent += src.n;
        r->traffic.bytes_sent_raw += rep.raw_bytes;
        r->traffic.bytes_sent += rep.wire_bytes;
        count_levels(r, rep.at_level);
    }
    free((void *)src.hashes);
    free((void *)src.lens);
    free(w.index);
    return rc;
}

/* Offers what is spooled and sends what the agent lacks; its PUT_OK (the
 * objects are durable) is owed.  The spool is kept when the round fails. */
static int vms_remote_flush(vms_repo *repo, fsp_error *err)
{
    vms_remote *r = (vms_remote *)repo;
    if (!r->spool_keys.n)
        return 0;
    int rc = offer_round(r, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < r->spool_keys.n; i++) {
        bool added;
        if (vms_keyset_add(&r->offered, r->spool_keys.keys[i], NULL, &added))
            return fsp_fail(err, FSP_EK_NOMEM, -ENOMEM, "out of memory");
    }
    vms_keyset_free(&r->spool_keys);
    r->spool_size = 0;
    if (ftruncate(r->spool_fd, 0) < 0)
        return fsp_fail(err, FSP_EK_IO, -errno, "cannot reset the spool file: %s", strerror(errno));
    return 0;
}

static const struct vms_repo_ops remote_ops = {
    .kind = "ssh",
    .close = vms_remote_close,
    .path = vms_remote_path,
    .traffic = vms_remote_traffic,
    .keep_alive = vms_remote_keep_alive,
    .has = vms_remote_has,
    .put = vms_remote_put,
    .flush = vms_remote_flush,
    .settle = vms_remote_settle,
    .hang_up = vms_remote_hang_up,
    .get = vms_remote_get,
    .put_manifest = vms_remote_put_manifest,
    .put_manifest_delta = vms_remote_put_manifest_delta,
    .get_manifest = vms_remote_get_manifest,
    .version = vms_remote_version,
    .add_version = vms_remote_add_version,
    .list = vms_remote_list,
    .lease_take = vms_remote_lease_take,
    .lease_get = vms_remote_lease_get,
    .lease_release = vms_remote_lease_release,
    .forget = vms_remote_forget,
    .stats = vms_remote_stats,
    .audit = vms_remote_audit,
    .images = vms_remote_images,
    .leases = vms_remote_leases,
    .audit_log = vms_remote_audit_log,
    .gc = vms_remote_gc,
    .key_public = vms_remote_key_public,
};
