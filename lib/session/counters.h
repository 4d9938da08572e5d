#ifndef PETREL_COUNTERS_H
#define PETREL_COUNTERS_H
/*
 * Connection counts of a whole node, shared by its workers, so that
 * X_max_connections and X_max_connections_per_ip hold for the node and
 * not per worker (which worker accepts is up to the kernel).
 *
 * The master makes one shared mapping (a memfd) before it starts the
 * workers. Each worker process owns a region of it and only ever writes
 * its own region; a count is the sum over the regions. When a worker
 * ends (crash included) the master zeroes its region, so the sessions of
 * a dead worker stop counting at once. Addresses are counted in buckets
 * of a keyed hash (the key is random per node): two addresses that share
 * a bucket share a limit, which can only make it stricter, and no client
 * can choose its bucket. Two workers accepting at the same instant may
 * let a count pass its limit by one each.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define NODE_COUNTERS_BUCKETS 8192

/* Events counted for the whole node since the master started (the
 * counts of a worker that ended are kept): /metrics shows them. */
enum node_event {
	NODE_EVENT_LOGIN_OK,
	NODE_EVENT_LOGIN_FAILED,	/* wrong password or locked out */
	NODE_EVENT_MESSAGE_RECEIVED,	/* 250 after DATA/BDAT */
	NODE_EVENT_HTTP_REQUEST,	/* answered on http_listen */
	/* one per recipient, where the log says status=sent, deferred or
	 * bounced (a local copy made; the queue manager's outcomes) */
	NODE_EVENT_DELIVERED,
	NODE_EVENT_DEFERRED,
	NODE_EVENT_BOUNCED,
	NODE_EVENTS
};

/* Histograms of durations (seconds), kept like the events: fixed
 * buckets, each process counting in its own region. */
enum node_hist {
	NODE_HIST_DELIVERY,	/* arrival to status=sent */
	NODE_HIST_DIRECTORY,	/* one directory query (the auth process) */
	NODE_HISTS
};
#define NODE_HIST_BUCKETS_MAX 16

/* Gauges each process sets in its own region (zeroed when it ends); the
 * node's value is the sum. */
enum node_gauge {
	NODE_GAUGE_JOBS_WAITING,	/* protocol workers' job pool */
	NODE_GAUGE_DIR_JOBS_WAITING,	/* their directory job pool */
	NODE_GAUGE_QUEUE_JOBS_WAITING,	/* the queue manager's job pool */
	NODE_GAUGES
};

/* What a region's process is (node_counters_identify). */
enum node_role {
	NODE_ROLE_NONE,
	NODE_ROLE_WORKER,	/* a protocol worker */
	NODE_ROLE_QUEUE,
	NODE_ROLE_AUTH,
};

struct node_process {
	pid_t pid;
	unsigned slot;		/* the master's slot (PETREL_WORKER_SLOT) */
	enum node_role role;
};

struct node_counters;

/* The master: a new shared mapping for nregions worker processes and
 * nservices listeners (services). NULL with *error_r on failure. */
struct node_counters *node_counters_create(unsigned nregions,
    unsigned nservices, const char **error_r);
/* One process's private counts (no master: tests, a lone process). */
struct node_counters *node_counters_private(unsigned nservices);
void node_counters_free(struct node_counters **nc);
/* The mapping's descriptor, for the workers to inherit. */
int node_counters_fd(const struct node_counters *nc);
/* The master: reserve a free region for a worker about to start (-1:
 * none left; the worker then counts alone), name its process once
 * forked, and release it once the process has ended (its counts are
 * zeroed). A reservation whose fork failed is released with pid -1. */
int node_counters_take(struct node_counters *nc);
void node_counters_owner(struct node_counters *nc, int region, pid_t pid);
void node_counters_release(struct node_counters *nc, pid_t pid);

/* A worker: map the inherited descriptor and write to region. */
struct node_counters *node_counters_attach(int fd, unsigned region,
    const char **error_r);

/* The bucket of an address (a keyed hash of its text). */
unsigned node_counters_bucket(const struct node_counters *nc,
    const char *ip);
/* Sessions open on the node for a service, and from one bucket. */
unsigned node_counters_total(const struct node_counters *nc,
    unsigned service);
unsigned node_counters_address(const struct node_counters *nc,
    unsigned service, unsigned bucket);
/* This process opened (+1) or closed (-1) a session. */
void node_counters_add(struct node_counters *nc, unsigned service,
    unsigned bucket, int delta);
/* This process saw one event (nothing for NULL), and the node's total. */
void node_counters_event(struct node_counters *nc, enum node_event e);
uint64_t node_counters_events(const struct node_counters *nc,
    enum node_event e);

/* The bucket bounds of a histogram (seconds, ascending; +Inf follows). */
const double *node_counters_hist_bounds(enum node_hist h, size_t *n_r);
/* This process observed one duration (nothing for NULL). */
void node_counters_observe(struct node_counters *nc, enum node_hist h,
    double seconds);
/* The node's histogram: cum[i] the count at most bound i, cum[n] all
 * (n from node_counters_hist_bounds), *sum_r the sum in seconds. */
void node_counters_hist(const struct node_counters *nc, enum node_hist h,
    uint64_t cum[NODE_HIST_BUCKETS_MAX + 1], double *sum_r);

/* This process's gauge (nothing for NULL), and the node's sum. */
void node_counters_gauge_set(struct node_counters *nc, enum node_gauge g,
    uint64_t v);
uint64_t node_counters_gauge(const struct node_counters *nc,
    enum node_gauge g);

/* A process names itself in its region (its pid, slot and role), and
 * the processes of the node that did so (at most max). */
void node_counters_identify(struct node_counters *nc, enum node_role role,
    unsigned slot);
size_t node_counters_processes(const struct node_counters *nc,
    struct node_process *out, size_t max);

/* A process started by the master: the mapping named by PETREL_COUNTERS
 * ("fd:region"), identified as role in PETREL_WORKER_SLOT and made the
 * process's own (node_counters_self); NULL when there is none (a
 * warning when it is unusable). */
struct node_counters *node_counters_inherit(enum node_role role);
/* The process's counts for code that has no listener at hand (delivery,
 * the queue manager, the directory): NULL when it has none. */
struct node_counters *node_counters_self(void);

#endif
