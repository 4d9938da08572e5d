/*
 * state_writer.c: the writer thread of report rows in petrel's state
 * database (see state_writer.h). The connection is the writer's alone,
 * in WAL mode with synchronous = NORMAL (set by the owner's open): a
 * report row is worth no fsync of its own; greylisting's connection to
 * the same file keeps FULL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/trust/state_writer.h"

int
state_db_exec(sqlite3 *db, const char *sql, char **error_r)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		*error_r = xasprintf("%s", err ? err : sqlite3_errmsg(db));
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

/* Write rows in one transaction. Outside w->lock (the writer alone uses
 * w->db). */
static void
write_rows(struct state_writer *w, const unsigned char *rows, size_t n)
{
	sqlite3_stmt *st = NULL;
	char *err = NULL, *e2 = NULL;

	if (w->db == NULL && (w->db = w->open(w->path, true, &err)) == NULL) {
		log_error("%s: %s (%zu row%s not recorded)", w->what, err, n,
		    n == 1 ? "" : "s");
		free(err);
		return;
	}
	if (state_db_exec(w->db, "BEGIN IMMEDIATE", &err) < 0)
		goto fail;
	if (sqlite3_prepare_v2(w->db, w->insert_sql, -1, &st, NULL) !=
	    SQLITE_OK) {
		err = xasprintf("%s", sqlite3_errmsg(w->db));
		goto rollback;
	}
	for (size_t i = 0; i < n; i++) {
		if (w->insert(st, rows + i * w->row_size) < 0) {
			err = xasprintf("%s", sqlite3_errmsg(w->db));
			goto rollback;
		}
	}
	sqlite3_finalize(st);
	st = NULL;
	if ((w->written + n) / STATE_WRITER_BOUND_EVERY !=
	    w->written / STATE_WRITER_BOUND_EVERY) {
		char *sql = xasprintf("DELETE FROM %s WHERE id <= "
		    "(SELECT max(id) FROM %s) - %ld", w->table, w->table,
		    w->rows_max);
		int r = state_db_exec(w->db, sql, &err);

		free(sql);
		if (r < 0)
			goto rollback;
	}
	if (state_db_exec(w->db, "COMMIT", &err) < 0)
		goto rollback;
	w->written += n;
	return;
rollback:
	sqlite3_finalize(st);
	(void)state_db_exec(w->db, "ROLLBACK", &e2);
	free(e2);
fail:
	log_error("%s %s: %s (%zu row%s not recorded)", w->what, w->path,
	    err ? err : "?", n, n == 1 ? "" : "s");
	free(err);
}

/* Take what is pending and write it. Under w->lock on entry and exit. */
static void
drain_locked(struct state_writer *w)
{
	while (w->n > 0 && !w->busy) {
		unsigned char *rows = w->rows;
		size_t n = w->n;

		w->rows = NULL;
		w->n = w->cap = 0;
		w->busy = true;
		pthread_mutex_unlock(&w->lock);
		write_rows(w, rows, n);
		free(rows);
		pthread_mutex_lock(&w->lock);
		w->busy = false;
		pthread_cond_broadcast(&w->idle);
	}
}

static void *
writer(void *arg)
{
	struct state_writer *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (w->n == 0 || w->busy)
			pthread_cond_wait(&w->cond, &w->lock);
		drain_locked(w);
	}
	return NULL;
}

void
state_writer_put(struct state_writer *w, const char *path, const void *row)
{
	pthread_mutex_lock(&w->lock);
	if (!w->started) {
		pthread_t t;
		pthread_attr_t attr;

		if (w->path == NULL)
			w->path = xstrdup(path);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, writer, w) != 0) {
			pthread_attr_destroy(&attr);
			pthread_mutex_unlock(&w->lock);
			log_error("%s: no writer thread: a row is not "
			    "recorded", w->what);
			return;
		}
		pthread_attr_destroy(&attr);
		w->started = true;
	}
	if (w->n >= w->pending_max) {
		if (w->dropped++ % 1000 == 0)
			log_error("%s: %lu row(s) not recorded: the writer is "
			    "behind", w->what, w->dropped);
		pthread_mutex_unlock(&w->lock);
		return;
	}
	if (w->n == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 16;
		w->rows = xrealloc(w->rows, w->cap * w->row_size);
	}
	memcpy(w->rows + w->n++ * w->row_size, row, w->row_size);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

void
state_writer_flush(struct state_writer *w)
{
	pthread_mutex_lock(&w->lock);
	if (w->started) {
		drain_locked(w);
		while (w->busy)
			pthread_cond_wait(&w->idle, &w->lock);
	}
	pthread_mutex_unlock(&w->lock);
}

int
state_db_open_existing(const char *path,
    sqlite3 *(*open)(const char *path, bool create, char **error_r),
    sqlite3 **db_r, char **error_r)
{
	struct stat sb;

	*db_r = NULL;
	if (stat(path, &sb) < 0)
		return 0;	/* nothing recorded yet */
	*db_r = open(path, false, error_r);
	return *db_r != NULL ? 1 : -1;
}

int
state_db_fail(sqlite3 *db, sqlite3_stmt *st, char **error_r)
{
	*error_r = xasprintf("state database: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return -1;
}
