/*
 * deflate.c: a raw DEFLATE layer (RFC 1951, no zlib header: RFC 4978's
 * COMPRESS=DEFLATE) between a session and its connection, as a
 * libevent filter bufferevent over the plain or TLS one, with zlib.
 *
 * Output is flushed with Z_SYNC_FLUSH whenever the filter runs, so every
 * response reaches the client at once (IMAP is interactive; RFC 4978 4).
 * Memory: our compressor keeps a 2^DEFLATE_WBITS window with memLevel
 * DEFLATE_MEMLEVEL; the decompressor must accept the 32 KiB window any
 * client may use. zlib allocates the inflate window on first input.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "lib/base/alloc.h"
#include "lib/io/deflate.h"

#define DEFLATE_WBITS	12	/* 4 KiB window: 16 KiB of compressor state */
#define DEFLATE_MEMLEVEL 4	/* 8 KiB of hash */
#define DEFLATE_CHUNK	4096

struct deflate_layer {
	z_stream in, out;
	struct bufferevent *bev;	/* the filter */
	bool broken;		/* the client sent what inflate cannot read */
};

static enum bufferevent_filter_result
run(z_stream *z, struct evbuffer *src, struct evbuffer *dst, bool compress,
    ev_ssize_t limit, bool *broken)
{
	struct evbuffer_iovec v[1];
	unsigned char *chunk = NULL;
	size_t produced = 0;
	int zr;

	for (;;) {
		size_t avail = evbuffer_get_length(src);
		struct evbuffer_iovec w;

		z->next_in = NULL;
		z->avail_in = 0;
		if (avail > 0) {
			if (evbuffer_peek(src, -1, NULL, v, 1) < 1)
				break;
			z->next_in = v[0].iov_base;
			z->avail_in = (uInt)v[0].iov_len;
		}
		if (evbuffer_reserve_space(dst, DEFLATE_CHUNK, &w, 1) < 1)
			return BEV_ERROR;
		chunk = w.iov_base;
		z->next_out = chunk;
		z->avail_out = (uInt)(w.iov_len < UINT32_MAX ? w.iov_len :
		    UINT32_MAX);
		if (compress)
			zr = deflate(z, Z_SYNC_FLUSH);
		else
			zr = inflate(z, Z_SYNC_FLUSH);
		w.iov_len -= z->avail_out;
		evbuffer_commit_space(dst, &w, 1);
		produced += w.iov_len;
		if (avail > 0)
			evbuffer_drain(src, v[0].iov_len - z->avail_in);
		if (zr == Z_STREAM_END || (zr != Z_OK && zr != Z_BUF_ERROR)) {
			/* a stream end or bad data: nothing more can follow */
			*broken = true;
			return BEV_ERROR;
		}
		if (z->avail_out != 0 && evbuffer_get_length(src) == 0)
			break;	/* all taken and flushed */
		if (zr == Z_BUF_ERROR && evbuffer_get_length(src) == 0)
			break;
		if (limit > 0 && produced >= (size_t)limit)
			break;	/* the reader's high watermark: more later */
	}
	return produced > 0 ? BEV_OK : BEV_NEED_MORE;
}

static enum bufferevent_filter_result
in_filter(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit,
    enum bufferevent_flush_mode mode, void *arg)
{
	struct deflate_layer *d = arg;
	enum bufferevent_filter_result r;

	if (d->broken)
		return BEV_ERROR;
	r = run(&d->in, src, dst, false, limit, &d->broken);
	/* libevent drops a filter's BEV_ERROR: report it as a read error,
	 * after what was inflated before it */
	if (d->broken)
		bufferevent_trigger_event(d->bev, BEV_EVENT_ERROR |
		    BEV_EVENT_READING, BEV_TRIG_DEFER_CALLBACKS);
	return r;
}

static enum bufferevent_filter_result
out_filter(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit,
    enum bufferevent_flush_mode mode, void *arg)
{
	struct deflate_layer *d = arg;
	bool broken = false;

	if (evbuffer_get_length(src) == 0)
		return BEV_NEED_MORE;
	return run(&d->out, src, dst, true, 0, &broken);
}

static void
layer_free(void *arg)
{
	struct deflate_layer *d = arg;

	inflateEnd(&d->in);
	deflateEnd(&d->out);
	free(d);
}

struct bufferevent *
deflate_layer_new(struct event_base *base, struct bufferevent *under)
{
	struct deflate_layer *d = xcalloc(1, sizeof(*d));
	struct bufferevent *bev;

	if (inflateInit2(&d->in, -15) != Z_OK) {
		free(d);
		return NULL;
	}
	if (deflateInit2(&d->out, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
	    -DEFLATE_WBITS, DEFLATE_MEMLEVEL, Z_DEFAULT_STRATEGY) != Z_OK) {
		inflateEnd(&d->in);
		free(d);
		return NULL;
	}
	bev = bufferevent_filter_new(under, in_filter, out_filter,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS, layer_free, d);
	if (bev == NULL)
		layer_free(d);
	else
		d->bev = bev;
	return bev;
}
