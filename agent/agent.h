/* vmsync-agent: serves one repository session over stdin and stdout, started
 * by sshd (command= in authorized_keys, or ForceCommand).  main.c parses the
 * options and owns the process; serve.c answers the requests of
 * docs/protocol.md. */
#ifndef VMS_AGENT_H
#define VMS_AGENT_H

#include "proto.h"
#include "repo.h"
#include "xfer.h"

#include <limits.h>

struct agent_opts {
    char root[PATH_MAX];   /* realpath of --root */
    const char *user;      /* who the SSH key stands for */
    bool read_only;        /* checkouts only */
    uint64_t cache_max;    /* bytes of cached segments; 0: no cache */
    const char *stats_file;
};

struct agent_stats {
    uint64_t requests, objects_sent, objects_received;
    struct vms_xfer_report sent;
    uint64_t segments_cached_written;
};

struct agent {
    const struct agent_opts *o;
    struct vms_conn conn;
    vms_repo *repo;          /* after OPEN */
    char client_host[256];
    char client_user[128];
    char path[PATH_MAX];     /* the repository, as the client named it */
    char cache[PATH_MAX];    /* segment cache directory ("" without) */
    bool hello;
    struct agent_stats stats;
};

/* Answers requests until the client says goodbye (0), the connection ends
 * (0), or a request cannot be answered safely (the error, already sent to the
 * client when the connection still works). */
int agent_serve(struct agent *a, fsp_error *err);

#endif
