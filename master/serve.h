#ifndef PETREL_MASTER_SERVE_H
#define PETREL_MASTER_SERVE_H
/*
 * serve.h: what the master (master.c) and a worker (worker.c) share,
 * private to master/.
 */
#include <stddef.h>

struct petrel_ctx;

#define MAX_LISTENERS 64

/* The services workers run: a listener key of the configuration and
 * the service name that PETREL_WORKER_FDS gives its sockets. */
struct service {
	const char *key;
	const char *name;
};

extern const struct service serve_services[];
extern const size_t serve_nservices;

/* The worker process: serve the listening sockets of fdlist
 * ("service=fd,...") until told to stop; returns the exit status. */
int worker_run(struct petrel_ctx *ctx, const char *fdlist);
/* The auth/directory process (authd.c): serves the auth channel on the
 * socket in PETREL_AUTH_FD until killed. */
int authd_run(struct petrel_ctx *ctx);

#endif
