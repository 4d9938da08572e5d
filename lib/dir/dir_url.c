/*
 * dir_url.c: parse the `database` setting.
 *
 *   sqlite:PATH
 *   mysql://USER:PASSWORD@HOST[:PORT]/DB
 *   mysql://USER:PASSWORD@HOST[:PORT],HOST[:PORT],.../DB  (a cluster)
 *   mysql://USER:PASSWORD@localhost/DB?socket=PATH
 *
 * The URL comes from the administrator's configuration, but it is still
 * parsed defensively (it is a fuzz target): every field is bounded by the
 * string, %-escapes must be complete, the port must be 1..65535.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/dir/dir.h"


/* %-decode [s, s+n) into a new string; NULL on a bad escape or NUL. */
static char *
pct_decode(const char *s, size_t n)
{
	char *out = xmalloc(n + 1), *o = out;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			int hi, lo;

			if (i + 2 >= n)
				goto bad;
			hi = str_hexval(s[i + 1]);
			lo = str_hexval(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				goto bad;
			*o++ = (char)(hi * 16 + lo);
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

void
dir_url_clear(struct dir_url *u)
{
	free(u->path);
	free(u->user);
	if (u->password != NULL)
		explicit_bzero(u->password, strlen(u->password));
	free(u->password);
	free(u->host);
	for (size_t i = 0; i < u->nhosts; i++)
		free(u->hosts[i]);
	free(u->db);
	free(u->socket);
	memset(u, 0, sizeof(*u));
}

/* One HOST[:PORT] or [IPv6][:PORT] in [p, end): *host_r (malloc'd;
 * "localhost" when empty) and *port_r (0 = default). 0, or -1 with
 * *error_r. */
static int
url_host(const char *p, const char *end, char **host_r, unsigned *port_r,
    const char **error_r)
{
	const char *colon = NULL;
	unsigned long port = 0;

	*host_r = NULL;
	*port_r = 0;
	if (p < end && *p == '[') {	/* [IPv6]:port */
		const char *rb = memchr(p, ']', (size_t)(end - p));

		if (rb == NULL) {
			*error_r = "mysql URL has an unterminated [address]";
			return -1;
		}
		if (rb + 1 < end) {
			if (rb[1] != ':') {
				*error_r = "mysql URL: junk after ]";
				return -1;
			}
			colon = rb + 1;
		}
		*host_r = xstrndup(p + 1, (size_t)(rb - p - 1));
	} else {
		colon = memchr(p, ':', (size_t)(end - p));
		*host_r = xstrndup(p, (size_t)((colon ? colon : end) - p));
	}
	if (colon != NULL) {
		if (colon + 1 == end)
			goto bad_port;
		for (const char *c = colon + 1; c < end; c++) {
			if (!isdigit((unsigned char)*c))
				goto bad_port;
			port = port * 10 + (unsigned long)(*c - '0');
			if (port > 65535)
				goto bad_port;
		}
		if (port == 0)
			goto bad_port;
	}
	if ((*host_r)[0] == '\0') {
		free(*host_r);
		*host_r = xstrdup("localhost");
	}
	*port_r = (unsigned)port;
	return 0;
bad_port:
	xfree(host_r);
	*error_r = "mysql URL has a bad port (1-65535)";
	return -1;
}

int
dir_url_parse(const char *url, struct dir_url *u, const char **error_r)
{
	const char *p, *at, *slash, *q, *colon;

	memset(u, 0, sizeof(*u));
	if (strncmp(url, "sqlite:", 7) == 0) {
		p = url + 7;
		if (strncmp(p, "//", 2) == 0)
			p += 2;
		if (*p == '\0') {
			*error_r = "sqlite: URL has no path";
			return -1;
		}
		u->path = xstrdup(p);
		return 0;
	}
	if (strncmp(url, "mysql://", 8) != 0 &&
	    strncmp(url, "mariadb://", 10) != 0) {
		*error_r = "database must be sqlite:PATH or "
		    "mysql://USER:PASSWORD@HOST[:PORT]/DB";
		return -1;
	}
	u->mysql = true;
	p = strstr(url, "://") + 3;
	slash = strchr(p, '/');
	if (slash == NULL) {
		*error_r = "mysql URL has no /DATABASE";
		goto fail;
	}
	/* The userinfo ends at the last '@' before the path. */
	at = NULL;
	for (const char *c = p; c < slash; c++)
		if (*c == '@')
			at = c;
	if (at != NULL) {
		colon = memchr(p, ':', (size_t)(at - p));
		if (colon != NULL) {
			u->user = pct_decode(p, (size_t)(colon - p));
			u->password = pct_decode(colon + 1,
			    (size_t)(at - colon - 1));
			if (u->password == NULL)
				goto bad_escape;
		} else {
			u->user = pct_decode(p, (size_t)(at - p));
		}
		if (u->user == NULL)
			goto bad_escape;
		p = at + 1;
	}
	/* HOST[:PORT] items, separated by commas */
	while (p <= slash) {
		const char *itemend = memchr(p, ',', (size_t)(slash - p));
		unsigned port;

		if (itemend == NULL)
			itemend = slash;
		if (u->nhosts == DIR_URL_HOSTS_MAX) {
			*error_r = "mysql URL has too many hosts (16 at most)";
			goto fail;
		}
		if (itemend == p && (u->nhosts > 0 || itemend != slash)) {
			*error_r = "mysql URL has an empty host in its list";
			goto fail;
		}
		if (url_host(p, itemend, &u->hosts[u->nhosts], &port,
		    error_r) < 0)
			goto fail;
		u->ports[u->nhosts++] = port;
		p = itemend + 1;
	}
	u->host = xstrdup(u->hosts[0]);
	u->port = u->ports[0];
	p = slash + 1;
	q = strchr(p, '?');
	u->db = pct_decode(p, (size_t)((q ? q : p + strlen(p)) - p));
	if (u->db == NULL)
		goto bad_escape;
	if (u->db[0] == '\0') {
		*error_r = "mysql URL has an empty database name";
		goto fail;
	}
	while (q != NULL) {
		const char *kv = q + 1, *amp = strchr(kv, '&');
		size_t n = (size_t)((amp ? amp : kv + strlen(kv)) - kv);

		if (n > 7 && strncmp(kv, "socket=", 7) == 0) {
			free(u->socket);
			u->socket = pct_decode(kv + 7, n - 7);
			if (u->socket == NULL)
				goto bad_escape;
		} else if (n > 0) {
			*error_r = "mysql URL: unknown option (only socket=PATH)";
			goto fail;
		}
		q = amp;
	}
	return 0;
bad_escape:
	*error_r = "mysql URL has a bad %-escape";
fail:
	dir_url_clear(u);
	return -1;
}

const char *
dir_url_redacted(const char *url)
{
	static char buf[1024];
	const char *p = strstr(url, "://"), *at, *colon, *slash;

	if (p == NULL) {
		snprintf(buf, sizeof(buf), "%s", url);
		return buf;
	}
	p += 3;
	slash = strchr(p, '/');
	at = NULL;
	for (const char *c = p; *c != '\0' && (slash == NULL || c < slash); c++)
		if (*c == '@')
			at = c;
	colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
	if (colon == NULL) {
		snprintf(buf, sizeof(buf), "%s", url);
		return buf;
	}
	snprintf(buf, sizeof(buf), "%.*s:****%s", (int)(colon - url), url, at);
	return buf;
}
