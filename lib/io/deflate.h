#ifndef PETREL_DEFLATE_H
#define PETREL_DEFLATE_H
/* RFC 4978 COMPRESS=DEFLATE: a raw-deflate filter bufferevent over
 * `under` (freed with it). NULL if zlib cannot start. */
#include <stdbool.h>

struct bufferevent;
struct event_base;

struct bufferevent *deflate_layer_new(struct event_base *base,
    struct bufferevent *under);

#endif
