#ifndef PETREL_TRUST_STATE_WRITER_H
#define PETREL_TRUST_STATE_WRITER_H
/*
 * state_writer: rows for a table of petrel's state database
 * (queue_dir/state.db) written by a thread of their own, for the report
 * rows (lib/trust/dmarc_report.c, lib/trust/tls_rpt.c): whoever records
 * puts a row in a bounded list under a mutex and signals the writer
 * thread (started on first use), which takes the whole list and writes
 * it in one transaction on its own connection. The caller never waits
 * for SQLite; a row that cannot be written is logged, never returned as
 * an error. Every STATE_WRITER_BOUND_EVERY rows the table is cut to its
 * newest rows_max rows (the oldest go), so that a table whose rows are
 * never taken does not grow without bound.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>

#define STATE_WRITER_BOUND_EVERY 4096	/* rows written between two cuts */

struct state_writer {
	/* set by the owner */
	const char *what;	/* in log lines: "tls-rpt state" */
	const char *table;	/* with an INTEGER PRIMARY KEY id */
	size_t row_size;
	size_t pending_max;	/* rows waiting; more are dropped (logged) */
	long rows_max;
	/* open (and create) the database at path, its tables made */
	sqlite3 *(*open)(const char *path, bool create, char **error_r);
	const char *insert_sql;	/* prepared once per batch */
	/* reset st, bind one row, step: 0, or -1 */
	int (*insert)(sqlite3_stmt *st, const void *row);
	/* the writer's, zero at first but for the locks
	 * (STATE_WRITER_LOCKS) */
	pthread_mutex_t lock;
	pthread_cond_t cond, idle;
	unsigned char *rows;
	size_t n, cap;
	bool started, busy;
	char *path;
	sqlite3 *db;
	unsigned long written, dropped;
};

#define STATE_WRITER_LOCKS \
	.lock = PTHREAD_MUTEX_INITIALIZER, \
	.cond = PTHREAD_COND_INITIALIZER, \
	.idle = PTHREAD_COND_INITIALIZER

/* Queue a copy of row for w's thread, which writes to the database at
 * path (the first call's path is the one used). Never blocks on the
 * database. */
void state_writer_put(struct state_writer *w, const char *path,
    const void *row);

/* Write what is queued now (for the end of a process and for tests). */
void state_writer_flush(struct state_writer *w);

/* The reading side (the report commands): the database at path opened
 * with open (not created): 1 with *db_r, 0 when there is no such file
 * (nothing recorded yet), -1 with *error_r. */
int state_db_open_existing(const char *path,
    sqlite3 *(*open)(const char *path, bool create, char **error_r),
    sqlite3 **db_r, char **error_r);

/* A failed statement: *error_r "state database: <SQLite's message>",
 * st finalized (may be NULL); -1. */
int state_db_fail(sqlite3 *db, sqlite3_stmt *st, char **error_r);

/* Run sql on db: 0, or -1 with *error_r (malloc'd). */
int state_db_exec(sqlite3 *db, const char *sql, char **error_r);

#endif
