#ifndef PETREL_DIR_H
#define PETREL_DIR_H
/*
 * The SQL directory: one interface over SQLite and MariaDB.
 *
 * Every statement is a prepared statement. SQL text uses named parameters
 * (:address, :local, :domain, :login, or any :name the caller binds); they
 * are bound as text, never interpolated.
 *
 * Return values of everything below:
 *   DIR_OK (1)        success / found
 *   DIR_NOTFOUND (0)  a lookup found no row
 *   DIR_FAIL (-1)     a permanent error (bad SQL, missing table, ...)
 *   DIR_TEMPFAIL (-2) the database is temporarily unavailable (connection
 *                     refused or lost, locked): answer 4xx, never 5xx.
 * error_r, when set, points into the dir handle and stays valid until the
 * next call on it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/maildir/quota.h"

#define DIR_OK 1
#define DIR_NOTFOUND 0
#define DIR_FAIL (-1)
#define DIR_TEMPFAIL (-2)

struct dir;
struct config;

struct dir_param {
	const char *name;	/* without the ':' */
	const char *value;	/* NULL binds SQL NULL */
};

/* A fully fetched result: ncols text cells per row, NULL for SQL NULL. */
struct dir_rows {
	size_t nrows, ncols;
	char **cells;		/* row-major */
	char **names;		/* ncols column names (NULL: unknown) */
	uint64_t affected;	/* rows changed by INSERT/UPDATE/DELETE */
};

/* Parsed database URL: "sqlite:PATH" or
 * "mysql://USER:PASSWORD@HOST[:PORT][,HOST[:PORT]...]/DB[?socket=PATH]"
 * (user, password and db may be %-escaped). Several hosts: the nodes of
 * one cluster (Galera), tried in order (lib/dir/dir_mariadb.c). */
#define DIR_URL_HOSTS_MAX 16
struct dir_url {
	bool mysql;
	char *path;		/* sqlite */
	char *user, *password, *host, *db, *socket;
	unsigned port;		/* 0 = default */
	/* every host (hosts[0], ports[0] are host, port) */
	char *hosts[DIR_URL_HOSTS_MAX];
	unsigned ports[DIR_URL_HOSTS_MAX];
	size_t nhosts;
};
int dir_url_parse(const char *url, struct dir_url *u, const char **error_r);
void dir_url_clear(struct dir_url *u);
/* The URL with any password replaced by ****, for logs (static buffer). */
const char *dir_url_redacted(const char *url);

/* The user record returned by query_user / query_login (columns by
 * position: id, address, crypt, name, uid, gid, home, maildir; then
 * query_login's optional cleartext password: the column named `clear`,
 * else a 10th column). clear is "" when there is none; it never leaves
 * the auth process and dir_user_clear() wipes it. Then the optional
 * backend host (SPEC 6.1): the column named `host`, else the one after
 * maildir (after clear when both). */
struct dir_user {
	char *id, *address, *crypt, *name, *home, *maildir;
	char *clear;
	char *host;	/* the user's mailbox backend (scale-out), "" if none */
	long uid, gid;
};
void dir_user_clear(struct dir_user *u);

/* database_password_file: read the MariaDB password from path (its first
 * line) and use it, for every mysql:// handle opened after, in place of a
 * password in the URL. Only the auth process and the CLI (root) call it.
 * 0, or -1 with error_r (malloc'd). An empty path does nothing. */
int dir_password_file_load(const char *path, char **error_r);

#define DIR_OPEN_CREATE 0x1	/* sqlite: create the file if missing */

/* Parse the URL and make a handle; does not connect (queries connect on
 * demand). DIR_FAIL with error_r (malloc'd) on a bad URL. */
int dir_open(const char *url, int flags, struct dir **dir_r, char **error_r);
void dir_close(struct dir **dir);
/* Connect now (to report an unreachable database early). */
int dir_connect(struct dir *dir, const char **error_r);
/* The hosts of a MariaDB URL (1 for one host, 0 for SQLite), and one
 * host's state: a connection of its own to host i, closed at once.
 * DIR_OK or DIR_TEMPFAIL with *error_r; *name_r is "HOST:PORT". */
size_t dir_hosts(const struct dir *dir);
int dir_probe_host(struct dir *dir, size_t i, const char **name_r,
    const char **error_r);
bool dir_is_mysql(const struct dir *dir);
/* Take the lookup queries (query_*) from the configuration. */
void dir_set_queries(struct dir *dir, const struct config *cfg);

/* fn(seconds) after each statement the database ran (or failed), from
 * the thread that ran it; set once, before the first query. */
void dir_observe_queries(void (*fn)(double seconds));
/* Around the several lookups of one answer (a recipient's route, a
 * login): SQLite reads them in one read transaction, so the database
 * is locked and checked for change once instead of once per statement,
 * and they see one state of it. Nothing for MariaDB (each statement
 * autocommits, as before). dir_read_end after every dir_read_begin. */
void dir_read_begin(struct dir *dir);
void dir_read_end(struct dir *dir);
/* Run one statement. rows_r may be NULL when no result is wanted. */
int dir_query(struct dir *dir, const char *sql, const struct dir_param *params,
    size_t nparams, struct dir_rows **rows_r, const char **error_r);
const char *dir_rows_get(const struct dir_rows *rows, size_t row, size_t col);
void dir_rows_free(struct dir_rows **rows);

/* Translate named parameters to '?' placeholders (outside quotes and
 * comments). names_r gets a malloc'd array of malloc'd names in order. */
int dir_sql_translate(const char *sql, char **out_r, char ***names_r,
    size_t *nnames_r);

/* The configured lookups. Addresses are lower-cased before lookup. */
int dir_lookup_domain(struct dir *dir, const char *domain, char **transport_r,
    const char **error_r);
int dir_lookup_alias(struct dir *dir, const char *address, char **goto_r,
    const char **error_r);
int dir_lookup_user(struct dir *dir, const char *address, struct dir_user *u,
    const char **error_r);
int dir_lookup_login(struct dir *dir, const char *login, struct dir_user *u,
    const char **error_r);
/* Whether query_login returns a cleartext password column (prepared and
 * run for an empty login, so that no row is needed): DIR_OK yes,
 * DIR_NOTFOUND no, DIR_FAIL / DIR_TEMPFAIL could not tell. */
int dir_login_has_clear(struct dir *dir, const char **error_r);
/* The quota (bytes and messages; none when query_quota is empty or
 * finds nothing): the column holds bytes or a Maildir++ definition
 * ("1000000S,1000C", "5C"; lib/maildir/quota.h). A value that is
 * neither is logged and means no quota. */
int dir_lookup_quota(struct dir *dir, const char *address,
    struct quota_limit *quota_r,
    const char **error_r);
/* Whether query_quota is configured (non-empty). */
bool dir_has_quota(const struct dir *dir);

/* Job-thread state (lib/io/jobs.h): each thread gets its own handle on
 * the configured database (arg is the struct config). */
void *dir_thread_init(void *cfg);
void dir_thread_deinit(void *state);

#endif
