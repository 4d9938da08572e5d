/*
 * fuzz_http.c: the HTTP request reader (lib/http/parse.c), with checks:
 *  - a request found whole is found the same way in the bytes after it
 *    (the answer is a function of the octets, not of what follows), and
 *    every shorter prefix of it is "incomplete", never an error, so that
 *    a client's request split by the network is read as one;
 *  - what it returns points inside the input: the path starts with '/',
 *    the query and the body are where the lengths say, the request's
 *    length is at most the input's;
 *  - an error is one of the statuses the header names;
 *  - query parameters decode within their buffer, with no NUL.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/http/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_inside(const char *buf, size_t len, const char *p, size_t n)
{
	if (p == NULL)
		return;
	if (p < buf || p + n > buf + len)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct http_request req, again;
	long r = http_parse_request(buf, size, &req);

	if (r < 0) {
		switch (-r) {
		case 400: case 405: case 413: case 414: case 431: case 501:
		case 505:
			break;
		default:
			abort();
		}
		return 0;
	}
	if (r == 0)
		return 0;
	if ((size_t)r > size || req.path == NULL || req.path[0] != '/')
		abort();
	check_inside(buf, size, req.path, req.path_len);
	check_inside(buf, size, req.query, req.query_len);
	check_inside(buf, size, req.host, req.host_len);
	check_inside(buf, size, req.body, req.body_len);
	if (req.body_len > HTTP_BODY_MAX || req.body + req.body_len !=
	    buf + r)
		abort();
	if (req.method != HTTP_GET && req.method != HTTP_HEAD &&
	    req.method != HTTP_POST)
		abort();
	/* the same request alone */
	if (http_parse_request(buf, (size_t)r, &again) != r ||
	    again.path != req.path || again.path_len != req.path_len ||
	    again.body_len != req.body_len)
		abort();
	/* its prefixes: incomplete (a few of them: the input may be long) */
	for (size_t cut = 0; cut < (size_t)r; cut += 1 + (size_t)r / 64)
		if (http_parse_request(buf, cut, &again) != 0)
			abort();
	{
		static const char *const names[] = { "emailaddress", "a", "" };
		char out[64];

		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			int q = http_query_param(req.query, req.query_len,
			    names[i], out, sizeof(out));

			if (q < -1 || q > 1)
				abort();
			if (q == 1 && strlen(out) >= sizeof(out))
				abort();
		}
	}
	return 0;
}
