/*
 * cmd_serve.c: petrel serve — takes no arguments; the master, its workers
 * and the queue manager are in master/ and queue/.
 */
#include "cli/cli.h"
#include "master/master.h"

int
cmd_serve(struct petrel_ctx *cli, int argc, char **argv)
{
	struct cli_args a;
	const char *err = NULL;
	int r;

	cli_parse(argc, argv, NULL, 0, 0, "petrel serve", &a);
	r = serve_run(cli, &err);
	if (r < 0)
		cli_die("%s", err);
	return r;
}
