/*
 * writable.c: the maildirs the workers' account cannot write (see
 * writable.h).
 *
 * A maildir that exists needs write and search permission on itself and
 * on its tmp/, new/ and cur/ (those present); one that does not exist yet
 * is made on the first delivery, so its nearest existing parent needs
 * them. Forwards (a maildir column holding addresses) have no directory
 * and are skipped, as are values route_maildir_path() refuses (a
 * delivery reports those).
 *
 * Trust: the directory's values are only used as paths under mail_root
 * (route_maildir_path); the child's report to the parent is lines of
 * paths, read with a bound.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/dir/dir.h"
#include "lib/dir/schema.h"
#include "lib/route/route.h"
#include "lib/route/writable.h"

#define WRITABLE_REPORT_MAX (64u * 1024 * 1024)	/* bytes from the child */

static bool
dir_ok(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
	    access(path, W_OK | X_OK) == 0;
}

/* Whether a delivery as this process could write into path. */
static bool
maildir_writable(const char *path)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	char *p = xstrdup(path), *slash;
	struct stat st;
	bool ok = true;

	while (strlen(p) > 1 && p[strlen(p) - 1] == '/')
		p[strlen(p) - 1] = '\0';
	if (lstat(p, &st) == 0) {
		ok = dir_ok(p);
		for (size_t i = 0; ok && i < 3; i++) {
			char *sub = xasprintf("%s/%s", p, subs[i]);

			if (lstat(sub, &st) == 0)
				ok = dir_ok(sub);
			free(sub);
		}
		free(p);
		return ok;
	}
	/* not there yet: the nearest parent that is */
	while ((slash = strrchr(p, '/')) != NULL && slash != p) {
		*slash = '\0';
		if (lstat(p, &st) == 0) {
			ok = dir_ok(p);
			break;
		}
	}
	free(p);
	return ok;
}

int
writable_walk(struct dir *dir, const char *schema, const char *mail_root,
    size_t max, struct writable_report *rep, const char **error_r)
{
	const struct dir_schema *sc = dir_schema_get(schema);
	struct dir_rows *rows;
	char *sql;
	int r;

	if (sc == NULL)
		sc = dir_schema_get("postfix-howto");
	sql = xasprintf("%s LIMIT %zu", sc->sql_maildirs, max + 1);
	memset(rep, 0, sizeof(*rep));
	r = dir_query(dir, sql, NULL, 0, &rows, error_r);
	free(sql);
	if (r != DIR_OK)
		return r;
	rep->truncated = rows->nrows > max;
	for (size_t i = 0; i < rows->nrows && i < max; i++) {
		const char *md = dir_rows_get(rows, i, 1);
		char *path;

		rep->users++;
		if (md == NULL || route_maildir_is_forward(md))
			continue;
		path = route_maildir_path(mail_root, md);
		if (path == NULL)
			continue;
		if (maildir_writable(path)) {
			free(path);
			continue;
		}
		while (strlen(path) > 1 && path[strlen(path) - 1] == '/')
			path[strlen(path) - 1] = '\0';
		rep->paths = xrealloc(rep->paths,
		    (rep->npaths + 1) * sizeof(*rep->paths));
		rep->paths[rep->npaths++] = path;
	}
	dir_rows_free(&rows);
	return DIR_OK;
}

void
writable_report_clear(struct writable_report *rep)
{
	for (size_t i = 0; i < rep->npaths; i++)
		free(rep->paths[i]);
	free(rep->paths);
	free(rep->skipped);
	memset(rep, 0, sizeof(*rep));
}

/* In the child: become the workers' account (when root). */
static const char *
child_become_user(const struct config *cfg)
{
	const char *user = config_get(cfg, "user");
	const char *group = config_get(cfg, "group");
	struct passwd *pw;
	struct group *gr;
	gid_t gid;

	if (geteuid() != 0 || user[0] == '\0')
		return NULL;
	pw = getpwnam(user);
	if (pw == NULL)
		return "no such user";
	gid = pw->pw_gid;
	if (group[0] != '\0') {
		gr = getgrnam(group);
		if (gr == NULL)
			return "no such group";
		gid = gr->gr_gid;
	}
	if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
		return "cannot take the account's ids";
	return NULL;
}

/* The child's report: "U users\n", "T\n" when truncated, "P path\n" per
 * maildir, or "S reason\n" when nothing could be checked. */
static void
child_run(const struct config *cfg, int fd)
{
	struct writable_report rep;
	struct dir *dir = NULL;
	const char *err;
	char *perr = NULL;
	str_t out = STR_INIT;
	int r;

	if (dir_password_file_load(config_get(cfg, "database_password_file"),
	    &perr) < 0) {
		str_printf(&out, "S %s\n", perr);
		goto out;
	}
	if (dir_open(config_get(cfg, "database"), 0, &dir, &perr) < 0) {
		str_printf(&out, "S %s\n", perr);
		goto out;
	}
	dir_set_queries(dir, cfg);
	/* connected first: the directory is the auth account's, not the
	 * workers' */
	if (dir_connect(dir, &err) < 0) {
		str_printf(&out, "S directory unavailable: %s\n", err);
		goto out;
	}
	if ((err = child_become_user(cfg)) != NULL) {
		str_printf(&out, "S %s\n", err);
		goto out;
	}
	r = writable_walk(dir, config_get(cfg, "schema"),
	    config_get(cfg, "mail_root"),
	    WRITABLE_USERS_MAX, &rep, &err);
	if (r != DIR_OK) {
		str_printf(&out, "S the users table could not be read: %s\n",
		    err);
		goto out;
	}
	str_printf(&out, "U %zu\n", rep.users);
	if (rep.truncated)
		str_append(&out, "T\n");
	for (size_t i = 0; i < rep.npaths; i++) {
		/* a path with a newline cannot be told in a line: cut */
		rep.paths[i][strcspn(rep.paths[i], "\n")] = '\0';
		str_append(&out, "P ");
		str_append(&out, rep.paths[i]);
		str_append_c(&out, '\n');
	}
	writable_report_clear(&rep);
out:
	for (size_t off = 0; off < out.len;) {
		ssize_t n = write(fd, out.data + off, out.len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	_exit(0);
}

int
writable_check(const struct config *cfg, struct writable_report *rep,
    char **error_r)
{
	str_t in = STR_INIT;
	char buf[4096], *line, *save = NULL;
	int fds[2], status;
	ssize_t n;
	pid_t pid;

	memset(rep, 0, sizeof(*rep));
	if (pipe(fds) < 0) {
		*error_r = xasprintf("pipe: %s", strerror(errno));
		return -1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		*error_r = xasprintf("fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		close(fds[0]);
		signal(SIGPIPE, SIG_IGN);
		child_run(cfg, fds[1]);
	}
	close(fds[1]);
	while ((n = read(fds[0], buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || in.len > WRITABLE_REPORT_MAX)
			break;
		str_append_n(&in, buf, (size_t)n);
	}
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (in.len == 0) {
		rep->skipped = xstrdup("the check ended without a report");
		str_free(&in);
		return 0;
	}
	for (line = strtok_r(in.data, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == 'S' && line[1] == ' ' && rep->skipped == NULL) {
			rep->skipped = xstrdup(line + 2);
		} else if (line[0] == 'U' && line[1] == ' ') {
			rep->users = strtoul(line + 2, NULL, 10);
		} else if (line[0] == 'T') {
			rep->truncated = true;
		} else if (line[0] == 'P' && line[1] == ' ') {
			rep->paths = xrealloc(rep->paths,
			    (rep->npaths + 1) * sizeof(*rep->paths));
			rep->paths[rep->npaths++] = xstrdup(line + 2);
		}
	}
	str_free(&in);
	return 0;
}
