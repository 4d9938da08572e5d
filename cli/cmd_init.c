/*
 * cmd_init.c: petrel init [--dir DIR] [--domain DOMAIN]
 *
 * Creates a working instance: DIR/petrel.conf (absolute paths), the
 * directory schema (the howto's transport/virtual/users tables plus a quota
 * column), the mail root, the queue directory and a self-signed certificate.
 * Idempotent: whatever exists is kept (an existing petrel.conf is read, not
 * rewritten; tables are created only if missing).
 *
 * As root it also creates the system account of the auth process,
 * petrel-auth (auth_user), when missing, and gives it the SQLite file,
 * mode 0600: the password hashes are for the auth process alone, not for
 * the workers' account nor the world.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/base/alloc.h"
#include "lib/config/config.h"
#include "lib/dir/dir.h"
#include "lib/tls/tls.h"

/* The howto schema. SQLite compares case-insensitively through NOCASE
 * (MySQL's default collations already do). */
static const char *const schema_sqlite[] = {
	"CREATE TABLE IF NOT EXISTS transport ("
	" domain TEXT NOT NULL DEFAULT '' COLLATE NOCASE,"
	" transport TEXT NOT NULL DEFAULT '',"
	" UNIQUE (domain))",
	"CREATE TABLE IF NOT EXISTS virtual ("
	" address TEXT NOT NULL DEFAULT '' COLLATE NOCASE,"
	" goto TEXT NOT NULL DEFAULT '',"
	" UNIQUE (address))",
	"CREATE TABLE IF NOT EXISTS users ("
	" id TEXT NOT NULL DEFAULT '' COLLATE NOCASE PRIMARY KEY,"
	" address TEXT NOT NULL DEFAULT '' COLLATE NOCASE UNIQUE,"
	" crypt TEXT NOT NULL DEFAULT '',"
	" clear TEXT NOT NULL DEFAULT '',"
	" name TEXT NOT NULL DEFAULT '',"
	" uid INTEGER NOT NULL DEFAULT 1000,"
	" gid INTEGER NOT NULL DEFAULT 1000,"
	" home TEXT NOT NULL DEFAULT '',"
	" domain TEXT NOT NULL DEFAULT '' COLLATE NOCASE,"
	" maildir TEXT NOT NULL DEFAULT '',"
	" imapok INTEGER NOT NULL DEFAULT 1,"
	" bool1 INTEGER NOT NULL DEFAULT 1,"
	" bool2 INTEGER NOT NULL DEFAULT 1,"
	" quota INTEGER NOT NULL DEFAULT 0)",
	NULL
};

static const char *const schema_mysql[] = {
	"CREATE TABLE IF NOT EXISTS transport ("
	" domain VARCHAR(255) NOT NULL DEFAULT '',"
	" transport VARCHAR(255) NOT NULL DEFAULT '',"
	" UNIQUE KEY domain (domain)) DEFAULT CHARSET=utf8mb4",
	"CREATE TABLE IF NOT EXISTS virtual ("
	" address VARCHAR(255) NOT NULL DEFAULT '',"
	" goto TEXT NOT NULL,"
	" UNIQUE KEY address (address)) DEFAULT CHARSET=utf8mb4",
	"CREATE TABLE IF NOT EXISTS users ("
	" id VARCHAR(255) NOT NULL DEFAULT '',"
	" address VARCHAR(255) NOT NULL DEFAULT '',"
	" crypt VARCHAR(128) NOT NULL DEFAULT '',"
	" clear VARCHAR(128) NOT NULL DEFAULT '',"
	" name VARCHAR(128) NOT NULL DEFAULT '',"
	" uid INT UNSIGNED NOT NULL DEFAULT 1000,"
	" gid INT UNSIGNED NOT NULL DEFAULT 1000,"
	" home VARCHAR(255) NOT NULL DEFAULT '',"
	" domain VARCHAR(255) NOT NULL DEFAULT '',"
	" maildir VARCHAR(512) NOT NULL DEFAULT '',"
	" imapok TINYINT UNSIGNED NOT NULL DEFAULT 1,"
	" bool1 TINYINT UNSIGNED NOT NULL DEFAULT 1,"
	" bool2 TINYINT UNSIGNED NOT NULL DEFAULT 1,"
	" quota BIGINT UNSIGNED NOT NULL DEFAULT 0,"
	" PRIMARY KEY (id), UNIQUE KEY address (address))"
	" DEFAULT CHARSET=utf8mb4",
	NULL
};

int
cli_schema_create(struct petrel_ctx *cli, const char **error_r)
{
	struct dir *dir = cli->dir;
	const char *const *stmt;
	int r;

	stmt = dir_is_mysql(dir) ? schema_mysql : schema_sqlite;
	for (; *stmt != NULL; stmt++) {
		r = dir_query(dir, *stmt, NULL, 0, NULL, error_r);
		if (r < 0)
			return r;
	}
	/* A howto database (Postfix's users table has no quota column):
	 * add it, as SPEC section 1 says init does. */
	if (dir_query(dir, "SELECT quota FROM users LIMIT 0", NULL, 0, NULL,
	    error_r) < 0) {
		r = dir_query(dir, dir_is_mysql(dir) ?
		    "ALTER TABLE users ADD COLUMN quota BIGINT UNSIGNED NOT NULL DEFAULT 0" :
		    "ALTER TABLE users ADD COLUMN quota INTEGER NOT NULL DEFAULT 0",
		    NULL, 0, NULL, error_r);
		if (r < 0)
			return r;
	}
	return DIR_OK;
}

static void
mkdir_p(const char *path, mode_t mode)
{
	char *p = xstrdup(path);

	for (char *s = p + 1; *s != '\0'; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			cli_die("cannot create directory %s: %s", p,
			    strerror(errno));
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		cli_die("cannot create directory %s: %s", p, strerror(errno));
	free(p);
}

static void
write_file_atomic(const char *path, const str_t *content, mode_t mode)
{
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, mode);
	size_t off = 0;

	if (fd < 0)
		cli_die("cannot create %s: %s", tmp, strerror(errno));
	while (off < content->len) {
		ssize_t w = write(fd, content->data + off, content->len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			unlink(tmp);
			cli_die("cannot write %s: %s", tmp, strerror(errno));
		}
		off += (size_t)w;
	}
	if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
		unlink(tmp);
		cli_die("cannot write %s: %s", path, strerror(errno));
	}
	free(tmp);
}

/* The default service account: "mail" when run as root (Debian has it),
 * else whoever runs init. */
/* Can uid/gid reach (search) every directory on the way to path? */
static bool
reachable(const char *path, uid_t uid, gid_t gid)
{
	char *p = xstrdup(path);
	bool ok = true;
	size_t len = strlen(p);

	for (size_t i = 1; i <= len && ok; i++) {
		struct stat st;

		if (p[i] != '/' && p[i] != '\0')
			continue;
		p[i] = '\0';
		if (stat(p, &st) < 0)
			ok = false;
		else if (st.st_uid == uid)
			ok = (st.st_mode & S_IXUSR) != 0;
		else if (st.st_gid == gid)
			ok = (st.st_mode & S_IXGRP) != 0;
		else
			ok = (st.st_mode & S_IXOTH) != 0;
		if (i < len)
			p[i] = '/';
	}
	free(p);
	return ok;
}

static void
service_account(const char *dir, char **user_r, char **group_r)
{
	struct passwd *pw;
	struct group *gr;

	if (geteuid() == 0 && (pw = getpwnam("mail")) != NULL &&
	    (gr = getgrnam("mail")) != NULL) {
		if (reachable(dir, pw->pw_uid, gr->gr_gid)) {
			*user_r = xstrdup("mail");
			*group_r = xstrdup("mail");
			return;
		}
		cli_warn("%s is not reachable by the account 'mail' (a parent "
		    "directory is closed); this instance will run as root. "
		    "Use a directory like " PETREL_LOCALSTATEDIR "/lib/petrel "
		    "to run unprivileged.",
		    dir);
		*user_r = xstrdup("root");
		*group_r = xstrdup("root");
		return;
	}
	pw = getpwuid(geteuid());
	gr = getgrgid(getegid());
	*user_r = xstrdup(pw ? pw->pw_name : "");
	*group_r = xstrdup(gr ? gr->gr_name : "");
}

#define AUTH_ACCOUNT "petrel-auth"

/* Create the system account name (no home, no login shell, a group of its
 * own). 0 when it exists afterwards. */
static int
create_system_user(const char *name)
{
	static const char *const tools[] = { "/usr/sbin/useradd",
	    "/sbin/useradd", NULL };
	int status;
	pid_t pid;

	if (getpwnam(name) != NULL)
		return 0;
	for (size_t i = 0; tools[i] != NULL; i++) {
		if (access(tools[i], X_OK) < 0)
			continue;
		pid = fork();
		if (pid < 0)
			break;
		if (pid == 0) {
			execl(tools[i], tools[i], "--system", "--user-group",
			    "--no-create-home", "--home-dir", "/nonexistent",
			    "--shell", "/usr/sbin/nologin", name, (char *)NULL);
			_exit(127);
		}
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		break;
	}
	if (getpwnam(name) == NULL)
		return -1;
	printf("created system user %s\n", name);
	return 0;
}

/* The auth process's account for an instance in dir that runs as user:
 * petrel-auth (created if missing) when root made the instance for an
 * unprivileged user and the account can reach dir; otherwise user. */
static char *
auth_account(const char *dir, const char *user)
{
	struct passwd *pw;

	if (geteuid() != 0 || user[0] == '\0' || strcmp(user, "root") == 0)
		return xstrdup(user);
	if (create_system_user(AUTH_ACCOUNT) < 0) {
		cli_warn("cannot create the system user %s (useradd); the auth "
		    "process will run as %s", AUTH_ACCOUNT, user);
		return xstrdup(user);
	}
	pw = getpwnam(AUTH_ACCOUNT);
	if (pw == NULL || !reachable(dir, pw->pw_uid, pw->pw_gid)) {
		cli_warn("%s is not reachable by the account %s; the auth "
		    "process will run as %s", dir, AUTH_ACCOUNT, user);
		return xstrdup(user);
	}
	return xstrdup(AUTH_ACCOUNT);
}

static void
write_config(struct petrel_ctx *cli, const char *dir, const char *conf)
{
	char host[256] = "localhost", *user, *group, *err;
	struct {
		const char *key;
		char *value;
	} defs[] = {
		{ "hostname", NULL }, { "database", NULL },
		{ "mail_root", NULL }, { "queue_dir", NULL },
		{ "tls_cert", NULL }, { "tls_key", NULL },
		{ "user", NULL }, { "group", NULL }, { "dkim_dir", NULL },
		{ "auth_user", NULL },
	};
	str_t out = STR_INIT;
	size_t n = sizeof(defs) / sizeof(defs[0]);

	if (gethostname(host, sizeof(host) - 1) < 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "localhost");
	service_account(dir, &user, &group);
	defs[0].value = xstrdup(host);
	defs[1].value = xasprintf("sqlite:%s/petrel.db", dir);
	defs[2].value = xasprintf("%s/mail", dir);
	defs[3].value = xasprintf("%s/queue", dir);
	defs[4].value = xasprintf("%s/tls/cert.pem", dir);
	defs[5].value = xasprintf("%s/tls/key.pem", dir);
	defs[6].value = user;
	defs[7].value = group;
	defs[8].value = xasprintf("%s/dkim", dir);
	defs[9].value = auth_account(dir, config_is_set(cli->cfg, "user") ?
	    config_get(cli->cfg, "user") : user);
	/* Instance defaults, unless given with -o: the table's values for
	 * new instances (listeners added later, on loopback), then these. */
	for (size_t i = 0; i < config_key_count(); i++) {
		const char *key = config_key_name(i), *v = config_key_init(i);

		if (v != NULL && !config_is_set(cli->cfg, key) &&
		    config_set(cli->cfg, key, v, &err) < 0)
			cli_die("%s", err);
	}
	for (size_t i = 0; i < n; i++) {
		if (!config_is_set(cli->cfg, defs[i].key) &&
		    config_set(cli->cfg, defs[i].key, defs[i].value, &err) < 0)
			cli_die("%s", err);
		free(defs[i].value);
	}

	str_printf(&out, "# petrel configuration, made by `petrel init`.\n"
	    "# Every key is listed with its value; `petrel help KEY` and\n"
	    "# petrel.conf(5) say what each means.\n"
	    "# Listener keys take host:port[,host:port...]; empty disables.\n\n");
	for (size_t i = 0; i < config_key_count(); i++) {
		const char *key = config_key_name(i);

		str_printf(&out, "%s = %s\n", key, config_get(cli->cfg, key));
	}
	write_file_atomic(conf, &out, 0640);
	str_free(&out);
}

static void
chown_to_service(struct petrel_ctx *cli, const char *path)
{
	struct passwd *pw;
	struct group *gr;

	if (geteuid() != 0)
		return;
	pw = getpwnam(config_get(cli->cfg, "user"));
	gr = getgrnam(config_get(cli->cfg, "group"));
	if (pw == NULL || gr == NULL)
		return;
	if (chown(path, pw->pw_uid, gr->gr_gid) < 0)
		cli_die("cannot chown %s: %s", path, strerror(errno));
}

/* The SQLite file holds every password hash: the auth process's account
 * owns it, nobody else may read it (not the workers' account). */
static void
db_private(struct petrel_ctx *cli, const char *path)
{
	struct passwd *pw;

	if (chmod(path, 0600) < 0)
		cli_die("cannot chmod %s: %s", path, strerror(errno));
	if (geteuid() != 0)
		return;
	pw = getpwnam(config_get(cli->cfg, "auth_user"));
	if (pw == NULL) {
		/* no such account: the auth process runs as user */
		chown_to_service(cli, path);
		return;
	}
	if (chown(path, pw->pw_uid, pw->pw_gid) < 0)
		cli_die("cannot chown %s: %s", path, strerror(errno));
}

/* The workers read petrel.conf after dropping privileges: root owns it,
 * the service group may read it. */
static void
conf_group_readable(struct petrel_ctx *cli, const char *conf)
{
	struct group *gr;

	if (geteuid() != 0)
		return;
	gr = getgrnam(config_get(cli->cfg, "group"));
	if (gr != NULL && chown(conf, 0, gr->gr_gid) < 0)
		cli_die("cannot chown %s: %s", conf, strerror(errno));
}

int
cmd_init(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "dir=", "domain=", NULL };
	struct cli_args a;
	const char *dirarg, *domain, *err, *path;
	char *dir, *conf, *cerr, *tlsdir, *slash;
	struct dir_url url;
	struct stat st;
	bool created = false;

	cli_parse(argc, argv, allowed, 0, 0,
	    "petrel init [--dir DIR] [--domain DOMAIN]", &a);
	dirarg = cli_opt(&a, "dir");
	domain = cli_opt(&a, "domain");
	if (dirarg == NULL)
		dirarg = ".";
	mkdir_p(dirarg, 0755);
	dir = realpath(dirarg, NULL);
	if (dir == NULL)
		cli_die("cannot resolve %s: %s", dirarg, strerror(errno));
	conf = xasprintf("%s/petrel.conf", dir);

	if (stat(conf, &st) == 0) {
		/* Keep the existing file; -o still applies to this run. */
		struct config *old = config_new();

		if (config_load_file(old, conf, &cerr) < 0)
			cli_die("%s", cerr);
		for (size_t i = 0; i < config_key_count(); i++) {
			const char *key = config_key_name(i);

			if (config_is_set(old, key) && !config_is_set(cli->cfg, key))
				config_set(cli->cfg, key, config_get(old, key),
				    &cerr);
		}
		config_free(&old);
		printf("kept %s\n", conf);
	} else {
		write_config(cli, dir, conf);
		conf_group_readable(cli, conf);
		printf("created %s\n", conf);
		created = true;
	}
	cli->conf_path = conf;

	/* Directories. */
	path = config_get(cli->cfg, "mail_root");
	mkdir_p(path, 0750);
	chown_to_service(cli, path);
	path = config_get(cli->cfg, "queue_dir");
	mkdir_p(path, 0750);
	chown_to_service(cli, path);
	{
		static const char *const subs[] = { "tmp", "incoming", "state" };

		for (size_t i = 0; i < 3; i++) {
			char *sub = xasprintf("%s/%s", path, subs[i]);

			mkdir_p(sub, 0750);
			chown_to_service(cli, sub);
			free(sub);
		}
	}

	/* Database and schema. */
	if (dir_url_parse(config_get(cli->cfg, "database"), &url, &err) < 0)
		cli_die("bad database URL: %s", err);
	if (!url.mysql && (slash = strrchr(url.path, '/')) != NULL &&
	    slash != url.path) {
		char *parent = xstrndup(url.path, (size_t)(slash - url.path));

		mkdir_p(parent, 0755);
		free(parent);
	}
	if (dir_open(config_get(cli->cfg, "database"), DIR_OPEN_CREATE,
	    &cli->dir, &cerr) < 0)
		cli_die("%s", cerr);
	dir_set_queries(cli->dir, cli->cfg);
	if (dir_connect(cli->dir, &err) < 0)
		cli_die("database unreachable: %s", err);
	if (cli_schema_create(cli, &err) < 0)
		cli_die("cannot create the schema: %s", err);
	if (!url.mysql)
		db_private(cli, url.path);
	printf("database %s ready\n", url.mysql ? url.db : url.path);
	dir_url_clear(&url);

	/* TLS certificate. */
	path = config_get(cli->cfg, "tls_cert");
	tlsdir = xstrdup(path);
	if ((slash = strrchr(tlsdir, '/')) != NULL && slash != tlsdir) {
		*slash = '\0';
		mkdir_p(tlsdir, 0750);
		chown_to_service(cli, tlsdir);
	}
	free(tlsdir);
	if (stat(path, &st) < 0 ||
	    stat(config_get(cli->cfg, "tls_key"), &st) < 0) {
		if (tls_make_selfsigned(path, config_get(cli->cfg, "tls_key"),
		    config_get(cli->cfg, "hostname"), &err) < 0)
			cli_die("%s", err);
		chown_to_service(cli, config_get(cli->cfg, "tls_key"));
		printf("created self-signed certificate %s\n", path);
	}

	if (domain != NULL) {
		static const char *const add[] = { "add", NULL, NULL };
		char *args[2] = { (char *)add[0], (char *)domain };

		if (!cli_domain_hosted(cli, domain))
			cmd_domain(cli, 2, args);
	}
	if (created)
		printf("next: petrel -c %s user add USER@DOMAIN --password-stdin\n",
		    conf);
	free(conf);
	free(dir);
	return 0;
}
