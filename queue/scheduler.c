/*
 * scheduler.c: the outbound queue manager.
 *
 * One process (role "queue" under the master). It watches
 * QUEUE_DIR/incoming with inotify and also rescans every
 * queue_scan_interval seconds; SIGUSR1 (petrel queue flush) makes every
 * deferred recipient due now. A message is attempted one destination at
 * a time (recipients grouped by transport, or by domain for MX delivery);
 * attempts in flight are bounded overall and per destination. Where an
 * attempt connects is mx.c's business, the SMTP session outbound.c's.
 *
 * After an attempt: 2xx: sent; 4xx: deferred with exponential back-off;
 * 5xx: bounced at once; still deferred after queue_lifetime: bounced.
 * Bounces are RFC 3464 reports (queue/dsn.c). The state file is
 * rewritten (fsync'd) after every attempt; blocking work (DNS, the state
 * file, bounce delivery) runs on job threads. Files a dead writer left in
 * QUEUE_DIR/tmp are swept at start and hourly.
 */
#include <event2/event.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unbound.h>
#include <unistd.h>

#include "lib/trust/dnsq.h"
#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/config/context.h"
#include "lib/authd/client.h"
#include "lib/dir/dir.h"
#include "lib/io/jobs.h"
#include "lib/maildir/maildir.h"
#include "lib/queue/queue.h"
#include "lib/session/counters.h"
#include "lib/tls/tls.h"
#include "lib/trust/tls_rpt.h"
#include "queue/delivery.h"
#include "queue/manager.h"

static void mgr_scan(struct mgr *m);
static void mgr_scan_soon(struct mgr *m);

/* The job pool's waiting jobs, for /metrics. */
static void
jobs_waiting(void *arg, size_t n)
{
	(void)arg;
	node_counters_gauge_set(node_counters_self(),
	    NODE_GAUGE_QUEUE_JOBS_WAITING, n);
}
static unsigned backoff(struct mgr *m, unsigned attempts);

/* ---- helpers ---- */

/* The record of destination name (lower case), made on first use. */
static struct dest *
dest_get(struct mgr *m, const char *name)
{
	size_t h = 5381, len = strlen(name);
	struct dest *d;

	for (size_t i = 0; i < len; i++)
		h = h * 33 + (unsigned char)name[i];
	h %= DEST_BUCKETS;
	for (d = m->dests[h]; d != NULL; d = d->next)
		if (strcmp(d->name, name) == 0)
			return d;
	d = xcalloc(1, sizeof(*d) + len + 1);
	memcpy(d->name, name, len + 1);
	d->limit = strncmp(name, "lmtp:", 5) == 0 ? m->max_per_lmtp :
	    m->max_per_dest;
	d->next = m->dests[h];
	m->dests[h] = d;
	return d;
}

/* Free the records neither an attempt nor a queued message uses (after
 * a listing, which marked the queued messages' ones with dest_gen). */
static void
dest_sweep(struct mgr *m, bool all)
{
	for (size_t h = 0; h < DEST_BUCKETS; h++) {
		struct dest **pp = &m->dests[h];

		while (*pp != NULL) {
			struct dest *d = *pp;

			if (all || (d->active == 0 && d->mark != m->dest_gen)) {
				*pp = d->next;
				free(d);
			} else {
				pp = &d->next;
			}
		}
	}
}

/* The message's entry in m->seen (gone ones included), or NULL. */
static struct seen *
seen_find(struct mgr *m, const char *id)
{
	size_t lo = 0, hi = m->nseen;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(m->seen[mid].id, id);

		if (c == 0)
			return &m->seen[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static const char *
rcpt_domain(const char *address)
{
	const char *at = strrchr(address, '@');

	return at ? at + 1 : address;
}

static struct hold *
hold_find(struct mgr *m, const char *id, struct hold ***pp_r)
{
	struct hold **pp;

	for (pp = &m->holds; *pp != NULL; pp = &(*pp)->next)
		if (strcmp((*pp)->id, id) == 0) {
			if (pp_r != NULL)
				*pp_r = pp;
			return *pp;
		}
	return NULL;
}

/* After a finished attempt: hold the message if its state was not
 * written, forget an earlier hold if it was. */
static void
hold_update(struct mgr *m, const char *id, time_t until)
{
	struct hold **pp, *h = hold_find(m, id, &pp);
	time_t later;

	if (until == 0) {
		if (h != NULL) {
			*pp = h->next;
			free(h->id);
			free(h);
		}
		return;
	}
	if (h == NULL) {
		h = xmalloc(sizeof(*h));
		h->id = xstrdup(id);
		h->next = m->holds;
		m->holds = h;
	}
	h->fails++;
	later = time(NULL) + (time_t)backoff(m, h->fails);
	h->until = until > later ? until : later;
	log_warn("%s: state not written; next attempt in %lld s", id,
	    (long long)(h->until - time(NULL)));
}

static void
delivery_free(struct delivery *d)
{
	struct mgr *m = d->m;
	struct delivery **pp;

	for (pp = &m->active; *pp != NULL; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	m->nactive--;
	if (d->dest != NULL)
		d->dest->active--;
	{
		struct seen *e = seen_find(m, d->msg.id);

		if (e != NULL) {
			e->active = false;
			if (d->removed && !e->gone) {
				e->gone = true;
				m->ngone++;
			}
		}
	}
	if (d->bev != NULL)
		bufferevent_free(d->bev);
	for (size_t i = 0; i < d->nidx; i++)
		free(d->texts[i]);
	free(d->texts);
	free(d->codes);
	free(d->idx);
	free(d->host);
	free(d->relay);
	free(d->resolve_error);
	mx_dane_free(d);
	free(d->sts);
	queue_msg_clear(&d->msg);
	free(d);
}

/* ---- finishing an attempt (job thread) ---- */

static unsigned
backoff(struct mgr *m, unsigned attempts)
{
	unsigned long long s = m->retry_min;

	for (unsigned i = 1; i < attempts && s < m->retry_max; i++)
		s *= 2;
	return s > m->retry_max ? m->retry_max : (unsigned)s;
}

static void
finish_run(struct delivery *d, struct authc *ac)
{
	struct mgr *m = d->m;
	struct queue_msg *q = &d->msg;
	time_t now = time(NULL);
	bool done = true, *fresh = xcalloc(q->nrcpts + 1, sizeof(bool));
	const char *err;

	for (size_t k = 0; k < d->nidx; k++) {
		struct queue_entry *e = &q->rcpts[d->idx[k]];
		int code = d->codes[k];
		const char *text = d->texts[k] ? d->texts[k] : "";
		const char *status;
		char use[64];

		free(e->last);
		e->last = xstrdup(text);
		e->attempts++;
		if (code >= 200 && code < 300) {
			e->status = QR_SENT;
			status = "sent";
			node_counters_event(node_counters_self(),
			    NODE_EVENT_DELIVERED);
			node_counters_observe(node_counters_self(),
			    NODE_HIST_DELIVERY, (double)(now - q->arrival));
		} else if (code >= 500) {
			e->status = QR_BOUNCED;
			fresh[d->idx[k]] = true;
			status = "bounced";
			node_counters_event(node_counters_self(),
			    NODE_EVENT_BOUNCED);
		} else {
			e->next = (long long)now + backoff(m, e->attempts);
			status = "deferred";
			node_counters_event(node_counters_self(),
			    NODE_EVENT_DEFERRED);
		}
		/* Postfix's shape (what log readers such as pflogsumm
		 * parse; conn_use=N on a kept connection's Nth
		 * transaction), the attempt count after it */
		if (d->conn_uses > 0)
			snprintf(use, sizeof(use), ", conn_use=%u",
			    d->conn_uses + 1);
		else
			use[0] = '\0';
		if (d->tls_note != NULL) {
			size_t ul = strlen(use);

			snprintf(use + ul, sizeof(use) - ul, ", tls=%s",
			    d->tls_note);
		}
		log_info("%s: to=<%s>, relay=%s%s, delay=%lld, status=%s (%s), "
		    "attempts=%u", q->id, e->address,
		    d->relay ? d->relay : "none", use,
		    (long long)(now - q->arrival), status, text, e->attempts);
	}
	/* Expired recipients (queue_lifetime) bounce. */
	for (size_t i = 0; i < q->nrcpts; i++) {
		struct queue_entry *e = &q->rcpts[i];

		if (e->status == QR_PENDING &&
		    now - q->arrival > (time_t)m->lifetime) {
			char *why;

			if (m->lifetime >= 86400)
				why = xasprintf("%s (message expired after %u "
				    "day(s) in the queue)", e->last[0] ? e->last :
				    "deferred", m->lifetime / 86400);
			else
				why = xasprintf("%s (message expired after %u "
				    "second(s) in the queue)", e->last[0] ?
				    e->last : "deferred", m->lifetime);

			free(e->last);
			e->last = why;
			e->status = QR_BOUNCED;
			fresh[i] = true;
			node_counters_event(node_counters_self(),
			    NODE_EVENT_BOUNCED);
			log_info("%s: to=<%s>, relay=none, delay=%lld, "
			    "status=bounced (%s), expired, returned to sender",
			    q->id, e->address, (long long)(now - q->arrival),
			    why);
		}
	}
	/* The sender hears of failures now, not when the last deferred
	 * recipient is done (as Postfix does). */
	if (dsn_bounce(ac, m->cfg, q, fresh, m->hostname) < 0) {
		/* Keep them: the bounce is retried with the next attempt. */
		for (size_t i = 0; i < q->nrcpts; i++)
			if (fresh[i]) {
				q->rcpts[i].status = QR_PENDING;
				q->rcpts[i].next = (long long)now + m->retry_min;
			}
	}
	free(fresh);
	for (size_t i = 0; i < q->nrcpts; i++)
		if (q->rcpts[i].status == QR_PENDING)
			done = false;
	if (!done) {
		if (queue_state_write(m->queue_dir, q, &err) < 0) {
			log_error("%s: %s", q->id, err);
			d->hold_until = now + m->retry_min;
			for (size_t i = 0; i < q->nrcpts; i++)
				if (q->rcpts[i].status == QR_PENDING &&
				    q->rcpts[i].next > (long long)d->hold_until)
					d->hold_until = (time_t)q->rcpts[i].next;
		}
		return;
	}
	if (queue_remove(m->queue_dir, q->id) < 0) {
		log_error_errno("%s: cannot remove from the queue", q->id);
	} else {
		log_info("%s: removed", q->id);
		d->removed = true;
	}
}

static void
delivery_job_run(struct job *job, void *state)
{
	struct delivery *d = (struct delivery *)((char *)job -
	    offsetof(struct delivery, job));

	if (d->job_kind == JOB_RESOLVE)
		mx_resolve(d);
	else
		finish_run(d, state);
}

static void
delivery_job_done(struct job *job)
{
	struct delivery *d = (struct delivery *)((char *)job -
	    offsetof(struct delivery, job));
	struct mgr *m = d->m;

	d->job_pending = false;
	if (m->stopping) {
		/* A resolved attempt is dropped (its recipients stay
		 * pending); a finished one has written its state. */
		delivery_free(d);
		return;
	}
	if (d->job_kind == JOB_FINISH) {
		hold_update(m, d->msg.id, d->hold_until);
		delivery_free(d);
		mgr_scan_soon(m);
		return;
	}
	if (d->resolve_error != NULL) {
		const char *e = d->resolve_error;

		delivery_finish(d, d->resolve_permanent ? 550 : 451, e);
		return;
	}
	d->cur = 0;
	delivery_connect(d);
}

void
delivery_submit(struct delivery *d, int kind)
{
	d->job_pending = true;
	d->job_kind = kind;
	d->job.run = delivery_job_run;
	d->job.done = delivery_job_done;
	d->job.log_service = "smtp";
	jobs_submit(d->m->jobs, &d->job);
}

/* ---- scheduling ---- */

static void
start_delivery(struct mgr *m, struct queue_msg *q, struct dest *dest,
    size_t *idx, size_t nidx)
{
	struct delivery *d = xcalloc(1, sizeof(*d));
	const struct queue_entry *first = &q->rcpts[idx[0]];
	const char *relayhost = config_get(m->cfg, "relayhost");
	const char *nexthop = first->transport[0] ? first->transport :
	    relayhost[0] ? relayhost : NULL;

	d->m = m;
	d->msg = *q;
	memset(q, 0, sizeof(*q));
	d->idx = idx;
	d->nidx = nidx;
	d->dest = dest;
	dest->active++;
	d->codes = xcalloc(nidx, sizeof(int));
	d->texts = xcalloc(nidx, sizeof(char *));
	d->started = time(NULL);
	d->next = m->active;
	m->active = d;
	m->nactive++;
	if (nexthop != NULL) {
		if (!nexthop_parse(nexthop, &d->host, &d->port, &d->use_mx,
		    &d->lmtp)) {
			d->resolve_error = xasprintf("bad transport '%s'",
			    nexthop);
			delivery_submit(d, JOB_RESOLVE);
			return;
		}
	} else {
		d->host = xstrdup(rcpt_domain(first->address));
		d->port = 25;
		d->use_mx = true;
	}
	delivery_submit(d, JOB_RESOLVE);
}

static void
seen_clear(struct seen *e)
{
	free(e->dests);
	e->dests = NULL;
	e->ndests = 0;
	e->known = false;
}

/* Can the message of e not start now, as it was last read? */
static bool
seen_skip(struct mgr *m, const struct seen *e, time_t now)
{
	if (!e->known || now - e->arrival > (time_t)m->lifetime)
		return false;
	/* flushed: due now, but its destinations' limits still hold (a
	 * flush of 10,000 messages must not read them all per attempt) */
	if (e->due > (long long)now && !e->flush)
		return true;
	for (size_t i = 0; i < e->ndests; i++)
		if (e->dests[i]->active < e->dests[i]->limit)
			return false;
	return true;
}

/* The destination of a recipient: its transport, or its domain. */
static struct dest *
rcpt_dest(struct mgr *m, const struct queue_entry *r)
{
	char *key = r->transport[0] ? xstrdup(r->transport) :
	    xstrdup(rcpt_domain(r->address));
	struct dest *d;

	str_lower(key);
	d = dest_get(m, key);
	free(key);
	return d;
}

static void
seen_learn(struct mgr *m, struct seen *e, const struct queue_msg *q)
{
	seen_clear(e);
	e->known = true;
	e->due = LLONG_MAX;
	e->arrival = q->arrival;
	for (size_t i = 0; i < q->nrcpts; i++) {
		const struct queue_entry *r = &q->rcpts[i];
		struct dest *key;
		size_t j;

		if (r->status != QR_PENDING)
			continue;
		if (r->next < e->due)
			e->due = r->next;
		key = rcpt_dest(m, r);
		for (j = 0; j < e->ndests; j++)
			if (e->dests[j] == key)
				break;
		if (j < e->ndests)
			continue;
		e->dests = xrealloc(e->dests, (e->ndests + 1) *
		    sizeof(*e->dests));
		e->dests[e->ndests++] = key;
	}
}

/* Read the message of entry e and start an attempt for its first
 * destination with room, if one of its recipients is due. */
static void
scan_message(struct mgr *m, struct seen *seen, time_t now)
{
	struct queue_msg q;
	const char *err;
	size_t *idx = NULL, nidx = 0;
	struct dest *dest = NULL;
	bool other = false;	/* recipients due for another destination */
	int r;

	{
		struct hold *h = hold_find(m, seen->id, NULL);

		if (h != NULL && h->until > now && !seen->flush)
			return;
	}
	r = queue_msg_read(m->queue_dir, seen->id, &q, &err);
	if (r <= 0) {
		if (r < 0) {
			log_error("%s", err);
		} else if (!seen->gone) {
			/* removed by someone else (petrel queue delete) */
			seen_clear(seen);
			seen->gone = true;
			m->ngone++;
		}
		return;
	}
	seen_learn(m, seen, &q);
	for (size_t i = 0; i < q.nrcpts; i++) {
		struct queue_entry *e = &q.rcpts[i];
		struct dest *key;

		if (e->status != QR_PENDING)
			continue;
		if (e->next > (long long)now && !seen->flush &&
		    now - q.arrival <= (time_t)m->lifetime)
			continue;
		key = rcpt_dest(m, e);
		if (dest == NULL) {
			if (key->active >= key->limit) {
				other = true;
				continue;
			}
			dest = key;
		} else if (dest != key) {
			other = true;
			continue;	/* another destination: next round */
		}
		idx = xrealloc(idx, (nidx + 1) * sizeof(*idx));
		idx[nidx++] = i;
	}
	if (nidx == 0) {
		queue_msg_clear(&q);
		free(idx);
		return;
	}
	/* its state changes with the attempt: read it again after; a
	 * flush stays with it while recipients for another destination
	 * have not been attempted */
	seen_clear(seen);
	seen->flush = other && seen->flush;
	seen->active = true;
	start_delivery(m, &q, dest, idx, nidx);
}

/* List the queue directory and carry what is known over to the
 * messages still queued. */
static void
mgr_relist(struct mgr *m)
{
	char **ids = NULL;
	size_t n = 0, j = 0;
	const char *err;
	struct seen *cur;

	if (queue_list(m->queue_dir, &ids, &n, &err) < 0) {
		log_error("%s", err);
		return;
	}
	m->relist = false;
	/* both lists sorted by id */
	cur = xcalloc(n > 0 ? n : 1, sizeof(*cur));
	for (size_t i = 0; i < n; i++) {
		while (j < m->nseen && strcmp(m->seen[j].id, ids[i]) < 0)
			seen_clear(&m->seen[j++]);
		if (j < m->nseen && strcmp(m->seen[j].id, ids[i]) == 0 &&
		    !m->seen[j].gone) {
			cur[i] = m->seen[j++];
			continue;
		}
		if (j < m->nseen && strcmp(m->seen[j].id, ids[i]) == 0)
			seen_clear(&m->seen[j++]);
		snprintf(cur[i].id, sizeof(cur[i].id), "%s", ids[i]);
	}
	while (j < m->nseen)
		seen_clear(&m->seen[j++]);
	free(m->seen);
	m->seen = cur;
	m->nseen = m->seen_cap = n;
	m->ngone = 0;
	queue_list_free(&ids, n);
	/* forget the destinations nothing waits for */
	m->dest_gen++;
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < cur[i].ndests; k++)
			cur[i].dests[k]->mark = m->dest_gen;
	dest_sweep(m, false);
}

/* Drop the entries of messages that left the queue. */
static void
seen_compact(struct mgr *m)
{
	size_t k = 0;

	for (size_t i = 0; i < m->nseen; i++) {
		if (m->seen[i].gone) {
			seen_clear(&m->seen[i]);
			continue;
		}
		m->seen[k++] = m->seen[i];
	}
	m->nseen = k;
	m->ngone = 0;
}

/* A message that inotify says arrived: into the sorted array (at the
 * end, nearly always: ids sort by arrival time). */
static void
seen_insert(struct mgr *m, const char *id)
{
	size_t lo = 0, hi = m->nseen;
	struct seen *e;

	if (!queue_id_valid(id))
		return;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(m->seen[mid].id, id);

		if (c == 0) {
			e = &m->seen[mid];
			if (e->gone) {
				/* the same id again (a restored file) */
				seen_clear(e);
				e->gone = false;
				m->ngone--;
			}
			return;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (m->nseen == m->seen_cap) {
		m->seen_cap = m->seen_cap ? m->seen_cap * 2 : 64;
		m->seen = xrealloc(m->seen, m->seen_cap * sizeof(*m->seen));
	}
	memmove(&m->seen[lo + 1], &m->seen[lo],
	    (m->nseen - lo) * sizeof(*m->seen));
	m->nseen++;
	e = &m->seen[lo];
	memset(e, 0, sizeof(*e));
	snprintf(e->id, sizeof(e->id), "%s", id);
}

static void
mgr_scan(struct mgr *m)
{
	time_t now = time(NULL);

	if (m->stopping)
		return;
	if (m->relist)
		mgr_relist(m);
	if (m->ngone > 64 && m->ngone > m->nseen / 2)
		seen_compact(m);
	/* a flush makes every message queued now due, until its attempt
	 * (not only those this scan has room to start) */
	for (size_t i = 0; m->flush && i < m->nseen; i++)
		m->seen[i].flush = true;
	m->flush = false;
	for (size_t i = 0; i < m->nseen && m->nactive < m->max_active; i++) {
		struct seen *e = &m->seen[i];

		if (!e->gone && !e->active && !seen_skip(m, e, now))
			scan_message(m, e, now);
	}
}

static void
mgr_kick(evutil_socket_t fd, short what, void *arg)
{
	mgr_scan(arg);
}

/* A scan at the next turn of the loop: the attempts that end together
 * share it. */
static void
mgr_scan_soon(struct mgr *m)
{
	if (!m->stopping && !event_pending(m->ev_kick, EV_TIMEOUT, NULL))
		event_active(m->ev_kick, EV_TIMEOUT, 0);
}

/* Files in QUEUE_DIR/tmp are what a receiving process that died left
 * half-written: swept at start and then hourly. */
static void
mgr_clean_tmp(struct mgr *m)
{
	time_t now = time(NULL);

	if (m->tmp_cleaned != 0 && now - m->tmp_cleaned < 3600)
		return;
	m->tmp_cleaned = now;
	maildir_clean_tmp(m->queue_dir, "queue");
}

static void
mgr_timer(evutil_socket_t fd, short what, void *arg)
{
	struct mgr *m = arg;

	mgr_clean_tmp(m);
	m->relist = true;
	mgr_scan(m);
}

/* New messages in incoming/ (moved there whole): into the array by name;
 * lost events (the kernel's queue overflowed) mean a listing. */
static void
mgr_inotify(evutil_socket_t fd, short what, void *arg)
{
	struct mgr *m = arg;
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n; ) {
			const struct inotify_event *ev = (const void *)p;

			if (ev->mask & IN_Q_OVERFLOW)
				m->relist = true;
			else if (ev->len > 0 && !m->relist)
				seen_insert(m, ev->name);
			p += sizeof(*ev) + ev->len;
		}
	}
	mgr_scan(m);
}

static void
mgr_flush(evutil_socket_t sig, short what, void *arg)
{
	struct mgr *m = arg;

	log_info("flush requested");
	m->flush = true;
	m->relist = true;
	mgr_scan(m);
}

static void
mgr_stop(evutil_socket_t sig, short what, void *arg)
{
	struct mgr *m = arg;

	m->stopping = true;
	event_base_loopbreak(m->base);
}

int
queue_manager_run(struct petrel_ctx *ctx)
{
	struct mgr m;
	struct timeval tv;
	const char *err;
	char *pidpath;
	FILE *fp;

	memset(&m, 0, sizeof(m));
	m.ctx = ctx;
	m.cfg = ctx->cfg;
	m.queue_dir = xstrdup(config_get(ctx->cfg, "queue_dir"));
	m.hostname = config_get(ctx->cfg, "hostname");
	m.retry_min = (unsigned)config_get_uint(ctx->cfg, "queue_retry_min");
	m.retry_max = (unsigned)config_get_uint(ctx->cfg, "queue_retry_max");
	m.lifetime = (unsigned)config_get_uint(ctx->cfg, "queue_lifetime");
	m.scan_interval = (unsigned)config_get_uint(ctx->cfg,
	    "queue_scan_interval");
	m.max_active = (unsigned)config_get_uint(ctx->cfg, "queue_concurrency");
	m.max_per_dest = (unsigned)config_get_uint(ctx->cfg,
	    "queue_destination_concurrency");
	m.timeout = (unsigned)config_get_uint(ctx->cfg, "smtp_timeout");
	if (m.max_active == 0)
		m.max_active = 1;
	m.max_per_lmtp = (unsigned)config_get_uint(ctx->cfg,
	    "lmtp_destination_concurrency");
	if (m.max_per_dest == 0)
		m.max_per_dest = 1;
	if (m.max_per_lmtp == 0)
		m.max_per_lmtp = 1;
	if (queue_dirs_make(m.queue_dir, &err) < 0)
		fatal("%s", err);
	m.tls = tls_client_new(&err);
	if (m.tls == NULL)
		log_warn("outbound STARTTLS unavailable: %s", err);
	{
		const char *ca = config_get(ctx->cfg, "proxy_tls_ca");

		if (ca[0] != '\0') {
			m.lmtp_verify = true;
			m.lmtp_tls = tls_client_new_verify(ca, &err);
			if (m.lmtp_tls == NULL) {
				m.lmtp_tls_error = xasprintf("proxy_tls_ca: "
				    "%s", err);
				log_error("LMTP deliveries deferred: %s",
				    m.lmtp_tls_error);
			}
		}
	}
	m.pkix_tls = tls_client_new_verify(config_get(ctx->cfg,
	    "smtp_tls_ca"), &err);
	if (m.pkix_tls == NULL) {
		m.pkix_tls_error = xasprintf("smtp_tls_ca: %s", err);
		log_error("REQUIRETLS messages deferred: %s",
		    m.pkix_tls_error);
	}
	if (strcmp(config_get(ctx->cfg, "tls_rpt_reports"), "yes") == 0)
		m.tls_rpt_db = xasprintf("%s/state.db", m.queue_dir);
	if (strcmp(config_get(ctx->cfg, "mta_sts"), "on") == 0) {
		sts_cache_init(&m);
		if (m.pkix_tls == NULL)
			log_warn("mta_sts: no policy can be fetched (%s)",
			    m.pkix_tls_error);
	}
	{
		char *uerr = NULL;

		m.ub = dnsq_ctx_new(config_get(ctx->cfg, "dns_resolver"),
		    &uerr);
		if (m.ub == NULL)
			fatal("%s", uerr);
	}
	if (strcmp(config_get(ctx->cfg, "dane"), "opportunistic") == 0) {
		/* RFC 7672 needs DNSSEC: the MX, address and TLSA answers
		 * validated from the trust anchor (Postfix too falls back
		 * to opportunistic TLS, with a warning, without one) */
		const char *ta = config_get(ctx->cfg, "dnssec_trust_anchor");
		char *uerr = NULL;

		if (!tls_client_dane(m.tls)) {
			log_warn("dane: OpenSSL's DANE support is unavailable; "
			    "opportunistic TLS only");
		} else if (dnsq_ctx_trust_anchor(m.ub, ta, &uerr) < 0) {
			log_warn("dane: dnssec_trust_anchor: %s; opportunistic "
			    "TLS only", uerr);
			free(uerr);
			/* that context is spoilt: a plain one */
			ub_ctx_delete(m.ub);
			m.ub = dnsq_ctx_new(config_get(ctx->cfg,
			    "dns_resolver"), &uerr);
			if (m.ub == NULL)
				fatal("%s", uerr);
		} else {
			m.dane = true;
		}
	}
	{
		char *uerr = NULL;

		/* the job threads' lookups (mx.c) through libunbound's
		 * asynchronous mode; without the thread, ub_resolve */
		m.ub_pump = dnsq_pump_start(m.ub, &uerr);
		if (m.ub_pump == NULL) {
			log_warn("DNS: %s", uerr);
			free(uerr);
		}
	}
	m.base = event_base_new();
	if (m.base == NULL)
		fatal("cannot create the event loop");
	m.jobs = jobs_create(m.base, 4, authc_thread_init, authc_thread_deinit,
	    ctx->cfg);
	m.nc = node_counters_inherit(NODE_ROLE_QUEUE);
	jobs_on_waiting(m.jobs, jobs_waiting, NULL);

	pidpath = xasprintf("%s/manager.pid", m.queue_dir);
	fp = fopen(pidpath, "w");
	if (fp != NULL) {
		fprintf(fp, "%ld\n", (long)getpid());
		fclose(fp);
	}
	m.ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (m.ifd >= 0) {
		char *inc = xasprintf("%s/incoming", m.queue_dir);

		if (inotify_add_watch(m.ifd, inc, IN_MOVED_TO) < 0)
			log_warn_errno("inotify %s", inc);
		free(inc);
		m.ev_inotify = event_new(m.base, m.ifd, EV_READ | EV_PERSIST,
		    mgr_inotify, &m);
		event_add(m.ev_inotify, NULL);
	}
	m.ev_scan = event_new(m.base, -1, EV_PERSIST, mgr_timer, &m);
	tv.tv_sec = m.scan_interval ? m.scan_interval : 60;
	tv.tv_usec = 0;
	event_add(m.ev_scan, &tv);
	m.ev_kick = event_new(m.base, -1, 0, mgr_kick, &m);
	m.ev_usr1 = evsignal_new(m.base, SIGUSR1, mgr_flush, &m);
	m.ev_term = evsignal_new(m.base, SIGTERM, mgr_stop, &m);
	event_add(m.ev_usr1, NULL);
	event_add(m.ev_term, NULL);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	log_info("queue manager started (queue %s)", m.queue_dir);
	mgr_clean_tmp(&m);
	m.relist = true;
	mgr_scan(&m);
	event_base_dispatch(m.base);

	/* Attempts in flight are abandoned: their recipients stay pending
	 * and are tried again by the next manager. */
	m.stopping = true;
	for (struct delivery *d = m.active, *next; d != NULL; d = next) {
		next = d->next;
		if (!d->job_pending)
			delivery_free(d);
	}
	jobs_destroy(&m.jobs);	/* the rest free themselves */
	while (m.active != NULL)
		delivery_free(m.active);
	conn_cache_clear(&m);
	unlink(pidpath);
	free(pidpath);
	if (m.ev_inotify != NULL)
		event_free(m.ev_inotify);
	if (m.ifd >= 0)
		close(m.ifd);
	event_free(m.ev_scan);
	event_free(m.ev_kick);
	event_free(m.ev_usr1);
	event_free(m.ev_term);
	event_base_free(m.base);
	dnsq_pump_stop(&m.ub_pump);	/* the job threads are gone */
	if (m.ub != NULL)
		ub_ctx_delete(m.ub);
	tls_client_free(&m.tls);
	tls_client_free(&m.lmtp_tls);
	sts_cache_free(&m);
	/* what the sessions left for the TLS reports */
	tls_rpt_flush();
	free(m.tls_rpt_db);
	tls_client_free(&m.pkix_tls);
	free(m.pkix_tls_error);
	free(m.lmtp_tls_error);
	node_counters_free(&m.nc);
	free(m.queue_dir);
	for (size_t i = 0; i < m.nseen; i++)
		seen_clear(&m.seen[i]);
	free(m.seen);
	dest_sweep(&m, true);
	while (m.holds != NULL) {
		struct hold *h = m.holds;

		m.holds = h->next;
		free(h->id);
		free(h);
	}
	log_info("queue manager stopped");
	return 0;
}
