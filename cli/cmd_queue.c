/*
 * cmd_queue.c: petrel queue list|show ID|flush|delete ID — like mailq,
 * postcat -q, postqueue -f and postsuper -d.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/base/alloc.h"
#include "lib/config/config.h"
#include "lib/queue/queue.h"

static const char *
status_name(char st)
{
	return st == QR_SENT ? "sent" : st == QR_BOUNCED ? "bounced" :
	    "pending";
}

static void
print_msg(str_t *out, const struct queue_msg *m, bool json)
{
	struct stat st;
	long long size = stat(m->path, &st) == 0 ?
	    (long long)st.st_size - m->body_offset : 0;

	if (!json) {
		for (size_t i = 0; i < m->nrcpts; i++) {
			const struct queue_entry *e = &m->rcpts[i];

			str_printf(out, "%s\t%lld\t%lld\t%s\t%s\t%s\t%u\t%s\n",
			    m->id, m->arrival, size, m->sender, e->address,
			    status_name(e->status), e->attempts, e->last);
		}
		return;
	}
	str_printf(out, "{\"id\":\"%s\",\"arrival\":%lld,\"size\":%lld,"
	    "\"requiretls\":%s,\"tls_optional\":%s,\"sender\":", m->id,
	    m->arrival, size, m->requiretls ? "true" : "false",
	    m->tls_optional ? "true" : "false");
	cli_json_str(out, m->sender);
	str_append(out, ",\"recipients\":[");
	for (size_t i = 0; i < m->nrcpts; i++) {
		const struct queue_entry *e = &m->rcpts[i];

		str_append(out, i ? ",{\"address\":" : "{\"address\":");
		cli_json_str(out, e->address);
		str_append(out, ",\"transport\":");
		cli_json_str(out, e->transport);
		str_printf(out, ",\"status\":\"%s\",\"attempts\":%u,"
		    "\"next\":%lld,\"last\":", status_name(e->status),
		    e->attempts, e->next);
		cli_json_str(out, e->last);
		str_append_c(out, '}');
	}
	str_append(out, "]}");
}

static int
queue_listing(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "json", NULL };
	const char *qdir = config_get(cli->cfg, "queue_dir"), *err;
	struct cli_args a;
	str_t out = STR_INIT;
	char **ids = NULL;
	size_t n = 0, shown = 0;
	bool json;

	cli_parse(argc, argv, allowed, 0, 0, "petrel queue list [--json]", &a);
	json = cli_flag(&a, "json");
	if (queue_list(qdir, &ids, &n, &err) < 0)
		cli_die("%s", err);
	if (json)
		str_append_c(&out, '[');
	for (size_t i = 0; i < n; i++) {
		struct queue_msg m;

		if (queue_msg_read(qdir, ids[i], &m, &err) <= 0)
			continue;
		if (json && shown > 0)
			str_append_c(&out, ',');
		print_msg(&out, &m, json);
		shown++;
		queue_msg_clear(&m);
	}
	if (json)
		str_append(&out, "]\n");
	cli_print(&out);
	str_free(&out);
	queue_list_free(&ids, n);
	return 0;
}

static int
queue_show(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "json", NULL };
	const char *qdir = config_get(cli->cfg, "queue_dir"), *err;
	struct cli_args a;
	struct queue_msg m;
	str_t out = STR_INIT;
	FILE *fp;
	char buf[8192];
	size_t n;
	int r;

	cli_parse(argc, argv, allowed, 1, 1, "petrel queue show ID [--json]",
	    &a);
	r = queue_msg_read(qdir, a.pos[0], &m, &err);
	if (r < 0)
		cli_die("%s", err);
	if (r == 0)
		cli_die("no message %s in the queue", a.pos[0]);
	print_msg(&out, &m, cli_flag(&a, "json"));
	if (cli_flag(&a, "json")) {
		str_append_c(&out, '\n');
		cli_print(&out);
	} else {
		str_append_c(&out, '\n');
		cli_print(&out);
		fp = fopen(m.path, "r");
		if (fp != NULL) {
			fseek(fp, m.body_offset, SEEK_SET);
			while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
				fwrite(buf, 1, n, stdout);
			fclose(fp);
		}
	}
	str_free(&out);
	queue_msg_clear(&m);
	return 0;
}

/* Make every pending recipient due now, and wake the manager. */
/* Is pid (from manager.pid, which a killed manager leaves behind) still
 * a petrel process ("petrel ... serve"), as the queue manager is?
 * A pid reused by another program must not get our SIGUSR1, whose default
 * action would end it. */
static bool
is_queue_manager(pid_t pid)
{
	char path[64], buf[4096];
	bool petrel = false, serve = false;
	size_t n;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	if ((fp = fopen(path, "r")) == NULL)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	for (size_t off = 0; off < n; off += strlen(buf + off) + 1) {
		const char *arg = buf + off, *slash = strrchr(arg, '/');

		if (off == 0)
			petrel = strstr(slash ? slash + 1 : arg, "petrel") !=
			    NULL;
		else if (strcmp(arg, "serve") == 0)
			serve = true;
	}
	return petrel && serve;
}

static int
queue_flush(struct petrel_ctx *cli, int argc, char **argv)
{
	const char *qdir = config_get(cli->cfg, "queue_dir"), *err;
	struct cli_args a;
	char **ids = NULL, *pidpath;
	size_t n = 0, count = 0;
	FILE *fp;
	long pid = 0;

	cli_parse(argc, argv, NULL, 0, 0, "petrel queue flush", &a);
	if (queue_list(qdir, &ids, &n, &err) < 0)
		cli_die("%s", err);
	for (size_t i = 0; i < n; i++) {
		struct queue_msg m;

		if (queue_msg_read(qdir, ids[i], &m, &err) <= 0)
			continue;
		for (size_t j = 0; j < m.nrcpts; j++)
			if (m.rcpts[j].status == QR_PENDING)
				m.rcpts[j].next = 0;
		if (queue_state_write(qdir, &m, &err) < 0)
			cli_die("%s", err);
		queue_msg_clear(&m);
		count++;
	}
	queue_list_free(&ids, n);
	pidpath = xasprintf("%s/manager.pid", qdir);
	fp = fopen(pidpath, "r");
	free(pidpath);
	if (fp != NULL) {
		if (fscanf(fp, "%ld", &pid) != 1)
			pid = 0;
		fclose(fp);
	}
	if (pid > 1 && is_queue_manager((pid_t)pid) &&
	    kill((pid_t)pid, SIGUSR1) == 0)
		printf("flushing %zu message(s)\n", count);
	else
		printf("%zu message(s) due now; the queue manager is not "
		    "running (petrel serve delivers them when it starts)\n",
		    count);
	return 0;
}

static int
queue_delete(struct petrel_ctx *cli, int argc, char **argv)
{
	const char *qdir = config_get(cli->cfg, "queue_dir"), *err;
	struct cli_args a;
	struct queue_msg m;
	int r;

	cli_parse(argc, argv, NULL, 1, 1, "petrel queue delete ID", &a);
	r = queue_msg_read(qdir, a.pos[0], &m, &err);
	if (r < 0)
		cli_die("%s", err);
	if (r == 0)
		cli_die("no message %s in the queue", a.pos[0]);
	queue_msg_clear(&m);
	if (queue_remove(qdir, a.pos[0]) < 0)
		cli_die("cannot delete %s: %s", a.pos[0], strerror(errno));
	printf("deleted %s\n", a.pos[0]);
	return 0;
}

int
cmd_queue(struct petrel_ctx *cli, int argc, char **argv)
{
	if (argc < 1)
		cli_die("usage: petrel queue list|show ID|flush|delete ID");
	if (strcmp(argv[0], "list") == 0)
		return queue_listing(cli, argc - 1, argv + 1);
	if (strcmp(argv[0], "show") == 0)
		return queue_show(cli, argc - 1, argv + 1);
	if (strcmp(argv[0], "flush") == 0)
		return queue_flush(cli, argc - 1, argv + 1);
	if (strcmp(argv[0], "delete") == 0)
		return queue_delete(cli, argc - 1, argv + 1);
	cli_die("unknown queue subcommand '%s' (list, show, flush, delete)",
	    argv[0]);
}
