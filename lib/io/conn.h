#ifndef PETREL_CONN_H
#define PETREL_CONN_H
/* Small pieces every protocol session shares: the peer's address and
 * knowing when replies have really left (through a TLS layer too). */
#include <stdbool.h>
#include <stddef.h>

#include "lib/base/str.h"

struct bufferevent;
struct event;
struct event_base;
struct evbuffer;
struct sockaddr;

/* The numeric address (ip, at least 64 bytes), port and whether it is a
 * loopback address (127.0.0.0/8, ::1). */
void conn_peer(const struct sockaddr *sa, char *ip, size_t iplen,
    unsigned *port_r, bool *loopback_r);
/* Bytes queued for the client, including those a TLS filter has handed
 * to the socket bufferevent beneath it. */
size_t conn_output_pending(struct bufferevent *bev);
/* Append s to out and leave s empty: at 64 KiB or more the buffer itself
 * is handed over (libevent frees it once written: no copy), below that
 * it is copied and s keeps its memory. */
void conn_add_str(struct evbuffer *out, str_t *s);
/* Bounded buffers on a session bufferevent (INPUT_MAX, OUTPUT_MAX), and
 * writes of up to WRITE_SINGLE_MAX at a time. */
void conn_set_watermarks(struct bufferevent *bev);

/* A deadline for one command line. The socket timeout restarts with
 * every byte, so a client trickling a line byte by byte would hold its
 * session for ever; this timer runs from the first byte of a line that
 * is still incomplete. Call with waiting = true while a partial command
 * line is buffered (the timer starts unless running), false once a line
 * was taken (it stops). *ev is made on first use; free it with
 * event_free. secs = 0 disables. */
void conn_line_deadline(struct event **ev, struct event_base *base,
    bool waiting, unsigned secs, void (*expired)(int, short, void *),
    void *arg);

#endif
