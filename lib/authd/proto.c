/*
 * proto.c: encoder and decoder of the auth channel (lib/authd/proto.h).
 *
 * SECURITY: the decoder runs in the auth process on frames from workers
 * that may be compromised, and in workers on frames from the auth process.
 * It trusts nothing: the frame length is bounded before anything is
 * allocated, every string is bounded and NUL-free, every enum is range
 * checked, and a frame must be filled exactly by the fields of its kind.
 * A LOGIN request's password is wiped from every buffer we own.
 */
#include "lib/authd/proto.h"

#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/route/route.h"

#define STR_NULL 0xffffffffu

/* ---- encoding ---- */

static void
put_u8(str_t *out, uint8_t v)
{
	str_append_n(out, &v, 1);
}

static void
put_u32(str_t *out, uint32_t v)
{
	unsigned char b[4] = { v >> 24, v >> 16, v >> 8, v };

	str_append_n(out, b, 4);
}

static void
put_u64(str_t *out, uint64_t v)
{
	put_u32(out, (uint32_t)(v >> 32));
	put_u32(out, (uint32_t)v);
}

static void
put_str(str_t *out, const char *s)
{
	if (s == NULL) {
		put_u32(out, STR_NULL);
		return;
	}
	put_u32(out, (uint32_t)strlen(s));
	str_append_n(out, s, strlen(s));
}

/* Whether s (possibly NULL when nullable) fits max and the frame size. */
static bool
str_ok(const char *s, size_t max, bool nullable, size_t *size)
{
	if (s == NULL) {
		*size += 4;
		return nullable;
	}
	size_t n = strnlen(s, max + 1);
	if (n > max)
		return false;
	*size += 4 + n;
	return true;
}

/* Check m and compute its frame size (without the length prefix). */
static bool
msg_size(const struct authd_msg *m, size_t *size_r)
{
	size_t size = 1;
	bool ok = true;

	switch (m->kind) {
	case AUTHD_ROUTE_REQ:
		ok = str_ok(m->address, AUTHD_ADDRESS_MAX, false, &size);
		size += 1;
		break;
	case AUTHD_ROUTE_REP:
		ok = m->status <= ROUTE_CONFIG && m->ndests <= AUTHD_DESTS_MAX &&
		    (m->ndests == 0 || m->dests != NULL) &&
		    str_ok(m->text, AUTHD_TEXT_MAX, true, &size);
		size += 1 + 4;
		for (size_t i = 0; ok && i < m->ndests; i++) {
			const struct authd_dest *d = &m->dests[i];

			ok = d->kind <= ROUTE_KIND_LAST &&
			    str_ok(d->address, AUTHD_ADDRESS_MAX, true, &size) &&
			    str_ok(d->maildir, AUTHD_PATH_MAX, true, &size) &&
			    str_ok(d->home, AUTHD_PATH_MAX, true, &size) &&
			    str_ok(d->transport, AUTHD_TEXT_MAX, true, &size);
			size += 1 + 8 + 8;
		}
		break;
	case AUTHD_LOGIN_REQ:
	case AUTHD_PROXY_REQ:
		ok = str_ok(m->login, AUTHD_ADDRESS_MAX, false, &size) &&
		    str_ok(m->password, AUTHD_PASSWORD_MAX, false, &size) &&
		    str_ok(m->ip, AUTHD_IP_MAX, false, &size) &&
		    str_ok(m->protocol, AUTHD_PROTO_MAX, false, &size) &&
		    str_ok(m->challenge, AUTHD_TEXT_MAX, true, &size);
		break;
	case AUTHD_LOGIN_REP:
		ok = m->status <= AUTHD_LOGIN_THROTTLED &&
		    str_ok(m->address, AUTHD_ADDRESS_MAX, true, &size) &&
		    str_ok(m->maildir, AUTHD_PATH_MAX, true, &size) &&
		    str_ok(m->home, AUTHD_PATH_MAX, true, &size) &&
		    str_ok(m->host, AUTHD_ADDRESS_MAX, true, &size);
		size += 1 + 8 + 8 + 8 + 8;
		break;
	case AUTHD_QUOTA_REQ:
		ok = str_ok(m->address, AUTHD_ADDRESS_MAX, false, &size);
		break;
	case AUTHD_QUOTA_REP:
		ok = m->status <= AUTHD_TEMPFAIL;
		size += 1 + 8 + 8;
		break;
	case AUTHD_POSTMASTER_REQ:
	case AUTHD_CAPS_REQ:
		break;
	case AUTHD_POSTMASTER_REP:
		ok = m->status <= AUTHD_TEMPFAIL &&
		    str_ok(m->domain, AUTHD_ADDRESS_MAX, true, &size);
		size += 1;
		break;
	case AUTHD_CAPS_REP:
		ok = m->status <= AUTHD_TEMPFAIL;
		size += 1;
		break;
	default:
		ok = false;
	}
	*size_r = size;
	return ok && size <= AUTHD_FRAME_MAX;
}

int
authd_encode(str_t *out, const struct authd_msg *m)
{
	size_t size;

	if (!msg_size(m, &size))
		return -1;
	str_reserve(out, 4 + size + 1);
	put_u32(out, (uint32_t)size);
	put_u8(out, (uint8_t)m->kind);
	switch (m->kind) {
	case AUTHD_ROUTE_REQ:
		put_str(out, m->address);
		put_u8(out, m->may_relay ? 1 : 0);
		break;
	case AUTHD_ROUTE_REP:
		put_u8(out, m->status);
		put_str(out, m->text);
		put_u32(out, (uint32_t)m->ndests);
		for (size_t i = 0; i < m->ndests; i++) {
			const struct authd_dest *d = &m->dests[i];

			put_u8(out, d->kind);
			put_str(out, d->address);
			put_str(out, d->maildir);
			put_str(out, d->home);
			put_u64(out, d->quota.bytes);
			put_u64(out, d->quota.count);
			put_str(out, d->transport);
		}
		break;
	case AUTHD_LOGIN_REQ:
	case AUTHD_PROXY_REQ:
		put_str(out, m->login);
		put_str(out, m->password);
		put_str(out, m->ip);
		put_str(out, m->protocol);
		put_str(out, m->challenge);
		break;
	case AUTHD_LOGIN_REP:
		put_u8(out, m->status);
		put_str(out, m->address);
		put_str(out, m->maildir);
		put_str(out, m->home);
		put_str(out, m->host);
		put_u64(out, (uint64_t)m->uid);
		put_u64(out, (uint64_t)m->gid);
		put_u64(out, m->quota.bytes);
		put_u64(out, m->quota.count);
		break;
	case AUTHD_QUOTA_REQ:
		put_str(out, m->address);
		break;
	case AUTHD_QUOTA_REP:
		put_u8(out, m->status);
		put_u64(out, m->quota.bytes);
		put_u64(out, m->quota.count);
		break;
	case AUTHD_POSTMASTER_REQ:
	case AUTHD_CAPS_REQ:
		break;
	case AUTHD_POSTMASTER_REP:
		put_u8(out, m->status);
		put_str(out, m->domain);
		break;
	case AUTHD_CAPS_REP:
		put_u8(out, m->status);
		break;
	}
	return 0;
}

/* ---- decoding ---- */

struct reader {
	const unsigned char *p;
	size_t left;
	bool bad;
};

static uint8_t
get_u8(struct reader *r)
{
	if (r->bad || r->left < 1) {
		r->bad = true;
		return 0;
	}
	r->left--;
	return *r->p++;
}

static uint32_t
get_u32(struct reader *r)
{
	uint32_t v;

	if (r->bad || r->left < 4) {
		r->bad = true;
		return 0;
	}
	v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 |
	    (uint32_t)r->p[2] << 8 | r->p[3];
	r->p += 4;
	r->left -= 4;
	return v;
}

static uint64_t
get_u64(struct reader *r)
{
	uint64_t hi = get_u32(r);

	return hi << 32 | get_u32(r);
}

/* A string of at most max bytes, without NUL; NULL allowed if nullable. */
static char *
get_str(struct reader *r, size_t max, bool nullable)
{
	uint32_t n = get_u32(r);
	char *s;

	if (r->bad)
		return NULL;
	if (n == STR_NULL) {
		if (!nullable)
			r->bad = true;
		return NULL;
	}
	if (n > max || n > r->left || memchr(r->p, 0, n) != NULL) {
		r->bad = true;
		return NULL;
	}
	s = xstrndup((const char *)r->p, n);
	r->p += n;
	r->left -= n;
	return s;
}

int
authd_decode(const void *buf, size_t len, struct authd_msg *m, size_t *used_r)
{
	const unsigned char *b = buf;
	struct reader r;
	uint32_t size;

	memset(m, 0, sizeof(*m));
	*used_r = 0;
	if (len < 4)
		return 0;
	size = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
	    (uint32_t)b[2] << 8 | b[3];
	if (size < 1 || size > AUTHD_FRAME_MAX)
		return -1;
	if (len - 4 < size)
		return 0;
	r.p = b + 4;
	r.left = size;
	r.bad = false;
	m->kind = get_u8(&r);
	switch (m->kind) {
	case AUTHD_ROUTE_REQ: {
		uint8_t relay;

		m->address = get_str(&r, AUTHD_ADDRESS_MAX, false);
		relay = get_u8(&r);
		if (relay > 1)
			r.bad = true;
		m->may_relay = relay == 1;
		break;
	}
	case AUTHD_ROUTE_REP: {
		uint32_t n;

		m->status = get_u8(&r);
		if (m->status > ROUTE_CONFIG)
			r.bad = true;
		m->text = get_str(&r, AUTHD_TEXT_MAX, true);
		n = get_u32(&r);
		/* each destination takes at least 33 bytes: bound the
		 * allocation by what the frame can hold */
		if (r.bad || n > AUTHD_DESTS_MAX || n > r.left / 33) {
			r.bad = true;
			break;
		}
		if (n > 0)
			m->dests = xcalloc(n, sizeof(*m->dests));
		for (uint32_t i = 0; i < n && !r.bad; i++) {
			struct authd_dest *d = &m->dests[i];

			m->ndests = i + 1;
			d->kind = get_u8(&r);
			if (d->kind > ROUTE_KIND_LAST)
				r.bad = true;
			d->address = get_str(&r, AUTHD_ADDRESS_MAX, true);
			d->maildir = get_str(&r, AUTHD_PATH_MAX, true);
			d->home = get_str(&r, AUTHD_PATH_MAX, true);
			d->quota.bytes = get_u64(&r);
			d->quota.count = get_u64(&r);
			d->transport = get_str(&r, AUTHD_TEXT_MAX, true);
		}
		break;
	}
	case AUTHD_LOGIN_REQ:
	case AUTHD_PROXY_REQ:
		m->login = get_str(&r, AUTHD_ADDRESS_MAX, false);
		m->password = get_str(&r, AUTHD_PASSWORD_MAX, false);
		m->ip = get_str(&r, AUTHD_IP_MAX, false);
		m->protocol = get_str(&r, AUTHD_PROTO_MAX, false);
		m->challenge = get_str(&r, AUTHD_TEXT_MAX, true);
		break;
	case AUTHD_LOGIN_REP:
		m->status = get_u8(&r);
		if (m->status > AUTHD_LOGIN_THROTTLED)
			r.bad = true;
		m->address = get_str(&r, AUTHD_ADDRESS_MAX, true);
		m->maildir = get_str(&r, AUTHD_PATH_MAX, true);
		m->home = get_str(&r, AUTHD_PATH_MAX, true);
		m->host = get_str(&r, AUTHD_ADDRESS_MAX, true);
		m->uid = (int64_t)get_u64(&r);
		m->gid = (int64_t)get_u64(&r);
		m->quota.bytes = get_u64(&r);
		m->quota.count = get_u64(&r);
		break;
	case AUTHD_QUOTA_REQ:
		m->address = get_str(&r, AUTHD_ADDRESS_MAX, false);
		break;
	case AUTHD_QUOTA_REP:
		m->status = get_u8(&r);
		if (m->status > AUTHD_TEMPFAIL)
			r.bad = true;
		m->quota.bytes = get_u64(&r);
		m->quota.count = get_u64(&r);
		break;
	case AUTHD_POSTMASTER_REQ:
	case AUTHD_CAPS_REQ:
		break;
	case AUTHD_POSTMASTER_REP:
		m->status = get_u8(&r);
		if (m->status > AUTHD_TEMPFAIL)
			r.bad = true;
		m->domain = get_str(&r, AUTHD_ADDRESS_MAX, true);
		break;
	case AUTHD_CAPS_REP:
		m->status = get_u8(&r);
		if (m->status > AUTHD_TEMPFAIL)
			r.bad = true;
		break;
	default:
		r.bad = true;
	}
	if (r.bad || r.left != 0) {
		authd_msg_clear(m);
		return -1;
	}
	*used_r = 4 + (size_t)size;
	return 1;
}

static void
wipe_free(char **s)
{
	if (*s != NULL) {
		explicit_bzero(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

void
authd_msg_clear(struct authd_msg *m)
{
	wipe_free(&m->password);
	free(m->address);
	free(m->login);
	free(m->ip);
	free(m->protocol);
	free(m->challenge);
	free(m->text);
	for (size_t i = 0; i < m->ndests; i++) {
		free(m->dests[i].address);
		free(m->dests[i].maildir);
		free(m->dests[i].home);
		free(m->dests[i].transport);
	}
	free(m->dests);
	free(m->maildir);
	free(m->home);
	free(m->host);
	free(m->domain);
	memset(m, 0, sizeof(*m));
}

void
authd_buf_wipe(str_t *s)
{
	if (s->data != NULL)
		explicit_bzero(s->data, s->cap);
	str_free(s);
}

const char *
authd_kind_name(enum authd_kind kind)
{
	switch (kind) {
	case AUTHD_ROUTE_REQ: return "route";
	case AUTHD_ROUTE_REP: return "route reply";
	case AUTHD_LOGIN_REQ: return "login";
	case AUTHD_PROXY_REQ: return "proxy login";
	case AUTHD_LOGIN_REP: return "login reply";
	case AUTHD_QUOTA_REQ: return "quota";
	case AUTHD_QUOTA_REP: return "quota reply";
	case AUTHD_POSTMASTER_REQ: return "postmaster";
	case AUTHD_POSTMASTER_REP: return "postmaster reply";
	case AUTHD_CAPS_REQ: return "capabilities";
	case AUTHD_CAPS_REP: return "capabilities reply";
	}
	return "unknown";
}
