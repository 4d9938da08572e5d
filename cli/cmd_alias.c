/*
 * cmd_alias.c: petrel alias add|del|list — the virtual table.
 *
 * A source is a full address, "@domain" (catch-all) or a bare hosted
 * domain (a Postfix-style virtual domain marker). Targets are full
 * addresses or bare local user names, stored comma-separated in one row
 * per source as in the howto; adding to an existing source merges.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "lib/base/addr.h"
#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/dir/dir.h"
#include "lib/dir/schema.h"

/* Normalize a source; domain_r gets its domain. */
static char *
alias_source(const char *arg, char **domain_r)
{
	char *local, *domain;

	cli_check_text("the alias address", arg);
	if (arg[0] == '@') {
		if (addr_split_catchall(arg, &domain) < 0)
			cli_die("'%s' is not a valid catch-all (@domain)", arg);
		*domain_r = domain;
		return xasprintf("@%s", domain);
	}
	if (strchr(arg, '@') == NULL) {
		domain = xstrdup(arg);
		str_lower(domain);
		if (!addr_domain_valid(domain))
			cli_die("'%s' is not a valid address or domain", arg);
		*domain_r = domain;
		return xstrdup(domain);
	}
	if (addr_split(arg, &local, &domain) < 0)
		cli_die("'%s' is not a valid mail address", arg);
	*domain_r = domain;
	{
		char *a = xasprintf("%s@%s", local, domain);

		free(local);
		return a;
	}
}

/* Append the targets in list (comma-separated) to out, skipping any
 * already there. */
static void
merge_targets(str_t *out, const char *list, bool validate, size_t *count)
{
	char *copy = xstrdup(list), *save = NULL, *t;

	for (t = strtok_r(copy, ",", &save); t != NULL;
	    t = strtok_r(NULL, ",", &save)) {
		char *target = str_trim(t), *local, *domain;
		bool dup = false;

		if (*target == '\0')
			continue;
		if (validate) {
			cli_check_text("an alias target", target);
			if (strchr(target, '@') != NULL) {
				if (addr_split(target, &local, &domain) < 0)
					cli_die("target '%s' is not a valid "
					    "mail address", target);
				free(local);
				free(domain);
			} else if (!addr_local_valid(target)) {
				cli_die("target '%s' is not a valid address "
				    "or local user name", target);
			}
		}
		/* Compare against what is there, case-insensitively. */
		{
			char *have = xstrdup(str_c(out)), *s2 = NULL, *h;

			for (h = strtok_r(have, ",", &s2); h != NULL;
			    h = strtok_r(NULL, ",", &s2))
				if (strcasecmp(str_trim(h), target) == 0)
					dup = true;
			free(have);
		}
		if (dup)
			continue;
		if (++*count > ALIAS_TARGETS_MAX)
			cli_die("more than %d targets", ALIAS_TARGETS_MAX);
		if (out->len > 0)
			str_append_c(out, ',');
		str_append(out, target);
	}
	free(copy);
}

static int
alias_add(struct petrel_ctx *cli, int argc, char **argv)
{
	struct cli_args a;
	struct dir_rows *rows;
	char *source, *domain;
	str_t targets = STR_INIT;
	size_t count = 0;
	bool exists;

	cli_schema_writable(cli, "petrel alias add");
	cli_parse(argc, argv, NULL, 2, 2,
	    "petrel alias add ADDRESS TARGET[,TARGET...]", &a);
	source = alias_source(a.pos[0], &domain);
	if (!cli_domain_hosted(cli, domain))
		cli_die("domain %s is not hosted here (petrel domain add %s)",
		    domain, domain);
	rows = cli_query(cli, "alias add",
	    "SELECT goto FROM virtual WHERE address = :address",
	    (const char *[]){ "address", source, NULL });
	exists = rows->nrows > 0;
	if (exists)
		merge_targets(&targets, dir_rows_get(rows, 0, 0) ?: "", false,
		    &count);
	dir_rows_free(&rows);
	merge_targets(&targets, a.pos[1], true, &count);
	if (targets.len == 0)
		cli_die("no target given");
	rows = cli_query(cli, "alias add", exists ?
	    "UPDATE virtual SET goto = :goto WHERE address = :address" :
	    "INSERT INTO virtual (address, goto) VALUES (:address, :goto)",
	    (const char *[]){ "address", source, "goto", str_c(&targets),
	    NULL });
	dir_rows_free(&rows);
	printf("%s %s -> %s\n", exists ? "updated alias" : "added alias",
	    source, str_c(&targets));
	str_free(&targets);
	free(source);
	free(domain);
	return 0;
}

static int
alias_del(struct petrel_ctx *cli, int argc, char **argv)
{
	struct cli_args a;
	struct dir_rows *rows;
	char *source, *domain;

	cli_schema_writable(cli, "petrel alias del");
	cli_parse(argc, argv, NULL, 1, 1, "petrel alias del ADDRESS", &a);
	source = alias_source(a.pos[0], &domain);
	rows = cli_query(cli, "alias del",
	    "DELETE FROM virtual WHERE address = :address",
	    (const char *[]){ "address", source, NULL });
	if (rows->affected == 0)
		cli_die("no such alias %s", source);
	dir_rows_free(&rows);
	printf("deleted alias %s\n", source);
	free(source);
	free(domain);
	return 0;
}

static void
json_targets(str_t *out, const char *list)
{
	char *copy = xstrdup(list), *save = NULL, *t;
	bool first = true;

	str_append_c(out, '[');
	for (t = strtok_r(copy, ",", &save); t != NULL;
	    t = strtok_r(NULL, ",", &save)) {
		char *target = str_trim(t);

		if (*target == '\0')
			continue;
		if (!first)
			str_append_c(out, ',');
		cli_json_str(out, target);
		first = false;
	}
	str_append_c(out, ']');
	free(copy);
}

static int
alias_list(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "json", NULL };
	struct cli_args a;
	struct dir_rows *rows;
	str_t out = STR_INIT;
	const struct dir_schema *sc;
	char *domain = NULL, *like = NULL;
	bool json;

	cli_parse(argc, argv, allowed, 0, 1,
	    "petrel alias list [DOMAIN] [--json]", &a);
	json = cli_flag(&a, "json");
	sc = cli_schema(cli);
	if (a.npos == 1) {
		domain = xstrdup(a.pos[0]);
		str_lower(domain);
		if (!addr_domain_valid(domain))
			cli_die("'%s' is not a valid domain name", a.pos[0]);
		like = cli_like_domain(domain);
	}
	if (!sc->writable && sc->sql_aliases == NULL) {
		/* the layout has no alias table: an empty list */
		rows = xmalloc(sizeof(*rows));
		rows->ncols = 2;
	} else {
		char *from = sc->writable ? xstrdup("virtual") :
		    xasprintf("(%s) a", sc->sql_aliases);
		char *sql = xasprintf("SELECT address, goto FROM %s%s ORDER BY "
		    "address", from, domain == NULL ? "" : " WHERE address "
		    "LIKE :like ESCAPE '!' OR address = :domain");

		rows = cli_query(cli, "alias list", sql, domain == NULL ?
		    NULL : (const char *[]){ "like", like, "domain", domain,
		    NULL });
		free(sql);
		free(from);
	}
	if (json)
		str_append_c(&out, '[');
	for (size_t i = 0; i < rows->nrows; i++) {
		const char *src = dir_rows_get(rows, i, 0) ?: "";
		const char *dst = dir_rows_get(rows, i, 1) ?: "";

		if (json) {
			str_append(&out, i ? ",{\"address\":" : "{\"address\":");
			cli_json_str(&out, src);
			str_append(&out, ",\"goto\":");
			json_targets(&out, dst);
			str_append_c(&out, '}');
		} else {
			str_printf(&out, "%s\t%s\n", src, dst);
		}
	}
	if (json)
		str_append(&out, "]\n");
	cli_print(&out);
	str_free(&out);
	dir_rows_free(&rows);
	free(domain);
	free(like);
	return 0;
}

int
cmd_alias(struct petrel_ctx *cli, int argc, char **argv)
{
	if (argc < 1)
		cli_die("usage: petrel alias add|del|list ...");
	if (strcmp(argv[0], "add") == 0)
		return alias_add(cli, argc - 1, argv + 1);
	if (strcmp(argv[0], "del") == 0)
		return alias_del(cli, argc - 1, argv + 1);
	if (strcmp(argv[0], "list") == 0)
		return alias_list(cli, argc - 1, argv + 1);
	cli_die("unknown alias subcommand '%s' (add, del, list)", argv[0]);
}
