#ifndef PETREL_CLI_H
#define PETREL_CLI_H
/* The admin command line: one file per noun (cmd_*.c), shared helpers
 * here. Every failure is one line "petrel: ..." on stderr and exit 1. */
#include <stdbool.h>
#include <stdint.h>

#include "lib/base/str.h"
#include "lib/config/context.h"

struct config;
struct dir;
struct dir_schema;

#define CLI_MAX_POS 8
#define CLI_MAX_OPT 8

/* A subcommand's accepted options: "name" (flag) or "name=" (takes a
 * value). Parsed values are looked up with cli_opt(). */
struct cli_args {
	const char *pos[CLI_MAX_POS];
	int npos;
	const char *opt_name[CLI_MAX_OPT];
	const char *opt_val[CLI_MAX_OPT];
	int nopt;
};

void cli_die(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse argv against the allowed options (NULL-terminated list) and
 * expect between min_pos and max_pos positional arguments. */
void cli_parse(int argc, char **argv, const char *const *allowed,
    int min_pos, int max_pos, const char *usage, struct cli_args *a);
const char *cli_opt(const struct cli_args *a, const char *name);
bool cli_flag(const struct cli_args *a, const char *name);

/* The directory, opened and connected (dies on failure). */
struct dir *cli_dir(struct petrel_ctx *cli);
/* The configured layout (schema, lib/dir/schema.h). */
const struct dir_schema *cli_schema(struct petrel_ctx *cli);
/* Die unless the admin commands write the configured layout (`what`
 * names the command). */
void cli_schema_writable(struct petrel_ctx *cli, const char *what);
/* Run a statement; dies on error (naming `what`). */
struct dir_rows *cli_query(struct petrel_ctx *cli, const char *what, const char *sql,
    const char *const *kv);
/* Read one line (the password) from stdin; dies if empty when !allow_empty. */
char *cli_read_password(bool allow_empty);
/* Full path of a maildir column value (relative = under mail_root). */
char *cli_maildir_path(struct petrel_ctx *cli, const char *maildir);
/* Is the domain hosted (query_domain finds it)? Dies on errors. */
bool cli_domain_hosted(struct petrel_ctx *cli, const char *domain);
/* Print a finished line / JSON document. */
void cli_print(const str_t *out);
/* Is s valid UTF-8 without control characters (C0, DEL, C1)? */
bool cli_text_ok(const char *s);
/* Die unless cli_text_ok(s); `what` names the argument (s itself is not
 * echoed: it may hold terminal escape codes). */
void cli_check_text(const char *what, const char *s);
/* Append s as a JSON string that is always valid JSON and UTF-8, whatever
 * a database holds: control characters (C0, DEL, C1) escaped, every byte of
 * invalid UTF-8 replaced by U+FFFD. */
void cli_json_str(str_t *out, const char *s);
/* LIKE pattern "%@domain" with %, _ and ! escaped by '!'. */
char *cli_like_domain(const char *domain);

int cmd_init(struct petrel_ctx *cli, int argc, char **argv);
int cmd_check(struct petrel_ctx *cli, int argc, char **argv);
int cmd_domain(struct petrel_ctx *cli, int argc, char **argv);
int cmd_user(struct petrel_ctx *cli, int argc, char **argv);
/* petrel user move (cmd_user_move.c) */
int cmd_user_move(struct petrel_ctx *cli, int argc, char **argv);
int cmd_alias(struct petrel_ctx *cli, int argc, char **argv);
int cmd_hash(struct petrel_ctx *cli, int argc, char **argv);
int cmd_maildirmake(struct petrel_ctx *cli, int argc, char **argv);
int cmd_serve(struct petrel_ctx *cli, int argc, char **argv);
int cmd_queue(struct petrel_ctx *cli, int argc, char **argv);
int cmd_migrate(struct petrel_ctx *cli, int argc, char **argv);
int cmd_dkim(struct petrel_ctx *cli, int argc, char **argv);
int cmd_dns(struct petrel_ctx *cli, int argc, char **argv);
int cmd_dmarc(struct petrel_ctx *cli, int argc, char **argv);
int cmd_tlsrpt(struct petrel_ctx *cli, int argc, char **argv);
int cmd_help(struct petrel_ctx *cli, int argc, char **argv);
int cmd_status(struct petrel_ctx *cli, int argc, char **argv);
int cmd_sieve(struct petrel_ctx *cli, int argc, char **argv);

/* Reports (cmd_dmarc.c; petrel dmarc report, petrel tlsrpt report) */
#define CLI_REPORT_RCPTS_MAX 8
/* Become the server's account (user/group) when run as root: before the
 * state database is opened, so that its -wal and -shm files and the queue
 * files stay the server's. */
void cli_become_user(struct petrel_ctx *cli);
/* in gzipped (RFC 1952) appended to out; dies when zlib fails. */
void cli_gzip(const str_t *in, str_t *out);
/* Queue msg (LF line ends, headers included) from `from` to the nd
 * addresses (at most CLI_REPORT_RCPTS_MAX) through the one delivery path
 * (DKIM-signed when from's domain has a key); the queue id in qid. 0, or
 * -1 with *error_r (malloc'd). */
int cli_queue_report(struct petrel_ctx *cli, const char *from,
    const char *const *addrs, size_t nd, const str_t *msg, char qid[17],
    char **error_r);

/* Schema creation shared by init (and tests): idempotent. */
int cli_schema_create(struct petrel_ctx *cli, const char **error_r);

#endif
