/*
 * dir_mariadb.c: the MariaDB/MySQL directory driver (MariaDB Connector/C).
 *
 * Statements are prepared once per connection and cached. We never use the
 * connector's auto-reconnect (it silently invalidates prepared statements);
 * instead a connection-class error drops the connection and its statements,
 * reconnects, and retries the statement once when that is safe (a SELECT,
 * or an error raised before the server could have run the statement).
 * When the server stays unreachable the caller gets DIR_TEMPFAIL, which the
 * protocols turn into 4xx / temporary login failures.
 *
 * Several hosts (mysql://U:P@h1:3306,h2,h3/DB, the nodes of a Galera
 * cluster): a connection is made to the host in use, else to the next ones
 * in turn, and the handle sticks to the one that answered. A connection
 * lost in a query moves the handle to the next host, and the statement is
 * retried there once when that is safe (as above: a read, or one that did
 * not run). A frozen host costs MARIADB_CONNECT_TIMEOUT to connect, or
 * MARIADB_IO_TIMEOUT for a query in flight, then the next host is used.
 *
 * Galera: after connecting, the driver asks the node whether it is a
 * Galera node (@@wsrep_on; an error there, as on MySQL or a server built
 * without wsrep, means "not Galera"), once per connection. On a Galera
 * node it skips the node unless wsrep_ready is ON (a donor, joiner or a
 * node cut off from the primary component: the next host is tried), and
 * sets the session's wsrep_sync_wait (see mdb_galera_setup). A node that
 * answers ER_UNKNOWN_COM_ERROR (1047, "WSREP has not yet prepared node for
 * application use") in a query is left like a lost connection. A
 * statement that fails with ER_LOCK_DEADLOCK (1213: a deadlock, or a
 * Galera certification failure, the write set having lost against a
 * concurrent one on another node) was rolled back entirely: petrel runs
 * every statement on its own (autocommit, no multi-statement
 * transaction), so it is run again, MARIADB_DEADLOCK_RETRIES times at
 * most after a short randomized pause, then reported as a temporary
 * failure.
 *
 * Exact lookups: a column's default collation (utf8mb4_general_ci,
 * latin1_swedish_ci, ...) takes "alicé" for "alice", "mariá.test" for
 * "maria.test" and, with PAD SPACE, "alice " for "alice". A placeholder
 * whose value holds anything but printable ASCII without spaces is sent as
 * CAST(? AS BINARY): a binary string of implicit derivation, which makes
 * MariaDB and MySQL compare byte for byte (no accent folding, no padding).
 * A plain ASCII value is compared under the column's collation as before,
 * so that the ASCII case-insensitivity of the howto tables (a stored
 * "Alice@Example.org" found by the lower-cased "alice@example.org") stays.
 * INSERT statements are sent as written (values go into columns there).
 */
#include <errmsg.h>
#include <errno.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/dir/dir-private.h"

#define MARIADB_STMT_CACHE 32
#define MARIADB_CONNECT_TIMEOUT 5	/* seconds */
#define MARIADB_IO_TIMEOUT 30		/* seconds, read and write */
#define MARIADB_DEADLOCK_RETRIES 3	/* runs again after ER_LOCK_DEADLOCK */
#define MARIADB_DEADLOCK_PAUSE 50	/* ms at most, times the attempt */

/*
 * wsrep_sync_wait is a bitmask in MariaDB 10.4 to 11.x: 1 READ (SELECT,
 * SHOW, BEGIN), 2 UPDATE and DELETE, 4 INSERT and REPLACE, 8 SHOW alone.
 * With a bit set, the node waits before such a statement until it has
 * applied every write set the cluster committed before the statement
 * arrived (a causality check). 1 is what a login needs: a user added
 * through another node is seen by the SELECT that follows. The writes
 * (petrel's commands only: user passwd, alias add, ...) get it too, so
 * that an UPDATE or DELETE right after an INSERT made through another
 * node finds the row: 7. No lookup of the servers is an UPDATE, DELETE
 * or INSERT, so the extra bits cost nothing on the mail path.
 */
#define MARIADB_SYNC_WAIT "7"

struct mariadb_ctx {
	struct dir_url url;
	size_t current;		/* the host in use (url.hosts[]) */
	MYSQL *conn;
	bool galera;		/* conn is to a Galera node (asked once) */
	struct { char *sql; MYSQL_STMT *stmt; } cache[MARIADB_STMT_CACHE];
	size_t ncache;
};

/* Errors after which the connection is unusable. */
static bool
mdb_conn_error(unsigned err)
{
	switch (err) {
	case CR_SERVER_GONE_ERROR: case CR_SERVER_LOST:
	case CR_CONNECTION_ERROR: case CR_CONN_HOST_ERROR:
	case CR_SERVER_LOST_EXTENDED: case CR_COMMANDS_OUT_OF_SYNC:
	case CR_UNKNOWN_HOST: case CR_IPSOCK_ERROR: case CR_SOCKET_CREATE_ERROR:
	case ER_SERVER_SHUTDOWN: case ER_CONNECTION_KILLED:
	case ER_NEW_ABORTING_CONNECTION: case ER_NET_READ_ERROR:
	case ER_NET_READ_INTERRUPTED: case ER_NET_ERROR_ON_WRITE:
	case ER_NET_WRITE_INTERRUPTED: case 4031 /* idle timeout */:
	case ER_UNKNOWN_COM_ERROR:	/* Galera node not ready (1047) */
		return true;
	}
	return false;
}

/* Errors that are temporary without the connection being lost. */
static bool
mdb_temp_error(unsigned err)
{
	switch (err) {
	case ER_LOCK_WAIT_TIMEOUT: case ER_LOCK_DEADLOCK:
	case ER_CON_COUNT_ERROR: case ER_TOO_MANY_USER_CONNECTIONS:
	case ER_OUT_OF_RESOURCES: case ER_QUERY_INTERRUPTED:
	case ER_HOST_IS_BLOCKED: case ER_OUTOFMEMORY:
		return true;
	}
	return mdb_conn_error(err) || (err >= 2000 && err < 3000);
}

static void
mdb_drop(struct mariadb_ctx *c)
{
	for (size_t i = 0; i < c->ncache; i++) {
		mysql_stmt_close(c->cache[i].stmt);
		free(c->cache[i].sql);
	}
	c->ncache = 0;
	if (c->conn != NULL)
		mysql_close(c->conn);
	c->conn = NULL;
}

static int
mdb_open(const struct dir_url *url, int flags, void **ctx_r, str_t *error)
{
	struct mariadb_ctx *c = xmalloc(sizeof(*c));

	c->url.mysql = true;
	c->url.user = xstrdup(url->user ? url->user : "");
	c->url.password = url->password ? xstrdup(url->password) : NULL;
	c->url.host = xstrdup(url->host);
	c->url.db = xstrdup(url->db);
	c->url.socket = url->socket ? xstrdup(url->socket) : NULL;
	c->url.port = url->port;
	c->url.nhosts = url->nhosts;
	for (size_t i = 0; i < url->nhosts; i++) {
		c->url.hosts[i] = xstrdup(url->hosts[i]);
		c->url.ports[i] = url->ports[i];
	}
	if (c->url.nhosts == 0) {	/* not from dir_url_parse */
		c->url.hosts[0] = xstrdup(url->host);
		c->url.ports[0] = url->port;
		c->url.nhosts = 1;
	}
	c->current = 0;
	*ctx_r = c;
	return 0;
}

/* The first value of the first row of sql on conn (malloc'd), NULL with
 * *err_r set (0: no row) and the error in *error. */
static char *
mdb_value(MYSQL *conn, const char *sql, unsigned *err_r, str_t *error)
{
	MYSQL_RES *res;
	MYSQL_ROW row;
	char *v = NULL;

	*err_r = 0;
	if (mysql_query(conn, sql) != 0 ||
	    (res = mysql_store_result(conn)) == NULL) {
		*err_r = mysql_errno(conn);
		str_printf(error, "%s: %s", sql, mysql_error(conn));
		return NULL;
	}
	if ((row = mysql_fetch_row(res)) != NULL && row[0] != NULL)
		v = xstrdup(row[0]);
	mysql_free_result(res);
	return v;
}

/* Is conn to a Galera node (*galera_r)? If so, is it ready, and its
 * session set up? 0, or -1 with the reason in *error: the node is not to
 * be used now. */
static int
mdb_galera_setup(MYSQL *conn, bool *galera_r, str_t *error)
{
	str_t ignored = STR_INIT;
	unsigned err;
	char *v;
	int ret = 0;

	*galera_r = false;
	v = mdb_value(conn, "SELECT @@wsrep_on", &err, &ignored);
	if (v == NULL) {
		if (err == ER_UNKNOWN_COM_ERROR || mdb_conn_error(err)) {
			str_printf(error, "Galera node not ready: %s",
			    str_c(&ignored));
			str_free(&ignored);
			return -1;
		}
		str_free(&ignored);
		return 0;	/* no such variable: not Galera */
	}
	str_free(&ignored);
	*galera_r = strcmp(v, "1") == 0 || strcasecmp(v, "ON") == 0;
	free(v);
	if (!*galera_r)
		return 0;
	/* SHOW STATUS itself has no causality check (MDEV-6832): it answers
	 * on a node that is not ready. */
	if (mysql_query(conn, "SHOW STATUS LIKE 'wsrep_ready'") != 0) {
		str_printf(error, "Galera node: %s", mysql_error(conn));
		return -1;
	}
	{
		MYSQL_RES *res = mysql_store_result(conn);
		MYSQL_ROW row = res != NULL ? mysql_fetch_row(res) : NULL;

		if (row == NULL || row[1] == NULL ||
		    strcasecmp(row[1], "ON") != 0) {
			str_printf(error, "Galera node not ready "
			    "(wsrep_ready %s)", row != NULL && row[1] != NULL ?
			    row[1] : "unknown");
			ret = -1;
		}
		if (res != NULL)
			mysql_free_result(res);
		if (ret < 0)
			return ret;
	}
	if (mysql_query(conn, "SET SESSION wsrep_sync_wait = "
	    MARIADB_SYNC_WAIT) != 0) {
		str_printf(error, "Galera node: SET wsrep_sync_wait: %s",
		    mysql_error(conn));
		return -1;
	}
	return 0;
}

/* A new connection to host i, or NULL with the error in *error. */
static MYSQL *
mdb_connect_host(struct mariadb_ctx *c, size_t i, bool *galera_r,
    str_t *error)
{
	unsigned int ctimeout = MARIADB_CONNECT_TIMEOUT;
	unsigned int iotimeout = MARIADB_IO_TIMEOUT;
	str_t why = STR_INIT;
	MYSQL *conn = mysql_init(NULL);

	if (conn == NULL) {
		str_printf(error, "mysql_init failed (out of memory)");
		return NULL;
	}
	mysql_options(conn, MYSQL_OPT_CONNECT_TIMEOUT, &ctimeout);
	mysql_options(conn, MYSQL_OPT_READ_TIMEOUT, &iotimeout);
	mysql_options(conn, MYSQL_OPT_WRITE_TIMEOUT, &iotimeout);
	mysql_options(conn, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	if (mysql_real_connect(conn, c->url.hosts[i], c->url.user,
	    c->url.password, c->url.db, c->url.ports[i], c->url.socket,
	    0) == NULL) {
		if (c->url.socket != NULL)
			str_printf(error, "cannot connect to MySQL database "
			    "%s on %s: %s", c->url.db, c->url.socket,
			    mysql_error(conn));
		else
			str_printf(error, "cannot connect to MySQL database "
			    "%s on %s: %s", c->url.db, c->url.hosts[i],
			    mysql_error(conn));
		mysql_close(conn);
		return NULL;
	}
	if (mdb_galera_setup(conn, galera_r, &why) < 0) {
		str_printf(error, "MySQL database %s on %s: %s", c->url.db,
		    c->url.socket != NULL ? c->url.socket : c->url.hosts[i],
		    str_c(&why));
		str_free(&why);
		mysql_close(conn);
		return NULL;
	}
	return conn;
}

static int
mdb_connect(void *ctx, str_t *error)
{
	struct mariadb_ctx *c = ctx;

	if (c->conn != NULL)
		return 0;
	/* the host in use, then the others in turn */
	for (size_t k = 0; k < c->url.nhosts; k++) {
		size_t i = (c->current + k) % c->url.nhosts;

		if (k > 0)
			str_append(error, "; ");
		c->conn = mdb_connect_host(c, i, &c->galera, error);
		if (c->conn != NULL) {
			if (i != c->current)
				log_warn("directory: now on MariaDB host %s:%u "
				    "(%s)", c->url.hosts[i], c->url.ports[i],
				    str_c(error));
			c->current = i;
			str_truncate(error, 0);
			return 0;
		}
	}
	return -1;
}

static void
mdb_close(void *ctx)
{
	struct mariadb_ctx *c = ctx;

	mdb_drop(c);
	dir_url_clear(&c->url);
	free(c);
}

static MYSQL_STMT *
mdb_prepare(struct mariadb_ctx *c, const char *sql, unsigned *err_r,
    str_t *error)
{
	MYSQL_STMT *stmt;

	for (size_t i = 0; i < c->ncache; i++)
		if (strcmp(c->cache[i].sql, sql) == 0)
			return c->cache[i].stmt;
	stmt = mysql_stmt_init(c->conn);
	if (stmt == NULL) {
		*err_r = mysql_errno(c->conn);
		str_printf(error, "%s", mysql_error(c->conn));
		return NULL;
	}
	if (mysql_stmt_prepare(stmt, sql, strlen(sql)) != 0) {
		*err_r = mysql_stmt_errno(stmt);
		str_printf(error, "%s", mysql_stmt_error(stmt));
		mysql_stmt_close(stmt);
		return NULL;
	}
	if (c->ncache == MARIADB_STMT_CACHE) {
		mysql_stmt_close(c->cache[0].stmt);
		free(c->cache[0].sql);
		memmove(&c->cache[0], &c->cache[1],
		    (MARIADB_STMT_CACHE - 1) * sizeof(c->cache[0]));
		c->ncache--;
	}
	c->cache[c->ncache].sql = xstrdup(sql);
	c->cache[c->ncache].stmt = stmt;
	c->ncache++;
	return stmt;
}

/* One attempt. Returns DIR_OK, or a negative status with *err_r set to
 * the server/client error number and *before_exec_r telling whether the
 * statement can not have run. */
static int
mdb_try(struct mariadb_ctx *c, const char *sql, const char *const *values,
    size_t nvalues, struct dir_rows *rows, str_t *error, unsigned *err_r,
    bool *before_exec_r)
{
	MYSQL_STMT *stmt;
	MYSQL_BIND *pb = NULL, *rb = NULL;
	MYSQL_RES *meta = NULL;
	unsigned long *lens = NULL, *plens = NULL;
	my_bool *nulls = NULL;
	int r, ret = DIR_FAIL;

	*err_r = 0;
	*before_exec_r = true;
	if (mdb_connect(c, error) < 0) {
		*err_r = CR_CONNECTION_ERROR;
		return DIR_TEMPFAIL;
	}
	stmt = mdb_prepare(c, sql, err_r, error);
	if (stmt == NULL)
		return DIR_FAIL;
	if (mysql_stmt_param_count(stmt) != nvalues) {
		str_printf(error, "query has %lu placeholders, %zu values",
		    mysql_stmt_param_count(stmt), nvalues);
		return DIR_FAIL;
	}
	pb = xcalloc(nvalues + 1, sizeof(*pb));
	plens = xcalloc(nvalues + 1, sizeof(*plens));
	for (size_t i = 0; i < nvalues; i++) {
		if (values[i] == NULL) {
			pb[i].buffer_type = MYSQL_TYPE_NULL;
			continue;
		}
		plens[i] = strlen(values[i]);
		pb[i].buffer_type = MYSQL_TYPE_STRING;
		pb[i].buffer = (void *)values[i];
		pb[i].buffer_length = plens[i];
		pb[i].length = &plens[i];
	}
	if (nvalues > 0 && mysql_stmt_bind_param(stmt, pb) != 0)
		goto stmt_error;
	*before_exec_r = false;
	if (mysql_stmt_execute(stmt) != 0) {
		/* "Server has gone away" is raised when the command could not
		 * be sent: the statement did not run. */
		if (mysql_stmt_errno(stmt) == CR_SERVER_GONE_ERROR)
			*before_exec_r = true;
		goto stmt_error;
	}
	meta = mysql_stmt_result_metadata(stmt);
	if (meta == NULL) {
		rows->ncols = 0;
		rows->affected = (uint64_t)mysql_stmt_affected_rows(stmt);
		ret = DIR_OK;
		goto out;
	}
	rows->ncols = mysql_num_fields(meta);
	{
		MYSQL_FIELD *f = mysql_fetch_fields(meta);

		rows->names = xcalloc(rows->ncols + 1, sizeof(char *));
		for (size_t i = 0; f != NULL && i < rows->ncols; i++)
			rows->names[i] = xstrdup(f[i].name != NULL ?
			    f[i].name : "");
	}
	if (mysql_stmt_store_result(stmt) != 0)
		goto stmt_error;
	rb = xcalloc(rows->ncols + 1, sizeof(*rb));
	lens = xcalloc(rows->ncols + 1, sizeof(*lens));
	nulls = xcalloc(rows->ncols + 1, sizeof(*nulls));
	for (size_t i = 0; i < rows->ncols; i++) {
		rb[i].buffer_type = MYSQL_TYPE_STRING;
		rb[i].length = &lens[i];
		rb[i].is_null = &nulls[i];
	}
	if (mysql_stmt_bind_result(stmt, rb) != 0)
		goto stmt_error;
	while ((r = mysql_stmt_fetch(stmt)) == 0 || r == MYSQL_DATA_TRUNCATED) {
		char **cells = xcalloc(rows->ncols + 1, sizeof(char *));

		for (size_t i = 0; i < rows->ncols; i++) {
			MYSQL_BIND one;

			if (nulls[i])
				continue;
			cells[i] = xmalloc(lens[i] + 1);
			if (lens[i] == 0)
				continue;
			memset(&one, 0, sizeof(one));
			one.buffer_type = MYSQL_TYPE_STRING;
			one.buffer = cells[i];
			one.buffer_length = lens[i] + 1;
			if (mysql_stmt_fetch_column(stmt, &one, (unsigned)i,
			    0) != 0) {
				for (size_t j = 0; j <= i; j++)
					free(cells[j]);
				free(cells);
				goto stmt_error;
			}
			cells[i][lens[i]] = '\0';
		}
		dir_rows_add(rows, cells);
		free(cells);
	}
	if (r != MYSQL_NO_DATA)
		goto stmt_error;
	ret = DIR_OK;
	goto out;
stmt_error:
	*err_r = mysql_stmt_errno(stmt);
	str_printf(error, "%s", mysql_stmt_error(stmt));
	ret = DIR_FAIL;
out:
	if (stmt != NULL) {
		mysql_stmt_free_result(stmt);
		mysql_stmt_reset(stmt);
	}
	if (meta != NULL)
		mysql_free_result(meta);
	free(pb);
	free(plens);
	free(rb);
	free(lens);
	free(nulls);
	return ret;
}

/* Must this value be compared byte for byte (see the top)? */
static bool
mdb_needs_exact(const char *v)
{
	for (const unsigned char *p = (const unsigned char *)v; *p != '\0';
	    p++) {
		if (*p <= ' ' || *p >= 0x7f)
			return true;
	}
	return false;
}

/* sql with each placeholder whose value needs an exact comparison
 * written as CAST(? AS BINARY); NULL when there is none (or an INSERT). */
static char *
mdb_exact_sql(const char *sql, const char *const *values, size_t nvalues)
{
	str_t out = STR_INIT;
	const char *p = sql;
	char quote = 0;
	size_t k = 0;
	bool any = false;

	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (strncasecmp(p, "INSERT", 6) == 0 || strncasecmp(p, "REPLACE", 7) == 0)
		return NULL;
	for (p = sql; *p != '\0'; p++) {
		if (quote != 0) {
			if (*p == '\\' && p[1] != '\0' && quote != '`')
				str_append_c(&out, *p++);
			else if (*p == quote)
				quote = 0;
			str_append_c(&out, *p);
			continue;
		}
		if (*p == '\'' || *p == '"' || *p == '`') {
			quote = *p;
			str_append_c(&out, *p);
			continue;
		}
		if (*p != '?') {
			str_append_c(&out, *p);
			continue;
		}
		if (k < nvalues && values[k] != NULL &&
		    mdb_needs_exact(values[k])) {
			str_append(&out, "CAST(? AS BINARY)");
			any = true;
		} else {
			str_append_c(&out, '?');
		}
		k++;
	}
	if (!any) {
		str_free(&out);
		return NULL;
	}
	return str_steal(&out);
}

static void
rows_reset(struct dir_rows *rows)
{
	for (size_t i = 0; i < rows->nrows * rows->ncols; i++)
		free(rows->cells[i]);
	free(rows->cells);
	for (size_t i = 0; rows->names != NULL && i < rows->ncols; i++)
		free(rows->names[i]);
	free(rows->names);
	memset(rows, 0, sizeof(*rows));
}

/* Before the n-th run after a deadlock: a random pause of up to n times
 * MARIADB_DEADLOCK_PAUSE ms, so that two writers that collided do not
 * collide again at once. */
static void
mdb_pause(int n)
{
	uint32_t r = 0;
	struct timespec ts;
	long ms;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		r = (uint32_t)clock();
	ms = 1 + (long)(r % (uint32_t)(n * MARIADB_DEADLOCK_PAUSE));
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int
mdb_query(void *ctx, const char *sql, const char *const *values,
    size_t nvalues, struct dir_rows *rows, str_t *error)
{
	struct mariadb_ctx *c = ctx;
	bool before_exec, readonly;
	unsigned err;
	int r;
	char *exact = mdb_exact_sql(sql, values, nvalues);

	readonly = strncasecmp(sql, "SELECT", 6) == 0;
	if (exact != NULL)
		sql = exact;
	r = DIR_TEMPFAIL;
	for (int attempt = 0, deadlocks = 0; attempt < 2; attempt++) {
		str_truncate(error, 0);
		rows_reset(rows);
		r = mdb_try(c, sql, values, nvalues, rows, error, &err,
		    &before_exec);
		if (r == DIR_OK)
			break;
		if (err == ER_LOCK_DEADLOCK) {
			/* rolled back entirely (see the top): run it again */
			if (deadlocks == MARIADB_DEADLOCK_RETRIES) {
				str_printf(error, " (%d tries)", deadlocks + 1);
				r = DIR_TEMPFAIL;
				break;
			}
			log_debug("directory: MariaDB host %s:%u: %s; running "
			    "the statement again", c->url.hosts[c->current],
			    c->url.ports[c->current], str_c(error));
			mdb_pause(++deadlocks);
			attempt--;
			continue;
		}
		if (!mdb_conn_error(err) || c->conn == NULL) {
			if (err != 0 && mdb_conn_error(err))
				mdb_drop(c);
			r = mdb_temp_error(err) ? DIR_TEMPFAIL : DIR_FAIL;
			break;
		}
		/* The connection broke: drop it, go on with the next host
		 * (if any); retry once if safe. */
		r = DIR_TEMPFAIL;
		mdb_drop(c);
		if (c->url.nhosts > 1) {
			log_warn("directory: lost MariaDB host %s:%u: %s",
			    c->url.hosts[c->current],
			    c->url.ports[c->current], str_c(error));
			c->current = (c->current + 1) % c->url.nhosts;
		}
		if (!readonly && !before_exec)
			break;
	}
	free(exact);
	return r;
}

static size_t
mdb_nhosts(void *ctx)
{
	return ((struct mariadb_ctx *)ctx)->url.nhosts;
}

static int
mdb_probe(void *ctx, size_t i, str_t *name, str_t *error)
{
	struct mariadb_ctx *c = ctx;
	MYSQL *conn;
	bool galera;

	if (i >= c->url.nhosts)
		return -1;
	if (c->url.ports[i] != 0)
		str_printf(name, "%s:%u", c->url.hosts[i], c->url.ports[i]);
	else
		str_printf(name, "%s", c->url.hosts[i]);
	conn = mdb_connect_host(c, i, &galera, error);
	if (conn == NULL)
		return -1;
	mysql_close(conn);
	return 0;
}

const struct dir_driver dir_driver_mariadb = {
	.name = "mariadb",
	.open = mdb_open,
	.connect = mdb_connect,
	.close = mdb_close,
	.query = mdb_query,
	.nhosts = mdb_nhosts,
	.probe = mdb_probe,
};
