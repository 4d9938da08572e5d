/*
 * schema.c: the database layouts of the `schema` setting (schema.h).
 *
 * The SQL here is fixed text (no value is ever put into it); it reads
 * whole tables for check, migrate check and the admin listings.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/dir/dir.h"
#include "lib/dir/schema.h"

static const struct dir_schema postfix_howto = {
	.name = "postfix-howto",
	.tables = {
		{ "transport", { "domain", "transport", NULL } },
		{ "virtual", { "address", "goto", NULL } },
		{ "users", { "id", "address", "crypt", "clear", "name", "uid",
		    "gid", "home", "domain", "maildir", "imapok", "bool1",
		    "bool2", NULL } },
	},
	.sql_maildirs = "SELECT address, maildir FROM users ORDER BY address",
	.sql_transports = "SELECT domain, transport FROM transport",
	.sql_domains = "SELECT domain FROM transport ORDER BY domain",
	.sql_catchalls = "SELECT address FROM virtual WHERE address LIKE '@%'",
	.writable = true,
};

static const struct dir_schema exim_howto = {
	.name = "exim-howto",
	.tables = {
		{ "users", { "id", "crypt", "clear", "name", "uid", "gid",
		    "home", "maildir", NULL } },
		{ "domains", { "domain", NULL } },
	},
	.sql_maildirs = "SELECT id, maildir FROM users ORDER BY id",
	.sql_transports = NULL,
	.sql_domains = "SELECT domain FROM domains ORDER BY domain",
	.sql_catchalls = NULL,
	.writable = false,
	.sql_users = "SELECT id AS address, id, name, uid, gid, home, "
	    "maildir, 1 AS imapok, 1 AS bool1, 1 AS bool2, quota FROM users",
	.sql_domain_list = "SELECT domain, 'virtual:' AS transport "
	    "FROM domains",
	.sql_aliases = NULL,
};

static const struct dir_schema postfixadmin = {
	.name = "postfixadmin",
	.tables = {
		{ "domain", { "domain", "transport", "backupmx", "active",
		    NULL } },
		{ "mailbox", { "username", "password", "name", "maildir",
		    "quota", "local_part", "domain", "active", NULL } },
		{ "alias", { "address", "goto", "domain", "active", NULL } },
		{ "alias_domain", { "alias_domain", "target_domain", "active",
		    NULL } },
	},
	.sql_maildirs = "SELECT username, maildir FROM mailbox "
	    "ORDER BY username",
	/* PostfixAdmin keeps a row ALL (its superadmin's "domain") */
	.sql_transports = "SELECT domain, transport FROM domain "
	    "WHERE active = 1 AND backupmx = 0 AND domain <> 'ALL'",
	.sql_domains = "SELECT domain FROM domain WHERE active = 1 "
	    "AND backupmx = 0 AND domain <> 'ALL' ORDER BY domain",
	.sql_catchalls = "SELECT address FROM alias WHERE address LIKE '@%' "
	    "AND active = 1",
	.writable = false,
	.sql_users = "SELECT username AS address, username AS id, name, "
	    "NULL AS uid, NULL AS gid, '' AS home, maildir, active AS imapok, "
	    "1 AS bool1, 1 AS bool2, quota FROM mailbox",
	.sql_domain_list = "SELECT domain, transport FROM domain "
	    "WHERE active = 1 AND backupmx = 0 AND domain <> 'ALL'",
	.sql_aliases = "SELECT address, goto FROM alias WHERE active = 1",
};

static const struct dir_schema *const all[] = {
	&postfix_howto, &exim_howto, &postfixadmin, NULL,
};

const struct dir_schema *
dir_schema_get(const char *name)
{
	for (size_t i = 0; all[i] != NULL; i++)
		if (strcmp(all[i]->name, name) == 0)
			return all[i];
	return NULL;
}

const struct dir_schema *const *
dir_schema_all(void)
{
	return all;
}

/* SELECT the table, then each column, reading no row. */
static int
table_present(struct dir *dir, const char *table,
    const char *const *columns, const char **error_r)
{
	char *sql = xasprintf("SELECT * FROM %s LIMIT 0", table);
	int r = dir_query(dir, sql, NULL, 0, NULL, error_r);

	free(sql);
	for (; r == DIR_OK && *columns != NULL; columns++) {
		sql = xasprintf("SELECT %s FROM %s LIMIT 0", *columns, table);
		r = dir_query(dir, sql, NULL, 0, NULL, error_r);
		free(sql);
	}
	if (r == DIR_TEMPFAIL)
		return r;
	return r == DIR_OK ? DIR_OK : DIR_NOTFOUND;
}

int
dir_schema_present(struct dir *dir, const struct dir_schema *schema,
    const char **error_r)
{
	int r = DIR_OK;

	for (size_t t = 0; r == DIR_OK && t < SCHEMA_TABLES_MAX &&
	    schema->tables[t].table != NULL; t++)
		r = table_present(dir, schema->tables[t].table,
		    schema->tables[t].columns, error_r);
	return r;
}

int
dir_schema_detect(struct dir *dir, const struct dir_schema **schema_r,
    const char **error_r)
{
	for (size_t i = 0; all[i] != NULL; i++) {
		int r = dir_schema_present(dir, all[i], error_r);

		if (r == DIR_TEMPFAIL)
			return r;
		if (r == DIR_OK) {
			*schema_r = all[i];
			return DIR_OK;
		}
	}
	return DIR_NOTFOUND;
}
