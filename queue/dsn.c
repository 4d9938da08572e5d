/*
 * dsn.c: delivery status notifications (RFC 3464 multipart/report, RFC
 * 6522) for recipients that finally failed. A bounce goes back to the
 * envelope sender with the null sender, through the same routing as any
 * message and through the one delivery path, lib/deliver (a local sender
 * gets it in its maildir, quota counted, a remote one through the
 * queue). There is never a bounce to the null sender (RFC 5321 4.5.5):
 * that would loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/deliver/deliver.h"
#include "lib/authd/client.h"
#include "lib/dir/dir.h"
#include "lib/queue/queue.h"
#include "lib/queue/spool.h"
#include "lib/route/route.h"
#include "lib/trust/srs.h"
#include "queue/manager.h"

#define DSN_HEADERS_MAX (64 * 1024)	/* original headers quoted */

static void
rfc5322_date(char *buf, size_t len, time_t t)
{
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

/* The original message's header section (LF line ends), bounded. */
static void
original_headers(const struct queue_msg *m, str_t *out)
{
	FILE *fp = fopen(m->path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (fp == NULL)
		return;
	fseek(fp, m->body_offset, SEEK_SET);
	while ((n = getline(&line, &cap, fp)) > 0 &&
	    out->len < DSN_HEADERS_MAX) {
		if (line[0] == '\n')
			break;
		str_append_n(out, line, (size_t)n);
	}
	free(line);
	fclose(fp);
}

static void
build_dsn(const struct queue_msg *m, const bool *which, const char *hostname,
    str_t *msg)
{
	char date[64], boundary[64];
	time_t now = time(NULL);
	char qid[17];

	queue_id_new(qid);
	snprintf(boundary, sizeof(boundary), "%s/%s", qid, hostname);
	rfc5322_date(date, sizeof(date), now);
	str_printf(msg,
	    "From: Mail Delivery System <MAILER-DAEMON@%s>\n"
	    "To: <%s>\n"
	    "Subject: Undelivered Mail Returned to Sender\n"
	    "Date: %s\n"
	    "Message-ID: <%s@%s>\n"
	    "Auto-Submitted: auto-replied\n"
	    "MIME-Version: 1.0\n"
	    "Content-Type: multipart/report; report-type=delivery-status;\n"
	    "\tboundary=\"%s\"\n"
	    "\n"
	    "This is a MIME-encapsulated message.\n"
	    "\n"
	    "--%s\n"
	    "Content-Type: text/plain; charset=us-ascii\n"
	    "\n"
	    "This is the mail system at host %s.\n"
	    "\n"
	    "I'm sorry to have to inform you that your message could not\n"
	    "be delivered to one or more recipients.\n"
	    "\n", hostname, m->sender, date, qid, hostname, boundary,
	    boundary, hostname);
	for (size_t i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].status == QR_BOUNCED &&
		    (which == NULL || which[i]))
			str_printf(msg, "<%s>: %s\n", m->rcpts[i].address,
			    m->rcpts[i].last);
	rfc5322_date(date, sizeof(date), (time_t)m->arrival);
	str_printf(msg, "\n--%s\n"
	    "Content-Type: message/delivery-status\n"
	    "\n"
	    "Reporting-MTA: dns; %s\n"
	    "X-Petrel-Queue-ID: %s\n"
	    "Arrival-Date: %s\n", boundary, hostname, m->id, date);
	for (size_t i = 0; i < m->nrcpts; i++) {
		const struct queue_entry *e = &m->rcpts[i];
		const char *status = "5.0.0";
		char code[16];

		if (e->status != QR_BOUNCED || (which != NULL && !which[i]))
			continue;
		/* The enhanced status code from the reply, if it has one:
		 * "550 5.1.1 ..." */
		if (strlen(e->last) > 9 && e->last[3] == ' ' &&
		    (e->last[4] == '5' || e->last[4] == '4') &&
		    e->last[5] == '.' &&
		    sscanf(e->last + 4, "%15[0-9.]", code) == 1)
			status = code;
		if (status[0] == '4')
			status = "4.4.7";	/* expired while deferred */
		str_printf(msg, "\nFinal-Recipient: rfc822; %s\n"
		    "Action: failed\n"
		    "Status: %s\n", e->address, status);
		if (e->last[0] >= '2' && e->last[0] <= '5' &&
		    e->last[1] >= '0' && e->last[1] <= '9')
			str_printf(msg, "Diagnostic-Code: smtp; %s\n", e->last);
		else if (e->last[0] != '\0')
			str_printf(msg, "Diagnostic-Code: X-Petrel; %s\n",
			    e->last);
	}
	str_printf(msg, "\n--%s\n"
	    "Content-Type: text/rfc822-headers\n"
	    "\n", boundary);
	original_headers(m, msg);
	str_printf(msg, "\n--%s--\n", boundary);
}

/* A forward that failed went out with an SRS sender of ours (srs_secret,
 * lib/trust/srs): its bounce goes to the address that stands behind it.
 * malloc'd, or NULL when sender is no SRS address of srs_domain. */
static char *
srs_bounce_to(const struct config *cfg, const char *sender,
    const char *hostname)
{
	const char *d = config_get(cfg, "srs_domain"), *at, *err;
	char *secret, *local, *res;

	if (config_get(cfg, "srs_secret")[0] == '\0')
		return NULL;
	if (d[0] == '\0')
		d = hostname;
	at = strrchr(sender, '@');
	if (at == NULL || strcasecmp(at + 1, d) != 0)
		return NULL;
	local = xstrndup(sender, (size_t)(at - sender));
	if (!srs_is_srs(local) || (secret = srs_secret_load(config_get(cfg,
	    "srs_secret"), &err)) == NULL) {
		free(local);
		return NULL;
	}
	res = srs_reverse(secret, local, time(NULL), &err);
	if (res == NULL)
		log_warn("bounce to <%s>: %s", sender, err);
	free(secret);
	free(local);
	return res;
}

int
dsn_bounce(struct authc *ac, const struct config *cfg,
    const struct queue_msg *m, const bool *which, const char *hostname)
{
	const char *queue_dir = config_get(cfg, "queue_dir");
	struct route_result r;
	struct deliver_ctx ctx;
	struct deliver_sieve sv;
	struct deliver_rcpt rcpt;
	struct deliver_msg dm;
	struct deliver_result res;
	struct spool sp;
	str_t msg = STR_INIT;
	const char *err;
	char qid[17], *tmpdir;
	bool any = false;
	int ret = 0;
	char *srs_to;
	const char *to;

	for (size_t i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].status == QR_BOUNCED && (which == NULL || which[i]))
			any = true;
	if (!any)
		return 0;
	if (m->sender[0] == '\0') {
		log_info("%s: bounce discarded: null sender", m->id);
		return 0;
	}
	build_dsn(m, which, hostname, &msg);
	srs_to = srs_bounce_to(cfg, m->sender, hostname);
	to = srs_to != NULL ? srs_to : m->sender;
	authc_route(ac, to, true, &r);
	if (r.status == ROUTE_TEMPFAIL) {
		route_result_clear(&r);
		str_free(&msg);
		free(srs_to);
		return -1;
	}
	if (r.status != ROUTE_OK) {
		log_warn("%s: bounce to <%s> undeliverable: %s", m->id,
		    to, route_status_name(r.status));
		route_result_clear(&r);
		str_free(&msg);
		free(srs_to);
		return 0;
	}
	/* Through the one delivery path: a local sender gets a maildir copy
	 * (its maildirsize updated), a remote one a queue file; the body is
	 * spooled to the queue's own tmp/ if it ever spills. */
	queue_id_new(qid);
	tmpdir = xasprintf("%s/tmp", queue_dir);
	spool_init(&sp, tmpdir);
	if (spool_append(&sp, msg.data, msg.len, &err) < 0) {
		log_error("%s: bounce: %s", m->id, err);
		ret = -1;
	} else {
		rcpt.address = to;
		rcpt.route = &r;
		memset(&dm, 0, sizeof(dm));
		dm.qid = qid;
		dm.sender = "";
		dm.rcpts = &rcpt;
		dm.nrcpts = 1;
		dm.prefix = NULL;
		dm.body = &sp;
		dm.dkim_sign = false;
		dm.arrival_ms = 0;
		dm.authc = ac;	/* a local sender's Sieve scripts run */
		memset(&ctx, 0, sizeof(ctx));
		ctx.queue_dir = queue_dir;
		ctx.dkim_dir = NULL;
		ctx.mail_root = config_get(cfg, "mail_root");
		deliver_sieve_init(&sv, cfg, hostname);
		ctx.sieve = &sv;
		if (deliver_message(&ctx, &dm, &res, &err) < 0) {
			log_error("%s: bounce delivery to <%s>: %s", m->id,
			    to, err);
			ret = -1;
		} else {
			log_info("%s: sender non-delivery notification: %s",
			    m->id, qid);
		}
	}
	spool_reset(&sp);
	free(tmpdir);
	route_result_clear(&r);
	str_free(&msg);
	free(srs_to);
	return ret;
}
