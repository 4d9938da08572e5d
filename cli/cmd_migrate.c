/*
 * cmd_migrate.c: petrel migrate check — read the configuration, the
 * directory and a sample of the users' Maildirs (or the Maildirs named on
 * the command line), and say which settings keep the replaced stack's
 * behaviour (docs/migration.md, "petrel migrate check").
 *
 * It only reads: the tables' layout, a few counts, the files at the top
 * of each Maildir and its folders (their names and owners, never their
 * contents). Exit 0 when nothing needs changing, 2 when it names
 * settings or notes, 1 (one line) when it cannot tell.
 */
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/base/alloc.h"
#include "lib/config/config.h"
#include "lib/dir/dir.h"
#include "lib/dir/schema.h"
#include "lib/route/route.h"

#define MIGRATE_SAMPLE 200	/* Maildirs looked at from the directory */
#define MIGRATE_FOLDERS 1000	/* folders looked at per Maildir */
#define MIGRATE_OWNERS 8	/* distinct owners told apart */

/* The clear column in the Postfix howto's login query (docs/migration.md,
 * "Cleartext passwords and CRAM-MD5"). */
#define QUERY_LOGIN_CLEAR \
	"SELECT id, address, crypt, name, uid, gid, home, maildir, clear " \
	"FROM users WHERE (id = :login OR address = :login) AND imapok = 1 " \
	"AND bool1 = 1 AND bool2 = 1"

struct finding {
	char *key, *value, *why;	/* key NULL: a note */
};

struct survey {
	const struct config *cfg;
	struct dir *dir;
	const struct dir_schema *layout;	/* found in the database */
	const struct dir_schema *effective;	/* layout, else configured */
	size_t maildirs, courier, dovecot, courier_pop3, dovecot_uidlist;
	size_t missing;			/* named but not there */
	uid_t owners[MIGRATE_OWNERS];
	size_t nowners, owners_more;
	struct finding *f;
	size_t nf;
};

static void
add(struct survey *s, const char *key, const char *value, const char *why)
{
	s->f = xrealloc(s->f, (s->nf + 1) * sizeof(*s->f));
	s->f[s->nf].key = key ? xstrdup(key) : NULL;
	s->f[s->nf].value = value ? xstrdup(value) : NULL;
	s->f[s->nf].why = xstrdup(why);
	s->nf++;
}

/* Recommend key = value unless it is set so already. */
static void
want(struct survey *s, const char *key, const char *value, const char *why)
{
	if (strcmp(config_get(s->cfg, key), value) != 0)
		add(s, key, value, why);
}

static const struct dir_schema *
detect_layout(struct dir *dir)
{
	const struct dir_schema *sc = NULL;
	const char *err;

	if (dir_schema_detect(dir, &sc, &err) == DIR_TEMPFAIL)
		cli_die("database temporarily unavailable: %s", err);
	return sc;
}

/* The number in the first cell of a one-row answer; -1 on an error. */
static long
count_of(struct dir *dir, const char *sql)
{
	struct dir_rows *rows;
	const char *err, *v;
	long n;

	if (dir_query(dir, sql, NULL, 0, &rows, &err) < 0)
		return -1;
	v = dir_rows_get(rows, 0, 0);
	n = v != NULL ? strtol(v, NULL, 10) : 0;
	dir_rows_free(&rows);
	return n;
}

static bool
exists(const char *dir, const char *name, bool want_dir)
{
	char *p = xasprintf("%s/%s", dir, name);
	struct stat st;
	bool r = lstat(p, &st) == 0 &&
	    (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));

	free(p);
	return r;
}

/* One folder (the Maildir itself or a .Folder): which server's files. */
static void
look_folder(const char *path, bool *courier, bool *dovecot, bool *c_pop3,
    bool *d_uidlist)
{
	if (exists(path, "courierimapuiddb", false) ||
	    exists(path, "courierimapkeywords", true) ||
	    exists(path, "courierimapsubscribed", false))
		*courier = true;
	if (exists(path, "courierpop3dsizelist", false))
		*courier = *c_pop3 = true;
	if (exists(path, "dovecot-uidlist", false))
		*dovecot = *d_uidlist = true;
	if (exists(path, "dovecot-keywords", false) ||
	    exists(path, "dovecot.index", false) ||
	    exists(path, "dovecot.index.log", false) ||
	    exists(path, "dovecot-uidvalidity", false))
		*dovecot = true;
}

static void
note_owner(struct survey *s, uid_t uid)
{
	for (size_t i = 0; i < s->nowners; i++)
		if (s->owners[i] == uid)
			return;
	if (s->nowners == MIGRATE_OWNERS) {
		s->owners_more++;
		return;
	}
	s->owners[s->nowners++] = uid;
}

static void
look_maildir(struct survey *s, const char *path)
{
	bool courier = false, dovecot = false, c_pop3 = false,
	    d_uidlist = false;
	struct stat st;
	struct dirent *de;
	size_t folders = 0;
	DIR *d;

	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		s->missing++;
		return;
	}
	s->maildirs++;
	note_owner(s, st.st_uid);
	look_folder(path, &courier, &dovecot, &c_pop3, &d_uidlist);
	d = opendir(path);
	while (d != NULL && (de = readdir(d)) != NULL &&
	    folders < MIGRATE_FOLDERS) {
		char *sub;

		if (de->d_name[0] != '.' || strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		sub = xasprintf("%s/%s", path, de->d_name);
		if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) {
			folders++;
			look_folder(sub, &courier, &dovecot, &c_pop3,
			    &d_uidlist);
		}
		free(sub);
	}
	if (d != NULL)
		closedir(d);
	s->courier += courier;
	s->dovecot += dovecot;
	s->courier_pop3 += c_pop3;
	s->dovecot_uidlist += d_uidlist;
}

/* The Maildirs of the first users of the directory. */
static void
sample_maildirs(struct survey *s)
{
	const char *mail_root = config_get(s->cfg, "mail_root"), *err;
	struct dir_rows *rows;
	char *sql;

	sql = xasprintf("%s LIMIT %d", s->effective->sql_maildirs,
	    MIGRATE_SAMPLE);
	if (dir_query(s->dir, sql, NULL, 0, &rows, &err) < 0)
		cli_die("migrate check: the users' maildirs cannot be read: "
		    "%s", err);
	free(sql);
	for (size_t i = 0; i < rows->nrows; i++) {
		const char *md = dir_rows_get(rows, i, 1);
		char *path;

		if (md == NULL || route_maildir_is_forward(md))
			continue;
		path = route_maildir_path(mail_root, md);
		if (path != NULL)
			look_maildir(s, path);
		free(path);
	}
	dir_rows_free(&rows);
}

/* schema, and query_* lines that still hold another preset's text (as
 * `petrel init` writes every key). */
static void
judge_schema(struct survey *s)
{
	static const char *const qkeys[] = { "query_domain", "query_alias",
	    "query_user", "query_login", "query_quota" };
	const char *configured = config_get(s->cfg, "schema");
	const struct dir_schema *const *all = dir_schema_all();

	if (s->layout == NULL) {
		add(s, NULL, NULL, "no known layout (postfix-howto, exim-howto, "
		    "postfixadmin) in the database: the query_* settings "
		    "must describe it");
		return;
	}
	if (strcmp(s->layout->name, configured) != 0) {
		char *why = xasprintf("the database has the %s tables",
		    s->layout->name);

		add(s, "schema", s->layout->name, why);
		free(why);
	}
	for (size_t k = 0; k < sizeof(qkeys) / sizeof(qkeys[0]); k++) {
		const char *v = config_get(s->cfg, qkeys[k]);
		const char *mine = config_preset(s->layout->name, qkeys[k]);

		if (!config_is_set(s->cfg, qkeys[k]) || strcmp(v, mine) == 0)
			continue;
		for (size_t i = 0; all[i] != NULL; i++) {
			char *why;

			if (all[i] == s->layout ||
			    strcmp(v, config_preset(all[i]->name,
			    qkeys[k])) != 0)
				continue;
			why = xasprintf("the file sets the %s query, which "
			    "wins over the preset: remove the line or set "
			    "it so", all[i]->name);
			add(s, qkeys[k], mine, why);
			free(why);
			break;
		}
	}
}

/* The Postfix howto's own variations: no quota column, cleartext-only
 * rows. */
static void
judge_postfix_howto(struct survey *s)
{
	const char *err;
	long n;

	if (dir_has_quota(s->dir) && dir_query(s->dir,
	    "SELECT quota FROM users LIMIT 0", NULL, 0, NULL, &err) < 0)
		want(s, "query_quota", "", "the users table has no quota "
		    "column (the howto's has none): no quotas");
	n = count_of(s->dir, "SELECT count(*) FROM users WHERE clear <> '' "
	    "AND (crypt = '' OR crypt = '*' OR crypt = '!')");
	if (n > 0 && dir_login_has_clear(s->dir, &err) == DIR_NOTFOUND) {
		char *why = xasprintf("%ld user(s) have only a clear "
		    "password: with the clear column they log in, and "
		    "CRAM-MD5 is offered", n);

		want(s, "query_login", QUERY_LOGIN_CLEAR, why);
		free(why);
	}
}

/* Transports petrel runs otherwise than the old MTA (check says the
 * same; here they belong to what changes for users). */
static void
judge_transports(struct survey *s)
{
	struct dir_rows *rows;
	const char *err;

	if (s->effective->sql_transports == NULL ||
	    dir_query(s->dir, s->effective->sql_transports, NULL, 0, &rows,
	    &err) < 0)
		return;
	for (size_t i = 0; i < rows->nrows; i++) {
		const char *d = dir_rows_get(rows, i, 0);
		const char *t = dir_rows_get(rows, i, 1);
		char *why = NULL;

		if (d == NULL || t == NULL)
			continue;
		switch (route_transport_kind(t)) {
		case TRANSPORT_UNSUPPORTED:
			why = xasprintf("domain %s has transport '%s', which "
			    "petrel cannot run: its mail would be deferred",
			    d, t);
			break;
		case TRANSPORT_MAILDROP:
			why = xasprintf("domain %s has transport '%s': "
			    "delivered to the Maildirs without maildrop's "
			    "filters", d, t);
			break;
		default:
			break;
		}
		if (why != NULL)
			add(s, NULL, NULL, why);
		free(why);
	}
	dir_rows_free(&rows);
}

static const char *
owner_name(uid_t uid)
{
	struct passwd *pw = getpwuid(uid);

	return pw != NULL ? pw->pw_name : NULL;
}

/* Who owns the Maildirs, against the workers' account. */
static void
judge_owners(struct survey *s)
{
	const char *user = config_get(s->cfg, "user");
	struct passwd *pw;
	uid_t workers;
	char *why;

	if (s->nowners == 0)
		return;
	pw = user[0] != '\0' ? getpwnam(user) : NULL;
	workers = pw != NULL ? pw->pw_uid : geteuid();
	if (s->nowners == 1 && s->owners_more == 0) {
		const char *name = owner_name(s->owners[0]);

		if (s->owners[0] == workers || s->owners[0] == 0)
			return;
		if (name == NULL) {
			why = xasprintf("the maildirs belong to uid %lu, which "
			    "has no account here: make one, or chown the "
			    "tree to the workers' account",
			    (unsigned long)s->owners[0]);
			add(s, NULL, NULL, why);
		} else {
			why = xasprintf("the maildirs belong to %s: the "
			    "workers deliver and serve as that account",
			    name);
			add(s, "user", name, why);
		}
		free(why);
		if (name != NULL && config_get(s->cfg, "group")[0] != '\0') {
			struct passwd *o = getpwuid(s->owners[0]);
			struct group *g = o ? getgrgid(o->pw_gid) : NULL;

			if (g != NULL)
				want(s, "group", g->gr_name, "the group of "
				    "that account");
		}
		return;
	}
	why = xasprintf("the maildirs belong to %zu%s different accounts "
	    "(per-user uid/gid): petrel delivers as one account; `petrel "
	    "check` names every maildir it cannot write (chown them to the "
	    "workers' account, docs/migration.md)", s->nowners,
	    s->owners_more ? " or more" : "");
	add(s, NULL, NULL, why);
	free(why);
}

/* The settings that follow from the stack seen: the old servers' files
 * in the Maildirs, and the MTA of the layout. */
static void
judge_stack(struct survey *s)
{
	bool legacy = s->courier > 0 || s->dovecot > 0 ||
	    (s->layout != NULL && strcmp(s->layout->name, "postfix-howto") != 0);
	const char *uidl = NULL;
	long n;

	if (s->courier > 0 && s->dovecot > 0)
		uidl = "auto";
	else if (s->courier > 0)
		uidl = "courier";
	else if (s->dovecot > 0)
		uidl = "dovecot";
	if (uidl != NULL) {
		char *why = xasprintf("%zu maildir(s) of Courier, %zu of "
		    "Dovecot: POP3 clients keep the UIDLs they know", s->courier,
		    s->dovecot);

		want(s, "pop3_uidl_format", uidl, why);
		free(why);
	}
	if (s->courier > 0 && s->dovecot == 0)
		want(s, "imap_namespace_prefix", "INBOX.", "Courier-IMAP "
		    "names folders INBOX.Name: clients keep their folder "
		    "names");
	else if (s->courier > 0)
		add(s, NULL, NULL, "the maildirs come from Courier and "
		    "Dovecot: imap_namespace_prefix = INBOX. keeps Courier's "
		    "folder names, \"\" Dovecot's usual ones");
	if (!legacy)
		return;
	want(s, "smtp_helo_required", "no", "Postfix and Exim take MAIL "
	    "before HELO by default");
	want(s, "smtp_strict_envelopes", "no", "Postfix and Exim take an "
	    "address without <> by default");
	want(s, "recipient_delimiter", "", "the old MTA had no recipient "
	    "delimiter by default (keep + if it set one)");
	if (s->effective->sql_catchalls != NULL) {
		char *sql = xasprintf("SELECT count(*) FROM (%s) c",
		    s->effective->sql_catchalls);

		n = count_of(s->dir, sql);
		free(sql);
		if (n > 0) {
			char *why = xasprintf("%ld catch-all alias(es): "
			    "Postfix tries them before the mailboxes", n);

			want(s, "catchall_order", "postfix", why);
			free(why);
		}
	}
}

static void
print_human(const struct survey *s)
{
	str_t out = STR_INIT;
	size_t notes = 0;

	str_printf(&out, "# layout: %s; %zu maildir(s) looked at (Courier "
	    "%zu, Dovecot %zu)%s\n", s->layout ? s->layout->name : "unknown",
	    s->maildirs, s->courier, s->dovecot,
	    s->missing ? "; some named maildirs do not exist" : "");
	for (size_t i = 0; i < s->nf; i++) {
		if (s->f[i].key == NULL) {
			str_printf(&out, "# note: %s\n", s->f[i].why);
			notes++;
			continue;
		}
		str_printf(&out, "set %s = %s   # %s\n", s->f[i].key,
		    s->f[i].value, s->f[i].why);
	}
	if (s->nf == 0)
		str_append(&out, "nothing to change\n");
	cli_print(&out);
	str_free(&out);
}

static void
print_json(const struct survey *s)
{
	str_t out = STR_INIT;
	bool first = true;

	str_append(&out, "{\"layout\":");
	if (s->layout != NULL)
		cli_json_str(&out, s->layout->name);
	else
		str_append(&out, "null");
	str_append(&out, ",\"schema\":");
	cli_json_str(&out, config_get(s->cfg, "schema"));
	str_printf(&out, ",\"maildirs\":%zu,\"courier\":%zu,\"dovecot\":%zu,"
	    "\"missing\":%zu,\"settings\":[", s->maildirs, s->courier,
	    s->dovecot, s->missing);
	for (size_t i = 0; i < s->nf; i++) {
		if (s->f[i].key == NULL)
			continue;
		str_append(&out, first ? "{\"key\":" : ",{\"key\":");
		first = false;
		cli_json_str(&out, s->f[i].key);
		str_append(&out, ",\"value\":");
		cli_json_str(&out, s->f[i].value);
		str_append(&out, ",\"why\":");
		cli_json_str(&out, s->f[i].why);
		str_append_c(&out, '}');
	}
	str_append(&out, "],\"notes\":[");
	first = true;
	for (size_t i = 0; i < s->nf; i++) {
		if (s->f[i].key != NULL)
			continue;
		if (!first)
			str_append_c(&out, ',');
		first = false;
		cli_json_str(&out, s->f[i].why);
	}
	str_append(&out, "]}\n");
	cli_print(&out);
	str_free(&out);
}

static int
migrate_check(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "json", NULL };
	struct survey s;
	struct cli_args a;
	int status;

	cli_parse(argc, argv, allowed, 0, CLI_MAX_POS,
	    "petrel migrate check [--json] [MAILDIR...]", &a);
	memset(&s, 0, sizeof(s));
	s.cfg = cli->cfg;
	s.dir = cli_dir(cli);
	s.layout = detect_layout(s.dir);
	s.effective = s.layout != NULL ? s.layout :
	    dir_schema_get(config_get(cli->cfg, "schema"));
	judge_schema(&s);
	if (s.layout != NULL && strcmp(s.layout->name, "postfix-howto") == 0)
		judge_postfix_howto(&s);
	if (a.npos > 0) {
		for (int i = 0; i < a.npos; i++)
			look_maildir(&s, a.pos[i]);
		if (s.maildirs == 0)
			cli_die("migrate check: no maildir among the paths "
			    "given (%s ...)", a.pos[0]);
	} else if (s.layout != NULL) {
		sample_maildirs(&s);
	}
	if (s.layout != NULL)
		judge_transports(&s);
	judge_owners(&s);
	judge_stack(&s);
	if (cli_flag(&a, "json"))
		print_json(&s);
	else
		print_human(&s);
	status = s.nf > 0 ? 2 : 0;
	for (size_t i = 0; i < s.nf; i++) {
		free(s.f[i].key);
		free(s.f[i].value);
		free(s.f[i].why);
	}
	free(s.f);
	return status;
}

int
cmd_migrate(struct petrel_ctx *cli, int argc, char **argv)
{
	if (argc < 1)
		cli_die("usage: petrel migrate check [--json] [MAILDIR...]");
	if (strcmp(argv[0], "check") == 0)
		return migrate_check(cli, argc - 1, argv + 1);
	cli_die("unknown migrate subcommand '%s' (check)", argv[0]);
}
