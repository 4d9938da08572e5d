/*
 * client.c: one milter conversation about one message (milter.h), and
 * the changes a filter asked for written into a new copy of the message.
 *
 * The conversation blocks; it runs on a job thread. Connecting, every
 * write and every wait for a reply take at most the timeout; a filter's
 * "progress" replies restart the wait, but the whole conversation ends
 * after ten timeouts.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/str.h"
#include "lib/milter/milter.h"
#include "lib/queue/spool.h"

struct conv {
	int fd;
	int timeout_ms;
	int64_t deadline;	/* the whole conversation (monotonic ms) */
	uint32_t actions, steps;	/* negotiated */
	uint32_t version;		/* the filter's */
	unsigned char *in;	/* received, not yet taken */
	size_t inlen, incap, consumed;
	const struct milter_msg *msg;
	struct milter_result *r;
	uint64_t body_max;
	char error[256];
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
fail(struct conv *c, const char *what, const char *detail)
{
	if (c->error[0] == '\0')
		snprintf(c->error, sizeof(c->error), "%s%s%s", what,
		    detail ? ": " : "", detail ? detail : "");
	return -1;
}

/* Wait for fd to be ready for events; the timeout or the deadline,
 * whichever comes first. */
static int
wait_fd(struct conv *c, short events, const char *what)
{
	for (;;) {
		struct pollfd pfd = { .fd = c->fd, .events = events };
		int64_t left = c->deadline - now_ms();
		int t = c->timeout_ms, n;

		if (left <= 0)
			return fail(c, what, "conversation too long");
		if (left < t)
			t = (int)left;
		n = poll(&pfd, 1, t);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(c, what, strerror(errno));
		if (n == 0)
			return fail(c, what, "timed out");
		return 0;
	}
}

static int
send_packet(struct conv *c, char cmd, const void *data, size_t len)
{
	uint32_t n = (uint32_t)len + 1;
	unsigned char *buf = xmalloc(len + 5), *p = buf;
	size_t left = len + 5;

	/* one write per packet: a header and its data in separate segments
	 * would wait for the peer's delayed ACK */
	buf[0] = (unsigned char)(n >> 24);
	buf[1] = (unsigned char)(n >> 16);
	buf[2] = (unsigned char)(n >> 8);
	buf[3] = (unsigned char)n;
	buf[4] = (unsigned char)cmd;
	if (len > 0)
		memcpy(buf + 5, data, len);
	while (left > 0) {
		ssize_t w = send(c->fd, p, left, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wait_fd(c, POLLOUT, "write") < 0)
				break;
			continue;
		}
		if (w < 0) {
			fail(c, "write", strerror(errno));
			break;
		}
		p += w;
		left -= (size_t)w;
	}
	free(buf);
	return left == 0 ? 0 : -1;
}

/* Read and decode the next packet (its strings valid until the next
 * call). 0, or -1 on a timeout, a closed connection or bad data. */
static int
read_reply(struct conv *c, struct milter_reply *rep)
{
	if (c->consumed > 0) {
		memmove(c->in, c->in + c->consumed, c->inlen - c->consumed);
		c->inlen -= c->consumed;
		c->consumed = 0;
	}
	for (;;) {
		struct milter_packet p;
		const char *err;
		size_t used;
		ssize_t n;
		int r = milter_frame(c->in, c->inlen, &p, &used, &err);

		if (r < 0)
			return fail(c, "reply", err);
		if (r > 0) {
			c->consumed = used;
			if (milter_decode(p.cmd, (unsigned char *)p.data, p.len,
			    rep, &err) < 0)
				return fail(c, "reply", err);
			return 0;
		}
		if (c->incap - c->inlen < 65536) {
			size_t want = c->incap * 2 < 65536 * 2 ? 65536 * 2 :
			    c->incap * 2;

			if (want > MILTER_PACKET_MAX + 4 + 65536)
				want = MILTER_PACKET_MAX + 4 + 65536;
			if (want > c->incap) {
				c->in = xrealloc(c->in, want);
				c->incap = want;
			}
		}
		if (wait_fd(c, POLLIN, "reply") < 0)
			return -1;
		n = recv(c->fd, c->in + c->inlen, c->incap - c->inlen, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return fail(c, "read", strerror(errno));
		if (n == 0)
			return fail(c, "reply", c->inlen > 0 ?
			    "connection closed inside a packet" :
			    "connection closed");
		c->inlen += (size_t)n;
	}
}

static int
connect_to(struct conv *c, const struct milter_spec *spec)
{
	struct addrinfo hints, *res = NULL, *ai;
	int e;

	if (spec->path != NULL) {
		struct sockaddr_un sun;

		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		memcpy(sun.sun_path, spec->path, strlen(spec->path));
		c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (c->fd < 0)
			return fail(c, "socket", strerror(errno));
		if (connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 &&
		    errno != EINPROGRESS)
			return fail(c, "connect", strerror(errno));
	} else {
		memset(&hints, 0, sizeof(hints));
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_NUMERICSERV;
		if ((e = getaddrinfo(spec->host, spec->port, &hints, &res)) != 0)
			return fail(c, "resolve", gai_strerror(e));
		for (ai = res; ai != NULL; ai = ai->ai_next) {
			c->fd = socket(ai->ai_family, ai->ai_socktype |
			    SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
			if (c->fd < 0)
				continue;
			if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
			    errno == EINPROGRESS) {
				int one = 1;

				/* many small packets, each awaited */
				setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one,
				    sizeof(one));
				break;
			}
			close(c->fd);
			c->fd = -1;
		}
		freeaddrinfo(res);
		if (c->fd < 0)
			return fail(c, "connect", strerror(errno));
	}
	if (wait_fd(c, POLLOUT, "connect") < 0)
		return -1;
	{
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr != 0)
			return fail(c, "connect", strerror(soerr));
	}
	return 0;
}

/* ---- packets ---- */

static void
put_u32(str_t *s, uint32_t v)
{
	char b[4] = { (char)(v >> 24), (char)(v >> 16), (char)(v >> 8),
	    (char)v };

	str_append_n(s, b, 4);
}

static void
put_string(str_t *s, const char *v)
{
	str_append_n(s, v, strlen(v) + 1);
}

/* The macros for a stage (name, value pairs; NULL values skipped). */
static int
send_macros(struct conv *c, char stage, const char *const *kv, size_t n)
{
	str_t s = STR_INIT;
	int r;

	str_append_c(&s, stage);
	for (size_t i = 0; i + 1 < n; i += 2) {
		if (kv[i + 1] == NULL)
			continue;
		put_string(&s, kv[i]);
		put_string(&s, kv[i + 1]);
	}
	r = send_packet(c, SMFIC_MACRO, s.data, s.len);
	str_free(&s);
	return r;
}

enum step { STEP_CONTINUE, STEP_FINAL, STEP_SKIP };

/* The verdict of a reply at any stage, or STEP_CONTINUE. */
static int
verdict(struct conv *c, const struct milter_reply *rep)
{
	struct milter_result *r = c->r;

	switch (rep->cmd) {
	case SMFIR_CONTINUE:
		return STEP_CONTINUE;
	case SMFIR_ACCEPT:
		r->verdict = MILTER_ACCEPT;
		return STEP_FINAL;
	case SMFIR_REJECT:
		r->verdict = MILTER_REJECT;
		return STEP_FINAL;
	case SMFIR_TEMPFAIL:
		r->verdict = MILTER_TEMPFAIL;
		return STEP_FINAL;
	case SMFIR_DISCARD:
		r->verdict = MILTER_DISCARD;
		return STEP_FINAL;
	case SMFIR_REPLYCODE:
		if (rep->name[0] != '4' && rep->name[0] != '5')
			return fail(c, "reply code", "not 4xx or 5xx");
		r->reply = milter_reply_line(rep->name, rep->name[0] == '4');
		if (r->reply == NULL)
			return fail(c, "reply code", "malformed");
		r->verdict = rep->name[0] == '4' ? MILTER_TEMPFAIL :
		    MILTER_REJECT;
		return STEP_FINAL;
	default: {
		char what[8];

		snprintf(what, sizeof(what), "0x%02x", (unsigned char)rep->cmd);
		return fail(c, "unexpected reply", what);
	}
	}
}

/* Send a stage's command and read its answer (none when the filter said
 * it gives none). STEP_* or -1. */
static int
stage(struct conv *c, char cmd, const void *data, size_t len,
    uint32_t no_reply, bool skip_ok)
{
	struct milter_reply rep;

	if (send_packet(c, cmd, data, len) < 0)
		return -1;
	if (c->steps & no_reply)
		return STEP_CONTINUE;
	for (;;) {
		if (read_reply(c, &rep) < 0)
			return -1;
		if (rep.cmd == SMFIR_PROGRESS)
			continue;
		if (rep.cmd == SMFIR_SKIP && skip_ok)
			return STEP_SKIP;
		return verdict(c, &rep);
	}
}

/* ---- the message's header section ---- */

struct field {
	const char *raw;	/* the field as received (NULL: new) */
	size_t raw_len;
	char *name;
	char *value;		/* unfolded lines kept, no leading blank */
	bool deleted;
};

struct header {
	str_t text;
	struct field *f;
	size_t n;
	uint64_t body_off;
};

struct collect {
	str_t *text;
	size_t max;
};

static int
collect_cb(void *ctx, const void *data, size_t len)
{
	struct collect *k = ctx;
	size_t take = len;

	if (k->text->len + take > k->max)
		take = k->max - k->text->len;
	str_append_n(k->text, data, take);
	return k->text->len >= k->max ? -1 : 0;
}

static void
field_add(struct header *h, const char *raw, size_t raw_len, size_t colon)
{
	const char *v = raw + colon + 1, *end = raw + raw_len;
	struct field *f;

	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\n' || end[-1] == '\r'))
		end--;
	h->f = xrealloc(h->f, (h->n + 1) * sizeof(*h->f));
	f = &h->f[h->n++];
	f->raw = raw;
	f->raw_len = raw_len;
	f->name = xstrndup(raw, colon);
	f->value = xstrndup(v, (size_t)(end - v));
	f->deleted = false;
}

/* Read the header section of the message (at most MILTER_HEADER_MAX):
 * its fields, and where the body starts. A line that is neither a field
 * nor a continuation starts the body. */
static void
header_read(struct spool *sp, struct header *h)
{
	struct collect k;
	size_t pos = 0, start = 0, colon = 0;
	bool in_field = false, whole;

	memset(h, 0, sizeof(*h));
	k.text = &h->text;
	k.max = MILTER_HEADER_MAX;
	spool_each(sp, collect_cb, &k);
	whole = h->text.len == sp->size;
	h->body_off = sp->size;
	while (pos < h->text.len) {
		const char *line = h->text.data + pos;
		const char *nl = memchr(line, '\n', h->text.len - pos);
		size_t llen = nl ? (size_t)(nl - line) + 1 : h->text.len - pos;

		if (nl == NULL && !whole)
			break;	/* cut by the bound: the rest is body */
		if ((line[0] == ' ' || line[0] == '\t') && in_field) {
			pos += llen;
			continue;
		}
		if (in_field)
			field_add(h, h->text.data + start, pos - start, colon);
		in_field = false;
		if (line[0] == '\n' || (line[0] == '\r' && llen == 2 &&
		    line[1] == '\n')) {
			h->body_off = pos + llen;
			return;
		}
		{
			const char *c = memchr(line, ':', llen);

			if (c == NULL || c == line ||
			    memchr(line, ' ', (size_t)(c - line)) != NULL ||
			    memchr(line, '\t', (size_t)(c - line)) != NULL) {
				h->body_off = pos;
				return;
			}
			start = pos;
			colon = (size_t)(c - line);
			in_field = true;
		}
		pos += llen;
	}
	if (in_field)
		field_add(h, h->text.data + start, pos - start, colon);
	h->body_off = pos;
}

static void
header_free(struct header *h)
{
	for (size_t i = 0; i < h->n; i++) {
		free(h->f[i].name);
		free(h->f[i].value);
	}
	free(h->f);
	str_free(&h->text);
}

/* ---- the body, in CRLF chunks ---- */

struct body_send {
	struct conv *c;
	uint64_t skip;		/* header octets still to pass over */
	str_t chunk;
	bool prev_cr;
	int result;		/* STEP_CONTINUE, STEP_FINAL, STEP_SKIP, -1 */
};

static int
body_flush(struct body_send *b)
{
	int r;

	if (b->chunk.len == 0)
		return 0;
	r = stage(b->c, SMFIC_BODY, b->chunk.data, b->chunk.len,
	    SMFIP_NR_BODY, (b->c->steps & SMFIP_SKIP) != 0);
	str_truncate(&b->chunk, 0);
	if (r != STEP_CONTINUE) {
		b->result = r;
		return -1;
	}
	return 0;
}

static int
body_cb(void *ctx, const void *data, size_t len)
{
	struct body_send *b = ctx;
	const char *p = data;

	if (b->skip >= len) {
		b->skip -= len;
		return 0;
	}
	p += b->skip;
	len -= (size_t)b->skip;
	b->skip = 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\n' && !b->prev_cr)
			str_append_c(&b->chunk, '\r');
		str_append_c(&b->chunk, p[i]);
		b->prev_cr = p[i] == '\r';
		if (b->chunk.len >= MILTER_CHUNK - 1 && body_flush(b) < 0)
			return -1;
	}
	return 0;
}

/* ---- end of message ---- */

static char *
strip_brackets(const char *addr)
{
	size_t n = strlen(addr);

	if (n >= 2 && addr[0] == '<' && addr[n - 1] == '>')
		return xstrndup(addr + 1, n - 2);
	return xstrdup(addr);
}

static bool
address_ok(const char *a)
{
	size_t n = strlen(a);

	if (n > 320)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)a[i] <= 0x20 || a[i] == 0x7f ||
		    a[i] == '<' || a[i] == '>')
			return false;
	return true;
}

/* The modifications and the final verdict after BODYEOB. */
static int
end_of_message(struct conv *c)
{
	struct milter_result *r = c->r;
	struct milter_reply rep;

	for (;;) {
		uint32_t need = 0;

		if (read_reply(c, &rep) < 0)
			return -1;
		switch (rep.cmd) {
		case SMFIR_PROGRESS:
			continue;
		case SMFIR_ADDHEADER:
			need = SMFIF_ADDHDRS;
			break;
		case SMFIR_INSHEADER:
			need = SMFIF_ADDHDRS | SMFIF_CHGHDRS;
			break;
		case SMFIR_CHGHEADER:
			need = SMFIF_CHGHDRS;
			break;
		case SMFIR_REPLBODY:
			need = SMFIF_CHGBODY;
			break;
		case SMFIR_DELRCPT:
			need = SMFIF_DELRCPT;
			break;
		case SMFIR_CHGFROM:
			need = SMFIF_CHGFROM;
			break;
		case SMFIR_QUARANTINE:
			need = SMFIF_QUARANTINE;
			break;
		case SMFIR_ADDRCPT:
		case SMFIR_ADDRCPT_PAR:
			return fail(c, "add recipient", "not offered");
		default:
			if (verdict(c, &rep) < 0)
				return -1;
			return STEP_FINAL;
		}
		if ((c->actions & need) == 0) {
			char what[8];

			snprintf(what, sizeof(what), "0x%02x",
			    (unsigned char)rep.cmd);
			return fail(c, "modification not negotiated", what);
		}
		switch (rep.cmd) {
		case SMFIR_ADDHEADER:
		case SMFIR_INSHEADER:
		case SMFIR_CHGHEADER:
			if (r->nedits >= MILTER_EDITS_MAX)
				return fail(c, "header changes", "too many");
			r->edits = xrealloc(r->edits, (r->nedits + 1) *
			    sizeof(*r->edits));
			r->edits[r->nedits].kind = rep.cmd == SMFIR_ADDHEADER ?
			    MILTER_ADD : rep.cmd == SMFIR_INSHEADER ?
			    MILTER_INSERT : MILTER_CHANGE;
			r->edits[r->nedits].index = rep.index;
			r->edits[r->nedits].name = xstrdup(rep.name);
			r->edits[r->nedits].value = xstrdup(rep.value);
			r->nedits++;
			break;
		case SMFIR_REPLBODY:
			if (r->body.len + rep.body_len > c->body_max)
				return fail(c, "body replacement",
				    "over message_size_limit");
			r->body_replaced = true;
			str_append_n(&r->body, rep.body, rep.body_len);
			break;
		case SMFIR_DELRCPT: {
			char *a = strip_brackets(rep.name);

			if (r->ndel_rcpts >= 1000 || !address_ok(a)) {
				free(a);
				return fail(c, "delete recipient", "bad");
			}
			r->del_rcpts = xrealloc(r->del_rcpts,
			    (r->ndel_rcpts + 1) * sizeof(char *));
			r->del_rcpts[r->ndel_rcpts++] = a;
			break;
		}
		case SMFIR_CHGFROM: {
			char *a = strip_brackets(rep.name);

			if (!address_ok(a)) {
				free(a);
				return fail(c, "change sender", "bad address");
			}
			free(r->new_sender);
			r->new_sender = a;
			break;
		}
		case SMFIR_QUARANTINE: {
			size_t n = strcspn(rep.name, "\r\n");

			free(r->quarantine);
			if (n > 200)
				n = 200;
			r->quarantine = xstrndup(rep.name, n);
			for (char *p = r->quarantine; *p; p++)
				if ((unsigned char)*p < 0x20 ||
				    (unsigned char)*p >= 0x7f)
					*p = '?';
			break;
		}
		}
	}
}

/* The body replacement with LF line ends. */
static void
body_to_lf(str_t *b)
{
	size_t j = 0;

	for (size_t i = 0; i < b->len; i++) {
		if (b->data[i] == '\r' && i + 1 < b->len &&
		    b->data[i + 1] == '\n')
			continue;
		b->data[j++] = b->data[i];
	}
	str_truncate(b, j);
}

/* ---- the conversation ---- */

/* Connect, negotiate, CONNECT, HELO, MAIL: STEP_CONTINUE, STEP_FINAL
 * or -1. */
static int
conv_begin(struct conv *c, const struct milter_spec *spec)
{
	const struct milter_msg *m = c->msg;
	struct milter_reply rep;
	str_t s = STR_INIT;
	char name[128], portstr[8];
	int r;

	if (connect_to(c, spec) < 0)
		return -1;
	put_u32(&s, MILTER_VERSION);
	put_u32(&s, MILTER_ACTIONS_OFFERED);
	put_u32(&s, MILTER_PROTOCOL_OFFERED);
	r = send_packet(c, SMFIC_OPTNEG, s.data, s.len);
	str_free(&s);
	if (r < 0 || read_reply(c, &rep) < 0)
		return -1;
	if (rep.cmd != SMFIC_OPTNEG)
		return fail(c, "negotiation", "no option reply");
	if (rep.version < 2 || rep.version > MILTER_VERSION)
		return fail(c, "negotiation", "unsupported version");
	/* A filter may name more actions than offered (rspamd names them
	 * all): it gets those offered, and using another is an error. */
	c->actions = rep.actions & MILTER_ACTIONS_OFFERED;
	c->steps = rep.protocol & MILTER_PROTOCOL_OFFERED;
	c->version = rep.version;

	snprintf(name, sizeof(name), "[%s]", m->client_ip);
	snprintf(portstr, sizeof(portstr), "%u", m->client_port);
	if (!(c->steps & SMFIP_NOCONNECT)) {
		const char *mac[] = { "j", m->hostname, "{daemon_name}",
		    m->daemon, "v", "petrel", "{client_addr}", m->client_ip,
		    "{client_name}", name, "{client_port}", portstr,
		    "_", name };

		if (send_macros(c, 'C', mac, 14) < 0)
			return -1;
		put_string(&s, name);
		str_append_c(&s, m->client_family == AF_INET6 ? '6' : '4');
		str_append_c(&s, (char)(m->client_port >> 8));
		str_append_c(&s, (char)(m->client_port & 0xff));
		put_string(&s, m->client_ip);
		r = stage(c, SMFIC_CONNECT, s.data, s.len, SMFIP_NR_CONN,
		    false);
		str_free(&s);
		if (r != STEP_CONTINUE)
			return r;
	}
	if (m->helo != NULL && !(c->steps & SMFIP_NOHELO)) {
		const char *mac[] = { "{tls_version}", m->tls ? "TLS" : NULL };

		if (send_macros(c, 'H', mac, 2) < 0)
			return -1;
		r = stage(c, SMFIC_HELO, m->helo, strlen(m->helo) + 1,
		    SMFIP_NR_HELO, false);
		if (r != STEP_CONTINUE)
			return r;
	}
	if (!(c->steps & SMFIP_NOMAIL)) {
		const char *mac[] = { "i", m->qid, "{mail_addr}", m->sender,
		    "{auth_type}", m->auth_user ? "PLAIN" : NULL,
		    "{auth_authen}", m->auth_user };

		if (send_macros(c, 'M', mac, 8) < 0)
			return -1;
		str_printf(&s, "<%s>", m->sender);
		str_append_c(&s, '\0');
		r = stage(c, SMFIC_MAIL, s.data, s.len, SMFIP_NR_MAIL, false);
		str_free(&s);
		if (r != STEP_CONTINUE)
			return r;
	}
	return STEP_CONTINUE;
}

static int
conv_rcpt(struct conv *c, const char *rcpt)
{
	const char *mac[] = { "{rcpt_addr}", rcpt };
	str_t s = STR_INIT;
	int r;

	if (c->steps & SMFIP_NORCPT)
		return STEP_CONTINUE;
	if (send_macros(c, 'R', mac, 2) < 0)
		return -1;
	str_printf(&s, "<%s>", rcpt);
	str_append_c(&s, '\0');
	r = stage(c, SMFIC_RCPT, s.data, s.len, SMFIP_NR_RCPT, false);
	str_free(&s);
	return r;
}

/* DATA, the header, the body, the end of the message. */
static int
conv_end(struct conv *c)
{
	const struct milter_msg *m = c->msg;
	struct header h;
	str_t s = STR_INIT;
	int r;

	if (c->version >= 4 && !(c->steps & SMFIP_NODATA)) {
		r = stage(c, SMFIC_DATA, "", 0, SMFIP_NR_DATA, false);
		if (r != STEP_CONTINUE)
			return r;
	}
	header_read(m->body, &h);
	for (size_t i = 0; i < h.n && !(c->steps & SMFIP_NOHDRS); i++) {
		put_string(&s, h.f[i].name);
		put_string(&s, h.f[i].value);
		r = stage(c, SMFIC_HEADER, s.data, s.len, SMFIP_NR_HDR,
		    (c->steps & SMFIP_SKIP) != 0);
		str_free(&s);
		if (r == STEP_SKIP)
			break;
		if (r != STEP_CONTINUE) {
			header_free(&h);
			return r;
		}
	}
	if (!(c->steps & SMFIP_NOEOH)) {
		r = stage(c, SMFIC_EOH, "", 0, SMFIP_NR_EOH, false);
		if (r != STEP_CONTINUE) {
			header_free(&h);
			return r;
		}
	}
	if (!(c->steps & SMFIP_NOBODY)) {
		struct body_send b = { .c = c, .skip = h.body_off,
		    .chunk = STR_INIT, .result = STEP_CONTINUE };

		if (spool_each(m->body, body_cb, &b) == 0)
			body_flush(&b);
		else if (b.result == STEP_CONTINUE)
			b.result = fail(c, "body", "cannot read the message");
		str_free(&b.chunk);
		if (b.result != STEP_CONTINUE && b.result != STEP_SKIP) {
			header_free(&h);
			return b.result;
		}
	}
	header_free(&h);
	{
		const char *mac[] = { "i", m->qid };

		if (send_macros(c, 'E', mac, 2) < 0)
			return -1;
	}
	if (send_packet(c, SMFIC_BODYEOB, "", 0) < 0)
		return -1;
	return end_of_message(c);
}

struct milter_conn {
	struct conv c;
};

/* A call begins: its result and its deadline. */
static void
call_start(struct conv *c, const struct milter_msg *msg,
    struct milter_result *r)
{
	memset(r, 0, sizeof(*r));
	r->verdict = MILTER_ACCEPT;
	c->r = r;
	c->msg = msg;
	c->error[0] = '\0';
	c->deadline = now_ms() + 10 * (int64_t)c->timeout_ms;
}

/* A call's outcome: the failure recorded, nothing of it applied. */
static void
call_failed(struct conv *c, struct milter_result *r)
{
	r->verdict = MILTER_FAILED;
	free(r->reply);
	r->reply = NULL;
	r->error = xstrdup(c->error[0] ? c->error : "protocol error");
	for (size_t i = 0; i < r->nedits; i++) {
		free(r->edits[i].name);
		free(r->edits[i].value);
	}
	xfree(&r->edits);
	r->nedits = 0;
	r->body_replaced = false;
	str_free(&r->body);
}

int
milter_begin(const struct milter_spec *spec, const struct milter_msg *msg,
    unsigned timeout_s, uint64_t body_max, struct milter_conn **conn_r,
    struct milter_result *r)
{
	struct milter_conn *conn = xcalloc(1, sizeof(*conn));
	int res;

	*conn_r = NULL;
	conn->c.fd = -1;
	conn->c.timeout_ms = (int)(timeout_s > 0 ? timeout_s : 1) * 1000;
	conn->c.body_max = body_max;
	call_start(&conn->c, msg, r);
	res = conv_begin(&conn->c, spec);
	if (res == STEP_CONTINUE) {
		*conn_r = conn;
		return 1;
	}
	if (res < 0)
		call_failed(&conn->c, r);
	milter_close(conn);
	return 0;
}

int
milter_rcpt(struct milter_conn *conn, const struct milter_msg *msg,
    const char *rcpt, struct milter_result *r)
{
	int res;

	call_start(&conn->c, msg, r);
	res = conv_rcpt(&conn->c, rcpt);
	if (res == STEP_CONTINUE)
		return 1;
	if (res < 0)
		call_failed(&conn->c, r);
	return 0;
}

void
milter_end(struct milter_conn *conn, const struct milter_msg *msg,
    struct milter_result *r)
{
	int res;

	call_start(&conn->c, msg, r);
	res = conv_end(&conn->c);
	if (res < 0)
		call_failed(&conn->c, r);
	else if (r->body_replaced)
		body_to_lf(&r->body);
	milter_close(conn);
}

void
milter_close(struct milter_conn *conn)
{
	if (conn == NULL)
		return;
	if (conn->c.fd >= 0) {
		/* a goodbye if the socket takes it at once; never waits */
		static const unsigned char quit[5] = { 0, 0, 0, 1, SMFIC_QUIT };

		(void)!send(conn->c.fd, quit, sizeof(quit),
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		close(conn->c.fd);
	}
	free(conn->c.in);
	free(conn);
}

void
milter_run(const struct milter_spec *spec, const struct milter_msg *msg,
    unsigned timeout_s, uint64_t body_max, struct milter_result *r)
{
	struct milter_conn *conn;

	if (!milter_begin(spec, msg, timeout_s, body_max, &conn, r))
		return;
	for (size_t i = 0; i < msg->nrcpts; i++) {
		if (!milter_rcpt(conn, msg, msg->rcpts[i], r)) {
			milter_close(conn);
			return;
		}
		milter_result_free(r);
	}
	milter_end(conn, msg, r);
}

void
milter_result_free(struct milter_result *r)
{
	for (size_t i = 0; i < r->nedits; i++) {
		free(r->edits[i].name);
		free(r->edits[i].value);
	}
	free(r->edits);
	for (size_t i = 0; i < r->ndel_rcpts; i++)
		free(r->del_rcpts[i]);
	free(r->del_rcpts);
	free(r->reply);
	free(r->quarantine);
	free(r->error);
	free(r->new_sender);
	str_free(&r->body);
	memset(r, 0, sizeof(*r));
}

/* ---- applying the changes ---- */

/* A value from a filter as header lines: CRLF and bare CR made LF,
 * every line after the first begins with white space, no empty line. */
static void
put_value(str_t *out, const char *v)
{
	bool bol = false;

	for (const char *p = v; *p; p++) {
		char ch = *p;

		if (ch == '\r' && p[1] == '\n')
			continue;
		if (ch == '\r')
			ch = '\n';
		if (ch == '\n') {
			bol = true;
			continue;
		}
		if (bol) {
			str_append_c(out, '\n');
			if (ch != ' ' && ch != '\t')
				str_append_c(out, '\t');
			bol = false;
		}
		str_append_c(out, ch);
	}
}

struct copy_from {
	struct spool *out;
	uint64_t skip;
	const char *error;
};

static int
copy_cb(void *ctx, const void *data, size_t len)
{
	struct copy_from *k = ctx;
	const char *p = data;

	if (k->skip >= len) {
		k->skip -= len;
		return 0;
	}
	p += k->skip;
	len -= (size_t)k->skip;
	k->skip = 0;
	return spool_append(k->out, p, len, &k->error);
}

int
milter_apply(struct spool *msg, const struct milter_result *r,
    struct spool *out, const char **error_r)
{
	struct header h;
	str_t text = STR_INIT;
	int ret = 0;

	header_read(msg, &h);
	for (size_t e = 0; e < r->nedits; e++) {
		const struct milter_edit *ed = &r->edits[e];
		struct field nf = { NULL, 0, ed->name, ed->value, false };
		uint32_t want = ed->index > 0 ? ed->index : 1, seen = 0;
		size_t at = h.n;

		if (ed->kind == MILTER_CHANGE) {
			size_t i;

			for (i = 0; i < h.n; i++)
				if (!h.f[i].deleted &&
				    strcasecmp(h.f[i].name, ed->name) == 0 &&
				    ++seen == want)
					break;
			if (i < h.n) {
				if (ed->value[0] == '\0') {
					h.f[i].deleted = true;
				} else {
					free(h.f[i].value);
					h.f[i].value = xstrdup(ed->value);
					h.f[i].raw = NULL;
				}
				continue;
			}
			if (ed->value[0] == '\0')
				continue;	/* nothing to delete */
		} else if (ed->kind == MILTER_INSERT) {
			at = ed->index < h.n ? ed->index : h.n;
		}
		nf.name = xstrdup(ed->name);
		nf.value = xstrdup(ed->value);
		h.f = xrealloc(h.f, (h.n + 1) * sizeof(*h.f));
		memmove(&h.f[at + 1], &h.f[at], (h.n - at) * sizeof(*h.f));
		h.f[at] = nf;
		h.n++;
	}
	for (size_t i = 0; i < h.n; i++) {
		if (h.f[i].deleted)
			continue;
		if (h.f[i].raw != NULL) {
			str_append_n(&text, h.f[i].raw, h.f[i].raw_len);
			if (h.f[i].raw_len == 0 ||
			    h.f[i].raw[h.f[i].raw_len - 1] != '\n')
				str_append_c(&text, '\n');
			continue;
		}
		str_append(&text, h.f[i].name);
		str_append(&text, ": ");
		put_value(&text, h.f[i].value);
		str_append_c(&text, '\n');
	}
	str_append_c(&text, '\n');
	if (spool_append(out, text.data, text.len, error_r) < 0)
		ret = -1;
	else if (r->body_replaced) {
		if (r->body.len > 0 &&
		    spool_append(out, r->body.data, r->body.len, error_r) < 0)
			ret = -1;
	} else {
		struct copy_from k = { out, h.body_off, NULL };

		if (spool_each(msg, copy_cb, &k) < 0) {
			*error_r = k.error ? k.error : "cannot read the message";
			ret = -1;
		}
	}
	str_free(&text);
	header_free(&h);
	return ret;
}
