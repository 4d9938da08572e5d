/*
 * queue.c: writing the outbound queue (format in queue.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/fdio.h"
#include "lib/base/str.h"
#include "lib/queue/queue.h"
#include "lib/queue/spool.h"

void
queue_id_new(char id[17])
{
	static atomic_uint counter;
	struct timeval tv;
	uint32_t rnd = 0;
	uint64_t v;

	gettimeofday(&tv, NULL);
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = (uint32_t)tv.tv_usec;
	/* 32 bits of seconds, 20 of microseconds, 12 of pid^counter^random:
	 * sortable by arrival, unique across processes in practice, and
	 * checked with O_EXCL where it matters. */
	v = ((uint64_t)(uint32_t)tv.tv_sec << 32) |
	    ((uint64_t)(tv.tv_usec & 0xfffff) << 12) |
	    (((uint64_t)getpid() ^ atomic_fetch_add(&counter, 1) ^ rnd) & 0xfff);
	snprintf(id, 17, "%016llX", (unsigned long long)v);
}

int
queue_dirs_make(const char *queue_dir, const char **error_r)
{
	/* QUEUE_DIR itself, then its subdirectories. */
	static const char *const subs[] = { NULL, "tmp", "incoming", "state" };

	for (size_t i = 0; i < 4; i++) {
		char *p = subs[i] == NULL ? xstrdup(queue_dir) :
		    xasprintf("%s/%s", queue_dir, subs[i]);

		if (mkdir(p, 0750) < 0 && errno != EEXIST) {
			err_fail(error_r, errno, "cannot create %s: %s", p,
			    strerror(errno));
			free(p);
			return -1;
		}
		free(p);
	}
	return 0;
}


int
queue_enqueue(const char *queue_dir, const char *id, const char *sender,
    const struct queue_rcpt *rcpts, size_t nrcpts, const char *prefix,
    struct spool *body, const char **error_r)
{
	char *tmp = xasprintf("%s/tmp/%s", queue_dir, id);
	char *final = xasprintf("%s/incoming/%s", queue_dir, id);
	char *dir = xasprintf("%s/incoming", queue_dir);
	str_t env = STR_INIT;
	const char *err;
	int fd, ret = -1;

	str_printf(&env, "petrel-queue 1\nid %s\narrival %lld\nsender %s\n",
	    id, (long long)time(NULL), sender);
	for (size_t i = 0; i < nrcpts; i++)
		str_printf(&env, "rcpt %s %s\n", rcpts[i].address,
		    rcpts[i].transport[0] ? rcpts[i].transport : "-");
	str_append_c(&env, '\n');
	if (prefix != NULL)
		str_append(&env, prefix);

	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		err_fail(error_r, errno, "cannot create %s: %s", tmp,
		    strerror(errno));
		goto out;
	}
	if (write_full(fd, env.data, env.len) < 0 ||
	    spool_copy_to(body, fd, &err) < 0 || fsync(fd) < 0) {
		err_fail(error_r, errno, "cannot write %s: %s", tmp,
		    strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd) < 0 || rename(tmp, final) < 0 ||
	    fsync_dir(dir, &err) < 0) {
		err_fail(error_r, errno, "cannot commit %s: %s", final,
		    strerror(errno));
		unlink(tmp);
		unlink(final);
		goto out;
	}
	ret = 0;
out:
	str_free(&env);
	free(tmp);
	free(final);
	free(dir);
	return ret;
}

bool
queue_id_valid(const char *id)
{
	size_t i;

	for (i = 0; id[i] != '\0'; i++)
		if (!isxdigit((unsigned char)id[i]) || islower((unsigned char)id[i]))
			return false;
	return i == 16;
}

void
queue_msg_clear(struct queue_msg *m)
{
	for (size_t i = 0; i < m->nrcpts; i++) {
		free(m->rcpts[i].address);
		free(m->rcpts[i].transport);
		free(m->rcpts[i].last);
	}
	free(m->rcpts);
	free(m->sender);
	free(m->path);
	memset(m, 0, sizeof(*m));
}

int
queue_msg_read(const char *queue_dir, const char *id, struct queue_msg *m,
    const char **error_r)
{
	char *line = NULL, *spath;
	size_t cap = 0;
	ssize_t n;
	FILE *fp;
	int lineno = 0;

	memset(m, 0, sizeof(*m));
	if (!queue_id_valid(id)) {
		*error_r = "bad queue id";
		return -1;
	}
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->path = xasprintf("%s/incoming/%s", queue_dir, id);
	fp = fopen(m->path, "r");
	if (fp == NULL) {
		queue_msg_clear(m);
		if (errno == ENOENT)
			return 0;
		return err_fail(error_r, errno, "%s: %s", id,
		    strerror(errno));
	}
	while ((n = getline(&line, &cap, fp)) > 0) {
		lineno++;
		if (line[n - 1] == '\n')
			line[--n] = '\0';
		if (n == 0)
			break;
		if (lineno == 1) {
			if (strcmp(line, "petrel-queue 1") != 0)
				goto bad;
		} else if (strncmp(line, "id ", 3) == 0) {
			continue;
		} else if (strncmp(line, "arrival ", 8) == 0) {
			m->arrival = strtoll(line + 8, NULL, 10);
		} else if (strncmp(line, "sender ", 7) == 0) {
			free(m->sender);
			m->sender = xstrdup(line + 7);
		} else if (strcmp(line, "sender") == 0) {
			free(m->sender);
			m->sender = xstrdup("");
		} else if (strncmp(line, "rcpt ", 5) == 0) {
			char *addr = line + 5, *sp = strchr(addr, ' ');
			struct queue_entry *e;

			if (sp == NULL)
				goto bad;
			*sp = '\0';
			m->rcpts = xrealloc(m->rcpts, (m->nrcpts + 1) *
			    sizeof(*m->rcpts));
			e = &m->rcpts[m->nrcpts++];
			memset(e, 0, sizeof(*e));
			e->address = xstrdup(addr);
			e->transport = xstrdup(strcmp(sp + 1, "-") == 0 ? "" :
			    sp + 1);
			e->status = QR_PENDING;
			e->next = m->arrival;
			e->last = xstrdup("");
		} else {
			goto bad;
		}
	}
	if (m->sender == NULL || m->nrcpts == 0)
		goto bad;
	m->body_offset = ftell(fp);
	fclose(fp);
	fp = NULL;

	spath = xasprintf("%s/state/%s", queue_dir, id);
	fp = fopen(spath, "r");
	free(spath);
	for (size_t i = 0; fp != NULL && i < m->nrcpts &&
	    (n = getline(&line, &cap, fp)) > 0; i++) {
		struct queue_entry *e = &m->rcpts[i];
		char st;
		unsigned att;
		long long next;
		int off = 0;

		if (line[n - 1] == '\n')
			line[--n] = '\0';
		if (sscanf(line, "%c %u %lld %n", &st, &att, &next, &off) < 3 ||
		    (st != QR_PENDING && st != QR_SENT && st != QR_BOUNCED))
			continue;	/* keep the defaults: retry */
		e->status = st;
		e->attempts = att;
		e->next = next;
		free(e->last);
		e->last = xstrdup(off > 0 ? line + off : "");
	}
	if (fp != NULL)
		fclose(fp);
	free(line);
	return 1;
bad:
	err_fail(error_r, ERR_SYNTAX, "%s: malformed queue file (line %d)", id,
	    lineno);
	if (fp != NULL)
		fclose(fp);
	free(line);
	queue_msg_clear(m);
	return -1;
}

int
queue_state_write(const char *queue_dir, const struct queue_msg *m,
    const char **error_r)
{
	char *tmp = xasprintf("%s/tmp/%s.state", queue_dir, m->id);
	char *final = xasprintf("%s/state/%s", queue_dir, m->id);
	str_t out = STR_INIT;
	int fd, ret = -1;

	for (size_t i = 0; i < m->nrcpts; i++) {
		const struct queue_entry *e = &m->rcpts[i];

		str_printf(&out, "%c %u %lld ", e->status, e->attempts, e->next);
		/* One line: no CR/LF from remote replies. */
		for (const char *p = e->last; *p; p++)
			str_append_c(&out, *p == '\n' || *p == '\r' ? ' ' : *p);
		str_append_c(&out, '\n');
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0 && geteuid() == 0) {
		/* Written by root (petrel queue flush): the state stays the
		 * queue manager's, who owns the message. */
		struct stat st;

		if (stat(m->path, &st) == 0 &&
		    fchown(fd, st.st_uid, st.st_gid) < 0) {
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0 || write_full(fd, out.data, out.len) < 0 || fsync(fd) < 0 ||
	    close(fd) < 0 || rename(tmp, final) < 0) {
		err_fail(error_r, errno, "state %s: %s", m->id,
		    strerror(errno));
		unlink(tmp);
	} else {
		ret = 0;
	}
	str_free(&out);
	free(tmp);
	free(final);
	return ret;
}

int
queue_remove(const char *queue_dir, const char *id)
{
	char *p = xasprintf("%s/incoming/%s", queue_dir, id);
	char *st = xasprintf("%s/state/%s", queue_dir, id);
	int r = 0;

	if (unlink(p) < 0 && errno != ENOENT)
		r = -1;
	if (unlink(st) < 0 && errno != ENOENT)
		r = -1;
	free(p);
	free(st);
	return r;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
queue_list(const char *queue_dir, char ***ids_r, size_t *n_r,
    const char **error_r)
{
	char *path = xasprintf("%s/incoming", queue_dir);
	DIR *d = opendir(path);
	struct dirent *de;
	char **ids = NULL;
	size_t n = 0;

	if (d == NULL && errno == ENOENT) {
		free(path);		/* no queue yet: an empty one */
		*ids_r = NULL;
		*n_r = 0;
		return 0;
	}
	if (d == NULL) {
		err_fail(error_r, errno, "%s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	free(path);
	while ((de = readdir(d)) != NULL) {
		if (!queue_id_valid(de->d_name))
			continue;
		ids = xrealloc(ids, (n + 1) * sizeof(*ids));
		ids[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (n > 1)
		qsort(ids, n, sizeof(*ids), cmp_str);
	*ids_r = ids;
	*n_r = n;
	return 0;
}

void
queue_list_free(char ***ids, size_t n)
{
	if (*ids == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free((*ids)[i]);
	free(*ids);
	*ids = NULL;
}
