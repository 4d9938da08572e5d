/*
 * serve.c: petrel serve — the master process.
 *
 * Runs in the foreground on a libevent loop: checks that the directory
 * answers (a database that is down is logged, not fatal: the protocols
 * answer 4xx until it is back), then waits for signals. SIGTERM/SIGINT stop
 * it cleanly (exit 0); SIGHUP re-reads the configuration file and logs
 * what changed. The protocol listeners and worker processes hang off this
 * loop (docs/architecture.md).
 */
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/config/config.h"
#include "lib/dir/dir.h"

struct master {
	struct cli *cli;
	struct event_base *base;
	struct event *ev_term, *ev_int, *ev_hup;
	int exit_code;
};

static void
master_stop(evutil_socket_t sig, short what, void *arg)
{
	struct master *m = arg;

	log_info("received %s, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	event_base_loopbreak(m->base);
}

static void
master_reload(evutil_socket_t sig, short what, void *arg)
{
	struct master *m = arg;
	struct config *cfg;
	char *err = NULL;
	size_t changed = 0;

	if (m->cli->conf_path == NULL) {
		log_info("SIGHUP: no configuration file to reload");
		return;
	}
	cfg = config_new();
	if (config_load_file(cfg, m->cli->conf_path, &err) < 0) {
		log_error("SIGHUP: keeping the old configuration: %s", err);
		free(err);
		config_free(&cfg);
		return;
	}
	for (size_t i = 0; i < config_key_count(); i++) {
		const char *k = config_key_name(i);

		if (strcmp(config_get(cfg, k), config_get(m->cli->cfg, k)) != 0) {
			log_info("SIGHUP: %s changed", k);
			changed++;
		}
	}
	config_free(&m->cli->cfg);
	m->cli->cfg = cfg;
	log_info("SIGHUP: configuration %s reloaded (%zu key(s) changed)",
	    m->cli->conf_path, changed);
}

int
cmd_serve(struct cli *cli, int argc, char **argv)
{
	struct cli_args a;
	struct master m;
	struct dir *dir = NULL;
	const char *err;
	char *oerr;
	enum log_level lvl;

	cli_parse(argc, argv, NULL, 0, 0, "petrel serve", &a);
	memset(&m, 0, sizeof(m));
	m.cli = cli;
	log_init("petrel", true);
	if (log_parse_level(config_get(cli->cfg, "log_level"), &lvl) == 0)
		log_set_level(lvl);
	signal(SIGPIPE, SIG_IGN);

	if (dir_open(config_get(cli->cfg, "database"), 0, &dir, &oerr) < 0)
		cli_die("%s", oerr);
	dir_set_queries(dir, cli->cfg);
	if (dir_connect(dir, &err) < 0)
		log_warn("directory unavailable at start (will retry on "
		    "demand): %s", err);
	dir_close(&dir);

	m.base = event_base_new();
	if (m.base == NULL)
		fatal("cannot create the event loop");
	m.ev_term = evsignal_new(m.base, SIGTERM, master_stop, &m);
	m.ev_int = evsignal_new(m.base, SIGINT, master_stop, &m);
	m.ev_hup = evsignal_new(m.base, SIGHUP, master_reload, &m);
	if (m.ev_term == NULL || m.ev_int == NULL || m.ev_hup == NULL ||
	    event_add(m.ev_term, NULL) < 0 || event_add(m.ev_int, NULL) < 0 ||
	    event_add(m.ev_hup, NULL) < 0)
		fatal("cannot install signal handlers");

	log_info("petrel %s started (pid %ld, config %s, database %s)",
	    PETREL_VERSION, (long)getpid(),
	    cli->conf_path ? cli->conf_path : "(defaults)",
	    dir_url_redacted(config_get(cli->cfg, "database")));
	event_base_dispatch(m.base);

	event_free(m.ev_term);
	event_free(m.ev_int);
	event_free(m.ev_hup);
	event_base_free(m.base);
	log_info("stopped");
	return m.exit_code;
}
