/*
 * main.c: petrel [-c FILE] [-o key=value]... COMMAND [ARGS]
 *
 * Finds and loads the configuration (SPEC section 2 and 3), applies -o
 * overrides in order, and dispatches to the command table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/config/config.h"
#include "lib/dir/dir.h"

#define CMD_NO_CONFIG 0x1	/* does not read petrel.conf */

static const struct command {
	const char *name;
	int (*run)(struct petrel_ctx *ctx, int argc, char **argv);
	int flags;
	const char *help;
} commands[] = {
	{ "init", cmd_init, CMD_NO_CONFIG,
	  "init [--dir DIR] [--domain DOMAIN]" },
	{ "serve", cmd_serve, 0, "serve" },
	{ "check", cmd_check, 0, "check" },
	{ "status", cmd_status, 0, "status" },
	{ "domain", cmd_domain, 0,
	  "domain add|del|list [DOMAIN] [--transport T] [--json]" },
	{ "user", cmd_user, 0,
	  "user add|del|show|list|passwd|auth|move ADDRESS [options]" },
	{ "alias", cmd_alias, 0,
	  "alias add ADDRESS TARGET[,TARGET...] | del ADDRESS | list [DOMAIN]" },
	{ "migrate", cmd_migrate, 0, "migrate check [--json] [MAILDIR...]" },
	{ "queue", cmd_queue, 0, "queue list|show ID|flush|delete ID" },
	{ "dkim", cmd_dkim, 0, "dkim keygen DOMAIN [--selector S] | dkim rotate DOMAIN [--selector S] [--force]" },
	{ "dns", cmd_dns, 0, "dns DOMAIN [--json] | dns check DOMAIN" },
	{ "dmarc", cmd_dmarc, 0, "dmarc report [--dry-run]" },
	{ "tlsrpt", cmd_tlsrpt, 0, "tlsrpt report [--dry-run]" },
	{ "sieve", cmd_sieve, 0, "sieve check FILE | test USER MSGFILE | "
	  "test --script FILE MSGFILE [--from ADDR] [--to ADDR] | "
	  "list|show|put|activate|deactivate|delete USER [NAME] [FILE]" },
	{ "hash", cmd_hash, CMD_NO_CONFIG,
	  "hash [--scheme yescrypt|sha512|bcrypt]" },
	{ "maildirmake", cmd_maildirmake, CMD_NO_CONFIG,
	  "maildirmake PATH [--folder NAME]" },
	{ "help", cmd_help, CMD_NO_CONFIG, "help [KEY | --man]" },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: petrel [-c FILE] [-o key=value]... COMMAND [ARGS]\n"
	    "commands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(fp, "  petrel %s\n", commands[i].help);
}

/* petrel check on a file the loader refuses: every refused line (an
 * unknown or retired key, a bad value), one line each, then exit 1; an
 * upgrade from an older release sees all it has to change at once. */
static void
check_whole_file(const char *path)
{
	struct config *cfg = config_new();
	char *problems = NULL, *err = NULL, *line, *nl;
	int n = config_check_file(cfg, path, &problems, &err);

	config_free(&cfg);
	if (n <= 0) {
		free(err);
		free(problems);
		return;		/* the first error alone, as for any command */
	}
	for (line = problems; *line != '\0'; line = nl + 1) {
		nl = strchr(line, '\n');
		*nl = '\0';
		fprintf(stderr, "petrel: check: %s\n", line);
	}
	free(problems);
	exit(1);
}

int
main(int argc, char **argv)
{
	struct petrel_ctx ctx;
	const char *conf_arg = NULL, *path;
	const char *overrides[64];
	size_t noverrides = 0;
	const struct command *cmd = NULL;
	char *err = NULL;
	enum log_level lvl;
	int i, r;

	memset(&ctx, 0, sizeof(ctx));
	ctx.argv0 = argv[0];
	ctx.argc = argc;
	ctx.argv = argv;
	log_init("petrel", false);
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "-o") == 0) {
			if (i + 1 >= argc)
				cli_die("option %s needs a value", argv[i]);
			if (argv[i][1] == 'c') {
				conf_arg = argv[++i];
			} else {
				if (noverrides == 64)
					cli_die("too many -o options");
				overrides[noverrides++] = argv[++i];
			}
		} else if (strncmp(argv[i], "-o", 2) == 0 && argv[i][2] != '\0') {
			if (noverrides == 64)
				cli_die("too many -o options");
			overrides[noverrides++] = argv[i] + 2;
		} else if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] == '-') {
			cli_die("unknown option %s (see petrel --help)", argv[i]);
		} else {
			break;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 1;
	}
	for (size_t c = 0; c < NCOMMANDS; c++)
		if (strcmp(commands[c].name, argv[i]) == 0)
			cmd = &commands[c];
	if (cmd == NULL)
		cli_die("unknown command '%s' (see petrel --help)", argv[i]);

	ctx.cfg = config_new();
	if (!(cmd->flags & CMD_NO_CONFIG)) {
		path = config_locate(conf_arg);
		/* The auth process may not be allowed to open the file
		 * (root:group 0640): the master opens it for it
		 * (master.c:spawn_worker) and names the descriptor. */
		const char *cfd = getenv("PETREL_CONF_FD");

		if (path != NULL) {
			if (cfd != NULL && atoi(cfd) > 2) {
				if (config_load_fd(ctx.cfg, atoi(cfd), path,
				    &err) < 0)
					cli_die("%s", err);
			} else if (config_load_file(ctx.cfg, path, &err) < 0) {
				if (cmd->run == cmd_check)
					check_whole_file(path);
				cli_die("%s", err);
			}
			ctx.conf_path = path;
		}
		unsetenv("PETREL_CONF_FD");
	} else if (conf_arg != NULL) {
		ctx.conf_path = conf_arg;
	}
	for (size_t o = 0; o < noverrides; o++)
		if (config_override(ctx.cfg, overrides[o], &err) < 0)
			cli_die("%s", err);
	if (log_parse_level(config_get(ctx.cfg, "log_level"), &lvl) == 0)
		log_set_level(lvl);

	r = cmd->run(&ctx, argc - i - 1, argv + i + 1);
	dir_close(&ctx.dir);
	config_free(&ctx.cfg);
	return r;
}
