#ifndef PETREL_WRITABLE_H
#define PETREL_WRITABLE_H
/*
 * The maildirs petrel cannot write (SPEC 6.1, per-user uid/gid): a
 * howto's tree owned per user (uid 5001, mode 770) defers every delivery
 * to such a user. `petrel check` names every one, and `petrel serve`
 * refuses to start while there is one, instead of answering 451 at run
 * time. Judged as the workers' account (`user`/`group`), which delivers
 * and serves the mailboxes.
 */
#include <stdbool.h>
#include <stddef.h>

struct config;
struct dir;

/* Users walked at most (the users table is read with LIMIT this + 1);
 * beyond it the report says that the rest was not checked. */
#define WRITABLE_USERS_MAX 100000

struct writable_report {
	char **paths;		/* maildirs not writable, in users order */
	size_t npaths;
	size_t users;		/* users walked */
	bool truncated;		/* more users than WRITABLE_USERS_MAX */
	char *skipped;		/* why nothing was checked (NULL: checked) */
};

/* Walk the users of the layout `schema` (lib/dir/schema.h) with this
 * process's ids: DIR_OK, or a DIR_* error with *error_r (the
 * directory's). */
int writable_walk(struct dir *dir, const char *schema, const char *mail_root,
    size_t max, struct writable_report *rep, const char **error_r);

/* Open the directory of cfg in a child process that takes the workers'
 * ids (`user`/`group`, when running as root) and walk it there; the
 * calling process never opens the directory. 0 (rep filled; rep->skipped
 * set when the directory could not be read), -1 when no child could run
 * (*error_r malloc'd). */
int writable_check(const struct config *cfg, struct writable_report *rep,
    char **error_r);

void writable_report_clear(struct writable_report *rep);

#endif
