/*
 * dir.c: the SQL directory front: named parameters, driver dispatch, and
 * the configured lookups of SPEC section 1 (query_domain, query_alias,
 * query_user, query_login, query_quota).
 *
 * Trust: SQL text comes from the configuration (trusted); every value comes
 * from the network or the command line (untrusted) and is only ever bound
 * to a prepared statement as a parameter.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/dir/dir-private.h"

struct dir {
	const struct dir_driver *driver;
	void *ctx;
	str_t error;
	str_t host_name;	/* dir_probe_host's */
	char *q_domain, *q_alias, *q_user, *q_login, *q_quota;
};

static char *dir_password;	/* from database_password_file */

int
dir_password_file_load(const char *path, char **error_r)
{
	char buf[1024];
	size_t len = 0;
	ssize_t n;
	int fd;

	if (path == NULL || path[0] == '\0')
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		*error_r = xasprintf("database_password_file %s: %s", path,
		    strerror(errno));
		return -1;
	}
	while (len < sizeof(buf) - 1 &&
	    (n = read(fd, buf + len, sizeof(buf) - 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = xasprintf("database_password_file %s: %s",
			    path, strerror(errno));
			close(fd);
			explicit_bzero(buf, sizeof(buf));
			return -1;
		}
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (dir_password != NULL) {
		explicit_bzero(dir_password, strlen(dir_password));
		free(dir_password);
	}
	dir_password = xstrdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

int
dir_open(const char *url, int flags, struct dir **dir_r, char **error_r)
{
	struct dir_url u;
	const char *err;
	struct dir *dir;

	if (dir_url_parse(url, &u, &err) < 0) {
		*error_r = xasprintf("bad database URL: %s", err);
		return DIR_FAIL;
	}
	if (u.mysql && dir_password != NULL) {
		if (u.password != NULL)
			explicit_bzero(u.password, strlen(u.password));
		free(u.password);
		u.password = xstrdup(dir_password);
	}
	dir = xmalloc(sizeof(*dir));
	dir->driver = u.mysql ? &dir_driver_mariadb : &dir_driver_sqlite;
	if (dir->driver->open(&u, flags, &dir->ctx, &dir->error) < 0) {
		*error_r = str_steal(&dir->error);
		dir_url_clear(&u);
		free(dir);
		return DIR_FAIL;
	}
	dir_url_clear(&u);
	dir_set_queries(dir, NULL);
	*dir_r = dir;
	return DIR_OK;
}

void
dir_close(struct dir **dirp)
{
	struct dir *dir = *dirp;

	if (dir == NULL)
		return;
	dir->driver->close(dir->ctx);
	str_free(&dir->error);
	str_free(&dir->host_name);
	free(dir->q_domain);
	free(dir->q_alias);
	free(dir->q_user);
	free(dir->q_login);
	free(dir->q_quota);
	free(dir);
	*dirp = NULL;
}

int
dir_connect(struct dir *dir, const char **error_r)
{
	str_truncate(&dir->error, 0);
	if (dir->driver->connect(dir->ctx, &dir->error) < 0) {
		*error_r = str_c(&dir->error);
		return DIR_TEMPFAIL;
	}
	return DIR_OK;
}

size_t
dir_hosts(const struct dir *dir)
{
	return dir->driver->nhosts != NULL ? dir->driver->nhosts(dir->ctx) :
	    0;
}

int
dir_probe_host(struct dir *dir, size_t i, const char **name_r,
    const char **error_r)
{
	str_t *name = &dir->host_name;

	str_truncate(name, 0);
	str_truncate(&dir->error, 0);
	*name_r = "";
	if (dir->driver->probe == NULL || i >= dir_hosts(dir)) {
		*error_r = "no such database host";
		return DIR_FAIL;
	}
	if (dir->driver->probe(dir->ctx, i, name, &dir->error) < 0) {
		*name_r = str_c(name);
		*error_r = str_c(&dir->error);
		return DIR_TEMPFAIL;
	}
	*name_r = str_c(name);
	return DIR_OK;
}

bool
dir_is_mysql(const struct dir *dir)
{
	return dir->driver == &dir_driver_mariadb;
}

void
dir_set_queries(struct dir *dir, const struct config *cfg)
{
	char **slots[] = { &dir->q_domain, &dir->q_alias, &dir->q_user,
	    &dir->q_login, &dir->q_quota };
	const char *names[] = { "query_domain", "query_alias", "query_user",
	    "query_login", "query_quota" };

	for (size_t i = 0; i < 5; i++) {
		free(*slots[i]);
		*slots[i] = xstrdup(config_get(cfg, names[i]));
	}
}

bool
dir_has_quota(const struct dir *dir)
{
	return dir->q_quota[0] != '\0';
}

/* SQL lexing just deep enough to find placeholders: skip '...', "...",
 * `...` (with doubled-quote and backslash escapes), -- and # line comments
 * and C comments. */
int
dir_sql_translate(const char *sql, char **out_r, char ***names_r,
    size_t *nnames_r)
{
	str_t out = STR_INIT;
	char **names = NULL;
	size_t n = 0;
	const char *p = sql;

	while (*p != '\0') {
		if (*p == '\'' || *p == '"' || *p == '`') {
			char q = *p;

			str_append_c(&out, *p++);
			while (*p != '\0') {
				if (*p == '\\' && q != '`' && p[1] != '\0') {
					str_append_n(&out, p, 2);
					p += 2;
					continue;
				}
				if (*p == q && p[1] == q) {
					str_append_n(&out, p, 2);
					p += 2;
					continue;
				}
				str_append_c(&out, *p);
				if (*p++ == q)
					break;
			}
			continue;
		}
		if ((p[0] == '-' && p[1] == '-') || p[0] == '#') {
			while (*p != '\0' && *p != '\n')
				str_append_c(&out, *p++);
			continue;
		}
		if (p[0] == '/' && p[1] == '*') {
			const char *end = strstr(p + 2, "*/");
			size_t len = end ? (size_t)(end + 2 - p) : strlen(p);

			str_append_n(&out, p, len);
			p += len;
			continue;
		}
		if (p[0] == ':' && (isalpha((unsigned char)p[1]) || p[1] == '_') &&
		    (p == sql || p[-1] != ':')) {
			const char *s = ++p;

			while (isalnum((unsigned char)*p) || *p == '_')
				p++;
			names = xrealloc(names, (n + 1) * sizeof(*names));
			names[n++] = xstrndup(s, (size_t)(p - s));
			str_append_c(&out, '?');
			continue;
		}
		str_append_c(&out, *p++);
	}
	*out_r = str_steal(&out);
	*names_r = names;
	*nnames_r = n;
	return 0;
}

void
dir_rows_add(struct dir_rows *rows, char **cells)
{
	size_t base = rows->nrows * rows->ncols;

	rows->cells = xrealloc(rows->cells,
	    (base + rows->ncols) * sizeof(char *));
	memcpy(rows->cells + base, cells, rows->ncols * sizeof(char *));
	rows->nrows++;
}

const char *
dir_rows_get(const struct dir_rows *rows, size_t row, size_t col)
{
	if (rows == NULL || row >= rows->nrows || col >= rows->ncols)
		return NULL;
	return rows->cells[row * rows->ncols + col];
}

void
dir_rows_free(struct dir_rows **rowsp)
{
	struct dir_rows *rows = *rowsp;

	if (rows == NULL)
		return;
	for (size_t i = 0; i < rows->nrows * rows->ncols; i++)
		free(rows->cells[i]);
	free(rows->cells);
	for (size_t i = 0; rows->names != NULL && i < rows->ncols; i++)
		free(rows->names[i]);
	free(rows->names);
	free(rows);
	*rowsp = NULL;
}

/* Set once at start, before any thread queries. */
static void (*query_observer)(double seconds);

void
dir_observe_queries(void (*fn)(double seconds))
{
	query_observer = fn;
}

void
dir_read_begin(struct dir *dir)
{
	if (dir->driver->read_begin != NULL)
		dir->driver->read_begin(dir->ctx);
}

void
dir_read_end(struct dir *dir)
{
	if (dir->driver->read_end != NULL)
		dir->driver->read_end(dir->ctx);
}

int
dir_query(struct dir *dir, const char *sql, const struct dir_param *params,
    size_t nparams, struct dir_rows **rows_r, const char **error_r)
{
	char *tsql, **names;
	const char **values;
	size_t nnames;
	struct dir_rows *rows;
	int r = DIR_OK;

	str_truncate(&dir->error, 0);
	dir_sql_translate(sql, &tsql, &names, &nnames);
	values = xcalloc(nnames + 1, sizeof(char *));
	for (size_t i = 0; i < nnames && r == DIR_OK; i++) {
		size_t j;

		for (j = 0; j < nparams; j++)
			if (strcmp(params[j].name, names[i]) == 0)
				break;
		if (j == nparams) {
			str_printf(&dir->error,
			    "query uses unknown parameter :%s", names[i]);
			r = DIR_FAIL;
		} else {
			values[i] = params[j].value;
		}
	}
	rows = xmalloc(sizeof(*rows));
	if (r == DIR_OK) {
		struct timespec t0, t1;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		r = dir->driver->query(dir->ctx, tsql, values, nnames, rows,
		    &dir->error);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (query_observer != NULL)
			query_observer((double)(t1.tv_sec - t0.tv_sec) +
			    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	}
	for (size_t i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	free(values);
	free(tsql);
	if (r < 0) {
		dir_rows_free(&rows);
		if (error_r != NULL)
			*error_r = str_c(&dir->error);
		return r;
	}
	if (rows_r != NULL)
		*rows_r = rows;
	else
		dir_rows_free(&rows);
	return DIR_OK;
}

void
dir_user_clear(struct dir_user *u)
{
	free(u->id);
	free(u->address);
	free(u->crypt);
	free(u->name);
	free(u->home);
	free(u->maildir);
	free(u->host);
	if (u->clear != NULL) {
		explicit_bzero(u->clear, strlen(u->clear));
		free(u->clear);
	}
	memset(u, 0, sizeof(*u));
}

/* Run a lookup with :address, :local and :domain (or :login) bound. */
static int
lookup(struct dir *dir, const char *sql, const char *key, bool login,
    struct dir_rows **rows_r, const char **error_r)
{
	char *lower = xstrdup(key), *at;
	char *local, *domain;
	struct dir_param params[4];
	int r;

	if (!login)
		str_lower(lower);
	at = strrchr(lower, '@');
	local = at ? xstrndup(lower, (size_t)(at - lower)) : xstrdup(lower);
	domain = xstrdup(at ? at + 1 : "");
	if (login)
		str_lower(domain);
	params[0] = (struct dir_param){ login ? "login" : "address", lower };
	params[1] = (struct dir_param){ "local", local };
	params[2] = (struct dir_param){ "domain", domain };
	params[3] = (struct dir_param){ "address", lower };
	r = dir_query(dir, sql, params, login ? 4 : 3, rows_r, error_r);
	free(lower);
	free(local);
	free(domain);
	if (r == DIR_OK && (*rows_r)->nrows == 0) {
		dir_rows_free(rows_r);
		return DIR_NOTFOUND;
	}
	return r;
}

static char *
cell_dup(const struct dir_rows *rows, size_t col)
{
	const char *v = dir_rows_get(rows, 0, col);

	return xstrdup(v != NULL ? v : "");
}

static int
lookup_single(struct dir *dir, const char *sql, const char *key,
    char **value_r, const char **error_r)
{
	struct dir_rows *rows;
	int r;

	r = lookup(dir, sql, key, false, &rows, error_r);
	if (r != DIR_OK)
		return r;
	if (rows->ncols < 1) {
		dir_rows_free(&rows);
		*error_r = "lookup query returns no column";
		return DIR_FAIL;
	}
	*value_r = cell_dup(rows, 0);
	dir_rows_free(&rows);
	return DIR_OK;
}

int
dir_lookup_domain(struct dir *dir, const char *domain, char **transport_r,
    const char **error_r)
{
	/* query_domain binds :domain (and :address, :local for schemas that
	 * key on something else). */
	char *key = xasprintf("@%s", domain);
	int r = lookup_single(dir, dir->q_domain, key, transport_r, error_r);

	free(key);
	return r;
}

int
dir_lookup_alias(struct dir *dir, const char *address, char **goto_r,
    const char **error_r)
{
	if (dir->q_alias[0] == '\0')
		return DIR_NOTFOUND;
	return lookup_single(dir, dir->q_alias, address, goto_r, error_r);
}

static int
fill_user(struct dir_rows *rows, struct dir_user *u, const char **error_r)
{
	const char *v;

	if (rows->ncols < 8) {
		*error_r = "user query must return 8 columns: id, address, "
		    "crypt, name, uid, gid, home, maildir";
		return DIR_FAIL;
	}
	memset(u, 0, sizeof(*u));
	u->id = cell_dup(rows, 0);
	u->address = cell_dup(rows, 1);
	u->crypt = cell_dup(rows, 2);
	u->name = cell_dup(rows, 3);
	v = dir_rows_get(rows, 0, 4);
	u->uid = v ? strtol(v, NULL, 10) : -1;
	v = dir_rows_get(rows, 0, 5);
	u->gid = v ? strtol(v, NULL, 10) : -1;
	u->home = cell_dup(rows, 6);
	u->maildir = cell_dup(rows, 7);
	u->clear = xstrdup("");
	u->host = xstrdup("");
	return DIR_OK;
}

/* The cleartext password column of a query_login result: the one named
 * `clear` after the eight fixed ones, else the 10th (SPEC 6.1); -1 if
 * none. */
static ssize_t
clear_column(const struct dir_rows *rows)
{
	for (size_t i = 8; rows->names != NULL && i < rows->ncols; i++)
		if (rows->names[i] != NULL &&
		    strcasecmp(rows->names[i], "clear") == 0)
			return (ssize_t)i;
	return rows->ncols >= 10 ? 9 : -1;
}

/* The backend host column (SPEC 6.1): the one named `host` after the
 * eight fixed ones, else the one after maildir, or after the cleartext
 * password column (clear_col) when there is one; -1 if none. */
static ssize_t
host_column(const struct dir_rows *rows, ssize_t clear_col)
{
	size_t at = clear_col >= 0 ? (size_t)clear_col + 1 : 8;

	for (size_t i = 8; rows->names != NULL && i < rows->ncols; i++)
		if (rows->names[i] != NULL &&
		    strcasecmp(rows->names[i], "host") == 0)
			return (ssize_t)i;
	return at < rows->ncols && (ssize_t)at != clear_col ? (ssize_t)at :
	    -1;
}

static void
fill_host(const struct dir_rows *rows, struct dir_user *u, ssize_t clear_col)
{
	ssize_t col = host_column(rows, clear_col);

	if (col >= 0 && dir_rows_get(rows, 0, (size_t)col) != NULL) {
		free(u->host);
		u->host = xstrdup(dir_rows_get(rows, 0, (size_t)col));
	}
}

int
dir_lookup_user(struct dir *dir, const char *address, struct dir_user *u,
    const char **error_r)
{
	struct dir_rows *rows;
	int r = lookup(dir, dir->q_user, address, false, &rows, error_r);

	if (r == DIR_OK) {
		r = fill_user(rows, u, error_r);
		if (r == DIR_OK)
			fill_host(rows, u, -1);
		dir_rows_free(&rows);
	}
	return r;
}

int
dir_lookup_login(struct dir *dir, const char *login, struct dir_user *u,
    const char **error_r)
{
	struct dir_rows *rows;
	int r = lookup(dir, dir->q_login, login, true, &rows, error_r);
	ssize_t col;

	if (r == DIR_OK) {
		r = fill_user(rows, u, error_r);
		col = clear_column(rows);
		if (r == DIR_OK && col >= 0 &&
		    dir_rows_get(rows, 0, (size_t)col) != NULL) {
			free(u->clear);
			u->clear = xstrdup(dir_rows_get(rows, 0, (size_t)col));
		}
		if (r == DIR_OK)
			fill_host(rows, u, col);
		/* the cells held the cleartext too */
		for (size_t i = 0; col >= 0 && i < rows->nrows; i++) {
			char *c = rows->cells[i * rows->ncols + (size_t)col];

			if (c != NULL)
				explicit_bzero(c, strlen(c));
		}
		dir_rows_free(&rows);
	}
	return r;
}

int
dir_login_has_clear(struct dir *dir, const char **error_r)
{
	/* an empty login matches no row: only the columns come back */
	struct dir_param params[4] = { { "login", "" }, { "local", "" },
	    { "domain", "" }, { "address", "" } };
	struct dir_rows *rows;
	int r;

	r = dir_query(dir, dir->q_login, params, 4, &rows, error_r);
	if (r != DIR_OK)
		return r;
	r = rows->ncols >= 8 && clear_column(rows) >= 0 ? DIR_OK :
	    DIR_NOTFOUND;
	dir_rows_free(&rows);
	return r;
}

int
dir_lookup_quota(struct dir *dir, const char *address,
    struct quota_limit *quota_r, const char **error_r)
{
	char *v = NULL;
	int r;

	memset(quota_r, 0, sizeof(*quota_r));
	if (!dir_has_quota(dir))
		return DIR_OK;
	r = lookup_single(dir, dir->q_quota, address, &v, error_r);
	if (r == DIR_NOTFOUND)
		return DIR_OK;
	if (r == DIR_OK) {
		if (quota_limit_parse(v, quota_r) < 0)
			log_warn("quota of %s: '%s' is neither bytes nor a "
			    "Maildir++ definition: no quota", address, v);
		free(v);
	}
	return r;
}

void *
dir_thread_init(void *arg)
{
	const struct config *cfg = arg;
	struct dir *dir = NULL;
	char *err = NULL;

	/* The URL was validated when the process started. */
	if (dir_open(config_get(cfg, "database"), 0, &dir, &err) < 0)
		fatal("%s", err);
	dir_set_queries(dir, cfg);
	return dir;
}

void
dir_thread_deinit(void *state)
{
	struct dir *dir = state;

	dir_close(&dir);
}
