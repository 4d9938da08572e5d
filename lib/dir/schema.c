/*
 * schema.c: the database layouts of the `schema` setting (schema.h).
 *
 * The SQL here is fixed text (no value is ever put into it); it reads
 * whole tables for check, migrate check and the admin listings.
 */
#include <stddef.h>
#include <string.h>

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
