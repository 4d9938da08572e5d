/*
 * conn.c: helpers shared by the SMTP, POP3 and IMAP sessions (see conn.h).
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "lib/base/limits.h"
#include "lib/io/conn.h"

void
conn_peer(const struct sockaddr *sa, char *ip, size_t iplen,
    unsigned *port_r, bool *loopback_r)
{
	*port_r = 0;
	*loopback_r = false;
	snprintf(ip, iplen, "unknown");
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, ip, (socklen_t)iplen);
		*port_r = ntohs(in->sin_port);
		*loopback_r = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, (socklen_t)iplen);
		*port_r = ntohs(in6->sin6_port);
		*loopback_r = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
	}
}

size_t
conn_output_pending(struct bufferevent *bev)
{
	size_t pending = 0;

	/* through every layer: COMPRESS over TLS over the socket */
	for (; bev != NULL; bev = bufferevent_get_underlying(bev))
		pending += evbuffer_get_length(bufferevent_get_output(bev));
	return pending;
}

void
conn_set_watermarks(struct bufferevent *bev)
{
	bufferevent_setwatermark(bev, EV_READ, 0, INPUT_MAX);
	bufferevent_setwatermark(bev, EV_WRITE, OUTPUT_MAX / 2, 0);
	bufferevent_set_max_single_write(bev, WRITE_SINGLE_MAX);
}

void
conn_line_deadline(struct event **ev, struct event_base *base, bool waiting,
    unsigned secs, void (*expired)(int, short, void *), void *arg)
{
	struct timeval tv = { (time_t)secs, 0 };

	if (!waiting || secs == 0) {
		if (*ev != NULL)
			evtimer_del(*ev);
		return;
	}
	if (*ev == NULL)
		*ev = evtimer_new(base, expired, arg);
	if (!evtimer_pending(*ev, NULL))
		evtimer_add(*ev, &tv);
}

/* Replies of at least this many bytes are handed over, not copied. */
#define HANDOVER_MIN (64 * 1024)

static void
free_handed(const void *data, size_t len, void *arg)
{
	(void)len;
	(void)arg;
	free((void *)data);
}

void
conn_add_str(struct evbuffer *out, str_t *s)
{
	if (s->len >= HANDOVER_MIN &&
	    evbuffer_add_reference(out, s->data, s->len, free_handed,
	    NULL) == 0) {
		*s = (str_t)STR_INIT;
		return;
	}
	if (s->len > 0)
		evbuffer_add(out, s->data, s->len);
	str_truncate(s, 0);
}
