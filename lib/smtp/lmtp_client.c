/*
 * lmtp_client.c: the blocking LMTP client (see lmtp_client.h), shared by
 * the cut-through handover of a frontend's delivery job
 * (lib/deliver/cut.c) and `petrel user move` (cli/cmd_user_move.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "lib/base/fdio.h"
#include "lib/base/str.h"
#include "lib/smtp/lmtp_client.h"
#include "lib/tls/tls.h"

void
lmtpc_init(struct lmtp_client *c)
{
	c->fd = -1;
	c->tls = NULL;
	c->rlen = 0;
	c->line[0] = c->why[0] = c->relay[0] = '\0';
}

static void
fail(struct lmtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
fail(struct lmtp_client *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
}

void
lmtpc_close(struct lmtp_client *c)
{
	tls_fd_free(&c->tls);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->rlen = 0;
}

int
lmtpc_connect(struct lmtp_client *c, const char *host, unsigned port,
    unsigned connect_ms, unsigned io_ms)
{
	struct addrinfo hints, *res, *ai;
	struct timeval tv = { (time_t)(io_ms / 1000),
	    (suseconds_t)(io_ms % 1000) * 1000 };
	char service[8], name[256];
	size_t hl = strlen(host);
	int fd = -1, e, one = 1;

	lmtpc_close(c);
	/* [address] as a transport writes it */
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']')
		snprintf(name, sizeof(name), "%.*s", (int)(hl - 2 < 255 ?
		    hl - 2 : 255), host + 1);
	else
		snprintf(name, sizeof(name), "%s", host);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	snprintf(service, sizeof(service), "%u", port);
	if ((e = getaddrinfo(name, service, &hints, &res)) != 0) {
		fail(c, "unknown host %s: %s", name, gai_strerror(e));
		return -1;
	}
	fail(c, "%s: no address", name);
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		struct pollfd pfd;
		socklen_t len = sizeof(e);
		int pr;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		e = 0;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 &&
		    errno != EINPROGRESS) {
			fail(c, "connect to %s port %u: %s", name, port,
			    strerror(errno));
			close(fd);
			fd = -1;
			continue;
		}
		pfd = (struct pollfd){ fd, POLLOUT, 0 };
		do
			pr = poll(&pfd, 1, (int)connect_ms);
		while (pr < 0 && errno == EINTR);
		if (pr != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e,
		    &len) < 0 || e != 0) {
			fail(c, "connect to %s port %u: %s", name, port,
			    e != 0 ? strerror(e) : "timed out");
			close(fd);
			fd = -1;
			continue;
		}
		{
			char ip[64] = "?";

			(void)getnameinfo(ai->ai_addr, ai->ai_addrlen, ip,
			    sizeof(ip), NULL, 0, NI_NUMERICHOST);
			/* a long name shortened: the relay= of a log line */
			snprintf(c->relay, sizeof(c->relay), "%.200s[%.63s]:%u",
			    name, ip, port);
		}
		break;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return -1;
	/* a command line, then its reply awaited: with Nagle each one
	 * would wait for the peer's delayed ACK */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		fail(c, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	c->fd = fd;
	c->rlen = 0;
	return 0;
}

int
lmtpc_send(struct lmtp_client *c, const void *buf, size_t len)
{
	if (c->fd < 0) {
		fail(c, "not connected");
		return -1;
	}
	if (c->tls != NULL ? tls_fd_write(c->tls, buf, len) < 0 :
	    send_full(c->fd, buf, len) < 0) {
		fail(c, "write: %s", errno == EAGAIN ? "timed out" :
		    errno != 0 ? strerror(errno) : "TLS error");
		lmtpc_close(c);
		return -1;
	}
	return 0;
}

int
lmtpc_cmd(struct lmtp_client *c, const char *fmt, ...)
{
	str_t s = STR_INIT;
	va_list ap;
	int r;

	va_start(ap, fmt);
	str_vprintf(&s, fmt, ap);
	va_end(ap);
	str_append(&s, "\r\n");
	r = lmtpc_send(c, s.data, s.len);
	str_free(&s);
	return r;
}

int
lmtpc_line(struct lmtp_client *c)
{
	for (;;) {
		char *nl = memchr(c->rbuf, '\n', c->rlen);
		ssize_t k;

		if (nl != NULL) {
			size_t n = (size_t)(nl - c->rbuf);

			if (n >= sizeof(c->line))
				n = sizeof(c->line) - 1;
			memcpy(c->line, c->rbuf, n);
			c->line[n] = '\0';
			if (n > 0 && c->line[n - 1] == '\r')
				c->line[n - 1] = '\0';
			c->rlen -= (size_t)(nl + 1 - c->rbuf);
			memmove(c->rbuf, nl + 1, c->rlen);
			return 0;
		}
		if (c->fd < 0 || c->rlen == sizeof(c->rbuf)) {
			fail(c, "%s", c->fd < 0 ? "not connected" :
			    "reply line too long");
			lmtpc_close(c);
			return -1;
		}
		/* the socket's SO_RCVTIMEO bounds the wait */
		errno = 0;
		k = c->tls != NULL ? tls_fd_read(c->tls, c->rbuf + c->rlen,
		    sizeof(c->rbuf) - c->rlen) : read(c->fd, c->rbuf + c->rlen,
		    sizeof(c->rbuf) - c->rlen);
		if (k <= 0) {
			if (k < 0 && errno == EINTR && c->tls == NULL)
				continue;
			fail(c, "%s", k == 0 ? "connection closed by the peer" :
			    errno == EAGAIN || errno == EWOULDBLOCK ?
			    "timed out" : errno != 0 ? strerror(errno) :
			    "TLS error");
			lmtpc_close(c);
			return -1;
		}
		c->rlen += (size_t)k;
	}
}

int
lmtpc_reply(struct lmtp_client *c, str_t *text, const char *const *keywords,
    bool *has)
{
	int code = -1;
	bool first = true, more;

	if (text != NULL)
		str_truncate(text, 0);
	for (size_t i = 0; keywords != NULL && keywords[i] != NULL; i++)
		has[i] = false;
	do {
		const char *l = c->line;
		int lc;

		if (lmtpc_line(c) < 0)
			return -1;
		if (strlen(l) < 3 || l[0] < '2' || l[0] > '5' ||
		    l[1] < '0' || l[1] > '9' || l[2] < '0' || l[2] > '9' ||
		    (l[3] != '\0' && l[3] != ' ' && l[3] != '-')) {
			fail(c, "malformed reply: %.200s", l);
			lmtpc_close(c);
			return -1;
		}
		lc = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
		if (!first && lc != code) {
			fail(c, "malformed reply (codes differ): %.200s", l);
			lmtpc_close(c);
			return -1;
		}
		more = l[3] == '-';
		if (text != NULL) {
			if (!first)
				str_append_c(text, ' ');
			str_printf(text, "%d %s", lc, l[3] != '\0' ? l + 4 :
			    "");
		}
		for (size_t i = 0; !first && l[3] != '\0' && keywords != NULL &&
		    keywords[i] != NULL; i++) {
			size_t klen = strlen(keywords[i]);

			if (strncasecmp(l + 4, keywords[i], klen) == 0 &&
			    (l[4 + klen] == '\0' || l[4 + klen] == ' '))
				has[i] = true;
		}
		code = lc;
		first = false;
	} while (more);
	return code;
}

int
lmtpc_starttls(struct lmtp_client *c, struct tls_client *tc,
    const char *host)
{
	const char *err;

	if (c->fd < 0) {
		fail(c, "not connected");
		return -1;
	}
	/* RFC 3207 6: nothing the server sent in plaintext is kept */
	c->rlen = 0;
	c->tls = tls_fd_connect(tc, c->fd, host, &err);
	if (c->tls == NULL) {
		fail(c, "%s", err);
		lmtpc_close(c);
		return -1;
	}
	return 0;
}
