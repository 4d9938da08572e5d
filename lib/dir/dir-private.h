#ifndef PETREL_DIR_PRIVATE_H
#define PETREL_DIR_PRIVATE_H
/* Driver interface behind lib/dir/dir.h. A driver gets SQL with '?'
 * placeholders and the values in order; it prepares (and may cache) the
 * statement, binds every value as text, and fetches all rows. */
#include "lib/base/str.h"
#include "lib/dir/dir.h"

struct dir_driver {
	const char *name;
	int (*open)(const struct dir_url *url, int flags, void **ctx_r,
	    str_t *error);
	int (*connect)(void *ctx, str_t *error);
	void (*close)(void *ctx);
	int (*query)(void *ctx, const char *sql, const char *const *values,
	    size_t nvalues, struct dir_rows *rows, str_t *error);
	/* Several hosts (NULL: one): how many, and a connection of its own
	 * to host i (its "HOST:PORT" in name), closed at once. */
	size_t (*nhosts)(void *ctx);
	int (*probe)(void *ctx, size_t i, str_t *name, str_t *error);
	/* NULL: nothing to do (dir_read_begin in dir.h). */
	void (*read_begin)(void *ctx);
	void (*read_end)(void *ctx);
};

extern const struct dir_driver dir_driver_sqlite;
extern const struct dir_driver dir_driver_mariadb;

/* Append a row of ncols cells (each malloc'd or NULL) to rows. */
void dir_rows_add(struct dir_rows *rows, char **cells);

#endif
