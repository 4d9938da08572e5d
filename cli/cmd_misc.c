/*
 * cmd_misc.c: petrel hash, petrel maildirmake.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "lib/auth/password.h"
#include "lib/base/addr.h"
#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/dkim/sign.h"
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

/* petrel dkim keygen DOMAIN [--selector S]: make the key, print the
 * DNS record to publish. */
int
cmd_dkim(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "selector=", NULL };
	struct cli_args a;
	const char *selector, *err;
	char *domain, *txt = NULL;

	if (argc < 1 || strcmp(argv[0], "keygen") != 0)
		cli_die("usage: petrel dkim keygen DOMAIN [--selector S]");
	cli_parse(argc - 1, argv + 1, allowed, 1, 1,
	    "petrel dkim keygen DOMAIN [--selector S]", &a);
	domain = xstrdup(a.pos[0]);
	str_lower(domain);
	if (!addr_domain_valid(domain))
		cli_die("'%s' is not a valid domain name", a.pos[0]);
	selector = cli_opt(&a, "selector");
	if (selector == NULL)
		selector = "petrel";
	if (!addr_domain_valid(selector) || strchr(selector, '.') != NULL)
		cli_die("'%s' is not a valid selector", selector);
	if (dkim_keygen(config_get(cli->cfg, "dkim_dir"), domain, selector,
	    &txt, &err) < 0)
		cli_die("%s", err);
	if (geteuid() == 0) {
		/* The workers (user/group) sign: they must read the key. */
		struct passwd *pw = getpwnam(config_get(cli->cfg, "user"));
		struct group *gr = getgrnam(config_get(cli->cfg, "group"));
		const char *dd = config_get(cli->cfg, "dkim_dir");
		char *kp = xasprintf("%s/%s.pem", dd, domain);
		char *sp = xasprintf("%s/%s.selector", dd, domain);

		if (pw != NULL && gr != NULL &&
		    (chown(dd, pw->pw_uid, gr->gr_gid) < 0 ||
		    chown(kp, pw->pw_uid, gr->gr_gid) < 0 ||
		    chown(sp, pw->pw_uid, gr->gr_gid) < 0))
			cli_die("cannot give %s to %s: %s", dd, pw->pw_name,
			    strerror(errno));
		free(kp);
		free(sp);
	}
	printf("selector\t%s\nname\t%s._domainkey.%s\nvalue\t%s\n"
	    "record\t%s._domainkey.%s. IN TXT \"%s\"\n", selector, selector,
	    domain, txt, selector, domain, txt);
	free(txt);
	free(domain);
	return 0;
}
