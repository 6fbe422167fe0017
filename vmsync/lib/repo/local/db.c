/* SQLite helpers of a local repository's catalog: each failure becomes an
 * fsp_error naming the repository and what it was doing. */
#include "repo/local/local.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- SQLite helpers ------------------------------------------------------- */

int vms_db_fail(sqlite3 *db, const char *where, int rc, const char *what, fsp_error *err)
{
    enum fsp_error_kind kind = FSP_EK_IO;
    int code = -EIO;
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        code = -EBUSY;
        break;
    case SQLITE_NOMEM:
        kind = FSP_EK_NOMEM;
        code = -ENOMEM;
        break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        kind = FSP_EK_CORRUPT;
        code = -EUCLEAN;
        break;
    }
    return fsp_fail(err, kind, code, "%s: catalog: %s: %s", where, what,
                    db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

int vms_repo_db_fail(vms_local *r, int rc, const char *what, fsp_error *err)
{
    return vms_db_fail(r->db, r->path, rc, what, err);
}

int vms_repo_exec(vms_local *r, const char *sql, fsp_error *err)
{
    int rc = sqlite3_exec(r->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : vms_repo_db_fail(r, rc, sql, err);
}

int vms_repo_prepare(vms_local *r, const char *sql, sqlite3_stmt **st, fsp_error *err)
{
    int rc = sqlite3_prepare_v2(r->db, sql, -1, st, NULL);
    return rc == SQLITE_OK ? 0 : vms_repo_db_fail(r, rc, "preparing a query", err);
}

int vms_repo_exec_id(vms_local *r, const char *sql, int64_t id, fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r, sql, &st, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    return s == SQLITE_DONE ? 0 : vms_repo_db_fail(r, s, sql, err);
}

int vms_repo_count(vms_local *r, const char *sql, uint64_t *out, fsp_error *err)
{
    sqlite3_stmt *st;
    int rc = vms_repo_prepare(r, sql, &st, err);
    if (rc)
        return rc;
    int s = sqlite3_step(st);
    *out = s == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return s == SQLITE_ROW ? 0 : vms_repo_db_fail(r, s, sql, err);
}

/* Steps a statement that returns no rows, then finalizes it. */
int vms_repo_run_once(vms_local *r, sqlite3_stmt *st, const char *what, fsp_error *err)
{
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    return s == SQLITE_DONE ? 0 : vms_repo_db_fail(r, s, what, err);
}

int vms_repo_begin(vms_local *r, fsp_error *err) { return vms_repo_exec(r, "BEGIN IMMEDIATE", err); }

int vms_repo_commit(vms_local *r, fsp_error *err)
{
    int rc = vms_repo_exec(r, "COMMIT", err);
    if (rc)
        vms_repo_rollback(r);
    return rc;
}

void vms_repo_rollback(vms_local *r)
{
    if (!sqlite3_get_autocommit(r->db))
        sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Ends the transaction: commit when RC is 0, else roll back and keep RC. */
int vms_repo_finish(vms_local *r, int rc, fsp_error *err)
{
    if (!rc)
        return vms_repo_commit(r, err);
    vms_repo_rollback(r);
    return rc;
}

void vms_repo_column_text(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    snprintf(dst, cap, "%s", s ? (const char *)s : "");
}
