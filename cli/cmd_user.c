/*
 * cmd_user.c: petrel user add|del|show|list|passwd|auth — the users table
 * (move: cmd_user_move.c).
 *
 * Rows are written in the howto's column layout (id = address, clear
 * always empty, maildir DOMAIN/LOCAL/ relative to mail_root); the quota
 * column is written only when query_quota is configured, so a Postfix
 * howto database without that column works unchanged.
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/auth/password.h"
#include "lib/base/addr.h"
#include "lib/base/alloc.h"
#include "lib/config/config.h"
#include "lib/dir/dir.h"
#include "lib/dir/schema.h"
#include "lib/maildir/maildir.h"

#define USER_COLS "address, id, name, uid, gid, home, maildir, imapok, bool1, bool2"

static void
split_address(const char *arg, char **local_r, char **domain_r)
{
	cli_check_text("the address", arg);
	if (addr_split(arg, local_r, domain_r) < 0)
		cli_die("'%s' is not a valid mail address (local@domain)", arg);
}

static uint64_t
parse_quota(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	if (s[0] == '\0' || !isdigit((unsigned char)s[0]))
		cli_die("--quota must be a number of bytes, not '%s'", s);
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		cli_die("--quota must be a number of bytes, not '%s'", s);
	return v;
}

/* uid/gid written into new rows: the service account's. */
static void
service_ids(struct petrel_ctx *cli, char uid[24], char gid[24])
{
	struct passwd *pw = getpwnam(config_get(cli->cfg, "user"));
	struct group *gr = getgrnam(config_get(cli->cfg, "group"));

	snprintf(uid, 24, "%lu", (unsigned long)(pw ? pw->pw_uid : getuid()));
	snprintf(gid, 24, "%lu", (unsigned long)(gr ? gr->gr_gid : getgid()));
}

/* Run as root, the maildir must belong to the account that delivers and
 * serves it (the row's uid/gid), as the howto's vmail user. */
static void
chown_maildir(struct petrel_ctx *cli, const char *domain, const char *path,
    const char *uid, const char *gid)
{
	uid_t u = (uid_t)strtoul(uid, NULL, 10);
	gid_t g = (gid_t)strtoul(gid, NULL, 10);
	/* The maildir and its Maildir subdirectories cur/, new/, tmp/. */
	static const char *const subs[] = { NULL, "cur", "new", "tmp" };
	char *p;

	if (geteuid() != 0)
		return;
	p = xasprintf("%s/%s", config_get(cli->cfg, "mail_root"), domain);
	if (chown(p, u, g) < 0)
		cli_die("cannot chown %s: %s", p, strerror(errno));
	free(p);
	for (size_t i = 0; i < 4; i++) {
		p = subs[i] == NULL ? xstrdup(path) :
		    xasprintf("%s/%s", path, subs[i]);
		if (chown(p, u, g) < 0)
			cli_die("cannot chown %s: %s", p, strerror(errno));
		free(p);
	}
}

static int
user_add(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "password-stdin", "crypt=",
	    "name=", "quota=", NULL };
	struct cli_args a;
	char *local, *domain, *address, *maildir, *path, *home, *hash = NULL;
	const char *name, *quota_arg, *crypt_arg, *err;
	char uid[24], gid[24], quota[24] = "0";
	struct dir_rows *rows;
	struct dir *dir;

	cli_schema_writable(cli, "petrel user add");
	cli_parse(argc, argv, allowed, 1, 1,
	    "petrel user add ADDRESS [--password-stdin] [--crypt HASH] "
	    "[--name N] [--quota BYTES]", &a);
	split_address(a.pos[0], &local, &domain);
	/* The local part names a directory: '/' (legal in an address)
	 * could place one user's maildir inside another's. */
	if (strchr(local, '/') != NULL)
		cli_die("'%s': a user's local part may not contain '/'",
		    a.pos[0]);
	address = xasprintf("%s@%s", local, domain);
	name = cli_opt(&a, "name");
	if (name == NULL)
		name = "";
	cli_check_text("--name", name);
	quota_arg = cli_opt(&a, "quota");
	crypt_arg = cli_opt(&a, "crypt");
	if (crypt_arg != NULL && cli_flag(&a, "password-stdin"))
		cli_die("give either --crypt or --password-stdin, not both");
	if (crypt_arg != NULL && (crypt_arg[0] == '\0' ||
	    strpbrk(crypt_arg, " \t\r\n:") != NULL))
		cli_die("--crypt needs a crypt(3) hash");
	dir = cli_dir(cli);
	if (quota_arg != NULL) {
		snprintf(quota, sizeof(quota), "%llu",
		    (unsigned long long)parse_quota(quota_arg));
		if (!dir_has_quota(dir) && strcmp(quota, "0") != 0)
			cli_die("quotas are off (query_quota is empty); "
			    "cannot set --quota");
	}
	if (!cli_domain_hosted(cli, domain))
		cli_die("domain %s is not hosted here (petrel domain add %s)",
		    domain, domain);
	rows = cli_query(cli, "user add",
	    "SELECT address FROM users WHERE address = :address OR id = :address",
	    (const char *[]){ "address", address, NULL });
	if (rows->nrows > 0)
		cli_die("user %s already exists", address);
	dir_rows_free(&rows);

	if (cli_flag(&a, "password-stdin")) {
		char *plain = cli_read_password(false);

		hash = password_hash(plain, PASSWORD_YESCRYPT, &err);
		explicit_bzero(plain, strlen(plain));
		free(plain);
		if (hash == NULL)
			cli_die("cannot hash the password: %s", err);
	} else if (crypt_arg != NULL) {
		hash = xstrdup(crypt_arg);
	} else {
		hash = xstrdup("");
		cli_warn("%s has no password and cannot log in until "
		    "`petrel user passwd %s`", address, address);
	}

	maildir = xasprintf("%s/%s/", domain, local);
	path = cli_maildir_path(cli, maildir);
	/* The user's own home (%h of the Sieve paths, docs/sieve.md): the
	 * maildir's directory, never mail_root, which all would share. */
	home = xstrdup(path);
	while (strlen(home) > 1 && home[strlen(home) - 1] == '/')
		home[strlen(home) - 1] = '\0';
	service_ids(cli, uid, gid);
	rows = cli_query(cli, "user add", dir_has_quota(dir) ?
	    "INSERT INTO users (id, address, crypt, clear, name, uid, gid, "
	    "home, domain, maildir, imapok, bool1, bool2, quota) VALUES (:id, "
	    ":address, :crypt, '', :name, :uid, :gid, :home, :domain, "
	    ":maildir, 1, 1, 1, :quota)" :
	    "INSERT INTO users (id, address, crypt, clear, name, uid, gid, "
	    "home, domain, maildir, imapok, bool1, bool2) VALUES (:id, "
	    ":address, :crypt, '', :name, :uid, :gid, :home, :domain, "
	    ":maildir, 1, 1, 1)",
	    (const char *[]){ "id", address, "address", address,
	    "crypt", hash, "name", name, "uid", uid, "gid", gid,
	    "home", home, "domain", domain,
	    "maildir", maildir, "quota", quota, NULL });
	dir_rows_free(&rows);
	/* The row first, then the maildir; if the maildir cannot be made,
	 * the row goes again: all or nothing. */
	if (maildir_make(path, &err) < 0) {
		char *why = xstrdup(err);

		rows = cli_query(cli, "user add",
		    "DELETE FROM users WHERE address = :address",
		    (const char *[]){ "address", address, NULL });
		dir_rows_free(&rows);
		cli_die("cannot create maildir %s: %s", path, why);
	}
	chown_maildir(cli, domain, path, uid, gid);
	printf("added user %s (maildir %s)\n", address, path);
	free(hash);
	free(home);
	free(path);
	free(maildir);
	free(address);
	free(local);
	free(domain);
	return 0;
}

static bool
flag_on(const char *v)
{
	return v != NULL && strtol(v, NULL, 10) != 0;
}

/* One users row (USER_COLS [, quota]) as a tab line or a JSON object. */
static void
format_user(str_t *out, const struct dir_rows *rows, size_t i, bool json)
{
	const char *f[8];
	bool login;
	const char *quota = rows->ncols > 10 ? dir_rows_get(rows, i, 10) : "0";

	for (size_t c = 0; c < 7; c++) {
		f[c] = dir_rows_get(rows, i, c);
		if (f[c] == NULL)
			f[c] = "";
	}
	login = flag_on(dir_rows_get(rows, i, 7)) &&
	    flag_on(dir_rows_get(rows, i, 8)) &&
	    flag_on(dir_rows_get(rows, i, 9));
	if (quota == NULL || quota[0] == '\0')
		quota = "0";
	if (!json) {
		str_printf(out, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f[0],
		    f[1], f[2], f[3], f[4], f[5], f[6], quota,
		    login ? "yes" : "no");
		return;
	}
	str_append(out, "{\"address\":");
	cli_json_str(out, f[0]);
	str_append(out, ",\"id\":");
	cli_json_str(out, f[1]);
	str_append(out, ",\"name\":");
	cli_json_str(out, f[2]);
	str_printf(out, ",\"uid\":%lld,\"gid\":%lld,\"home\":",
	    strtoll(f[3], NULL, 10), strtoll(f[4], NULL, 10));
	cli_json_str(out, f[5]);
	str_append(out, ",\"maildir\":");
	cli_json_str(out, f[6]);
	str_printf(out, ",\"quota\":%llu,\"login\":%s}",
	    strtoull(quota, NULL, 10), login ? "true" : "false");
}

static const char *
select_users(struct petrel_ctx *cli, const char *where)
{
	static char sql[1024];
	const struct dir_schema *sc = cli_schema(cli);
	char *from = sc->writable ? xstrdup("users") :
	    xasprintf("(%s) u", sc->sql_users);

	snprintf(sql, sizeof(sql), "SELECT " USER_COLS "%s FROM %s %s "
	    "ORDER BY address", dir_has_quota(cli_dir(cli)) ? ", quota" : "",
	    from, where);
	free(from);
	return sql;
}

static char *
normalized_address(const char *arg)
{
	char *local, *domain, *address;

	split_address(arg, &local, &domain);
	address = xasprintf("%s@%s", local, domain);
	free(local);
	free(domain);
	return address;
}

static int
user_show(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "json", NULL };
	struct cli_args a;
	struct dir_rows *rows;
	str_t out = STR_INIT;
	char *address;

	cli_parse(argc, argv, allowed, 1, 1, "petrel user show ADDRESS [--json]",
	    &a);
	address = normalized_address(a.pos[0]);
	rows = cli_query(cli, "user show",
	    select_users(cli, "WHERE address = :address"),
	    (const char *[]){ "address", address, NULL });
	if (rows->nrows == 0)
		cli_die("no such user %s", address);
	format_user(&out, rows, 0, cli_flag(&a, "json"));
	if (cli_flag(&a, "json"))
		str_append_c(&out, '\n');
	cli_print(&out);
	str_free(&out);
	dir_rows_free(&rows);
	free(address);
	return 0;
}

static int
user_list(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "json", NULL };
	struct cli_args a;
	struct dir_rows *rows;
	str_t out = STR_INIT;
	char *domain = NULL, *like = NULL;
	bool json;

	cli_parse(argc, argv, allowed, 0, 1,
	    "petrel user list [DOMAIN] [--json]", &a);
	json = cli_flag(&a, "json");
	if (a.npos == 1) {
		domain = xstrdup(a.pos[0]);
		str_lower(domain);
		if (!addr_domain_valid(domain))
			cli_die("'%s' is not a valid domain name", a.pos[0]);
		like = cli_like_domain(domain);
		rows = cli_query(cli, "user list",
		    select_users(cli, "WHERE address LIKE :like ESCAPE '!'"),
		    (const char *[]){ "like", like, NULL });
	} else {
		rows = cli_query(cli, "user list", select_users(cli, ""), NULL);
	}
	if (json)
		str_append_c(&out, '[');
	for (size_t i = 0; i < rows->nrows; i++) {
		if (json && i > 0)
			str_append_c(&out, ',');
		format_user(&out, rows, i, json);
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

static int
user_del(struct petrel_ctx *cli, int argc, char **argv)
{
	struct cli_args a;
	struct dir_rows *rows;
	char *address;

	cli_schema_writable(cli, "petrel user del");
	cli_parse(argc, argv, NULL, 1, 1, "petrel user del ADDRESS", &a);
	address = normalized_address(a.pos[0]);
	rows = cli_query(cli, "user del",
	    "DELETE FROM users WHERE address = :address",
	    (const char *[]){ "address", address, NULL });
	if (rows->affected == 0)
		cli_die("no such user %s", address);
	dir_rows_free(&rows);
	/* The maildir stays on disk, as with Postfix and Dovecot: deleting
	 * mail is a separate, deliberate act. */
	printf("deleted user %s (the maildir was kept)\n", address);
	free(address);
	return 0;
}

static int
user_passwd(struct petrel_ctx *cli, int argc, char **argv)
{
	struct cli_args a;
	struct dir_rows *rows;
	char *address, *plain, *hash;
	const char *err;

	cli_schema_writable(cli, "petrel user passwd");
	cli_parse(argc, argv, NULL, 1, 1, "petrel user passwd ADDRESS", &a);
	address = normalized_address(a.pos[0]);
	rows = cli_query(cli, "user passwd",
	    "SELECT address FROM users WHERE address = :address",
	    (const char *[]){ "address", address, NULL });
	if (rows->nrows == 0)
		cli_die("no such user %s", address);
	dir_rows_free(&rows);
	plain = cli_read_password(false);
	hash = password_hash(plain, PASSWORD_YESCRYPT, &err);
	explicit_bzero(plain, strlen(plain));
	free(plain);
	if (hash == NULL)
		cli_die("cannot hash the password: %s", err);
	rows = cli_query(cli, "user passwd",
	    "UPDATE users SET crypt = :crypt WHERE address = :address",
	    (const char *[]){ "crypt", hash, "address", address, NULL });
	dir_rows_free(&rows);
	printf("password changed for %s\n", address);
	free(hash);
	free(address);
	return 0;
}

static int
user_auth(struct petrel_ctx *cli, int argc, char **argv)
{
	struct cli_args a;
	struct dir_user u;
	char *plain;
	const char *err;
	bool ok;
	int r;

	cli_parse(argc, argv, NULL, 1, 1, "petrel user auth LOGIN", &a);
	plain = cli_read_password(true);
	r = dir_lookup_login(cli_dir(cli), a.pos[0], &u, &err);
	if (r == DIR_TEMPFAIL)
		cli_die("directory temporarily unavailable: %s", err);
	if (r < 0)
		cli_die("query_login failed: %s", err);
	/* as the auth process does: the hash, or the cleartext column
	 * when the row has no usable hash */
	ok = r == DIR_OK && (password_hash_usable(u.crypt) ?
	    password_verify(plain, u.crypt) :
	    password_clear_verify(plain, u.clear));
	explicit_bzero(plain, strlen(plain));
	free(plain);
	if (r == DIR_OK)
		dir_user_clear(&u);
	if (!ok)
		cli_die("authentication failed for %s", a.pos[0]);
	return 0;
}

int
cmd_user(struct petrel_ctx *cli, int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(struct petrel_ctx *, int, char **);
	} subs[] = {
		{ "add", user_add }, { "del", user_del }, { "show", user_show },
		{ "list", user_list }, { "passwd", user_passwd },
		{ "auth", user_auth }, { "move", cmd_user_move },
	};

	if (argc < 1)
		cli_die("usage: petrel user add|del|show|list|passwd|auth|move ...");
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if (strcmp(argv[0], subs[i].name) == 0)
			return subs[i].fn(cli, argc - 1, argv + 1);
	cli_die("unknown user subcommand '%s' "
	    "(add, del, show, list, passwd, auth, move)", argv[0]);
}
