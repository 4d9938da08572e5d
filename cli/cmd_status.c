/*
 * cmd_status.c: petrel status -- what the running `petrel serve` says on
 * its control socket (QUEUE_DIR/control: processes with their pids,
 * listeners, connections per service from the node's counts, logins,
 * messages received, restarts), then the outbound queue as this command
 * finds it on disk (messages, age of the oldest).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/base/str.h"
#include "lib/config/config.h"

#define STATUS_MAX (256 * 1024)

static void
queue_summary(const char *qdir)
{
	char path[4096];
	unsigned long long n = 0;
	time_t oldest = 0, now = time(NULL);
	struct dirent *e;
	struct stat st;
	DIR *d;

	snprintf(path, sizeof(path), "%s/incoming", qdir);
	if ((d = opendir(path)) == NULL)
		cli_die("cannot read the queue %s: %s", path, strerror(errno));
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		n++;
		if (oldest == 0 || st.st_mtime < oldest)
			oldest = st.st_mtime;
	}
	closedir(d);
	printf("queue messages %llu oldest %lld\n", n,
	    oldest != 0 && now > oldest ? (long long)(now - oldest) : 0LL);
}

int
cmd_status(struct petrel_ctx *cli, int argc, char **argv)
{
	struct cli_args a;
	struct sockaddr_un sun;
	struct timeval tv = { 5, 0 };
	const char *qdir = config_get(cli->cfg, "queue_dir");
	str_t text = STR_INIT;
	char buf[4096];
	ssize_t n;
	int fd;

	cli_parse(argc, argv, NULL, 0, 0, "petrel status", &a);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/control",
	    qdir) >= sizeof(sun.sun_path))
		cli_die("%s/control: path too long for a socket", qdir);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		cli_die("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno == ENOENT || errno == ECONNREFUSED)
			cli_die("petrel serve is not running here (cannot "
			    "connect to %s: %s)", sun.sun_path,
			    strerror(errno));
		cli_die("cannot connect to %s: %s", sun.sun_path,
		    strerror(errno));
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			cli_die("reading %s: %s", sun.sun_path,
			    errno == EAGAIN ? "no answer within 5 s" :
			    strerror(errno));
		if (text.len + (size_t)n > STATUS_MAX)
			cli_die("%s: answer too long", sun.sun_path);
		str_append_n(&text, buf, (size_t)n);
	}
	close(fd);
	if (text.len == 0)
		cli_die("%s: empty answer", sun.sun_path);
	fwrite(text.data, 1, text.len, stdout);
	str_free(&text);
	queue_summary(qdir);
	return 0;
}
