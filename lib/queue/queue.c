/*
 * queue.c: writing the outbound queue (format in queue.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/queue/queue.h"
#include "lib/queue/spool.h"

static _Thread_local char queue_err[512];

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

static int
fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r;

	if (fd < 0)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

int
queue_dirs_make(const char *queue_dir, const char **error_r)
{
	static const char *const subs[] = { "", "/tmp", "/incoming" };

	for (size_t i = 0; i < 3; i++) {
		char *p = xasprintf("%s%s", queue_dir, subs[i]);

		if (mkdir(p, 0750) < 0 && errno != EEXIST) {
			snprintf(queue_err, sizeof(queue_err),
			    "cannot create %s: %s", p, strerror(errno));
			free(p);
			*error_r = queue_err;
			return -1;
		}
		free(p);
	}
	return 0;
}

static int
write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		len -= (size_t)w;
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
		snprintf(queue_err, sizeof(queue_err), "cannot create %s: %s",
		    tmp, strerror(errno));
		goto out;
	}
	if (write_all(fd, env.data, env.len) < 0 ||
	    spool_copy_to(body, fd, &err) < 0 || fsync(fd) < 0) {
		snprintf(queue_err, sizeof(queue_err), "cannot write %s: %s",
		    tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd) < 0 || rename(tmp, final) < 0 || fsync_dir(dir) < 0) {
		snprintf(queue_err, sizeof(queue_err), "cannot commit %s: %s",
		    final, strerror(errno));
		unlink(tmp);
		unlink(final);
		goto out;
	}
	ret = 0;
out:
	if (ret < 0)
		*error_r = queue_err;
	str_free(&env);
	free(tmp);
	free(final);
	free(dir);
	return ret;
}
