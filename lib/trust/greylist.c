/*
 * greylist.c: greylisting's state (SPEC 6.1: petrel's own state database,
 * never the directory): one SQLite file (queue_dir/state.db), WAL,
 * synchronous = FULL, one table of triplets with the time first and last
 * seen and whether the triplet passed. Expired rows are deleted every
 * few hundred writes, and the table is kept under GREYLIST_ROWS_MAX (the
 * least recently used rows go first). Any database error lets the mail
 * through (logged): greylisting is an obstacle, not a filter. Also the
 * `greylist_whitelist` networks, parsed and matched.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/trust/greylist.h"

#define PURGE_EVERY 256		/* writes between two purges */
#define LAST_SLACK 3600		/* a passed triplet's last use is
				 * written at most once an hour */

static pthread_mutex_t gl_lock = PTHREAD_MUTEX_INITIALIZER;
static sqlite3 *gl_db;
static unsigned gl_writes;

int
greylist_network(const char *ip, char *out, size_t outlen)
{
	unsigned char a[16];
	char buf[INET6_ADDRSTRLEN];
	int n;

	if (strncasecmp(ip, "::ffff:", 7) == 0 && strchr(ip + 7, ':') == NULL)
		ip += 7;
	if (inet_pton(AF_INET, ip, a) == 1) {
		n = snprintf(out, outlen, "%u.%u.%u.0/24", a[0], a[1], a[2]);
		return n < 0 || (size_t)n >= outlen ? -1 : 0;
	}
	if (inet_pton(AF_INET6, ip, a) != 1)
		return -1;
	memset(a + 8, 0, 8);
	if (inet_ntop(AF_INET6, a, buf, sizeof(buf)) == NULL)
		return -1;
	n = snprintf(out, outlen, "%s/64", buf);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static void
mask(unsigned char *a, size_t len, unsigned bits)
{
	for (size_t i = 0; i < len; i++) {
		unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ?
		    bits - 8 * (unsigned)i : 0;

		a[i] &= (unsigned char)(0xff00u >> keep);
	}
}

/* ip as an address: family and bytes (IPv4-mapped made IPv4). */
static int
addr_parse(const char *ip, int *family, unsigned char a[16])
{
	if (strncasecmp(ip, "::ffff:", 7) == 0 && strchr(ip + 7, ':') == NULL)
		ip += 7;
	if (inet_pton(AF_INET, ip, a) == 1) {
		*family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, ip, a) == 1) {
		*family = AF_INET6;
		return 0;
	}
	return -1;
}

int
greylist_nets_parse(const char *list, struct greylist_net **nets_r,
    size_t *n_r, const char **error_r)
{
	struct greylist_net *nets = NULL;
	size_t n = 0;
	const char *p = list ? list : "";

	*nets_r = NULL;
	*n_r = 0;
	for (;;) {
		char buf[INET6_ADDRSTRLEN + 8], *slash;
		size_t len;
		struct greylist_net g;
		unsigned max;

		p += strspn(p, ", \t");
		if (*p == '\0')
			break;
		len = strcspn(p, ", \t");
		if (len >= sizeof(buf) || n == GREYLIST_NETS_MAX)
			goto bad;
		memcpy(buf, p, len);
		buf[len] = '\0';
		p += len;
		memset(&g, 0, sizeof(g));
		slash = strchr(buf, '/');
		if (slash != NULL)
			*slash++ = '\0';
		if (addr_parse(buf, &g.family, g.addr) < 0)
			goto bad;
		max = g.family == AF_INET ? 32 : 128;
		g.bits = max;
		if (slash != NULL) {
			char *end;
			unsigned long b = strtoul(slash, &end, 10);

			if (*slash == '\0' || *end != '\0' || b > max)
				goto bad;
			g.bits = (unsigned)b;
		}
		mask(g.addr, max / 8, g.bits);
		nets = xrealloc(nets, (n + 1) * sizeof(*nets));
		nets[n++] = g;
	}
	*nets_r = nets;
	*n_r = n;
	return 0;
bad:
	free(nets);
	*error_r = "not a list of addresses and networks (192.0.2.0/24, "
	    "2001:db8::/32; at most 256)";
	return -1;
}

bool
greylist_nets_match(const struct greylist_net *nets, size_t n,
    const char *ip)
{
	unsigned char a[16];
	int family;

	if (addr_parse(ip, &family, a) < 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char m[16];

		if (nets[i].family != family)
			continue;
		memcpy(m, a, 16);
		mask(m, family == AF_INET ? 4 : 16, nets[i].bits);
		if (memcmp(m, nets[i].addr, family == AF_INET ? 4 : 16) == 0)
			return true;
	}
	return false;
}

static int
exec(const char *sql)
{
	char *err = NULL;

	if (sqlite3_exec(gl_db, sql, NULL, NULL, &err) != SQLITE_OK) {
		log_error("greylist state: %s: %s", sql, err ? err : "?");
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

/* Under gl_lock. */
static int
db_open(const char *path)
{
	if (gl_db != NULL)
		return 0;
	if (sqlite3_open_v2(path, &gl_db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		log_error("greylist state %s: %s", path, gl_db ?
		    sqlite3_errmsg(gl_db) : "cannot open");
		sqlite3_close(gl_db);
		gl_db = NULL;
		return -1;
	}
	sqlite3_busy_timeout(gl_db, 5000);
	if (exec("PRAGMA journal_mode = WAL") < 0 ||
	    exec("PRAGMA synchronous = FULL") < 0 ||
	    exec("CREATE TABLE IF NOT EXISTS greylist ("
	    "net TEXT NOT NULL, sender TEXT NOT NULL, rcpt TEXT NOT NULL, "
	    "first INTEGER NOT NULL, last INTEGER NOT NULL, "
	    "passed INTEGER NOT NULL DEFAULT 0, "
	    "PRIMARY KEY (net, sender, rcpt))") < 0 ||
	    exec("CREATE INDEX IF NOT EXISTS greylist_last ON "
	    "greylist (last)") < 0) {
		sqlite3_close(gl_db);
		gl_db = NULL;
		return -1;
	}
	return 0;
}

static int
step_done(sqlite3_stmt *st)
{
	int r = sqlite3_step(st);

	sqlite3_finalize(st);
	return r == SQLITE_DONE ? 0 : -1;
}

/* Expired rows out, the table bounded. Under gl_lock. */
static void
purge(int64_t now, unsigned expire)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(gl_db, "DELETE FROM greylist WHERE "
	    "(passed = 1 AND last < ?1) OR (passed = 0 AND first < ?2)", -1,
	    &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, now - (int64_t)expire);
		sqlite3_bind_int64(st, 2, now - GREYLIST_RETRY_WINDOW);
		if (step_done(st) < 0)
			log_error("greylist state: purge: %s",
			    sqlite3_errmsg(gl_db));
	}
	if (sqlite3_prepare_v2(gl_db, "DELETE FROM greylist WHERE rowid IN "
	    "(SELECT rowid FROM greylist ORDER BY last LIMIT max(0, "
	    "(SELECT count(*) FROM greylist) - ?1))", -1, &st, NULL) ==
	    SQLITE_OK) {
		sqlite3_bind_int64(st, 1, GREYLIST_ROWS_MAX);
		if (step_done(st) < 0)
			log_error("greylist state: bound: %s",
			    sqlite3_errmsg(gl_db));
	}
}

static enum greylist_verdict
check_locked(const char *net, const char *sender, const char *rcpt,
    int64_t now, unsigned delay, unsigned expire, unsigned *wait_r)
{
	sqlite3_stmt *st;
	int64_t first = 0, last = 0;
	int passed = 0, r;
	bool found = false, pass;
	const char *sql;

	if (sqlite3_prepare_v2(gl_db, "SELECT first, last, passed FROM "
	    "greylist WHERE net = ?1 AND sender = ?2 AND rcpt = ?3", -1, &st,
	    NULL) != SQLITE_OK)
		return GREYLIST_ERROR;
	sqlite3_bind_text(st, 1, net, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, sender, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, rcpt, -1, SQLITE_STATIC);
	r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		found = true;
		first = sqlite3_column_int64(st, 0);
		last = sqlite3_column_int64(st, 1);
		passed = sqlite3_column_int(st, 2);
	}
	sqlite3_finalize(st);
	if (r != SQLITE_ROW && r != SQLITE_DONE)
		return GREYLIST_ERROR;
	/* forgotten: a passed triplet unused for expire, an unpassed one
	 * not retried within the window (or a clock gone backwards) */
	if (found && ((passed && last + (int64_t)expire < now) ||
	    (!passed && first + GREYLIST_RETRY_WINDOW < now) || first > now))
		found = false;
	pass = found && (passed || now - first >= (int64_t)delay);
	*wait_r = pass ? 0 : found ? (unsigned)((int64_t)delay -
	    (now - first)) : delay;
	if (found && passed && now - last < LAST_SLACK)
		return GREYLIST_PASS;	/* recent enough: no write */
	if (!found)
		sql = "INSERT OR REPLACE INTO greylist (net, sender, rcpt, "
		    "first, last, passed) VALUES (?1, ?2, ?3, ?4, ?4, 0)";
	else if (pass)
		sql = "UPDATE greylist SET last = ?4, passed = 1 WHERE "
		    "net = ?1 AND sender = ?2 AND rcpt = ?3";
	else
		sql = "UPDATE greylist SET last = ?4 WHERE "
		    "net = ?1 AND sender = ?2 AND rcpt = ?3";
	if (sqlite3_prepare_v2(gl_db, sql, -1, &st, NULL) != SQLITE_OK)
		return GREYLIST_ERROR;
	sqlite3_bind_text(st, 1, net, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, sender, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, rcpt, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now);
	if (step_done(st) < 0)
		return GREYLIST_ERROR;
	if (++gl_writes % PURGE_EVERY == 1)
		purge(now, expire);
	return pass ? GREYLIST_PASS : GREYLIST_DEFER;
}

enum greylist_verdict
greylist_check(const char *path, const char *net, const char *sender,
    const char *rcpt, int64_t now, unsigned delay, unsigned expire,
    unsigned *wait_r)
{
	enum greylist_verdict v = GREYLIST_ERROR;

	*wait_r = 0;
	pthread_mutex_lock(&gl_lock);
	if (db_open(path) == 0) {
		v = check_locked(net, sender, rcpt, now, delay, expire,
		    wait_r);
		if (v == GREYLIST_ERROR)
			log_error("greylist state %s: %s", path,
			    sqlite3_errmsg(gl_db));
	}
	pthread_mutex_unlock(&gl_lock);
	return v;
}
