/*
 * manager.c: the outbound queue manager and its SMTP client.
 *
 * One process (role "queue" under the master). It watches
 * QUEUE_DIR/incoming with inotify and also rescans every
 * queue_scan_interval seconds; SIGUSR1 (petrel queue flush) makes every
 * deferred recipient due now. A message is attempted one destination at
 * a time (recipients grouped by transport, or by domain for MX delivery);
 * attempts in flight are bounded overall and per destination.
 *
 * The SMTP client (RFC 5321) uses opportunistic STARTTLS (RFC 3207: no
 * certificate check, as Postfix's "may" level), PIPELINING (RFC 2920)
 * when offered, and converts the stored LF message to CRLF with dot
 * stuffing. 2xx: sent; 4xx: deferred with exponential back-off; 5xx:
 * bounced at once; still deferred after queue_lifetime: bounced. Bounces
 * are RFC 3464 reports (queue/dsn.c). Blocking work (DNS, the state
 * file's fsync, bounce delivery) runs on job threads.
 *
 * Trust: remote replies are parsed strictly and bounded (lib/smtp/reply.c:
 * SMTP_LINE_MAX per line, SMTP_REPLY_LINES_MAX lines; a malformed one is a
 * 451) and only ever logged or quoted in a bounce.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <time.h>
#include <unbound.h>
#include <unistd.h>

#include "lib/config/context.h"
#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/dir/dir.h"
#include "lib/io/jobs.h"
#include "lib/maildir/maildir.h"
#include "lib/smtp/reply.h"
#include "lib/queue/queue.h"
#include "lib/tls/tls.h"
#include "queue/manager.h"

#define MAX_ADDRS 8

enum cstate {
	C_CONNECT, C_GREETING, C_EHLO, C_HELO, C_STARTTLS, C_MAIL, C_RCPT,
	C_DATA, C_BODY, C_QUIT, C_DONE
};

struct mgr;

struct delivery {
	struct mgr *m;
	struct delivery *next;
	struct queue_msg msg;
	size_t *idx;		/* recipients (indexes into msg.rcpts) */
	size_t nidx;
	char *dest;		/* concurrency key */
	char *host;		/* what to resolve */
	unsigned port;
	bool use_mx;
	/* resolved */
	struct sockaddr_storage addrs[MAX_ADDRS];
	socklen_t addrlen[MAX_ADDRS];
	char names[MAX_ADDRS][300];
	size_t naddrs, cur;
	char *resolve_error;
	bool resolve_permanent;
	/* session */
	struct bufferevent *bev;
	enum cstate state;
	bool pipelining, starttls, tls, esmtp;
	size_t rcpt_sent, rcpt_replied, accepted;
	int *codes;		/* per recipient: 0 = none yet */
	char **texts;
	char *relay;		/* "host[ip]:port" for logs */
	time_t started;
	struct job job;
	int job_kind;
	bool job_pending;
	time_t hold_until;	/* the state could not be written: not
				   before this (set by the finish job) */
};

struct mgr {
	struct petrel_ctx *ctx;
	const struct config *cfg;
	struct event_base *base;
	struct jobs *jobs;
	struct tls_client *tls;
	char *queue_dir;
	const char *hostname;
	struct event *ev_scan, *ev_inotify, *ev_usr1, *ev_term;
	int ifd;
	struct delivery *active;
	unsigned nactive;
	bool stopping, flush;
	time_t tmp_cleaned;	/* last sweep of QUEUE_DIR/tmp */
	unsigned retry_min, retry_max, lifetime, scan_interval;
	unsigned max_active, max_per_dest, timeout;
	struct ub_ctx *ub;
	struct hold *holds;
};

/*
 * Messages whose state file could not be rewritten after an attempt (disk
 * full): the file on disk still says "due now", so without this the next
 * scan would try again at once, over and over. The back-off is kept here
 * instead, in memory, growing with each failure, until a state write
 * works again (or the manager restarts, which retries once).
 */
struct hold {
	struct hold *next;
	char *id;
	time_t until;
	unsigned fails;
};

enum { JOB_RESOLVE, JOB_FINISH };

static void delivery_connect(struct delivery *d);
static void delivery_finish(struct delivery *d, int code, const char *text);
static void mgr_scan(struct mgr *m);

/* ---- helpers ---- */

static unsigned
count_dest(struct mgr *m, const char *dest)
{
	unsigned n = 0;

	for (struct delivery *d = m->active; d != NULL; d = d->next)
		if (strcmp(d->dest, dest) == 0)
			n++;
	return n;
}

static bool
msg_active(struct mgr *m, const char *id)
{
	for (struct delivery *d = m->active; d != NULL; d = d->next)
		if (strcmp(d->msg.id, id) == 0)
			return true;
	return false;
}

static const char *
rcpt_domain(const char *address)
{
	const char *at = strrchr(address, '@');

	return at ? at + 1 : address;
}

/* Parse "smtp:[host]:port", "smtp:host:port", "smtp:host", "[host]". */
static bool
parse_nexthop(const char *t, char **host_r, unsigned *port_r, bool *mx_r)
{
	const char *p = t, *end;
	char *host;

	if (strncmp(p, "smtp:", 5) == 0)
		p += 5;
	else if (strncmp(p, "relay:", 6) == 0)
		p += 6;
	*port_r = 25;
	*mx_r = true;
	if (*p == '[') {
		end = strchr(p, ']');
		if (end == NULL)
			return false;
		host = xstrndup(p + 1, (size_t)(end - p - 1));
		*mx_r = false;
		p = end + 1;
	} else {
		end = strrchr(p, ':');
		if (end == NULL)
			end = p + strlen(p);
		host = xstrndup(p, (size_t)(end - p));
		p = end;
	}
	if (*p == ':') {
		unsigned long port = strtoul(p + 1, NULL, 10);

		if (port == 0 || port > 65535) {
			free(host);
			return false;
		}
		*port_r = (unsigned)port;
	}
	if (host[0] == '\0') {
		free(host);
		return false;
	}
	*host_r = host;
	return true;
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

static unsigned backoff(struct mgr *m, unsigned attempts);

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
	if (d->bev != NULL)
		bufferevent_free(d->bev);
	for (size_t i = 0; i < d->nidx; i++)
		free(d->texts[i]);
	free(d->texts);
	free(d->codes);
	free(d->idx);
	free(d->dest);
	free(d->host);
	free(d->relay);
	free(d->resolve_error);
	queue_msg_clear(&d->msg);
	free(d);
}

/* ---- resolution (job thread) ---- */

static int
add_host_addrs(struct delivery *d, const char *host, unsigned port)
{
	struct addrinfo hints, *res, *ai;
	char portstr[8];
	int r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%u", port);
	r = getaddrinfo(host, portstr, &hints, &res);
	if (r != 0)
		return r == EAI_NONAME ? -2 : -1;
	for (ai = res; ai != NULL && d->naddrs < MAX_ADDRS; ai = ai->ai_next) {
		char ip[INET6_ADDRSTRLEN] = "?";

		if (ai->ai_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)
			    ai->ai_addr)->sin_addr, ip, sizeof(ip));
		else if (ai->ai_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)
			    ai->ai_addr)->sin6_addr, ip, sizeof(ip));
		else
			continue;
		memcpy(&d->addrs[d->naddrs], ai->ai_addr, ai->ai_addrlen);
		d->addrlen[d->naddrs] = ai->ai_addrlen;
		snprintf(d->names[d->naddrs], sizeof(d->names[0]), "%s[%s]:%u",
		    host, ip, port);
		d->naddrs++;
	}
	freeaddrinfo(res);
	return 0;
}

/* Decode a wire-format domain name from MX rdata. */
static bool
wire_name(const unsigned char *p, size_t len, char *out, size_t outlen)
{
	size_t o = 0, i = 0;

	while (i < len && p[i] != 0) {
		size_t l = p[i++];

		if (l > 63 || i + l > len || o + l + 2 > outlen)
			return false;
		if (o > 0)
			out[o++] = '.';
		memcpy(out + o, p + i, l);
		o += l;
		i += l;
	}
	out[o] = '\0';
	return true;
}

static void
resolve_run(struct delivery *d)
{
	struct ub_result *res = NULL;
	struct { unsigned pref; char name[256]; } mx[16];
	size_t nmx = 0;
	int r;

	if (!d->use_mx) {
		if (add_host_addrs(d, d->host, d->port) < 0 || d->naddrs == 0)
			d->resolve_error = xasprintf("cannot resolve %s",
			    d->host);
		return;
	}
	if (d->m->ub == NULL ||
	    (r = ub_resolve(d->m->ub, d->host, 15 /* MX */, 1, &res)) != 0) {
		d->resolve_error = xasprintf("MX lookup for %s failed",
		    d->host);
		return;
	}
	if (res->nxdomain) {
		d->resolve_error = xasprintf("550 5.1.2 domain %s does not exist",
		    d->host);
		d->resolve_permanent = true;
		ub_resolve_free(res);
		return;
	}
	for (int i = 0; res->havedata && res->data[i] != NULL && nmx < 16; i++) {
		const unsigned char *p = (const unsigned char *)res->data[i];
		size_t len = (size_t)res->len[i];

		if (len < 3)
			continue;
		mx[nmx].pref = (unsigned)(p[0] << 8 | p[1]);
		if (!wire_name(p + 2, len - 2, mx[nmx].name,
		    sizeof(mx[nmx].name)))
			continue;
		nmx++;
	}
	ub_resolve_free(res);
	/* RFC 7505: a null MX means the domain takes no mail. */
	if (nmx == 1 && mx[0].name[0] == '\0') {
		d->resolve_error = xasprintf("556 5.1.10 domain %s does not "
		    "accept mail (null MX)", d->host);
		d->resolve_permanent = true;
		return;
	}
	/* Sort by preference (insertion sort: at most 16). */
	for (size_t i = 1; i < nmx; i++)
		for (size_t j = i; j > 0 && mx[j].pref < mx[j - 1].pref; j--) {
			__typeof__(mx[0]) t = mx[j];

			mx[j] = mx[j - 1];
			mx[j - 1] = t;
		}
	for (size_t i = 0; i < nmx; i++)
		add_host_addrs(d, mx[i].name, d->port);
	if (nmx == 0)	/* RFC 5321 5.1: the implicit MX */
		add_host_addrs(d, d->host, d->port);
	if (d->naddrs == 0)
		d->resolve_error = xasprintf("no address for %s", d->host);
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
finish_run(struct delivery *d, struct dir *dir)
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

		free(e->last);
		e->last = xstrdup(text);
		e->attempts++;
		if (code >= 200 && code < 300) {
			e->status = QR_SENT;
			status = "sent";
		} else if (code >= 500) {
			e->status = QR_BOUNCED;
			fresh[d->idx[k]] = true;
			status = "bounced";
		} else {
			e->next = (long long)now + backoff(m, e->attempts);
			status = "deferred";
		}
		log_info("%s: to=<%s>, relay=%s, delay=%lld, attempts=%u, "
		    "status=%s (%s)", q->id, e->address,
		    d->relay ? d->relay : "none", (long long)(now - q->arrival),
		    e->attempts, status, text);
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
			log_info("%s: to=<%s>, status=expired, returned to "
			    "sender", q->id, e->address);
		}
	}
	/* The sender hears of failures now, not when the last deferred
	 * recipient is done (as Postfix does). */
	if (dsn_bounce(dir, m->cfg, q, fresh, m->hostname) < 0) {
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
	if (queue_remove(m->queue_dir, q->id) < 0)
		log_error_errno("%s: cannot remove from the queue", q->id);
	else
		log_info("%s: removed", q->id);
}

static void
delivery_job_run(struct job *job, void *state)
{
	struct delivery *d = (struct delivery *)((char *)job -
	    offsetof(struct delivery, job));

	if (d->job_kind == JOB_RESOLVE)
		resolve_run(d);
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
		if (!m->stopping)
			mgr_scan(m);
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

static void
submit(struct delivery *d, int kind)
{
	d->job_pending = true;
	d->job_kind = kind;
	d->job.run = delivery_job_run;
	d->job.done = delivery_job_done;
	jobs_submit(d->m->jobs, &d->job);
}

/* Record the outcome for every recipient still without a reply, close
 * the connection and write the state. */
static void
delivery_finish(struct delivery *d, int code, const char *text)
{
	for (size_t k = 0; k < d->nidx; k++) {
		if (code == 0) {
			/* A normal end: whoever got no answer is deferred. */
			if (d->codes[k] == 0) {
				d->codes[k] = 451;
				d->texts[k] = xstrdup("no reply for this "
				    "recipient");
			}
			continue;
		}
		/* A failure: it is the outcome of every recipient without
		 * one, and of those whose RCPT was accepted but whose
		 * message was not. */
		if (d->codes[k] != 0 && !(d->codes[k] >= 200 &&
		    d->codes[k] < 300))
			continue;
		d->codes[k] = code;
		free(d->texts[k]);
		d->texts[k] = xstrdup(text);
	}
	if (d->bev != NULL) {
		bufferevent_free(d->bev);
		d->bev = NULL;
	}
	d->state = C_DONE;
	submit(d, JOB_FINISH);
}

/* ---- the SMTP client ---- */

__attribute__((format(printf, 2, 3)))
static void
send_line(struct delivery *d, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(d->bev);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

static void client_read(struct bufferevent *bev, void *arg);
static void client_event(struct bufferevent *bev, short what, void *arg);

static void
send_body(struct delivery *d)
{
	struct evbuffer *out = bufferevent_get_output(d->bev);
	FILE *fp = fopen(d->msg.path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (fp == NULL) {
		delivery_finish(d, 451, "queue file vanished");
		return;
	}
	fseek(fp, d->msg.body_offset, SEEK_SET);
	while ((n = getline(&line, &cap, fp)) > 0) {
		size_t len = (size_t)n;

		if (line[len - 1] == '\n')
			len--;
		if (len > 0 && line[0] == '.')
			evbuffer_add(out, ".", 1);
		evbuffer_add(out, line, len);
		evbuffer_add(out, "\r\n", 2);
	}
	free(line);
	fclose(fp);
	evbuffer_add(out, ".\r\n", 3);
}

static void
send_envelope(struct delivery *d)
{
	send_line(d, "MAIL FROM:<%s>", d->msg.sender);
	d->state = C_MAIL;
	if (!d->pipelining)
		return;
	for (size_t k = 0; k < d->nidx; k++)
		send_line(d, "RCPT TO:<%s>", d->msg.rcpts[d->idx[k]].address);
	d->rcpt_sent = d->nidx;
	send_line(d, "DATA");
}

/* One complete reply: code and text (all lines, joined). */
static void
handle_reply(struct delivery *d, int code, const char *text)
{
	switch (d->state) {
	case C_GREETING:
		if (code != 220) {
			delivery_finish(d, code >= 500 ? code : 451, text);
			return;
		}
		send_line(d, "EHLO %s", d->m->hostname);
		d->state = C_EHLO;
		return;
	case C_EHLO:
		if (code != 250) {
			send_line(d, "HELO %s", d->m->hostname);
			d->state = C_HELO;
			return;
		}
		d->esmtp = true;
		if (d->starttls && !d->tls && d->m->tls != NULL) {
			send_line(d, "STARTTLS");
			d->state = C_STARTTLS;
			return;
		}
		send_envelope(d);
		return;
	case C_HELO:
		if (code != 250) {
			delivery_finish(d, code >= 500 ? code : 451, text);
			return;
		}
		d->pipelining = false;
		send_envelope(d);
		return;
	case C_STARTTLS:
		if (code == 220) {
			struct bufferevent *tb = tls_bev_connect_starttls(
			    d->m->tls, d->m->base, d->bev, d->host);

			if (tb == NULL) {
				delivery_finish(d, 451, "TLS setup failed");
				return;
			}
			d->bev = tb;
			d->tls = true;
			d->pipelining = d->starttls = false;
			bufferevent_setcb(d->bev, client_read, NULL,
			    client_event, d);
			bufferevent_enable(d->bev, EV_READ | EV_WRITE);
			send_line(d, "EHLO %s", d->m->hostname);
			d->state = C_EHLO;
			return;
		}
		/* Opportunistic: go on in plaintext. */
		send_envelope(d);
		return;
	case C_MAIL:
		if (code != 250) {
			if (d->pipelining)
				d->state = C_RCPT;	/* eat the rest */
			for (size_t k = 0; k < d->nidx; k++) {
				d->codes[k] = code;
				d->texts[k] = xstrdup(text);
			}
			if (!d->pipelining) {
				delivery_finish(d, code, text);
				return;
			}
			d->rcpt_replied = 0;
			return;
		}
		d->state = C_RCPT;
		if (!d->pipelining) {
			send_line(d, "RCPT TO:<%s>",
			    d->msg.rcpts[d->idx[0]].address);
			d->rcpt_sent = 1;
		}
		return;
	case C_RCPT: {
		size_t k = d->rcpt_replied++;

		if (d->codes[k] == 0) {
			d->codes[k] = code;
			d->texts[k] = xstrdup(text);
			if (code >= 200 && code < 300)
				d->accepted++;
		}
		if (d->rcpt_replied < d->nidx) {
			if (!d->pipelining) {
				send_line(d, "RCPT TO:<%s>",
				    d->msg.rcpts[d->idx[d->rcpt_replied]].address);
				d->rcpt_sent++;
			}
			return;
		}
		if (!d->pipelining) {
			if (d->accepted == 0) {
				send_line(d, "QUIT");
				delivery_finish(d, 0, "");
				return;
			}
			send_line(d, "DATA");
		}
		d->state = C_DATA;
		return;
	}
	case C_DATA:
		if (code != 354) {
			if (d->accepted > 0)
				delivery_finish(d, code >= 400 ? code : 451,
				    text);
			else
				delivery_finish(d, 0, "");
			return;
		}
		if (d->accepted == 0) {
			/* RFC 2920 3.1: nothing accepted, end the data. */
			evbuffer_add(bufferevent_get_output(d->bev), ".\r\n", 3);
			d->state = C_QUIT;
			return;
		}
		send_body(d);
		d->state = C_BODY;
		return;
	case C_BODY:
		send_line(d, "QUIT");
		d->state = C_QUIT;
		/* The outcome for every accepted recipient. */
		for (size_t k = 0; k < d->nidx; k++)
			if (d->codes[k] >= 200 && d->codes[k] < 300) {
				d->codes[k] = code;
				free(d->texts[k]);
				d->texts[k] = xstrdup(text);
			}
		delivery_finish(d, 0, "");
		return;
	case C_QUIT:
		delivery_finish(d, 0, "");
		return;
	default:
		return;
	}
}

static void
client_read(struct bufferevent *bev, void *arg)
{
	struct delivery *d = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	/* Whole replies only. SMTP_REPLY_MAX octets always hold a complete
	 * reply or show a malformed one, so this never waits for more
	 * while holding that much. After STARTTLS, d->bev is the TLS
	 * filter over bev: what is left in bev's buffer came in plaintext
	 * before the handshake and is never read as a reply (RFC 3207 6). */
	while (d->state != C_DONE && d->bev == bev) {
		size_t have = evbuffer_get_length(in), used;
		struct smtp_reply r;
		const char *err;
		int n;

		if (have == 0)
			return;
		if (have > SMTP_REPLY_MAX)
			have = SMTP_REPLY_MAX;
		n = smtp_reply_parse((const char *)evbuffer_pullup(in,
		    (ev_ssize_t)have), have, &r, &used, &err);
		if (n == 0)
			return;
		if (n < 0) {
			char *why = xasprintf("malformed reply from server "
			    "(%s)", err);

			delivery_finish(d, 451, why);
			free(why);
			return;
		}
		evbuffer_drain(in, used);
		if (d->state == C_EHLO) {
			if (smtp_reply_ehlo_has(&r, "PIPELINING"))
				d->pipelining = true;
			if (smtp_reply_ehlo_has(&r, "STARTTLS"))
				d->starttls = true;
		}
		handle_reply(d, r.code, r.text);
		smtp_reply_clear(&r);
	}
}

static void
client_event(struct bufferevent *bev, short what, void *arg)
{
	struct delivery *d = arg;
	char why[700];

	if (what & BEV_EVENT_CONNECTED) {
		if (d->state == C_CONNECT) {
			d->state = C_GREETING;
			free(d->relay);
			d->relay = xstrdup(d->names[d->cur]);
		}
		return;
	}
	if (d->state == C_CONNECT && d->cur + 1 < d->naddrs) {
		bufferevent_free(d->bev);
		d->bev = NULL;
		d->cur++;
		delivery_connect(d);
		return;
	}
	if (d->state == C_QUIT) {
		delivery_finish(d, 0, "");
		return;
	}
	snprintf(why, sizeof(why), "%s to %s: %s",
	    d->state == C_CONNECT ? "connect" : "lost connection",
	    d->names[d->cur], what & BEV_EVENT_TIMEOUT ? "timed out" :
	    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	delivery_finish(d, 451, why);
}

static void
delivery_connect(struct delivery *d)
{
	struct timeval tv = { (time_t)d->m->timeout, 0 };

	d->state = C_CONNECT;
	d->bev = bufferevent_socket_new(d->m->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (d->bev == NULL) {
		delivery_finish(d, 451, "out of sockets");
		return;
	}
	bufferevent_setcb(d->bev, client_read, NULL, client_event, d);
	bufferevent_set_timeouts(d->bev, &tv, &tv);
	bufferevent_enable(d->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(d->bev,
	    (struct sockaddr *)&d->addrs[d->cur], (int)d->addrlen[d->cur]) < 0)
		client_event(d->bev, BEV_EVENT_ERROR, d);
}

/* ---- scheduling ---- */

static void
start_delivery(struct mgr *m, struct queue_msg *q, const char *dest,
    size_t *idx, size_t nidx)
{
	struct delivery *d = xmalloc(sizeof(*d));
	const struct queue_entry *first = &q->rcpts[idx[0]];
	const char *relayhost = config_get(m->cfg, "relayhost");
	const char *nexthop = first->transport[0] ? first->transport :
	    relayhost[0] ? relayhost : NULL;

	d->m = m;
	d->msg = *q;
	memset(q, 0, sizeof(*q));
	d->idx = idx;
	d->nidx = nidx;
	d->dest = xstrdup(dest);
	d->codes = xcalloc(nidx, sizeof(int));
	d->texts = xcalloc(nidx, sizeof(char *));
	d->started = time(NULL);
	d->next = m->active;
	m->active = d;
	m->nactive++;
	if (nexthop != NULL) {
		if (!parse_nexthop(nexthop, &d->host, &d->port, &d->use_mx)) {
			d->resolve_error = xasprintf("bad transport '%s'",
			    nexthop);
			submit(d, JOB_RESOLVE);
			return;
		}
	} else {
		d->host = xstrdup(rcpt_domain(first->address));
		d->port = 25;
		d->use_mx = true;
	}
	submit(d, JOB_RESOLVE);
}

static void
scan_message(struct mgr *m, const char *id, time_t now)
{
	struct queue_msg q;
	const char *err;
	size_t *idx = NULL, nidx = 0;
	char *dest = NULL;
	int r;

	{
		struct hold *h = hold_find(m, id, NULL);

		if (h != NULL && h->until > now && !m->flush)
			return;
	}
	r = queue_msg_read(m->queue_dir, id, &q, &err);
	if (r <= 0) {
		if (r < 0)
			log_error("%s", err);
		return;
	}
	for (size_t i = 0; i < q.nrcpts; i++) {
		struct queue_entry *e = &q.rcpts[i];
		char *key;

		if (e->status != QR_PENDING)
			continue;
		if (e->next > (long long)now && !m->flush &&
		    now - q.arrival <= (time_t)m->lifetime)
			continue;
		key = e->transport[0] ? xstrdup(e->transport) :
		    xstrdup(rcpt_domain(e->address));
		str_lower(key);
		if (dest == NULL) {
			if (count_dest(m, key) >= m->max_per_dest) {
				free(key);
				continue;
			}
			dest = key;
		} else if (strcmp(dest, key) != 0) {
			free(key);
			continue;	/* another destination: next round */
		} else {
			free(key);
		}
		idx = xrealloc(idx, (nidx + 1) * sizeof(*idx));
		idx[nidx++] = i;
	}
	if (nidx == 0) {
		queue_msg_clear(&q);
		free(idx);
		return;
	}
	start_delivery(m, &q, dest, idx, nidx);
	free(dest);
}

static void
mgr_scan(struct mgr *m)
{
	char **ids = NULL;
	size_t n = 0;
	const char *err;
	time_t now = time(NULL);

	if (m->stopping)
		return;
	if (queue_list(m->queue_dir, &ids, &n, &err) < 0) {
		log_error("%s", err);
		return;
	}
	for (size_t i = 0; i < n && m->nactive < m->max_active; i++)
		if (!msg_active(m, ids[i]))
			scan_message(m, ids[i], now);
	queue_list_free(&ids, n);
	m->flush = false;
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
	mgr_clean_tmp(arg);
	mgr_scan(arg);
}

static void
mgr_inotify(evutil_socket_t fd, short what, void *arg)
{
	char buf[4096];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	mgr_scan(arg);
}

static void
mgr_flush(evutil_socket_t sig, short what, void *arg)
{
	struct mgr *m = arg;

	log_info("flush requested");
	m->flush = true;
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
	if (m.max_per_dest == 0)
		m.max_per_dest = 1;
	if (queue_dirs_make(m.queue_dir, &err) < 0)
		fatal("%s", err);
	m.tls = tls_client_new(&err);
	if (m.tls == NULL)
		log_warn("outbound STARTTLS unavailable: %s", err);
	m.ub = ub_ctx_create();
	if (m.ub != NULL) {
		ub_ctx_resolvconf(m.ub, NULL);
		ub_ctx_hosts(m.ub, NULL);
	}
	m.base = event_base_new();
	if (m.base == NULL)
		fatal("cannot create the event loop");
	m.jobs = jobs_create(m.base, 4, dir_thread_init, dir_thread_deinit,
	    ctx->cfg);

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
	m.ev_usr1 = evsignal_new(m.base, SIGUSR1, mgr_flush, &m);
	m.ev_term = evsignal_new(m.base, SIGTERM, mgr_stop, &m);
	event_add(m.ev_usr1, NULL);
	event_add(m.ev_term, NULL);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	log_info("queue manager started (queue %s)", m.queue_dir);
	mgr_clean_tmp(&m);
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
	unlink(pidpath);
	free(pidpath);
	if (m.ev_inotify != NULL)
		event_free(m.ev_inotify);
	if (m.ifd >= 0)
		close(m.ifd);
	event_free(m.ev_scan);
	event_free(m.ev_usr1);
	event_free(m.ev_term);
	event_base_free(m.base);
	if (m.ub != NULL)
		ub_ctx_delete(m.ub);
	tls_client_free(&m.tls);
	free(m.queue_dir);
	while (m.holds != NULL) {
		struct hold *h = m.holds;

		m.holds = h->next;
		free(h->id);
		free(h);
	}
	log_info("queue manager stopped");
	return 0;
}
