#ifndef PETREL_LIMITS_H
#define PETREL_LIMITS_H
/* Every fixed bound in one place, each with its reason. */

/* RFC 5321 4.5.3.1.1/4.5.3.1.2: 64-octet local part, 255-octet domain. */
#define ADDR_LOCAL_MAX 64
#define ADDR_DOMAIN_MAX 255
/* RFC 5321 4.5.3.1.3: a path is at most 256 octets including <>. */
#define ADDR_MAX 254

/* A configuration line longer than this is a mistake, not a setting. */
#define CONFIG_LINE_MAX 8192

/* Password input from stdin (CLI); longer is refused, not truncated. */
#define PASSWORD_MAX 1024

/* Alias expansion: recursion depth before we call it a loop (Postfix
 * virtual_alias_recursion_limit is 1000 expansions, depth 100). */
#define ALIAS_DEPTH_MAX 100
/* A single goto list with more targets than this is refused. */
#define ALIAS_TARGETS_MAX 1000

/* Maildir++ maildirsize: recalculate when the file grows past this
 * (the Maildir++ spec says 5120 bytes). */
#define MAILDIRSIZE_MAX 5120
/* ... or when it is older than this many seconds (15 minutes). */
#define MAILDIRSIZE_MAX_AGE (15 * 60)

/* Maildir++ folder name length (one component after the leading '.'). */
#define MAILDIR_FOLDER_MAX 255

/* maildirsize is read whole into memory; a well-kept one is under
 * MAILDIRSIZE_MAX, so one this large is garbage and gets recalculated. */
#define MAILDIRSIZE_READ_MAX (1024 * 1024)

#endif
