/*
 * dnsbl.c: the SMTP server's checks of the client before it may name a
 * recipient: DNS block lists by client address (`dnsbl_sites`, RFC 5782)
 * and by sender domain (`rhsbl_sites`), and greylisting (`greylist`).
 *
 * DNSBL: at connect every site's query is sent at once through a
 * libunbound context of this worker (made from `dns_resolver` by
 * lib/trust/dnsq) in asynchronous mode; its descriptor is watched by the
 * event loop, so nothing waits. The answers are added up as they come
 * (the weights of the sites whose answer matches their filter). The
 * verdict is needed at the first RCPT: a session whose answers are still
 * out is held there (no further input read) until the last answer or
 * `dnsbl_timeout` after connect. A sum >= `dnsbl_threshold` refuses
 * every RCPT with 554 5.7.1 naming the lists, as Postfix's
 * reject_rbl_client does: at RCPT the log line names sender and
 * recipient, a client that authenticates on port 25 is exempt, and the
 * lookups had the time of EHLO and MAIL to answer. A lookup that fails
 * or does not answer in time counts as not listed (logged).
 *
 * RHSBL: `rhsbl_sites` asked about the MAIL FROM domain when MAIL comes
 * (awaited at RCPT as above, at most dnsbl_timeout after MAIL), their
 * weights added to the client's for that transaction only.
 * `rhsbl_helo_sites` (Postfix's reject_rhsbl_helo, a list of its own as
 * there: a list of sender domains need not suit HELO names) are asked
 * about the HELO/EHLO name when it is given, their weights added for the
 * rest of the session (until the next HELO). Address literals and names
 * that are not domain names of two labels or more are not asked about:
 * a dotted quad without brackets would be read as a reversed DNSBL name.
 *
 * Greylisting: at RCPT, on the routing job thread, for a recipient that
 * exists: the triplet (client /24 or /64, sender, recipient) in the
 * state database (lib/trust/greylist); new or too early -> 451 4.7.1.
 * <> has the empty sender in its triplet, so bounces are greylisted by
 * network and recipient. Clients in `greylist_whitelist` are not.
 *
 * Neither applies to authenticated sessions, submission, LMTP, or
 * clients on this host itself (127.0.0.1, ::1), as for SPF (trust.c).
 */
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unbound.h>

#include "lib/base/addr.h"
#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/session/session.h"
#include "lib/trust/dnsbl.h"
#include "lib/trust/dnsq.h"
#include "lib/trust/greylist.h"
#include "smtp/smtp-private.h"

#define LISTED_TEXT_MAX 400	/* the zones named in a reply */

struct smtp_dnsbl_conf {
	struct dnsbl_site *sites;
	size_t nsites;
	struct dnsbl_site *rsites;	/* rhsbl_sites */
	size_t nrsites;
	struct dnsbl_site *hsites;	/* rhsbl_helo_sites */
	size_t nhsites;
	int threshold;
	unsigned timeout_ms;
	char *resolver;
	struct event_base *base;
	struct ub_ctx *ub;	/* made at the first connect */
	struct event *ub_ev;
	bool ub_failed;
	bool greylist;
	struct greylist_net *gl_white;	/* greylist_whitelist */
	size_t gl_nwhite;
	unsigned gl_delay, gl_expire;
	char *state_path;	/* queue_dir/state.db */
};

enum query_kind {
	Q_CLIENT,		/* dnsbl_sites: the client's address */
	Q_SENDER,		/* rhsbl_sites: the MAIL FROM domain */
	Q_HELO,			/* rhsbl_helo_sites: the HELO name */
};

struct dnsbl_query {
	struct smtp_dnsbl *d;
	size_t site;
	int id;
	bool active;
	enum query_kind kind;
};

struct smtp_dnsbl {
	struct smtp_session *s;
	struct smtp_dnsbl_conf *conf;
	struct dnsbl_query q[DNSBL_SITES_MAX];
	struct dnsbl_query rq[DNSBL_SITES_MAX];	/* this transaction's */
	size_t pending;		/* queries out, both kinds */
	bool done;
	int score;
	str_t listed;		/* "zone, zone" with positive weights */
	int rscore;		/* the MAIL FROM domain's, this transaction */
	str_t rlisted;
	char *rdomain;
	struct dnsbl_query hq[DNSBL_SITES_MAX];	/* the HELO name's */
	int hscore;		/* the HELO name's, this session */
	str_t hlisted;
	char *hname;
	struct event *timer;	/* dnsbl_timeout after connect or MAIL */
	char *parked;		/* a RCPT argument waiting for the verdict */
};

static bool
exempt(const struct smtp_session *s)
{
	return s->auth_user != NULL || s->submission || s->lmtp ||
	    smtp_local_client(s);
}

void
smtp_dnsbl_init(struct smtp_server *srv, const struct config *cfg)
{
	struct smtp_dnsbl_conf *c = xcalloc(1, sizeof(*c));
	const char *err;

	if (dnsbl_sites_parse(config_get(cfg, "dnsbl_sites"), &c->sites,
	    &c->nsites, &err) < 0)
		fatal("dnsbl_sites: %s", err);
	if (dnsbl_sites_parse(config_get(cfg, "rhsbl_sites"), &c->rsites,
	    &c->nrsites, &err) < 0)
		fatal("rhsbl_sites: %s", err);
	if (dnsbl_sites_parse(config_get(cfg, "rhsbl_helo_sites"),
	    &c->hsites, &c->nhsites, &err) < 0)
		fatal("rhsbl_helo_sites: %s", err);
	c->threshold = (int)config_get_uint(cfg, "dnsbl_threshold");
	if (c->threshold < 1)
		c->threshold = 1;
	c->timeout_ms = 1000 * (unsigned)config_get_uint(cfg,
	    "dnsbl_timeout");
	if (c->timeout_ms == 0)
		c->timeout_ms = 1000;
	c->resolver = xstrdup(config_get(cfg, "dns_resolver"));
	c->base = srv->sv.base;
	c->greylist = strcmp(config_get(cfg, "greylist"), "on") == 0;
	if (greylist_nets_parse(config_get(cfg, "greylist_whitelist"),
	    &c->gl_white, &c->gl_nwhite, &err) < 0)
		fatal("greylist_whitelist: %s", err);
	c->gl_delay = (unsigned)config_get_uint(cfg, "greylist_delay");
	c->gl_expire = (unsigned)config_get_uint(cfg, "greylist_expire");
	c->state_path = xasprintf("%s/state.db", srv->queue_dir);
	srv->dnsbl = c;
}

void
smtp_dnsbl_deinit(struct smtp_server *srv)
{
	struct smtp_dnsbl_conf *c = srv->dnsbl;

	if (c == NULL)
		return;
	if (c->ub_ev != NULL)
		event_free(c->ub_ev);
	if (c->ub != NULL)
		ub_ctx_delete(c->ub);
	dnsbl_sites_free(c->sites, c->nsites);
	dnsbl_sites_free(c->rsites, c->nrsites);
	dnsbl_sites_free(c->hsites, c->nhsites);
	free(c->resolver);
	free(c->state_path);
	free(c->gl_white);
	free(c);
	srv->dnsbl = NULL;
}

static void
ub_readable(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_dnsbl_conf *c = arg;

	ub_process(c->ub);	/* the callbacks of what arrived */
}

/* The worker's asynchronous context, made at the first use. */
static struct ub_ctx *
ub_get(struct smtp_dnsbl_conf *c)
{
	char *err = NULL;

	if (c->ub != NULL || c->ub_failed)
		return c->ub;
	c->ub = dnsq_ctx_new(c->resolver, &err);
	if (c->ub == NULL) {
		log_error("dnsbl: DNS lookups unavailable: %s", err);
		free(err);
		c->ub_failed = true;
		return NULL;
	}
	/* a background thread, not a forked process; libunbound's own
	 * retries are kept: dnsbl_timeout bounds the wait */
	ub_ctx_async(c->ub, 1);
	c->ub_ev = event_new(c->base, ub_fd(c->ub), EV_READ | EV_PERSIST,
	    ub_readable, c);
	event_add(c->ub_ev, NULL);
	return c->ub;
}

static void rcpt_resume(struct smtp_dnsbl *d);

static const struct dnsbl_site *
query_site(const struct smtp_dnsbl *d, const struct dnsbl_query *q)
{
	switch (q->kind) {
	case Q_SENDER:
		return &d->conf->rsites[q->site];
	case Q_HELO:
		return &d->conf->hsites[q->site];
	default:
		return &d->conf->sites[q->site];
	}
}

static const char *
query_subject(const struct smtp_dnsbl *d, enum query_kind kind)
{
	switch (kind) {
	case Q_SENDER:
		return d->rdomain;
	case Q_HELO:
		return d->hname;
	default:
		return d->s->base.ip;
	}
}

/* "a, b" of the texts that are not empty, into buf. */
static const char *
join_lists(char *buf, size_t size, const str_t *a, const str_t *b,
    const str_t *c)
{
	const str_t *v[3] = { a, b, c };
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < 3; i++) {
		if (v[i] == NULL || v[i]->len == 0)
			continue;
		snprintf(buf + n, size - n, "%s%s", n > 0 ? ", " : "",
		    v[i]->data);
		n = strlen(buf);
	}
	return buf;
}

/* Every answer is in, or the time is up. */
static void
finish(struct smtp_dnsbl *d)
{
	struct smtp_session *s = d->s;

	char all[3 * LISTED_TEXT_MAX + 100];

	d->done = true;
	if (d->timer != NULL)
		evtimer_del(d->timer);
	if (d->score + d->rscore + d->hscore >= d->conf->threshold)
		log_info("%016llx: dnsbl: [%s]%s%s%s%s scores %d (threshold "
		    "%d): %s", SID(&s->base), s->base.ip,
		    d->hname ? " helo " : "", d->hname ? d->hname : "",
		    d->rdomain ? " with " : "", d->rdomain ? d->rdomain : "",
		    d->score + d->rscore + d->hscore, d->conf->threshold,
		    join_lists(all, sizeof(all), &d->listed, &d->hlisted,
		    &d->rlisted));
	if (d->parked != NULL)
		rcpt_resume(d);
}

static void
answer_cb(void *arg, int err, struct ub_result *res)
{
	struct dnsbl_query *q = arg;
	struct smtp_dnsbl *d = q->d;
	const struct dnsbl_site *site = query_site(d, q);
	const char *who = query_subject(d, q->kind);
	const char *prev = log_service_set(d->s->base.log_service);
	unsigned char hit[4];
	bool listed = false;

	q->active = false;
	d->pending--;
	if (err != 0 || res == NULL) {
		log_warn("%016llx: dnsbl %s: lookup for [%s] failed (%s): "
		    "taken as not listed", SID(&d->s->base), site->zone,
		    who, ub_strerror(err));
	} else if (res->rcode != 0 && res->rcode != 3 && !res->nxdomain) {
		log_warn("%016llx: dnsbl %s: lookup for [%s] failed (rcode "
		    "%d): taken as not listed", SID(&d->s->base), site->zone,
		    who, res->rcode);
	} else if (res->havedata) {
		for (size_t i = 0; res->data[i] != NULL && !listed; i++) {
			if (res->len[i] != 4)
				continue;
			if (dnsbl_answer_matches(site,
			    (const unsigned char *)res->data[i])) {
				memcpy(hit, res->data[i], 4);
				listed = true;
			}
		}
	}
	if (res != NULL)
		ub_resolve_free(res);
	if (listed) {
		str_t *text = q->kind == Q_SENDER ? &d->rlisted :
		    q->kind == Q_HELO ? &d->hlisted : &d->listed;

		if (q->kind == Q_SENDER)
			d->rscore += site->weight;
		else if (q->kind == Q_HELO)
			d->hscore += site->weight;
		else
			d->score += site->weight;
		log_info("%016llx: dnsbl %s lists [%s] (%u.%u.%u.%u), weight "
		    "%d", SID(&d->s->base), site->zone, who, hit[0], hit[1],
		    hit[2], hit[3], site->weight);
		if (site->weight > 0 && text->len < LISTED_TEXT_MAX) {
			if (text->len > 0)
				str_append(text, ", ");
			str_append(text, site->zone);
		}
	}
	if (d->pending == 0 && !d->done)
		finish(d);
	log_service_set(prev);
}

static void
cancel_queries(struct smtp_dnsbl *d, struct dnsbl_query *q, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!q[i].active)
			continue;
		ub_cancel(d->conf->ub, q[i].id);
		q[i].active = false;
		d->pending--;
	}
}

static void
cancel_pending(struct smtp_dnsbl *d)
{
	cancel_queries(d, d->q, d->conf->nsites);
	cancel_queries(d, d->rq, d->conf->nrsites);
	cancel_queries(d, d->hq, d->conf->nhsites);
	d->pending = 0;
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_dnsbl *d = arg;
	const char *prev = log_service_set(d->s->base.log_service);

	for (size_t i = 0; i < d->conf->nsites; i++)
		if (d->q[i].active)
			log_warn("%016llx: dnsbl %s: no answer for [%s] "
			    "within %u ms: taken as not listed",
			    SID(&d->s->base), d->conf->sites[i].zone,
			    d->s->base.ip, d->conf->timeout_ms);
	for (size_t i = 0; i < d->conf->nrsites; i++)
		if (d->rq[i].active)
			log_warn("%016llx: dnsbl %s: no answer for [%s] "
			    "within %u ms: taken as not listed",
			    SID(&d->s->base), d->conf->rsites[i].zone,
			    d->rdomain, d->conf->timeout_ms);
	for (size_t i = 0; i < d->conf->nhsites; i++)
		if (d->hq[i].active)
			log_warn("%016llx: dnsbl %s: no answer for [%s] "
			    "within %u ms: taken as not listed",
			    SID(&d->s->base), d->conf->hsites[i].zone,
			    d->hname, d->conf->timeout_ms);
	cancel_pending(d);
	if (!d->done)
		finish(d);
	log_service_set(prev);
}

/* One query out: true when sent. */
static bool
send_query(struct smtp_dnsbl *d, struct dnsbl_query *q, size_t i,
    enum query_kind kind, const char *name)
{
	const struct dnsbl_site *site;
	int r;

	q->d = d;
	q->site = i;
	q->kind = kind;
	site = query_site(d, q);
	r = ub_resolve_async(d->conf->ub, name, 1 /* A */, 1 /* IN */, q,
	    answer_cb, &q->id);
	if (r != 0) {
		log_warn("%016llx: dnsbl %s: %s", SID(&d->s->base), site->zone,
		    ub_strerror(r));
		return false;
	}
	q->active = true;
	d->pending++;
	return true;
}

/* Queries are out: wait for them, at most dnsbl_timeout from now. */
static void
wait_from_now(struct smtp_dnsbl *d)
{
	struct timeval tv;

	if (d->pending == 0) {
		if (!d->done)
			finish(d);
		return;
	}
	d->done = false;
	tv.tv_sec = d->conf->timeout_ms / 1000;
	tv.tv_usec = (suseconds_t)(d->conf->timeout_ms % 1000) * 1000;
	evtimer_add(d->timer, &tv);
}

void
smtp_dnsbl_start(struct smtp_session *s)
{
	struct smtp_dnsbl_conf *c = s->srv->dnsbl;
	struct smtp_dnsbl *d;

	if (c == NULL || (c->nsites == 0 && c->nrsites == 0 &&
	    c->nhsites == 0) ||
	    s->submission || s->lmtp || smtp_local_client(s))
		return;
	d = xcalloc(1, sizeof(*d));
	d->s = s;
	d->conf = c;
	d->done = true;
	d->timer = evtimer_new(c->base, timer_cb, d);
	s->dnsbl = d;
	if (ub_get(c) == NULL)
		return;
	for (size_t i = 0; i < c->nsites; i++) {
		char name[320];

		if (dnsbl_query_name(s->base.ip, c->sites[i].zone, name,
		    sizeof(name)) == 0)
			send_query(d, &d->q[i], i, Q_CLIENT, name);
	}
	wait_from_now(d);
}

void
smtp_rhsbl_mail(struct smtp_session *s, const char *addr)
{
	struct smtp_dnsbl *d = s->dnsbl;
	const char *at = strrchr(addr, '@');
	size_t n;

	if (d == NULL || d->conf->nrsites == 0 || exempt(s))
		return;
	/* the last transaction's answers are of no use now */
	cancel_queries(d, d->rq, d->conf->nrsites);
	d->rscore = 0;
	str_free(&d->rlisted);
	xfree(&d->rdomain);
	if (at == NULL || at[1] == '\0' || at[1] == '[' ||
	    d->conf->ub == NULL)
		return;
	n = strlen(at + 1);
	if (n > 253 || str_has_8bit(at + 1, n))
		return;		/* no such name in a list */
	d->rdomain = xstrdup(at + 1);
	str_lower(d->rdomain);
	if (d->rdomain[n - 1] == '.')
		d->rdomain[n - 1] = '\0';
	for (size_t i = 0; i < d->conf->nrsites; i++) {
		char name[512];
		int r = snprintf(name, sizeof(name), "%s.%s", d->rdomain,
		    d->conf->rsites[i].zone);

		if (r > 0 && (size_t)r < sizeof(name) && r <= 253)
			send_query(d, &d->rq[i], i, Q_SENDER, name);
	}
	if (d->pending > 0 || !d->done)
		wait_from_now(d);
}

/*
 * A name an RHSBL can list: a domain name of two labels or more whose
 * last label is not all digits (a bare dotted quad is an address, and
 * A.B.C.D.ZONE would ask a DNSBL question); not an address literal.
 */
static bool
helo_listable(const char *name)
{
	const char *last = strrchr(name, '.');

	/* addr_domain_valid() takes no trailing dot, nor 8-bit here as
	 * smtp_helo_set() made those '?' */
	if (name[0] == '[' || last == NULL || !addr_domain_valid(name))
		return false;
	for (const char *p = last + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return true;
	return false;
}

void
smtp_rhsbl_helo(struct smtp_session *s, const char *name)
{
	struct smtp_dnsbl *d = s->dnsbl;

	if (d == NULL || d->conf->nhsites == 0)
		return;
	/* a new HELO: the last name's answers are of no use now */
	cancel_queries(d, d->hq, d->conf->nhsites);
	d->hscore = 0;
	str_free(&d->hlisted);
	xfree(&d->hname);
	if (d->conf->ub == NULL || exempt(s))
		return;
	if (!helo_listable(name)) {
		log_debug("%016llx: rhsbl_helo_sites: HELO %.100s is not a "
		    "domain name: not looked up", SID(&s->base), name);
		return;
	}
	d->hname = xstrdup(name);
	str_lower(d->hname);
	for (size_t i = 0; i < d->conf->nhsites; i++) {
		char name2[512];
		int r = snprintf(name2, sizeof(name2), "%s.%s", d->hname,
		    d->conf->hsites[i].zone);

		if (r > 0 && (size_t)r < sizeof(name2) && r <= 253)
			send_query(d, &d->hq[i], i, Q_HELO, name2);
	}
	if (d->pending > 0 || !d->done)
		wait_from_now(d);
}

void
smtp_dnsbl_end(struct smtp_session *s)
{
	struct smtp_dnsbl *d = s->dnsbl;

	if (d == NULL)
		return;
	cancel_pending(d);
	if (d->timer != NULL)
		event_free(d->timer);
	str_free(&d->listed);
	str_free(&d->rlisted);
	str_free(&d->hlisted);
	free(d->rdomain);
	free(d->hname);
	free(d->parked);
	free(d);
	s->dnsbl = NULL;
}

/* The verdict came while a RCPT waited: answer it now. */
static void
rcpt_resume(struct smtp_dnsbl *d)
{
	struct smtp_session *s = d->s;
	char *arg = d->parked;

	d->parked = NULL;
	s->base.busy = false;
	if (!s->base.dead)
		smtp_cmd_rcpt(s, arg);
	free(arg);
	if (!s->base.busy)
		session_job_finished(&s->base);	/* reads on, or frees */
	/* else a routing job goes on; it ends the wait */
}

bool
smtp_dnsbl_rcpt(struct smtp_session *s, const char *arg)
{
	struct smtp_dnsbl *d = s->dnsbl;
	const char *to;
	char lists[3 * LISTED_TEXT_MAX + 100];

	if (d == NULL || exempt(s))
		return false;
	if (!d->done) {
		/* held until the last answer or dnsbl_timeout */
		d->parked = xstrdup(arg);
		s->base.busy = true;
		return true;
	}
	if (d->score + d->rscore + d->hscore < d->conf->threshold)
		return false;
	to = strncasecmp(arg, "TO:", 3) == 0 ? arg + 3 : arg;
	if (d->score < d->conf->threshold && d->hname != NULL &&
	    d->score + d->hscore >= d->conf->threshold) {
		/* the HELO name made up the difference: Postfix's words
		 * for reject_rhsbl_helo */
		join_lists(lists, sizeof(lists), d->hlisted.len ?
		    &d->hlisted : NULL, &d->listed, NULL);
		if (lists[0] == '\0')
			snprintf(lists, sizeof(lists), "rhsbl_helo_sites");
		log_info("NOQUEUE: reject: RCPT from %s: 554 5.7.1 <%s>: "
		    "Helo command rejected: %s blocked using %s; from=<%s> "
		    "to=%.300s helo=<%s>", s->base.peer, d->hname, d->hname,
		    lists, s->sender ? s->sender : "", to, d->hname);
		reply_error(s, "554 5.7.1 <%s>: Helo command rejected: %s "
		    "blocked using %s", d->hname, d->hname, lists);
		return true;
	}
	if (d->score < d->conf->threshold && d->rdomain != NULL) {
		/* the sender's domain made up the difference */
		join_lists(lists, sizeof(lists), &d->rlisted, &d->hlisted,
		    &d->listed);
		if (lists[0] == '\0')
			snprintf(lists, sizeof(lists), "rhsbl_sites");
		log_info("NOQUEUE: reject: RCPT from %s: 554 5.7.1 <%s>: "
		    "Sender address rejected: %s blocked using %s; "
		    "from=<%s> to=%.300s", s->base.peer, s->sender,
		    d->rdomain, lists, s->sender, to);
		reply_error(s, "554 5.7.1 <%s>: Sender address rejected: %s "
		    "blocked using %s", s->sender, d->rdomain, lists);
		return true;
	}
	log_info("NOQUEUE: reject: RCPT from %s: 554 5.7.1 Service "
	    "unavailable; Client host [%s] blocked using %s; from=<%s> "
	    "to=%.300s", s->base.peer, s->base.ip, d->listed.len ?
	    d->listed.data : "dnsbl_sites", s->sender ? s->sender : "", to);
	reply_error(s, "554 5.7.1 Service unavailable; Client host [%s] "
	    "blocked using %s", s->base.ip, d->listed.len ? d->listed.data :
	    "dnsbl_sites");
	return true;
}

bool
smtp_greylist_rcpt(struct smtp_session *s, const char *rcpt)
{
	struct smtp_dnsbl_conf *c = s->srv->dnsbl;
	char net[80];
	unsigned wait;
	enum greylist_verdict v;

	if (c == NULL || !c->greylist || exempt(s) ||
	    greylist_nets_match(c->gl_white, c->gl_nwhite, s->base.ip) ||
	    greylist_network(s->base.ip, net, sizeof(net)) < 0)
		return false;
	v = greylist_check(c->state_path, net, s->sender ? s->sender : "",
	    rcpt, (int64_t)time(NULL), c->gl_delay, c->gl_expire, &wait);
	if (v == GREYLIST_ERROR) {
		log_warn("%s: greylist: state database failed: %s passed",
		    s->qid, rcpt);
		return false;
	}
	if (v == GREYLIST_DEFER)
		log_info("%s: greylist: defer RCPT from %s: from=<%s> to=<%s> "
		    "(%s), %u s to wait", s->qid, s->base.peer,
		    s->sender ? s->sender : "", rcpt, net, wait);
	return v == GREYLIST_DEFER;
}
