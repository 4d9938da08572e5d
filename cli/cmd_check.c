/*
 * cmd_check.c: petrel check — validate the configuration, the directory
 * (tables, columns, every configured query), directories (every user's
 * maildir writable by the workers' account) and certificate.
 * Every problem is reported on its own line in plain words; exit 1 if any.
 */
#include <errno.h>
#include <stdarg.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unbound.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/base/alloc.h"
#include "lib/config/config.h"
#include "lib/dir/dir.h"
#include "lib/milter/milter.h"
#include "lib/trust/dnsbl.h"
#include "lib/trust/domain_policy.h"
#include "lib/trust/dnsq.h"
#include "lib/trust/greylist.h"
#include "lib/trust/srs.h"
#include "lib/dir/schema.h"
#include "lib/route/route.h"
#include "lib/route/writable.h"
#include "lib/tls/tls.h"

static unsigned problems;

__attribute__((format(printf, 1, 2)))
static void
problem(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "petrel: check: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	problems++;
}

/* The tables and columns of the configured layout (schema). */
static bool
check_schema(struct petrel_ctx *cli, struct dir *dir)
{
	const struct dir_schema *sc = dir_schema_get(config_get(cli->cfg,
	    "schema"));
	const char *err;
	char *sql;
	bool ok = true;
	int r;

	for (size_t t = 0; t < SCHEMA_TABLES_MAX && sc->tables[t].table;
	    t++) {
		const char *table = sc->tables[t].table;

		sql = xasprintf("SELECT * FROM %s LIMIT 0", table);
		r = dir_query(dir, sql, NULL, 0, NULL, &err);
		free(sql);
		if (r == DIR_TEMPFAIL) {
			problem("database unavailable: %s", err);
			return false;
		}
		if (r < 0) {
			problem("table %s is missing (%s)", table, err);
			ok = false;
			continue;
		}
		for (const char *const *c = sc->tables[t].columns; *c; c++) {
			sql = xasprintf("SELECT %s FROM %s LIMIT 0", *c, table);
			r = dir_query(dir, sql, NULL, 0, NULL, &err);
			free(sql);
			if (r < 0) {
				problem("table %s has no column %s", table,
				    *c);
				ok = false;
			}
		}
	}
	if (!ok) {
		const struct dir_schema *found = NULL;

		if (dir_schema_detect(dir, &found, &err) == DIR_OK &&
		    found != sc)
			problem("the database has the %s tables: set schema = "
			    "%s (petrel migrate check says what else)",
			    found->name, found->name);
	}
	if (strcmp(sc->name, "postfix-howto") == 0 && dir_has_quota(dir) &&
	    dir_query(dir, "SELECT quota FROM users LIMIT 0", NULL, 0, NULL,
	    &err) < 0)
		problem("table users has no column quota, but query_quota is "
		    "set (add the column with `petrel init`, or set "
		    "query_quota empty)");
	return ok;
}

static void
check_queries(struct petrel_ctx *cli, struct dir *dir)
{
	static const struct { const char *key; size_t mincols; } q[] = {
		{ "query_domain", 1 }, { "query_alias", 1 },
		{ "query_user", 8 }, { "query_login", 8 }, { "query_quota", 1 },
	};
	const struct dir_param params[] = {
		{ "address", "postmaster@petrel-check.invalid" },
		{ "local", "postmaster" },
		{ "domain", "petrel-check.invalid" },
		{ "login", "postmaster@petrel-check.invalid" },
	};
	struct dir_rows *rows;
	const char *err;
	int r;

	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		const char *sql = config_get(cli->cfg, q[i].key);

		if (sql[0] == '\0') {
			if (strcmp(q[i].key, "query_quota") != 0 &&
			    strcmp(q[i].key, "query_alias") != 0)
				problem("%s is empty", q[i].key);
			continue;
		}
		r = dir_query(dir, sql, params, 4, &rows, &err);
		if (r < 0) {
			problem("%s fails: %s", q[i].key, err);
			continue;
		}
		if (rows->ncols < q[i].mincols)
			problem("%s returns %zu column(s), needs %zu", q[i].key,
			    rows->ncols, q[i].mincols);
		dir_rows_free(&rows);
	}
}

/* Every transport value of the transport table: one petrel cannot run
 * would defer its domain's mail (451 4.3.5), so it is a problem here;
 * maildrop: is delivered as virtual: and said so. */
static void
check_transports(struct petrel_ctx *cli, struct dir *dir)
{
	const struct dir_schema *sc = dir_schema_get(config_get(cli->cfg,
	    "schema"));
	struct dir_rows *rows;
	const char *err;

	if (sc->sql_transports == NULL)
		return;
	if (dir_query(dir, sc->sql_transports, NULL, 0, &rows, &err) < 0)
		return;		/* check_schema said why */
	for (size_t i = 0; i < rows->nrows; i++) {
		const char *d = dir_rows_get(rows, i, 0);
		const char *t = dir_rows_get(rows, i, 1);

		if (d == NULL || t == NULL)
			continue;
		switch (route_transport_kind(t)) {
		case TRANSPORT_UNSUPPORTED:
			problem("domain %s has transport '%s', which petrel "
			    "cannot run: its mail would be deferred (use "
			    "virtual:, smtp:[host]:port, lmtp:[host]:port, "
			    "error: or discard:)",
			    d, t);
			break;
		case TRANSPORT_MAILDROP:
			printf("note: domain %s has transport '%s': mail is "
			    "delivered to the users' Maildirs as virtual: "
			    "would, without maildrop's filters\n", d, t);
			break;
		default:
			break;
		}
	}
	dir_rows_free(&rows);
}

static void
check_dir(const char *key, const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		problem("%s %s: %s", key, path, strerror(errno));
	else if (!S_ISDIR(st.st_mode))
		problem("%s %s is not a directory", key, path);
}

/* local_domain must be hosted, or every bare alias target is unknown. */
static void
check_local_domain(struct petrel_ctx *cli, struct dir *dir)
{
	const char *ld = config_get(cli->cfg, "local_domain"), *err;
	char *transport = NULL;
	int r;

	if (ld[0] == '\0')
		return;
	r = dir_lookup_domain(dir, ld, &transport, &err);
	if (r == DIR_NOTFOUND)
		r = dir_lookup_alias(dir, ld, &transport, &err);
	free(transport);
	if (r == DIR_NOTFOUND)
		problem("local_domain %s is not a hosted domain: bare names in "
		    "alias targets would be unknown", ld);
	else if (r < 0)
		problem("local_domain %s: %s", ld, err);
}

/* SRS (srs_secret set): the secret must load, and srs_domain (or the
 * hostname) should be a hosted domain, or bounces to its SRS addresses
 * may never reach this host: a warning. */
static void
check_srs(struct petrel_ctx *cli, struct dir *dir)
{
	const char *v = config_get(cli->cfg, "srs_secret"), *err;
	const char *d = config_get(cli->cfg, "srs_domain");
	char host[256], *secret, *transport = NULL;
	int r;

	if (v[0] == '\0')
		return;
	secret = srs_secret_load(v, &err);
	if (secret == NULL)
		problem("%s", err);
	free(secret);
	if (d[0] == '\0')
		d = config_get(cli->cfg, "hostname");
	if (d[0] == '\0') {
		memset(host, 0, sizeof(host));
		if (gethostname(host, sizeof(host) - 1) < 0)
			return;
		d = host;
	}
	r = dir_lookup_domain(dir, d, &transport, &err);
	if (r == DIR_NOTFOUND)
		r = dir_lookup_alias(dir, d, &transport, &err);
	free(transport);
	if (r == DIR_NOTFOUND)
		printf("warning: srs_domain %s is not a hosted domain: bounces "
		    "to its SRS addresses reach petrel only if its MX is this "
		    "host\n", d);
	else if (r < 0)
		problem("srs_domain %s: %s", d, err);
}

/* Every maildir the workers' account cannot write: each would defer its
 * user's mail (SPEC 6.1), so serve refuses to start on them. */
static void
check_maildirs(struct petrel_ctx *cli)
{
	struct writable_report rep;
	const char *user = config_get(cli->cfg, "user");
	char *err = NULL;

	if (writable_check(cli->cfg, &rep, &err) < 0) {
		problem("maildirs not checked: %s", err);
		free(err);
		return;
	}
	if (rep.skipped != NULL)
		problem("maildirs not checked: %s", rep.skipped);
	for (size_t i = 0; i < rep.npaths; i++)
		problem("maildir %s is not writable by %s", rep.paths[i],
		    geteuid() == 0 && user[0] != '\0' ? user :
		    "this account");
	if (rep.truncated)
		printf("petrel: check: maildirs of the first %u users checked, "
		    "the rest not\n", (unsigned)WRITABLE_USERS_MAX);
	writable_report_clear(&rep);
}

/* A database URL with several hosts (a cluster): each one's state. */
static void
check_hosts(struct dir *dir)
{
	size_t n = dir_hosts(dir);
	const char *name, *err;

	if (n < 2)
		return;
	for (size_t i = 0; i < n; i++) {
		if (dir_probe_host(dir, i, &name, &err) == DIR_OK)
			printf("database host %s: up\n", name);
		else
			problem("database host %s: down: %s", name, err);
	}
}

int
cmd_check(struct petrel_ctx *cli, int argc, char **argv)
{
	struct cli_args a;
	struct dir *dir = NULL;
	char *err;
	const char *cerr, *name;
	int days;

	cli_parse(argc, argv, NULL, 0, 0, "petrel check", &a);
	if (cli->conf_path == NULL)
		problem("no configuration file (tried $PETREL_CONF, "
		    "./petrel.conf, " PETREL_SYSCONFDIR "/petrel/petrel.conf); "
		    "using defaults");
	if (dir_password_file_load(config_get(cli->cfg,
	    "database_password_file"), &err) < 0) {
		problem("%s", err);
		free(err);
	}
	if (dir_open(config_get(cli->cfg, "database"), 0, &dir, &err) < 0) {
		problem("%s", err);
		free(err);
	} else {
		dir_set_queries(dir, cli->cfg);
		check_hosts(dir);
		if (dir_connect(dir, &cerr) < 0)
			problem("database unreachable: %s", cerr);
		else {
			if (check_schema(cli, dir))
				check_transports(cli, dir);
			check_queries(cli, dir);
			check_local_domain(cli, dir);
			check_srs(cli, dir);
		}
		dir_close(&dir);
		check_maildirs(cli);
	}
	check_dir("mail_root", config_get(cli->cfg, "mail_root"));
	check_dir("queue_dir", config_get(cli->cfg, "queue_dir"));
	if (access(config_get(cli->cfg, "mail_root"), W_OK) < 0 && geteuid() != 0)
		problem("mail_root %s is not writable",
		    config_get(cli->cfg, "mail_root"));
	if (tls_check_pair(config_get(cli->cfg, "tls_cert"),
	    config_get(cli->cfg, "tls_key"), &days, &cerr) < 0)
		problem("%s", cerr);
	else if (days < 0)
		problem("TLS certificate %s has expired",
		    config_get(cli->cfg, "tls_cert"));
	if (config_get(cli->cfg, "tls_sni_dir")[0] != '\0') {
		size_t nsni;

		if (tls_check_sni_dir(config_get(cli->cfg, "tls_sni_dir"),
		    &nsni, &days, &cerr) < 0)
			problem("%s", cerr);
		else if (nsni > 0 && days < 0)
			problem("a TLS certificate in %s has expired",
			    config_get(cli->cfg, "tls_sni_dir"));
	}
	if (config_get(cli->cfg, "proxy_tls_ca")[0] != '\0') {
		struct tls_client *tc = tls_client_new_verify(
		    config_get(cli->cfg, "proxy_tls_ca"), &cerr);

		if (tc == NULL)
			problem("proxy_tls_ca: %s", cerr);
		tls_client_free(&tc);
	}
	{
		struct milter_spec *specs;
		size_t n;

		if (milter_specs_parse(config_get(cli->cfg, "milters"), &specs,
		    &n, &cerr) < 0)
			problem("milters: %s", cerr);
		else
			milter_specs_free(specs, n);
	}
	{
		struct dnsbl_site *sites;
		size_t n;

		if (dnsbl_sites_parse(config_get(cli->cfg, "dnsbl_sites"),
		    &sites, &n, &cerr) < 0)
			problem("dnsbl_sites: %s", cerr);
		else
			dnsbl_sites_free(sites, n);
		if (dnsbl_sites_parse(config_get(cli->cfg, "rhsbl_sites"),
		    &sites, &n, &cerr) < 0)
			problem("rhsbl_sites: %s", cerr);
		else
			dnsbl_sites_free(sites, n);
	}
	{
		struct domain_policies *pol;
		char *perr = NULL;

		if (domain_policies_load(config_get(cli->cfg,
		    "domain_policy_file"), &pol, &perr) < 0) {
			problem("domain_policy_file: %s", perr);
			free(perr);
		} else {
			domain_policies_free(pol);
		}
	}
	{
		struct greylist_net *nets;
		size_t n;

		if (greylist_nets_parse(config_get(cli->cfg,
		    "greylist_whitelist"), &nets, &n, &cerr) < 0)
			problem("greylist_whitelist: %s", cerr);
		else
			free(nets);
	}
	{
		char *derr = NULL;
		struct ub_ctx *ub = dnsq_ctx_new(config_get(cli->cfg,
		    "dns_resolver"), &derr);

		if (ub == NULL) {
			problem("%s", derr);
			free(derr);
		} else {
			/* dane: the anchor the queue manager validates from
			 * (without it, the manager warns and goes on with
			 * opportunistic TLS only) */
			if (strcmp(config_get(cli->cfg, "dane"), "off") != 0 &&
			    dnsq_ctx_trust_anchor(ub, config_get(cli->cfg,
			    "dnssec_trust_anchor"), &derr) < 0) {
				problem("dane: dnssec_trust_anchor: %s", derr);
				free(derr);
			}
			ub_ctx_delete(ub);
		}
	}
	name = config_get(cli->cfg, "user");
	if (name[0] != '\0' && getpwnam(name) == NULL)
		problem("user %s does not exist", name);
	name = config_get(cli->cfg, "group");
	if (name[0] != '\0' && getgrnam(name) == NULL)
		problem("group %s does not exist", name);
	if (problems > 0) {
		fprintf(stderr, "petrel: check: %u problem(s) found\n", problems);
		return 1;
	}
	printf("%s: ok\n", cli->conf_path ? cli->conf_path : "(defaults)");
	return 0;
}
