#ifndef PETREL_HTTP_PARSE_H
#define PETREL_HTTP_PARSE_H
/*
 * A strict HTTP/1.1 request reader (RFC 9112) for the small HTTP listener
 * (metrics, client autoconfiguration, the MTA-STS policy). No I/O: it is
 * given the bytes received so far and says whether a whole request is
 * there, which one, or which error status the client gets.
 *
 * Strict: CRLF line ends only, no obsolete line folding, one Host header
 * (HTTP/1.1), tokens and field values checked octet by octet, an
 * origin-form target, Content-Length digits only (two different ones are
 * an error), no Transfer-Encoding (501). Bounded: the request line and
 * header section (HTTP_HEADER_MAX, 431 beyond), the target
 * (HTTP_TARGET_MAX, 414), the number of fields, the body (HTTP_BODY_MAX,
 * 413).
 */
#include <stddef.h>

#define HTTP_HEADER_MAX 8192	/* request line + fields + blank line */
#define HTTP_TARGET_MAX 2048
#define HTTP_FIELDS_MAX 64
#define HTTP_BODY_MAX 65536

enum http_method { HTTP_GET, HTTP_HEAD, HTTP_POST };

/* A parsed request: pointers into the caller's buffer (valid while it
 * is); path and query split at the first '?', both still %-encoded. */
struct http_request {
	enum http_method method;
	const char *path;
	size_t path_len;
	const char *query;	/* NULL: no '?' */
	size_t query_len;
	const char *host;	/* NULL: none (HTTP/1.0) */
	size_t host_len;
	const char *body;
	size_t body_len;
	int minor;		/* HTTP/1.minor */
};

/* Parse buf[0..len). Returns the length of the request (header and
 * body) when it is complete, 0 when more bytes are needed, or minus an
 * HTTP status (-400, -405, -413, -414, -431, -501, -505) for a request
 * that cannot be served; the caller answers it and closes. */
long http_parse_request(const char *buf, size_t len,
    struct http_request *req);

/* The value of a name=value pair of a query string, %-decoded into out
 * (NUL-terminated, at most outsize - 1 octets). 1 found, 0 absent, -1
 * malformed (bad %-escape, NUL, too long). */
int http_query_param(const char *query, size_t query_len, const char *name,
    char *out, size_t outsize);

/* The reason phrase of a status code ("Not Found"). */
const char *http_reason(int status);

#endif
