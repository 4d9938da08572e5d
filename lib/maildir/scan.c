/*
 * scan.c: list a maildir folder (see scan.h).
 *
 * Trust: file names are whatever another program (or user) left in the
 * maildir; names that do not parse are listed with no flags, dot files
 * are skipped, nothing outside new/ and cur/ is touched.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/scan.h"

static _Thread_local char scan_err[512];

/* Bytes plus one per LF not preceded by CR. */
static int
compute_vsize(const char *path, uint64_t *size_r, uint64_t *vsize_r)
{
	char buf[65536];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint64_t size = 0, extra = 0;
	char prev = '\0';
	ssize_t n;

	if (fd < 0)
		return -1;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n' && prev != '\r')
				extra++;
			prev = buf[i];
		}
		size += (uint64_t)n;
	}
	close(fd);
	if (n < 0)
		return -1;
	*size_r = size;
	*vsize_r = size + extra;
	return 0;
}

static int cmp_key(const struct maildir_msg *x, const struct maildir_msg *y);

/* "<secs>.M<usecs>..." as a number pair, for delivery order; 0 if the
 * name has another form. */
static void
name_time(const char *name, unsigned long long *sec, unsigned long *usec)
{
	char *end;

	*sec = strtoull(name, &end, 10);
	*usec = 0;
	if (end[0] == '.' && end[1] == 'M')
		*usec = strtoul(end + 2, NULL, 10);
}

static int
cmp_msg(const void *a, const void *b)
{
	const struct maildir_msg *x = a, *y = b;
	unsigned long long xs, ys;
	unsigned long xu, yu;

	name_time(x->name, &xs, &xu);
	name_time(y->name, &ys, &yu);
	if (xs != ys)
		return xs < ys ? -1 : 1;
	if (xu != yu)
		return xu < yu ? -1 : 1;
	return cmp_key(x, y);
}

static int
cmp_key(const struct maildir_msg *x, const struct maildir_msg *y)
{
	size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
	int c = memcmp(x->name, y->name, n);

	if (c != 0)
		return c;
	return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

int
maildir_scan(const char *maildir, struct maildir_msg **msgs_r, size_t *n_r,
    const char **error_r)
{
	struct maildir_msg *msgs = NULL;
	size_t n = 0, cap = 0;

	for (int sub = 0; sub < 2; sub++) {
		char *dpath = xasprintf("%s/%s", maildir, sub ? "cur" : "new");
		DIR *d = opendir(dpath);
		struct dirent *de;

		if (d == NULL) {
			if (errno == ENOENT) {
				free(dpath);
				continue;
			}
			snprintf(scan_err, sizeof(scan_err), "opendir %s: %s",
			    dpath, strerror(errno));
			free(dpath);
			maildir_msgs_free(&msgs, n);
			*error_r = scan_err;
			return -1;
		}
		while ((de = readdir(d)) != NULL) {
			struct maildir_name mn;
			struct maildir_msg *m;
			size_t len = strlen(de->d_name);

			if (de->d_name[0] == '.')
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				msgs = xrealloc(msgs, cap * sizeof(*msgs));
			}
			m = &msgs[n];
			memset(m, 0, sizeof(*m));
			m->name = xstrdup(de->d_name);
			m->in_cur = sub == 1;
			if (maildir_name_parse(de->d_name, len, &mn) == 0) {
				m->key_len = mn.prefix_len;
				snprintf(m->flags, sizeof(m->flags), "%s",
				    mn.flags);
				if (mn.has_size && mn.has_vsize) {
					m->size = mn.size;
					m->vsize = mn.vsize;
					n++;
					continue;
				}
			} else {
				const char *colon = strchr(de->d_name, ':');

				m->key_len = colon ? (size_t)(colon - de->d_name)
				    : len;
			}
			{
				char *path = xasprintf("%s/%s", dpath,
				    de->d_name);
				int r = compute_vsize(path, &m->size, &m->vsize);

				free(path);
				if (r < 0) {	/* vanished meanwhile */
					free(m->name);
					continue;
				}
			}
			n++;
		}
		closedir(d);
		free(dpath);
	}
	if (n > 0)
		qsort(msgs, n, sizeof(*msgs), cmp_msg);
	*msgs_r = msgs;
	*n_r = n;
	return 0;
}

int
maildir_msg_set_flags(const char *maildir, struct maildir_msg *m,
    const char *flags, const char **error_r)
{
	char *newname = NULL, *from, *to;
	char *base = xstrndup(m->name, m->key_len);
	int r;

	if (maildir_name_set_flags(base, flags, &newname) < 0) {
		/* An unparsable name: keep it, append the info. */
		newname = xasprintf("%s:2,%s", base, flags);
	}
	free(base);
	from = maildir_msg_path(maildir, m);
	to = xasprintf("%s/cur/%s", maildir, newname);
	r = strcmp(from, to) == 0 ? 0 : rename(from, to);
	if (r < 0) {
		snprintf(scan_err, sizeof(scan_err), "rename %s: %s", from,
		    strerror(errno));
		*error_r = scan_err;
	} else {
		free(m->name);
		m->name = newname;
		newname = NULL;
		m->in_cur = true;
		snprintf(m->flags, sizeof(m->flags), "%s", flags);
	}
	free(newname);
	free(from);
	free(to);
	return r;
}
