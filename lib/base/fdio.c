/*
 * fdio.c: complete writes to file descriptors.
 */
#include <errno.h>
#include <unistd.h>

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
