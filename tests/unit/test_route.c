/* Unit tests for lib/route: recipient resolution on a SQLite directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/dir/dir.h"
#include "lib/route/route.h"
#include "test.h"

static const char *const setup[] = {
	"CREATE TABLE transport (domain TEXT COLLATE NOCASE UNIQUE, transport TEXT)",
	"CREATE TABLE virtual (address TEXT COLLATE NOCASE UNIQUE, goto TEXT)",
	"CREATE TABLE users (id TEXT, address TEXT COLLATE NOCASE UNIQUE, "
	"crypt TEXT, name TEXT, uid INTEGER, gid INTEGER, home TEXT, "
	"maildir TEXT, quota INTEGER DEFAULT 0)",
	"INSERT INTO transport VALUES ('example.test', 'virtual:'), "
	"('gone.test', 'error:this domain is gone'), "
	"('relay.test', 'smtp:[127.0.0.1]:2600'), "
	"('drop.test', 'discard:'), ('lmtp.test', 'lmtp:unix:private/dovecot'), "
	"('md.test', 'maildrop:'), ('loc.test', 'local:'), "
	"('lt.test', 'lmtp:inet:10.0.0.7:2424')",
	"INSERT INTO users (id, address, maildir) VALUES "
	"('m', 'm@md.test', 'md.test/m/'), ('l', 'root@loc.test', 'loc/root/'),"
	" ('lm', 'u@lmtp.test', 'lmtp.test/u/'), ('d', 'u@drop.test', 'd/u/'),"
	" ('f', 'fw@example.test', 'someone@remote.test, bob@example.test'),"
	" ('g', 'fself@example.test', 'fself@example.test'),"
	" ('lt', 'u@lt.test', 'lt.test/u/')",
	"INSERT INTO users (id, address, maildir, quota) VALUES "
	"('a', 'alice@example.test', 'example.test/alice/', 100), "
	"('b', 'bob@example.test', 'example.test/bob/', 0), "
	"('c', 'carol@example.test', '/m/abs/carol/', 0), "
	"('e', 'evil@example.test', '../../etc/', 0)",
	"INSERT INTO virtual VALUES "
	"('team@example.test', 'alice@example.test, bob@example.test'), "
	"('nest@example.test', 'team@example.test,carol'), "
	"('loop1@example.test', 'loop2@example.test'), "
	"('loop2@example.test', 'loop1@example.test'), "
	"('self@example.test', 'self@example.test,bob@example.test'), "
	"('alice@example.test', 'alice@example.test,carol@example.test'), "
	"('fwd@example.test', 'someone@remote.test'), "
	"('@example.test', 'bob@example.test'), "
	"('aliasonly.test', 'x'), "
	"('info@aliasonly.test', 'bob@example.test'), "
	"('bad@example.test', 'nosuch@example.test')",
	"INSERT INTO users (id, address, maildir) VALUES "
	"('s', 'self@example.test', 'example.test/self/')",
	NULL
};

static struct route_config rc = { "/m", "+" };

static void
resolve(struct dir *dir, const char *addr, bool relay, struct route_result *r)
{
	route_resolve(dir, &rc, addr, relay, r);
}

static bool
has_maildir(const struct route_result *r, const char *path)
{
	for (size_t i = 0; i < r->ndests; i++)
		if (r->dests[i].kind == ROUTE_MAILDIR &&
		    strcmp(r->dests[i].maildir, path) == 0)
			return true;
	return false;
}

int
main(void)
{
	struct dir *dir = NULL;
	struct route_result r;
	char *url, *err = NULL;
	const char *cerr;

	url = xasprintf("sqlite:%s/route.db", test_tmpdir());
	if (dir_open(url, DIR_OPEN_CREATE, &dir, &err) < 0)
		return 2;
	for (const char *const *s = setup; *s; s++)
		if (dir_query(dir, *s, NULL, 0, NULL, &cerr) < 0) {
			fprintf(stderr, "%s: %s\n", *s, cerr);
			return 2;
		}

	test_begin("route: %h, the home of the Sieve paths");
	{
		static const char *const cases[][4] = {
			/* mail_root, home, maildir, %h */
			{ "/m", "/home/a", "/m/d/a/", "/home/a" },
			{ "/m", "/home/a/", "/m/d/a/", "/home/a" },
			{ "/m", "", "/m/d/a/", "/m/d" },
			{ "/m", NULL, "/m/d/a", "/m/d" },
			{ "/m", "/", "/m/d/a/", "/m/d" },
			{ "/m/", "/m", "/m/d/a/", "/m/d" },
			{ "/m", "/m/", "/m/d/a/", "/m/d" },
			{ "/m", "/m/d/a", "/m/d/a/", "/m/d/a" },
		};

		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			char *h = route_user_home(cases[i][0], cases[i][1],
			    cases[i][2]);

			test_assert_streq(h, cases[i][3]);
			free(h);
		}
	}
	test_end();

	test_begin("route: user, case, +tag, quota, absolute maildir");
	resolve(dir, "Bob@Example.TEST", false, &r);
	test_assert(r.status == ROUTE_OK && r.ndests == 1);
	test_assert(has_maildir(&r, "/m/example.test/bob/"));
	route_result_clear(&r);
	resolve(dir, "bob+lists@example.test", false, &r);
	test_assert(r.status == ROUTE_OK && has_maildir(&r, "/m/example.test/bob/"));
	test_assert(r.ndests == 1 && strcmp(r.dests[0].address,
	    "bob+lists@example.test") == 0);
	route_result_clear(&r);
	resolve(dir, "carol@example.test", false, &r);
	test_assert(r.status == ROUTE_OK && has_maildir(&r, "/m/abs/carol/"));
	route_result_clear(&r);
	test_end();

	test_begin("route: aliases 1->N, nested, bare target, alias wins");
	resolve(dir, "team@example.test", false, &r);
	test_assert(r.status == ROUTE_OK && r.ndests == 3);
	test_assert(has_maildir(&r, "/m/example.test/bob/"));
	test_assert(has_maildir(&r, "/m/abs/carol/"));	/* via alice alias */
	route_result_clear(&r);
	resolve(dir, "nest@example.test", false, &r);
	test_assert(r.status == ROUTE_OK);
	test_assert(has_maildir(&r, "/m/example.test/alice/"));
	test_assert(has_maildir(&r, "/m/abs/carol/"));
	route_result_clear(&r);
	/* alice is a user AND an alias (alias wins, keeps a copy). */
	resolve(dir, "alice@example.test", false, &r);
	test_assert(r.status == ROUTE_OK && r.ndests == 2);
	test_assert(has_maildir(&r, "/m/example.test/alice/"));
	test_assert(r.dests[0].quota.bytes == 100);
	route_result_clear(&r);
	resolve(dir, "self@example.test", false, &r);
	test_assert(r.status == ROUTE_OK && r.ndests == 2);
	test_assert(has_maildir(&r, "/m/example.test/self/"));
	route_result_clear(&r);
	test_end();

	test_begin("route: loop, catch-all, unknown, error:, relay, remote");
	resolve(dir, "loop1@example.test", false, &r);
	test_assert(r.status == ROUTE_LOOP);
	route_result_clear(&r);
	resolve(dir, "whoever@example.test", false, &r);
	test_assert(r.status == ROUTE_OK && has_maildir(&r,
	    "/m/example.test/bob/"));
	route_result_clear(&r);
	resolve(dir, "bad@example.test", false, &r);
	test_assert(r.status == ROUTE_OK);	/* catch-all catches nosuch */
	route_result_clear(&r);
	resolve(dir, "x@gone.test", false, &r);
	test_assert(r.status == ROUTE_ERROR && r.text != NULL &&
	    strcmp(r.text, "this domain is gone") == 0);
	route_result_clear(&r);
	resolve(dir, "x@other.test", false, &r);
	test_assert(r.status == ROUTE_RELAY_DENIED);
	route_result_clear(&r);
	resolve(dir, "x@other.test", true, &r);
	test_assert(r.status == ROUTE_OK && r.ndests == 1 &&
	    r.dests[0].kind == ROUTE_REMOTE);
	route_result_clear(&r);
	resolve(dir, "fwd@example.test", false, &r);
	test_assert(r.status == ROUTE_OK && r.ndests == 1 &&
	    r.dests[0].kind == ROUTE_REMOTE &&
	    strcmp(r.dests[0].address, "someone@remote.test") == 0);
	route_result_clear(&r);
	resolve(dir, "x@relay.test", false, &r);
	test_assert(r.status == ROUTE_OK && r.ndests == 1 &&
	    strcmp(r.dests[0].transport, "smtp:[127.0.0.1]:2600") == 0);
	route_result_clear(&r);
	test_end();

	test_begin("route: alias-only domain, traversal refused");
	resolve(dir, "info@aliasonly.test", false, &r);
	test_assert(r.status == ROUTE_OK && has_maildir(&r,
	    "/m/example.test/bob/"));
	route_result_clear(&r);
	resolve(dir, "nobody@aliasonly.test", false, &r);
	test_assert(r.status == ROUTE_UNKNOWN);
	route_result_clear(&r);
	resolve(dir, "evil@example.test", false, &r);
	test_assert(r.status == ROUTE_CONFIG);
	route_result_clear(&r);
	test_assert(route_maildir_path("/m", "a/../b") == NULL);
	test_assert(route_maildir_path("/m", "..") == NULL);
	test_assert(route_maildir_path("/m", "") == NULL);
	test_assert(route_maildir_path("/m", "/etc/") == NULL);
	test_assert(route_maildir_path("/m", "/mx/a/") == NULL);
	test_assert(route_maildir_path("/m", "/m/") == NULL);
	{
		/* Anything that resolves to mail_root itself, or above it. */
		static const char *const bad[] = {
			"/m//", "/m/.", "/m/./", "/m/.//./", "./", ".", "//",
			"/", "/m", "/m/a/../..", "a/..", "a/../", "./..",
			"/m/../m/a/", "/m/..", "/mm/a/", ".//.", "/m/./../x/",
		};
		static const char *const good[][3] = {
			{ "/m", "a/", "/m/a/" },
			{ "/m", "./a/", "/m/a/" },
			{ "/m", "a//b/./", "/m/a/b/" },
			{ "/m/", "/m//a", "/m/a" },
			{ "/m", "/m/./d/u/", "/m/d/u/" },
			{ "/m", ".a/", "/m/.a/" },
			{ "/m", "...", "/m/..." },
			{ "/", "/d/u/", "/d/u/" },
			{ "/", "d/u/", "/d/u/" },
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			test_assert(route_maildir_path("/m", bad[i]) == NULL);
		test_assert(route_maildir_path("/", "/") == NULL);
		test_assert(route_maildir_path("/", "/.//") == NULL);
		for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
			char *p = route_maildir_path(good[i][0], good[i][1]);

			test_assert(p != NULL && strcmp(p, good[i][2]) == 0);
			free(p);
		}
	}
	{
		char *p = route_maildir_path("/m/", "/m/d/u/");

		test_assert(p != NULL && strcmp(p, "/m/d/u/") == 0);
		free(p);
	}
	{
		char *p = route_maildir_path("/m", "a..b/");

		test_assert(p != NULL && strcmp(p, "/m/a..b/") == 0);
		free(p);
	}
	{
		/* `petrel user move`'s marker: a file in the maildir's
		 * place, "moving HOST" or "moved HOST"; anything else (a
		 * maildir, nothing, garbage, a bad host) is no marker */
		char tmpl[] = "/tmp/test_route.XXXXXX", *d = mkdtemp(tmpl);
		char *md, *mf, *host;
		FILE *f;

		test_assert(d != NULL);
		md = xasprintf("%s/u/", d);
		mf = xasprintf("%s/u", d);
		test_assert(route_moved_read(md, &host) == -1 && host == NULL);
		test_assert(mkdir(mf, 0700) == 0);
		test_assert(!route_moved_marker(md));
		test_assert(route_moved_read(md, &host) == -1);
		test_assert(rmdir(mf) == 0);
		static const struct { const char *text; int r; const char *h; }
		    cases[] = {
			{ "moving 10.0.0.2\n", 0, NULL },
			{ "moved 10.0.0.2\n", 1, "10.0.0.2" },
			{ "moved be2.internal", 1, "be2.internal" },
			{ "moved bad host\n", -1, NULL },
			{ "moved \n", -1, NULL },
			{ "", -1, NULL },
			{ "junk\n", -1, NULL },
		};
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			test_assert((f = fopen(mf, "w")) != NULL);
			fputs(cases[i].text, f);
			fclose(f);
			test_assert(route_moved_marker(md));
			test_assert(route_moved_read(md, &host) == cases[i].r);
			test_assert(cases[i].h == NULL ? host == NULL :
			    host != NULL && strcmp(host, cases[i].h) == 0);
			free(host);
		}
		unlink(mf);
		rmdir(d);
		free(md);
		free(mf);
	}
	test_end();

	test_begin("route: transports discard:, lmtp:, maildrop:, local:");
	test_assert(route_transport_kind("") == TRANSPORT_LOCAL);
	test_assert(route_transport_kind("virtual") == TRANSPORT_LOCAL);
	test_assert(route_transport_kind("SMTP:[h]:25") == TRANSPORT_RELAY);
	test_assert(route_transport_kind("error") == TRANSPORT_ERROR);
	test_assert(route_transport_kind("pipe:x") == TRANSPORT_UNSUPPORTED);
	test_assert(route_transport_kind("smtpx:") == TRANSPORT_UNSUPPORTED);
	test_assert(route_transport_kind("lmtp:[h]:24") == TRANSPORT_LMTP);
	test_assert(route_transport_kind("LMTP:inet:h:24") == TRANSPORT_LMTP);
	test_assert(route_transport_kind("lmtp:unix:private/x") ==
	    TRANSPORT_UNSUPPORTED);
	test_assert(route_transport_kind("lmtp:") == TRANSPORT_UNSUPPORTED);
	test_assert(route_transport_kind("lmtp") == TRANSPORT_UNSUPPORTED);
	/* discard: wins over the user row, like error: */
	resolve(dir, "u@drop.test", false, &r);
	test_assert(r.status == ROUTE_OK && r.ndests == 1 &&
	    r.dests[0].kind == ROUTE_DISCARD &&
	    strcmp(r.dests[0].transport, "discard:") == 0);
	route_result_clear(&r);
	/* lmtp: cannot be run: deferred, never a silent local copy */
	resolve(dir, "u@lmtp.test", false, &r);
	test_assert(r.status == ROUTE_CONFIG && r.ndests == 0);
	route_result_clear(&r);
	resolve(dir, "m@md.test", false, &r);
	test_assert(r.status == ROUTE_OK && has_maildir(&r, "/m/md.test/m/"));
	route_result_clear(&r);
	resolve(dir, "root@loc.test", false, &r);
	test_assert(r.status == ROUTE_OK && has_maildir(&r, "/m/loc/root/"));
	route_result_clear(&r);
	test_end();

	test_begin("route: a maildir column holding addresses forwards");
	test_assert(route_maildir_is_forward("a@b.test"));
	test_assert(route_maildir_is_forward("a@b.test, c@d.test"));
	test_assert(!route_maildir_is_forward("d.test/a@b.test/"));
	test_assert(!route_maildir_is_forward("@b.test"));
	test_assert(!route_maildir_is_forward("a@b.test, nota"));
	test_assert(!route_maildir_is_forward("example.test/alice/"));
	test_assert(route_maildir_path("/m", "a@b.test") == NULL);
	resolve(dir, "fw@example.test", false, &r);
	test_assert(r.status == ROUTE_OK && r.ndests == 2 &&
	    has_maildir(&r, "/m/example.test/bob/"));
	test_assert(r.dests[0].kind == ROUTE_REMOTE &&
	    strcmp(r.dests[0].address, "someone@remote.test") == 0);
	route_result_clear(&r);
	resolve(dir, "fw+tag@example.test", false, &r);
	test_assert(r.status == ROUTE_OK && r.ndests == 2);
	route_result_clear(&r);
	resolve(dir, "fself@example.test", false, &r);
	test_assert(r.status == ROUTE_LOOP && r.ndests == 0);
	route_result_clear(&r);
	test_end();

	test_begin("route: lmtp: transport, frontend to backends");
	/* an lmtp: domain: its users and unknown addresses to the next
	 * hop, never to a Maildir */
	resolve(dir, "u@lt.test", false, &r);
	test_assert(r.status == ROUTE_OK && r.ndests == 1 &&
	    r.dests[0].kind == ROUTE_REMOTE &&
	    strcmp(r.dests[0].transport, "lmtp:inet:10.0.0.7:2424") == 0);
	route_result_clear(&r);
	resolve(dir, "nobody@lt.test", false, &r);
	test_assert(r.status == ROUTE_OK && r.ndests == 1 &&
	    r.dests[0].kind == ROUTE_REMOTE);
	route_result_clear(&r);
	/* a frontend: every user to its backend, aliases expanded here */
	rc.lmtp_port = 24;
	rc.backend_default = "10.0.0.5";
	resolve(dir, "team@example.test", false, &r);
	/* alice, her alias's carol, bob */
	test_assert(r.status == ROUTE_OK && r.ndests == 3);
	for (size_t i = 0; i < r.ndests; i++)
		test_assert(r.dests[i].kind == ROUTE_REMOTE &&
		    strcmp(r.dests[i].transport, "lmtp:[10.0.0.5]:24") == 0);
	route_result_clear(&r);
	/* the domain's own lmtp: transport wins */
	resolve(dir, "u@lt.test", false, &r);
	test_assert(r.status == ROUTE_OK && r.ndests == 1 &&
	    strcmp(r.dests[0].transport, "lmtp:inet:10.0.0.7:2424") == 0);
	route_result_clear(&r);
	/* no backend: deferred (logged here), never a local copy */
	rc.backend_default = "";
	resolve(dir, "bob@example.test", false, &r);
	test_assert(r.status == ROUTE_TEMPFAIL && r.ndests == 0 && r.logged);
	route_result_clear(&r);
	rc.backend_default = "bad host]";
	resolve(dir, "bob@example.test", false, &r);
	test_assert(r.status == ROUTE_CONFIG && r.ndests == 0);
	route_result_clear(&r);
	rc.lmtp_port = 0;
	rc.backend_default = NULL;
	test_end();

	test_begin("route: directory down is ROUTE_TEMPFAIL");
	dir_close(&dir);
	test_assert(dir_open("mysql://x:y@127.0.0.1:1/nodb", 0, &dir, &err) ==
	    DIR_OK);
	dir_set_queries(dir, NULL);
	resolve(dir, "bob@example.test", false, &r);
	test_assert(r.status == ROUTE_TEMPFAIL);
	route_result_clear(&r);
	test_end();
	dir_close(&dir);
	free(url);
	return test_done();
}
