/*
 * test_fdio.c: unit tests for lib/base/fdio.c -- fsync_dir() on a
 * directory, on a missing path and on a regular file (the error text,
 * the code in lib/base/err and errno), and write_full()/read_fd_all()
 * round trips.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/fdio.h"
#include "tests/unit/test.h"

static void
test_fsync_dir(void)
{
	char *missing = xasprintf("%s/no-such-dir", test_tmpdir());
	char *file = xasprintf("%s/a-file", test_tmpdir());
	const char *error = NULL;
	int fd;

	test_begin("fsync_dir: a directory, a missing one, a file");
	err_clear();
	test_assert(fsync_dir(test_tmpdir(), &error) == 0);
	test_assert(error == NULL);
	test_assert(err_last_code() == ERR_NONE);

	errno = 0;
	test_assert(fsync_dir(missing, &error) == -1);
	test_assert(errno == ENOENT);
	test_assert(err_last_code() == ENOENT);
	test_assert(error != NULL && strstr(error, missing) != NULL);
	test_assert(error != NULL && strstr(error, strerror(ENOENT)) != NULL);

	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	test_assert(fd >= 0);
	if (fd >= 0)
		close(fd);
	error = NULL;
	test_assert(fsync_dir(file, &error) == -1);
	test_assert(err_last_code() == ENOTDIR);
	test_assert(error != NULL && strstr(error, file) != NULL);
	/* NULL error_r is allowed. */
	test_assert(fsync_dir(missing, NULL) == -1);
	free(missing);
	free(file);
	test_end();
}

static void
test_write_read(void)
{
	char *path = xasprintf("%s/rw", test_tmpdir());
	char *data = NULL;
	size_t len = 0;
	struct stat st;
	int fd;

	test_begin("write_full + read_fd_all round trip");
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	test_assert(fd >= 0);
	test_assert(write_full(fd, "hello\n", 6) == 0);
	test_assert(lseek(fd, 0, SEEK_SET) == 0);
	test_assert(read_fd_all(fd, &data, &len, &st) == 0);
	test_assert(len == 6 && st.st_size == 6);
	test_assert_streq(data, "hello\n");
	free(data);
	close(fd);
	free(path);
	test_end();
}

int
main(void)
{
	test_fsync_dir();
	test_write_read();
	return test_done();
}
