#ifndef PETREL_DIR_SCHEMA_H
#define PETREL_DIR_SCHEMA_H
/*
 * The database layouts of the `schema` setting (postfix-howto,
 * exim-howto, postfixadmin): the tables and columns each has, and the
 * statements that read every row where a lookup query reads one (check's
 * walks, the admin listings). The per-row lookups are the query_* keys,
 * whose preset defaults live with the key table (lib/config).
 */
#include <stdbool.h>

#define SCHEMA_TABLES_MAX 4
#define SCHEMA_COLUMNS_MAX 16

struct dir_schema {
	const char *name;
	struct {
		const char *table;
		const char *columns[SCHEMA_COLUMNS_MAX];	/* NULL-ended */
	} tables[SCHEMA_TABLES_MAX];	/* table NULL: no more */
	/* address, maildir of every user, in a stable order; "LIMIT n" is
	 * appended by the caller */
	const char *sql_maildirs;
	/* domain, transport of every hosted domain; NULL: none kept */
	const char *sql_transports;
	/* the hosted domains, ordered */
	const char *sql_domains;
	/* the catch-all aliases (@domain); NULL: the layout has none */
	const char *sql_catchalls;
	/* whether the admin commands (user/alias/domain add, del) write
	 * this layout; when not, they refuse, and the listings read the
	 * three statements below (a derived table each) */
	bool writable;
	/* columns address, id, name, uid, gid, home, maildir, imapok,
	 * bool1, bool2, quota */
	const char *sql_users;
	/* columns domain, transport */
	const char *sql_domain_list;
	/* columns address, goto; NULL: the layout has no alias table */
	const char *sql_aliases;
};

/* The layout named so, or NULL. */
const struct dir_schema *dir_schema_get(const char *name);
/* All layouts, in the order the `schema` values are listed (NULL-ended). */
const struct dir_schema *const *dir_schema_all(void);

struct dir;
/* The first layout whose tables and columns the database has: DIR_OK
 * with *schema_r, DIR_NOTFOUND (none), DIR_TEMPFAIL with *error_r. */
int dir_schema_detect(struct dir *dir, const struct dir_schema **schema_r,
    const char **error_r);
/* Whether the database has the layout's tables and columns: DIR_OK,
 * DIR_NOTFOUND, DIR_TEMPFAIL with *error_r. */
int dir_schema_present(struct dir *dir, const struct dir_schema *schema,
    const char **error_r);

#endif
