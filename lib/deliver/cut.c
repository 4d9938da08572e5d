/*
 * cut.c: cut-through of lmtp: recipients from the delivery job (see
 * cut.h).
 *
 * The session is the queue's LMTP session (queue/outbound.c) done with
 * blocking calls: greeting, LHLO, STARTTLS when the queue would use it
 * (always, the certificate verified, when proxy_tls_ca is set; else
 * when offered, unverified), MAIL FROM with the queue file's sender and
 * no parameters (the queue sends none on an lmtp: leg), one RCPT per
 * recipient, DATA with the stored message sent as the queue sends it
 * (CRLF, dot-stuffed, a bare CR a line end), then one reply per accepted
 * recipient (RFC 2033 4.2). When the backend offers PIPELINING and
 * CHUNKING, a message up to CUT_BDAT_MAX goes instead as one BDAT LAST
 * in the same write as the envelope (RFC 3030, the same CRLF form, not
 * dot-stuffed), and the replies are read once: one wait for the backend
 * per message instead of two. Only a 2xx after the data counts: any other
 * outcome, a timeout or a lost connection leaves the recipient to the
 * queue, which retries or bounces it as it always did. A kept connection
 * that fails before the message went out is tried once more on a new
 * one; after that, nothing is retried here.
 *
 * Trust: the backend's replies are bounded (lib/smtp/lmtp_client) and
 * only logged; the addresses and the message are the client's, passed
 * on as they are.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unbound.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/clock.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/deliver/cut.h"
#include "lib/queue/queue.h"
#include "lib/session/counters.h"
#include "lib/smtp/lmtp_client.h"
#include "lib/tls/tls.h"
#include "lib/trust/dnsq.h"

/* Seconds a kept connection waits for the next message: the queue's
 * CACHE_IDLE (queue/outbound.c). */
#define CUT_IDLE 2
/* Kept connections per job thread (next hops). */
#define CUT_KEPT_MAX 8
/* Seconds one step of a handover (connect, a reply) may take at most,
 * whatever smtp_timeout says: past it the queue delivers instead. */
#define CUT_STEP_MAX 30
/* A message up to this size goes in one BDAT LAST pipelined with the
 * envelope when the backend offers CHUNKING and PIPELINING (RFC 3030):
 * one exchange fewer than DATA's wait for 354. A larger one goes by
 * DATA, streamed. */
#define CUT_BDAT_MAX (1024 * 1024)

struct deliver_cut {
	unsigned timeout;	/* smtp_timeout, seconds */
	char *hostname;		/* LHLO */
	bool verify;		/* proxy_tls_ca set */
	struct cut_tls *tc;	/* the TLS contexts, made at first use */
	pthread_key_t key;	/* the thread's struct kept list */
};

/* The client contexts are made by the first handover that needs one, so
 * that a worker of a node without lmtp: routes never makes them. */
struct cut_tls {
	pthread_mutex_t mu;
	bool made;
	char *ca;		/* proxy_tls_ca, or NULL */
	struct tls_client *tls;	/* opportunistic STARTTLS (NULL: none) */
	struct tls_client *vtls;	/* verified, for proxy_tls_ca */
	char *vtls_error;	/* ... or why there is none */
};

/* The context for STARTTLS to a backend: the verifying one when
 * proxy_tls_ca is set (NULL with *why: it could not be made), else
 * the opportunistic one (NULL: none, go on in plaintext). */
static struct tls_client *
cut_tls(const struct deliver_cut *cut, const char **why)
{
	struct cut_tls *t = cut->tc;
	struct tls_client *c;

	pthread_mutex_lock(&t->mu);
	if (!t->made) {
		const char *err;

		t->made = true;
		if (t->ca != NULL) {
			t->vtls = tls_client_new_verify(t->ca, &err);
			if (t->vtls == NULL)
				t->vtls_error = xasprintf("proxy_tls_ca: %s",
				    err);
		} else if ((t->tls = tls_client_new(&err)) == NULL) {
			log_warn("cut-through STARTTLS unavailable: %s", err);
		}
	}
	c = t->ca != NULL ? t->vtls : t->tls;
	*why = t->vtls_error;
	pthread_mutex_unlock(&t->mu);
	return c;
}

/* A connection of this thread, at rest after RSET-less end of a
 * transaction (the next one starts with RSET). */
struct kept {
	char *hop;		/* the transport, as routed */
	struct lmtp_client c;
	time_t last;		/* when it was last used */
	unsigned uses;		/* transactions so far */
	bool tls;
	bool pipelining;	/* RFC 2920, offered in the last LHLO */
	bool chunking;		/* RFC 3030, likewise */
	struct kept *next;
};

static void
kept_free(struct kept *k)
{
	if (k == NULL)
		return;
	if (k->c.fd >= 0)
		(void)lmtpc_cmd(&k->c, "QUIT");
	lmtpc_close(&k->c);
	free(k->hop);
	free(k);
}

static void
kept_list_free(void *v)
{
	struct kept *k = v, *next;

	for (; k != NULL; k = next) {
		next = k->next;
		kept_free(k);
	}
}

struct deliver_cut *
deliver_cut_new(const struct config *cfg, const char *hostname)
{
	struct deliver_cut *cut = xcalloc(1, sizeof(*cut));
	const char *ca = config_get(cfg, "proxy_tls_ca");

	/* Each step's bound: smtp_timeout, at most CUT_STEP_MAX. The client
	 * waits for its reply meanwhile (and the session's own timer runs):
	 * a backend that is this slow gets the message from the queue. */
	cut->timeout = (unsigned)config_get_uint(cfg, "smtp_timeout");
	if (cut->timeout == 0)
		cut->timeout = 1;
	if (cut->timeout > CUT_STEP_MAX)
		cut->timeout = CUT_STEP_MAX;
	int e;

	cut->hostname = xstrdup(hostname);
	cut->tc = xcalloc(1, sizeof(*cut->tc));
	pthread_mutex_init(&cut->tc->mu, NULL);
	if (ca[0] != '\0') {
		cut->verify = true;
		cut->tc->ca = xstrdup(ca);
	}
	if ((e = pthread_key_create(&cut->key, kept_list_free)) != 0)
		fatal("pthread_key_create: %s", strerror(e));
	return cut;
}

void
deliver_cut_free(struct deliver_cut **cutp)
{
	struct deliver_cut *cut = *cutp;

	if (cut == NULL)
		return;
	/* this thread's own, if it ever delivered */
	kept_list_free(pthread_getspecific(cut->key));
	pthread_key_delete(cut->key);
	pthread_mutex_destroy(&cut->tc->mu);
	tls_client_free(&cut->tc->tls);
	tls_client_free(&cut->tc->vtls);
	free(cut->tc->vtls_error);
	free(cut->tc->ca);
	free(cut->tc);
	free(cut->hostname);
	free(cut);
	*cutp = NULL;
}

bool
deliver_cut_wanted(const char *transport)
{
	/* lmtp: over TCP only; lmtp:unix: never reaches the queue */
	return strncasecmp(transport, "lmtp:", 5) == 0 &&
	    strncasecmp(transport + 5, "unix:", 5) != 0;
}

/* lmtp:[host]:port, lmtp:inet:host:port, lmtp:host[:port] (24 by
 * default), as the queue reads it (queue/mx.c nexthop_parse). */
static bool
hop_parse(const char *t, char *host, size_t hostsize, unsigned *port_r)
{
	const char *p = t + 5, *end;
	size_t n;

	if (strncasecmp(p, "inet:", 5) == 0)
		p += 5;
	*port_r = 24;
	if (*p == '[') {
		if ((end = strchr(p, ']')) == NULL)
			return false;
		n = (size_t)(end - p - 1);
		p++;
	} else {
		if ((end = strrchr(p, ':')) == NULL)
			end = p + strlen(p);
		n = (size_t)(end - p);
	}
	if (n == 0 || n >= hostsize)
		return false;
	memcpy(host, p, n);
	host[n] = '\0';
	p = end + (*end == ']');
	if (*p == ':') {
		char *e;
		unsigned long port = strtoul(p + 1, &e, 10);

		if (port == 0 || port > 65535)
			return false;
		*port_r = (unsigned)port;
	}
	return true;
}

/* This thread's kept connection to hop, taken off its list (NULL: none);
 * the ones idle too long are closed on the way. */
static struct kept *
kept_take(const struct deliver_cut *cut, const char *hop)
{
	struct kept *list = pthread_getspecific(cut->key), **pp = &list,
	    *found = NULL;
	time_t now = time(NULL);

	while (*pp != NULL) {
		struct kept *k = *pp;

		if (now - k->last > CUT_IDLE || k->c.fd < 0) {
			*pp = k->next;
			kept_free(k);
			continue;
		}
		if (found == NULL && strcmp(k->hop, hop) == 0) {
			*pp = k->next;
			found = k;
			continue;
		}
		pp = &k->next;
	}
	(void)pthread_setspecific(cut->key, list);
	if (found != NULL)
		found->next = NULL;
	return found;
}

static void
kept_put(const struct deliver_cut *cut, struct kept *k)
{
	struct kept *list = pthread_getspecific(cut->key), *p;
	size_t n = 0;

	for (p = list; p != NULL; p = p->next)
		n++;
	if (n >= CUT_KEPT_MAX || k->c.fd < 0) {
		kept_free(k);
		return;
	}
	k->last = time(NULL);
	k->next = list;
	(void)pthread_setspecific(cut->key, k);
}

/* Connected to the next hop: an address as it is; a name through
 * dns_resolver (lib/trust/dnsq, the queue's resolver too), its A then
 * AAAA records in turn. 0, or -1 with *why (malloc'd). */
static int
hop_connect(const struct deliver_cut *cut, struct kept *k, const char *host,
    unsigned port, char **why)
{
	static const int types[] = { 1, 28 };	/* A, AAAA */
	unsigned ms = cut->timeout * 1000;
	unsigned char bin[16];
	const char *dns = NULL;
	bool tried = false;

	if (inet_pton(AF_INET, host, bin) == 1 ||
	    inet_pton(AF_INET6, host, bin) == 1) {
		if (lmtpc_connect(&k->c, host, port, ms, ms) == 0)
			return 0;
		*why = xstrdup(k->c.why);
		return -1;
	}
	for (size_t t = 0; t < 2; t++) {
		struct ub_result *res = NULL;
		enum dnsq_status st = dnsq_lookup(host, types[t], &res);

		if (st != DNSQ_OK) {
			if (st == DNSQ_TEMPFAIL)
				dns = "lookup failed";
			continue;
		}
		for (size_t i = 0; res->data[i] != NULL; i++) {
			char ip[INET6_ADDRSTRLEN];
			int af = types[t] == 1 ? AF_INET : AF_INET6;

			if (res->len[i] != (af == AF_INET ? 4 : 16) ||
			    inet_ntop(af, res->data[i], ip, sizeof(ip)) == NULL)
				continue;
			tried = true;
			if (lmtpc_connect(&k->c, ip, port, ms, ms) == 0) {
				snprintf(k->c.relay, sizeof(k->c.relay),
				    "%.200s[%.63s]:%u", host, ip, port);
				ub_resolve_free(res);
				return 0;
			}
		}
		ub_resolve_free(res);
	}
	*why = tried ? xstrdup(k->c.why) : xasprintf("%s: %s", host,
	    dns != NULL ? dns : "no address");
	return -1;
}

/* A new session: connected, greeted, LHLO'd, under TLS when the queue's
 * LMTP leg would be. 0, or -1 with *why (malloc'd). */
static int
session_open(const struct deliver_cut *cut, struct kept *k, const char *host,
    unsigned port, char **why)
{
	static const char *const kw[] = { "STARTTLS", "PIPELINING",
		"CHUNKING", NULL };
	str_t text = STR_INIT;
	struct tls_client *tc = NULL;
	const char *tls_why = NULL;
	bool has[3], starttls;
	int code;

	if (hop_connect(cut, k, host, port, why) < 0)
		return -1;
	if ((code = lmtpc_reply(&k->c, &text, NULL, NULL)) != 220)
		goto refused;
	if (lmtpc_cmd(&k->c, "LHLO %s", cut->hostname) < 0 ||
	    (code = lmtpc_reply(&k->c, &text, kw, has)) != 250)
		goto refused;
	starttls = has[0];
	k->pipelining = has[1];
	k->chunking = has[2];
	if (starttls || cut->verify)
		tc = cut_tls(cut, &tls_why);
	if (cut->verify) {
		/* proxy_tls_ca: verified TLS or no delivery */
		if (tc == NULL) {
			*why = xstrdup(tls_why);
			goto fail;
		}
		if (!starttls) {
			*why = xstrdup("LMTP server offers no STARTTLS "
			    "(proxy_tls_ca is set)");
			goto fail;
		}
	}
	if (starttls && tc != NULL) {
		if (lmtpc_cmd(&k->c, "STARTTLS") < 0)
			goto refused;
		code = lmtpc_reply(&k->c, &text, NULL, NULL);
		if (code < 0)
			goto refused;
		if (code == 220) {
			if (lmtpc_starttls(&k->c, tc, host) < 0) {
				*why = xstrdup(k->c.why);
				goto fail;
			}
			k->tls = true;
			/* RFC 3207 4.2: what was offered before counts no
			 * more */
			if (lmtpc_cmd(&k->c, "LHLO %s", cut->hostname) < 0 ||
			    (code = lmtpc_reply(&k->c, &text, kw, has)) != 250)
				goto refused;
			k->pipelining = has[1];
			k->chunking = has[2];
		} else if (cut->verify) {
			*why = xasprintf("STARTTLS refused (proxy_tls_ca is "
			    "set): %s", str_c(&text));
			goto fail;
		}
		/* else opportunistic: on in plaintext, as the queue goes */
	}
	str_free(&text);
	return 0;
refused:
	*why = code < 0 ? xstrdup(k->c.why) : xstrdup(str_c(&text));
fail:
	str_free(&text);
	lmtpc_close(&k->c);
	return -1;
}

/* The message from the queue file as the queue sends it (outbound.c
 * send_stored_line): every line end CRLF, a bare CR one too, a last line
 * without LF ended. With dot (DATA), a line starting with "." doubled
 * and "." at the end, sent as it is made; without (BDAT), the whole of
 * it appended to *all and nothing sent. 0, or -1 with c->why. */
static int
convert_body(struct lmtp_client *c, int fd, off_t off, bool dot, str_t *all)
{
	char in[65536];
	str_t buf = STR_INIT, *out = dot ? &buf : all;
	bool bol = true, cr = false;
	int r = -1;

	for (;;) {
		ssize_t n = pread(fd, in, sizeof(in), off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(c->why, sizeof(c->why), "reading the queue "
			    "file: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		off += n;
		for (ssize_t i = 0; i < n; i++) {
			char ch = in[i];

			if (cr) {
				cr = false;
				str_append(out, "\r\n");
				bol = true;
				if (ch == '\n')
					continue;
			}
			if (ch == '\r') {
				cr = true;
				continue;
			}
			if (ch == '\n') {
				str_append(out, "\r\n");
				bol = true;
				continue;
			}
			if (dot && bol && ch == '.')
				str_append_c(out, '.');
			bol = false;
			str_append_c(out, ch);
		}
		if (dot && out->len >= sizeof(in)) {
			if (lmtpc_send(c, out->data, out->len) < 0)
				goto out;
			str_truncate(out, 0);
		}
	}
	if (cr || !bol)
		str_append(out, "\r\n");
	if (dot) {
		str_append(out, ".\r\n");
		if (lmtpc_send(c, out->data, out->len) < 0)
			goto out;
	}
	r = 0;
out:
	str_free(&buf);
	return r;
}

/* How a transaction ended. */
enum tx {
	TX_DONE,	/* every recipient has its outcome; the session can
			 * be kept */
	TX_RETRY,	/* the connection failed before the message went
			 * out: another connection may do */
	TX_FAIL,	/* the rest is the queue's; close the session */
};

struct hop_job {
	const struct deliver_cut *cut;
	const char *qid, *sender;
	const struct queue_rcpt *rcpts;
	const size_t *idx;	/* the recipients of this hop */
	size_t n;
	int fd;
	off_t body_offset;
	long long arrival_ms;
	bool *done;
	bool *noted;		/* per recipient of the hop: its refusal
				 * logged already */
	char *why;		/* why the rest stays queued (malloc'd) */
};

static void
set_why(struct hop_job *h, const char *why)
{
	free(h->why);
	h->why = xstrdup(why);
}

/* One step of the transaction: the command, unless it went out
 * pipelined already (NULL: nothing to send), then its reply into text.
 * The reply's code, or -1 with h->why set when the connection failed. */
static int
step(struct hop_job *h, struct kept *k, str_t *text, const char *cmd,
    const char *arg)
{
	int code;

	if (cmd != NULL && !k->pipelining &&
	    lmtpc_cmd(&k->c, "%s%s%s", cmd, arg != NULL ? arg : "",
	    arg != NULL ? ">" : "") < 0)
		code = -1;
	else
		code = lmtpc_reply(&k->c, text, NULL, NULL);
	if (code < 0)
		set_why(h, k->c.why);
	return code;
}

static enum tx
transaction(struct hop_job *h, struct kept *k, bool reused)
{
	str_t text = STR_INIT;
	int *codes = xcalloc(h->n, sizeof(*codes));
	size_t accepted = 0;
	/* a failed connection: a kept one may be replaced by a new one
	 * as long as the message has not gone out */
	enum tx lost = reused ? TX_RETRY : TX_FAIL, r = TX_FAIL;
	str_t body = STR_INIT;	/* the message for BDAT */
	bool bdat = false;
	int code;

	if (k->pipelining && k->chunking) {
		struct stat st;

		bdat = fstat(h->fd, &st) == 0 &&
		    st.st_size - h->body_offset <= CUT_BDAT_MAX;
	}
	if (bdat && convert_body(&k->c, h->fd, h->body_offset, false,
	    &body) < 0) {
		set_why(h, k->c.why);
		goto out;
	}
	if (k->pipelining) {
		/* RFC 2920: the envelope and DATA (or the whole message in
		 * one BDAT LAST, RFC 3030) in one write, the replies read in
		 * order below. Any failure closes the session, so replies
		 * left unread never matter. */
		str_t cmds = STR_INIT;
		int sr;

		if (reused)
			str_append(&cmds, "RSET\r\n");
		str_printf(&cmds, "MAIL FROM:<%s>\r\n", h->sender);
		for (size_t j = 0; j < h->n; j++)
			str_printf(&cmds, "RCPT TO:<%s>\r\n",
			    h->rcpts[h->idx[j]].address);
		if (bdat) {
			str_printf(&cmds, "BDAT %zu LAST\r\n", body.len);
			str_append_n(&cmds, body.data, body.len);
		} else {
			str_append(&cmds, "DATA\r\n");
		}
		sr = lmtpc_send(&k->c, cmds.data, cmds.len);
		str_free(&cmds);
		if (sr < 0) {
			set_why(h, k->c.why);
			r = lost;
			goto out;
		}
	}
	/* the kept session: back to its start (RFC 5321 4.1.1.5) */
	if (reused && (code = step(h, k, &text, "RSET", NULL)) != 250) {
		if (code >= 0)
			set_why(h, str_c(&text));
		r = TX_RETRY;
		goto out;
	}
	if ((code = step(h, k, &text, "MAIL FROM:<", h->sender)) != 250) {
		if (code >= 0)
			set_why(h, str_c(&text));
		else
			r = lost;
		goto out;
	}
	for (size_t j = 0; j < h->n; j++) {
		if ((code = step(h, k, &text, "RCPT TO:<",
		    h->rcpts[h->idx[j]].address)) < 0) {
			r = lost;
			goto out;
		}
		codes[j] = code;
		if (code >= 200 && code < 300) {
			accepted++;
			continue;
		}
		h->noted[j] = true;
		log_info("%s: to=<%s>, relay=%s, cut-through refused "
		    "(%s), left to the queue", h->qid,
		    h->rcpts[h->idx[j]].address, k->c.relay, str_c(&text));
	}
	if (accepted == 0) {
		set_why(h, "no recipient accepted");
		/* pipelined, DATA is under way: the session is closed */
		r = k->pipelining ? TX_FAIL : TX_DONE;
		goto out;
	}
	if (!bdat && (code = step(h, k, &text, "DATA", NULL)) != 354) {
		if (code >= 0)
			set_why(h, str_c(&text));
		else
			r = lost;
		goto out;
	}
	if (!bdat && convert_body(&k->c, h->fd, h->body_offset, true,
	    NULL) < 0) {
		set_why(h, k->c.why);
		goto out;
	}
	k->uses++;
	/* RFC 2033 4.2: one reply per accepted recipient, in order. A 2xx
	 * there means the backend has the copy on stable storage (it
	 * answers after its maildir's fsync): the queue file is not needed
	 * for that recipient, and the client's 250 may follow. */
	for (size_t j = 0; j < h->n; j++) {
		const char *addr = h->rcpts[h->idx[j]].address;
		char use[32];
		long long ms;

		if (codes[j] < 200 || codes[j] >= 300)
			continue;
		if ((code = step(h, k, &text, NULL, NULL)) < 0)
			goto out;
		if (code < 200 || code >= 300) {
			h->noted[j] = true;
			log_info("%s: to=<%s>, relay=%s, cut-through refused "
			    "(%s), left to the queue", h->qid, addr,
			    k->c.relay, str_c(&text));
			continue;
		}
		h->done[h->idx[j]] = true;
		ms = h->arrival_ms > 0 ? monotonic_ms() - h->arrival_ms : 0;
		/* Postfix's lmtp delivery line, marked as the handover of
		 * the receiving job (no queue manager, no attempt count) */
		if (k->uses > 1)
			snprintf(use, sizeof(use), ", conn_use=%u", k->uses);
		else
			use[0] = '\0';
		log_info("%s: to=<%s>, relay=%s%s%s, delay=%.2f, dsn=2.0.0, "
		    "status=sent (%s), cut-through", h->qid, addr, k->c.relay,
		    use, k->tls ? ", tls=encrypted" : "",
		    ms > 0 ? (double)ms / 1000.0 : 0.0, str_c(&text));
		node_counters_event(node_counters_self(),
		    NODE_EVENT_DELIVERED);
	}
	r = TX_DONE;
out:
	free(codes);
	str_free(&body);
	str_free(&text);
	return r;
}

static void
hop_deliver(struct hop_job *h, const char *hop)
{
	const char *prev = log_service_set("lmtp");
	char host[256];
	unsigned port;
	struct kept *k;

	if (!hop_parse(hop, host, sizeof(host), &port)) {
		set_why(h, "bad transport");
		goto out;
	}
	k = kept_take(h->cut, hop);
	for (int attempt = 0; attempt < 2; attempt++) {
		bool reused = k != NULL;
		enum tx r;

		if (k == NULL) {
			char *why = NULL;

			k = xcalloc(1, sizeof(*k));
			lmtpc_init(&k->c);
			k->hop = xstrdup(hop);
			if (session_open(h->cut, k, host, port, &why) < 0) {
				free(h->why);
				h->why = why;
				kept_free(k);
				k = NULL;
				break;
			}
		}
		r = transaction(h, k, reused);
		if (r == TX_DONE) {
			kept_put(h->cut, k);
			k = NULL;
			break;
		}
		kept_free(k);
		k = NULL;
		if (r != TX_RETRY || !reused)
			break;
		/* the kept connection will not do: a new one, once */
	}
out:
	for (size_t j = 0; j < h->n; j++)
		if (!h->done[h->idx[j]] && !h->noted[j])
			log_info("%s: to=<%s>, cut-through to %s not done "
			    "(%s), left to the queue", h->qid,
			    h->rcpts[h->idx[j]].address, hop,
			    h->why != NULL ? h->why : "refused");
	log_service_set(prev);
}

void
deliver_cut_run(const struct deliver_cut *cut, const char *qid,
    const char *sender, const struct queue_rcpt *rcpts, size_t nrcpts,
    int fd, off_t body_offset, long long arrival_ms, bool *done)
{
	bool *seen = xcalloc(nrcpts, sizeof(*seen));
	size_t *idx = xcalloc(nrcpts, sizeof(*idx));

	/* one transaction per next hop, its recipients in their order */
	for (size_t i = 0; i < nrcpts; i++) {
		struct hop_job h;
		size_t n = 0;

		if (seen[i] || !deliver_cut_wanted(rcpts[i].transport))
			continue;
		for (size_t j = i; j < nrcpts; j++)
			if (!seen[j] && strcmp(rcpts[j].transport,
			    rcpts[i].transport) == 0) {
				seen[j] = true;
				idx[n++] = j;
			}
		memset(&h, 0, sizeof(h));
		h.cut = cut;
		h.qid = qid;
		h.sender = sender;
		h.rcpts = rcpts;
		h.idx = idx;
		h.n = n;
		h.fd = fd;
		h.body_offset = body_offset;
		h.arrival_ms = arrival_ms;
		h.done = done;
		h.noted = xcalloc(n, sizeof(*h.noted));
		hop_deliver(&h, rcpts[i].transport);
		free(h.noted);
		free(h.why);
	}
	free(seen);
	free(idx);
}
