/*
 * test_maildir.c: unit tests for lib/maildir/maildir.c -- maildir and
 * Maildir++ folder creation, tmp/ -> new/ delivery, link_into, unique
 * names, and file name parsing on good and hostile input.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/maildir/maildir.h"
#include "tests/unit/test.h"

static char *
tpath(const char *rel)
{
	return xasprintf("%s/%s", test_tmpdir(), rel);
}

static bool
is_dir_mode(const char *path, mode_t mode)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
	    (st.st_mode & 07777) == mode;
}

static bool
exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

static bool
str_ends(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Number of entries (not . and ..) in dir; -1 if it cannot be read. */
static int
count_entries(const char *dir)
{
	struct dirent *de;
	DIR *d;
	int n = 0;

	d = opendir(dir);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	}
	closedir(d);
	return n;
}

static int
count_sub(const char *maildir, const char *sub)
{
	char *p = xasprintf("%s/%s", maildir, sub);
	int n = count_entries(p);

	free(p);
	return n;
}

/* Read a whole file; *len_r its size. NULL on error. */
static char *
slurp(const char *path, size_t *len_r)
{
	struct stat st;
	char *buf;
	ssize_t n;
	size_t done = 0;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd == -1)
		return NULL;
	if (fstat(fd, &st) == -1) {
		close(fd);
		return NULL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	while (done < (size_t)st.st_size) {
		n = read(fd, buf + done, (size_t)st.st_size - done);
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	close(fd);
	*len_r = done;
	return buf;
}

static void
test_make(void)
{
	const char *error;
	char *md, *p;
	int fd;

	test_begin("maildir_make creates and is idempotent");
	md = tpath("make/a/b/Maildir/");
	test_assert(maildir_make(md, &error) == 0);
	p = tpath("make/a/b/Maildir/cur");
	test_assert(is_dir_mode(p, 0700));
	free(p);
	p = tpath("make/a/b/Maildir/new");
	test_assert(is_dir_mode(p, 0700));
	free(p);
	p = tpath("make/a/b/Maildir/tmp");
	test_assert(is_dir_mode(p, 0700));
	free(p);
	p = tpath("make/a/b/Maildir");
	test_assert(is_dir_mode(p, 0700));
	test_assert(maildir_make(md, &error) == 0);
	test_assert(maildir_make(p, &error) == 0);
	test_assert(count_entries(p) == 3);
	free(p);
	free(md);

	/* a file in the way */
	p = tpath("make/file");
	fd = open(p, O_WRONLY | O_CREAT, 0600);
	close(fd);
	error = NULL;
	test_assert(maildir_make(p, &error) == -1);
	test_assert(error != NULL && strstr(error, "not a directory") != NULL);
	free(p);
	p = tpath("make/file/sub");
	test_assert(maildir_make(p, &error) == -1);
	free(p);
	test_assert(maildir_make("", &error) == -1);
	test_end();
}

static void
test_folders(void)
{
	static const char *const bad[] = {
		"", ".", "..", ".Sent", "Sent.", "a..b", "a/b", "../evil",
		"..evil", "a/../../evil", "INBOX", "inbox", "InBoX",
		"tab\there", "nl\nhere", "del\x7f",
	};
	const char *error;
	char *md, *p, long_ok[255], long_bad[300], two[300];
	size_t i;

	test_begin("maildir_make_folder");
	md = tpath("folders/Maildir");
	test_assert(maildir_make_folder(md, "Sent", &error) == 0);
	p = tpath("folders/Maildir/.Sent/cur");
	test_assert(is_dir_mode(p, 0700));
	free(p);
	p = tpath("folders/Maildir/.Sent/maildirfolder");
	test_assert(exists(p));
	free(p);
	p = tpath("folders/Maildir/cur");
	test_assert(is_dir_mode(p, 0700));	/* parent made */
	free(p);
	test_assert(maildir_make_folder(md, "Sent", &error) == 0);
	test_assert(maildir_make_folder(md, "Archive.2024", &error) == 0);
	p = tpath("folders/Maildir/.Archive.2024/tmp");
	test_assert(is_dir_mode(p, 0700));
	free(p);
	p = tpath("folders/Maildir/.Archive");
	test_assert(!exists(p));	/* parents are not made */
	free(p);
	test_assert(count_entries(md) == 5);
	test_assert(count_sub(md, ".Sent") == 4);
	test_end();

	test_begin("maildir_make_folder refusals create nothing");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		error = NULL;
		test_assert(!maildir_folder_name_valid(bad[i]));
		test_assert(maildir_make_folder(md, bad[i], &error) == -1);
		test_assert(error != NULL && *error != '\0');
	}
	test_assert(!maildir_folder_name_valid(NULL));
	test_assert(maildir_make_folder(md, NULL, &error) == -1);
	test_assert(maildir_make_folder(md, "INBOX", &error) == -1);
	test_assert(strstr(error, "INBOX") != NULL);

	memset(long_ok, 'x', 254);
	long_ok[254] = '\0';		/* ".xxx" = 255 = NAME_MAX */
	memset(long_bad, 'y', 256);
	long_bad[256] = '\0';
	test_assert(maildir_folder_name_valid(long_ok));
	test_assert(!maildir_folder_name_valid(long_bad));
	test_assert(maildir_make_folder(md, long_bad, &error) == -1);
	/* each level fits but the directory name would not */
	memset(two, 'z', 299);
	two[150] = '.';
	two[299] = '\0';
	test_assert(!maildir_folder_name_valid(two));
	test_assert(maildir_make_folder(md, two, &error) == -1);
	test_assert(maildir_make_folder(md, long_ok, &error) == 0);
	/* Sent, Archive.2024, long_ok + cur new tmp */
	test_assert(count_entries(md) == 6);
	p = tpath("folders");
	test_assert(count_entries(p) == 1);
	free(p);
	p = tpath("evil");
	test_assert(!exists(p));
	free(p);
	p = tpath("folders/evil");
	test_assert(!exists(p));
	free(p);
	/* refusal on a maildir that does not exist yet: not even that */
	p = tpath("folders/Fresh");
	test_assert(maildir_make_folder(p, "a..b", &error) == -1);
	test_assert(!exists(p));
	free(p);

	test_assert(maildir_folder_name_valid("Sent"));
	test_assert(maildir_folder_name_valid("INBOXES"));
	test_assert(maildir_folder_name_valid("INBOX.Sent"));
	test_assert(maildir_folder_name_valid("caf\xc3\xa9"));
	test_assert(maildir_folder_name_valid("&AOk-t&AOk-"));
	test_end();

	test_begin("maildir_folder_path");
	p = maildir_folder_path("/m/u/", "Sent.X");
	test_assert_streq(p, "/m/u/.Sent.X");
	free(p);
	p = maildir_folder_path("/m/u/", "inbox");
	test_assert_streq(p, "/m/u");
	free(p);
	test_assert(maildir_folder_path("/m/u", "../x") == NULL);
	test_end();
	free(md);
}

static void
test_deliver(void)
{
	static const char small[] = "From: a\n\0NUL\r\nbody\n";
	struct maildir_tmp *tmp;
	const char *error;
	char *md, *path, *data, *big, needle[64];
	size_t len, i;
	struct stat st;

	md = tpath("deliver/Maildir");
	test_begin("maildir_deliver is byte-exact (NUL bytes)");
	test_assert(maildir_make(md, &error) == 0);
	path = NULL;
	test_assert(maildir_deliver(md, small, sizeof(small) - 1, &path,
	    &error) == 0);
	test_assert(path != NULL && strncmp(path, md, strlen(md)) == 0);
	test_assert(path != NULL && strstr(path, "/new/") != NULL);
	snprintf(needle, sizeof(needle), ",S=%zu,", sizeof(small) - 1);
	test_assert(path != NULL && strstr(path, needle) != NULL);
	/* 3 LF, one of them after CR: vsize = size + 2 */
	snprintf(needle, sizeof(needle), ",W=%zu", sizeof(small) - 1 + 2);
	test_assert(path != NULL && strstr(path, needle) != NULL);
	data = path == NULL ? NULL : slurp(path, &len);
	test_assert(data != NULL && len == sizeof(small) - 1 &&
	    memcmp(data, small, len) == 0);
	test_assert(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	free(data);
	free(path);
	test_assert(count_sub(md, "tmp") == 0);
	test_assert(count_sub(md, "new") == 1);
	test_end();

	test_begin("streaming 1 MiB delivery");
	big = xmalloc(1 << 20);
	for (i = 0; i < (1 << 20); i++)
		big[i] = (char)(i * 7 + i / 251);
	test_assert(maildir_tmp_open(md, &tmp, &error) == 0);
	test_assert(maildir_tmp_fd(tmp) >= 0);
	test_assert(count_sub(md, "tmp") == 1);
	for (i = 0; i < (1 << 20); i += 10000) {
		size_t n = (1 << 20) - i < 10000 ? (1 << 20) - i : 10000;
		test_assert(maildir_tmp_write(tmp, big + i, n, &error) == 0);
	}
	test_assert(maildir_tmp_size(tmp) == (1 << 20));
	test_assert(maildir_tmp_commit(&tmp, &path, &error) == 0);
	test_assert(tmp == NULL);
	test_assert(path != NULL && strstr(path, ",S=1048576,") != NULL);
	data = path == NULL ? NULL : slurp(path, &len);
	test_assert(data != NULL && len == (1 << 20) &&
	    memcmp(data, big, len) == 0);
	free(data);
	free(path);
	free(big);
	test_assert(count_sub(md, "tmp") == 0);
	test_assert(count_sub(md, "new") == 2);
	test_end();

	test_begin("vsize across writes");
	test_assert(maildir_tmp_open(md, &tmp, &error) == 0);
	test_assert(maildir_tmp_write(tmp, "a\r", 2, &error) == 0);
	test_assert(maildir_tmp_write(tmp, "\nb\n", 3, &error) == 0);
	test_assert(maildir_tmp_write(tmp, "", 0, &error) == 0);
	test_assert(maildir_tmp_write(tmp, "\n", 1, &error) == 0);
	test_assert(maildir_tmp_size(tmp) == 6);
	test_assert(maildir_tmp_vsize(tmp) == 8);
	maildir_tmp_abort(&tmp);
	test_end();

	test_begin("abort leaves nothing");
	test_assert(maildir_tmp_open(md, &tmp, &error) == 0);
	test_assert(maildir_tmp_write(tmp, "x", 1, &error) == 0);
	maildir_tmp_abort(&tmp);
	test_assert(tmp == NULL);
	maildir_tmp_abort(&tmp);
	maildir_tmp_abort(NULL);
	test_assert(count_sub(md, "tmp") == 0);
	test_assert(count_sub(md, "new") == 2);
	test_assert(count_sub(md, "cur") == 0);
	test_end();

	test_begin("commit with flags goes to cur/");
	test_assert(maildir_tmp_open(md, &tmp, &error) == 0);
	test_assert(maildir_tmp_write(tmp, "x\n", 2, &error) == 0);
	test_assert(maildir_tmp_commit_flags(&tmp, "SFaS", &path, &error) == 0);
	test_assert(path != NULL && strstr(path, "/cur/") != NULL);
	test_assert(path != NULL && str_ends(path, ":2,FSa"));
	free(path);
	test_assert(maildir_tmp_open(md, &tmp, &error) == 0);
	test_assert(maildir_tmp_commit_flags(&tmp, "S1", &path, &error) == -1);
	test_assert(tmp == NULL && path == NULL);
	test_assert(count_sub(md, "tmp") == 0);
	test_assert(count_sub(md, "cur") == 1);
	test_end();

	test_begin("commit failure removes the tmp file");
	{
		char *bad = tpath("deliver/Broken");
		char *newp = tpath("deliver/Broken/new");
		int fd;

		test_assert(maildir_make(bad, &error) == 0);
		test_assert(rmdir(newp) == 0);
		fd = open(newp, O_WRONLY | O_CREAT, 0600);	/* new/ is a file */
		close(fd);
		test_assert(maildir_tmp_open(bad, &tmp, &error) == 0);
		test_assert(maildir_tmp_write(tmp, "y", 1, &error) == 0);
		path = NULL;
		error = NULL;
		test_assert(maildir_tmp_commit(&tmp, &path, &error) == -1);
		test_assert(tmp == NULL && path == NULL && error != NULL);
		test_assert(count_sub(bad, "tmp") == 0);
		test_assert(maildir_deliver(bad, "z", 1, NULL, &error) == -1);
		test_assert(count_sub(bad, "tmp") == 0);
		test_assert(maildir_tmp_commit(&tmp, NULL, &error) == -1);
		free(newp);
		free(bad);
	}
	test_end();

	test_begin("symbolic links: refused below the root, allowed as root");
	{
		char *real = tpath("links/real");
		char *root = tpath("links/root");	/* -> real */
		char *umd = tpath("links/root/u");
		char *vmd = tpath("links/root/v");
		char *newp = tpath("links/root/v/new");
		char *elsewhere = tpath("links/elsewhere");
		char *alias = tpath("links/root/alias");

		test_assert(maildir_make(real, &error) == 0);
		test_assert(symlink(real, root) == 0);
		test_assert(maildir_make(umd, &error) == 0);
		test_assert(maildir_check_under(root, umd, &error) == 0);
		test_assert(maildir_deliver(umd, "a", 1, NULL, &error) == 0);
		/* the maildir itself a link: refused, nothing written there */
		test_assert(symlink(umd, alias) == 0);
		test_assert(maildir_check_under(root, alias, &error) == -1);
		test_assert(maildir_tmp_open(alias, &tmp, &error) == -1);
		test_assert(tmp == NULL && strstr(error, "symbolic") != NULL);
		test_assert(maildir_make(alias, &error) == -1);
		/* new/ a link */
		test_assert(maildir_make(elsewhere, &error) == 0);
		test_assert(maildir_make(vmd, &error) == 0);
		test_assert(rmdir(newp) == 0);
		test_assert(symlink(elsewhere, newp) == 0);
		test_assert(maildir_check_dirs(vmd, &error) == -1);
		test_assert(maildir_deliver(vmd, "b", 1, NULL, &error) == -1);
		test_assert(count_sub(elsewhere, "new") == 0);
		free(real);
		free(root);
		free(umd);
		free(vmd);
		free(newp);
		free(elsewhere);
		free(alias);
	}
	test_end();

	test_begin("delivery creates a missing maildir");
	{
		char *fresh = tpath("deliver/new-user/Maildir/");

		test_assert(maildir_deliver(fresh, "hi\n", 3, NULL, &error) == 0);
		test_assert(count_sub(fresh, "new") == 1);
		free(fresh);
	}
	test_end();
	free(md);
}

static void
test_many(void)
{
	const char *error;
	char *md, body[32];
	int i, ok = 0, status, child;
	pid_t pids[4];

	test_begin("1000 deliveries, 1000 distinct files");
	md = tpath("many/Maildir");
	for (i = 0; i < 1000; i++) {
		snprintf(body, sizeof(body), "msg %d\n", i);
		if (maildir_deliver(md, body, strlen(body), NULL, &error) == 0)
			ok++;
	}
	test_assert(ok == 1000);
	test_assert(count_sub(md, "new") == 1000);
	test_assert(count_sub(md, "tmp") == 0);
	test_end();

	test_begin("4 processes x 250 deliveries, all distinct");
	for (child = 0; child < 4; child++) {
		pids[child] = fork();
		if (pids[child] == 0) {
			int bad = 0;

			for (i = 0; i < 250; i++) {
				if (maildir_deliver(md, "p\n", 2, NULL,
				    &error) < 0)
					bad++;
			}
			_exit(bad == 0 ? 0 : 1);
		}
		test_assert(pids[child] > 0);
	}
	for (child = 0; child < 4; child++) {
		test_assert(waitpid(pids[child], &status, 0) == pids[child]);
		test_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	test_assert(count_sub(md, "new") == 2000);
	test_end();
	free(md);
}

static void
test_batch(void)
{
	struct maildir_batch *b;
	struct maildir_tmp *tmp;
	const char *error;
	char *md[40], name[64];
	int i, ok = 0;

	test_begin("a batch: 200 copies into 40 maildirs, 40 directories");
	for (i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "batch/u%d", i);
		md[i] = tpath(name);
	}
	b = maildir_batch_new();
	for (i = 0; i < 200; i++) {
		/* more than 64 pending copies: some are linked before the sync */
		if (maildir_tmp_open(md[i % 40], &tmp, &error) == 0 &&
		    maildir_tmp_write(tmp, "copy\n", 5, &error) == 0 &&
		    maildir_tmp_commit_batch(&tmp, i % 2 ? "S" : NULL, b,
		    NULL, &error) == 0)
			ok++;
	}
	test_assert(ok == 200);
	test_assert(maildir_batch_sync(b, &error) == 0);
	test_assert(maildir_batch_dirs(b) == 0);
	for (i = 0; i < 40; i++) {
		test_assert(count_sub(md[i], "new") + count_sub(md[i], "cur") == 5);
		test_assert(count_sub(md[i], "tmp") == 0);
	}
	test_end();

	test_begin("a batch freed before its sync removes its copies");
	for (i = 0; i < 70; i++) {
		if (maildir_tmp_open(md[i % 2], &tmp, &error) == 0 &&
		    maildir_tmp_write(tmp, "gone\n", 5, &error) == 0)
			test_assert(maildir_tmp_commit_batch(&tmp, NULL, b,
			    NULL, &error) == 0);
	}
	/* 64 were linked when the 64th came, the rest are pending */
	test_assert(maildir_batch_dirs(b) == 2);
	maildir_batch_free(&b);
	test_assert(b == NULL);
	for (i = 0; i < 2; i++) {
		test_assert(count_sub(md[i], "new") + count_sub(md[i], "cur") == 5);
		test_assert(count_sub(md[i], "tmp") == 0);
	}
	for (i = 0; i < 40; i++)
		free(md[i]);
	test_end();
}

static void
test_link_into(void)
{
	const char *error;
	char *a, *b, *src, *dst, *data, *shm, tmpl[] = "/dev/shm/petrel-unit-XXXXXX";
	struct stat st1, st2;
	size_t len;

	test_begin("maildir_link_into");
	a = tpath("link/a");
	b = tpath("link/b");
	test_assert(maildir_deliver(a, "shared\n", 7, &src, &error) == 0);
	test_assert(maildir_link_into(src, 7, b, &dst, &error) == 0);
	test_assert(dst != NULL && strstr(dst, "/link/b/new/") != NULL);
	test_assert(dst != NULL && strstr(dst, ",S=7,W=8") != NULL);
	test_assert(stat(src, &st1) == 0 && stat(dst, &st2) == 0);
	test_assert(st1.st_ino == st2.st_ino);	/* one write, two links */
	test_assert(strcmp(strrchr(src, '/'), strrchr(dst, '/')) != 0);
	free(dst);
	/* again into the same maildir: another distinct name */
	test_assert(maildir_link_into(src, 7, a, NULL, &error) == 0);
	test_assert(count_sub(a, "new") == 2);
	test_assert(maildir_link_into_flags(src, 7, b, "S", &dst, &error) == 0);
	test_assert(dst != NULL && str_ends(dst, ":2,S") &&
	    strstr(dst, "/cur/") != NULL);
	free(dst);
	test_assert(maildir_link_into("/nonexistent/x", 1, b, &dst,
	    &error) == -1);
	test_assert(dst == NULL);
	test_assert(count_sub(b, "new") == 1 && count_sub(b, "cur") == 1);
	test_end();

	test_begin("maildir_link_into across file systems copies");
	shm = mkdtemp(tmpl);
	if (shm != NULL && stat(shm, &st1) == 0 && stat(a, &st2) == 0 &&
	    st1.st_dev != st2.st_dev) {
		char *other = xasprintf("%s/Maildir", shm);
		struct timespec old[2] = { { 1000000000, 0 },
		    { 1000000000, 0 } };
		struct maildir_tmp *tmp;

		/* the copy has the source's date (IMAP INTERNALDATE), as a
		 * link would */
		test_assert(utimensat(AT_FDCWD, src, old, 0) == 0);
		test_assert(maildir_link_into(src, 7, other, &dst,
		    &error) == 0);
		data = dst == NULL ? NULL : slurp(dst, &len);
		test_assert(data != NULL && len == 7 &&
		    memcmp(data, "shared\n", 7) == 0);
		test_assert(dst != NULL && strstr(dst, ",S=7,") != NULL);
		test_assert(dst != NULL && stat(dst, &st2) == 0 &&
		    st2.st_mtime == 1000000000);
		test_assert(count_sub(other, "tmp") == 0);
		free(data);
		free(dst);
		/* a tmp file committed into a maildir elsewhere: copied,
		 * dated, and no tmp file left on either side */
		test_assert(maildir_tmp_open(a, &tmp, &error) == 0);
		test_assert(maildir_tmp_write_lf(tmp, "x\r\ny\r\n", 6,
		    &error) == 0);
		maildir_tmp_set_mtime(tmp, 1100000000, 0);
		test_assert(maildir_tmp_commit_to(&tmp, other, "S", &dst,
		    &error) == 0);
		test_assert(tmp == NULL);
		test_assert(dst != NULL && strstr(dst, "/Maildir/cur/") !=
		    NULL && str_ends(dst, ":2,S"));
		data = dst == NULL ? NULL : slurp(dst, &len);
		test_assert(data != NULL && len == 4 &&
		    memcmp(data, "x\ny\n", 4) == 0);
		test_assert(dst != NULL && stat(dst, &st2) == 0 &&
		    st2.st_mtime == 1100000000);
		test_assert(count_sub(other, "tmp") == 0 &&
		    count_sub(a, "tmp") == 0);
		free(data);
		free(dst);
		free(other);
		other = xasprintf("rm -rf '%s'", shm);
		(void)!system(other);
		free(other);
	} else {
		printf("  (skipped: /dev/shm is not another file system)\n");
	}
	test_end();
	free(src);
	free(a);
	free(b);
}

/* Write msg through maildir_tmp_write_lf() in pieces of step bytes
 * (0: at once) and commit; the file's bytes, malloc'd. */
static char *
write_lf(const char *md, const char *msg, size_t len, size_t step,
    size_t *len_r, uint64_t *size_r)
{
	struct maildir_tmp *tmp;
	const char *error;
	char *path = NULL, *data;

	if (maildir_tmp_open(md, &tmp, &error) < 0)
		return NULL;
	for (size_t i = 0; i < len; i += step == 0 ? len : step) {
		size_t n = step == 0 || len - i < step ? len - i : step;

		if (maildir_tmp_write_lf(tmp, msg + i, n, &error) < 0) {
			maildir_tmp_abort(&tmp);
			return NULL;
		}
	}
	*size_r = maildir_tmp_size(tmp);
	if (maildir_tmp_commit(&tmp, &path, &error) < 0)
		return NULL;
	data = slurp(path, len_r);
	free(path);
	return data;
}

static void
test_write_lf(void)
{
	static const char msg[] = "a\r\nb\rc\r\r\n\r\n\n\rd\r";
	static const char want[] = "a\nb\rc\r\n\n\n\rd\r";
	const char *error;
	char *md = tpath("lf"), *other = tpath("lf2"), *path = NULL, *data;
	struct maildir_tmp *tmp;
	struct stat st;
	uint64_t size;
	size_t len;

	test_begin("maildir_tmp_write_lf: CRLF stored as LF, split anywhere");
	for (size_t step = 0; step <= sizeof(msg); step++) {
		data = write_lf(md, msg, sizeof(msg) - 1, step, &len, &size);
		test_assert(data != NULL && len == sizeof(want) - 1 &&
		    memcmp(data, want, len) == 0 && size == len);
		free(data);
	}
	/* a held CR alone: written at commit */
	data = write_lf(md, "\r", 1, 0, &len, &size);
	test_assert(data != NULL && len == 1 && data[0] == '\r' && size == 1);
	free(data);
	test_assert(count_sub(md, "tmp") == 0);
	test_end();

	test_begin("maildir_tmp_set_mtime: dated before it is linked");
	test_assert(maildir_tmp_open(md, &tmp, &error) == 0);
	test_assert(maildir_tmp_write_lf(tmp, "x\r\n", 3, &error) == 0);
	maildir_tmp_set_mtime(tmp, 1234567890, 0);
	/* into another maildir on the same file system: a link */
	test_assert(maildir_tmp_commit_to(&tmp, other, "S", &path,
	    &error) == 0);
	test_assert(path != NULL && strstr(path, "/lf2/cur/") != NULL &&
	    strstr(path, ",S=2,W=3:2,S") != NULL);
	test_assert(path != NULL && stat(path, &st) == 0 &&
	    st.st_mtime == 1234567890 && st.st_nlink == 1);
	test_assert(count_sub(md, "tmp") == 0 && count_sub(other, "tmp") == 0);
	free(path);
	test_end();
	free(md);
	free(other);
}

static void
test_name_parse(void)
{
	struct maildir_name n;
	char huge[600], *s;
	unsigned int i, c;

	test_begin("maildir_name_parse good names");
	s = "1700000000.M123P45Q6R0badf00d.host,S=1234,W=1260:2,FRS";
	test_assert(maildir_name_parse(s, strlen(s), &n) == 0);
	test_assert(n.base_len == strlen("1700000000.M123P45Q6R0badf00d.host"));
	test_assert(n.base == s);
	test_assert(n.has_size && n.size == 1234);
	test_assert(n.has_vsize && n.vsize == 1260);
	test_assert(n.has_info);
	test_assert_streq(n.flags, "FRS");
	test_assert(n.prefix_len == (size_t)(strchr(s, ':') - s));
	test_assert(maildir_flags_has(n.flags, 'S'));
	test_assert(!maildir_flags_has(n.flags, 'T'));
	test_assert(!maildir_flags_has(n.flags, '\0'));

	s = "1234.5678.host";
	test_assert(maildir_name_parse(s, strlen(s), &n) == 0);
	test_assert(n.base_len == strlen(s) && !n.has_size && !n.has_vsize);
	test_assert(!n.has_info && n.flags[0] == '\0');
	test_assert(n.prefix_len == strlen(s));

	s = "1234.5678.host:2,";
	test_assert(maildir_name_parse(s, strlen(s), &n) == 0);
	test_assert(n.has_info && n.flags[0] == '\0');

	s = "1234.host,S=0:2,baSTDa";	/* keywords, unsorted, duplicate */
	test_assert(maildir_name_parse(s, strlen(s), &n) == 0);
	test_assert(n.has_size && n.size == 0);
	test_assert_streq(n.flags, "DSTab");

	s = "1234.host,W=99,X=foo,S=18446744073709551615";
	test_assert(maildir_name_parse(s, strlen(s), &n) == 0);
	test_assert(n.size == UINT64_MAX && n.vsize == 99);

	/* not NUL-terminated: only len bytes count */
	s = "1234.host,S=12:2,SXYZ";
	test_assert(maildir_name_parse(s, strlen("1234.host,S=1"), &n) == 0);
	test_assert(n.size == 1 && !n.has_info);
	test_assert(maildir_name_parse("caf\xc3\xa9.host", 10, &n) == 0);
	test_end();

	test_begin("maildir_name_parse garbage");
	static const char *const bad[] = {
		"", ":2,", ":2,S", ",S=1", ".hidden", "x,S=", "x,S=1a",
		"x,S=18446744073709551616", "x,S=1,S=2", "x,W=1,W=1",
		"x,,S=1", "x,", "x:", "x:2", "x:1,S", "x:2,S1", "x:2,S:",
		"x:2,S,", "a/b", "x,S=-1", "x:2,\xff", "x:3,S",
	};
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		test_assert(maildir_name_parse(bad[i], strlen(bad[i]), &n) == -1);
	test_assert(maildir_name_parse(NULL, 0, &n) == -1);
	test_assert(maildir_name_parse("a\0b", 3, &n) == -1);
	memset(huge, 'a', sizeof(huge));
	test_assert(maildir_name_parse(huge, sizeof(huge), &n) == -1);
	test_assert(maildir_name_parse(huge, 255, &n) == 0);
	/* every single byte and pairs: must never crash */
	for (c = 0; c < 256; c++) {
		char b[4] = { (char)c, 'x', (char)c, ':' };

		for (i = 1; i <= 4; i++)
			(void)maildir_name_parse(b, i, &n);
	}
	/* random names over a hostile alphabet; ASan/UBSan watch */
	{
		static const char alpha[] = ",S=W:2.a1/9\0\xff-";
		char buf[300], *out;
		unsigned int seed = 42, j, k, len;

		for (j = 0; j < 20000; j++) {
			len = (unsigned int)rand_r(&seed) % sizeof(buf);
			for (k = 0; k < len; k++)
				buf[k] = alpha[(unsigned int)rand_r(&seed) %
				    (sizeof(alpha) - 1)];
			if (maildir_name_parse(buf, len, &n) == 0) {
				test_assert(n.base_len > 0 &&
				    n.base_len <= n.prefix_len &&
				    n.prefix_len <= len);
				test_assert(strlen(n.flags) <=
				    MAILDIR_FLAGS_MAX);
				if (memchr(buf, '\0', len) == NULL) {
					buf[len] = '\0';
					test_assert(maildir_name_set_flags(buf,
					    "S", &out) == 0);
					free(out);
				}
			}
		}
	}
	test_end();
}

static void
test_set_flags(void)
{
	char *out;

	test_begin("maildir_name_set_flags");
	test_assert(maildir_name_set_flags("123.host,S=5", "SF", &out) == 0);
	test_assert_streq(out, "123.host,S=5:2,FS");
	free(out);
	test_assert(maildir_name_set_flags("123.host,S=5:2,FS", "", &out) == 0);
	test_assert_streq(out, "123.host,S=5:2,");
	free(out);
	test_assert(maildir_name_set_flags("123.host:2,S", "TzaTS", &out) == 0);
	test_assert_streq(out, "123.host:2,STaz");
	free(out);
	/* an odd info part is replaced */
	test_assert(maildir_name_set_flags("123.host:1,junk", "R", &out) == 0);
	test_assert_streq(out, "123.host:2,R");
	free(out);
	test_assert(maildir_name_set_flags("123.host", "S ", &out) == -1);
	test_assert(out == NULL);
	test_assert(maildir_name_set_flags(":2,S", "S", &out) == -1);
	test_assert(maildir_name_set_flags("", "S", &out) == -1);
	test_assert(maildir_name_set_flags("x,S=z", "S", &out) == -1);
	test_end();
}

static void
test_unique(void)
{
	char *a, *b;

	test_begin("maildir_unique_name");
	a = maildir_unique_name();
	b = maildir_unique_name();
	test_assert(strcmp(a, b) != 0);
	test_assert(strstr(a, ".M") != NULL && strstr(a, "P") != NULL &&
	    strstr(a, "Q") != NULL && strstr(a, "R") != NULL);
	test_assert(strchr(a, '/') == NULL && strchr(a, ':') == NULL);
	test_assert(strchr(a, ',') == NULL);
	free(a);
	free(b);
	test_end();
}

static void
touch(const char *path, time_t mtime)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	struct timespec ts[2];

	test_assert(fd >= 0 && write(fd, "x", 1) == 1);
	if (mtime != 0) {
		ts[0].tv_sec = ts[1].tv_sec = mtime;
		ts[0].tv_nsec = ts[1].tv_nsec = 0;
		test_assert(futimens(fd, ts) == 0);
	}
	close(fd);
}

static void
test_tmp_cleanup(void)
{
	char *md = tpath("tmpclean");
	char *tmp = tpath("tmpclean/tmp");
	char *dead = tpath("tmpclean/tmp/dead"), *future = tpath("tmpclean/tmp/future");
	char *copied = tpath("tmpclean/tmp/copied"), *sub = tpath("tmpclean/tmp/sub");
	char *link = tpath("tmpclean/tmp/link"), *fresh = tpath("tmpclean/tmp/fresh");
	char *oldsub = tpath("tmpclean/tmp/sub/old");
	const char *err = NULL;
	time_t now = time(NULL);

	test_begin("maildir_tmp_cleanup removes only old regular files");
	test_assert(maildir_make(md, &err) == 0);
	touch(dead, 0);
	test_assert(mkdir(sub, 0700) == 0);
	touch(oldsub, now - 7200);
	test_assert(symlink(dead, link) == 0);
	touch(future, now + 3600);
	sleep(2);	/* dead's ctime and mtime are now in the past */
	touch(fresh, 0);
	/* mtime kept from an old file but just created (ctime now) */
	touch(copied, now - 7200);
	test_assert(maildir_tmp_cleanup(tmp, 1, &err) == 1);
	test_assert(!exists(dead));
	test_assert(exists(future) && exists(fresh) && exists(copied));
	test_assert(exists(oldsub));	/* not recursive */
	{
		struct stat st;

		test_assert(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
	}
	/* with the default age nothing here is old enough */
	test_assert(maildir_tmp_cleanup(tmp, 36 * 3600, &err) == 0);
	test_assert(exists(fresh));
	/* a missing directory: -1, ENOENT, a message */
	err = NULL;
	test_assert(maildir_tmp_cleanup(dead, 0, &err) == -1 && errno == ENOENT);
	test_assert(err != NULL && strstr(err, "dead") != NULL);
	test_end();
	free(md);
	free(tmp);
	free(dead);
	free(future);
	free(copied);
	free(sub);
	free(link);
	free(fresh);
	free(oldsub);
}

int
main(void)
{
	test_make();
	test_folders();
	test_deliver();
	test_many();
	test_batch();
	test_link_into();
	test_write_lf();
	test_name_parse();
	test_set_flags();
	test_unique();
	test_tmp_cleanup();
	return test_done();
}
