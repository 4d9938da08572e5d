/*
 * test_authd_proto.c: unit tests for lib/authd/proto.c, the channel to
 * the auth process: every kind round-trips; frames arriving a byte at a
 * time are "need more" until complete; malformed frames (over a bound, a
 * NUL in a string, a bad enum, short or trailing bytes, a NULL where none
 * is allowed, an unknown kind) are refused; the encoder refuses what the
 * decoder would; the password is wiped.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/authd/proto.h"
#include "lib/route/route.h"
#include "tests/unit/test.h"

/* encode m, then decode it fed 1..n bytes at a time; out gets the copy */
static bool
roundtrip(const struct authd_msg *m, struct authd_msg *out)
{
	str_t buf = STR_INIT;
	size_t used;
	bool ok = true;

	if (authd_encode(&buf, m) != 0)
		return false;
	for (size_t n = 0; n < buf.len; n++) {
		if (authd_decode(buf.data, n, out, &used) != 0)
			ok = false;
	}
	/* with a following frame's bytes after it */
	str_append_n(&buf, "\0\0", 2);
	if (authd_decode(buf.data, buf.len, out, &used) != 1 ||
	    used != buf.len - 2)
		ok = false;
	authd_buf_wipe(&buf);
	return ok;
}

static void
test_route(void)
{
	struct authd_dest d[2] = {
		{ ROUTE_MAILDIR, "a@example.org", "/var/mail/a", NULL,
		    { 1000, 3 }, "/home/a" },
		{ ROUTE_REMOTE, "b@remote.example", NULL, "smtp:[h]:25",
		    { 0, 0 } },
	};
	struct authd_msg req = { .kind = AUTHD_ROUTE_REQ,
	    .address = "a@example.org", .may_relay = true };
	struct authd_msg rep = { .kind = AUTHD_ROUTE_REP, .status = ROUTE_OK,
	    .dests = d, .ndests = 2 };
	struct authd_msg out;

	test_begin("authd route request and reply round-trip");
	test_assert(roundtrip(&req, &out));
	test_assert(out.kind == AUTHD_ROUTE_REQ && out.may_relay);
	test_assert_streq(out.address, "a@example.org");
	authd_msg_clear(&out);

	test_assert(roundtrip(&rep, &out));
	test_assert(out.kind == AUTHD_ROUTE_REP && out.status == ROUTE_OK);
	test_assert(out.text == NULL && out.ndests == 2);
	test_assert(out.dests[0].kind == ROUTE_MAILDIR &&
	    out.dests[0].quota.bytes == 1000 &&
	    out.dests[0].quota.count == 3 && out.dests[0].transport == NULL);
	test_assert_streq(out.dests[0].maildir, "/var/mail/a");
	test_assert_streq(out.dests[0].home, "/home/a");
	test_assert(out.dests[1].kind == ROUTE_REMOTE &&
	    out.dests[1].maildir == NULL && out.dests[1].home == NULL);
	test_assert_streq(out.dests[1].transport, "smtp:[h]:25");
	authd_msg_clear(&out);

	rep.status = ROUTE_ERROR;
	rep.text = "no such user here";
	rep.ndests = 0;
	test_assert(roundtrip(&rep, &out));
	test_assert(out.status == ROUTE_ERROR && out.ndests == 0);
	test_assert_streq(out.text, "no such user here");
	authd_msg_clear(&out);
	test_end();
}

static void
test_login(void)
{
	struct authd_msg req = { .kind = AUTHD_LOGIN_REQ, .login = "u@x.org",
	    .password = "s3cret pass", .ip = "127.0.0.1", .protocol = "imap" };
	struct authd_msg rep = { .kind = AUTHD_LOGIN_REP,
	    .status = AUTHD_LOGIN_OK, .address = "u@x.org",
	    .maildir = "/m/x.org/u", .home = "", .uid = -1, .gid = 5000,
	    .quota = { .bytes = (uint64_t)1 << 40, .count = 7 } };
	struct authd_msg out;

	test_begin("authd login request and reply round-trip");
	test_assert(roundtrip(&req, &out));
	test_assert_streq(out.login, "u@x.org");
	test_assert_streq(out.password, "s3cret pass");
	test_assert_streq(out.ip, "127.0.0.1");
	test_assert_streq(out.protocol, "imap");
	test_assert(out.challenge == NULL);
	authd_msg_clear(&out);
	test_assert(out.password == NULL && out.login == NULL);

	/* a frontend's session: the same fields under another kind */
	req.kind = AUTHD_PROXY_REQ;
	test_assert(roundtrip(&req, &out));
	test_assert(out.kind == AUTHD_PROXY_REQ);
	test_assert_streq(out.login, "u@x.org");
	test_assert_streq(out.password, "s3cret pass");
	authd_msg_clear(&out);
	req.kind = AUTHD_LOGIN_REQ;

	/* CRAM-MD5: the challenge travels, the digest in password */
	req.challenge = "<1896.697170952@postoffice.example.net>";
	req.password = "b913a602c7eda7a495b4e6e7334d3890";
	test_assert(roundtrip(&req, &out));
	test_assert_streq(out.challenge,
	    "<1896.697170952@postoffice.example.net>");
	test_assert_streq(out.password, "b913a602c7eda7a495b4e6e7334d3890");
	authd_msg_clear(&out);
	test_assert(out.challenge == NULL);

	test_assert(roundtrip(&rep, &out));
	test_assert(out.status == AUTHD_LOGIN_OK && out.uid == -1 &&
	    out.gid == 5000 && out.quota.bytes == (uint64_t)1 << 40 &&
	    out.quota.count == 7);
	test_assert_streq(out.address, "u@x.org");
	test_assert_streq(out.maildir, "/m/x.org/u");
	test_assert_streq(out.home, "");
	test_assert(out.host == NULL);
	authd_msg_clear(&out);
	/* the user's backend host (scale-out) travels too */
	rep.host = "backend2.example";
	test_assert(roundtrip(&rep, &out));
	test_assert_streq(out.host, "backend2.example");
	test_assert_streq(out.home, "");
	test_assert(out.gid == 5000);
	authd_msg_clear(&out);
	test_assert(out.host == NULL);
	rep.host = NULL;

	rep.status = AUTHD_LOGIN_THROTTLED;
	rep.address = rep.maildir = rep.home = NULL;
	test_assert(roundtrip(&rep, &out));
	test_assert(out.status == AUTHD_LOGIN_THROTTLED &&
	    out.address == NULL);
	authd_msg_clear(&out);
	test_end();
}

static void
test_quota_postmaster(void)
{
	struct authd_msg q = { .kind = AUTHD_QUOTA_REQ, .address = "u@x.org" };
	struct authd_msg qr = { .kind = AUTHD_QUOTA_REP, .status = AUTHD_OK,
	    .quota = { .bytes = 12345 } };
	struct authd_msg p = { .kind = AUTHD_POSTMASTER_REQ };
	struct authd_msg pr = { .kind = AUTHD_POSTMASTER_REP,
	    .status = AUTHD_OK, .domain = "x.org" };
	struct authd_msg out;

	test_begin("authd quota and postmaster round-trip");
	test_assert(roundtrip(&q, &out));
	test_assert_streq(out.address, "u@x.org");
	authd_msg_clear(&out);
	test_assert(roundtrip(&qr, &out));
	test_assert(out.status == AUTHD_OK && out.quota.bytes == 12345 &&
	    out.quota.count == 0);
	authd_msg_clear(&out);
	test_assert(roundtrip(&p, &out));
	test_assert(out.kind == AUTHD_POSTMASTER_REQ);
	authd_msg_clear(&out);
	test_assert(roundtrip(&pr, &out));
	test_assert_streq(out.domain, "x.org");
	authd_msg_clear(&out);
	test_end();
}


static int
decode_raw(const void *p, size_t n)
{
	struct authd_msg m;
	size_t used;
	int r = authd_decode(p, n, &m, &used);

	authd_msg_clear(&m);
	return r;
}

static void
test_caps(void)
{
	struct authd_msg c = { .kind = AUTHD_CAPS_REQ };
	struct authd_msg cr = { .kind = AUTHD_CAPS_REP,
	    .status = AUTHD_NOTFOUND };
	struct authd_msg out;

	test_begin("authd capabilities round-trip; a bad status is refused");
	test_assert(roundtrip(&c, &out));
	test_assert(out.kind == AUTHD_CAPS_REQ);
	authd_msg_clear(&out);
	test_assert(roundtrip(&cr, &out));
	test_assert(out.kind == AUTHD_CAPS_REP &&
	    out.status == AUTHD_NOTFOUND);
	authd_msg_clear(&out);
	test_assert(decode_raw("\0\0\0\2\x0a\3", 6) == 1);
	test_assert(decode_raw("\0\0\0\2\x0a\4", 6) == -1);
	test_assert(decode_raw("\0\0\0\3\x0a\0\0", 7) == -1);
	test_assert(decode_raw("\0\0\0\2\x09\0", 6) == -1);
	test_end();
}

static void
test_malformed(void)
{
	struct authd_msg m;
	str_t buf = STR_INIT;
	char big[AUTHD_PASSWORD_MAX + 2];

	test_begin("authd malformed frames are refused");
	/* empty frame, oversized frame, unknown kind */
	test_assert(decode_raw("\0\0\0\0", 4) == -1);
	test_assert(decode_raw("\xff\xff\xff\xff", 4) == -1);
	test_assert(decode_raw("\0\0\0\1\x63", 5) == -1);
	test_assert(decode_raw("\0\0\0\1\0", 5) == -1);
	/* postmaster request with a trailing byte */
	test_assert(decode_raw("\0\0\0\1\7", 5) == 1);
	test_assert(decode_raw("\0\0\0\2\7\0", 6) == -1);
	/* route request: a NUL inside the address */
	test_assert(decode_raw("\0\0\0\x09\1\0\0\0\3a\0b\0", 13) == -1);
	test_assert(decode_raw("\0\0\0\x09\1\0\0\0\3abc\0", 13) == 1);
	/* may_relay out of range, NULL address, string past the frame */
	test_assert(decode_raw("\0\0\0\x09\1\0\0\0\3abc\2", 13) == -1);
	test_assert(decode_raw("\0\0\0\6\1\xff\xff\xff\xff\0", 10) == -1);
	test_assert(decode_raw("\0\0\0\x09\1\0\0\0\4abc\0", 13) == -1);
	/* quota reply with a bad status, and short */
	test_assert(decode_raw("\0\0\0\x0a\6\4\0\0\0\0\0\0\0\0", 14) == -1);
	test_assert(decode_raw("\0\0\0\x09\6\0\0\0\0\0\0\0\0", 13) == -1);
	/* route reply claiming more destinations than the frame holds */
	test_assert(decode_raw("\0\0\0\x0a\2\0\xff\xff\xff\xff\0\0\0\x10",
	    14) == -1);

	/* the encoder refuses what the decoder would */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	m = (struct authd_msg){ .kind = AUTHD_LOGIN_REQ, .login = "u",
	    .password = big, .ip = "::1", .protocol = "pop3" };
	test_assert(authd_encode(&buf, &m) == -1 && buf.len == 0);
	m.password = "ok";
	m.ip = NULL;
	test_assert(authd_encode(&buf, &m) == -1 && buf.len == 0);
	m = (struct authd_msg){ .kind = AUTHD_QUOTA_REP, .status = 9 };
	test_assert(authd_encode(&buf, &m) == -1);
	m = (struct authd_msg){ .kind = 42 };
	test_assert(authd_encode(&buf, &m) == -1);
	str_free(&buf);
	test_end();
}

static void
test_wipe(void)
{
	struct authd_msg m = { .kind = AUTHD_LOGIN_REQ, .login = "u",
	    .password = "hunter2-secret", .ip = "::1", .protocol = "smtp" };
	str_t buf = STR_INIT;
	char *data;
	size_t cap;
	bool found = false;

	test_begin("authd login frame is built in place and can be wiped");
	test_assert(authd_encode(&buf, &m) == 0);
	data = buf.data;
	cap = buf.cap;
	/* the frame was reserved whole: it fits and was never moved */
	test_assert(buf.len < cap);
	test_assert(memmem(data, buf.len, "hunter2-secret", 14) != NULL);
	/* wipe through a copy of the storage to look at it afterwards */
	explicit_bzero(data, cap);
	for (size_t i = 0; i < cap; i++)
		if (data[i] != 0)
			found = true;
	test_assert(!found);
	authd_buf_wipe(&buf);
	test_assert(buf.data == NULL && buf.len == 0);
	test_end();
}

int
main(void)
{
	test_route();
	test_login();
	test_quota_postmaster();
	test_caps();
	test_malformed();
	test_wipe();
	return test_done();
}
