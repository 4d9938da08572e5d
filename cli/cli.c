/*
 * cli.c: helpers shared by the admin commands: argument parsing, error
 * reporting, database access with one-line errors, password input.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/config/config.h"
#include "lib/dir/dir.h"
#include "lib/dir/schema.h"

void
cli_die(const char *fmt, ...)
{
	va_list ap;
	str_t s = STR_INIT;

	va_start(ap, fmt);
	str_append(&s, "petrel: ");
	str_vprintf(&s, fmt, ap);
	va_end(ap);
	/* One line, whatever the message contains. */
	for (size_t i = 0; i < s.len; i++)
		if (s.data[i] == '\n' || s.data[i] == '\r')
			s.data[i] = ' ';
	str_append_c(&s, '\n');
	fflush(stdout);
	(void)!write(STDERR_FILENO, s.data, s.len);
	exit(1);
}

void
cli_warn(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "petrel: warning: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void
cli_parse(int argc, char **argv, const char *const *allowed, int min_pos,
    int max_pos, const char *usage, struct cli_args *a)
{
	memset(a, 0, sizeof(*a));
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i];
		const char *const *o;
		const char *eq;
		size_t nlen;

		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
			if (strcmp(arg, "--") == 0 && i + 1 < argc)
				arg = argv[++i];
			if (a->npos == max_pos || a->npos == CLI_MAX_POS)
				cli_die("unexpected argument '%s' (usage: %s)",
				    arg, usage);
			a->pos[a->npos++] = arg;
			continue;
		}
		arg += 2;
		eq = strchr(arg, '=');
		nlen = eq ? (size_t)(eq - arg) : strlen(arg);
		for (o = allowed; o != NULL && *o != NULL; o++) {
			size_t olen = strcspn(*o, "=");

			if (olen == nlen && strncmp(*o, arg, nlen) == 0)
				break;
		}
		if (o == NULL || *o == NULL)
			cli_die("unknown option --%.*s (usage: %s)", (int)nlen,
			    arg, usage);
		if (a->nopt == CLI_MAX_OPT)
			cli_die("too many options");
		a->opt_name[a->nopt] = *o;
		if ((*o)[strlen(*o) - 1] == '=') {
			if (eq != NULL)
				a->opt_val[a->nopt] = eq + 1;
			else if (i + 1 < argc)
				a->opt_val[a->nopt] = argv[++i];
			else
				cli_die("option --%s needs a value (usage: %s)",
				    arg, usage);
		} else if (eq != NULL) {
			cli_die("option --%.*s takes no value", (int)nlen, arg);
		} else {
			a->opt_val[a->nopt] = "";
		}
		a->nopt++;
	}
	if (a->npos < min_pos)
		cli_die("missing argument (usage: %s)", usage);
}

const char *
cli_opt(const struct cli_args *a, const char *name)
{
	size_t nlen = strlen(name);

	for (int i = a->nopt - 1; i >= 0; i--)
		if (strncmp(a->opt_name[i], name, nlen) == 0 &&
		    (a->opt_name[i][nlen] == '\0' || a->opt_name[i][nlen] == '='))
			return a->opt_val[i];
	return NULL;
}

bool
cli_flag(const struct cli_args *a, const char *name)
{
	return cli_opt(a, name) != NULL;
}

struct dir *
cli_dir(struct petrel_ctx *cli)
{
	char *err = NULL;
	const char *cerr;

	if (cli->dir != NULL)
		return cli->dir;
	if (dir_password_file_load(config_get(cli->cfg,
	    "database_password_file"), &err) < 0)
		cli_die("%s", err);
	if (dir_open(config_get(cli->cfg, "database"), 0, &cli->dir,
	    &err) < 0)
		cli_die("%s", err);
	dir_set_queries(cli->dir, cli->cfg);
	if (dir_connect(cli->dir, &cerr) < 0)
		cli_die("database unreachable: %s", cerr);
	return cli->dir;
}

const struct dir_schema *
cli_schema(struct petrel_ctx *cli)
{
	const struct dir_schema *sc = dir_schema_get(config_get(cli->cfg,
	    "schema"));

	return sc != NULL ? sc : dir_schema_get("postfix-howto");
}

void
cli_schema_writable(struct petrel_ctx *cli, const char *what)
{
	const struct dir_schema *sc = cli_schema(cli);

	if (!sc->writable)
		cli_die("%s writes the postfix-howto tables, and this "
		    "directory is schema = %s: change it with that stack's "
		    "own tools", what, sc->name);
}

struct dir_rows *
cli_query(struct petrel_ctx *cli, const char *what, const char *sql,
    const char *const *kv)
{
	struct dir_param params[16];
	struct dir_rows *rows = NULL;
	const char *err;
	size_t n = 0;
	int r;

	for (; kv != NULL && kv[0] != NULL && n < 16; kv += 2)
		params[n++] = (struct dir_param){ kv[0], kv[1] };
	r = dir_query(cli_dir(cli), sql, params, n, &rows, &err);
	if (r == DIR_TEMPFAIL)
		cli_die("%s: database temporarily unavailable: %s", what, err);
	if (r < 0)
		cli_die("%s: database error: %s", what, err);
	return rows;
}

char *
cli_read_password(bool allow_empty)
{
	char buf[PASSWORD_MAX + 2];
	size_t n = 0, len;
	ssize_t r;

	while (n < sizeof(buf)) {
		r = read(STDIN_FILENO, buf + n, sizeof(buf) - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			cli_die("cannot read the password from stdin: %s",
			    strerror(errno));
		if (r == 0)
			break;
		if (memchr(buf + n, '\n', (size_t)r) != NULL) {
			n += (size_t)r;
			break;
		}
		n += (size_t)r;
	}
	len = 0;
	while (len < n && buf[len] != '\n')
		len++;
	if (len > PASSWORD_MAX)
		cli_die("password longer than %d bytes", PASSWORD_MAX);
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (memchr(buf, '\0', len) != NULL)
		cli_die("password contains a NUL byte");
	if (len == 0 && !allow_empty)
		cli_die("empty password on stdin");
	return xstrndup(buf, len);
}

char *
cli_maildir_path(struct petrel_ctx *cli, const char *maildir)
{
	if (maildir[0] == '/')
		return xstrdup(maildir);
	return xasprintf("%s/%s", config_get(cli->cfg, "mail_root"), maildir);
}

bool
cli_domain_hosted(struct petrel_ctx *cli, const char *domain)
{
	char *transport = NULL;
	const char *err;
	int r;

	r = dir_lookup_domain(cli_dir(cli), domain, &transport, &err);
	if (r == DIR_TEMPFAIL)
		cli_die("database temporarily unavailable: %s", err);
	if (r < 0)
		cli_die("query_domain failed: %s", err);
	free(transport);
	return r == DIR_OK;
}

static bool
is_control(unsigned cp)
{
	return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f);
}

bool
cli_text_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t left = strlen(s), n;
	unsigned cp;

	while (left > 0) {
		n = str_utf8_next(p, left, &cp);
		if (n == 0 || is_control(cp))
			return false;
		p += n;
		left -= n;
	}
	return true;
}

void
cli_check_text(const char *what, const char *s)
{
	if (!cli_text_ok(s))
		cli_die("%s must be valid UTF-8 without control characters",
		    what);
}

void
cli_json_str(str_t *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t left = strlen(s), n;
	unsigned cp;

	str_append_c(out, '"');
	while (left > 0) {
		n = str_utf8_next(p, left, &cp);
		if (n == 0) {
			str_append(out, "\\ufffd");
			n = 1;
		} else if (cp == '"' || cp == '\\') {
			str_append_c(out, '\\');
			str_append_c(out, (char)cp);
		} else if (cp == '\n') {
			str_append(out, "\\n");
		} else if (cp == '\r') {
			str_append(out, "\\r");
		} else if (cp == '\t') {
			str_append(out, "\\t");
		} else if (is_control(cp)) {
			str_printf(out, "\\u%04x", cp);
		} else {
			str_append_n(out, p, n);
		}
		p += n;
		left -= n;
	}
	str_append_c(out, '"');
}

void
cli_print(const str_t *out)
{
	fwrite(str_c(out), 1, out->len, stdout);
	if (fflush(stdout) != 0 || ferror(stdout))
		cli_die("cannot write to stdout: %s", strerror(errno));
}

char *
cli_like_domain(const char *domain)
{
	str_t s = STR_INIT;

	str_append(&s, "%@");
	for (const char *p = domain; *p != '\0'; p++) {
		if (*p == '%' || *p == '_' || *p == '!')
			str_append_c(&s, '!');
		str_append_c(&s, *p);
	}
	return str_steal(&s);
}
