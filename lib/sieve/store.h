#ifndef PETREL_SIEVE_STORE_H
#define PETREL_SIEVE_STORE_H
/*
 * store.c: a user's Sieve scripts on disk, in Dovecot/Pigeonhole's layout
 * so that migrated users keep their rules: sieve_dir (default %h/sieve)
 * holds NAME.sieve files; the active one is the link %h/.dovecot.sieve
 * into it (relative when sieve_dir is under %h, as Pigeonhole makes it).
 * Used by `petrel sieve list|show|put|activate|deactivate|delete` and by
 * ManageSieve (managesieve/). Error codes (err_last_code) tell the
 * failures apart: ENOENT no such script, EEXIST the name is taken, EBUSY
 * the script is active, ERR_SYNTAX a bad name, other errno values the
 * file system. Every change is made durable before it returns:
 * a script is written to a temporary file, synced and renamed; the link
 * is made beside and renamed over the old one; the directories synced.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

/* Longest script name (RFC 5804 1.6 leaves it to the server). */
#define SIEVE_NAME_MAX 128

/* %h (home), %u (address), %n (its local part), %d (its domain) and %%
 * in a configured path such as sieve_dir. */
char *sieve_path_expand(const char *pat, const char *home,
    const char *address);

/* A script name: 1..SIEVE_NAME_MAX octets of UTF-8 with no control
 * character (RFC 5804 1.6), no '/' and not starting with '.'. */
bool sieve_name_valid(const char *name);

struct sieve_store {
	char *dir;	/* sieve_dir, expanded */
	char *home;	/* %h */
	uid_t uid;	/* owner of what is created (the home's) */
	gid_t gid;
	unsigned max_scripts;	/* sieve_max_scripts; 0: no limit */
	uint64_t max_storage;	/* sieve_max_storage (bytes); 0: none */
};

/* The store of a user: dir from the sieve_dir pattern. */
void sieve_store_init(struct sieve_store *st, const char *dir_pattern,
    const char *home, const char *address);
void sieve_store_clear(struct sieve_store *st);

/* The scripts' names (sorted, malloc'd; none when the directory does not
 * exist) and the active one's name (NULL when none or when the link does
 * not lead to a script of dir). 0 or -1. */
int sieve_store_list(const struct sieve_store *st, char ***names_r,
    size_t *n_r, char **active_r, const char **error_r);
void sieve_names_free(char **names, size_t n);
/* The active script's name, or NULL. */
char *sieve_store_active(const struct sieve_store *st);
/* The path of script `name` (which must be valid). */
char *sieve_store_path(const struct sieve_store *st, const char *name);
/* Would a script `name` of size bytes fit the limits (max_scripts counts
 * a new name only; max_storage the scripts' sizes with this one's
 * replacing its old one)? 0, or -1 with ERR_TOO_MANY, ERR_TOO_BIG or the
 * directory's error. */
int sieve_store_space(const struct sieve_store *st, const char *name,
    uint64_t size, const char **error_r);
/* Store text as script `name` (replacing it) when sieve_store_space()
 * allows it; the caller has checked it parses. 0 or -1. */
int sieve_store_put(const struct sieve_store *st, const char *name,
    const char *text, size_t len, const char **error_r);
/* Make `name` the active script, or none when name is NULL. 0, or -1
 * (no such script, or a file in the way that is not a link). */
int sieve_store_activate(const struct sieve_store *st, const char *name,
    const char **error_r);
/* Delete script `name`; the active script is refused (RFC 5804 2.10,
 * EBUSY). 0 or -1. */
int sieve_store_delete(const struct sieve_store *st, const char *name,
    const char **error_r);
/* Rename script `from` to `to`, which must not exist (EEXIST); the
 * active script stays active under its new name (RFC 5804 2.11.1). 0 or
 * -1. */
int sieve_store_rename(const struct sieve_store *st, const char *from,
    const char *to, const char **error_r);

#endif
