/* The settings file, ~/.config/vmsync/config ($XDG_CONFIG_HOME/vmsync/config
 * when set): one file for the window and, later, the command line, so it
 * uses only the C library and fsparse's errors, no GLib.  Its format:
 *
 *   # comments and blank lines are ignored
 *   [repository]
 *   url = /srv/vmsync                  a directory or ssh://[user@]host[:port]/path
 *   identity = /home/me/.ssh/id_vmsync optional: the key file for ssh://
 *
 *   [seeds]
 *   folder = /var/lib/images           folders where local images are looked for
 *
 *   [checkout]                         a checkout the window made, for its check-in
 *   repository = /srv/vmsync           the url of its [repository]
 *   image = desk
 *   file = /home/me/desk.img           the file that holds it (an absolute path)
 *
 * Each [repository] section is one repository; keys are `name = value`, the
 * value running to the end of the line, blanks around it dropped.  An
 * unknown section or key is an error naming the file and line, so that a
 * typo is never silently ignored.  Values may not hold a newline.  A
 * [checkout] needs all three keys; one repository and image has one record,
 * the newest checkout's. */
#ifndef VMSYNC_GTK_CONFIG_H
#define VMSYNC_GTK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "fsparse.h"

struct cfg_repo {
    char *url;
    char *identity; /* NULL: ssh-agent, then ~/.ssh/id_* */
};

struct cfg_checkout {
    char *repo, *image, *file;
};

struct cfg {
    struct cfg_repo *repos;
    size_t n_repos;
    char **seed_folders;
    size_t n_seed_folders;
    struct cfg_checkout *checkouts;
    size_t n_checkouts;
};

/* The file's path into BUF: $XDG_CONFIG_HOME/vmsync/config, else
 * $HOME/.config/vmsync/config.  Neither set, or too long: -ENOENT. */
int cfg_default_path(char *buf, size_t len, fsp_error *err);
/* Reads PATH into *OUT (the caller's, for cfg_free).  A missing file is an
 * empty configuration, not an error. */
int cfg_load(const char *path, struct cfg **out, fsp_error *err);
/* Writes C to PATH atomically (a temporary file renamed over it), creating
 * its folder.  Comments of the old file are not kept. */
int cfg_save(const struct cfg *c, const char *path, fsp_error *err);
/* Adds URL (with IDENTITY, may be NULL) unless a repository with that URL is
 * there; *ADDED says which.  A value holding a newline is -EINVAL. */
int cfg_add_repo(struct cfg *c, const char *url, const char *identity, bool *added,
                 fsp_error *err);
int cfg_add_seed_folder(struct cfg *c, const char *folder, fsp_error *err);
/* Records that IMAGE of the repository at REPO is checked out to FILE,
 * replacing an older record of the same REPO and IMAGE.  A value holding a
 * newline, or a blank at either end, is -EINVAL. */
int cfg_set_checkout(struct cfg *c, const char *repo, const char *image, const char *file,
                     fsp_error *err);
/* The record of IMAGE of REPO; NULL when there is none. */
const struct cfg_checkout *cfg_find_checkout(const struct cfg *c, const char *repo,
                                             const char *image);
void cfg_free(struct cfg *c); /* NULL is fine */

#endif
