#ifndef PETREL_CONTEXT_H
#define PETREL_CONTEXT_H
/*
 * context.h: what one petrel process knows about how it was started: the
 * configuration it loaded, the file it came from, and its own command
 * line (the master re-executes it for every worker). main.c fills it in;
 * the admin commands, the master, the workers and the queue manager all
 * take it. The directory handle is opened on demand by the commands that
 * need it (cli_dir) and closed by main.
 */

struct config;
struct dir;

struct petrel_ctx {
	struct config *cfg;
	const char *conf_path;	/* the file loaded, or NULL */
	const char *argv0;
	int argc;		/* the whole command line, for re-exec */
	char **argv;
	struct dir *dir;
};

#endif
