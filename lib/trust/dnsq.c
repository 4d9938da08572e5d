/*
 * dnsq.c: libunbound contexts honouring `dns_resolver`, and synchronous
 * lookups on one shared context from the job threads (libunbound
 * contexts are thread-safe; each ub_resolve runs its own query).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
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
		if (shared_ctx != NULL)
			ub_ctx_set_option(shared_ctx, "outbound-msg-retry:",
			    "1");
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

enum dnsq_status
dnsq_lookup(const char *name, int type, struct ub_result **res_r)
{
	struct ub_ctx *ub = shared_get();
	struct ub_result *res = NULL;

	*res_r = NULL;
	if (ub == NULL || name == NULL || name[0] == '\0' ||
	    strlen(name) > 253)
		return ub == NULL ? DNSQ_TEMPFAIL : DNSQ_NXDOMAIN;
	if (ub_resolve(ub, name, type, 1 /* IN */, &res) != 0 || res == NULL)
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
