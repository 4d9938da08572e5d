/*
 * dnsq.c: libunbound contexts honouring `dns_resolver`, and synchronous
 * lookups on one shared context from the job threads.
 *
 * The shared context runs in libunbound's asynchronous mode: a query is
 * handed to its resolver thread (ub_resolve_async) and the asking thread
 * waits for the answer, which a pump thread of ours takes from the
 * context (ub_process) and hands over. ub_resolve, the synchronous call,
 * sets up a resolver of its own for every query (some 5 ms here even
 * when the answer is in the cache, against 0.1 ms this way), and an SMTP
 * message with SPF, DKIM and DMARC needs three or more.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <unbound.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/config/config.h"
#include "lib/trust/dnsq.h"

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static char *shared_resolver;	/* dnsq_setup's value */
static struct ub_ctx *shared_ctx;
static int shared_failed;	/* the context could not be made */

/* Bound on one wait: libunbound ends every query itself (its own
 * timeouts, one retry), so this only guards against a lost answer. */
#define DNSQ_WAIT_MAX 60

/* One query in flight: the asking thread waits on it. A wait that gives
 * up leaves it to the callback to free (abandoned). */
struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done, abandoned, err;
	struct ub_result *res;
};

static void
waiter_free(struct waiter *w)
{
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
}

/* On the pump thread, from ub_process. */
static void
lookup_done(void *arg, int err, struct ub_result *res)
{
	struct waiter *w = arg;

	pthread_mutex_lock(&w->lock);
	if (w->abandoned) {
		pthread_mutex_unlock(&w->lock);
		if (res != NULL)
			ub_resolve_free(res);
		waiter_free(w);
		return;
	}
	w->err = err;
	w->res = res;
	w->done = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* A context's pump: a thread that takes answers from it (ub_process,
 * which runs lookup_done) until told to stop through its pipe. */
struct dnsq_pump {
	struct ub_ctx *ub;
	pthread_t thread;
	int stop[2];
};

static void *
pump(void *arg)
{
	struct dnsq_pump *p = arg;
	struct pollfd pfd[2] = {
		{ .fd = ub_fd(p->ub), .events = POLLIN },
		{ .fd = p->stop[0], .events = POLLIN },
	};

	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error_errno("DNS lookups: poll");
			sleep(1);
			continue;
		}
		if (pfd[1].revents != 0)
			break;
		if ((pfd[0].revents & POLLIN) && ub_process(p->ub) != 0) {
			log_error("DNS lookups: ub_process failed");
			sleep(1);
		}
	}
	return NULL;
}

struct dnsq_pump *
dnsq_pump_start(struct ub_ctx *ub, char **error_r)
{
	struct dnsq_pump *p = xcalloc(1, sizeof(*p));
	int r;

	p->ub = ub;
	if (pipe2(p->stop, O_CLOEXEC) < 0) {
		*error_r = xasprintf("cannot start the DNS thread: %s",
		    strerror(errno));
		free(p);
		return NULL;
	}
	if ((r = pthread_create(&p->thread, NULL, pump, p)) != 0) {
		*error_r = xasprintf("cannot start the DNS thread: %s",
		    strerror(r));
		close(p->stop[0]);
		close(p->stop[1]);
		free(p);
		return NULL;
	}
	return p;
}

void
dnsq_pump_stop(struct dnsq_pump **pp)
{
	struct dnsq_pump *p = *pp;

	if (p == NULL)
		return;
	*pp = NULL;
	(void)!write(p->stop[1], "x", 1);
	pthread_join(p->thread, NULL);
	close(p->stop[0]);
	close(p->stop[1]);
	free(p);
}

struct ub_ctx *
dnsq_ctx_new(const char *resolver, char **error_r)
{
	struct ub_ctx *ub = ub_ctx_create();
	struct config_listen *l = NULL;
	size_t n = 0;
	char *cerr = NULL;

	if (ub == NULL) {
		*error_r = xstrdup("cannot create a libunbound context");
		return NULL;
	}
	/* asynchronous lookups (dnsq_resolve) resolve on a thread, not in
	 * a forked process; ub_resolve is not affected */
	(void)ub_ctx_async(ub, 1);
	ub_ctx_hosts(ub, NULL);
	if (resolver == NULL || resolver[0] == '\0') {
		ub_ctx_resolvconf(ub, NULL);
		return ub;
	}
	/* dns_resolver = host:port, ...: every query is forwarded there
	 * (libunbound says ip@port) */
	if (config_parse_listen(resolver, &l, &n, &cerr) < 0) {
		*error_r = xasprintf("dns_resolver: %s", cerr);
		free(cerr);
		ub_ctx_delete(ub);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		char *spec = xasprintf("%s@%u", l[i].host, l[i].port);
		int r = ub_ctx_set_fwd(ub, spec);

		if (r != 0) {
			*error_r = xasprintf("dns_resolver %s: %s (an IP "
			    "address and port)", spec, ub_strerror(r));
			free(spec);
			config_listen_free(&l, n);
			ub_ctx_delete(ub);
			return NULL;
		}
		free(spec);
	}
	config_listen_free(&l, n);
	return ub;
}

int
dnsq_ctx_trust_anchor(struct ub_ctx *ub, const char *path, char **error_r)
{
	struct ub_result *res = NULL;
	int r;

	if (path == NULL || path[0] == '\0' || access(path, R_OK) != 0) {
		*error_r = xasprintf("cannot read the trust anchor file %s",
		    path != NULL && path[0] ? path : "(none)");
		return -1;
	}
	if ((r = ub_ctx_add_ta_file(ub, path)) != 0) {
		*error_r = xasprintf("trust anchor %s: %s", path,
		    ub_strerror(r));
		return -1;
	}
	/* libunbound reads the file when the context is first used: a
	 * name from its own local zones costs no query */
	r = ub_resolve(ub, "localhost.", 1 /* A */, 1, &res);
	if (res != NULL)
		ub_resolve_free(res);
	if (r != 0) {
		*error_r = xasprintf("trust anchor %s: %s (DS or DNSKEY "
		    "records expected)", path, ub_strerror(r));
		return -1;
	}
	return 0;
}

int
dnsq_setup(const char *resolver, char **error_r)
{
	struct ub_ctx *probe = dnsq_ctx_new(resolver, error_r);

	if (probe == NULL)
		return -1;
	ub_ctx_delete(probe);
	pthread_mutex_lock(&shared_lock);
	free(shared_resolver);
	shared_resolver = xstrdup(resolver ? resolver : "");
	pthread_mutex_unlock(&shared_lock);
	return 0;
}

static struct ub_ctx *
shared_get(void)
{
	struct ub_ctx *ub;

	pthread_mutex_lock(&shared_lock);
	if (shared_ctx == NULL && !shared_failed) {
		char *err = NULL;

		shared_ctx = dnsq_ctx_new(shared_resolver, &err);
		/* A client waits for these answers: a server that does not
		 * answer is asked again once, not five times with growing
		 * waits (about a second instead of twenty). */
		if (shared_ctx != NULL) {
			ub_ctx_set_option(shared_ctx, "outbound-msg-retry:",
			    "1");
			if (dnsq_pump_start(shared_ctx, &err) == NULL) {
				/* the pump never started: no callback can
				 * come, so the context can go */
				ub_ctx_delete(shared_ctx);
				shared_ctx = NULL;
			}
		}
		if (shared_ctx == NULL) {
			log_error("DNS lookups unavailable: %s", err);
			free(err);
			shared_failed = 1;
		}
	}
	ub = shared_ctx;
	pthread_mutex_unlock(&shared_lock);
	return ub;
}

int
dnsq_resolve(struct ub_ctx *ub, const char *name, int type,
    struct ub_result **res_r)
{
	struct waiter *w = xcalloc(1, sizeof(*w));
	struct timespec until;
	int r, id;

	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	r = ub_resolve_async(ub, name, type, 1 /* IN */, w, lookup_done, &id);
	if (r != 0) {
		waiter_free(w);
		return r;
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += DNSQ_WAIT_MAX;
	pthread_mutex_lock(&w->lock);
	while (!w->done) {
		if (pthread_cond_timedwait(&w->cond, &w->lock, &until) ==
		    ETIMEDOUT && !w->done) {
			/* the callback frees it when it comes */
			w->abandoned = 1;
			pthread_mutex_unlock(&w->lock);
			log_warn("DNS lookup of %s: no answer in %d s", name,
			    DNSQ_WAIT_MAX);
			return -1;
		}
	}
	pthread_mutex_unlock(&w->lock);
	r = w->err;
	*res_r = w->res;
	waiter_free(w);
	return r;
}

enum dnsq_status
dnsq_lookup(const char *name, int type, struct ub_result **res_r)
{
	struct ub_ctx *ub = shared_get();
	struct ub_result *res = NULL;

	*res_r = NULL;
	if (ub == NULL || name == NULL || name[0] == '\0' ||
	    strlen(name) > 253)
		return ub == NULL ? DNSQ_TEMPFAIL : DNSQ_NXDOMAIN;
	if (dnsq_resolve(ub, name, type, &res) != 0 || res == NULL)
		return DNSQ_TEMPFAIL;
	if (res->rcode == 3 /* NXDOMAIN */ || res->nxdomain) {
		ub_resolve_free(res);
		return DNSQ_NXDOMAIN;
	}
	if (res->rcode != 0) {
		ub_resolve_free(res);
		return DNSQ_TEMPFAIL;
	}
	if (!res->havedata) {
		ub_resolve_free(res);
		return DNSQ_NODATA;
	}
	*res_r = res;
	return DNSQ_OK;
}
