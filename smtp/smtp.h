#ifndef PETREL_SMTP_H
#define PETREL_SMTP_H
/*
 * The SMTP server (RFC 5321) for one worker process: sessions on the
 * worker's libevent loop, directory lookups and delivery on its job
 * threads.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/deliver/deliver.h"
#include "lib/route/route.h"

struct config;
struct event_base;
struct jobs;
struct sockaddr;
struct tls_server;

struct smtp_ipcount {
	char ip[64];
	unsigned count;
	struct smtp_ipcount *next;
};

struct smtp_server {
	struct event_base *base;
	struct jobs *jobs;		/* the disk: delivery, mailbox work */
	struct jobs *dir_jobs;		/* directory queries */
	const struct config *cfg;
	char *hostname;
	char *queue_dir;
	char *spool_dir;	/* queue_dir/tmp: spilled bodies */
	const char *dkim_dir;
	struct deliver_ctx deliver;	/* queue_dir, dkim_dir for lib/deliver */
	struct route_config rc;
	uint64_t size_limit;
	unsigned max_conn, max_conn_per_ip;
	unsigned timeout;	/* seconds per command / DATA read */
	unsigned nsessions;
	struct smtp_ipcount *ips;
	struct smtp_session *sessions;	/* all live sessions */
	bool draining;
	struct tls_server *tls;		/* NULL: no STARTTLS / implicit TLS */
	unsigned fail_delay_ms;
};

void smtp_server_init(struct smtp_server *srv, struct event_base *base,
    struct jobs *jobs, const struct config *cfg, unsigned nworkers,
    struct tls_server *tls);
void smtp_server_deinit(struct smtp_server *srv);
/* A new connection (fd is non-blocking). */
void smtp_session_accept(struct smtp_server *srv, int fd,
    const struct sockaddr *sa, int salen, bool submission,
    bool implicit_tls);
/* Stop: idle sessions get 421 and close; busy ones close when done.
 * Returns the number of sessions still open. */
unsigned smtp_server_drain(struct smtp_server *srv);

#endif
