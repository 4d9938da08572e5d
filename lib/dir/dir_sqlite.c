/*
 * dir_sqlite.c: the SQLite directory driver (the embedded default).
 *
 * Prepared statements are cached per SQL text for the life of the handle.
 * SQLITE_BUSY/LOCKED and I/O errors are temporary (the caller answers 4xx);
 * SQL errors (missing table or column) are permanent.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/base/alloc.h"
#include "lib/dir/dir-private.h"

#define SQLITE_STMT_CACHE 32
#define SQLITE_BUSY_MS 5000

struct sqlite_ctx {
	char *path;
	int flags;
	sqlite3 *db;
	struct { char *sql; sqlite3_stmt *stmt; } cache[SQLITE_STMT_CACHE];
	size_t ncache;
};

static bool
sqlite_temporary(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY: case SQLITE_LOCKED: case SQLITE_IOERR:
	case SQLITE_CANTOPEN: case SQLITE_NOMEM: case SQLITE_FULL:
	case SQLITE_PROTOCOL:
		return true;
	}
	return false;
}

static int
sqlite_open(const struct dir_url *url, int flags, void **ctx_r, str_t *error)
{
	struct sqlite_ctx *c = xmalloc(sizeof(*c));

	c->path = xstrdup(url->path);
	c->flags = flags;
	*ctx_r = c;
	return 0;
}

static void
sqlite_drop(struct sqlite_ctx *c)
{
	for (size_t i = 0; i < c->ncache; i++) {
		sqlite3_finalize(c->cache[i].stmt);
		free(c->cache[i].sql);
	}
	c->ncache = 0;
	if (c->db != NULL)
		sqlite3_close(c->db);
	c->db = NULL;
}

/* CONCAT(a, b, ...) as MariaDB's: the arguments' text joined, NULL if
 * any is NULL. SQLite has it built in from 3.44 only; the schema presets
 * (lib/config) use it on both drivers. */
static void
sqlite_concat(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	str_t out = STR_INIT;

	for (int i = 0; i < argc; i++) {
		const unsigned char *t;

		if (sqlite3_value_type(argv[i]) == SQLITE_NULL) {
			str_free(&out);
			sqlite3_result_null(ctx);
			return;
		}
		t = sqlite3_value_text(argv[i]);
		if (t != NULL)
			str_append_n(&out, t,
			    (size_t)sqlite3_value_bytes(argv[i]));
	}
	sqlite3_result_text(ctx, str_c(&out), (int)out.len,
	    SQLITE_TRANSIENT);
	str_free(&out);
}

static int
sqlite_connect(void *ctx, str_t *error)
{
	struct sqlite_ctx *c = ctx;
	int oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
	struct stat st;
	int rc;

	if (c->db != NULL)
		return 0;
	if (!(c->flags & DIR_OPEN_CREATE) && stat(c->path, &st) < 0) {
		str_printf(error, "cannot open database %s: %s", c->path,
		    strerror(errno));
		return -1;
	}
	if (c->flags & DIR_OPEN_CREATE)
		oflags |= SQLITE_OPEN_CREATE;
	rc = sqlite3_open_v2(c->path, &c->db, oflags, NULL);
	if (rc != SQLITE_OK) {
		str_printf(error, "cannot open database %s: %s", c->path,
		    c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		sqlite_drop(c);
		return -1;
	}
	sqlite3_busy_timeout(c->db, SQLITE_BUSY_MS);
	sqlite3_extended_result_codes(c->db, 1);
	sqlite3_create_function(c->db, "concat", -1,
	    SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, sqlite_concat, NULL,
	    NULL);
	return 0;
}

static void
sqlite_close(void *ctx)
{
	struct sqlite_ctx *c = ctx;

	sqlite_drop(c);
	free(c->path);
	free(c);
}

static sqlite3_stmt *
sqlite_prepare(struct sqlite_ctx *c, const char *sql, int *rc_r)
{
	sqlite3_stmt *stmt = NULL;

	for (size_t i = 0; i < c->ncache; i++)
		if (strcmp(c->cache[i].sql, sql) == 0)
			return c->cache[i].stmt;
	*rc_r = sqlite3_prepare_v2(c->db, sql, -1, &stmt, NULL);
	if (*rc_r != SQLITE_OK)
		return NULL;
	if (c->ncache == SQLITE_STMT_CACHE) {
		/* Evict the oldest entry. */
		sqlite3_finalize(c->cache[0].stmt);
		free(c->cache[0].sql);
		memmove(&c->cache[0], &c->cache[1],
		    (SQLITE_STMT_CACHE - 1) * sizeof(c->cache[0]));
		c->ncache--;
	}
	c->cache[c->ncache].sql = xstrdup(sql);
	c->cache[c->ncache].stmt = stmt;
	c->ncache++;
	return stmt;
}

static int
sqlite_query(void *ctx, const char *sql, const char *const *values,
    size_t nvalues, struct dir_rows *rows, str_t *error)
{
	struct sqlite_ctx *c = ctx;
	sqlite3_stmt *stmt;
	int rc = SQLITE_OK, ret = 0;

	if (sqlite_connect(c, error) < 0)
		return DIR_TEMPFAIL;
	stmt = sqlite_prepare(c, sql, &rc);
	if (stmt == NULL) {
		str_printf(error, "%s", sqlite3_errmsg(c->db));
		return sqlite_temporary(rc) ? DIR_TEMPFAIL : DIR_FAIL;
	}
	if ((size_t)sqlite3_bind_parameter_count(stmt) != nvalues) {
		str_printf(error, "query has %d placeholders, %zu values",
		    sqlite3_bind_parameter_count(stmt), nvalues);
		return DIR_FAIL;
	}
	for (size_t i = 0; i < nvalues; i++) {
		if (values[i] == NULL)
			rc = sqlite3_bind_null(stmt, (int)i + 1);
		else
			rc = sqlite3_bind_text(stmt, (int)i + 1, values[i], -1,
			    SQLITE_TRANSIENT);
		if (rc != SQLITE_OK)
			goto fail;
	}
	rows->ncols = (size_t)sqlite3_column_count(stmt);
	rows->names = xcalloc(rows->ncols + 1, sizeof(char *));
	for (size_t i = 0; i < rows->ncols; i++) {
		const char *n = sqlite3_column_name(stmt, (int)i);

		rows->names[i] = xstrdup(n != NULL ? n : "");
	}
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		char **cells = xcalloc(rows->ncols + 1, sizeof(char *));

		for (size_t i = 0; i < rows->ncols; i++) {
			const unsigned char *t =
			    sqlite3_column_text(stmt, (int)i);

			if (t != NULL)
				cells[i] = xstrndup((const char *)t,
				    (size_t)sqlite3_column_bytes(stmt, (int)i));
		}
		dir_rows_add(rows, cells);
		free(cells);
	}
	if (rc != SQLITE_DONE)
		goto fail;
	rows->affected = (uint64_t)sqlite3_changes(c->db);
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	return DIR_OK;
fail:
	str_printf(error, "%s", sqlite3_errmsg(c->db));
	ret = sqlite_temporary(rc) ? DIR_TEMPFAIL : DIR_FAIL;
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	return ret;
}

/* A deferred transaction: the shared lock is taken by the first read
 * and held to the end, so the lookups in between do not each lock,
 * look for a hot journal and re-read the change counter. A failure
 * only means the statements run on their own, as without it. */
static void
sqlite_read_begin(void *ctx)
{
	struct sqlite_ctx *c = ctx;
	str_t error = STR_INIT;

	if (sqlite_connect(c, &error) == 0 && sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL);
	str_free(&error);
}

static void
sqlite_read_end(void *ctx)
{
	struct sqlite_ctx *c = ctx;

	if (c->db == NULL || sqlite3_get_autocommit(c->db))
		return;
	if (sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

const struct dir_driver dir_driver_sqlite = {
	.name = "sqlite",
	.open = sqlite_open,
	.connect = sqlite_connect,
	.close = sqlite_close,
	.query = sqlite_query,
	.read_begin = sqlite_read_begin,
	.read_end = sqlite_read_end,
};
