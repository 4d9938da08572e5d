/* Unit tests for lib/config/config.c. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/config/config.h"
#include "test.h"

static int
load(struct config *cfg, const char *text, char **err)
{
	*err = NULL;
	return config_load_text(cfg, "t.conf", text, strlen(text), err);
}

static void
test_parse(void)
{
	struct config *cfg = config_new();
	char *err;

	test_begin("config parse, comments, whitespace, defaults");
	test_assert(load(cfg, "# comment\n\n  hostname =  mx.example.test  \n"
	    "message_size_limit=1000\r\nquery_quota =\n", &err) == 0);
	test_assert_streq(config_get(cfg, "hostname"), "mx.example.test");
	test_assert(config_get_uint(cfg, "message_size_limit") == 1000);
	test_assert_streq(config_get(cfg, "query_quota"), "");
	test_assert(config_is_set(cfg, "query_quota"));
	test_assert(!config_is_set(cfg, "database"));
	test_assert_streq(config_get(cfg, "query_domain"),
	    "SELECT transport FROM transport WHERE domain = :domain");
	test_assert_streq(config_get(cfg, "allow_plaintext_auth"), "loopback");
	/* A value may contain '=' (SQL). */
	test_assert(load(cfg, "query_alias = SELECT goto FROM v WHERE a = :address\n",
	    &err) == 0);
	test_assert_streq(config_get(cfg, "query_alias"),
	    "SELECT goto FROM v WHERE a = :address");
	config_free(&cfg);
	test_assert(cfg == NULL);
	test_end();
}

static void
test_errors(void)
{
	struct config *cfg = config_new();
	char *err;

	test_begin("config errors name the line number");
	test_assert(load(cfg, "hostname = a\n\nbogus_key = 1\n", &err) == -1);
	test_assert(err != NULL && strstr(err, "t.conf:3:") != NULL &&
	    strstr(err, "bogus_key") != NULL);
	free(err);
	test_assert(load(cfg, "hostname = a\nno equals sign\n", &err) == -1);
	test_assert(err != NULL && strstr(err, "t.conf:2:") != NULL);
	free(err);
	test_assert(load(cfg, "message_size_limit = 12k\n", &err) == -1);
	test_assert(err != NULL && strstr(err, ":1:") != NULL);
	free(err);
	test_assert(load(cfg, "message_size_limit = -1\n", &err) == -1);
	free(err);
	test_assert(load(cfg, "allow_plaintext_auth = maybe\n", &err) == -1);
	free(err);
	test_assert(load(cfg, "log_level = loud\n", &err) == -1);
	free(err);
	test_assert(load(cfg, " = value\n", &err) == -1);
	free(err);
	test_assert(load(cfg, "smtp_listen = 127.0.0.1\n", &err) == -1);
	free(err);
	test_assert(load(cfg, "smtp_listen = 127.0.0.1:70000\n", &err) == -1);
	free(err);
	{
		char text[] = "hostname = a\0b\n";

		err = NULL;
		test_assert(config_load_text(cfg, "t.conf", text,
		    sizeof(text) - 1, &err) == -1);
		free(err);
	}
	{
		size_t n = 10000;
		char *big = malloc(n + 20);

		memcpy(big, "hostname = ", 11);
		memset(big + 11, 'x', n);
		big[11 + n] = '\0';
		test_assert(load(cfg, big, &err) == -1);
		free(err);
		free(big);
	}
	config_free(&cfg);
	test_end();
}

static void
test_override(void)
{
	struct config *cfg = config_new();
	char *err = NULL;

	test_begin("config -o overrides");
	test_assert(config_override(cfg, "workers=4", &err) == 0);
	test_assert(config_get_uint(cfg, "workers") == 4);
	test_assert(config_override(cfg, "query_quota=", &err) == 0);
	test_assert_streq(config_get(cfg, "query_quota"), "");
	test_assert(config_override(cfg, "nosuchkey=1", &err) == -1);
	test_assert(err != NULL && strstr(err, "nosuchkey") != NULL);
	free(err);
	test_assert(config_override(cfg, "noequals", &err) == -1);
	free(err);
	config_free(&cfg);
	test_end();
}

static void
test_listen(void)
{
	struct config_listen *l = NULL;
	size_t n = 0;
	char *err = NULL;

	test_begin("config listener lists");
	test_assert(config_parse_listen("127.0.0.1:25, [::1]:2525,:587", &l,
	    &n, &err) == 0);
	test_assert(n == 3);
	if (n == 3) {
		test_assert_streq(l[0].host, "127.0.0.1");
		test_assert(l[0].port == 25);
		test_assert_streq(l[1].host, "::1");
		test_assert(l[1].port == 2525);
		test_assert_streq(l[2].host, "");
		test_assert(l[2].port == 587);
	}
	config_listen_free(&l, n);
	test_assert(config_parse_listen("", &l, &n, &err) == 0 && n == 0);
	test_assert(config_parse_listen("host:0", &l, &n, &err) == -1);
	free(err);
	test_assert(config_parse_listen("host:x1", &l, &n, &err) == -1);
	free(err);
	test_assert(config_parse_listen("::1:25", &l, &n, &err) == -1);
	free(err);
	test_end();
}

static void
test_locate(void)
{
	char path[512];
	FILE *fp;

	test_begin("config locate: -c, $PETREL_CONF, ./petrel.conf");
	test_assert_streq(config_locate("/x/explicit.conf"), "/x/explicit.conf");
	setenv("PETREL_CONF", "/x/env.conf", 1);
	test_assert_streq(config_locate(NULL), "/x/env.conf");
	unsetenv("PETREL_CONF");
	snprintf(path, sizeof(path), "%s", test_tmpdir());
	test_assert(chdir(path) == 0);
	fp = fopen("petrel.conf", "w");
	test_assert(fp != NULL);
	if (fp != NULL)
		fclose(fp);
	test_assert_streq(config_locate(NULL), "petrel.conf");
	test_end();
}

static void
test_namespace_prefix(void)
{
	struct config *cfg = config_new();
	char *err;

	test_begin("config imap_namespace_prefix: \"\" or INBOX.");
	test_assert_streq(config_get(cfg, "imap_namespace_prefix"), "");
	test_assert(load(cfg, "imap_namespace_prefix = INBOX.\n", &err) == 0);
	test_assert_streq(config_get(cfg, "imap_namespace_prefix"), "INBOX.");
	test_assert(load(cfg, "imap_namespace_prefix = \"\"\n", &err) == 0);
	test_assert_streq(config_get(cfg, "imap_namespace_prefix"), "");
	test_assert(config_override(cfg, "imap_namespace_prefix=INBOX.",
	    &err) == 0);
	test_assert(config_override(cfg, "imap_namespace_prefix=", &err) == 0);
	test_assert_streq(config_get(cfg, "imap_namespace_prefix"), "");
	test_assert(load(cfg, "imap_namespace_prefix = INBOX\n", &err) == -1);
	test_assert(err != NULL && strstr(err, "t.conf:1:") != NULL &&
	    strstr(err, "imap_namespace_prefix") != NULL);
	free(err);
	test_assert(load(cfg, "imap_namespace_prefix = inbox.\n", &err) == -1);
	free(err);
	test_assert(load(cfg, "imap_namespace_prefix = Mail/\n", &err) == -1);
	free(err);
	config_free(&cfg);
	test_end();
}

/* Every key carries its help text, and its default and the value petrel
 * init writes are values the key accepts: petrel help and petrel.conf(5)
 * are made from the table alone. */
static void
test_key_table(void)
{
	char buf[256];

	test_begin("key table: help for every key, defaults that validate");
	for (size_t i = 0; i < config_key_count(); i++) {
		const char *k = config_key_name(i), *help = config_key_help(i);
		struct config *cfg = config_new();
		char *err = NULL;

		test_assert(help != NULL && strlen(help) > 10 &&
		    help[strlen(help) - 1] == '.');
		test_assert(config_key_syntax(i, buf, sizeof(buf)) != NULL);
		test_assert(config_key_find(k) == (int)i);
		test_assert(config_set(cfg, k, config_key_default(i), &err) == 0);
		free(err);
		err = NULL;
		if (config_key_init(i) != NULL)
			test_assert(config_set(cfg, k, config_key_init(i),
			    &err) == 0);
		free(err);
		config_free(&cfg);
	}
	test_assert(config_key_find("no_such_key") == -1);
	test_assert(config_key_help(config_key_count()) == NULL);
	/* a listener added later is off unless written */
	test_assert(config_key_find("http_listen") >= 0);
	test_assert_streq(config_key_default((size_t)config_key_find(
	    "http_listen")), "");
	test_assert_streq(config_key_init((size_t)config_key_find(
	    "http_listen")), "127.0.0.1:8080");
	test_end();
}

static void
test_schema_presets(void)
{
	struct config *cfg = config_new();
	const char *pfx_user = config_get(NULL, "query_user");
	char *err;

	test_begin("config schema: presets of query_*, explicit keys win");
	test_assert_streq(config_get(cfg, "schema"), "postfix-howto");
	test_assert_streq(config_get(cfg, "query_user"), "SELECT id, address, "
	    "crypt, name, uid, gid, home, maildir FROM users WHERE address = "
	    ":address");
	test_assert_streq(config_preset("postfix-howto", "query_user"),
	    pfx_user);
	test_assert(load(cfg, "schema = exim-howto\n", &err) == 0);
	test_assert_streq(config_get(cfg, "query_user"), "SELECT id, id, "
	    "crypt, name, uid, gid, home, maildir FROM users WHERE id = "
	    ":address");
	test_assert_streq(config_get(cfg, "query_alias"), "");
	test_assert_streq(config_get(cfg, "query_user"),
	    config_preset("exim-howto", "query_user"));
	/* keys without a preset keep their one default */
	test_assert_streq(config_get(cfg, "mail_root"),
	    config_preset("exim-howto", "mail_root"));
	test_assert(load(cfg, "query_user = SELECT 1\n", &err) == 0);
	test_assert_streq(config_get(cfg, "query_user"), "SELECT 1");
	test_assert(config_override(cfg, "schema=postfixadmin", &err) == 0);
	test_assert_streq(config_get(cfg, "query_user"), "SELECT 1");
	test_assert(strstr(config_get(cfg, "query_login"), "FROM mailbox") !=
	    NULL);
	test_assert(load(cfg, "schema = vpopmail\n", &err) == -1);
	test_assert(err != NULL && strstr(err, "t.conf:1:") != NULL);
	free(err);
	test_assert(config_preset("exim-howto", "no_such_key") == NULL);
	config_free(&cfg);
	test_end();
}

/* Every key a release has had (lib/config/config.c's history). A key is
 * never dropped from the table nor renamed without an entry among the
 * retired keys, which tells a file written for it what to write instead.
 * Keys are added here once a release has them. */
static const char *const released_keys[] = {
	"allow_plaintext_auth", "auth_cache_ttl", "auth_fail_delay",
	"auth_lockout_time", "auth_max_failures_per_ip",
	"auth_max_failures_per_user", "auth_user", "catchall_order",
	"database", "database_password_file", "dkim_dir", "dkim_verify",
	"dmarc_policy", "dns_resolver", "group", "hostname", "http_listen",
	"http_max_connections", "http_max_connections_per_ip",
	"http_timeout", "https_listen", "https_max_connections",
	"https_max_connections_per_ip", "imap_listen",
	"imap_max_connections", "imap_max_connections_per_ip",
	"imap_namespace_prefix", "imap_timeout", "imaps_listen",
	"imaps_max_connections", "imaps_max_connections_per_ip",
	"journald_socket", "lmtp_listen", "lmtp_max_connections",
	"lmtp_max_connections_per_ip", "local_domain", "log_level",
	"log_target", "login_timeout", "mail_root", "managesieve_listen",
	"managesieve_max_connections", "managesieve_max_connections_per_ip",
	"managesieve_timeout", "message_size_limit", "milter_default_action",
	"milter_timeout", "milters", "mta_sts_max_age", "mta_sts_mode",
	"pop3_listen", "pop3_max_connections", "pop3_max_connections_per_ip",
	"pop3_timeout", "pop3_uidl_format", "pop3s_listen",
	"pop3s_max_connections", "pop3s_max_connections_per_ip",
	"query_alias", "query_domain", "query_login", "query_quota",
	"query_user", "queue_concurrency", "queue_destination_concurrency",
	"queue_dir", "queue_lifetime", "queue_retry_max", "queue_retry_min",
	"queue_scan_interval", "recipient_delimiter", "relayhost", "schema",
	"sieve_after", "sieve_before", "sieve_dir", "sieve_max_redirects",
	"smtp_data_timeout", "smtp_helo_required", "smtp_listen",
	"smtp_max_connections", "smtp_max_connections_per_ip",
	"smtp_strict_envelopes", "smtp_timeout", "spf_policy",
	"submission_listen", "submission_max_connections",
	"submission_max_connections_per_ip", "submissions_listen",
	"submissions_max_connections", "submissions_max_connections_per_ip",
	"syslog_socket", "tls_cert", "tls_key", "tls_profile", "tls_sni_dir",
	"user", "worker_threads", "workers",
};

static void
test_released_keys(void)
{
	test_begin("config keys of every release: current or retired");
	for (size_t i = 0; i < sizeof(released_keys) /
	    sizeof(released_keys[0]); i++) {
		const char *k = released_keys[i];

		if (config_key_find(k) < 0 && config_retired_find(k) == NULL)
			printf("key %s was dropped without a retired entry\n",
			    k);
		test_assert(config_key_find(k) >= 0 ||
		    config_retired_find(k) != NULL);
	}
	test_end();
}

static void
test_retired_keys(void)
{
	/* test-only entries: the built-in table has none so far */
	static const struct config_retired extra[] = {
		{ "smtp_port", "smtp_listen", NULL },
		{ "spool_dir", NULL, "the queue lives in queue_dir" },
	};
	struct config *cfg = config_new();
	char *err, *problems = NULL, path[] = "/tmp/petrel-test-retired-XXXXXX";
	const char *text = "hostname = a.test\nsmtp_port = 127.0.0.1:25\n"
	    "no_such_key = 1\nworkers = many\n\nspool_dir = /var/spool\n"
	    "workers = 3\n";
	int fd;

	test_begin("config retired keys: named with what to write instead");
	/* the built-in table: no current key is retired, every rename
	 * points at a current key, every removal says why */
	for (size_t i = 0; i < config_retired_count(); i++) {
		const struct config_retired *r = config_retired_get(i);

		test_assert(config_key_find(r->name) < 0);
		test_assert(r->to == NULL || config_key_find(r->to) >= 0);
		test_assert(r->to != NULL || (r->why != NULL && r->why[0]));
	}
	test_assert(config_retired_get(config_retired_count()) == NULL);
	test_assert(config_retired_find("smtp_port") == NULL);
	test_assert(load(cfg, "smtp_port = 127.0.0.1:25\n", &err) == -1);
	test_assert_streq(err, "t.conf:1: unknown configuration key "
	    "'smtp_port'");
	free(err);

	config_retired_extra(extra, 2);
	test_assert(config_retired_find("smtp_port") == &extra[0]);
	test_assert(load(cfg, "\nsmtp_port = 127.0.0.1:25\n", &err) == -1);
	test_assert_streq(err, "t.conf:2: smtp_port was renamed to "
	    "smtp_listen; write smtp_listen = 127.0.0.1:25");
	free(err);
	test_assert(load(cfg, "spool_dir = /x\n", &err) == -1);
	test_assert_streq(err, "t.conf:1: spool_dir was removed: the queue "
	    "lives in queue_dir");
	free(err);
	test_assert(config_override(cfg, "smtp_port=[::1]:25", &err) == -1);
	test_assert_streq(err, "-o: smtp_port was renamed to smtp_listen; "
	    "write smtp_listen = [::1]:25");
	free(err);

	/* checking a whole file: every refused line, the rest applied */
	fd = mkstemp(path);
	test_assert(fd >= 0);
	test_assert(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	test_assert(config_load_file(cfg, path, &err) == -1);
	test_assert(strstr(err, ":2: smtp_port was renamed") != NULL);
	free(err);
	config_free(&cfg);
	cfg = config_new();
	err = NULL;
	test_assert(config_check_file(cfg, path, &problems, &err) == 4);
	test_assert(err == NULL);
	test_assert(problems != NULL && strstr(problems, ":2: smtp_port was "
	    "renamed to smtp_listen; write smtp_listen = 127.0.0.1:25\n") !=
	    NULL);
	test_assert(strstr(problems, ":3: unknown configuration key "
	    "'no_such_key'\n") != NULL);
	test_assert(strstr(problems, ":4: workers must be") != NULL);
	test_assert(strstr(problems, ":6: spool_dir was removed: the queue "
	    "lives in queue_dir\n") != NULL);
	test_assert_streq(config_get(cfg, "hostname"), "a.test");
	test_assert(config_get_uint(cfg, "workers") == 3);
	free(problems);
	/* a clean file: none */
	config_free(&cfg);
	cfg = config_new();
	fd = open(path, O_WRONLY | O_TRUNC);
	test_assert(fd >= 0 && write(fd, "workers = 2\n", 12) == 12);
	close(fd);
	test_assert(config_check_file(cfg, path, &problems, &err) == 0);
	test_assert_streq(problems, "");
	free(problems);
	/* an unreadable file is an error, not a count */
	unlink(path);
	test_assert(config_check_file(cfg, path, &problems, &err) == -1);
	test_assert(err != NULL && strstr(err, "cannot open") != NULL);
	free(err);
	config_retired_extra(NULL, 0);
	test_assert(config_retired_find("smtp_port") == NULL);
	config_free(&cfg);
	test_end();
}

int
main(void)
{
	test_key_table();
	test_parse();
	test_errors();
	test_override();
	test_listen();
	test_locate();
	test_namespace_prefix();
	test_schema_presets();
	test_retired_keys();
	test_released_keys();
	return test_done();
}
