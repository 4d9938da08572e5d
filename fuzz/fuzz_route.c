/*
 * fuzz_route.c: recipient resolution (lib/route/route.c: route_resolve)
 * over a SQLite directory whose rows come from the input, as a hostile
 * or broken directory, and a client's RCPT address, would make them.
 * The first byte picks whether the client may relay and the recipient
 * delimiter; then lines: the first is the recipient, then rows
 * "T domain transport", "A source goto-list", "U address maildir
 * [quota]" (64 rows at most). The database lives in a mkdtemp directory
 * under $TMPDIR (or the working directory). Checks:
 *  - it ends (alias fan-out and depth are bounded) with a known status;
 *  - ROUTE_OK has destinations, each for a valid address; a maildir
 *    destination lies under mail_root with no "." or ".." component; a
 *    remote one has a transport;
 *  - any other status has a text or none, and no destinations are used.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/base/addr.h"
#include "lib/base/alloc.h"
#include "lib/dir/dir.h"
#include "lib/route/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ROWS_MAX 64
#define ROOT "/var/mail"

static char *tmpdir, *dbpath;
static struct dir *dir;

static const char *const schema[] = {
	"CREATE TABLE transport (domain TEXT COLLATE NOCASE UNIQUE, "
	"transport TEXT)",
	"CREATE TABLE virtual (address TEXT COLLATE NOCASE UNIQUE, goto TEXT)",
	"CREATE TABLE users (id TEXT, address TEXT COLLATE NOCASE UNIQUE, "
	"crypt TEXT, name TEXT, uid INTEGER, gid INTEGER, home TEXT, "
	"maildir TEXT, quota INTEGER DEFAULT 0)",
	"PRAGMA synchronous = OFF",
	NULL
};

static const char *const delimiters[4] = { "", "+", "+-", "-" };

static void
cleanup(void)
{
	char *p;

	if (dir != NULL)
		dir_close(&dir);
	if (tmpdir == NULL)
		return;
	unlink(dbpath);
	p = xasprintf("%s-journal", dbpath);
	unlink(p);
	free(p);
	p = xasprintf("%s-wal", dbpath);
	unlink(p);
	free(p);
	p = xasprintf("%s-shm", dbpath);
	unlink(p);
	free(p);
	rmdir(tmpdir);
}

static void
query(const char *sql, const struct dir_param *params, size_t n)
{
	const char *error;

	if (dir_query(dir, sql, params, n, NULL, &error) < 0) {
		fprintf(stderr, "%s: %s\n", sql, error);
		abort();
	}
}

static void
setup(void)
{
	const char *tmp = getenv("TMPDIR");
	char *t = xasprintf("%s/petrel-fuzz-route.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "."), *url, *err = NULL;

	tmpdir = mkdtemp(t);
	if (tmpdir == NULL) {
		perror("mkdtemp");
		abort();
	}
	dbpath = xasprintf("%s/dir.db", tmpdir);
	atexit(cleanup);
	url = xasprintf("sqlite:%s", dbpath);
	if (dir_open(url, DIR_OPEN_CREATE, &dir, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	free(url);
	for (size_t i = 0; schema[i] != NULL; i++)
		query(schema[i], NULL, 0);
}

/* The next field of a line (space-separated; the last takes the rest). */
static char *
field(char **pp, bool rest)
{
	char *p = *pp, *sp;

	if (p == NULL)
		return NULL;
	if (rest) {
		*pp = NULL;
		return p;
	}
	sp = strchr(p, ' ');
	if (sp != NULL)
		*sp++ = '\0';
	*pp = sp;
	return p;
}

static void
add_row(char *line)
{
	char *p = line + 2;
	struct dir_param prm[3] = {
		{ "a", NULL }, { "b", NULL }, { "c", NULL },
	};

	if (line[0] == '\0' || line[1] != ' ')
		return;
	switch (line[0]) {
	case 'T':
		prm[0].value = field(&p, false);
		prm[1].value = field(&p, true);
		query("INSERT OR REPLACE INTO transport VALUES (:a, :b)", prm, 2);
		break;
	case 'A':
		prm[0].value = field(&p, false);
		prm[1].value = field(&p, true);
		query("INSERT OR REPLACE INTO virtual VALUES (:a, :b)", prm, 2);
		break;
	case 'U':
		prm[0].value = field(&p, false);
		prm[1].value = field(&p, false);
		prm[2].value = p != NULL ? field(&p, true) : "0";
		query("INSERT OR REPLACE INTO users (id, address, maildir, quota) "
		    "VALUES ('x', :a, :b, :c)", prm, 3);
		break;
	}
}

static bool
under_root(const char *path)
{
	const char *p;

	if (strncmp(path, ROOT "/", sizeof(ROOT)) != 0)
		return false;
	for (p = path + sizeof(ROOT); *p != '\0';) {
		size_t n = strcspn(p, "/");

		if ((n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct route_config rc = { ROOT, delimiters[0] };
	struct route_result res;
	char *text, *line, *next, *rcpt;
	size_t rows = 0;

	if (size == 0)
		return 0;
	if (dir == NULL)
		setup();
	rc.delimiter = delimiters[data[0] >> 1 & 3];
	text = xstrndup((const char *)data + 1, size - 1);
	query("DELETE FROM transport", NULL, 0);
	query("DELETE FROM virtual", NULL, 0);
	query("DELETE FROM users", NULL, 0);
	rcpt = text;
	next = strchr(text, '\n');
	if (next != NULL)
		*next++ = '\0';
	for (line = next; line != NULL && rows < ROWS_MAX; line = next,
	    rows++) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		add_row(line);
	}

	memset(&res, 0, sizeof(res));
	route_resolve(dir, &rc, rcpt, data[0] & 1, &res);
	switch (res.status) {
	case ROUTE_OK:
		if (res.ndests == 0)
			abort();
		for (size_t i = 0; i < res.ndests; i++) {
			const struct route_dest *d = &res.dests[i];
			char *l = NULL, *dom = NULL;

			if (addr_split(d->address, &l, &dom) < 0)
				abort();
			free(l);
			free(dom);
			if (d->kind == ROUTE_MAILDIR ? d->maildir == NULL ||
			    !under_root(d->maildir) : d->transport == NULL)
				abort();
		}
		break;
	case ROUTE_UNKNOWN:
	case ROUTE_RELAY_DENIED:
	case ROUTE_ERROR:
	case ROUTE_LOOP:
	case ROUTE_TEMPFAIL:
	case ROUTE_CONFIG:
		if (route_status_name(res.status) == NULL)
			abort();
		break;
	default:
		abort();
	}
	route_result_clear(&res);
	free(text);
	return 0;
}
