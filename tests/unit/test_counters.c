/*
 * test_counters.c: unit tests for lib/session/counters.c -- connection
 * counts shared by the workers of a node: two worker regions mapped from
 * the master's descriptor add up, each writes only its own region, a
 * released region (its process ended) stops counting, and regions run
 * out cleanly.
 */
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "lib/session/counters.h"
#include "tests/unit/test.h"

static void
test_shared_counts(void)
{
	const char *err = NULL;
	struct node_counters *m, *w1, *w2;
	unsigned b1, b2, bx;
	int r1, r2;

	test_begin("two workers' sessions add up; a released region is zeroed");
	m = node_counters_create(3, 2, &err);
	test_assert(m != NULL);
	r1 = node_counters_take(m);
	r2 = node_counters_take(m);
	test_assert(r1 >= 0 && r2 >= 0 && r1 != r2);
	node_counters_owner(m, r1, 1001);
	node_counters_owner(m, r2, 1002);
	w1 = node_counters_attach(node_counters_fd(m), (unsigned)r1, &err);
	w2 = node_counters_attach(node_counters_fd(m), (unsigned)r2, &err);
	test_assert(w1 != NULL && w2 != NULL);

	b1 = node_counters_bucket(w1, "192.0.2.1");
	b2 = node_counters_bucket(w2, "192.0.2.1");
	test_assert(b1 == b2);	/* one key for the node */
	bx = node_counters_bucket(w1, "198.51.100.7");
	node_counters_add(w1, 0, b1, +1);
	node_counters_add(w1, 0, b1, +1);
	node_counters_add(w2, 0, b1, +1);
	node_counters_add(w2, 1, bx, +1);
	test_assert(node_counters_total(m, 0) == 3);
	test_assert(node_counters_total(w2, 0) == 3);
	test_assert(node_counters_total(w1, 1) == 1);
	test_assert(node_counters_address(w1, 0, b1) == 3);
	if (bx != b1)
		test_assert(node_counters_address(w1, 0, bx) == 0);
	node_counters_add(w2, 0, b1, -1);
	test_assert(node_counters_address(w1, 0, b1) == 2);

	/* worker 1 dies: its two sessions no longer count */
	node_counters_release(m, 1001);
	test_assert(node_counters_total(w2, 0) == 0);
	test_assert(node_counters_address(w2, 0, b1) == 0);
	test_assert(node_counters_total(w2, 1) == 1);
	/* its region is free again; the third one too; then none */
	test_assert(node_counters_take(m) >= 0);
	test_assert(node_counters_take(m) >= 0);
	test_assert(node_counters_take(m) == -1);

	/* out-of-range services and buckets are ignored, not written */
	node_counters_add(w2, 7, b1, +1);
	node_counters_add(w2, 0, NODE_COUNTERS_BUCKETS, +1);
	test_assert(node_counters_total(w2, 7) == 0);
	test_assert(node_counters_total(w2, 0) == 0);
	node_counters_free(&w1);
	node_counters_free(&w2);
	node_counters_free(&m);
	test_assert(m == NULL);
	test_end();
}

static void
test_events(void)
{
	const char *err = NULL;
	struct node_counters *m, *w1, *w2;
	int r1, r2;

	test_begin("events add up over workers and survive a worker's end");
	m = node_counters_create(2, 2, &err);
	test_assert(m != NULL);
	r1 = node_counters_take(m);
	r2 = node_counters_take(m);
	node_counters_owner(m, r1, 2001);
	node_counters_owner(m, r2, 2002);
	w1 = node_counters_attach(dup(node_counters_fd(m)), (unsigned)r1, &err);
	w2 = node_counters_attach(dup(node_counters_fd(m)), (unsigned)r2, &err);
	test_assert(w1 != NULL && w2 != NULL);
	node_counters_event(w1, NODE_EVENT_LOGIN_OK);
	node_counters_event(w1, NODE_EVENT_LOGIN_OK);
	node_counters_event(w2, NODE_EVENT_LOGIN_OK);
	node_counters_event(w2, NODE_EVENT_MESSAGE_RECEIVED);
	node_counters_event(w2, NODE_EVENTS);	/* ignored */
	node_counters_event(NULL, NODE_EVENT_LOGIN_OK);
	test_assert(node_counters_events(w2, NODE_EVENT_LOGIN_OK) == 3);
	test_assert(node_counters_events(m, NODE_EVENT_MESSAGE_RECEIVED) == 1);
	test_assert(node_counters_events(m, NODE_EVENT_LOGIN_FAILED) == 0);
	test_assert(node_counters_events(NULL, NODE_EVENT_LOGIN_OK) == 0);
	/* worker 1 ends: the counts stay; its successor counts on top */
	node_counters_release(m, 2001);
	test_assert(node_counters_events(w2, NODE_EVENT_LOGIN_OK) == 3);
	node_counters_free(&w1);
	r1 = node_counters_take(m);
	node_counters_owner(m, r1, 2003);
	w1 = node_counters_attach(dup(node_counters_fd(m)), (unsigned)r1, &err);
	node_counters_event(w1, NODE_EVENT_LOGIN_OK);
	test_assert(node_counters_events(m, NODE_EVENT_LOGIN_OK) == 4);
	node_counters_free(&w1);
	node_counters_free(&w2);
	node_counters_free(&m);
	test_end();
}

static void
test_attach_refuses_garbage(void)
{
	const char *err = NULL;
	int fds[2];

	test_begin("attach refuses a descriptor that is not a counter mapping");
	test_assert(pipe(fds) == 0);
	test_assert(node_counters_attach(fds[0], 0, &err) == NULL);
	test_assert(err != NULL && strstr(err, "counter") != NULL);
	close(fds[0]);
	close(fds[1]);
	test_end();
}

static void
test_private(void)
{
	struct node_counters *p = node_counters_private(2);
	unsigned b = node_counters_bucket(p, "::1");

	test_begin("private counts: one process alone");
	node_counters_add(p, 1, b, +1);
	test_assert(node_counters_total(p, 1) == 1);
	test_assert(node_counters_address(p, 1, b) == 1);
	test_assert(node_counters_total(p, 0) == 0);
	test_assert(node_counters_take(p) == -1);	/* no regions to hand out */
	node_counters_free(&p);
	test_end();
}

static void
test_histograms_gauges_processes(void)
{
	const char *err = NULL;
	struct node_counters *m, *w1, *w2;
	struct node_process pr[4];
	uint64_t cum[NODE_HIST_BUCKETS_MAX + 1];
	const double *b;
	double sum;
	size_t n;
	int r1, r2;

	test_begin("histograms and gauges over workers; a worker's end keeps "
	    "the histogram, drops its gauges and its name");
	m = node_counters_create(2, 1, &err);
	r1 = node_counters_take(m);
	r2 = node_counters_take(m);
	node_counters_owner(m, r1, 3001);
	node_counters_owner(m, r2, 3002);
	w1 = node_counters_attach(dup(node_counters_fd(m)), (unsigned)r1, &err);
	w2 = node_counters_attach(dup(node_counters_fd(m)), (unsigned)r2, &err);
	test_assert(w1 != NULL && w2 != NULL);
	b = node_counters_hist_bounds(NODE_HIST_DIRECTORY, &n);
	test_assert(n > 2 && n <= NODE_HIST_BUCKETS_MAX);
	for (size_t i = 1; i < n; i++)
		test_assert(b[i] > b[i - 1]);
	node_counters_observe(w1, NODE_HIST_DIRECTORY, b[0]);	/* le b[0] */
	node_counters_observe(w1, NODE_HIST_DIRECTORY, b[0] * 1.5);
	node_counters_observe(w2, NODE_HIST_DIRECTORY, b[n - 1] * 2);
	node_counters_observe(w2, NODE_HIST_DIRECTORY, -1);	/* as 0 */
	node_counters_observe(NULL, NODE_HIST_DIRECTORY, 1);
	node_counters_hist(m, NODE_HIST_DIRECTORY, cum, &sum);
	test_assert(cum[0] == 2 && cum[1] == 3 && cum[n - 1] == 3 &&
	    cum[n] == 4);
	test_assert(sum > b[n - 1] * 2 && sum < b[n - 1] * 2 + 1);
	node_counters_hist(m, NODE_HIST_DELIVERY, cum, &sum);
	node_counters_hist_bounds(NODE_HIST_DELIVERY, &n);
	test_assert(cum[n] == 0 && sum == 0);
	node_counters_gauge_set(w1, NODE_GAUGE_JOBS_WAITING, 5);
	node_counters_gauge_set(w2, NODE_GAUGE_JOBS_WAITING, 2);
	node_counters_gauge_set(w2, NODE_GAUGE_JOBS_WAITING, 3);
	test_assert(node_counters_gauge(m, NODE_GAUGE_JOBS_WAITING) == 8);
	test_assert(node_counters_gauge(m, NODE_GAUGE_DIR_JOBS_WAITING) == 0);
	test_assert(node_counters_processes(m, pr, 4) == 0);
	node_counters_identify(w1, NODE_ROLE_QUEUE, 7);
	node_counters_identify(w2, NODE_ROLE_WORKER, 1);
	test_assert(node_counters_processes(m, pr, 4) == 2);
	test_assert(pr[0].pid == getpid() && pr[0].slot == 7 &&
	    pr[0].role == NODE_ROLE_QUEUE && pr[1].role == NODE_ROLE_WORKER);
	test_assert(node_counters_processes(m, pr, 1) == 1);
	node_counters_release(m, 3001);
	test_assert(node_counters_gauge(m, NODE_GAUGE_JOBS_WAITING) == 3);
	test_assert(node_counters_processes(m, pr, 4) == 1 &&
	    pr[0].slot == 1);
	node_counters_hist(m, NODE_HIST_DIRECTORY, cum, &sum);
	node_counters_hist_bounds(NODE_HIST_DIRECTORY, &n);
	test_assert(cum[0] == 2 && cum[n] == 4);
	node_counters_free(&w1);
	node_counters_free(&w2);
	node_counters_free(&m);
	test_end();
}

int
main(void)
{
	test_shared_counts();
	test_events();
	test_histograms_gauges_processes();
	test_attach_refuses_garbage();
	test_private();
	return test_done();
}
