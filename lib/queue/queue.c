/*
 * queue.c: writing the outbound queue (format in queue.h) and reading it
 * back. The reader trusts nothing about the file: lines are bounded
 * (QUEUE_LINE_MAX, QUEUE_STATE_LINE_MAX), numbers checked, and a file
 * cut short or garbled is refused with a message naming the line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
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
#include "lib/base/limits.h"
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
queue_write(const char *queue_dir, const char *id, const char *sender,
    unsigned flags, const struct queue_rcpt *rcpts, size_t nrcpts,
    const char *prefix, struct spool *body, struct queue_file *qf,
    const char **error_r)
{
	str_t env = STR_INIT;
	const char *err;
	int ret = -1;

	qf->tmp = xasprintf("%s/tmp/%s", queue_dir, id);
	qf->final = xasprintf("%s/incoming/%s", queue_dir, id);
	qf->dir = xasprintf("%s/incoming", queue_dir);
	qf->fd = -1;
	str_printf(&env, "petrel-queue 1\nid %s\narrival %lld\nsender %s\n",
	    id, (long long)time(NULL), sender);
	if (flags & QUEUE_F_REQUIRETLS)
		str_append(&env, "requiretls\n");
	if (flags & QUEUE_F_TLS_OPTIONAL)
		str_append(&env, "tls-optional\n");
	for (size_t i = 0; i < nrcpts; i++)
		str_printf(&env, "rcpt %s %s\n", rcpts[i].address,
		    rcpts[i].transport[0] ? rcpts[i].transport : "-");
	str_append_c(&env, '\n');
	qf->body_offset = (off_t)env.len;
	if (prefix != NULL)
		str_append(&env, prefix);

	qf->fd = open(qf->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (qf->fd < 0) {
		err_fail(error_r, errno, "cannot create %s: %s", qf->tmp,
		    strerror(errno));
		goto out;
	}
	if (write_full(qf->fd, env.data, env.len) < 0 ||
	    spool_copy_to(body, qf->fd, &err) < 0) {
		err_fail(error_r, errno, "cannot write %s: %s", qf->tmp,
		    strerror(errno));
		goto out;
	}
	ret = 0;
out:
	str_free(&env);
	if (ret < 0)
		queue_discard(qf);
	return ret;
}

int
queue_publish(struct queue_file *qf, const char **error_r)
{
	const char *err;
	int ret = -1;

	if (fsync(qf->fd) < 0) {
		err_fail(error_r, errno, "cannot write %s: %s", qf->tmp,
		    strerror(errno));
		goto out;
	}
	if (close(qf->fd) < 0) {
		qf->fd = -1;
		err_fail(error_r, errno, "cannot write %s: %s", qf->tmp,
		    strerror(errno));
		goto out;
	}
	qf->fd = -1;
	if (rename(qf->tmp, qf->final) < 0 || fsync_dir(qf->dir, &err) < 0) {
		err_fail(error_r, errno, "cannot commit %s: %s", qf->final,
		    strerror(errno));
		unlink(qf->final);
		goto out;
	}
	ret = 0;
out:
	if (ret < 0)
		queue_discard(qf);
	else
		queue_file_free(qf);
	return ret;
}

void
queue_discard(struct queue_file *qf)
{
	if (qf->tmp != NULL)
		unlink(qf->tmp);
	queue_file_free(qf);
}

void
queue_file_free(struct queue_file *qf)
{
	if (qf->fd >= 0)
		close(qf->fd);
	free(qf->tmp);
	free(qf->final);
	free(qf->dir);
	memset(qf, 0, sizeof(*qf));
	qf->fd = -1;
}

int
queue_enqueue(const char *queue_dir, const char *id, const char *sender,
    unsigned flags, const struct queue_rcpt *rcpts, size_t nrcpts,
    const char *prefix, struct spool *body, const char **error_r)
{
	struct queue_file qf;

	if (queue_write(queue_dir, id, sender, flags, rcpts, nrcpts, prefix,
	    body, &qf, error_r) < 0)
		return -1;
	return queue_publish(&qf, error_r);
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

/* Read one line of at most max octets (without its LF) into buf (which
 * has room for max + 1). Returns its length, -1 at EOF before any octet,
 * -2 for a line too long (consumed through its LF). *lf_r: it ended in LF
 * (not at the end of the file). */
static ssize_t
read_line(FILE *fp, char *buf, size_t max, bool *lf_r)
{
	size_t n = 0;
	bool over = false;
	int c;

	*lf_r = false;
	while ((c = getc_unlocked(fp)) != EOF) {
		if (c == '\n') {
			*lf_r = true;
			break;
		}
		if (n < max)
			buf[n++] = (char)c;
		else
			over = true;
	}
	buf[n] = '\0';
	if (over)
		return -2;
	if (c == EOF && n == 0)
		return -1;
	return (ssize_t)n;
}

/* A decimal number without sign, all of s[0..len), at most max. */
static bool
parse_number(const char *s, size_t len, unsigned long long max,
    unsigned long long *v_r)
{
	unsigned long long v = 0;

	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return false;
		d = (unsigned)(s[i] - '0');
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*v_r = v;
	return true;
}

/* One state line "S ATTEMPTS NEXT [LAST]" into e; false (e unchanged)
 * when malformed. */
static bool
parse_state_line(const char *line, size_t n, struct queue_entry *e)
{
	const char *p = line, *end = line + n, *sp;
	unsigned long long att, next;

	if (n < 5 || (p[0] != QR_PENDING && p[0] != QR_SENT &&
	    p[0] != QR_BOUNCED) || p[1] != ' ')
		return false;
	p += 2;
	if ((sp = memchr(p, ' ', (size_t)(end - p))) == NULL ||
	    !parse_number(p, (size_t)(sp - p), UINT_MAX, &att))
		return false;
	p = sp + 1;
	if ((sp = memchr(p, ' ', (size_t)(end - p))) == NULL)
		sp = end;
	if (!parse_number(p, (size_t)(sp - p), LLONG_MAX, &next))
		return false;
	e->status = line[0];
	e->attempts = (unsigned)att;
	e->next = (long long)next;
	free(e->last);
	e->last = xstrdup(sp < end ? sp + 1 : "");
	return true;
}

int
queue_msg_read(const char *queue_dir, const char *id, struct queue_msg *m,
    const char **error_r)
{
	char *line = xmalloc(QUEUE_STATE_LINE_MAX + 1), *spath;
	const char *why = "malformed";
	ssize_t n;
	FILE *fp;
	int lineno = 0;
	bool lf, have_arrival = false, ended = false;

	memset(m, 0, sizeof(*m));
	if (!queue_id_valid(id)) {
		free(line);
		*error_r = "bad queue id";
		return -1;
	}
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->path = xasprintf("%s/incoming/%s", queue_dir, id);
	fp = fopen(m->path, "r");
	if (fp == NULL) {
		free(line);
		queue_msg_clear(m);
		if (errno == ENOENT)
			return 0;
		return err_fail(error_r, errno, "%s: %s", id,
		    strerror(errno));
	}
	/* The envelope: lines up to the empty one that ends it. A file
	 * cut short (no empty line, a last line without LF) is refused. */
	while ((n = read_line(fp, line, QUEUE_LINE_MAX, &lf)) != -1) {
		lineno++;
		if (n == -2) {
			why = "line too long";
			goto bad;
		}
		if (!lf) {
			why = "truncated";
			goto bad;
		}
		if (memchr(line, '\0', (size_t)n) != NULL)
			goto bad;
		if (n == 0) {
			ended = true;
			break;
		}
		if (lineno == 1) {
			if (strcmp(line, "petrel-queue 1") != 0)
				goto bad;
		} else if (strncmp(line, "id ", 3) == 0) {
			if (strcmp(line + 3, id) != 0) {
				why = "another message's id";
				goto bad;
			}
		} else if (strncmp(line, "arrival ", 8) == 0) {
			unsigned long long a;

			if (!parse_number(line + 8, (size_t)n - 8, LLONG_MAX,
			    &a))
				goto bad;
			m->arrival = (long long)a;
			have_arrival = true;
		} else if (strncmp(line, "sender ", 7) == 0) {
			free(m->sender);
			m->sender = xstrdup(line + 7);
		} else if (strcmp(line, "sender") == 0) {
			free(m->sender);
			m->sender = xstrdup("");
		} else if (strcmp(line, "requiretls") == 0) {
			m->requiretls = true;
		} else if (strcmp(line, "tls-optional") == 0) {
			m->tls_optional = true;
		} else if (strncmp(line, "rcpt ", 5) == 0) {
			char *addr = line + 5, *sp = strchr(addr, ' ');
			struct queue_entry *e;

			if (sp == NULL || sp == addr || sp[1] == '\0' ||
			    strchr(sp + 1, ' ') != NULL)
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
			e->last = xstrdup("");
		} else {
			goto bad;
		}
	}
	if (!ended) {
		why = "truncated";
		goto bad;
	}
	if (lineno == 1 || m->sender == NULL || m->nrcpts == 0 ||
	    !have_arrival)
		goto bad;
	for (size_t i = 0; i < m->nrcpts; i++)
		m->rcpts[i].next = m->arrival;
	m->body_offset = ftell(fp);
	fclose(fp);
	fp = NULL;

	/* The state: one line per recipient, in order; a line that does
	 * not parse (or is missing) leaves its recipient pending, due now. */
	spath = xasprintf("%s/state/%s", queue_dir, id);
	fp = fopen(spath, "r");
	free(spath);
	for (size_t i = 0; fp != NULL && i < m->nrcpts &&
	    (n = read_line(fp, line, QUEUE_STATE_LINE_MAX, &lf)) != -1; i++)
		if (n >= 0 && memchr(line, '\0', (size_t)n) == NULL)
			(void)parse_state_line(line, (size_t)n, &m->rcpts[i]);
	if (fp != NULL)
		fclose(fp);
	free(line);
	return 1;
bad:
	err_fail(error_r, ERR_SYNTAX, "%s: malformed queue file (line %d: %s)",
	    id, lineno, why);
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
