/*
 * counters.c: connection counts shared by the workers of a node (see
 * counters.h).
 *
 * Layout of the mapping: a header (with the events of the regions that
 * were released), then per region its event counts (64-bit), then per
 * region and per service one total and NODE_COUNTERS_BUCKETS address
 * counts (32-bit), all updated with relaxed atomics (each region has one
 * writer; readers only add).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/session/counters.h"
#include "lib/tls/tls.h"

#define COUNTERS_MAGIC 0x70657472636e7432ULL	/* "petrcnt2" */

struct counters_header {
	uint64_t magic;
	uint32_t nregions, nservices;
	unsigned char key[32];
	/* events of processes that ended: written by the master only */
	_Atomic uint64_t retired[NODE_EVENTS];
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
	    (size_t)nregions * NODE_EVENTS * sizeof(uint64_t) +
	    (size_t)nregions * nservices * service_words() * sizeof(uint32_t);
}

static _Atomic uint64_t *
events(const struct node_counters *nc, unsigned region)
{
	_Atomic uint64_t *base = (_Atomic uint64_t *)(void *)(nc->hdr + 1);

	return base + (size_t)region * NODE_EVENTS;
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
		 * back when a worker ends */
		for (unsigned e = 0; e < NODE_EVENTS; e++)
			atomic_fetch_add_explicit(&nc->hdr->retired[e],
			    atomic_exchange_explicit(&events(nc, r)[e], 0,
			    memory_order_relaxed), memory_order_relaxed);
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
