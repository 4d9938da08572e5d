/*
 * fsync_loop: the machine's limit for durable small-file creation, as a
 * reference for SMTP delivery rates (bench/compare.sh).
 *
 * Each of THREADS threads repeatedly: open(DIR/tmp/NAME, O_CREAT|O_EXCL),
 * write SIZE bytes, fsync, close, rename to DIR/new/NAME and, with DIRSYNC=1,
 * fsync DIR/new (what a Maildir delivery that promises durability does).
 * All threads rename into the same new/ (one recipient's Maildir). Runs for
 * SECONDS, then prints "files_per_s=R files=N seconds=S" and removes the
 * files it made.
 *
 *   fsync_loop DIR THREADS SECONDS SIZE DIRSYNC
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *dir;
static int seconds, dirsync;
static size_t size;
static char *payload;
static atomic_int stop;
static atomic_long total;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "fsync_loop: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void *worker(void *arg)
{
	long id = (long)arg, n = 0;
	char tmp[4096], dst[4096], newdir[4096];
	int dfd = -1;

	snprintf(newdir, sizeof(newdir), "%s/new", dir);
	if (dirsync && (dfd = open(newdir, O_RDONLY | O_DIRECTORY)) < 0)
		die(newdir);
	while (!atomic_load(&stop)) {
		snprintf(tmp, sizeof(tmp), "%s/tmp/%ld.%ld", dir, id, n);
		snprintf(dst, sizeof(dst), "%s/new/%ld.%ld", dir, id, n);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd < 0)
			die(tmp);
		size_t off = 0;
		while (off < size) {
			ssize_t w = write(fd, payload + off, size - off);
			if (w < 0)
				die("write");
			off += (size_t)w;
		}
		if (fsync(fd) < 0)
			die("fsync");
		if (close(fd) < 0)
			die("close");
		if (rename(tmp, dst) < 0)
			die("rename");
		if (dirsync && fsync(dfd) < 0)
			die("fsync(new/)");
		n++;
		atomic_fetch_add(&total, 1);
	}
	if (dfd >= 0)
		close(dfd);
	return (void *)n;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: fsync_loop DIR THREADS SECONDS SIZE DIRSYNC\n");
		return 1;
	}
	dir = argv[1];
	int threads = atoi(argv[2]);
	seconds = atoi(argv[3]);
	size = (size_t)atol(argv[4]);
	dirsync = atoi(argv[5]);
	if (threads < 1 || threads > 1000 || seconds < 1)
		return fprintf(stderr, "fsync_loop: bad arguments\n"), 1;
	char path[4096];
	snprintf(path, sizeof(path), "%s/tmp", dir);
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		die(path);
	snprintf(path, sizeof(path), "%s/new", dir);
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		die(path);
	payload = malloc(size + 1);
	for (size_t i = 0; i < size; i++)
		payload[i] = (i % 78 == 77) ? '\n' : (char)('a' + i % 26);

	pthread_t *t = calloc((size_t)threads, sizeof(*t));
	double t0 = now();
	for (long i = 0; i < threads; i++)
		if (pthread_create(&t[i], NULL, worker, (void *)i) != 0)
			return fprintf(stderr, "fsync_loop: pthread_create failed\n"), 1;
	struct timespec ts = { seconds, 0 };
	nanosleep(&ts, NULL);
	atomic_store(&stop, 1);
	long made[1000];
	for (int i = 0; i < threads; i++) {
		void *r;
		pthread_join(t[i], &r);
		made[i] = (long)r;
	}
	double dt = now() - t0;
	long n = atomic_load(&total);
	printf("files_per_s=%.1f files=%ld seconds=%.3f\n", n / dt, n, dt);
	for (int i = 0; i < threads; i++)
		for (long j = 0; j < made[i]; j++) {
			snprintf(path, sizeof(path), "%s/new/%d.%ld", dir, i, j);
			unlink(path);
		}
	return 0;
}
