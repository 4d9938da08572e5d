#ifndef PETREL_CONFIG_H
#define PETREL_CONFIG_H
/* petrel.conf: "key = value" lines, '#' comments, like Postfix main.cf.
 * Every key is declared in one table (config.c) with its type and default;
 * unknown keys and malformed lines are errors that name the line number.
 * -o key=value overrides are applied after the file. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;

/* Find the configuration file: explicit path, else $PETREL_CONF, else
 * ./petrel.conf, else /etc/petrel/petrel.conf. Returns the path (static
 * storage or the argument) or NULL when none exists and none was named. */
const char *config_locate(const char *explicit_path);

struct config *config_new(void);
void config_free(struct config **cfg);

/* Parse a file; 0 ok, -1 with *error_r set (caller frees). */
int config_load_file(struct config *cfg, const char *path, char **error_r);
/* The same from an open descriptor (closed here); path names it in
 * errors. The text is wiped from memory once parsed. */
int config_load_fd(struct config *cfg, int fd, const char *path,
    char **error_r);
/* Parse text as a config file named `name` (used by tests/fuzzing). */
int config_load_text(struct config *cfg, const char *name, const char *text,
    size_t len, char **error_r);
/* Read a file as config_load_file does, but go on past a line whose key
 * or value is refused (unknown, retired, malformed value): every such
 * line is reported, one "\n"-ended line each, in *problems_r (caller
 * frees). Returns their count, or -1 with *error_r when the file cannot
 * be read or is malformed beyond a key (a line too long, a NUL byte). */
int config_check_file(struct config *cfg, const char *path, char **problems_r,
    char **error_r);

/* A key that is no more. Renamed: `to` is the key that took its place,
 * with the same meaning and values. Removed: `to` is NULL and `why` says
 * what to do instead. A key whose meaning changes gets a new name and the
 * old one an entry here, so that no file silently means something else:
 * loading a file or -o that sets a retired key fails with a line naming
 * it and what to write instead. */
struct config_retired {
	const char *name;
	const char *to;
	const char *why;
};

/* Entries consulted after the built-in table (NULL: none); for tests.
 * The array must outlive its use. */
void config_retired_extra(const struct config_retired *extra, size_t n);
/* The retired entry for name (built-in first), or NULL. */
const struct config_retired *config_retired_find(const char *name);
/* The built-in table, for listing and checking. */
size_t config_retired_count(void);
const struct config_retired *config_retired_get(size_t i);

/* Apply "key=value" (from -o); empty value allowed. */
int config_override(struct config *cfg, const char *assignment, char **error_r);
/* Set a key programmatically (validated like a file line). */
int config_set(struct config *cfg, const char *key, const char *value,
    char **error_r);

/* Value of a key (the default when unset). Panics on an undeclared key:
 * that is a programming error, not a user error. */
const char *config_get(const struct config *cfg, const char *key);
/* The default of key under the schema preset (the "schema" key's
 * values): what config_get gives when the key is not set. NULL for an
 * undeclared key. */
const char *config_preset(const char *schema, const char *key);
uint64_t config_get_uint(const struct config *cfg, const char *key);
/* A comma-separated list of exactly n ports (1-65535) into ports (may
 * be NULL: only check). 0 ok, -1 malformed. */
int config_port_list(const char *value, size_t n, unsigned *ports);
/* Port idx of a port-list key (backend_ports: 0 LMTP, 1 IMAP, 2 POP3,
 * 3 ManageSieve); 0 if there is none. */
unsigned config_get_port(const struct config *cfg, const char *key,
    size_t idx);
bool config_is_set(const struct config *cfg, const char *key);
/* The path of the file loaded, or NULL. */
const char *config_path(const struct config *cfg);

/* Iterate over declared keys (for `petrel init` writing a file). */
size_t config_key_count(void);
const char *config_key_name(size_t i);
/* The table's index of a key, -1 when it is not declared. */
int config_key_find(const char *name);
/* A declared key's default, help paragraph (plain text), and the value
 * `petrel init` writes for a new instance when it is not the default
 * (NULL: the default). */
const char *config_key_default(size_t i);
const char *config_key_help(size_t i);
const char *config_key_init(size_t i);
/* What a value looks like ("one of a|b", ...), in static storage or buf. */
const char *config_key_syntax(size_t i, char *buf, size_t bufsize);

/* A listener list "host:port[,host:port...]" ("[::1]:port" for IPv6;
 * empty host = any address). Empty value = no listeners. */
struct config_listen {
	char *host;
	unsigned port;
};
int config_parse_listen(const char *value, struct config_listen **list_r,
    size_t *n_r, char **error_r);
void config_listen_free(struct config_listen **list, size_t n);

#endif
