/*
 * counters.c: connection counts shared by the workers of a node (see
 * counters.h).
 *
 * Layout of the mapping: a header (with the counts of the regions that
 * were released), then per region its 64-bit slots (event counts,
 * histogram buckets and sums, which a released region hands to the
 * header; gauges and the process's identity, which it drops), then per
 * region and per service one total and NODE_COUNTERS_BUCKETS address
 * counts (32-bit), all updated with relaxed atomics (each region has one
 * writer; readers only add).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/log.h"
#include "lib/session/counters.h"
#include "lib/tls/tls.h"

#define COUNTERS_MAGIC 0x70657472636e7433ULL	/* "petrcnt3" */

/* A histogram's slots: its buckets (not cumulative; index n, after the
 * last bound, is +Inf) and the sum in microseconds. */
#define HIST_SLOTS (NODE_HIST_BUCKETS_MAX + 2)
#define HIST_SUM (NODE_HIST_BUCKETS_MAX + 1)
#define SLOT_HIST(h) (NODE_EVENTS + (size_t)(h) * HIST_SLOTS)
/* slots kept when a region is released, then the ones dropped */
#define SLOTS_RETAINED (NODE_EVENTS + NODE_HISTS * HIST_SLOTS)
#define SLOT_GAUGE(g) (SLOTS_RETAINED + (size_t)(g))
#define SLOT_PID (SLOTS_RETAINED + NODE_GAUGES)
#define SLOT_WSLOT (SLOT_PID + 1)
#define SLOT_ROLE (SLOT_PID + 2)
#define REGION_SLOTS (SLOT_PID + 3)

static const double delivery_bounds[] = {
	0.1, 0.5, 1, 5, 30, 60, 300, 900, 1800, 3600, 14400, 86400,
};
static const double directory_bounds[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
	2.5, 5, 10,
};

static struct node_counters *self_nc;

struct counters_header {
	uint64_t magic;
	uint32_t nregions, nservices;
	unsigned char key[32];
	/* counts of processes that ended: written by the master only */
	_Atomic uint64_t retired[SLOTS_RETAINED];
};

struct node_counters {
	struct counters_header *hdr;	/* the mapping */
	size_t len;
	int fd;			/* -1: private memory */
	int region;		/* this process's, -1: the master */
	pid_t *owners;		/* the master: pid per region, 0 free */
};

static size_t
service_words(void)
{
	return 1 + NODE_COUNTERS_BUCKETS;
}

static size_t
mapping_len(unsigned nregions, unsigned nservices)
{
	return sizeof(struct counters_header) +
	    (size_t)nregions * REGION_SLOTS * sizeof(uint64_t) +
	    (size_t)nregions * nservices * service_words() * sizeof(uint32_t);
}

static _Atomic uint64_t *
events(const struct node_counters *nc, unsigned region)
{
	_Atomic uint64_t *base = (_Atomic uint64_t *)(void *)(nc->hdr + 1);

	return base + (size_t)region * REGION_SLOTS;
}

static _Atomic uint32_t *
words(const struct node_counters *nc, unsigned region, unsigned service)
{
	_Atomic uint32_t *base = (_Atomic uint32_t *)(void *)
	    events(nc, nc->hdr->nregions);

	return base + ((size_t)region * nc->hdr->nservices + service) *
	    service_words();
}

static struct node_counters *
map(int fd, size_t len, int region, const char **error_r)
{
	struct node_counters *nc;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED) {
		err_fail(error_r, errno, "connection counters: mmap: %s",
		    strerror(errno));
		return NULL;
	}
	nc = xcalloc(1, sizeof(*nc));
	nc->hdr = p;
	nc->len = len;
	nc->fd = fd;
	nc->region = region;
	return nc;
}

struct node_counters *
node_counters_create(unsigned nregions, unsigned nservices,
    const char **error_r)
{
	struct node_counters *nc;
	size_t len = mapping_len(nregions, nservices);
	int fd = memfd_create("petrel-counters", MFD_CLOEXEC);

	if (fd < 0) {
		err_fail(error_r, errno, "connection counters: memfd: %s",
		    strerror(errno));
		return NULL;
	}
	if (ftruncate(fd, (off_t)len) < 0) {
		err_fail(error_r, errno, "connection counters: %s",
		    strerror(errno));
		close(fd);
		return NULL;
	}
	if ((nc = map(fd, len, -1, error_r)) == NULL) {
		close(fd);
		return NULL;
	}
	nc->hdr->magic = COUNTERS_MAGIC;
	nc->hdr->nregions = nregions;
	nc->hdr->nservices = nservices;
	if (getrandom(nc->hdr->key, sizeof(nc->hdr->key), 0) !=
	    sizeof(nc->hdr->key))
		memset(nc->hdr->key, 0x5a, sizeof(nc->hdr->key));
	nc->owners = xcalloc(nregions, sizeof(*nc->owners));
	return nc;
}

struct node_counters *
node_counters_private(unsigned nservices)
{
	struct node_counters *nc = xcalloc(1, sizeof(*nc));

	nc->len = mapping_len(1, nservices);
	nc->hdr = xcalloc(1, nc->len);
	nc->hdr->magic = COUNTERS_MAGIC;
	nc->hdr->nregions = 1;
	nc->hdr->nservices = nservices;
	if (getrandom(nc->hdr->key, sizeof(nc->hdr->key), 0) !=
	    sizeof(nc->hdr->key))
		memset(nc->hdr->key, 0x5a, sizeof(nc->hdr->key));
	nc->fd = -1;
	nc->region = 0;
	return nc;
}

void
node_counters_free(struct node_counters **ncp)
{
	struct node_counters *nc = *ncp;

	if (nc == NULL)
		return;
	if (nc == self_nc)
		self_nc = NULL;
	if (nc->fd >= 0) {
		munmap(nc->hdr, nc->len);
		close(nc->fd);
	} else {
		free(nc->hdr);
	}
	free(nc->owners);
	free(nc);
	*ncp = NULL;
}

int
node_counters_fd(const struct node_counters *nc)
{
	return nc->fd;
}

int
node_counters_take(struct node_counters *nc)
{
	for (unsigned r = 0; nc->owners != NULL && r < nc->hdr->nregions;
	    r++) {
		if (nc->owners[r] == 0) {
			nc->owners[r] = -1;
			return (int)r;
		}
	}
	return -1;
}

void
node_counters_owner(struct node_counters *nc, int region, pid_t pid)
{
	if (nc->owners != NULL && region >= 0 &&
	    (unsigned)region < nc->hdr->nregions)
		nc->owners[region] = pid;
}

void
node_counters_release(struct node_counters *nc, pid_t pid)
{
	for (unsigned r = 0; nc->owners != NULL && r < nc->hdr->nregions;
	    r++) {
		if (nc->owners[r] != pid)
			continue;
		/* its events stay counted: node-wide counters never go
		 * back when a worker ends; its gauges end with it */
		for (size_t e = 0; e < SLOTS_RETAINED; e++)
			atomic_fetch_add_explicit(&nc->hdr->retired[e],
			    atomic_exchange_explicit(&events(nc, r)[e], 0,
			    memory_order_relaxed), memory_order_relaxed);
		for (size_t e = SLOTS_RETAINED; e < REGION_SLOTS; e++)
			atomic_store_explicit(&events(nc, r)[e], 0,
			    memory_order_relaxed);
		for (unsigned s = 0; s < nc->hdr->nservices; s++) {
			_Atomic uint32_t *w = words(nc, r, s);

			for (size_t i = 0; i < service_words(); i++)
				atomic_store_explicit(&w[i], 0,
				    memory_order_relaxed);
		}
		nc->owners[r] = 0;
	}
}

struct node_counters *
node_counters_attach(int fd, unsigned region, const char **error_r)
{
	struct counters_header h;
	struct node_counters *nc;

	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    h.magic != COUNTERS_MAGIC || region >= h.nregions) {
		err_fail(error_r, ERR_OTHER, "connection counters: not a "
		    "counter mapping (fd %d, region %u)", fd, region);
		return NULL;
	}
	nc = map(fd, mapping_len(h.nregions, h.nservices), (int)region,
	    error_r);
	return nc;
}

unsigned
node_counters_bucket(const struct node_counters *nc, const char *ip)
{
	unsigned char d[32];
	uint32_t v;

	crypto_hmac_sha256(nc->hdr->key, sizeof(nc->hdr->key), ip,
	    strlen(ip), d);
	memcpy(&v, d, sizeof(v));
	return v % NODE_COUNTERS_BUCKETS;
}

unsigned
node_counters_total(const struct node_counters *nc, unsigned service)
{
	unsigned n = 0;

	if (service >= nc->hdr->nservices)
		return 0;
	for (unsigned r = 0; r < nc->hdr->nregions; r++)
		n += atomic_load_explicit(&words(nc, r, service)[0],
		    memory_order_relaxed);
	return n;
}

unsigned
node_counters_address(const struct node_counters *nc, unsigned service,
    unsigned bucket)
{
	unsigned n = 0;

	if (service >= nc->hdr->nservices || bucket >= NODE_COUNTERS_BUCKETS)
		return 0;
	for (unsigned r = 0; r < nc->hdr->nregions; r++)
		n += atomic_load_explicit(&words(nc, r, service)[1 + bucket],
		    memory_order_relaxed);
	return n;
}

void
node_counters_add(struct node_counters *nc, unsigned service,
    unsigned bucket, int delta)
{
	_Atomic uint32_t *w;

	if (nc->region < 0 || service >= nc->hdr->nservices ||
	    bucket >= NODE_COUNTERS_BUCKETS)
		return;
	w = words(nc, (unsigned)nc->region, service);
	atomic_fetch_add_explicit(&w[0], (uint32_t)delta,
	    memory_order_relaxed);
	atomic_fetch_add_explicit(&w[1 + bucket], (uint32_t)delta,
	    memory_order_relaxed);
}

void
node_counters_event(struct node_counters *nc, enum node_event e)
{
	if (nc == NULL || nc->region < 0 || (unsigned)e >= NODE_EVENTS)
		return;
	atomic_fetch_add_explicit(&events(nc, (unsigned)nc->region)[e], 1,
	    memory_order_relaxed);
}

uint64_t
node_counters_events(const struct node_counters *nc, enum node_event e)
{
	uint64_t n;

	if (nc == NULL || (unsigned)e >= NODE_EVENTS)
		return 0;
	n = atomic_load_explicit(&nc->hdr->retired[e], memory_order_relaxed);
	for (unsigned r = 0; r < nc->hdr->nregions; r++)
		n += atomic_load_explicit(&events(nc, r)[e],
		    memory_order_relaxed);
	return n;
}

const double *
node_counters_hist_bounds(enum node_hist h, size_t *n_r)
{
	if (h == NODE_HIST_DELIVERY) {
		*n_r = sizeof(delivery_bounds) / sizeof(delivery_bounds[0]);
		return delivery_bounds;
	}
	*n_r = sizeof(directory_bounds) / sizeof(directory_bounds[0]);
	return directory_bounds;
}

void
node_counters_observe(struct node_counters *nc, enum node_hist h,
    double seconds)
{
	_Atomic uint64_t *slot;
	const double *b;
	size_t n, i;

	if (nc == NULL || nc->region < 0 || (unsigned)h >= NODE_HISTS)
		return;
	if (!(seconds > 0))	/* NaN too */
		seconds = 0;
	b = node_counters_hist_bounds(h, &n);
	for (i = 0; i < n && seconds > b[i]; i++)
		;
	slot = events(nc, (unsigned)nc->region) + SLOT_HIST(h);
	atomic_fetch_add_explicit(&slot[i], 1, memory_order_relaxed);
	if (seconds > 1e9)
		seconds = 1e9;
	atomic_fetch_add_explicit(&slot[HIST_SUM],
	    (uint64_t)(seconds * 1e6 + 0.5), memory_order_relaxed);
}

/* A slot's node-wide value: the released regions' and every region's. */
static uint64_t
slot_sum(const struct node_counters *nc, size_t slot, bool retained)
{
	uint64_t n = 0;

	if (retained)
		n = atomic_load_explicit(&nc->hdr->retired[slot],
		    memory_order_relaxed);
	for (unsigned r = 0; r < nc->hdr->nregions; r++)
		n += atomic_load_explicit(&events(nc, r)[slot],
		    memory_order_relaxed);
	return n;
}

void
node_counters_hist(const struct node_counters *nc, enum node_hist h,
    uint64_t cum[NODE_HIST_BUCKETS_MAX + 1], double *sum_r)
{
	size_t n;
	uint64_t run = 0;

	node_counters_hist_bounds(h, &n);
	*sum_r = 0;
	for (size_t i = 0; i <= n; i++) {
		if (nc != NULL && (unsigned)h < NODE_HISTS)
			run += slot_sum(nc, SLOT_HIST(h) + i, true);
		cum[i] = run;
	}
	if (nc != NULL && (unsigned)h < NODE_HISTS)
		*sum_r = (double)slot_sum(nc, SLOT_HIST(h) + HIST_SUM, true) /
		    1e6;
}

void
node_counters_gauge_set(struct node_counters *nc, enum node_gauge g,
    uint64_t v)
{
	if (nc == NULL || nc->region < 0 || (unsigned)g >= NODE_GAUGES)
		return;
	atomic_store_explicit(&events(nc, (unsigned)nc->region)[SLOT_GAUGE(g)],
	    v, memory_order_relaxed);
}

uint64_t
node_counters_gauge(const struct node_counters *nc, enum node_gauge g)
{
	if (nc == NULL || (unsigned)g >= NODE_GAUGES)
		return 0;
	return slot_sum(nc, SLOT_GAUGE(g), false);
}

void
node_counters_identify(struct node_counters *nc, enum node_role role,
    unsigned slot)
{
	_Atomic uint64_t *r;

	if (nc == NULL || nc->region < 0)
		return;
	r = events(nc, (unsigned)nc->region);
	atomic_store_explicit(&r[SLOT_WSLOT], slot, memory_order_relaxed);
	atomic_store_explicit(&r[SLOT_ROLE], (uint64_t)role,
	    memory_order_relaxed);
	atomic_store_explicit(&r[SLOT_PID], (uint64_t)getpid(),
	    memory_order_relaxed);
}

size_t
node_counters_processes(const struct node_counters *nc,
    struct node_process *out, size_t max)
{
	size_t n = 0;

	for (unsigned r = 0; nc != NULL && r < nc->hdr->nregions && n < max;
	    r++) {
		_Atomic uint64_t *s = events(nc, r);
		uint64_t pid = atomic_load_explicit(&s[SLOT_PID],
		    memory_order_relaxed);
		uint64_t role = atomic_load_explicit(&s[SLOT_ROLE],
		    memory_order_relaxed);

		if (pid == 0 || role == NODE_ROLE_NONE || role > NODE_ROLE_AUTH)
			continue;
		out[n].pid = (pid_t)pid;
		out[n].slot = (unsigned)atomic_load_explicit(&s[SLOT_WSLOT],
		    memory_order_relaxed);
		out[n].role = (enum node_role)role;
		n++;
	}
	return n;
}

struct node_counters *
node_counters_inherit(enum node_role role)
{
	const char *env = getenv("PETREL_COUNTERS"), *err;
	const char *slotenv = getenv("PETREL_WORKER_SLOT");
	struct node_counters *nc;
	unsigned fd, region, slot = 0;
	char end;

	if (env == NULL)
		return NULL;
	if (sscanf(env, "%u:%u%c", &fd, &region, &end) != 2) {
		log_warn("bad PETREL_COUNTERS; counted in this process only");
		return NULL;
	}
	fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	nc = node_counters_attach((int)fd, region, &err);
	if (nc == NULL) {
		log_warn("%s; counted in this process only", err);
		return NULL;
	}
	if (slotenv != NULL && sscanf(slotenv, "%u%c", &slot, &end) != 1)
		slot = 0;
	node_counters_identify(nc, role, slot);
	self_nc = nc;
	return nc;
}

struct node_counters *
node_counters_self(void)
{
	return self_nc;
}
