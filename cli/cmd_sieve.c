/*
 * cmd_sieve.c: petrel sieve check FILE | test USER MSGFILE |
 * test --script FILE MSGFILE | list|show|put|activate|deactivate|delete
 * USER [NAME] [FILE]. Nothing is delivered: test prints the actions the
 * script would take. The others manage a user's scripts in sieve_dir
 * (lib/sieve/store.c), as ManageSieve would.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "lib/base/alloc.h"
#include "lib/config/config.h"
#include "lib/dir/dir.h"
#include "lib/mime/mime.h"
#include "lib/route/route.h"
#include "lib/sieve/sieve.h"
#include "lib/sieve/store.h"

#define MESSAGE_MAX (64u * 1024 * 1024)

/* The whole file, at most max bytes (dies otherwise). */
static char *
read_file(const char *path, size_t max, size_t *len_r)
{
	FILE *fp = fopen(path, "rb");
	str_t s = STR_INIT;
	char buf[65536];
	size_t n;

	if (fp == NULL)
		cli_die("cannot open %s: %s", path, strerror(errno));
	while ((n = fread(buf, 1, sizeof(buf), fp)) > 0) {
		if (s.len + n > max) {
			fclose(fp);
			cli_die("%s: larger than %zu bytes", path, max);
		}
		str_append_n(&s, buf, n);
	}
	if (ferror(fp)) {
		fclose(fp);
		cli_die("cannot read %s: %s", path, strerror(errno));
	}
	fclose(fp);
	*len_r = s.len;
	if (s.data == NULL)
		str_append(&s, "");
	return str_steal(&s);
}

static struct sieve_script *
load_script(const char *path, bool die)
{
	struct sieve_script *script;
	str_t errors = STR_INIT;
	size_t len;
	char *text = read_file(path, SIEVE_SCRIPT_MAX, &len);

	if (sieve_parse(text, len, &script, &errors) < 0) {
		/* every error on its own line, named by the file */
		const char *p = str_c(&errors);

		fflush(stdout);
		while (*p != '\0') {
			size_t k = strcspn(p, "\n");

			fprintf(stderr, "%s: %.*s\n", path, (int)k, p);
			p += k;
			if (*p == '\n')
				p++;
		}
		str_free(&errors);
		free(text);
		if (die)
			exit(1);
		return NULL;
	}
	str_free(&errors);
	free(text);
	return script;
}

static int
sieve_check(struct petrel_ctx *cli, int argc, char **argv)
{
	struct cli_args a;
	struct sieve_script *script;

	cli_parse(argc, argv, NULL, 1, 1, "petrel sieve check FILE", &a);
	script = load_script(a.pos[0], true);
	sieve_free(script);
	printf("ok\n");
	return 0;
}

/* %h: as delivery finds it (route_user_home). */
static char *
user_home(struct petrel_ctx *cli, const struct dir_user *u)
{
	char *md = cli_maildir_path(cli, u->maildir);
	char *h = route_user_home(config_get(cli->cfg, "mail_root"), u->home,
	    md);

	free(md);
	return h;
}

/* The user's row (dies when there is none, or on a directory error). */
static void
lookup_user(struct petrel_ctx *cli, const char *address, struct dir_user *u)
{
	const char *err;
	int r = dir_lookup_user(cli_dir(cli), address, u, &err);

	if (r == DIR_TEMPFAIL)
		cli_die("directory temporarily unavailable: %s", err);
	if (r < 0)
		cli_die("query_user failed: %s", err);
	if (r != DIR_OK)
		cli_die("no such user: %s", address);
}

static const char *
envelope_from(const char *data, size_t len, char **buf)
{
	struct mime_mailbox mb;
	char *rp = mime_header_get(data, len, "Return-Path");

	*buf = NULL;
	if (rp == NULL)
		return "";
	if (mime_first_mailbox(rp, &mb)) {
		*buf = xasprintf("%s%s%s", mb.local, *mb.host ? "@" : "",
		    mb.host);
		mime_mailbox_clear(&mb);
	}
	free(rp);
	return *buf != NULL ? *buf : "";
}

/* include (RFC 6609) for sieve test: NAME.sieve from the personal
 * directory (the user's sieve_dir, or the --script file's directory)
 * or sieve_global; a script that does not parse is a run-time error. */
struct cli_inc {
	char *personal, *global;
	struct sieve_script *held[SIEVE_INCLUDES_MAX];
	size_t nheld;
};

static const struct sieve_script *
cli_inc_load(void *ctx, bool global, const char *name, bool *missing_r,
    char **error_r)
{
	struct cli_inc *ci = ctx;
	const char *dir = global ? ci->global : ci->personal;
	struct sieve_script *sc = NULL;
	str_t errors = STR_INIT;
	char *path, *text;
	size_t len;
	struct stat st;

	if (dir == NULL || *dir == '\0' || ci->nheld >= SIEVE_INCLUDES_MAX) {
		*missing_r = true;
		return NULL;
	}
	path = xasprintf("%s/%s.sieve", dir, name);
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
		*missing_r = true;
		free(path);
		return NULL;
	}
	text = read_file(path, SIEVE_SCRIPT_MAX, &len);
	if (sieve_parse(text, len, &sc, &errors) < 0) {
		size_t k = strcspn(str_c(&errors), "\n");

		*error_r = xasprintf("%s: %.*s", path, (int)k, str_c(&errors));
		sc = NULL;
	} else {
		ci->held[ci->nheld++] = sc;
	}
	str_free(&errors);
	free(text);
	free(path);
	return sc;
}

static int
sieve_test(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const opts[] = { "script=", "from=", "to=", NULL };
	static const char *usage = "petrel sieve test USER MSGFILE | "
	    "test --script FILE MSGFILE... [--from ADDR] [--to ADDR]";
	struct cli_args a;
	struct sieve_script *script = NULL;
	struct sieve_result res;
	struct sieve_limits lim = { 0 };
	struct sieve_msg msg;
	char *to_buf = NULL, *active = NULL;
	const char *msgfile, *path = NULL;
	size_t len;
	struct cli_inc inc;

	cli_parse(argc, argv, opts, 1, CLI_MAX_POS, usage, &a);
	path = cli_opt(&a, "script");
	if (path == NULL && a.npos != 2)
		cli_die("usage: %s", usage);
	memset(&msg, 0, sizeof(msg));
	memset(&inc, 0, sizeof(inc));
	msg.env_to = cli_opt(&a, "to");
	msg.include_load = cli_inc_load;
	msg.include_ctx = &inc;
	if (path != NULL) {
		const char *slash = strrchr(path, '/');

		inc.personal = slash != NULL ? xstrndup(path,
		    (size_t)(slash - path)) : xstrdup(".");
		inc.global = sieve_path_expand(config_get(cli->cfg,
		    "sieve_global"), "", "");
	} else {
		struct dir_user u;
		char *home;
		struct stat st;

		lookup_user(cli, a.pos[0], &u);
		home = user_home(cli, &u);
		active = xasprintf("%s/.dovecot.sieve", home);
		inc.personal = sieve_path_expand(config_get(cli->cfg,
		    "sieve_dir"), home, u.address);
		inc.global = sieve_path_expand(config_get(cli->cfg,
		    "sieve_global"), home, u.address);
		if (msg.env_to == NULL)
			msg.env_to = to_buf = xstrdup(u.address);
		free(home);
		dir_user_clear(&u);
		if (stat(active, &st) < 0) {
			if (errno != ENOENT)
				cli_die("cannot read %s: %s", active,
				    strerror(errno));
			printf("no active script (%s)\n", active);
		} else {
			path = active;
		}
	}
	if (path != NULL)
		script = load_script(path, true);
	if (cli_opt(&a, "from") != NULL)
		msg.env_from = cli_opt(&a, "from");
	if (msg.env_to == NULL)
		msg.env_to = "";
	lim.redirects = (unsigned)config_get_uint(cli->cfg,
	    "sieve_max_redirects");
	/* --script: several messages, each under a "== FILE" line */
	for (int i = cli_opt(&a, "script") != NULL ? 0 : 1; i < a.npos; i++) {
		struct sieve_script empty = { 0 };
		str_t wire = STR_INIT, out = STR_INIT;
		char *raw, *from_buf = NULL;
		const char *from = msg.env_from;

		msgfile = a.pos[i];
		raw = read_file(msgfile, MESSAGE_MAX, &len);
		mime_to_crlf(raw, len, &wire);
		msg.size = len;	/* as a Maildir file holds it */
		free(raw);
		if (wire.data == NULL)
			str_append(&wire, "");
		msg.data = wire.data;
		msg.len = wire.len;
		if (from == NULL)
			msg.env_from = envelope_from(msg.data, msg.len,
			    &from_buf);
		sieve_run(script != NULL ? script : &empty, &msg, &lim, &res);
		for (size_t k = 0; k < inc.nheld; k++)
			sieve_free(inc.held[k]);
		inc.nheld = 0;
		if (a.npos > 1 && cli_opt(&a, "script") != NULL)
			str_printf(&out, "== %s\n", msgfile);
		sieve_result_text(&res, &out);
		cli_print(&out);
		sieve_result_clear(&res);
		str_free(&out);
		str_free(&wire);
		free(from_buf);
		msg.env_from = from;
	}
	sieve_free(script);
	free(inc.personal);
	free(inc.global);
	free(to_buf);
	free(active);
	return 0;
}

/* The store of USER (a.pos[0]); a.pos[1], when there, must be a valid
 * script name. */
static void
open_store(struct petrel_ctx *cli, const struct cli_args *a,
    struct sieve_store *st)
{
	struct dir_user u;
	char *home;

	if (a->npos > 1 && !sieve_name_valid(a->pos[1]))
		cli_die("invalid script name '%s' (1 to %d characters, no "
		    "'/', no control characters, not starting with '.')",
		    a->pos[1], SIEVE_NAME_MAX);
	lookup_user(cli, a->pos[0], &u);
	home = user_home(cli, &u);
	sieve_store_init(st, config_get(cli->cfg, "sieve_dir"), home,
	    u.address);
	st->max_scripts = (unsigned)config_get_uint(cli->cfg,
	    "sieve_max_scripts");
	st->max_storage = config_get_uint(cli->cfg, "sieve_max_storage");
	free(home);
	dir_user_clear(&u);
}

static int
sieve_manage(struct petrel_ctx *cli, const char *verb, int argc,
    char **argv)
{
	static const struct {
		const char *verb, *usage;
		int npos;
	} verbs[] = {
		{ "list", "petrel sieve list USER", 1 },
		{ "show", "petrel sieve show USER NAME", 2 },
		{ "put", "petrel sieve put USER NAME FILE", 3 },
		{ "activate", "petrel sieve activate USER NAME", 2 },
		{ "deactivate", "petrel sieve deactivate USER", 1 },
		{ "delete", "petrel sieve delete USER NAME", 2 },
	};
	struct sieve_store st;
	struct cli_args a;
	const char *err = NULL;
	size_t k;
	int ret = 0;

	for (k = 0; strcmp(verbs[k].verb, verb) != 0; k++)
		;
	cli_parse(argc, argv, NULL, verbs[k].npos, verbs[k].npos,
	    verbs[k].usage, &a);
	open_store(cli, &a, &st);
	if (strcmp(verb, "list") == 0) {
		char **names, *active;
		size_t n;
		str_t out = STR_INIT;

		if (sieve_store_list(&st, &names, &n, &active, &err) < 0)
			cli_die("%s", err);
		for (size_t i = 0; i < n; i++)
			str_printf(&out, "%s%s\n", names[i], active != NULL &&
			    strcmp(active, names[i]) == 0 ? " ACTIVE" : "");
		cli_print(&out);
		str_free(&out);
		sieve_names_free(names, n);
		free(active);
	} else if (strcmp(verb, "show") == 0) {
		char *path = sieve_store_path(&st, a.pos[1]), *text;
		size_t len;
		struct stat sb;

		if (stat(path, &sb) < 0)
			cli_die("no script %s for %s", a.pos[1], a.pos[0]);
		text = read_file(path, SIEVE_SCRIPT_MAX, &len);
		fwrite(text, 1, len, stdout);
		free(text);
		free(path);
	} else if (strcmp(verb, "put") == 0) {
		size_t len;
		char *text = read_file(a.pos[2], SIEVE_SCRIPT_MAX, &len);
		struct sieve_script *script = load_script(a.pos[2], true);

		sieve_free(script);
		if (sieve_store_put(&st, a.pos[1], text, len, &err) < 0)
			cli_die("%s", err);
		free(text);
		printf("ok\n");
	} else if (strcmp(verb, "activate") == 0 ||
	    strcmp(verb, "deactivate") == 0) {
		if (sieve_store_activate(&st, a.npos > 1 ? a.pos[1] : NULL,
		    &err) < 0)
			cli_die("%s", err);
		printf("ok\n");
	} else {
		if (sieve_store_delete(&st, a.pos[1], &err) < 0)
			cli_die("%s", err);
		printf("ok\n");
	}
	sieve_store_clear(&st);
	return ret;
}

int
cmd_sieve(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const manage[] = { "list", "show", "put",
		"activate", "deactivate", "delete", NULL };

	if (argc < 1)
		cli_die("usage: petrel sieve check FILE | test USER MSGFILE | "
		    "list|show|put|activate|deactivate|delete USER [NAME] "
		    "[FILE]");
	if (strcmp(argv[0], "check") == 0)
		return sieve_check(cli, argc - 1, argv + 1);
	if (strcmp(argv[0], "test") == 0)
		return sieve_test(cli, argc - 1, argv + 1);
	for (size_t i = 0; manage[i] != NULL; i++)
		if (strcmp(argv[0], manage[i]) == 0)
			return sieve_manage(cli, argv[0], argc - 1, argv + 1);
	cli_die("unknown sieve subcommand '%s' (check, test, list, show, put, "
	    "activate, deactivate, delete)", argv[0]);
}
