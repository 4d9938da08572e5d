/*
 * test_jobs.c: unit tests for lib/io/jobs.c -- the number of jobs waiting
 * for a thread, as jobs_on_waiting reports it (/metrics' job-pool depth):
 * it rises while the only thread is busy and falls back to 0 as jobs are
 * taken; every done callback runs on the loop.
 */
#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "lib/io/jobs.h"
#include "tests/unit/test.h"

static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
static size_t last_waiting, max_waiting, reports;
static int done_count;
static struct event_base *base;

static void
on_waiting(void *arg, size_t n)
{
	test_assert(arg == &reports);
	last_waiting = n;
	if (n > max_waiting)
		max_waiting = n;
	reports++;
}

static void
run_blocking(struct job *job, void *state)
{
	(void)job;
	(void)state;
	/* the first job holds the only thread until the test opens it */
	pthread_mutex_lock(&gate);
	pthread_mutex_unlock(&gate);
}

static void
done(struct job *job)
{
	(void)job;
	if (++done_count == 4)
		event_base_loopbreak(base);
}

static void
test_waiting(void)
{
	struct jobs *jobs;
	struct job j[4];
	struct timeval tv = { 10, 0 };

	test_begin("jobs waiting for a thread: reported as they come and go");
	base = event_base_new();
	jobs = jobs_create(base, 1, NULL, NULL, NULL);
	jobs_on_waiting(jobs, on_waiting, &reports);
	test_assert(reports == 1 && last_waiting == 0);
	memset(j, 0, sizeof(j));
	pthread_mutex_lock(&gate);
	for (int i = 0; i < 4; i++) {
		j[i].run = run_blocking;
		j[i].done = done;
		jobs_submit(jobs, &j[i]);
	}
	/* the thread holds one job (or none yet): three or four wait */
	test_assert(max_waiting >= 3);
	pthread_mutex_unlock(&gate);
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	test_assert(done_count == 4);
	test_assert(last_waiting == 0);
	test_assert(jobs_pending(jobs) == 0);
	jobs_destroy(&jobs);
	event_base_free(base);
	test_end();
}

int
main(void)
{
	test_waiting();
	return test_done();
}
