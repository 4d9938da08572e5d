/*
 * mbox_objectid.c: the object identifiers of RFC 8474 (IMAP OBJECTID)
 * and the save date of RFC 8514 (SAVEDATE), with no per-message
 * storage:
 *
 *  - MAILBOXID: "F" and 32 hex digits of random, kept in the file
 *    petrel-mailboxid in the folder's directory (beside cur/, new/, tmp/
 *    and petrel-index). It moves with RENAME, survives restarts and a
 *    re-index (the index files are not involved), and goes with DELETE,
 *    so a folder created again under the same name gets a new one. A
 *    folder without the file (made before, or by another program) gets
 *    one the first time it is asked for; two sessions asking at once
 *    agree, as the file is made under a temporary name and link()ed.
 *  - EMAILID: "M" and 16 hex digits of a hash of the message file's
 *    base name (before the first ',' or ':'), which is unique in the
 *    maildir and never changes while the file lives (flag changes
 *    rewrite only what follows ':'). MOVE gives the new file a name
 *    field "E=<id>", which wins over the hash, so a moved message keeps
 *    its EMAILID; COPY makes a new message with a new one.
 *  - SAVEDATE: the seconds that start the base name ("<time>.<unique>"
 *    as petrel, Dovecot, Courier, maildrop and procmail name files),
 *    which APPEND, COPY, MOVE and delivery set when they link the file
 *    into the folder. A name that starts otherwise has none (NIL).
 *
 * Trust: file names and petrel-mailboxid are chosen by whoever can write
 * the maildir. An id is used only when it has the RFC's syntax (1-255
 * letters, digits, '-', '_'); a petrel-mailboxid without one is an
 * error (the folder reports no id), never replaced behind the user's
 * back. The file is opened without following a symbolic link.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/store/mbox_int.h"

#define MAILBOXID_FILE "petrel-mailboxid"

bool
mbox_objectid_valid(const char *s, size_t len)
{
	if (len == 0 || len > MBOX_OBJECTID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
	}
	return true;
}

/* The id in the folder's file: 1 read, 0 missing, -1 error or bad. */
static int
mailboxid_read(const char *file, char id[MBOX_OBJECTID_MAX + 1],
    const char **error_r)
{
	char buf[MBOX_OBJECTID_MAX + 2];
	ssize_t n;
	size_t len;
	int fd;

	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return mbox_fail(error_r, "open(%s) failed: %s", file,
		    strerror(errno));
	}
	do
		n = read(fd, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n < 0)
		return mbox_fail(error_r, "read(%s) failed: %s", file,
		    strerror(errno));
	len = (size_t)n;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	if (!mbox_objectid_valid(buf, len))
		return mbox_fail(error_r, "%s holds no valid id", file);
	memcpy(id, buf, len);
	id[len] = '\0';
	return 1;
}

int
mbox_mailboxid_peek(const char *path, char id[MBOX_OBJECTID_MAX + 1],
    const char **error_r)
{
	char *file;
	int r;

	if (path == NULL || *path == '\0')
		return mbox_fail(error_r, "empty mailbox path");
	file = xasprintf("%s/%s", path, MAILBOXID_FILE);
	r = mailboxid_read(file, id, error_r);
	free(file);
	return r;
}

int
mbox_mailboxid(const char *path, char id[MBOX_OBJECTID_MAX + 1],
    const char **error_r)
{
	unsigned char rnd[16];
	char *file, *tmp, text[40];
	int r, fd, e;
	size_t k;

	if (path == NULL || *path == '\0')
		return mbox_fail(error_r, "empty mailbox path");
	file = xasprintf("%s/%s", path, MAILBOXID_FILE);
	if ((r = mailboxid_read(file, id, error_r)) != 0) {
		free(file);
		return r > 0 ? 0 : -1;
	}
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		r = mbox_fail(error_r, "getrandom failed: %s",
		    strerror(errno));
		free(file);
		return r;
	}
	text[0] = 'F';
	for (k = 0; k < sizeof(rnd); k++)
		snprintf(text + 1 + 2 * k, 3, "%02x", rnd[k]);
	tmp = xasprintf("%s.%s.tmp", file, text);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0) {
		r = mbox_fail(error_r, "open(%s) failed: %s", tmp,
		    strerror(errno));
		goto out;
	}
	text[33] = '\n';
	if (write_full(fd, text, 34) < 0 || fsync(fd) < 0) {
		e = errno;
		close(fd);
		unlink(tmp);
		r = mbox_fail(error_r, "write(%s) failed: %s", tmp,
		    strerror(e));
		goto out;
	}
	close(fd);
	/* link(): the first one made wins, the others read it */
	if (link(tmp, file) < 0 && errno != EEXIST) {
		e = errno;
		unlink(tmp);
		r = mbox_fail(error_r, "link(%s) failed: %s", file,
		    strerror(e));
		goto out;
	}
	unlink(tmp);
	if (fsync_dir(path, error_r) < 0) {
		r = -1;
		goto out;
	}
	if ((r = mailboxid_read(file, id, error_r)) == 0)
		r = mbox_fail(error_r, "%s vanished", file);
	else if (r > 0)
		r = 0;
out:
	free(tmp);
	free(file);
	return r;
}

/* The "E=" field of a name's fields (before ':'), or NULL. */
static const char *
name_email_field(const char *name, size_t *len_r)
{
	size_t end = strcspn(name, ":");
	const char *p = memchr(name, ',', end);

	while (p != NULL) {
		const char *f = p + 1;
		const char *next = memchr(f, ',', end - (size_t)(f - name));
		size_t flen = (next != NULL ? (size_t)(next - f) :
		    end - (size_t)(f - name));

		if (flen > 2 && f[0] == 'E' && f[1] == '=' &&
		    mbox_objectid_valid(f + 2, flen - 2)) {
			*len_r = flen - 2;
			return f + 2;
		}
		p = next;
	}
	return NULL;
}

void
mbox_emailid(const char *name, char id[MBOX_OBJECTID_MAX + 1])
{
	const char *f;
	size_t len;

	if ((f = name_email_field(name, &len)) != NULL) {
		memcpy(id, f, len);
		id[len] = '\0';
		return;
	}
	len = strcspn(name, ",:");
	snprintf(id, MBOX_OBJECTID_MAX + 1, "M%016" PRIx64,
	    mbox_hash64(0x4f424a4944ULL, name, len));
}

long long
mbox_savedate(const char *name)
{
	long long t = 0;
	size_t i;

	for (i = 0; name[i] >= '0' && name[i] <= '9' && i < 12; i++)
		t = t * 10 + (name[i] - '0');
	/* "<seconds>." with a time after 1990 and at most a day ahead (a
	 * clock set wrong, not a name that means something else) */
	if (i == 0 || name[i] != '.' || t < 631152000LL ||
	    t > (long long)time(NULL) + 86400)
		return -1;
	return t;
}
