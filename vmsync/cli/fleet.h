/* vmsync fleet's commands: fleet_cmd.c (plan, status, the shared parts) and
 * fleet_run.c (run). */
#ifndef VMS_CLI_FLEET_H
#define VMS_CLI_FLEET_H

#include "cli.h"

struct fleet_cmd {
    struct vms_client_opts s;
    struct vms_remote_opts remote;
    vms_client *client;
    bool json;
    bool is_run;      /* run: --logs, --retries and --retry-after are its options */
    const char *logs;
    int retries, retry_after; /* run: a command that exits 11 runs again */
};

/* The options; -1 to go on, else the exit status (help printed, bad usage). */
int fleet_parse(int argc, char **argv, struct fleet_cmd *q);
int fleet_usage_error(const char *what);
/* Q's handle on REPO, over Q's options; cli_client_close(&q->client) ends it. */
int fleet_client_open(struct fleet_cmd *q, const char *repo, fsp_error *err);
/* Loads, measures (over Q's options; Q's handle stays open, when one was
 * needed) and plans PATH; START_SECOND >= 0 starts the rollout then (seconds
 * after local midnight), not at the file's "start".  *F is the caller's, for
 * vms_fleet_free, even on failure. */
int fleet_prepare(struct fleet_cmd *q, const char *path, double start_second, vms_fleet **f,
                  const struct vms_fleet_report **r, fsp_error *err);
void fleet_put_duration(FILE *out, double s);
int fleet_by_order(const void *a, const void *b); /* const struct vms_fleet_laptop ** */
int fleet_run(int argc, char **argv);

#endif
