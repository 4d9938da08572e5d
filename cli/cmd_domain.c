/*
 * cmd_domain.c: petrel domain add|del|list — the transport table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "lib/base/addr.h"
#include "lib/base/alloc.h"
#include "lib/dir/dir.h"
#include "lib/dir/schema.h"
#include "lib/route/route.h"

/* Transport values of SPEC section 1 (Postfix transport(5) syntax). */
static bool
transport_valid(const char *t)
{
	/* what serve runs (maildrop: is read for old databases, not
	 * written) */
	switch (route_transport_kind(t)) {
	case TRANSPORT_LOCAL:
	case TRANSPORT_RELAY:
	case TRANSPORT_LMTP:
	case TRANSPORT_ERROR:
	case TRANSPORT_DISCARD:
		return strchr(t, ':') != NULL && strpbrk(t, "\r\n") == NULL;
	default:
		return false;
	}
}

static char *
normalize_domain(const char *arg)
{
	char *d;

	cli_check_text("the domain", arg);
	d = xstrdup(arg);
	str_lower(d);
	if (!addr_domain_valid(d))
		cli_die("'%s' is not a valid domain name", arg);
	return d;
}

static int
domain_add(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "transport=", NULL };
	struct cli_args a;
	const char *transport;
	char *domain;
	struct dir_rows *rows;

	cli_schema_writable(cli, "petrel domain add");
	cli_parse(argc, argv, allowed, 1, 1,
	    "petrel domain add DOMAIN [--transport T]", &a);
	domain = normalize_domain(a.pos[0]);
	transport = cli_opt(&a, "transport");
	if (transport == NULL)
		transport = "virtual:";
	if (!transport_valid(transport))
		cli_die("bad transport '%s' (virtual:, local:, "
		    "smtp:[host]:port, error:text, discard:)", transport);
	rows = cli_query(cli, "domain add",
	    "SELECT domain FROM transport WHERE domain = :domain",
	    (const char *[]){ "domain", domain, NULL });
	if (rows->nrows > 0)
		cli_die("domain %s already exists", domain);
	dir_rows_free(&rows);
	rows = cli_query(cli, "domain add",
	    "INSERT INTO transport (domain, transport) VALUES (:domain, :transport)",
	    (const char *[]){ "domain", domain, "transport", transport, NULL });
	dir_rows_free(&rows);
	printf("added domain %s (%s)\n", domain, transport);
	free(domain);
	return 0;
}

static int
domain_del(struct petrel_ctx *cli, int argc, char **argv)
{
	struct cli_args a;
	struct dir_rows *rows;
	char *domain, *like;
	unsigned long users, aliases;

	cli_schema_writable(cli, "petrel domain del");
	cli_parse(argc, argv, NULL, 1, 1, "petrel domain del DOMAIN", &a);
	domain = normalize_domain(a.pos[0]);
	like = cli_like_domain(domain);
	rows = cli_query(cli, "domain del",
	    "SELECT count(*) FROM users WHERE address LIKE :like ESCAPE '!'",
	    (const char *[]){ "like", like, NULL });
	users = strtoul(dir_rows_get(rows, 0, 0) ?: "0", NULL, 10);
	dir_rows_free(&rows);
	rows = cli_query(cli, "domain del",
	    "SELECT count(*) FROM virtual WHERE address LIKE :like ESCAPE '!' "
	    "OR address = :domain",
	    (const char *[]){ "like", like, "domain", domain, NULL });
	aliases = strtoul(dir_rows_get(rows, 0, 0) ?: "0", NULL, 10);
	dir_rows_free(&rows);
	if (users > 0 || aliases > 0)
		cli_die("domain %s still has %lu user(s) and %lu alias(es); "
		    "delete them first", domain, users, aliases);
	rows = cli_query(cli, "domain del",
	    "DELETE FROM transport WHERE domain = :domain",
	    (const char *[]){ "domain", domain, NULL });
	if (rows->affected == 0)
		cli_die("domain %s is not hosted here", domain);
	dir_rows_free(&rows);
	printf("deleted domain %s\n", domain);
	free(like);
	free(domain);
	return 0;
}

static int
domain_list(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "json", NULL };
	struct cli_args a;
	struct dir_rows *rows;
	str_t out = STR_INIT;
	const struct dir_schema *sc;
	bool json;

	cli_parse(argc, argv, allowed, 0, 0, "petrel domain list [--json]", &a);
	json = cli_flag(&a, "json");
	sc = cli_schema(cli);
	if (sc->writable) {
		rows = cli_query(cli, "domain list",
		    "SELECT domain, transport FROM transport ORDER BY domain",
		    NULL);
	} else {
		char *sql = xasprintf("SELECT domain, transport FROM (%s) d "
		    "ORDER BY domain", sc->sql_domain_list);

		rows = cli_query(cli, "domain list", sql, NULL);
		free(sql);
	}
	if (json)
		str_append_c(&out, '[');
	for (size_t i = 0; i < rows->nrows; i++) {
		const char *d = dir_rows_get(rows, i, 0) ?: "";
		const char *t = dir_rows_get(rows, i, 1) ?: "";

		if (json) {
			str_append(&out, i ? ",{\"domain\":" : "{\"domain\":");
			cli_json_str(&out, d);
			str_append(&out, ",\"transport\":");
			cli_json_str(&out, t);
			str_append_c(&out, '}');
		} else {
			str_printf(&out, "%s\t%s\n", d, t);
		}
	}
	if (json)
		str_append(&out, "]\n");
	cli_print(&out);
	str_free(&out);
	dir_rows_free(&rows);
	return 0;
}

int
cmd_domain(struct petrel_ctx *cli, int argc, char **argv)
{
	if (argc < 1)
		cli_die("usage: petrel domain add|del|list [DOMAIN]");
	if (strcmp(argv[0], "add") == 0)
		return domain_add(cli, argc - 1, argv + 1);
	if (strcmp(argv[0], "del") == 0)
		return domain_del(cli, argc - 1, argv + 1);
	if (strcmp(argv[0], "list") == 0)
		return domain_list(cli, argc - 1, argv + 1);
	cli_die("unknown domain subcommand '%s' (add, del, list)", argv[0]);
}
