/*
 * cmd_serve.c: petrel serve — takes no arguments; the master, its workers
 * and the queue manager are in master/ and queue/.
 */
#include <stddef.h>
#include <stdlib.h>
#include <unbound.h>

#include "cli/cli.h"
#include "lib/config/config.h"
#include "lib/milter/milter.h"
#include "lib/trust/dnsbl.h"
#include "lib/trust/domain_policy.h"
#include "lib/trust/dnsq.h"
#include "lib/trust/greylist.h"
#include "master/master.h"

int
cmd_serve(struct petrel_ctx *cli, int argc, char **argv)
{
	struct cli_args a;
	const char *err = NULL;
	int r;

	cli_parse(argc, argv, NULL, 0, 0, "petrel serve", &a);
	{
		/* the workers parse it again; refuse a bad list here, once */
		struct milter_spec *specs;
		size_t n;

		if (milter_specs_parse(config_get(cli->cfg, "milters"), &specs,
		    &n, &err) < 0)
			cli_die("milters: %s", err);
		milter_specs_free(specs, n);
	}
	{
		struct dnsbl_site *sites;
		size_t n;

		if (dnsbl_sites_parse(config_get(cli->cfg, "dnsbl_sites"),
		    &sites, &n, &err) < 0)
			cli_die("dnsbl_sites: %s", err);
		dnsbl_sites_free(sites, n);
		if (dnsbl_sites_parse(config_get(cli->cfg, "rhsbl_sites"),
		    &sites, &n, &err) < 0)
			cli_die("rhsbl_sites: %s", err);
		dnsbl_sites_free(sites, n);
	}
	{
		struct greylist_net *nets;
		size_t n;

		if (greylist_nets_parse(config_get(cli->cfg,
		    "greylist_whitelist"), &nets, &n, &err) < 0)
			cli_die("greylist_whitelist: %s", err);
		free(nets);
	}
	{
		struct domain_policies *pol;
		char *perr = NULL;

		if (domain_policies_load(config_get(cli->cfg,
		    "domain_policy_file"), &pol, &perr) < 0)
			cli_die("domain_policy_file: %s", perr);
		domain_policies_free(pol);
	}
	{
		/* dns_resolver: IP addresses libunbound can forward to */
		char *derr = NULL;
		struct ub_ctx *ub = dnsq_ctx_new(config_get(cli->cfg,
		    "dns_resolver"), &derr);

		if (ub == NULL)
			cli_die("%s", derr);
		ub_ctx_delete(ub);
	}
	r = serve_run(cli, &err);
	if (r < 0)
		cli_die("%s", err);
	return r;
}
