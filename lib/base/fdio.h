#ifndef PETREL_FDIO_H
#define PETREL_FDIO_H
/* write(2) until everything is written (retrying EINTR and short
 * writes). 0 ok, -1 with errno set. */
#include <stddef.h>
#include <sys/stat.h>

int write_full(int fd, const void *data, size_t len);

/* The same for a socket, with MSG_NOSIGNAL: a peer that went away is
 * -1 (EPIPE), not a SIGPIPE. 0 ok, -1 with errno set. */
int send_full(int fd, const void *data, size_t len);

/* recv(2) exactly len bytes (retrying EINTR and short reads): 1, 0 on
 * end of stream before any byte, -1 on an error, a timeout or end of
 * stream in the middle. */
int recv_full(int fd, void *data, size_t len);

/* The whole file open on fd, as large as fstat() says (into *st_r),
 * read (retrying EINTR and short reads) into *data_r, malloc'd and
 * NUL-terminated; *len_r is what was read (less if the file shrank).
 * 0 ok, -1 with errno set (nothing to free). */
int read_fd_all(int fd, char **data_r, size_t *len_r, struct stat *st_r);

/* fsync(2) a directory, so that the entries made in it (a link, a
 * rename, a new file) are on stable storage. A file system that cannot
 * sync directories (EINVAL: some FUSE and tmpfs versions) counts as
 * done. 0 ok, -1 with the reason in *error_r, its errno as the code
 * (lib/base/err) and errno still set. */
int fsync_dir(const char *dir, const char **error_r);

#endif
