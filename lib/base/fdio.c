/*
 * fdio.c: complete writes to and whole-file reads from descriptors, and
 * the directory fsync that makes a new directory entry durable.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/fdio.h"

int
write_full(int fd, const void *data, size_t len)
{
	const char *p = data;

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
send_full(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t w = send(fd, p, len, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int
recv_full(int fd, void *data, size_t len)
{
	char *p = data;
	size_t got = 0;

	while (got < len) {
		ssize_t r = recv(fd, p + got, len - got, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0 && got == 0)
			return 0;
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 1;
}

int
read_fd_all(int fd, char **data_r, size_t *len_r, struct stat *st_r)
{
	size_t got = 0;
	char *buf;

	if (fstat(fd, st_r) < 0)
		return -1;
	buf = xmalloc((size_t)st_r->st_size + 1);
	while (got < (size_t)st_r->st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st_r->st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;

			free(buf);
			errno = e;
			return -1;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	buf[got] = '\0';
	*data_r = buf;
	*len_r = got;
	return 0;
}

int
fsync_dir(const char *dir, const char **error_r)
{
	int fd, saved;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1) {
		saved = errno;
		err_fail(error_r, saved, "open(%s) failed: %s", dir,
		    strerror(saved));
		errno = saved;
		return -1;
	}
	if (fsync(fd) == -1 && errno != EINVAL) {
		saved = errno;
		close(fd);
		err_fail(error_r, saved, "fsync(%s) failed: %s", dir,
		    strerror(saved));
		errno = saved;
		return -1;
	}
	close(fd);
	return 0;
}
