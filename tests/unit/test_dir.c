/*
 * Unit tests for lib/dir: URL parsing, named parameters, the SQLite driver
 * and the lookups; the same lookups against MariaDB when
 * PETREL_TEST_MYSQL_URL is set, including a server restart (reconnect) and
 * an outage (DIR_TEMPFAIL, never "not found") when PETREL_TEST_MYSQL_STOP
 * and PETREL_TEST_MYSQL_START name commands that stop and start it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/config/config.h"
#include "lib/dir/dir.h"
#include "test.h"

static void
test_url(void)
{
	struct dir_url u;
	const char *err;

	test_begin("dir url parsing");
	test_assert(dir_url_parse("sqlite:/var/x.db", &u, &err) == 0);
	test_assert(!u.mysql);
	test_assert_streq(u.path, "/var/x.db");
	dir_url_clear(&u);
	test_assert(dir_url_parse("mysql://mail:s%40cr%2Ft@db.example:3307/maildb",
	    &u, &err) == 0);
	test_assert(u.mysql);
	test_assert_streq(u.user, "mail");
	test_assert_streq(u.password, "s@cr/t");
	test_assert_streq(u.host, "db.example");
	test_assert(u.port == 3307);
	test_assert_streq(u.db, "maildb");
	dir_url_clear(&u);
	test_assert(dir_url_parse("mysql://u:p@localhost/m?socket=/run/my.sock",
	    &u, &err) == 0);
	test_assert_streq(u.socket, "/run/my.sock");
	test_assert(u.port == 0);
	dir_url_clear(&u);
	test_assert(dir_url_parse("mysql://u:p:q@h/m", &u, &err) == 0);
	test_assert_streq(u.password, "p:q");
	dir_url_clear(&u);
	test_assert(dir_url_parse("mysql://u:p@[::1]:3306/m", &u, &err) == 0);
	test_assert_streq(u.host, "::1");
	dir_url_clear(&u);
	/* a cluster: every host in order, the first one as host/port */
	test_assert(dir_url_parse("mysql://u:p@h1:3306,h2,[::1]:3307/m", &u,
	    &err) == 0);
	test_assert(u.nhosts == 3);
	test_assert_streq(u.host, "h1");
	test_assert(u.port == 3306);
	test_assert_streq(u.hosts[0], "h1");
	test_assert(u.ports[0] == 3306);
	test_assert_streq(u.hosts[1], "h2");
	test_assert(u.ports[1] == 0);
	test_assert_streq(u.hosts[2], "::1");
	test_assert(u.ports[2] == 3307);
	test_assert_streq(u.db, "m");
	dir_url_clear(&u);
	test_assert(dir_url_parse("mysql://u:p@db/m", &u, &err) == 0);
	test_assert(u.nhosts == 1);
	test_assert_streq(u.hosts[0], "db");
	dir_url_clear(&u);
	test_assert(dir_url_parse("mysql://u:p@/m", &u, &err) == 0);
	test_assert_streq(u.host, "localhost");
	dir_url_clear(&u);
	{
		static const char *const bad[] = {
			"", "sqlite:", "postgres://x/y", "mysql://u:p@h",
			"mysql://u:p@h/", "mysql://u:p@h:0/m",
			"mysql://u:p@h:99999/m", "mysql://u:p@h:x/m",
			"mysql://u:%zz@h/m", "mysql://u:%4@h/m",
			"mysql://u:%00@h/m", "mysql://u:p@h/m?sock=1",
			"mysql://u:p@[::1/m", "mysql://u:p@h1,/m",
			"mysql://u:p@,h2/m", "mysql://u:p@h1,,h2/m",
			"mysql://u:p@h1,h2:0/m", "mysql://u:p@h1:1,h2:x/m",
			"mysql://u:p@a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q/m",
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			test_assert(dir_url_parse(bad[i], &u, &err) == -1);
	}
	test_assert_streq(dir_url_redacted("mysql://u:secret@h/m"),
	    "mysql://u:****@h/m");
	test_end();
}

static void
test_translate(void)
{
	char *out, **names;
	size_t n;

	test_begin("dir named parameters -> placeholders");
	dir_sql_translate("SELECT a FROM t WHERE x = :address AND y = ':no' "
	    "AND z = \":no\" -- :no\n AND w = :domain /* :no */ AND q=:address",
	    &out, &names, &n);
	test_assert_streq(out, "SELECT a FROM t WHERE x = ? AND y = ':no' "
	    "AND z = \":no\" -- :no\n AND w = ? /* :no */ AND q=?");
	test_assert(n == 3);
	if (n == 3) {
		test_assert_streq(names[0], "address");
		test_assert_streq(names[1], "domain");
		test_assert_streq(names[2], "address");
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(out);
	dir_sql_translate("SELECT 'it''s :x', 'a\\':y' FROM t WHERE a=:z",
	    &out, &names, &n);
	test_assert(n == 1 && strcmp(names[0], "z") == 0);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(out);
	test_end();
}

static const char *const sqlite_schema[] = {
	"CREATE TABLE transport (domain TEXT COLLATE NOCASE UNIQUE, transport TEXT)",
	"CREATE TABLE virtual (address TEXT COLLATE NOCASE UNIQUE, goto TEXT)",
	"CREATE TABLE users (id TEXT COLLATE NOCASE PRIMARY KEY, address TEXT "
	"COLLATE NOCASE UNIQUE, crypt TEXT, clear TEXT DEFAULT '', name TEXT, "
	"uid INTEGER, gid INTEGER, home TEXT, domain TEXT, maildir TEXT, "
	"imapok INTEGER DEFAULT 1, bool1 INTEGER DEFAULT 1, bool2 INTEGER "
	"DEFAULT 1, quota INTEGER DEFAULT 0)",
	NULL
};

static const char *const mysql_schema[] = {
	"DROP TABLE IF EXISTS transport", "DROP TABLE IF EXISTS virtual",
	"DROP TABLE IF EXISTS users",
	"CREATE TABLE transport (domain VARCHAR(128) NOT NULL DEFAULT '', "
	"transport VARCHAR(128) NOT NULL DEFAULT '', UNIQUE KEY (domain))",
	"CREATE TABLE virtual (address VARCHAR(255) NOT NULL DEFAULT '', "
	"goto VARCHAR(255) NOT NULL DEFAULT '', UNIQUE KEY (address))",
	"CREATE TABLE users (id VARCHAR(128) NOT NULL, address VARCHAR(128) "
	"NOT NULL, crypt VARCHAR(128) NOT NULL DEFAULT '', clear VARCHAR(128) "
	"NOT NULL DEFAULT '', name VARCHAR(128) NOT NULL DEFAULT '', uid "
	"SMALLINT UNSIGNED NOT NULL DEFAULT 1000, gid SMALLINT UNSIGNED NOT NULL "
	"DEFAULT 1000, home VARCHAR(255) NOT NULL DEFAULT '', domain "
	"VARCHAR(128) NOT NULL DEFAULT '', maildir VARCHAR(255) NOT NULL "
	"DEFAULT '', imapok TINYINT UNSIGNED NOT NULL DEFAULT 1, bool1 TINYINT "
	"UNSIGNED NOT NULL DEFAULT 1, bool2 TINYINT UNSIGNED NOT NULL DEFAULT 1,"
	" quota BIGINT UNSIGNED NOT NULL DEFAULT 0, PRIMARY KEY (id), UNIQUE "
	"KEY (address))",
	NULL
};

static const char *const data[] = {
	"INSERT INTO transport VALUES ('example.test', 'virtual:')",
	"INSERT INTO virtual (address, goto) VALUES "
	"('postmaster@example.test', 'alice@example.test,bob@example.test')",
	"INSERT INTO users (id, address, crypt, name, uid, gid, home, domain, "
	"maildir, quota) VALUES ('alice@example.test', 'alice@example.test', "
	"'jnk.l3QByZvdk', 'Alice', 5000, 5000, '/m', 'example.test', "
	"'example.test/alice/', 1048576)",
	"INSERT INTO users (id, address, crypt, name, uid, gid, home, domain, "
	"maildir, imapok) VALUES ('carol', 'carol@example.test', 'x', 'Carol', "
	"5000, 5000, '/m', 'example.test', 'example.test/carol/', 0)",
	NULL
};

static void
exec_all(struct dir *dir, const char *const *stmts)
{
	const char *err = NULL;

	for (; *stmts != NULL; stmts++) {
		int r = dir_query(dir, *stmts, NULL, 0, NULL, &err);

		if (r != DIR_OK)
			fprintf(stderr, "setup failed: %s: %s\n", *stmts, err);
		test_assert(r == DIR_OK);
	}
}

static void
lookups(struct dir *dir, const char *label)
{
	struct dir_user u;
	char *v = NULL, name[128];
	const char *err;
	struct quota_limit quota;

	snprintf(name, sizeof(name), "dir lookups (%s)", label);
	test_begin(name);
	test_assert(dir_lookup_domain(dir, "example.test", &v, &err) == DIR_OK);
	test_assert_streq(v, "virtual:");
	free(v);
	v = NULL;
	test_assert(dir_lookup_domain(dir, "EXAMPLE.Test", &v, &err) == DIR_OK);
	free(v);
	v = NULL;
	test_assert(dir_lookup_domain(dir, "other.test", &v, &err) ==
	    DIR_NOTFOUND);
	test_assert(dir_lookup_alias(dir, "PostMaster@example.test", &v,
	    &err) == DIR_OK);
	test_assert_streq(v, "alice@example.test,bob@example.test");
	free(v);
	v = NULL;
	test_assert(dir_lookup_user(dir, "Alice@Example.Test", &u, &err) ==
	    DIR_OK);
	test_assert_streq(u.address, "alice@example.test");
	test_assert_streq(u.crypt, "jnk.l3QByZvdk");
	test_assert_streq(u.maildir, "example.test/alice/");
	test_assert(u.uid == 5000 && u.gid == 5000);
	dir_user_clear(&u);
	test_assert(dir_lookup_quota(dir, "alice@example.test", &quota, &err) ==
	    DIR_OK && quota.bytes == 1048576 && quota.count == 0);
	test_assert(dir_lookup_quota(dir, "nobody@example.test", &quota,
	    &err) == DIR_OK && quota.bytes == 0 && quota.count == 0);
	/* Login by id or by address; imapok = 0 refuses. */
	test_assert(dir_lookup_login(dir, "alice@example.test", &u, &err) ==
	    DIR_OK);
	dir_user_clear(&u);
	test_assert(dir_lookup_login(dir, "carol", &u, &err) == DIR_NOTFOUND);
	test_assert(dir_lookup_login(dir, "carol@example.test", &u, &err) ==
	    DIR_NOTFOUND);
	/* SQL metacharacters are data. */
	test_assert(dir_lookup_login(dir, "' OR '1'='1", &u, &err) ==
	    DIR_NOTFOUND);
	test_assert(dir_lookup_login(dir, "x' OR 1=1 -- ", &u, &err) ==
	    DIR_NOTFOUND);
	test_assert(dir_lookup_login(dir, "%", &u, &err) == DIR_NOTFOUND);
	test_assert(dir_lookup_user(dir, "alice@example.test' --", &u, &err) ==
	    DIR_NOTFOUND);
	test_assert(dir_lookup_alias(dir, "\\' OR 1=1#@example.test", &v,
	    &err) == DIR_NOTFOUND);
	/* A broken query is a permanent error, not "not found". */
	test_assert(dir_query(dir, "SELECT nosuchcol FROM users", NULL, 0, NULL,
	    &err) == DIR_FAIL);
	test_assert(dir_query(dir, "SELECT 1 FROM users WHERE id = :nope",
	    NULL, 0, NULL, &err) == DIR_FAIL);
	test_end();
}

/* The backend host column (SPEC 6.1) of query_user and query_login. */
static void
host_columns(struct dir *dir)
{
	static const struct {
		const char *key, *sql, *host, *clear;
	} cases[] = {
		/* none: "" */
		{ "query_user", "SELECT id, address, crypt, name, uid, gid, "
		  "home, maildir FROM users WHERE address = :address", "", "" },
		/* after maildir */
		{ "query_user", "SELECT id, address, crypt, name, uid, gid, "
		  "home, maildir, 'mx2.example' FROM users WHERE address = "
		  ":address", "mx2.example", "" },
		/* by name, wherever it is after maildir */
		{ "query_user", "SELECT id, address, crypt, name, uid, gid, "
		  "home, maildir, 7 AS other, 'b3' AS host FROM users WHERE "
		  "address = :address", "b3", "" },
		{ "query_login", "SELECT id, address, crypt, name, uid, gid, "
		  "home, maildir, 'b1' FROM users WHERE address = :login",
		  "b1", "" },
		/* after clear when both */
		{ "query_login", "SELECT id, address, crypt, name, uid, gid, "
		  "home, maildir, 's3cret' AS clear, 'b2' FROM users WHERE "
		  "address = :login", "b2", "s3cret" },
		{ "query_login", "SELECT id, address, crypt, name, uid, gid, "
		  "home, maildir, 'b4' AS host, 'pw' AS clear FROM users WHERE "
		  "address = :login", "b4", "pw" },
		{ "query_login", "SELECT id, address, crypt, name, uid, gid, "
		  "home, maildir, 'x', 'pw10' FROM users WHERE address = :login",
		  "", "pw10" },
		/* NULL: none */
		{ "query_user", "SELECT id, address, crypt, name, uid, gid, "
		  "home, maildir, NULL FROM users WHERE address = :address",
		  "", "" },
	};

	test_begin("dir backend host column");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *cfg = config_new();
		struct dir_user u;
		char *cerr = NULL;
		const char *err;
		bool login = strcmp(cases[i].key, "query_login") == 0;
		int r;

		test_assert(config_set(cfg, cases[i].key, cases[i].sql,
		    &cerr) == 0);
		free(cerr);
		dir_set_queries(dir, cfg);
		r = login ? dir_lookup_login(dir, "alice@example.test", &u,
		    &err) : dir_lookup_user(dir, "alice@example.test", &u, &err);
		test_assert(r == DIR_OK);
		if (r == DIR_OK) {
			test_assert_streq(u.host, cases[i].host);
			test_assert_streq(u.clear, cases[i].clear);
			test_assert_streq(u.maildir, "example.test/alice/");
			dir_user_clear(&u);
		}
		config_free(&cfg);
	}
	dir_set_queries(dir, NULL);
	test_end();
}

static void
test_sqlite(void)
{
	struct dir *dir = NULL;
	char *url, *err = NULL;
	const char *cerr;
	struct dir_rows *rows;

	url = xasprintf("sqlite:%s/dir.db", test_tmpdir());
	test_begin("dir sqlite: missing file is an error unless creating");
	test_assert(dir_open(url, 0, &dir, &err) == DIR_OK);
	test_assert(dir_connect(dir, &cerr) == DIR_TEMPFAIL);
	dir_close(&dir);
	test_assert(dir == NULL);
	test_assert(dir_open("bogus:x", 0, &dir, &err) == DIR_FAIL);
	free(err);
	test_assert(dir_open(url, DIR_OPEN_CREATE, &dir, &err) == DIR_OK);
	test_assert(dir_connect(dir, &cerr) == DIR_OK);
	test_end();
	exec_all(dir, sqlite_schema);
	exec_all(dir, data);
	lookups(dir, "sqlite");
	host_columns(dir);

	test_begin("dir sqlite: affected rows, NULLs, many rows");
	test_assert(dir_query(dir, "UPDATE users SET name = :n WHERE address "
	    "LIKE :l", (struct dir_param[]){ { "n", NULL }, { "l", "%" } }, 2,
	    &rows, &cerr) == DIR_OK);
	test_assert(rows->affected == 2);
	dir_rows_free(&rows);
	test_assert(dir_query(dir, "SELECT name FROM users", NULL, 0, &rows,
	    &cerr) == DIR_OK);
	test_assert(rows->nrows == 2 && dir_rows_get(rows, 0, 0) == NULL);
	test_assert(dir_rows_get(rows, 5, 0) == NULL);
	dir_rows_free(&rows);
	for (int i = 0; i < 200; i++) {
		char a[64];

		snprintf(a, sizeof(a), "u%d@example.test", i);
		test_assert(dir_query(dir, "INSERT INTO virtual VALUES (:a, :a)",
		    (struct dir_param[]){ { "a", a } }, 1, NULL, &cerr) ==
		    DIR_OK);
	}
	test_assert(dir_query(dir, "SELECT address FROM virtual", NULL, 0,
	    &rows, &cerr) == DIR_OK);
	test_assert(rows->nrows == 201);
	dir_rows_free(&rows);
	test_end();

	test_begin("dir sqlite: lookups in one read transaction");
	{
		struct dir *other = NULL;
		struct dir_user u;

		test_assert(dir_open(url, 0, &other, &err) == DIR_OK);
		dir_read_begin(dir);
		test_assert(dir_lookup_user(dir, "alice@example.test", &u,
		    &cerr) == DIR_OK);
		dir_user_clear(&u);
		test_assert(dir_query(dir, "SELECT count(*) FROM virtual",
		    NULL, 0, &rows, &cerr) == DIR_OK);
		test_assert(strcmp(dir_rows_get(rows, 0, 0), "201") == 0);
		dir_rows_free(&rows);
		/* a writer waits for the end of the read (busy timeout)
		 * in SQLite's rollback-journal mode; after it, the lock
		 * is gone and a write is at once possible */
		dir_read_end(dir);
		test_assert(dir_query(other, "DELETE FROM virtual WHERE "
		    "address LIKE 'u1%'", NULL, 0, NULL, &cerr) == DIR_OK);
		dir_read_begin(dir);
		test_assert(dir_query(dir, "SELECT count(*) FROM virtual",
		    NULL, 0, &rows, &cerr) == DIR_OK);
		test_assert(strcmp(dir_rows_get(rows, 0, 0), "90") == 0);
		dir_rows_free(&rows);
		dir_read_end(dir);
		/* ended twice, or without a start: nothing happens */
		dir_read_end(dir);
		dir_read_end(other);
		/* a write inside one commits at its end */
		dir_read_begin(dir);
		test_assert(dir_query(dir, "INSERT INTO virtual VALUES "
		    "('late@example.test', 'x')", NULL, 0, NULL, &cerr) ==
		    DIR_OK);
		dir_read_end(dir);
		test_assert(dir_query(other, "SELECT count(*) FROM virtual",
		    NULL, 0, &rows, &cerr) == DIR_OK);
		test_assert(strcmp(dir_rows_get(rows, 0, 0), "91") == 0);
		dir_rows_free(&rows);
		dir_close(&other);
	}
	test_end();
	dir_close(&dir);
	free(url);
}

static void
run_cmd(const char *env)
{
	const char *cmd = getenv(env);

	test_assert(cmd != NULL && system(cmd) == 0);
}

static void
test_mariadb(const char *url)
{
	struct dir *dir = NULL;
	struct dir_user u;
	char *err = NULL;
	const char *cerr;

	test_begin("dir mariadb: connect");
	test_assert(dir_open(url, 0, &dir, &err) == DIR_OK);
	test_assert(dir_connect(dir, &cerr) == DIR_OK);
	test_end();
	exec_all(dir, mysql_schema);
	exec_all(dir, data);
	lookups(dir, "mariadb");
	if (getenv("PETREL_TEST_MYSQL_STOP") == NULL) {
		dir_close(&dir);
		return;
	}
	test_begin("dir mariadb: server restart is survived (reconnect)");
	run_cmd("PETREL_TEST_MYSQL_STOP");
	run_cmd("PETREL_TEST_MYSQL_START");
	test_assert(dir_lookup_user(dir, "alice@example.test", &u, &cerr) ==
	    DIR_OK);
	dir_user_clear(&u);
	test_end();

	test_begin("dir mariadb: outage is DIR_TEMPFAIL, then recovers");
	run_cmd("PETREL_TEST_MYSQL_STOP");
	test_assert(dir_lookup_user(dir, "alice@example.test", &u, &cerr) ==
	    DIR_TEMPFAIL);
	test_assert(dir_lookup_login(dir, "alice@example.test", &u, &cerr) ==
	    DIR_TEMPFAIL);
	test_assert(dir_lookup_domain(dir, "example.test", &err, &cerr) ==
	    DIR_TEMPFAIL);
	run_cmd("PETREL_TEST_MYSQL_START");
	test_assert(dir_lookup_user(dir, "alice@example.test", &u, &cerr) ==
	    DIR_OK);
	dir_user_clear(&u);
	test_end();
	dir_close(&dir);

	test_begin("dir mariadb: unreachable server is DIR_TEMPFAIL");
	test_assert(dir_open("mysql://x:y@127.0.0.1:1/nodb", 0, &dir, &err) ==
	    DIR_OK);
	test_assert(dir_connect(dir, &cerr) == DIR_TEMPFAIL);
	test_assert(dir_lookup_user(dir, "a@b.c", &u, &cerr) == DIR_TEMPFAIL);
	dir_close(&dir);
	test_end();
}

int
main(void)
{
	const char *mysql = getenv("PETREL_TEST_MYSQL_URL");

	test_url();
	test_translate();
	test_sqlite();
	if (mysql != NULL && *mysql != '\0')
		test_mariadb(mysql);
	return test_done();
}
