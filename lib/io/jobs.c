/*
 * jobs.c: blocking work off the event loop.
 *
 * A mutex-protected FIFO feeds the pool threads; finished jobs go to a
 * second FIFO and an eventfd wakes the loop, which runs their `done`
 * callbacks. Jobs are never cancelled: whatever was submitted runs, so an
 * accepted message is always written even if its client went away.
 */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/io/jobs.h"

struct jobs {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *todo_head, *todo_tail;
	struct job *done_head, *done_tail;
	size_t pending;
	size_t waiting;		/* submitted, not yet taken by a thread */
	void (*on_waiting)(void *arg, size_t waiting);
	void *on_waiting_arg;
	bool stopping;
	int efd;
	struct event *ev;
	pthread_t *threads;
	size_t nthreads;
	void *(*thread_init)(void *arg);
	void (*thread_deinit)(void *state);
	void *arg;
};

static void
queue_push(struct job **head, struct job **tail, struct job *job)
{
	job->next = NULL;
	if (*tail != NULL)
		(*tail)->next = job;
	else
		*head = job;
	*tail = job;
}

static void *
jobs_thread(void *arg)
{
	struct jobs *jobs = arg;
	void *state = jobs->thread_init ? jobs->thread_init(jobs->arg) : NULL;
	uint64_t one = 1;

	pthread_mutex_lock(&jobs->lock);
	for (;;) {
		struct job *job;

		while (jobs->todo_head == NULL && !jobs->stopping)
			pthread_cond_wait(&jobs->cond, &jobs->lock);
		job = jobs->todo_head;
		if (job == NULL)
			break;
		jobs->todo_head = job->next;
		if (jobs->todo_head == NULL)
			jobs->todo_tail = NULL;
		jobs->waiting--;
		if (jobs->on_waiting != NULL)
			jobs->on_waiting(jobs->on_waiting_arg, jobs->waiting);
		pthread_mutex_unlock(&jobs->lock);

		const char *prev = log_service_set(job->log_service);

		job->run(job, state);
		log_service_set(prev);

		pthread_mutex_lock(&jobs->lock);
		queue_push(&jobs->done_head, &jobs->done_tail, job);
		if (write(jobs->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_error_errno("jobs: eventfd write");
	}
	pthread_mutex_unlock(&jobs->lock);
	if (jobs->thread_deinit != NULL)
		jobs->thread_deinit(state);
	return NULL;
}

static void
jobs_run_done(struct jobs *jobs)
{
	struct job *list, *next;

	pthread_mutex_lock(&jobs->lock);
	list = jobs->done_head;
	jobs->done_head = jobs->done_tail = NULL;
	pthread_mutex_unlock(&jobs->lock);
	for (; list != NULL; list = next) {
		const char *prev = log_service_set(list->log_service);

		next = list->next;
		jobs->pending--;
		list->done(list);
		log_service_set(prev);
	}
}

static void
jobs_wakeup(evutil_socket_t fd, short what, void *arg)
{
	uint64_t n;

	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_error_errno("jobs: eventfd read");
	jobs_run_done(arg);
}

struct jobs *
jobs_create(struct event_base *base, size_t nthreads,
    void *(*thread_init)(void *arg), void (*thread_deinit)(void *state),
    void *arg)
{
	struct jobs *jobs = xcalloc(1, sizeof(*jobs));

	pthread_mutex_init(&jobs->lock, NULL);
	pthread_cond_init(&jobs->cond, NULL);
	jobs->thread_init = thread_init;
	jobs->thread_deinit = thread_deinit;
	jobs->arg = arg;
	jobs->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (jobs->efd < 0)
		fatal_errno("eventfd");
	jobs->ev = event_new(base, jobs->efd, EV_READ | EV_PERSIST,
	    jobs_wakeup, jobs);
	if (jobs->ev == NULL || event_add(jobs->ev, NULL) < 0)
		fatal("jobs: cannot add the wakeup event");
	jobs->nthreads = nthreads ? nthreads : 1;
	jobs->threads = xcalloc(jobs->nthreads, sizeof(pthread_t));
	for (size_t i = 0; i < jobs->nthreads; i++)
		if (pthread_create(&jobs->threads[i], NULL, jobs_thread,
		    jobs) != 0)
			fatal("jobs: cannot start a thread");
	return jobs;
}

void
jobs_submit(struct jobs *jobs, struct job *job)
{
	pthread_mutex_lock(&jobs->lock);
	queue_push(&jobs->todo_head, &jobs->todo_tail, job);
	jobs->pending++;
	jobs->waiting++;
	if (jobs->on_waiting != NULL)
		jobs->on_waiting(jobs->on_waiting_arg, jobs->waiting);
	pthread_cond_signal(&jobs->cond);
	pthread_mutex_unlock(&jobs->lock);
}

void
jobs_on_waiting(struct jobs *jobs, void (*fn)(void *arg, size_t waiting),
    void *arg)
{
	pthread_mutex_lock(&jobs->lock);
	jobs->on_waiting = fn;
	jobs->on_waiting_arg = arg;
	if (fn != NULL)
		fn(arg, jobs->waiting);
	pthread_mutex_unlock(&jobs->lock);
}

size_t
jobs_pending(const struct jobs *jobs)
{
	return jobs->pending;
}

void
jobs_destroy(struct jobs **jobsp)
{
	struct jobs *jobs = *jobsp;

	if (jobs == NULL)
		return;
	pthread_mutex_lock(&jobs->lock);
	jobs->stopping = true;
	pthread_cond_broadcast(&jobs->cond);
	pthread_mutex_unlock(&jobs->lock);
	for (size_t i = 0; i < jobs->nthreads; i++)
		pthread_join(jobs->threads[i], NULL);
	jobs_run_done(jobs);
	event_free(jobs->ev);
	close(jobs->efd);
	pthread_mutex_destroy(&jobs->lock);
	pthread_cond_destroy(&jobs->cond);
	free(jobs->threads);
	free(jobs);
	*jobsp = NULL;
}
