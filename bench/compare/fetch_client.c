/*
 * fetch_client: an IMAP client for the FETCH 1:* BODY[] rows of
 * bench/compare.sh that is not itself the limit (the Python client of
 * driver.py tops out near loopback-copy speed divided by its own parsing).
 * It logs in, SELECTs INBOX, then sends "FETCH 1:* BODY[]" REPS times and
 * reads each answer with 4 MiB reads, parsing it as IMAP: every untagged
 * line, every literal {n} (skipped by its announced size, so literal
 * contents are never scanned), until the tagged reply, which must be OK.
 * Each "* n FETCH" response must carry one BODY[] literal that arrived
 * whole, and each FETCH must give EXPECT of them. Over plain TCP, or over
 * TLS (OpenSSL, implicit TLS as on imaps; the certificate is not checked)
 * with "tls".
 *
 *   fetch_client PORT USER PASSWORD EXPECT REPS [tls]
 *
 * Prints one line:
 *   bytes=B literals=L seconds=S mb_per_s=R proto=P cipher=C
 * B = the sum of the BODY[] literal sizes, S = the time from sending the
 * first FETCH to the last tagged OK (LOGIN and SELECT not counted). Exit 1
 * with a message on stderr on any protocol error.
 *
 * Built by bench/compare.sh: cc -O2 -o fetch_client fetch_client.c -lssl -lcrypto
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUFSZ (4 << 20)

static int fd = -1;
static SSL *ssl;
static char *buf;
static size_t bstart, bend;	/* unread bytes are buf[bstart, bend) */

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("fetch_client: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static ssize_t
net_read(char *p, size_t n)
{
	if (ssl != NULL) {
		size_t got = 0;
		int r = SSL_read_ex(ssl, p, n, &got);

		if (r <= 0) {
			int e = SSL_get_error(ssl, r);

			if (e == SSL_ERROR_ZERO_RETURN)
				return 0;
			die("SSL_read: error %d (%s)", e,
			    ERR_reason_error_string(ERR_get_error()));
		}
		return (ssize_t)got;
	}
	for (;;) {
		ssize_t r = read(fd, p, n);

		if (r >= 0)
			return r;
		if (errno != EINTR)
			die("read: %s", strerror(errno));
	}
}

static void
net_write(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w;

		if (ssl != NULL) {
			size_t done = 0;

			if (SSL_write_ex(ssl, p, n, &done) <= 0)
				die("SSL_write failed");
			w = (ssize_t)done;
		} else {
			w = write(fd, p, n);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				die("write: %s", strerror(errno));
		}
		p += w;
		n -= (size_t)w;
	}
}

/* Read more into the buffer (moving unread bytes to its start first). */
static void
fill(void)
{
	ssize_t r;

	if (bstart > 0 && (bend == BUFSZ || bstart == bend)) {
		memmove(buf, buf + bstart, bend - bstart);
		bend -= bstart;
		bstart = 0;
	}
	if (bend == BUFSZ)
		die("a line longer than %d bytes", BUFSZ);
	r = net_read(buf + bend, BUFSZ - bend);
	if (r == 0)
		die("connection closed by the server");
	bend += (size_t)r;
}

/* The next line (without CRLF, NUL-terminated in place, valid until the
 * next call); *lenp its length. */
static char *
next_line(size_t *lenp)
{
	size_t scan = bstart;

	for (;;) {
		char *nl = memchr(buf + scan, '\n', bend - scan);

		if (nl != NULL) {
			char *line = buf + bstart;
			size_t len = (size_t)(nl - line);

			if (len == 0 || nl[-1] != '\r')
				die("a line not ended by CRLF");
			len--;
			line[len] = '\0';
			bstart = (size_t)(nl + 1 - buf);
			*lenp = len;
			return line;
		}
		scan = bend;
		{
			size_t old = bstart;

			fill();
			scan -= old - bstart;
		}
	}
}

/* Skip n literal octets, reading straight past them. */
static void
skip_literal(unsigned long long n)
{
	while (n > 0) {
		size_t have = bend - bstart;

		if (have == 0) {
			bstart = bend = 0;
			fill();
			continue;
		}
		if (have > n)
			have = (size_t)n;
		bstart += have;
		n -= have;
	}
}

/* A literal announcement "{n}" (or "~{n}") at the end of the line: its
 * size, or -1. */
static long long
literal_at_end(const char *line, size_t len)
{
	const char *p;
	long long n = 0;

	if (len < 3 || line[len - 1] != '}')
		return -1;
	p = line + len - 2;
	while (p > line && *p >= '0' && *p <= '9')
		p--;
	if (*p != '{' || p == line + len - 2)
		return -1;
	for (const char *q = p + 1; q < line + len - 1; q++)
		n = n * 10 + (*q - '0');
	return n;
}

/* Read up to the tagged reply of tag; returns the count of BODY[]
 * literals and adds their sizes to *octets. Dies unless the reply is OK. */
static unsigned long
read_reply(const char *tag, unsigned long long *octets)
{
	size_t tlen = strlen(tag);
	unsigned long lits = 0;

	for (;;) {
		size_t len;
		char *line = next_line(&len);
		int body_in_resp = 0;

		if (strncmp(line, tag, tlen) == 0 && line[tlen] == ' ') {
			if (strncmp(line + tlen + 1, "OK", 2) != 0)
				die("%s", line);
			return lits;
		}
		if (line[0] != '*')
			die("unexpected line: %.200s", line);
		/* a response may carry several literals, each ending a
		 * line: follow them to the response's last line */
		for (;;) {
			long long n = literal_at_end(line, len);

			if (n < 0)
				break;
			if (len >= 9 && (strstr(line, "BODY[] {") != NULL ||
			    strstr(line, "BODY[] ~{") != NULL)) {
				lits++;
				*octets += (unsigned long long)n;
				body_in_resp++;
			}
			/* returns only once every announced octet was
			 * read: the literal is whole, and the next line
			 * must follow it */
			skip_literal((unsigned long long)n);
			line = next_line(&len);
		}
		if (body_in_resp > 1)
			die("a FETCH response with %d BODY[] literals",
			    body_in_resp);
	}
}

static void
command(const char *tag, const char *text)
{
	char out[512];
	int n = snprintf(out, sizeof(out), "%s %s\r\n", tag, text);

	if (n < 0 || (size_t)n >= sizeof(out))
		die("command too long");
	net_write(out, (size_t)n);
}

int
main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	unsigned long expect, reps;
	unsigned long long octets = 0, dummy = 0;
	unsigned long lits = 0;
	char text[400], tag[32];
	const char *proto = "tcp", *cipher = "-";
	int one = 1;
	size_t len;
	char *line;
	double t0, t1;

	if (argc < 6 || argc > 7 || (argc == 7 && strcmp(argv[6], "tls") != 0))
		die("usage: fetch_client PORT USER PASSWORD EXPECT REPS [tls]");
	expect = strtoul(argv[4], NULL, 10);
	reps = strtoul(argv[5], NULL, 10);
	if ((buf = malloc(BUFSZ)) == NULL)
		die("out of memory");
	sa.sin_port = htons((unsigned short)atoi(argv[1]));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect: %s", strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (argc == 7) {
		SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

		if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL ||
		    SSL_set_fd(ssl, fd) != 1)
			die("TLS set-up failed");
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
		if (SSL_connect(ssl) != 1)
			die("TLS handshake failed: %s",
			    ERR_reason_error_string(ERR_get_error()));
		proto = SSL_get_version(ssl);
		cipher = SSL_get_cipher_name(ssl);
	}
	line = next_line(&len);
	if (strncmp(line, "* OK", 4) != 0)
		die("greeting: %.200s", line);
	snprintf(text, sizeof(text), "LOGIN \"%s\" \"%s\"", argv[2], argv[3]);
	command("L", text);
	read_reply("L", &dummy);
	command("S", "SELECT INBOX");
	read_reply("S", &dummy);
	t0 = now();
	for (unsigned long r = 0; r < reps; r++) {
		unsigned long got;

		snprintf(tag, sizeof(tag), "F%lu", r);
		command(tag, "FETCH 1:* BODY[]");
		got = read_reply(tag, &octets);
		if (got != expect)
			die("FETCH %lu gave %lu BODY[] literals, expected %lu",
			    r + 1, got, expect);
		lits += got;
	}
	t1 = now();
	command("Z", "LOGOUT");
	printf("bytes=%llu literals=%lu seconds=%.6f mb_per_s=%.1f proto=%s "
	    "cipher=%s\n", octets, lits, t1 - t0, octets / (t1 - t0) / 1e6,
	    proto, cipher);
	return 0;
}
