#ifndef PETREL_DNSQ_H
#define PETREL_DNSQ_H
/*
 * dnsq: synchronous DNS lookups through libunbound, for job threads (the
 * SMTP server's SPF and DKIM checks) and the queue's MX lookups. Every
 * context honours `dns_resolver` (forward to host:port; empty: the
 * system's resolv.conf and hosts file).
 */
#include <stddef.h>

struct ub_ctx;
struct ub_result;

enum dnsq_status {
	DNSQ_OK,	/* records in the result */
	DNSQ_NXDOMAIN,	/* no such name */
	DNSQ_NODATA,	/* the name exists, no record of the type */
	DNSQ_TEMPFAIL,	/* no answer: server failure, timeout, refused */
};

/* A new libunbound context set up for `dns_resolver` (value as in the
 * config: "host:port[, ...]" or empty). NULL with *error_r. */
struct ub_ctx *dnsq_ctx_new(const char *resolver, char **error_r);

/* DNSSEC validation from the trust anchor file at path (DS or DNSKEY
 * records, as dnssec_trust_anchor) on a context from dnsq_ctx_new. The
 * file is read at once (a name libunbound answers itself, localhost, is
 * looked up): -1 with *error_r when it cannot be read or used, and then
 * ub is unusable (delete it). */
int dnsq_ctx_trust_anchor(struct ub_ctx *ub, const char *path,
    char **error_r);

/* The process's shared context for job threads: dnsq_setup records the
 * resolver setting (once, before the first lookup; validated, -1 with
 * *error_r when it does not parse); the context is made at the first
 * lookup. */
int dnsq_setup(const char *resolver, char **error_r);

/* Asynchronous lookups on a context from dnsq_ctx_new: a pump thread
 * takes its answers (started once per context, stopped before the
 * context is deleted and after every lookup on it has returned). NULL
 * with *error_r when the thread cannot start. */
struct dnsq_pump;
struct dnsq_pump *dnsq_pump_start(struct ub_ctx *ub, char **error_r);
void dnsq_pump_stop(struct dnsq_pump **p);
/* As ub_resolve (class IN), through the context's pump: libunbound's
 * error or 0 and *res_r; a lookup that waits longer than a minute is
 * given up (-1). ub_resolve sets up a resolver for each query, which
 * costs milliseconds even for a cached answer. */
int dnsq_resolve(struct ub_ctx *ub, const char *name, int type,
    struct ub_result **res_r);

/* Look name up (type as in RFC 1035: 1 A, 16 TXT, ...) on the shared
 * context. DNSQ_OK with *res_r (free with ub_resolve_free), else no
 * result. Blocks: job threads only. */
enum dnsq_status dnsq_lookup(const char *name, int type,
    struct ub_result **res_r);

#endif
