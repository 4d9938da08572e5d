#ifndef PETREL_CONN_H
#define PETREL_CONN_H
/* Small pieces every protocol session shares: the peer's address and
 * knowing when replies have really left (through a TLS layer too). */
#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
struct sockaddr;

/* The numeric address (ip, at least 64 bytes), port and whether it is a
 * loopback address (127.0.0.0/8, ::1). */
void conn_peer(const struct sockaddr *sa, char *ip, size_t iplen,
    unsigned *port_r, bool *loopback_r);
/* Bytes queued for the client, including those a TLS filter has handed
 * to the socket bufferevent beneath it. */
size_t conn_output_pending(struct bufferevent *bev);
/* Bounded buffers on a session bufferevent (INPUT_MAX, OUTPUT_MAX). */
void conn_set_watermarks(struct bufferevent *bev);

#endif
