#ifndef PETREL_MANAGESIEVE_H
#define PETREL_MANAGESIEVE_H
/* The ManageSieve server (RFC 5804) for one worker process: users list,
 * upload, check, activate, fetch, rename and delete their Sieve scripts
 * in the store delivery reads (lib/sieve/store.c). */
#include "lib/session/session.h"

struct config;
struct event_base;
struct jobs;
struct tls_server;

struct msieve_server {
	struct session_server sv;	/* sessions, limits, TLS, jobs */
	const char *mail_root;
	const char *sieve_dir;		/* the pattern (%h, ...) */
	unsigned max_scripts;		/* sieve_max_scripts */
	uint64_t max_storage;		/* sieve_max_storage */
	unsigned max_redirects;		/* sieve_max_redirects */
};

void msieve_server_init(struct msieve_server *srv, struct event_base *base,
    struct jobs *jobs, const struct config *cfg, struct tls_server *tls);
void msieve_server_deinit(struct msieve_server *srv);

#endif
