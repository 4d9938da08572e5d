/*
 * tcp_bw: loopback TCP bandwidth, as a reference for big FETCH / RETR
 * responses (bench/compare.sh). A child process connects to a listener on
 * 127.0.0.1 and writes MEBIBYTES MiB in 64 KiB writes; the parent reads and
 * discards them. Prints "mb_per_s=R bytes=N seconds=S" (MB = 10^6 bytes),
 * timed from accept to end of stream.
 *
 *   tcp_bw MEBIBYTES
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return fprintf(stderr, "usage: tcp_bw MEBIBYTES\n"), 1;
	long long want = atoll(argv[1]) * 1048576LL;
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof(sa);
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 1) < 0 ||
	    getsockname(ls, (struct sockaddr *)&sa, &sl) < 0)
		return perror("tcp_bw: listen"), 1;
	static char buf[1 << 16];
	memset(buf, 'x', sizeof(buf));
	pid_t pid = fork();
	if (pid < 0)
		return perror("tcp_bw: fork"), 1;
	if (pid == 0) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			_exit(1);
		long long sent = 0;
		while (sent < want) {
			size_t n = want - sent < (long long)sizeof(buf) ? (size_t)(want - sent) : sizeof(buf);
			ssize_t w = write(s, buf, n);
			if (w <= 0)
				_exit(1);
			sent += w;
		}
		close(s);
		_exit(0);
	}
	int c = accept(ls, NULL, NULL);
	if (c < 0)
		return perror("tcp_bw: accept"), 1;
	double t0 = now();
	long long got = 0;
	for (;;) {
		ssize_t r = read(c, buf, sizeof(buf));
		if (r < 0)
			return perror("tcp_bw: read"), 1;
		if (r == 0)
			break;
		got += r;
	}
	double dt = now() - t0;
	int st;
	waitpid(pid, &st, 0);
	if (got != want || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return fprintf(stderr, "tcp_bw: short transfer (%lld of %lld)\n", got, want), 1;
	printf("mb_per_s=%.1f bytes=%lld seconds=%.3f\n", got / dt / 1e6, got, dt);
	return 0;
}
