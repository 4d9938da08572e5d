/*
 * idle_driver.c: many idle IMAP clients from one process, for
 * bench/idle_50k.sh.
 *
 * Opens CONNS connections to 127.0.0.1:IMAP_PORT (at most INFLIGHT being set
 * up at once, at most RATE new ones a second), from source addresses
 * 127.0.0.2 .. 127.0.0.(1+NSRC) (bind() before connect(), so the ephemeral
 * port range is per source address), each doing LOGIN uK@DOMAIN, SELECT
 * INBOX and IDLE, connection i as user u(UFIRST + i % USERS). Once they are
 * idling (or the set-up time is up) it runs MEMCMD (a shell command that
 * prints the server's memory), then delivers one message by SMTP to each of
 * the first NOTIFY users (one transaction each, in one session, from a second
 * thread), and times, for every connection of those users, how long after
 * that delivery's "250" its "* n EXISTS" line arrived. Everything is bounded
 * in time: set-up SETUP_SECS, waiting for EXISTS 30 s.
 *
 *   idle_driver IMAP_PORT SMTP_PORT CONNS USERS DOMAIN PASSWORD NSRC RATE
 *               INFLIGHT SETUP_SECS NOTIFY MEMCMD UFIRST LATFILE
 *
 * Users are uUFIRST .. u(UFIRST+USERS-1) (several drivers, one per slice of
 * users, get past the open-files limit of one process); every latency, in
 * ms, goes to LATFILE, one a line. MEMCMD may wait (for the other drivers).
 *
 * Prints "RESULT key=value ..." lines; exit status 0 when every connection
 * got to IDLE and every notified connection was told, 1 otherwise.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum st { S_CONNECTING, S_GREETING, S_LOGIN, S_SELECT, S_IDLESTART, S_IDLE,
	  S_FAILED };

struct conn {
	int fd;
	unsigned char state;
	unsigned short len;
	double t_exists;	/* when "* n EXISTS" arrived, 0: not yet */
	char buf[240];
};

static struct conn *conns;
static int nconns, nusers, nnotify, ufirst;
static FILE *latf;
static const char *domain, *password;
static int epfd;
static int n_idle, n_failed, n_opened;
static double *t250;		/* per notified user: when the 250 came */
static double *t_dot;		/* per notified user: when "." was sent */
static atomic_int smtp_done;
static int smtp_port;
static char fail_reason[8][160];
static int n_reasons;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
fail(int i, const char *why)
{
	struct conn *c = &conns[i];

	if (n_reasons < 8)
		snprintf(fail_reason[n_reasons++], sizeof(fail_reason[0]),
		    "conn %d (u%d) state %d: %s", i, ufirst + i % nusers, c->state,
		    why);
	if (c->state == S_IDLE)
		n_idle--;
	c->state = S_FAILED;
	n_failed++;
	if (c->fd >= 0) {
		epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
	}
}

static int
say(int i, const char *fmt, int user)
{
	char line[200];
	int n = snprintf(line, sizeof(line), fmt, user, domain, password);

	/* short commands: a fresh socket buffer takes them whole */
	if (send(conns[i].fd, line, n, MSG_NOSIGNAL) != n) {
		fail(i, "send failed");
		return -1;
	}
	return 0;
}

static void
on_line(int i, const char *l)
{
	struct conn *c = &conns[i];
	int user = ufirst + i % nusers;

	switch (c->state) {
	case S_GREETING:
		if (strncmp(l, "* OK", 4) != 0) {
			fail(i, l);
			return;
		}
		c->state = S_LOGIN;
		say(i, "a LOGIN u%d@%s %s\r\n", user);
		break;
	case S_LOGIN:
		if (strncmp(l, "a ", 2) != 0)
			break;
		if (strncmp(l, "a OK", 4) != 0) {
			fail(i, l);
			return;
		}
		c->state = S_SELECT;
		say(i, "b SELECT INBOX\r\n", 0);
		break;
	case S_SELECT:
		if (strncmp(l, "b ", 2) != 0)
			break;
		if (strncmp(l, "b OK", 4) != 0) {
			fail(i, l);
			return;
		}
		c->state = S_IDLESTART;
		say(i, "c IDLE\r\n", 0);
		break;
	case S_IDLESTART:
		if (l[0] == '+') {
			c->state = S_IDLE;
			n_idle++;
		} else if (strncmp(l, "c ", 2) == 0)
			fail(i, l);
		break;
	case S_IDLE: {
		size_t n = strlen(l);

		if (c->t_exists == 0 && n > 7 && l[0] == '*' &&
		    strcmp(l + n - 7, " EXISTS") == 0)
			c->t_exists = now();
		break;
	}
	default:
		break;
	}
}

static void
on_readable(int i)
{
	struct conn *c = &conns[i];

	for (;;) {
		ssize_t r;

		if (c->fd < 0)
			return;
		r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len,
		    0);
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			fail(i, strerror(errno));
			return;
		}
		if (r == 0) {
			fail(i, "closed by the server");
			return;
		}
		c->len += r;
		c->buf[c->len] = '\0';
		for (;;) {
			char *nl = memchr(c->buf, '\n', c->len);
			size_t used;

			if (nl == NULL) {
				/* a line longer than the buffer (FLAGS and
				 * the like): keep its start, drop the rest */
				if (c->len >= sizeof(c->buf) - 1)
					c->len = 16;
				break;
			}
			*nl = '\0';
			if (nl > c->buf && nl[-1] == '\r')
				nl[-1] = '\0';
			on_line(i, c->buf);
			if (c->fd < 0)
				return;
			used = nl + 1 - c->buf;
			memmove(c->buf, nl + 1, c->len - used);
			c->len -= used;
			c->buf[c->len] = '\0';
		}
	}
}

static void
open_one(int i, int nsrc, int port)
{
	struct conn *c = &conns[i];
	struct sockaddr_in src = { .sin_family = AF_INET };
	struct sockaddr_in dst = { .sin_family = AF_INET };
	struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = i };
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->state = S_CONNECTING;
	n_opened++;
	if (c->fd < 0) {
		fail(i, strerror(errno));
		return;
	}
	src.sin_addr.s_addr = htonl(0x7f000002 + i % nsrc);
	dst.sin_addr.s_addr = htonl(0x7f000001);
	dst.sin_port = htons(port);
	/* the kernel picks a port for this source address at connect() */
	setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
	    sizeof(one));
	if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
		fail(i, "bind");
		return;
	}
	if (connect(c->fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 &&
	    errno != EINPROGRESS) {
		fail(i, strerror(errno));
		return;
	}
	epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void
on_event(int i, unsigned events)
{
	struct conn *c = &conns[i];

	if (c->state == S_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0) {
			fail(i, strerror(err));
			return;
		}
		c->state = S_GREETING;
		epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
		if (!(events & EPOLLIN))
			return;
	}
	on_readable(i);
}

static int
poll_once(int ms)
{
	struct epoll_event evs[512];
	int n = epoll_wait(epfd, evs, 512, ms);

	for (int k = 0; k < n; k++)
		on_event(evs[k].data.u32, evs[k].events);
	return n;
}

/* SMTP: read one reply (all its lines); its code, or -1 */
static int
smtp_reply(FILE *f)
{
	char line[512];

	for (;;) {
		if (fgets(line, sizeof(line), f) == NULL)
			return -1;
		if (strlen(line) < 4 || line[3] != '-')
			return atoi(line);
	}
}

static void *
smtp_thread(void *arg)
{
	struct sockaddr_in dst = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	FILE *f;

	(void)arg;
	dst.sin_addr.s_addr = htonl(0x7f000001);
	dst.sin_port = htons(smtp_port);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0) {
		perror("idle_driver: smtp connect");
		atomic_store(&smtp_done, -1);
		return NULL;
	}
	f = fdopen(fd, "r+");
	setvbuf(f, NULL, _IOFBF, 8192);
	if (smtp_reply(f) != 220)
		goto bad;
	fprintf(f, "EHLO driver.example.org\r\n");
	fflush(f);
	if (smtp_reply(f) != 250)
		goto bad;
	for (int k = 0; k < nnotify; k++) {
		int u = ufirst + k;

		fprintf(f, "MAIL FROM:<sender@example.org>\r\n");
		fflush(f);
		if (smtp_reply(f) != 250)
			goto bad;
		fprintf(f, "RCPT TO:<u%d@%s>\r\n", u, domain);
		fflush(f);
		if (smtp_reply(f) != 250)
			goto bad;
		fprintf(f, "DATA\r\n");
		fflush(f);
		if (smtp_reply(f) != 354)
			goto bad;
		fprintf(f, "From: sender@example.org\r\nTo: u%d@%s\r\n"
		    "Subject: wake up %d\r\nMessage-ID: <idle%d@example.org>\r\n"
		    "\r\nhello\r\n.\r\n", u, domain, u, u);
		t_dot[k] = now();
		fflush(f);
		if (smtp_reply(f) != 250)
			goto bad;
		t250[k] = now();
		/* spread the deliveries a little: 20 ms apart */
		usleep(20000);
	}
	fprintf(f, "QUIT\r\n");
	fflush(f);
	fclose(f);
	atomic_store(&smtp_done, 1);
	return NULL;
bad:
	fprintf(stderr, "idle_driver: SMTP delivery failed\n");
	fclose(f);
	atomic_store(&smtp_done, -1);
	return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	int imap_port, nsrc, rate, inflight_max, notified = 0, told = 0, early = 0;
	double setup_secs, t0, t_setup, *lat;
	const char *memcmd;
	pthread_t th;
	int rc = 0;

	if (argc != 15) {
		fprintf(stderr, "usage: idle_driver IMAP_PORT SMTP_PORT CONNS "
		    "USERS DOMAIN PASSWORD NSRC RATE INFLIGHT SETUP_SECS NOTIFY "
		    "MEMCMD UFIRST LATFILE\n");
		return 2;
	}
	imap_port = atoi(argv[1]);
	smtp_port = atoi(argv[2]);
	nconns = atoi(argv[3]);
	nusers = atoi(argv[4]);
	domain = argv[5];
	password = argv[6];
	nsrc = atoi(argv[7]);
	rate = atoi(argv[8]);
	inflight_max = atoi(argv[9]);
	setup_secs = atof(argv[10]);
	nnotify = atoi(argv[11]);
	memcmd = argv[12];
	ufirst = atoi(argv[13]);
	latf = fopen(argv[14], "w");
	if (latf == NULL) {
		perror(argv[14]);
		return 2;
	}
	if (nconns <= 0 || nusers <= 0 || nsrc <= 0 || nsrc > 250 ||
	    rate <= 0 || inflight_max <= 0 || nnotify < 0 ||
	    nnotify > nusers) {
		fprintf(stderr, "idle_driver: bad arguments\n");
		return 2;
	}
	conns = calloc(nconns, sizeof(*conns));
	t250 = calloc(nnotify + 1, sizeof(double));
	t_dot = calloc(nnotify + 1, sizeof(double));
	lat = calloc(nconns, sizeof(double));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (conns == NULL || t250 == NULL || t_dot == NULL || lat == NULL ||
	    epfd < 0) {
		perror("idle_driver");
		return 2;
	}

	/* phase 1: connections up to IDLE */
	t0 = now();
	for (;;) {
		double t = now();
		int busy = n_opened - n_idle - n_failed;

		while (n_opened < nconns && busy < inflight_max &&
		    n_opened < (t - t0) * rate + 1) {
			open_one(n_opened, nsrc, imap_port);
			busy++;
		}
		if (n_idle + n_failed == nconns || t - t0 > setup_secs)
			break;
		poll_once(5);
	}
	t_setup = now() - t0;
	printf("RESULT phase=setup opened=%d idling=%d failed=%d seconds=%.1f "
	    "rate_per_s=%.0f\n", n_opened, n_idle, n_failed, t_setup,
	    n_idle / t_setup);
	for (int k = 0; k < n_reasons; k++)
		printf("failure: %s\n", fail_reason[k]);
	fflush(stdout);

	/* settle, answering whatever comes, then the memory figure */
	for (double t1 = now(); now() - t1 < 3;)
		poll_once(100);
	if (system(memcmd) != 0)
		fprintf(stderr, "idle_driver: the memory command failed\n");
	fflush(stdout);

	if (nnotify == 0) {	/* a warm-up run: set-up only */
		for (int i = 0; i < nconns; i++)
			if (conns[i].fd >= 0)
				close(conns[i].fd);
		return n_idle == nconns ? 0 : 1;
	}

	/* phase 2: a message to each of the first NOTIFY users, EXISTS timed */
	for (int i = 0; i < nconns; i++)
		conns[i].t_exists = 0;
	if (pthread_create(&th, NULL, smtp_thread, NULL) != 0) {
		perror("idle_driver: pthread_create");
		return 2;
	}
	for (double t1 = now(); now() - t1 < 30;) {
		int all = atomic_load(&smtp_done) != 0;

		poll_once(20);
		for (int i = 0; all && i < nconns; i++)
			if (i % nusers < nnotify && conns[i].state == S_IDLE &&
			    conns[i].t_exists == 0)
				all = 0;
		if (all)
			break;
	}
	pthread_join(th, NULL);
	for (int i = 0; i < nconns; i++) {
		int u = i % nusers;
		double d;

		if (u >= nnotify || conns[i].state != S_IDLE)
			continue;
		notified++;
		if (conns[i].t_exists == 0 || t250[u] == 0)
			continue;
		d = conns[i].t_exists - t250[u];
		if (d < 0) {	/* told before the 250 was read */
			early++;
			d = 0;
		}
		lat[told++] = d;
		fprintf(latf, "%.3f\n", d * 1e3);
	}
	fclose(latf);
	qsort(lat, told, sizeof(double), cmp_double);
	printf("RESULT phase=notify users=%d connections=%d told=%d "
	    "before_250=%d", nnotify, notified, told, early);
	if (told > 0)
		printf(" median_ms=%.1f p99_ms=%.1f max_ms=%.1f",
		    lat[told / 2] * 1e3, lat[(int)(told * 0.99)] * 1e3,
		    lat[told - 1] * 1e3);
	printf(" smtp=%s\n", atomic_load(&smtp_done) == 1 ? "ok" : "failed");
	if (n_idle != nconns || told != notified || notified == 0 ||
	    atomic_load(&smtp_done) != 1)
		rc = 1;
	fflush(stdout);

	for (int i = 0; i < nconns; i++)
		if (conns[i].fd >= 0)
			close(conns[i].fd);
	return rc;
}
