/* Unit tests for lib/http/parse.c: whole requests, incomplete ones, and
 * the status of each kind of malformed one. */
#include <stdio.h>
#include <string.h>

#include "lib/http/parse.h"
#include "tests/unit/test.h"

static long
parse(const char *text, struct http_request *req)
{
	return http_parse_request(text, strlen(text), req);
}

static void
test_requests(void)
{
	struct http_request r;
	const char *get = "GET /mail/config-v1.1.xml?emailaddress=a%40b.example"
	    "&x=1 HTTP/1.1\r\nHost: autoconfig.b.example\r\nAccept: */*\r\n\r\n";
	const char *post = "POST /autodiscover/autodiscover.xml HTTP/1.1\r\n"
	    "host: h\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhelloEXTRA";
	char v[64];

	test_begin("http: GET with a query, POST with a body, HTTP/1.0");
	test_assert(parse(get, &r) == (long)strlen(get));
	test_assert(r.method == HTTP_GET && r.minor == 1);
	test_assert(r.path_len == 21 && memcmp(r.path, "/mail/config-v1.1.xml",
	    21) == 0);
	test_assert(r.host_len == 20 && memcmp(r.host, "autoconfig.b.example",
	    20) == 0);
	test_assert(http_query_param(r.query, r.query_len, "emailaddress", v,
	    sizeof(v)) == 1);
	test_assert_streq(v, "a@b.example");
	test_assert(http_query_param(r.query, r.query_len, "x", v,
	    sizeof(v)) == 1);
	test_assert_streq(v, "1");
	test_assert(http_query_param(r.query, r.query_len, "email", v,
	    sizeof(v)) == 0);
	test_assert(http_query_param("a=%4", 4, "a", v, sizeof(v)) == -1);
	test_assert(http_query_param("a=%00", 5, "a", v, sizeof(v)) == -1);
	test_assert(http_query_param("a=xxxxxxxx", 10, "a", v, 4) == -1);
	test_assert(http_query_param("a=b+c", 5, "a", v, sizeof(v)) == 1);
	test_assert_streq(v, "b c");

	test_assert(parse(post, &r) == (long)strlen(post) - 5);
	test_assert(r.method == HTTP_POST && r.body_len == 5 &&
	    memcmp(r.body, "hello", 5) == 0);
	test_assert(parse("HEAD / HTTP/1.0\r\n\r\n", &r) == 19);
	test_assert(r.method == HTTP_HEAD && r.host == NULL && r.minor == 0);
	test_end();
}

static void
test_incomplete(void)
{
	struct http_request r;
	const char *full = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
	    "\r\nabc";

	test_begin("http: every prefix of a request is incomplete");
	for (size_t n = 0; n < strlen(full); n++)
		test_assert(http_parse_request(full, n, &r) == 0);
	test_assert(http_parse_request(full, strlen(full), &r) ==
	    (long)strlen(full));
	test_end();
}

static void
test_errors(void)
{
	static const struct {
		const char *text;
		long status;
	} cases[] = {
		{ "GET / HTTP/1.1\nHost: h\n\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: h\r\n x\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost : h\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: h\x01\r\n\r\n", -400 },
		{ "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", -400 },
		{ "GET http://x/ HTTP/1.1\r\nHost: h\r\n\r\n", -400 },
		{ "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", -400 },
		{ "GET / http/1.1\r\nHost: h\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
		  -400 },
		{ "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
		  "Content-Length: 2\r\n\r\n", -400 },
		{ "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: h\r\n\r\n", -405 },
		{ "get / HTTP/1.1\r\nHost: h\r\n\r\n", -405 },
		{ "GET / HTTP/2.0\r\nHost: h\r\n\r\n", -505 },
		{ "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
		  "\r\n", -501 },
		{ "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 65537\r\n"
		  "\r\n", -413 },
		{ "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: "
		  "99999999999999999999999999\r\n\r\n", -413 },
	};
	struct http_request r;
	char big[HTTP_HEADER_MAX + 64];

	test_begin("http: malformed requests get their status");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long got = parse(cases[i].text, &r);

		if (got != cases[i].status)
			fprintf(stderr, "case %zu: %ld\n", i, got);
		test_assert(got == cases[i].status);
	}
	/* a long target; a header section without its end */
	snprintf(big, sizeof(big), "GET /%0*d HTTP/1.1\r\nHost: h\r\n\r\n",
	    HTTP_TARGET_MAX, 0);
	test_assert(parse(big, &r) == -414);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "GET / HTTP/1.1\r\nHost: h\r\nX: ", 28);
	test_assert(parse(big, &r) == -431);
	test_assert(http_parse_request(big, HTTP_HEADER_MAX - 1, &r) == 0);
	test_assert_streq(http_reason(404), "Not Found");
	test_end();
}

int
main(void)
{
	test_requests();
	test_incomplete();
	test_errors();
	return test_done();
}
