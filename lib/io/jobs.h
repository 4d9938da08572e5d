#ifndef PETREL_JOBS_H
#define PETREL_JOBS_H
/*
 * A small pool of threads for work that blocks (fsync, SQL queries), so
 * the event loop never waits on the disk or the database. A job's `run`
 * executes on a pool thread; its `done` then executes on the loop thread.
 * Each pool thread has its own per-thread state (e.g. a database handle),
 * made by `thread_init` on first use.
 */
#include <stddef.h>

struct event_base;
struct jobs;

struct job {
	void (*run)(struct job *job, void *thread_state);
	void (*done)(struct job *job);
	const char *log_service;	/* log_service_set() while run and
					   done run (NULL: the process's) */
	struct job *next;	/* internal */
};

/* nthreads >= 1. thread_init(arg) makes a thread's state (may be NULL);
 * thread_deinit(state) frees it when the pool is destroyed. */
struct jobs *jobs_create(struct event_base *base, size_t nthreads,
    void *(*thread_init)(void *arg), void (*thread_deinit)(void *state),
    void *arg);
void jobs_submit(struct jobs *jobs, struct job *job);
/* fn(arg, n) each time the number of jobs waiting for a thread changes
 * (and once now), under the pool's lock: fn must not block. */
void jobs_on_waiting(struct jobs *jobs, void (*fn)(void *arg, size_t waiting),
    void *arg);
/* Jobs submitted and not yet done. */
size_t jobs_pending(const struct jobs *jobs);
/* Waits for running jobs, runs remaining `done` callbacks, joins. */
void jobs_destroy(struct jobs **jobs);

#endif
