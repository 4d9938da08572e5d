#ifndef PETREL_FDIO_H
#define PETREL_FDIO_H
/* write(2) until everything is written (retrying EINTR and short
 * writes). 0 ok, -1 with errno set. */
#include <stddef.h>

int write_full(int fd, const void *data, size_t len);

#endif
