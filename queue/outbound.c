/*
 * outbound.c: the queue manager's SMTP client session (RFC 5321), and
 * its LMTP form (RFC 2033) for lmtp: next hops (a frontend's handover to
 * a user's backend, an lmtp: transport).
 *
 * One session per attempt, on the manager's libevent loop: connect (the
 * next address when one fails), greeting, EHLO (HELO when refused),
 * opportunistic STARTTLS (RFC 3207: no certificate check, as Postfix's
 * "may" level), MAIL, RCPT and DATA, pipelined (RFC 2920) when the
 * server offers PIPELINING, the stored LF message sent as CRLF with dot
 * stuffing, QUIT. A bare CR in the stored message (the receiving side
 * keeps one as content) goes out as a line end too, as Postfix's smtp
 * client does: the next hop gets only CRLF line ends, every line
 * dot-stuffed, so a server that takes a bare CR or LF for a line end
 * cannot see an end of data before the real one (SMTP smuggling). Each recipient gets the reply that decides it; the
 * attempt then ends in delivery_finish(), which hands over to
 * scheduler.c.
 *
 * LMTP is the same session with LHLO for EHLO (no HELO fallback) and,
 * after the data, one reply per accepted recipient in RCPT order: each
 * decides its own recipient (2xx sent, 4xx deferred, 5xx bounced). A
 * greeting or LHLO that is not 2xx defers every recipient: the other
 * end is not the LMTP server it should be, and nothing is bounced for a
 * backend's misconfiguration. A connection lost among those replies
 * defers only the recipients still waiting for theirs.
 *
 * Connections are kept (see "kept connections" below): after a delivery
 * whose replies all came (for SMTP: a 2xx after the data), RSET instead of
 * QUIT, and the next delivery to the same next hop within CACHE_IDLE
 * seconds starts at MAIL.
 *
 * Trust: replies are parsed strictly and bounded (lib/smtp/reply.c:
 * SMTP_LINE_MAX per line, SMTP_REPLY_LINES_MAX lines; a malformed one is a
 * 451) and only ever logged or quoted in a bounce. Nothing a server sent
 * in plaintext before TLS is read after it.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/smtp/reply.h"
#include "lib/tls/tls.h"
#include "lib/trust/mta_sts.h"
#include "lib/trust/tls_rpt.h"
#include "queue/delivery.h"

/* Record the outcome for every recipient still without a reply, close
 * the connection and write the state. */
void
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
		/* LMTP: these have had their reply after the data */
		if (d->lmtp && k < d->data_next)
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
	delivery_submit(d, JOB_FINISH);
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
static bool conn_park(struct delivery *d);
static void connect_fresh(struct delivery *d);
static void reconnect_fresh(struct delivery *d);

/* ---- DANE (RFC 7672) ----
 *
 * mx.c found, for the MX hosts whose MX and address records are
 * DNSSEC-secure, their TLSA records. A session to such a host must use
 * STARTTLS, and with usable records its certificate must match one
 * (OpenSSL's DANE support checks that: lib/tls). A host that offers no
 * STARTTLS, refuses it, fails the handshake or does not match is given
 * up for this attempt (never plaintext): the next address is tried, and
 * after the last the recipients are deferred with the reason. Such a
 * connection is never kept for another delivery (conn_park, conn_take).
 */

/* The DANE requirement of the address being tried (NULL: none). */
static struct dane_host *
cur_dane(const struct delivery *d)
{
	int i = d->cur < d->naddrs ? d->addr_dane[d->cur] : 0;

	return i > 0 && (size_t)i <= d->ndane ? &d->dane[i - 1] : NULL;
}

/* The TLS report result type of the peer's certificate as verified on
 * bev (RFC 8460 4.3.1). */
static const char *
verify_result(struct bufferevent *bev)
{
	switch (tls_bev_verify_kind(bev)) {
	case TLS_VERIFY_HOST:
		return TLS_RPT_HOST_MISMATCH;
	case TLS_VERIFY_EXPIRED:
		return TLS_RPT_EXPIRED;
	case TLS_VERIFY_UNTRUSTED:
		return TLS_RPT_NOT_TRUSTED;
	default:
		return TLS_RPT_VALIDATION;
	}
}

static int cur_sts(const struct delivery *d);

/* A failed session for the TLS report (tls_rpt_reports): under a policy
 * always; without one only when petrel itself could have used TLS. */
static void
rpt_fail(struct delivery *d, const char *result, const char *detail)
{
	if (cur_dane(d) == NULL && cur_sts(d) == STS_NONE && d->m->tls == NULL)
		return;
	rpt_session(d, cur_dane(d), result, detail);
}

/* This address will not do (why: a reply text, its code code): the
 * next one, or the end of the attempt, permanent (5xx) only when every
 * address given up was. */
static void
addr_next(struct delivery *d, int code, const char *why)
{
	bool more = d->cur + 1 < d->naddrs;

	if (code < 500)
		d->gave_up_temp = true;

	log_warn("%s: %s%s", d->msg.id, why, more ? "; trying the next "
	    "address" : "");
	if (d->bev != NULL) {
		bufferevent_free(d->bev);
		d->bev = NULL;
	}
	if (!more) {
		delivery_finish(d, d->gave_up_temp ? 451 : code, why);
		return;
	}
	d->cur++;
	d->tls = d->starttls = d->pipelining = d->esmtp = false;
	d->rt_offered = false;
	d->tls_note = NULL;
	connect_fresh(d);
}

static void
dane_next(struct delivery *d, const char *why)
{
	addr_next(d, 451, why);
}

/* ---- REQUIRETLS (RFC 8689) ----
 *
 * A message received with MAIL FROM ... REQUIRETLS goes to a next hop
 * only over STARTTLS with a verified certificate (DANE's TLSA match where
 * the MX host has usable records, else the chain to smtp_tls_ca or the
 * system's store and the MX host's name), to a server whose EHLO offers
 * REQUIRETLS, with REQUIRETLS on its MAIL FROM; never in plaintext and
 * never on a kept connection. An MX that fails any of it is given up for
 * the next: no STARTTLS or no REQUIRETLS there is permanent (5.7.10,
 * 5.7.30: the bounce says so), a certificate that does not verify or a
 * failed handshake temporary (the message waits, as Postfix's "secure"
 * level does). An lmtp: next hop is the final delivery inside the site
 * (proxy_tls_ca checks those). */
static bool
rt_wanted(const struct delivery *d)
{
	return d->msg.requiretls && !d->lmtp;
}

/* The name of the host being tried (names[] is "host[address]:port"):
 * what its certificate must carry. */
static void
cur_host(const struct delivery *d, char *buf, size_t len)
{
	const char *n = d->names[d->cur], *b = strchr(n, '[');
	size_t l = b != NULL && b != n ? (size_t)(b - n) : strlen(n);

	snprintf(buf, len, "%.*s", (int)l, n);
}

/* After the TLS handshake and EHLO: false when this address will not do
 * (addr_next done). */
static bool
rt_check(struct delivery *d)
{
	char *why;

	if (!d->tls) {
		if (cur_dane(d) == NULL && d->m->pkix_tls == NULL) {
			why = xasprintf("451 4.7.10 REQUIRETLS: %s",
			    d->m->pkix_tls_error);
			addr_next(d, 451, why);
			free(why);
			return false;
		}
		if (!d->starttls) {
			why = xasprintf("550 5.7.10 REQUIRETLS: %s offers no "
			    "STARTTLS", d->names[d->cur]);
			addr_next(d, 550, why);
			free(why);
			return false;
		}
		return true;	/* STARTTLS next */
	}
	if (!d->rt_offered) {
		why = xasprintf("550 5.7.30 REQUIRETLS support required: %s "
		    "does not offer REQUIRETLS", d->names[d->cur]);
		addr_next(d, 550, why);
		free(why);
		return false;
	}
	if (d->tls_note == NULL || strcmp(d->tls_note, "dane-verified") != 0)
		d->tls_note = "verified";
	return true;
}

/* After the handshake (the first reply over TLS): does the peer's
 * certificate satisfy the host's TLSA records? false: dane_next done. */
static bool
dane_check(struct delivery *d, const struct dane_host *dh)
{
	const char *how;
	char *why;

	if (dh->level == DANE_ENCRYPT) {
		d->tls_note = "dane-encrypted";
		return true;
	}
	if (tls_bev_dane_verified(d->bev, &how)) {
		d->tls_note = "dane-verified";
		return true;
	}
	why = xasprintf("451 4.7.5 TLSA records do not match the "
	    "certificate of %s (%s)", dh->name, how);
	rpt_session(d, dh, TLS_RPT_VALIDATION, how);
	dane_next(d, why);
	free(why);
	return false;
}

/* ---- MTA-STS (RFC 8461) ----
 *
 * mx.c marked, under the recipient domain's policy, the addresses of
 * MX hosts without DANE: STS_NOMATCH (enforce, the host matches no mx
 * pattern) is given up before connecting; STS_CHECK needs STARTTLS and
 * a certificate that chains to smtp_tls_ca (or the system's store) and
 * names the MX host. Under enforce a host that fails is given up for
 * the next address, and after the last the recipients are deferred with
 * the reason, never sent in plaintext; under testing the mail goes as
 * it would without the policy and the failure is logged. Such a session
 * neither takes nor leaves a kept connection (conn_take, conn_park).
 */
static int
cur_sts(const struct delivery *d)
{
	return d->sts != NULL && d->cur < d->naddrs ? d->addr_sts[d->cur] :
	    STS_NONE;
}

/* The policy does not hold for this address (why: what failed, without
 * a code). Enforce: false, the address given up (addr_next done);
 * testing: logged, true (go on). */
static bool
sts_fail(struct delivery *d, const char *why)
{
	char *t;

	if (d->sts->mode != MTA_STS_ENFORCE) {
		log_warn("%s: MTA-STS (testing) for %s: %s; enforce would not "
		    "deliver", d->msg.id, d->host, why);
		return true;
	}
	t = xasprintf("451 4.7.5 MTA-STS: %s", why);
	addr_next(d, 451, t);
	free(t);
	return false;
}

/* After the handshake under a policy: is the certificate verified for
 * the MX host? false: given up (enforce). */
static bool
sts_check(struct delivery *d)
{
	char reason[300], host[300], *why;
	bool go;

	if (tls_bev_pkix_verified(d->bev, reason, sizeof(reason))) {
		if (d->sts->mode == MTA_STS_ENFORCE)
			d->tls_note = "mta-sts-verified";
		return true;
	}
	cur_host(d, host, sizeof(host));
	why = xasprintf("certificate of %s not verified (%s)", host, reason);
	rpt_fail(d, verify_result(d->bev), reason);
	go = sts_fail(d, why);
	free(why);
	return go;
}

/* The next whole reply in `in`, taken out of it: 1, 0 when it has not all
 * come yet, -1 when it is malformed (*err_r). SMTP_REPLY_MAX octets always
 * hold a complete reply or show a malformed one, so this never waits for
 * more while holding that much. */
static int
next_reply(struct evbuffer *in, struct smtp_reply *r, const char **err_r)
{
	size_t have = evbuffer_get_length(in), used;
	int n;

	if (have == 0)
		return 0;
	if (have > SMTP_REPLY_MAX)
		have = SMTP_REPLY_MAX;
	n = smtp_reply_parse((const char *)evbuffer_pullup(in,
	    (ev_ssize_t)have), have, r, &used, err_r);
	if (n > 0)
		evbuffer_drain(in, used);
	return n;
}

/* One stored line (without its LF) as wire lines: split at every CR
 * (a CR just before the LF belongs to that line end), each part
 * dot-stuffed and ended with CRLF. */
static void
send_stored_line(struct evbuffer *out, const char *line, size_t len)
{
	const char *p = line, *end = line + len, *cr;

	if (len > 0 && line[len - 1] == '\r')
		end--;
	for (;;) {
		const char *e;

		cr = memchr(p, '\r', (size_t)(end - p));
		e = cr != NULL ? cr : end;
		if (e > p && p[0] == '.')
			evbuffer_add(out, ".", 1);
		evbuffer_add(out, p, (size_t)(e - p));
		evbuffer_add(out, "\r\n", 2);
		if (cr == NULL)
			break;
		p = cr + 1;
	}
}

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
		send_stored_line(out, line, len);
	}
	free(line);
	fclose(fp);
	evbuffer_add(out, ".\r\n", 3);
}

static void
send_envelope(struct delivery *d)
{
	send_line(d, "MAIL FROM:<%s>%s", d->msg.sender,
	    rt_wanted(d) ? " REQUIRETLS" : "");
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
			delivery_finish(d, code >= 500 && !d->lmtp ? code :
			    451, text);
			return;
		}
		send_line(d, "%s %s", d->lmtp ? "LHLO" : "EHLO",
		    d->m->hostname);
		d->state = C_EHLO;
		return;
	case C_EHLO:
		if (code != 250 && d->lmtp) {
			delivery_finish(d, 451, text);
			return;
		}
		if (code != 250) {
			send_line(d, "HELO %s", d->m->hostname);
			d->state = C_HELO;
			return;
		}
		d->esmtp = true;
		if (d->lmtp && d->m->lmtp_verify && !d->tls) {
			/* proxy_tls_ca: verified TLS or no delivery */
			if (d->m->lmtp_tls == NULL) {
				delivery_finish(d, 451, d->m->lmtp_tls_error);
				return;
			}
			if (!d->starttls) {
				delivery_finish(d, 451, "LMTP server offers "
				    "no STARTTLS (proxy_tls_ca is set)");
				return;
			}
			send_line(d, "STARTTLS");
			d->state = C_STARTTLS;
			return;
		}
		if (d->tls && cur_dane(d) != NULL &&
		    !dane_check(d, cur_dane(d)))
			return;
		if (d->tls && cur_sts(d) == STS_CHECK && !sts_check(d))
			return;
		if (rt_wanted(d)) {
			if (!rt_check(d))
				return;
			if (!d->tls) {
				send_line(d, "STARTTLS");
				d->state = C_STARTTLS;
				return;
			}
		}
		if (d->starttls && !d->tls && (d->m->tls != NULL ||
		    cur_sts(d) == STS_CHECK)) {
			send_line(d, "STARTTLS");
			d->state = C_STARTTLS;
			return;
		}
		if (!d->tls && cur_dane(d) != NULL) {
			char *why = xasprintf("451 4.7.4 %s offers no "
			    "STARTTLS, and TLSA records are published for it",
			    cur_dane(d)->name);

			rpt_fail(d, TLS_RPT_STARTTLS, "STARTTLS not offered");
			dane_next(d, why);
			free(why);
			return;
		}
		if (!d->tls && cur_sts(d) == STS_CHECK) {
			char host[300], *why;
			bool go;

			cur_host(d, host, sizeof(host));
			why = xasprintf("%s offers no STARTTLS", host);
			rpt_fail(d, TLS_RPT_STARTTLS, "STARTTLS not offered");
			go = sts_fail(d, why);
			free(why);
			if (!go)
				return;
		}
		/* TLS up and the policy held (a failure under a testing
		 * policy was recorded as such); or no STARTTLS offered */
		if (cur_sts(d) == STS_TESTING_NOMATCH)
			rpt_fail(d, TLS_RPT_VALIDATION, "mx host not in the "
			    "policy");
		else if (d->tls)
			rpt_session(d, cur_dane(d), NULL, NULL);
		else
			rpt_fail(d, TLS_RPT_STARTTLS, "STARTTLS not offered");
		send_envelope(d);
		return;
	case C_HELO:
		if (!d->tls)
			rpt_fail(d, TLS_RPT_STARTTLS, "EHLO refused");
		if (rt_wanted(d)) {
			char *why = xasprintf("550 5.7.10 REQUIRETLS: %s "
			    "refused EHLO, so no STARTTLS", d->names[d->cur]);

			addr_next(d, 550, why);
			free(why);
			return;
		}
		if (cur_dane(d) != NULL) {
			char *why = xasprintf("451 4.7.4 %s refused EHLO, so "
			    "no STARTTLS, and TLSA records are published for "
			    "it", cur_dane(d)->name);

			dane_next(d, why);
			free(why);
			return;
		}
		if (cur_sts(d) == STS_CHECK) {
			char host[300], *why;
			bool go;

			cur_host(d, host, sizeof(host));
			why = xasprintf("%s refused EHLO, so no STARTTLS",
			    host);
			go = sts_fail(d, why);
			free(why);
			if (!go)
				return;
		}
		if (code != 250) {
			delivery_finish(d, code >= 500 ? code : 451, text);
			return;
		}
		d->pipelining = false;
		send_envelope(d);
		return;
	case C_STARTTLS:
		if (code == 220) {
			bool verify = d->lmtp && d->m->lmtp_verify;
			const struct dane_host *dh = cur_dane(d);
			struct bufferevent *tb;
			char host[300];

			if (dh != NULL && dh->level == DANE_VERIFY) {
				tb = tls_bev_connect_dane(d->m->tls,
				    d->m->base, d->bev, dh->name, dh->alias,
				    dh->tlsa, dh->ntlsa);
			} else if (rt_wanted(d)) {
				/* REQUIRETLS: the chain and the host name */
				cur_host(d, host, sizeof(host));
				tb = tls_bev_connect_starttls(d->m->pkix_tls,
				    d->m->base, d->bev, dh != NULL ? dh->name :
				    host);
			} else if (dh == NULL && cur_sts(d) == STS_CHECK) {
				/* MTA-STS: the chain and the MX host name,
				 * checked once the handshake is done */
				cur_host(d, host, sizeof(host));
				tb = tls_bev_connect_check(d->m->pkix_tls,
				    d->m->base, d->bev, host);
			} else {
				tb = tls_bev_connect_starttls(verify ?
				    d->m->lmtp_tls : d->m->tls, d->m->base,
				    d->bev, dh != NULL ? dh->name : d->host);
			}

			if (tb == NULL) {
				delivery_finish(d, 451, "TLS setup failed");
				return;
			}
			d->bev = tb;
			d->tls = true;
			d->pipelining = d->starttls = d->rt_offered = false;
			bufferevent_setcb(d->bev, client_read, NULL,
			    client_event, d);
			bufferevent_enable(d->bev, EV_READ | EV_WRITE);
			send_line(d, "%s %s", d->lmtp ? "LHLO" : "EHLO",
			    d->m->hostname);
			d->state = C_EHLO;
			return;
		}
		if (d->lmtp && d->m->lmtp_verify) {
			char *why = xasprintf("STARTTLS refused (proxy_tls_ca "
			    "is set): %d %s", code, text);

			delivery_finish(d, 451, why);
			free(why);
			return;
		}
		rpt_fail(d, TLS_RPT_STARTTLS, "STARTTLS refused");
		if (rt_wanted(d)) {
			bool perm = code >= 500;
			char *why = xasprintf("%s REQUIRETLS: %s refused "
			    "STARTTLS (%d %s)", perm ? "550 5.7.10" :
			    "451 4.7.10", d->names[d->cur], code, text);

			addr_next(d, perm ? 550 : 451, why);
			free(why);
			return;
		}
		if (cur_dane(d) != NULL) {
			char *why = xasprintf("451 4.7.4 %s refused STARTTLS "
			    "(%d %s), and TLSA records are published for it",
			    cur_dane(d)->name, code, text);

			dane_next(d, why);
			free(why);
			return;
		}
		if (cur_sts(d) == STS_CHECK) {
			char host[300], *why;
			bool go;

			cur_host(d, host, sizeof(host));
			why = xasprintf("%s refused STARTTLS (%d %s)", host,
			    code, text);
			go = sts_fail(d, why);
			free(why);
			if (!go)
				return;
		}
		/* Opportunistic: go on in plaintext. */
		send_envelope(d);
		return;
	case C_RSET:
		if (code == 250) {
			send_envelope(d);
			return;
		}
		/* the kept connection will not do: a new one */
		reconnect_fresh(d);
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
		if (d->lmtp) {
			/* RFC 2033 4.2: the reply of the next recipient
			 * whose RCPT was accepted */
			while (d->data_next < d->nidx &&
			    !(d->codes[d->data_next] >= 200 &&
			    d->codes[d->data_next] < 300))
				d->data_next++;
			if (d->data_next < d->nidx) {
				size_t k = d->data_next++;

				d->codes[k] = code;
				free(d->texts[k]);
				d->texts[k] = xstrdup(text);
			}
			if (++d->data_replied < d->accepted)
				return;
			if (!conn_park(d)) {
				send_line(d, "QUIT");
				d->state = C_QUIT;
			}
			delivery_finish(d, 0, "");
			return;
		}
		if (code < 200 || code >= 300 || !conn_park(d)) {
			send_line(d, "QUIT");
			d->state = C_QUIT;
		}
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

	while (d->state != C_DONE && d->bev == bev) {
		struct smtp_reply r;
		const char *err;
		int n = next_reply(in, &r, &err);

		if (n == 0)
			return;
		if (n < 0) {
			char *why = xasprintf("malformed reply from server "
			    "(%s)", err);

			delivery_finish(d, 451, why);
			free(why);
			return;
		}
		if (d->state == C_EHLO) {
			if (smtp_reply_ehlo_has(&r, "PIPELINING"))
				d->pipelining = true;
			if (smtp_reply_ehlo_has(&r, "STARTTLS"))
				d->starttls = true;
			if (smtp_reply_ehlo_has(&r, "REQUIRETLS"))
				d->rt_offered = true;
		}
		/* After STARTTLS, d->bev is the TLS filter over bev: what
		 * is left in bev's buffer came in plaintext before the
		 * handshake and is never read as a reply (RFC 3207 6). */
		handle_reply(d, r.code, r.text);
		smtp_reply_clear(&r);
	}
}

static void
client_event(struct bufferevent *bev, short what, void *arg)
{
	struct delivery *d = arg;
	char why[700];
	int err;

	if (what & BEV_EVENT_CONNECTED) {
		int one = 1;

		/* The commands and the message go out as soon as they are
		 * written: with Nagle's algorithm the last segment of a
		 * message (or of a pipelined group) waited for the peer's
		 * delayed ACK, some 40 ms per message on a fast link. */
		(void)setsockopt(bufferevent_getfd(bev), IPPROTO_TCP,
		    TCP_NODELAY, &one, sizeof(one));
		if (d->state == C_CONNECT) {
			struct sockaddr_storage ls;
			socklen_t ll = sizeof(ls);

			d->local_ip[0] = '\0';
			if (getsockname(bufferevent_getfd(bev),
			    (struct sockaddr *)&ls, &ll) == 0)
				(void)getnameinfo((struct sockaddr *)&ls, ll,
				    d->local_ip, sizeof(d->local_ip), NULL, 0,
				    NI_NUMERICHOST);
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
		connect_fresh(d);
		return;
	}
	if (d->state == C_QUIT) {
		delivery_finish(d, 0, "");
		return;
	}
	if (d->tls && d->state == C_EHLO) {
		/* the handshake failed (or the connection ended in it) */
		char reason[400];

		rpt_fail(d, verify_result(bev), tls_bev_verify_error(bev,
		    reason, sizeof(reason)) != NULL ? reason :
		    "TLS handshake failed");
	}
	if (d->tls && d->state == C_EHLO && rt_wanted(d)) {
		char reason[400];
		const char *r = tls_bev_verify_error(bev, reason,
		    sizeof(reason));

		snprintf(why, sizeof(why), "451 4.7.10 REQUIRETLS: TLS with "
		    "%s failed (%s)", d->names[d->cur], r != NULL ? r :
		    what & BEV_EVENT_TIMEOUT ? "timed out" :
		    "handshake failed or connection lost");
		addr_next(d, 451, why);
		return;
	}
	if (d->tls && d->state == C_EHLO && cur_dane(d) != NULL) {
		/* the handshake failed (or the connection ended in it) */
		snprintf(why, sizeof(why), "451 4.7.5 TLS with %s failed "
		    "(%s)", d->names[d->cur], what & BEV_EVENT_TIMEOUT ?
		    "timed out" : "handshake failed or connection lost");
		dane_next(d, why);
		return;
	}
	if (d->tls && d->state == C_EHLO && cur_sts(d) == STS_CHECK &&
	    d->sts->mode == MTA_STS_ENFORCE) {
		char reason[400], host[300];
		const char *r = tls_bev_verify_error(bev, reason,
		    sizeof(reason));

		cur_host(d, host, sizeof(host));
		snprintf(why, sizeof(why), "TLS with %s failed (%s)", host,
		    r != NULL ? r : what & BEV_EVENT_TIMEOUT ? "timed out" :
		    "handshake failed or connection lost");
		(void)sts_fail(d, why);
		return;
	}
	if ((d->state == C_RSET || d->state == C_MAIL) && d->conn_uses > 0) {
		/* a kept connection the backend closed as it was taken:
		 * nothing was accepted on it, so a new one, at once */
		reconnect_fresh(d);
		return;
	}
	if (d->tls && (what & BEV_EVENT_ERROR)) {
		char reason[400];

		if (tls_bev_verify_error(bev, reason, sizeof(reason)) !=
		    NULL) {
			char *tw = xasprintf("TLS to %s: %s",
			    d->names[d->cur], reason);

			delivery_finish(d, 451, tw);
			free(tw);
			return;
		}
	}
	/* A peer that closed the connection (killed, restarted) leaves no
	 * socket error: errno's text would be a stale one, or "Success". */
	err = EVUTIL_SOCKET_ERROR();

	snprintf(why, sizeof(why), "%s to %s: %s",
	    d->state == C_CONNECT ? "connect" : "lost connection",
	    d->names[d->cur], what & BEV_EVENT_TIMEOUT ? "timed out" :
	    (what & BEV_EVENT_EOF) || err == 0 ?
	    "connection closed by the server" :
	    evutil_socket_error_to_string(err));
	delivery_finish(d, 451, why);
}

static void
connect_fresh(struct delivery *d)
{
	struct timeval tv = { (time_t)d->m->timeout, 0 };

	d->rpt_done = false;
	d->local_ip[0] = '\0';
	if (cur_dane(d) != NULL && cur_dane(d)->level == DANE_FAIL) {
		rpt_session(d, cur_dane(d), cur_dane(d)->rpt_result,
		    cur_dane(d)->why + 10 /* after "451 4.7.5 " */);
		dane_next(d, cur_dane(d)->why);
		return;
	}
	if (cur_sts(d) == STS_NOMATCH) {
		char host[300], *why;

		cur_host(d, host, sizeof(host));
		/* RFC 8460 has no type of its own for it */
		rpt_session(d, NULL, TLS_RPT_VALIDATION, "mx host not in "
		    "the policy");
		why = xasprintf("451 4.7.5 MTA-STS: %s matches no mx pattern "
		    "of the policy of %s", host, d->host);
		addr_next(d, 451, why);
		free(why);
		return;
	}
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

/* A kept connection taken by d will not do (it ended, or its RSET was
 * not answered 250): drop it and start a new one from the first
 * address. */
static void
reconnect_fresh(struct delivery *d)
{
	bufferevent_free(d->bev);
	d->bev = NULL;
	d->conn_uses = 0;
	d->cur = 0;
	connect_fresh(d);
}

/* ---- kept connections ----
 *
 * A session costs the next hop a connection, often a TLS handshake, and
 * EHLO or LHLO before the first MAIL. After a delivery whose replies all
 * came (SMTP: a 2xx after the data), the connection is kept instead:
 * RSET goes out and it waits, at most CACHE_IDLE seconds, for the next
 * delivery to the same next hop (the same address and port, the same
 * host name or recipient domain, SMTP or LMTP), as Postfix's smtp and
 * lmtp clients do with their connection cache on demand. It is taken
 * before or after the RSET's 250 (a delivery that takes it earlier reads
 * that answer first, and goes to a new connection unless it is 250);
 * anything else it says meanwhile (the 421 of a server that stops), its
 * end or an error drops it. One serves
 * at most CACHE_USES transactions; the manager keeps at most CACHE_MAX
 * (an idle connection for each of some hundreds of next hops; with 32
 * for 100 next hops most deliveries there opened a new connection).
 */

#define CACHE_MAX 256
#define CACHE_IDLE 2
#define CACHE_USES 100

struct conn_cache {
	struct conn_cache *next;
	struct mgr *m;
	struct bufferevent *bev;
	struct event *expire;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char *host;		/* the delivery's next hop (SNI name) */
	unsigned port;
	char *relay;		/* for the log */
	bool lmtp, tls, esmtp, pipelining;
	bool ready;		/* the RSET got its 250 */
	bool closing;		/* QUIT sent (idle too long) */
	unsigned uses;		/* transactions it carried */
};

static bool
same_addr(const struct sockaddr_storage *a, socklen_t alen,
    const struct sockaddr_storage *b, socklen_t blen)
{
	if (alen != blen || a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a,
		    *y = (const void *)b;

		return x->sin_port == y->sin_port &&
		    x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a,
		    *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		    memcmp(&x->sin6_addr, &y->sin6_addr,
		    sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

static void
cache_unlink(struct conn_cache *c)
{
	struct conn_cache **pp = &c->m->cache;

	while (*pp != NULL && *pp != c)
		pp = &(*pp)->next;
	if (*pp == c) {
		*pp = c->next;
		c->m->ncache--;
	}
	if (c->expire != NULL)
		event_free(c->expire);
	c->expire = NULL;
}

static void
cache_drop(struct conn_cache *c)
{
	cache_unlink(c);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	free(c->host);
	free(c->relay);
	free(c);
}

static void
cache_read(struct bufferevent *bev, void *arg)
{
	struct conn_cache *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	for (;;) {
		struct smtp_reply r;
		const char *err;
		int n = next_reply(in, &r, &err);

		if (n == 0)
			return;
		if (n < 0) {
			cache_drop(c);
			return;
		}
		if (c->ready || c->closing || r.code != 250) {
			smtp_reply_clear(&r);
			cache_drop(c);
			return;
		}
		c->ready = true;
		smtp_reply_clear(&r);
	}
}

static void
cache_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	cache_drop(arg);
}

static void
cache_expire(evutil_socket_t fd, short what, void *arg)
{
	struct conn_cache *c = arg;
	struct timeval tv = { CACHE_IDLE, 0 };

	(void)fd;
	(void)what;
	if (c->closing) {
		cache_drop(c);	/* no answer to the QUIT either */
		return;
	}
	evbuffer_add(bufferevent_get_output(c->bev), "QUIT\r\n", 6);
	c->closing = true;
	evtimer_add(c->expire, &tv);
}

/* At the end of a delivery whose replies all came: keep its connection
 * (RSET sent; d->bev handed over). false: close it as before. */
static bool
conn_park(struct delivery *d)
{
	struct mgr *m = d->m;
	struct conn_cache *c;
	struct timeval tv = { CACHE_IDLE, 0 };

	/* a DANE session is not reused: its checks were for this
	 * delivery's records */
	if (m->stopping || d->bev == NULL || cur_dane(d) != NULL ||
	    d->sts != NULL ||
	    m->ncache >= CACHE_MAX || d->conn_uses + 1 >= CACHE_USES)
		return false;
	c = xcalloc(1, sizeof(*c));
	c->m = m;
	c->expire = evtimer_new(m->base, cache_expire, c);
	if (c->expire == NULL) {
		free(c);
		return false;
	}
	c->bev = d->bev;
	d->bev = NULL;
	c->addr = d->addrs[d->cur];
	c->addrlen = d->addrlen[d->cur];
	c->host = xstrdup(d->host);
	c->port = d->port;
	c->lmtp = d->lmtp;
	c->relay = xstrdup(d->relay != NULL ? d->relay : d->names[d->cur]);
	c->tls = d->tls;
	c->esmtp = d->esmtp;
	c->pipelining = d->pipelining;
	c->uses = d->conn_uses + 1;
	bufferevent_setcb(c->bev, cache_read, NULL, cache_event, c);
	evbuffer_add(bufferevent_get_output(c->bev), "RSET\r\n", 6);
	c->next = m->cache;
	m->cache = c;
	m->ncache++;
	evtimer_add(c->expire, &tv);
	return true;
}

/* A kept connection to one of d's addresses: d goes on from MAIL on it. */
static bool
conn_take(struct delivery *d)
{
	struct timeval tv = { (time_t)d->m->timeout, 0 };

	for (struct conn_cache *c = d->m->cache; c != NULL; c = c->next) {
		bool c_ready;
		size_t i;

		if (c->closing || c->lmtp != d->lmtp || rt_wanted(d) ||
		    d->sts != NULL ||
		    c->port != d->port || strcmp(c->host, d->host) != 0)
			continue;
		for (i = 0; i < d->naddrs; i++)
			if (d->addr_dane[i] == 0 && same_addr(&d->addrs[i], d->addrlen[i], &c->addr,
			    c->addrlen))
				break;
		if (i == d->naddrs)
			continue;
		c_ready = c->ready;
		cache_unlink(c);
		d->bev = c->bev;
		c->bev = NULL;
		d->cur = i;
		d->tls = c->tls;
		d->esmtp = c->esmtp;
		d->pipelining = c->pipelining;
		d->starttls = false;
		d->conn_uses = c->uses;
		free(d->relay);
		d->relay = c->relay;
		c->relay = NULL;
		free(c->host);
		free(c);
		bufferevent_setcb(d->bev, client_read, NULL, client_event, d);
		bufferevent_set_timeouts(d->bev, &tv, &tv);
		bufferevent_enable(d->bev, EV_READ | EV_WRITE);
		if (c_ready) {
			send_envelope(d);
		} else {
			d->state = C_RSET;	/* its answer comes first */
		}
		return true;
	}
	return false;
}

void
delivery_connect(struct delivery *d)
{
	if (d->cur == 0 && conn_take(d))
		return;
	connect_fresh(d);
}

void
conn_cache_clear(struct mgr *m)
{
	while (m->cache != NULL)
		cache_drop(m->cache);
}
