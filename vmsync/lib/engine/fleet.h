/* A fleet (FLEET.json, docs/fleet.md) as the planner holds it: fleet.c reads
 * and measures it, fleet_sim.c simulates and schedules it.  Private to
 * libvmsync. */
#ifndef VMS_FLEET_H
#define VMS_FLEET_H

#include "base/keyset.h"
#include "vmsync.h"

#define VMS_FLEET_WINDOWS_MAX 8     /* online windows of one laptop */
#define VMS_FLEET_RUN_ARGS_MAX 256  /* words of one laptop's "run" command */
#define VMS_FLEET_HANDSHAKE_RTTS 8  /* round trips a transfer pays before its bytes flow */
#define VMS_FLEET_HORIZON (60.0 * 86400) /* a rollout simulated past this never ends */
#define VMS_FLEET_EVENTS_MAX 1000000   /* events of one simulation: more is refused */
#define VMS_FLEET_RUN_WORK 5e9         /* flow updates of one simulation: more is refused */
#define VMS_FLEET_SEARCH_WORK 1e9      /* flow updates the search may spend: then it stops,
                                        * keeping the best schedule found so far */

struct vms_fleet_link {
    double rate;   /* bytes/s; 0: no limit of its own */
    double rtt;    /* seconds */
};

struct vms_fleet_window { unsigned from, to; }; /* minutes after midnight, daily */

struct vms_fleet_node {            /* one laptop */
    struct vms_fleet_laptop out;   /* what the report says of it */
    size_t branch;
    struct vms_fleet_link link;
    struct vms_fleet_window windows[VMS_FLEET_WINDOWS_MAX];
    size_t n_windows;              /* 0: always online */
    char **versions, **manifests;  /* its seeds, as FLEET.json names them */
    const char **run;              /* its "run" command, NULL-terminated; NULL: none */
    size_t n_versions, n_manifests;
    double online_per_day;         /* seconds */
};

struct vms_fleet_site {            /* one branch */
    struct vms_fleet_branch out;
    struct vms_fleet_link link;    /* rate 0: at the server's site */
    double lan;                    /* bytes/s of the reflector to its laptops */
    uint64_t upstream_given;       /* "upstream_bytes", for laptops given as bytes */
    bool has_upstream_given;
    const char **warm;             /* its "warm" command, NULL-terminated; NULL: none */
    uint64_t union_bytes;          /* measured laptops' objects, each once, as stored */
    struct vms_keyset *held;       /* measured: the union of its laptops' objects */
};

struct vms_jr;

struct vms_fleet {
    struct vms_jr *tree;           /* the parsed file: the names point into it */
    char *dir;                     /* FLEET.json's folder: manifests are relative to it */
    char *repository, *image;
    uint32_t version;
    double uplink;                 /* the server's, bytes/s */
    double start_second;           /* the rollout's start, seconds after local midnight */
    struct vms_fleet_node *nodes;
    size_t n_nodes;
    struct vms_fleet_site *sites;
    size_t n_sites;
    struct vms_fleet_laptop *laptops;   /* the report's copies */
    struct vms_fleet_branch *branches;
    struct vms_fleet_report report;
    bool measured;                 /* vms_fleet_measure ran */
};

/* Simulates and schedules F (measured), filling its report. */
int vms_fleet_schedule(struct vms_fleet *f, fsp_error *err);

#endif
