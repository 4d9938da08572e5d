/*
 * cmd_dkim.c: petrel dkim keygen DOMAIN [--selector S] -- a domain's
 * signing key and the DNS record to publish; petrel dkim rotate DOMAIN
 * [--selector S] [--force] -- the next step of replacing that key with
 * both selectors published during the overlap (lib/dkim/sign.h):
 *
 *   1. a new key for a new selector, printed for publication; the old
 *      key still signs;
 *   2. once the new record is in DNS (looked up through dns_resolver),
 *      the new key signs; the old one stays published;
 *   3. DKIM_OLD_DAYS after the switch the old one is retired and its
 *      record may be removed.
 *
 * Each run does the step that is due and says what comes next.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unbound.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/base/addr.h"
#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/dkim/sign.h"
#include "lib/dnsrec/dnsrec.h"
#include "lib/tls/tls.h"
#include "lib/trust/dnsq.h"

/* How long a retired selector's record stays published after the switch:
 * mail signed with it may still be on its way (queues retry for days). */
#define DKIM_OLD_DAYS 7

static char *
domain_arg(const char *arg)
{
	char *domain = xstrdup(arg);

	str_lower(domain);
	if (!addr_domain_valid(domain))
		cli_die("'%s' is not a valid domain name", arg);
	return domain;
}

static void
check_selector(const char *selector)
{
	if (!dkim_selector_valid(selector))
		cli_die("'%s' is not a valid selector (letters, digits, '-' "
		    "and '_', at most 63)", selector);
}

/* As root: the workers (user/group) sign, so they must read the files. */
static void
give_to_workers(struct petrel_ctx *cli, const char *path)
{
	struct passwd *pw;
	struct group *gr;

	if (geteuid() != 0 || access(path, F_OK) < 0)
		return;
	pw = getpwnam(config_get(cli->cfg, "user"));
	gr = getgrnam(config_get(cli->cfg, "group"));
	if (pw != NULL && gr != NULL && chown(path, pw->pw_uid, gr->gr_gid) < 0)
		cli_die("cannot give %s to %s: %s", path, pw->pw_name,
		    strerror(errno));
}

static void
print_record(const char *domain, const char *selector, const char *txt)
{
	printf("selector\t%s\nname\t%s._domainkey.%s\nvalue\t%s\n"
	    "record\t%s._domainkey.%s. IN TXT \"%s\"\n", selector, selector,
	    domain, txt, selector, domain, txt);
}

static int
dkim_keygen_cmd(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "selector=", NULL };
	struct cli_args a;
	const char *selector, *err, *dd = config_get(cli->cfg, "dkim_dir");
	char *domain, *txt = NULL, *path;

	cli_parse(argc, argv, allowed, 1, 1,
	    "petrel dkim keygen DOMAIN [--selector S]", &a);
	domain = domain_arg(a.pos[0]);
	selector = cli_opt(&a, "selector");
	if (selector == NULL)
		selector = "petrel";
	check_selector(selector);
	if (dkim_keygen(dd, domain, selector, &txt, &err) < 0)
		cli_die("%s", err);
	give_to_workers(cli, dd);
	path = xasprintf("%s/%s.pem", dd, domain);
	give_to_workers(cli, path);
	free(path);
	path = xasprintf("%s/%s.selector", dd, domain);
	give_to_workers(cli, path);
	free(path);
	print_record(domain, selector, txt);
	free(txt);
	free(domain);
	return 0;
}

/* The p= of a DKIM key record (white space removed), malloc'd, or NULL. */
static char *
record_key(const char *txt)
{
	str_t out = STR_INIT;
	const char *p = txt;

	while (*p != '\0') {
		const char *end = strchr(p, ';'), *eq;

		if (end == NULL)
			end = p + strlen(p);
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq != NULL) {
			const char *n = eq;

			while (n > p && (n[-1] == ' ' || n[-1] == '\t'))
				n--;
			if (n - p == 1 && p[0] == 'p') {
				for (const char *c = eq + 1; c < end; c++)
					if (*c != ' ' && *c != '\t' &&
					    *c != '\r' && *c != '\n')
						str_append_c(&out, *c);
				return str_steal(&out);
			}
		}
		p = *end ? end + 1 : end;
	}
	str_free(&out);
	return NULL;
}

/* Is SELECTOR._domainkey.DOMAIN published with the key pub? 1 yes, 0 no
 * (missing or another key: *what_r says which); a failed lookup ends the
 * command. */
static int
published(struct petrel_ctx *cli, const char *domain, const char *selector,
    const char *pub, const char **what_r)
{
	char *name = xasprintf("%s._domainkey.%s", selector, domain);
	char *err = NULL;
	struct ub_ctx *ub;
	struct ub_result *res = NULL;
	int r, found = 0;

	ub = dnsq_ctx_new(config_get(cli->cfg, "dns_resolver"), &err);
	if (ub == NULL)
		cli_die("%s", err);
	ub_ctx_set_option(ub, "outbound-msg-retry:", "1");
	r = ub_resolve(ub, name, 16 /* TXT */, 1 /* IN */, &res);
	if (r != 0)
		cli_die("lookup of %s TXT failed: %s", name, ub_strerror(r));
	if (res->rcode != 0 && res->rcode != 3 /* NXDOMAIN */)
		cli_die("no usable answer for %s TXT (%s): check dns_resolver",
		    name, res->rcode == 2 ? "server failure or no server "
		    "reachable" : res->rcode == 5 ? "refused" : "error");
	*what_r = "is not in DNS";
	for (size_t i = 0; res->havedata && res->data[i] != NULL; i++) {
		char *v = dnsrec_wire_value("TXT",
		    (const unsigned char *)res->data[i], (size_t)res->len[i]);
		char *key = v != NULL ? record_key(v) : NULL;

		if (key != NULL && strcmp(key, pub) == 0)
			found = 1;
		else if (key != NULL)
			*what_r = "is in DNS with another key";
		free(key);
		free(v);
	}
	ub_resolve_free(res);
	ub_ctx_delete(ub);
	free(name);
	return found;
}

static char *
public_key(const char *dd, const char *domain, const char *selector)
{
	char *path = dkim_key_path(dd, domain, selector), *pub = NULL;
	const char *err;

	if (tls_key_public_b64(path, &pub, &err) < 0)
		cli_die("%s", err);
	free(path);
	return pub;
}

static int
dkim_rotate_cmd(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "selector=", "force", NULL };
	const char *usage = "petrel dkim rotate DOMAIN [--selector S] [--force]";
	const char *dd = config_get(cli->cfg, "dkim_dir"), *err, *what;
	struct cli_args a;
	char *domain, *cur, *next, *old, *pub, *txt = NULL;
	bool force;

	cli_parse(argc, argv, allowed, 1, 1, usage, &a);
	domain = domain_arg(a.pos[0]);
	force = cli_flag(&a, "force");
	cur = dkim_selector_read(dd, domain, "selector");
	if (cur == NULL)
		cli_die("%s has no DKIM key: petrel dkim keygen %s", domain,
		    domain);
	next = dkim_selector_read(dd, domain, "selector.next");
	old = dkim_selector_read(dd, domain, "selector.old");

	if (next != NULL) {
		/* step 2: switch when the new record can be found */
		if (cli_opt(&a, "selector") != NULL)
			cli_die("%s is already being rotated to selector %s; "
			    "--selector applies to the first step only",
			    domain, next);
		pub = public_key(dd, domain, next);
		if (!published(cli, domain, next, pub, &what) && !force)
			cli_die("%s._domainkey.%s %s: publish the record "
			    "printed by the first step, wait for the old "
			    "answers' TTL, and run this again (--force "
			    "switches without looking)", next, domain, what);
		if (dkim_rotate_activate(dd, domain, &err) < 0)
			cli_die("%s", err);
		printf("signing\t%s\nretiring\t%s\n", next, cur);
		printf("%s now signs with selector %s. Keep the record of %s "
		    "published: run petrel dkim rotate %s again in %d days "
		    "to retire it.\n", domain, next, cur, domain,
		    DKIM_OLD_DAYS);
		free(pub);
	} else if (old != NULL) {
		/* step 3: retire the old key once its overlap is over */
		char *path = xasprintf("%s/%s.selector.old", dd, domain);
		struct stat st;

		if (cli_opt(&a, "selector") != NULL)
			cli_die("the last rotation of %s is not finished: "
			    "selector %s is still published; run petrel dkim "
			    "rotate %s (without --selector) to retire it first",
			    domain, old, domain);
		if (stat(path, &st) < 0)
			cli_die("cannot stat %s: %s", path, strerror(errno));
		if (!force && time(NULL) - st.st_mtime <
		    (time_t)DKIM_OLD_DAYS * 86400) {
			time_t when = st.st_mtime +
			    (time_t)DKIM_OLD_DAYS * 86400;
			char date[32];

			strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC",
			    gmtime(&when));
			cli_die("selector %s of %s signed mail until %d days "
			    "ago at most: keep its record until %s (--force "
			    "retires it now)", old, domain, DKIM_OLD_DAYS,
			    date);
		}
		free(path);
		if (dkim_rotate_retire(dd, domain, &err) < 0)
			cli_die("%s", err);
		printf("signing\t%s\nretired\t%s\n", cur, old);
		printf("Selector %s of %s is retired: remove the record "
		    "%s._domainkey.%s from DNS.\n", old, domain, old, domain);
	} else {
		/* step 1: a new key, published before it signs */
		const char *sel = cli_opt(&a, "selector");
		char autosel[32], *path;
		time_t now = time(NULL);

		if (sel == NULL) {
			strftime(autosel, sizeof(autosel), "p%Y%m%d",
			    gmtime(&now));
			sel = autosel;
		}
		check_selector(sel);
		if (strcasecmp(sel, cur) == 0)
			cli_die("selector %s already signs for %s: choose "
			    "another with --selector", sel, domain);
		if (dkim_rotate_begin(dd, domain, sel, &txt, &err) < 0)
			cli_die("%s", err);
		path = dkim_key_path(dd, domain, sel);
		give_to_workers(cli, path);
		free(path);
		path = xasprintf("%s/%s.selector.next", dd, domain);
		give_to_workers(cli, path);
		free(path);
		print_record(domain, sel, txt);
		printf("signing\t%s\n", cur);
		printf("Publish this record beside the one of %s, then run "
		    "petrel dkim rotate %s again: it checks that the record "
		    "is in DNS and switches signing to %s.\n", cur, domain,
		    sel);
		free(txt);
	}
	free(cur);
	free(next);
	free(old);
	free(domain);
	return 0;
}

int
cmd_dkim(struct petrel_ctx *cli, int argc, char **argv)
{
	if (argc >= 1 && strcmp(argv[0], "keygen") == 0)
		return dkim_keygen_cmd(cli, argc - 1, argv + 1);
	if (argc >= 1 && strcmp(argv[0], "rotate") == 0)
		return dkim_rotate_cmd(cli, argc - 1, argv + 1);
	cli_die("usage: petrel dkim keygen DOMAIN [--selector S] | "
	    "petrel dkim rotate DOMAIN [--selector S] [--force]");
	return 1;
}
