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
#include "lib/session/session.h"

struct config;
struct event_base;
struct jobs;
struct milter_spec;
struct smtp_dnsbl_conf;
struct sockaddr;
struct tls_server;

struct smtp_server {
	struct session_server sv;	/* sessions, limits, TLS, jobs */
	const struct config *cfg;
	const char *hostname;		/* sv.hostname */
	char *queue_dir;
	char *spool_dir;	/* queue_dir/tmp: spilled bodies */
	const char *dkim_dir;
	struct deliver_ctx deliver;	/* queue_dir, dkim_dir for lib/deliver */
	struct deliver_sieve sieve;	/* Sieve at delivery (lib/deliver) */
	struct deliver_cut *cut;	/* lmtp_cut_through (NULL: no) */
	char *srs_secret;		/* srs_secret, loaded ("": off) */
	char *xmove_secret;	/* proxy_secret for XMOVE (xmove.c); NULL or
				 * "": XMOVE refused */
	struct route_config rc;
	uint64_t size_limit;
	unsigned data_timeout;	/* smtp_data_timeout, seconds; 0 = none */
	bool helo_required;	/* smtp_helo_required */
	bool strict_envelopes;	/* smtp_strict_envelopes */
	struct milter_spec *milters;	/* milters (lib/milter) */
	size_t nmilters;
	bool milter_accept;	/* milter_default_action = accept */
	unsigned milter_timeout;	/* milter_timeout, seconds */
	enum { SMTP_SPF_MARK, SMTP_SPF_REJECT, SMTP_SPF_IGNORE } spf_policy;
	bool dkim_verify;	/* dkim_verify = yes */
	bool arc_verify;	/* arc = verify or seal */
	enum { SMTP_DMARC_MARK, SMTP_DMARC_ENFORCE, SMTP_DMARC_IGNORE }
	    dmarc_policy;
	/* domain_policy_file (trust.c): NULL when none. spf_at_rcpt: a
	 * line sets spf_policy, so SPF refusals come at RCPT; spf_any,
	 * dmarc_any: some domain gets the check; dmarc_split: a line sets
	 * dmarc_policy, so one transaction holds one DMARC policy */
	struct domain_policies *policies;
	bool spf_at_rcpt, spf_any, dmarc_any, dmarc_split;
	struct smtp_dnsbl_conf *dnsbl;	/* dnsbl_sites, greylist (dnsbl.c) */
	char *dmarc_report_db;	/* dmarc_reports = yes: queue_dir/state.db
				 * (rows of DMARC aggregate reports); NULL:
				 * off */
	bool dmarc_failure;	/* dmarc_failure_reports = yes */
};

void smtp_server_init(struct smtp_server *srv, struct event_base *base,
    struct jobs *jobs, const struct config *cfg, struct tls_server *tls);
void smtp_server_deinit(struct smtp_server *srv);

#endif
