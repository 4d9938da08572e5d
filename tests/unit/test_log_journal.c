/* Unit tests for log_journal_record() (lib/base/log.c): the journald
 * native-protocol datagram of one log line, with the fields read from the
 * line's Postfix shapes. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lib/base/log.h"
#include "test.h"

static char rec[8192];
static size_t reclen;

static void
make(const char *service, const char *text)
{
	reclen = log_journal_record(rec, sizeof(rec), 6, "petrel", service,
	    4242, text);
}

/* The value of KEY in the record (text form), or NULL. */
static const char *
field(const char *key)
{
	static char val[1024];
	size_t klen = strlen(key);

	for (size_t i = 0; i < reclen;) {
		const char *line = rec + i;
		const char *nl = memchr(line, '\n', reclen - i);
		size_t len = nl != NULL ? (size_t)(nl - line) : reclen - i;

		if (len > klen && memcmp(line, key, klen) == 0 &&
		    line[klen] == '=' && len - klen - 1 < sizeof(val)) {
			memcpy(val, line + klen + 1, len - klen - 1);
			val[len - klen - 1] = '\0';
			return val;
		}
		i += len + 1;
	}
	return NULL;
}

static void
test_session_line(void)
{
	test_begin("journal: an IMAP login line");
	make("imap", "0123456789abcdef: imap login: user=<alice@example.test>, "
	    "[127.0.0.1]:5555, TLS");
	test_assert(rec[reclen - 1] == '\n');
	test_assert_streq(field("MESSAGE"), "0123456789abcdef: imap login: "
	    "user=<alice@example.test>, [127.0.0.1]:5555, TLS");
	test_assert_streq(field("PRIORITY"), "6");
	test_assert_streq(field("SYSLOG_FACILITY"), "2");
	test_assert_streq(field("SYSLOG_IDENTIFIER"), "petrel/imap");
	test_assert_streq(field("SYSLOG_PID"), "4242");
	test_assert_streq(field("PROTOCOL"), "imap");
	test_assert_streq(field("SESSION_ID"), "0123456789abcdef");
	test_assert(field("QUEUE_ID") == NULL);
	test_assert_streq(field("USER"), "alice@example.test");
	test_assert_streq(field("CLIENT"), "127.0.0.1");
	make("pop3", "00000000000000ff: pop3 login: user=<b@x>, [::1]:4444, "
	    "messages=3");
	test_assert_streq(field("CLIENT"), "::1");
	test_assert_streq(field("SESSION_ID"), "00000000000000ff");
	test_end();
}

static void
test_queue_lines(void)
{
	test_begin("journal: Postfix-shaped queue lines");
	make("smtpd", "0A1B2C3D4E5F6789: client=localhost[127.0.0.1], "
	    "sasl_method=PLAIN, sasl_username=bob@example.test");
	test_assert_streq(field("QUEUE_ID"), "0A1B2C3D4E5F6789");
	test_assert(field("SESSION_ID") == NULL);
	test_assert_streq(field("CLIENT"), "127.0.0.1");
	test_assert_streq(field("USER"), "bob@example.test");
	/* an outbound delivery: the bracket is the relay, not a client */
	make("smtp", "0A1B2C3D4E5F6789: to=<a@remote.test>, "
	    "relay=mx.remote.test[192.0.2.1]:25, delay=1, status=sent");
	test_assert_streq(field("QUEUE_ID"), "0A1B2C3D4E5F6789");
	test_assert(field("CLIENT") == NULL);
	test_assert_streq(field("PROTOCOL"), "smtp");
	make("smtpd", "NOQUEUE: reject: RCPT from unknown[198.51.100.7]: 554 "
	    "5.7.1 <x@other.test>: Relay access denied");
	test_assert(field("QUEUE_ID") == NULL && field("SESSION_ID") == NULL);
	test_assert_streq(field("CLIENT"), "198.51.100.7");
	/* no service: the process's ident, no PROTOCOL */
	make(NULL, "starting");
	test_assert_streq(field("SYSLOG_IDENTIFIER"), "petrel");
	test_assert(field("PROTOCOL") == NULL);
	/* "user=" inside another word is not a user */
	make("imap", "0123456789abcdef: superuser=<root> denied");
	test_assert(field("USER") == NULL);
	test_end();
}

static void
test_binary_and_bounds(void)
{
	static const char head[] = "MESSAGE\n";
	char small[64];
	size_t n;

	test_begin("journal: a newline in the text, a record that does not fit");
	make("smtpd", "two\nlines");
	test_assert(reclen > sizeof(head) - 1 + 8 + 9);
	test_assert(memcmp(rec, head, sizeof(head) - 1) == 0);
	/* 64-bit little-endian length, then the bytes and a newline */
	test_assert((unsigned char)rec[8] == 9 && rec[9] == 0 && rec[15] == 0);
	test_assert(memcmp(rec + 16, "two\nlines\n", 10) == 0);
	test_assert(field("PRIORITY") != NULL);
	n = log_journal_record(small, sizeof(small), 3, "petrel", "smtpd", 1,
	    "0123456789abcdef: a line whose message alone is longer than "
	    "the whole record buffer it must go into");
	test_assert(n <= sizeof(small));
	/* the message did not fit; what follows it did, each whole */
	test_assert(n > 0 && small[n - 1] == '\n');
	test_assert(memmem(small, n, "MESSAGE", 7) == NULL);
	test_assert(memmem(small, n, "PRIORITY=3\n", 11) != NULL);
	test_end();
}

int
main(void)
{
	test_session_line();
	test_queue_lines();
	test_binary_and_bounds();
	return test_done();
}
