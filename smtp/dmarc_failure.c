/*
 * dmarc_failure.c: DMARC failure reports (RFC 7489 7.3) of messages
 * received by SMTP, `dmarc_failure_reports = yes`, in the Authentication
 * Failure Reporting Format (RFC 6591, an extension of ARF, RFC 5965):
 * multipart/report; report-type=feedback-report with a short human part,
 * the message/feedback-report part and the original header section only
 * (text/rfc822-headers: no body, so no more of a message than its
 * headers leaves the host).
 *
 * When: at the end of the data (trust.c, on the job thread) a message
 * whose policy record has ruf= and whose results match the record's fo=
 * (dmarc_failure_fo) is copied into a task and handed to this process's
 * report thread; the SMTP reply never waits for what follows. The thread:
 *   1. the rate limit: at most one report per (reported domain, source
 *      IP) per hour, kept in the state database (queue_dir/state.db,
 *      table dmarc_failure), so that it holds across the SMTP worker
 *      processes and restarts; a database that cannot be used sends
 *      nothing (a flood of reports is worse than a missing one);
 *   2. the ruf= addresses (mailto: only, at most RUF_MAX): one of another
 *      organizational domain only when it publishes
 *      POLICY._report._dmarc.ITS-DOMAIN (7.1), looked up here;
 *   3. one report per address, cut to its size limit (!10k: the header
 *      part loses its last fields; a report that cannot fit is not
 *      sent), routed through the auth process and put through the one
 *      delivery path (lib/deliver: a local mailbox, or the queue),
 *      DKIM-signed when the domain of dmarc_report_from has a key.
 * At most PENDING_MAX tasks wait; more are dropped (logged), and those
 * still waiting when the process ends are not sent.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/authd/client.h"
#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/deliver/deliver.h"
#include "lib/queue/queue.h"
#include "lib/queue/spool.h"
#include "lib/route/route.h"
#include "lib/trust/dkim_verify.h"
#include "lib/trust/dmarc.h"
#include "lib/trust/dmarc_report.h"
#include "lib/trust/spf.h"
#include "smtp/smtp-private.h"

#define RUF_MAX 4		/* ruf= addresses used per report */
#define PENDING_MAX 256		/* tasks waiting for the thread */
#define RATE_WINDOW 3600	/* one report per domain and IP per hour */
#define HEADERS_MAX (64 * 1024)	/* of the original header section */
#define LIMIT_RESERVE 768	/* room under a size limit for what is
				 * added on the way (DKIM-Signature,
				 * Received) */

struct task {
	struct task *next;
	char policy[256];	/* the domain whose record it was */
	char domain[256];	/* Reported-Domain: the From domain */
	char ip[64];
	char ruf[1024];
	char qid[17];
	char *sender;
	char *authres;		/* Authentication-Results field(s), LF */
	char *headers;		/* the original header section, LF */
	const char *auth_failure;	/* "dmarc", "dkim", "spf" */
	char alignment[16];	/* "none", "dkim", "spf", "dkim, spf" */
	const char *delivery;	/* "delivered", "spam", "reject" */
	time_t arrival;
};

static pthread_mutex_t f_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t f_cond = PTHREAD_COND_INITIALIZER;
static struct task *f_head, **f_tail = &f_head;
static size_t f_n;
static bool f_started, f_busy;
static unsigned long f_dropped;
static char *f_state;		/* queue_dir/state.db */
static char *f_from;		/* dmarc_report_from, or postmaster@host */
static char *f_hostname;
/* the thread's own copy: what the server frees when it stops is not
 * used by a report still on its way */
static struct deliver_ctx f_deliver;
static sqlite3 *f_db;		/* the thread's own connection */
static struct authc *f_authc;	/* the thread's own auth channel */

void
smtp_dmarc_failure_init(struct smtp_server *srv, const struct config *cfg)
{
	const char *from = config_get(cfg, "dmarc_report_from");

	if (strcmp(config_get(cfg, "dmarc_failure_reports"), "yes") != 0 ||
	    !srv->dmarc_any)
		return;
	srv->dmarc_failure = true;
	f_state = xasprintf("%s/state.db", srv->queue_dir);
	f_from = from[0] != '\0' ? xstrdup(from) :
	    xasprintf("postmaster@%s", srv->hostname);
	f_hostname = xstrdup(srv->hostname);
	f_deliver.queue_dir = xstrdup(srv->queue_dir);
	f_deliver.dkim_dir = srv->deliver.dkim_dir != NULL ?
	    xstrdup(srv->deliver.dkim_dir) : NULL;
	f_deliver.mail_root = srv->deliver.mail_root != NULL ?
	    xstrdup(srv->deliver.mail_root) : NULL;
	/* no Sieve (dm.no_sieve), no SRS (not a forward), no ARC seal */
}

/* Does a list of fo= options (RFC 7489 6.3: colon-separated 0, 1, d, s;
 * empty: 0) ask for a report of these results? *what: the Auth-Failure
 * type of the report. */
bool
smtp_dmarc_failure_fo(const char *fo, const struct dmarc_verdict *v,
    const char *spf, const struct dkim_verdict *dk, size_t ndk,
    const char **what)
{
	const char *p = fo[0] != '\0' ? fo : "0";
	bool want0 = false, want1 = false, wantd = false, wants = false;
	bool dkim_failed = false, spf_failed;

	while (*p != '\0') {
		size_t n = strcspn(p, ":");

		if (n == 1 && *p == '0')
			want0 = true;
		else if (n == 1 && *p == '1')
			want1 = true;
		else if (n == 1 && (*p == 'd' || *p == 'D'))
			wantd = true;
		else if (n == 1 && (*p == 's' || *p == 'S'))
			wants = true;
		p += n;
		if (*p == ':')
			p++;
	}
	/* d: a signature that failed evaluation, aligned or not; s: SPF
	 * that failed (fail, softfail, or an error) */
	for (size_t i = 0; i < ndk; i++)
		if (strcmp(dk[i].result, "pass") != 0 &&
		    strcmp(dk[i].result, "none") != 0)
			dkim_failed = true;
	spf_failed = spf != NULL && (strcmp(spf, "fail") == 0 ||
	    strcmp(spf, "softfail") == 0 || strcmp(spf, "permerror") == 0 ||
	    strcmp(spf, "temperror") == 0);
	*what = "dmarc";
	/* 0: neither mechanism gave an aligned pass (DMARC failed) */
	if (want0 && v->result == DMARC_R_FAIL)
		return true;
	/* 1: one of them did not */
	if (want1 && (!v->dkim_aligned || !v->spf_aligned))
		return true;
	if (wantd && dkim_failed) {
		*what = "dkim";
		return true;
	}
	if (wants && spf_failed) {
		*what = "spf";
		return true;
	}
	return false;
}

/* ---- the report thread ---- */

static int
db_exec(const char *sql, char **error_r)
{
	char *err = NULL;

	if (sqlite3_exec(f_db, sql, NULL, NULL, &err) != SQLITE_OK) {
		*error_r = xasprintf("%s", err ? err : sqlite3_errmsg(f_db));
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

/* May a report about domain from ip go now? Then the time is recorded.
 * 1 yes, 0 no (sent within the hour), -1 the database failed. */
static int
rate_take(const char *domain, const char *ip, int64_t now)
{
	sqlite3_stmt *st = NULL;
	char *err = NULL;
	int ret = -1, rc;

	if (f_db == NULL) {
		if (sqlite3_open_v2(f_state, &f_db, SQLITE_OPEN_READWRITE |
		    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
		    SQLITE_OK) {
			log_error("dmarc failure reports: %s: %s", f_state,
			    f_db ? sqlite3_errmsg(f_db) : "cannot open");
			sqlite3_close(f_db);
			f_db = NULL;
			return -1;
		}
		sqlite3_busy_timeout(f_db, 5000);
		if (db_exec("PRAGMA journal_mode = WAL", &err) < 0 ||
		    db_exec("CREATE TABLE IF NOT EXISTS dmarc_failure ("
		    "domain TEXT NOT NULL, ip TEXT NOT NULL, "
		    "last INTEGER NOT NULL, PRIMARY KEY (domain, ip))",
		    &err) < 0) {
			log_error("dmarc failure reports: %s: %s", f_state,
			    err);
			free(err);
			sqlite3_close(f_db);
			f_db = NULL;
			return -1;
		}
	}
	if (db_exec("BEGIN IMMEDIATE", &err) < 0)
		goto out;
	if (sqlite3_prepare_v2(f_db, "SELECT last FROM dmarc_failure WHERE "
	    "domain = ?1 AND ip = ?2", -1, &st, NULL) != SQLITE_OK)
		goto rollback;
	sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, ip, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && now - sqlite3_column_int64(st, 0) <
	    RATE_WINDOW && now >= sqlite3_column_int64(st, 0)) {
		sqlite3_finalize(st);
		st = NULL;
		ret = 0;
		if (db_exec("COMMIT", &err) < 0)
			goto rollback;
		goto out;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		goto rollback;
	sqlite3_finalize(st);
	st = NULL;
	/* what is older than the window is of no use: the table stays
	 * small */
	if (sqlite3_prepare_v2(f_db, "DELETE FROM dmarc_failure WHERE "
	    "last < ?1", -1, &st, NULL) != SQLITE_OK)
		goto rollback;
	sqlite3_bind_int64(st, 1, now - RATE_WINDOW);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto rollback;
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(f_db, "INSERT OR REPLACE INTO dmarc_failure "
	    "(domain, ip, last) VALUES (?1, ?2, ?3)", -1, &st, NULL) !=
	    SQLITE_OK)
		goto rollback;
	sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, ip, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto rollback;
	sqlite3_finalize(st);
	st = NULL;
	if (db_exec("COMMIT", &err) < 0)
		goto rollback;
	return 1;
rollback:
	if (err == NULL)
		err = xasprintf("%s", sqlite3_errmsg(f_db));
	sqlite3_finalize(st);
	{
		char *e2 = NULL;

		(void)db_exec("ROLLBACK", &e2);
		free(e2);
	}
out:
	if (err != NULL) {
		log_error("dmarc failure reports: %s: %s", f_state, err);
		free(err);
	}
	return ret;
}

/* Is dom's owner willing to receive reports about policy (RFC 7489
 * 7.1)? 1 yes, 0 no, -1 no answer. */
static int
external_ok(const char *policy, const char *dom)
{
	char a[256], b[256], *name, *rec = NULL;
	int r;

	dmarc_org_domain(policy, a, sizeof(a));
	dmarc_org_domain(dom, b, sizeof(b));
	if (a[0] != '\0' && strcasecmp(a, b) == 0)
		return 1;
	name = xasprintf("%s._report._dmarc.%s", policy, dom);
	r = dmarc_fetch_record(name, &rec);
	free(name);
	free(rec);
	return r == -1 ? -1 : r != 0;
}

static void
rfc5322_date(char *buf, size_t len, time_t t)
{
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

/* The end of the header field that starts at p (after its continuation
 * lines). */
static const char *
field_end(const char *p, const char *end)
{
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (nl == NULL)
			return end;
		p = nl + 1;
		if (p >= end || (*p != ' ' && *p != '\t'))
			return p;
	}
	return end;
}

/* The report for one address (LF line ends), at most limit octets (0:
 * none) less LIMIT_RESERVE. false when it cannot fit. */
static bool
build_report(const struct task *t, const char *to, uint64_t limit,
    str_t *msg)
{
	char date[64], arrival[64], b[64];
	const char *h = t->headers, *hend = h + strlen(h), *cut = h;
	size_t fixed;
	uint64_t room;

	rfc5322_date(date, sizeof(date), time(NULL));
	rfc5322_date(arrival, sizeof(arrival), t->arrival);
	snprintf(b, sizeof(b), "=_ruf_%s", t->qid);
	str_printf(msg, "From: <%s>\nTo: <%s>\n"
	    "Subject: DMARC failure report for %s from %s\n"
	    "Date: %s\nMessage-ID: <%s.ruf@%s>\n"
	    "Auto-Submitted: auto-generated\nMIME-Version: 1.0\n"
	    "Content-Type: multipart/report; report-type=feedback-report;\n"
	    "\tboundary=\"%s\"\n\n"
	    "--%s\nContent-Type: text/plain; charset=us-ascii\n\n"
	    "A message claiming to be from %s, received by %s from %s\n"
	    "at %s, failed authentication under the DMARC record of %s\n"
	    "(RFC 7489 7.3). Only its header section is attached.\n\n"
	    "--%s\nContent-Type: message/feedback-report\n\n"
	    "Feedback-Type: auth-failure\nUser-Agent: petrel\nVersion: 1\n"
	    "Original-Envelope-Id: %s\nOriginal-Mail-From: <%s>\n"
	    "Arrival-Date: %s\nReporting-MTA: dns; %s\nSource-IP: %s\n"
	    "Reported-Domain: %s\n%sAuth-Failure: %s\n"
	    "Identity-Alignment: %s\nDelivery-Result: %s\n\n"
	    "--%s\nContent-Type: text/rfc822-headers\n\n",
	    f_from, to, t->domain, t->ip, date, t->qid, f_hostname, b, b,
	    t->domain, f_hostname, t->ip, arrival, t->policy, b, t->qid,
	    t->sender, arrival, f_hostname, t->ip, t->domain, t->authres,
	    t->auth_failure, t->alignment, t->delivery, b);
	fixed = msg->len + strlen(b) + 8;	/* and "\n--B--\n" */
	room = limit == 0 ? UINT64_MAX : limit > LIMIT_RESERVE ?
	    limit - LIMIT_RESERVE : 0;
	if (fixed > room)
		return false;
	/* whole fields only, as many as fit */
	while (cut < hend) {
		const char *e = field_end(cut, hend);

		if ((uint64_t)(fixed + (size_t)(e - h)) > room)
			break;
		cut = e;
	}
	str_append_n(msg, h, (size_t)(cut - h));
	if (cut > h && cut[-1] != '\n')
		str_append_c(msg, '\n');
	str_printf(msg, "\n--%s--\n", b);
	return true;
}

/* Route and deliver one report. */
static void
send_one(const struct task *t, const char *to, uint64_t limit)
{
	struct route_result r;
	struct deliver_rcpt rcpt;
	struct deliver_msg dm;
	struct deliver_result res;
	struct spool sp;
	str_t msg = STR_INIT;
	char qid[17], *tmpdir;
	const char *err;

	if (!build_report(t, to, limit, &msg)) {
		log_warn("dmarc failure report about %s from %s: <%s> takes "
		    "at most %llu octets, too few for one; not sent",
		    t->domain, t->ip, to, (unsigned long long)limit);
		str_free(&msg);
		return;
	}
	if (f_authc == NULL)
		f_authc = authc_thread_init(NULL);
	authc_route(f_authc, to, true, &r);
	if (r.status != ROUTE_OK) {
		log_warn("dmarc failure report about %s from %s: <%s>: %s; "
		    "not sent", t->domain, t->ip, to,
		    route_status_name(r.status));
		route_result_clear(&r);
		str_free(&msg);
		return;
	}
	queue_id_new(qid);
	tmpdir = xasprintf("%s/tmp", f_deliver.queue_dir);
	spool_init(&sp, tmpdir);
	if (spool_append(&sp, msg.data, msg.len, &err) < 0) {
		log_error("dmarc failure report about %s: %s", t->domain, err);
	} else {
		rcpt.address = to;
		rcpt.route = &r;
		memset(&dm, 0, sizeof(dm));
		dm.qid = qid;
		dm.sender = f_from;
		dm.rcpts = &rcpt;
		dm.nrcpts = 1;
		dm.body = &sp;
		dm.dkim_sign = true;	/* when f_from's domain has a key */
		dm.no_sieve = true;
		if (deliver_message(&f_deliver, &dm, &res, &err) < 0)
			log_error("dmarc failure report about %s to <%s>: %s",
			    t->domain, to, err);
		else
			log_info("%s: dmarc failure report about %s from %s "
			    "(%s) queued as %s to <%s>, %zu octets", t->qid,
			    t->domain, t->ip, t->auth_failure, qid, to,
			    msg.len);
	}
	spool_reset(&sp);
	free(tmpdir);
	route_result_clear(&r);
	str_free(&msg);
}

static void
process(const struct task *t)
{
	char addr[RUF_MAX][512];
	uint64_t limit[RUF_MAX];
	size_t n = 0;
	const char *p = t->ruf;
	int r = rate_take(t->domain, t->ip, (int64_t)time(NULL));

	if (r <= 0) {
		if (r == 0)
			log_info("%s: dmarc failure report about %s from %s: "
			    "one went within the hour; not sent", t->qid,
			    t->domain, t->ip);
		return;
	}
	while (*p != '\0' && n < RUF_MAX) {
		size_t len = strcspn(p, ",");
		const char *at;
		bool dup = false;
		int ok;

		if (dmarc_report_mailto(p, len, addr[n], sizeof(addr[n]),
		    &limit[n]) < 0) {
			log_info("%s: dmarc failure report about %s: ruf "
			    "%.*s: not a mailto: address; skipped", t->qid,
			    t->domain, (int)(len > 200 ? 200 : len), p);
			goto next;
		}
		at = strrchr(addr[n], '@');
		ok = external_ok(t->policy, at + 1);
		if (ok <= 0) {
			log_info("%s: dmarc failure report about %s: ruf %s: "
			    "%s %s._report._dmarc.%s; skipped", t->qid,
			    t->domain, addr[n], ok < 0 ? "no answer for" :
			    "no DMARC record at", t->policy, at + 1);
			goto next;
		}
		for (size_t i = 0; i < n; i++)
			if (strcasecmp(addr[i], addr[n]) == 0)
				dup = true;
		if (!dup)
			n++;
next:
		p += len;
		if (*p == ',')
			p++;
	}
	for (size_t i = 0; i < n; i++)
		send_one(t, addr[i], limit[i]);
}

static void
task_free(struct task *t)
{
	free(t->sender);
	free(t->authres);
	free(t->headers);
	free(t);
}

static void *
worker(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&f_lock);
	for (;;) {
		struct task *t;

		while (f_head == NULL)
			pthread_cond_wait(&f_cond, &f_lock);
		t = f_head;
		f_head = t->next;
		if (f_head == NULL)
			f_tail = &f_head;
		f_n--;
		f_busy = true;
		pthread_mutex_unlock(&f_lock);
		process(t);
		task_free(t);
		pthread_mutex_lock(&f_lock);
		f_busy = false;
	}
	return NULL;
}

static void
submit(struct task *t)
{
	pthread_mutex_lock(&f_lock);
	if (!f_started) {
		pthread_t th;
		pthread_attr_t attr;

		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &attr, worker, NULL) != 0) {
			pthread_attr_destroy(&attr);
			pthread_mutex_unlock(&f_lock);
			log_error("dmarc failure reports: no thread: the "
			    "report about %s is not sent", t->domain);
			task_free(t);
			return;
		}
		pthread_attr_destroy(&attr);
		f_started = true;
	}
	if (f_n >= PENDING_MAX) {
		if (f_dropped++ % 100 == 0)
			log_warn("dmarc failure reports: %lu not sent: too "
			    "many waiting", f_dropped);
		pthread_mutex_unlock(&f_lock);
		task_free(t);
		return;
	}
	t->next = NULL;
	*f_tail = t;
	f_tail = &t->next;
	f_n++;
	pthread_cond_signal(&f_cond);
	pthread_mutex_unlock(&f_lock);
}

void
smtp_dmarc_failure(struct smtp_session *s, const struct dmarc_verdict *dv,
    const struct dkim_verdict *dk, size_t ndk, const char *headers,
    size_t hlen, const char *authres, size_t alen)
{
	struct task *t;
	const char *what;
	const char *spf = s->spf_result >= 0 ?
	    spf_result_name((enum spf_result)s->spf_result) : NULL;

	if (!s->srv->dmarc_failure || dv->pub.ruf[0] == '\0' ||
	    (dv->result != DMARC_R_PASS && dv->result != DMARC_R_FAIL) ||
	    !smtp_dmarc_failure_fo(dv->pub.fo, dv, spf, dk, ndk, &what))
		return;
	t = xcalloc(1, sizeof(*t));
	snprintf(t->policy, sizeof(t->policy), "%s", dv->pub.domain);
	snprintf(t->domain, sizeof(t->domain), "%s", dv->from);
	snprintf(t->ip, sizeof(t->ip), "%s", s->base.ip);
	snprintf(t->ruf, sizeof(t->ruf), "%s", dv->pub.ruf);
	snprintf(t->qid, sizeof(t->qid), "%s", s->qid);
	t->sender = xstrdup(s->sender ? s->sender : "");
	t->authres = xstrndup(authres, alen);
	if (hlen > HEADERS_MAX)
		hlen = HEADERS_MAX;
	/* the header section without its empty line */
	while (hlen > 0 && headers[hlen - 1] == '\n' && hlen > 1 &&
	    headers[hlen - 2] == '\n')
		hlen--;
	t->headers = xstrndup(headers, hlen);
	t->auth_failure = what;
	snprintf(t->alignment, sizeof(t->alignment), "%s",
	    dv->dkim_aligned && dv->spf_aligned ? "dkim, spf" :
	    dv->dkim_aligned ? "dkim" : dv->spf_aligned ? "spf" : "none");
	/* what this server does with it (RFC 6591 3.2) */
	t->delivery = smtp_dmarc_policy(s) != SMTP_DMARC_ENFORCE ||
	    dv->result != DMARC_R_FAIL ? "delivered" :
	    dv->disposition == DMARC_D_REJECT ? "reject" :
	    dv->disposition == DMARC_D_QUARANTINE ? "spam" : "delivered";
	t->arrival = time(NULL);
	submit(t);
}
