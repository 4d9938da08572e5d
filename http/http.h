#ifndef PETREL_HTTP_H
#define PETREL_HTTP_H
/* The HTTP listeners (http_listen, https_listen) of one worker process: /metrics in
 * Prometheus's text format, Thunderbird autoconfig, Microsoft
 * Autodiscover, Apple configuration profiles and the MTA-STS policy; one
 * request per connection. */
#include "lib/session/session.h"

struct config;
struct event_base;
struct jobs;
struct node_counters;
struct tls_server;

struct http_server {
	struct session_server sv;	/* sessions, limits, timeouts */
	const char *queue_dir;
	/* the node's counts (NULL: none) and the names of its services */
	struct node_counters *nc;
	const char *const *service_names;
	unsigned nservices;
	/* the first port of each client listener, 0: none */
	unsigned imap, imaps, pop3, pop3s, submission, submissions;
	const char *sts_mode;
	const char *delimiter;		/* recipient_delimiter */
	unsigned long long sts_max_age;
};

/* tls: the worker's certificates for https_listen (NULL: TLS unavailable,
 * connections there are closed). */
void http_server_init(struct http_server *srv, struct event_base *base,
    struct jobs *jobs, const struct config *cfg, struct tls_server *tls);
/* The node's counts for /metrics: names[i] is service i in nc. */
void http_server_metrics(struct http_server *srv, struct node_counters *nc,
    const char *const *names, unsigned n);
void http_server_deinit(struct http_server *srv);

#endif
