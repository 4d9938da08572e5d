/*
 * parse.c: the HTTP/1.1 request reader (see parse.h). Every octet of the
 * request line and the header section is checked against RFC 9112's
 * grammar; whatever does not fit is an error status, never a guess.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "lib/http/parse.h"
#include "lib/base/str.h"

/* RFC 9110 tchar */
static bool
is_tchar(unsigned char c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

/* field-vchar, SP and HTAB (obs-text included) */
static bool
is_field_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static const char *
find_crlf(const char *p, const char *end)
{
	for (; p + 1 < end; p++)
		if (p[0] == '\r' && p[1] == '\n')
			return p;
	return NULL;
}

static long
request_line(const char *p, const char *eol, struct http_request *req)
{
	const char *m = p, *t, *v;
	size_t mlen, tlen;

	while (p < eol && is_tchar((unsigned char)*p))
		p++;
	mlen = (size_t)(p - m);
	if (mlen == 0 || p == eol || *p != ' ')
		return -400;
	t = ++p;
	while (p < eol && *p != ' ') {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return -400;
		p++;
	}
	tlen = (size_t)(p - t);
	if (tlen == 0 || p == eol)
		return -400;
	v = p + 1;
	if (eol - v != 8 || memcmp(v, "HTTP/", 5) != 0 ||
	    !isdigit((unsigned char)v[5]) || v[6] != '.' ||
	    !isdigit((unsigned char)v[7]))
		return -400;
	if (tlen > HTTP_TARGET_MAX)
		return -414;
	if (v[5] != '1')
		return -505;
	req->minor = v[7] - '0';
	if (t[0] != '/')
		return -400;
	if (mlen == 3 && memcmp(m, "GET", 3) == 0)
		req->method = HTTP_GET;
	else if (mlen == 4 && memcmp(m, "HEAD", 4) == 0)
		req->method = HTTP_HEAD;
	else if (mlen == 4 && memcmp(m, "POST", 4) == 0)
		req->method = HTTP_POST;
	else
		return -405;
	req->path = t;
	req->path_len = tlen;
	req->query = memchr(t, '?', tlen);
	if (req->query != NULL) {
		req->path_len = (size_t)(req->query - t);
		req->query++;
		req->query_len = tlen - req->path_len - 1;
	}
	return 0;
}

/* One field line: name ":" OWS value OWS. */
static long
field_line(const char *p, const char *eol, struct http_request *req,
    uint64_t *clen, bool *have_clen)
{
	const char *name = p, *val, *vend;
	size_t nlen;

	while (p < eol && is_tchar((unsigned char)*p))
		p++;
	nlen = (size_t)(p - name);
	if (nlen == 0 || p == eol || *p != ':')
		return -400;
	val = p + 1;
	for (p = val; p < eol; p++)
		if (!is_field_char((unsigned char)*p))
			return -400;
	while (val < eol && (*val == ' ' || *val == '\t'))
		val++;
	vend = eol;
	while (vend > val && (vend[-1] == ' ' || vend[-1] == '\t'))
		vend--;

	if (nlen == 4 && strncasecmp(name, "host", 4) == 0) {
		if (req->host != NULL)
			return -400;
		req->host = val;
		req->host_len = (size_t)(vend - val);
	} else if (nlen == 14 && strncasecmp(name, "content-length", 14) == 0) {
		uint64_t v = 0;

		if (val == vend)
			return -400;
		for (p = val; p < vend; p++) {
			if (!isdigit((unsigned char)*p))
				return -400;
			if (v > HTTP_BODY_MAX)
				return -413;
			v = v * 10 + (uint64_t)(*p - '0');
		}
		if (*have_clen && *clen != v)
			return -400;
		*clen = v;
		*have_clen = true;
	} else if (nlen == 17 &&
	    strncasecmp(name, "transfer-encoding", 17) == 0) {
		return -501;
	}
	return 0;
}

long
http_parse_request(const char *buf, size_t len, struct http_request *req)
{
	const char *end, *p, *eol, *hdr_end;
	size_t scan = len < HTTP_HEADER_MAX ? len : HTTP_HEADER_MAX;
	uint64_t clen = 0;
	bool have_clen = false;
	unsigned nfields = 0;
	long r;

	memset(req, 0, sizeof(*req));
	/* a bare LF, a CR not before LF or a NUL is wrong wherever it is */
	for (size_t i = 0; i < scan; i++) {
		if (buf[i] == '\0')
			return -400;
		if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
			return -400;
		if (buf[i] == '\r' && i + 1 < scan && buf[i + 1] != '\n')
			return -400;
		if (i >= 3 && memcmp(buf + i - 3, "\r\n\r\n", 4) == 0) {
			scan = i + 1;
			break;
		}
	}
	end = buf + scan;
	if (scan < 4 || memcmp(end - 4, "\r\n\r\n", 4) != 0)
		return len >= HTTP_HEADER_MAX ? -431 : 0;
	hdr_end = end;

	eol = find_crlf(buf, end);
	if ((r = request_line(buf, eol, req)) < 0)
		return r;
	for (p = eol + 2; p < hdr_end - 2; p = eol + 2) {
		eol = find_crlf(p, end);
		if (*p == ' ' || *p == '\t')
			return -400;	/* obsolete line folding */
		if (++nfields > HTTP_FIELDS_MAX)
			return -431;
		if ((r = field_line(p, eol, req, &clen, &have_clen)) < 0)
			return r;
	}
	if (req->minor >= 1 && req->host == NULL)
		return -400;
	if (clen > HTTP_BODY_MAX)
		return -413;
	if (len - scan < clen)
		return 0;
	req->body = hdr_end;
	req->body_len = (size_t)clen;
	return (long)(scan + clen);
}


int
http_query_param(const char *query, size_t query_len, const char *name,
    char *out, size_t outsize)
{
	size_t nlen = strlen(name), i = 0;

	while (query != NULL && i < query_len) {
		const char *pair = query + i, *amp;
		size_t plen;

		amp = memchr(pair, '&', query_len - i);
		plen = amp ? (size_t)(amp - pair) : query_len - i;
		i += plen + 1;
		if (plen > nlen && memcmp(pair, name, nlen) == 0 &&
		    pair[nlen] == '=') {
			size_t o = 0;

			for (size_t k = nlen + 1; k < plen; k++) {
				int c = (unsigned char)pair[k];

				if (c == '%') {
					int h, l;

					if (k + 2 >= plen ||
					    (h = str_hexval((unsigned char)
					    pair[k + 1])) < 0 ||
					    (l = str_hexval((unsigned char)
					    pair[k + 2])) < 0)
						return -1;
					c = h * 16 + l;
					k += 2;
				} else if (c == '+') {
					c = ' ';
				}
				if (c == '\0' || o + 1 >= outsize)
					return -1;
				out[o++] = (char)c;
			}
			out[o] = '\0';
			return 1;
		}
	}
	return 0;
}

const char *
http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	}
	return "Error";
}
