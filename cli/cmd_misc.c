/*
 * cmd_misc.c: petrel hash, petrel maildirmake.
 */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "lib/auth/password.h"
#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/maildir/maildir.h"

int
cmd_hash(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "scheme=", NULL };
	struct cli_args a;
	enum password_scheme scheme = PASSWORD_YESCRYPT;
	const char *name, *err;
	char *plain, *hash;

	cli_parse(argc, argv, allowed, 0, 0,
	    "petrel hash [--scheme yescrypt|sha512|bcrypt]", &a);
	name = cli_opt(&a, "scheme");
	if (name != NULL && password_scheme_parse(name, &scheme) < 0)
		cli_die("unknown scheme '%s' (yescrypt, sha512, bcrypt)", name);
	plain = cli_read_password(false);
	hash = password_hash(plain, scheme, &err);
	explicit_bzero(plain, strlen(plain));
	free(plain);
	if (hash == NULL)
		cli_die("cannot hash: %s", err);
	printf("%s\n", hash);
	free(hash);
	return 0;
}

int
cmd_maildirmake(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "folder=", NULL };
	struct cli_args a;
	const char *folder, *err;

	cli_parse(argc, argv, allowed, 1, 1,
	    "petrel maildirmake PATH [--folder NAME]", &a);
	folder = cli_opt(&a, "folder");
	if (folder != NULL) {
		if (maildir_make_folder(a.pos[0], folder, &err) < 0)
			cli_die("%s", err);
	} else if (maildir_make(a.pos[0], &err) < 0) {
		cli_die("%s", err);
	}
	return 0;
}
