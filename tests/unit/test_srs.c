/* Unit tests for lib/trust/srs.c (the Sender Rewriting Scheme). The
 * expected addresses were computed apart from this code, from the
 * scheme itself in Python (hmac, hashlib.sha1, base64):
 *   tt   = base32((t // 86400) % 1024), two characters, A-Z2-7
 *   hash = b64(HMAC-SHA1(secret, lower(tt + domain + local)))[:4] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/trust/srs.h"
#include "test.h"

#define SECRET "s3cret"
#define NOW ((time_t)1700000000)	/* day 19675, slot 219: "G3" */
#define DAY ((time_t)86400)

static bool
fwd_is(const char *sender, const char *domain, time_t now, const char *want)
{
	const char *why;
	char *r = srs_forward(SECRET, domain, sender, now, &why);
	bool ok = r != NULL && strcmp(r, want) == 0;

	if (!ok)
		fprintf(stderr, "forward %s: %s\n", sender, r ? r : why);
	free(r);
	return ok;
}

static bool
rev_is(const char *local, time_t now, const char *want)
{
	const char *why = NULL;
	char *r = srs_reverse(SECRET, local, now, &why);
	bool ok = want == NULL ? r == NULL && why != NULL :
	    r != NULL && strcmp(r, want) == 0;

	if (!ok)
		fprintf(stderr, "reverse %s: %s\n", local, r ? r : why);
	free(r);
	return ok;
}

static void
test_srs0(void)
{
	test_begin("srs: SRS0 forward and reverse");
	test_assert(fwd_is("alice@example.org", "fwd.test", NOW,
	    "SRS0=J6mz=G3=example.org=alice@fwd.test"));
	test_assert(rev_is("SRS0=J6mz=G3=example.org=alice", NOW,
	    "alice@example.org"));
	/* the hash and the rest compare without regard to case */
	test_assert(rev_is("srs0=j6MZ=g3=EXAMPLE.org=Alice", NOW,
	    "Alice@EXAMPLE.org"));
	/* other separators after the tag, as libsrs2 accepts */
	test_assert(rev_is("SRS0+J6mz=G3=example.org=alice", NOW,
	    "alice@example.org"));
	/* a day later */
	test_assert(rev_is("SRS0=J6mz=G3=example.org=alice", NOW + DAY,
	    "alice@example.org"));
	test_end();
}

static void
test_refused(void)
{
	const char *why;
	char *r;

	test_begin("srs: bad hash, expired, malformed");
	test_assert(rev_is("SRS0=J6mA=G3=example.org=alice", NOW, NULL));
	test_assert(rev_is("SRS0=J6mz=G3=example.org=alicf", NOW, NULL));
	test_assert(rev_is("SRS0=J6mz=G3=example.org=alice", NOW +
	    SRS_MAX_AGE_DAYS * DAY, "alice@example.org"));
	test_assert(rev_is("SRS0=J6mz=G3=example.org=alice", NOW +
	    (SRS_MAX_AGE_DAYS + 1) * DAY, NULL));
	/* from the future (a day ahead) counts as a wrapped, old stamp */
	test_assert(rev_is("SRS0=J6mz=G3=example.org=alice", NOW - DAY,
	    NULL));
	test_assert(rev_is("SRS0=J6mz=G=example.org=alice", NOW, NULL));
	test_assert(rev_is("SRS0=J6mz=G1=example.org=alice", NOW, NULL));
	test_assert(rev_is("SRS0=J6m=G3=example.org=alice", NOW, NULL));
	test_assert(rev_is("SRS0=J6mz=G3=example.org=", NOW, NULL));
	test_assert(rev_is("SRS0=J6mz=G3=example.org", NOW, NULL));
	test_assert(rev_is("SRS2=J6mz=G3=example.org=alice", NOW, NULL));
	test_assert(rev_is("alice", NOW, NULL));
	test_assert(rev_is("SRS1=prkO=first.test=", NOW, NULL));
	/* not rewritten: no domain, our own SRS address, too long */
	test_assert(srs_forward(SECRET, "fwd.test", "", NOW, &why) == NULL);
	test_assert(srs_forward(SECRET, "fwd.test", "alice", NOW, &why) ==
	    NULL);
	test_assert(srs_forward(SECRET, "fwd.test",
	    "SRS0=J6mz=G3=example.org=alice@FWD.test", NOW, &why) == NULL);
	r = srs_forward(SECRET, "fwd.test", "a-rather-long-local-part-of-"
	    "fifty-characters-or-so.xx@example.org", NOW, &why);
	test_assert(r == NULL && strstr(why, "64") != NULL);
	free(r);
	test_end();
}

static void
test_wrap(void)
{
	test_begin("srs: the day stamp wraps at 1024");
	/* day 1023 is "77"; six days later (slot 5, "AF") it is 6 old */
	test_assert(fwd_is("bob@orig.org", "fwd.test", 1023 * DAY + 100,
	    "SRS0=cq3Y=77=orig.org=bob@fwd.test"));
	test_assert(rev_is("SRS0=cq3Y=77=orig.org=bob", 1029 * DAY,
	    "bob@orig.org"));
	test_assert(rev_is("SRS0=cq3Y=77=orig.org=bob", (1024 + 1023) * DAY,
	    "bob@orig.org"));
	test_assert(rev_is("SRS0=cq3Y=77=orig.org=bob", (1024 + 21) * DAY,
	    NULL));
	test_end();
}

static void
test_srs1(void)
{
	test_begin("srs: SRS1 for an SRS0 sender");
	test_assert(fwd_is("SRS0=ABCD=XY=orig.org=bob@first.test", "fwd.test",
	    NOW, "SRS1=prkO=first.test==ABCD=XY=orig.org=bob@fwd.test"));
	/* another host's SRS1 forwarded again: same first forwarder */
	test_assert(fwd_is("SRS1=zzzz=first.test==ABCD=XY=orig.org=bob@"
	    "mid.test", "fwd.test", NOW,
	    "SRS1=prkO=first.test==ABCD=XY=orig.org=bob@fwd.test"));
	test_assert(rev_is("SRS1=prkO=first.test==ABCD=XY=orig.org=bob", NOW,
	    "SRS0=ABCD=XY=orig.org=bob@first.test"));
	test_assert(rev_is("srs1=PRKo=First.Test==ABCD=XY=orig.org=bob", NOW,
	    "SRS0=ABCD=XY=orig.org=bob@First.Test"));
	test_assert(rev_is("SRS1=prkX=first.test==ABCD=XY=orig.org=bob", NOW,
	    NULL));
	test_end();
}

static void
test_secret_file(void)
{
	char path[512];
	const char *err;
	char *s;
	FILE *fp;

	test_begin("srs: srs_secret = file:PATH");
	snprintf(path, sizeof(path), "%s/secret", test_tmpdir());
	fp = fopen(path, "w");
	test_assert(fp != NULL);
	fputs("from-a-file\nsecond line\n", fp);
	fclose(fp);
	{
		char v[600];

		snprintf(v, sizeof(v), "file:%s", path);
		s = srs_secret_load(v, &err);
		test_assert_streq(s, "from-a-file");
		free(s);
		snprintf(v, sizeof(v), "file:%s.missing", path);
		test_assert(srs_secret_load(v, &err) == NULL);
	}
	s = srs_secret_load("plain", &err);
	test_assert_streq(s, "plain");
	free(s);
	test_end();
}

int
main(void)
{
	test_srs0();
	test_refused();
	test_wrap();
	test_srs1();
	test_secret_file();
	return test_done();
}
