/*
 * cmd_dns.c: petrel dns DOMAIN [--json] -- the records to publish for a
 * hosted domain (lib/dnsrec), as zone-file lines or as JSON. Records
 * whose owner lies outside the domain's zone (the TLSA of an MX host in
 * another domain) are printed commented out, with the zone they belong
 * to, so that the output loads as the domain's zone as it is.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/base/addr.h"
#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/dnsrec/dnsrec.h"
#include "lib/tls/tls.h"

/* The port of a listener key's first address, 0 when it is off. */
static unsigned
listen_port(struct petrel_ctx *cli, const char *key)
{
	struct config_listen *l = NULL;
	size_t n = 0;
	char *err = NULL;
	unsigned port = 0;

	if (config_parse_listen(config_get(cli->cfg, key), &l, &n, &err) == 0
	    && n > 0)
		port = l[0].port;
	free(err);
	config_listen_free(&l, n);
	return port;
}

/* The domain's DKIM selector and public key, if it has a key. */
static void
dkim_key(struct petrel_ctx *cli, const char *domain, char **sel_r,
    char **pub_r)
{
	const char *dir = config_get(cli->cfg, "dkim_dir"), *err;
	char *kp = xasprintf("%s/%s.pem", dir, domain);
	char *sp = xasprintf("%s/%s.selector", dir, domain);
	char line[256];
	FILE *fp;

	*sel_r = *pub_r = NULL;
	fp = fopen(sp, "r");
	if (fp != NULL) {
		if (fgets(line, sizeof(line), fp) != NULL) {
			line[strcspn(line, "\r\n")] = '\0';
			if (line[0] != '\0' && strchr(line, '.') == NULL &&
			    addr_domain_valid(line))
				*sel_r = xstrdup(line);
		}
		fclose(fp);
	}
	if (*sel_r != NULL && access(kp, F_OK) == 0 &&
	    tls_key_public_b64(kp, pub_r, &err) < 0)
		cli_die("%s", err);
	if (*pub_r == NULL) {
		free(*sel_r);
		*sel_r = NULL;
	}
	free(kp);
	free(sp);
}

int
cmd_dns(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "json", NULL };
	struct cli_args a;
	struct dnsrec_input in;
	struct dnsrec *recs;
	char *domain, *sel, *pub, host[256], tlsa[65];
	const char *err, *cert;
	str_t out = STR_INIT;
	size_t n;

	cli_parse(argc, argv, allowed, 1, 1, "petrel dns DOMAIN [--json]", &a);
	cli_check_text("the domain", a.pos[0]);
	domain = xstrdup(a.pos[0]);
	str_lower(domain);
	if (!addr_domain_valid(domain) || strchr(domain, '.') == NULL)
		cli_die("'%s' is not a valid domain name", a.pos[0]);
	snprintf(host, sizeof(host), "%s", config_get(cli->cfg, "hostname"));
	if (host[0] == '\0' && gethostname(host, sizeof(host) - 1) < 0)
		host[0] = '\0';
	str_lower(host);
	if (!addr_domain_valid(host) || strchr(host, '.') == NULL)
		cli_die("the host name '%s' is not a full domain name: set "
		    "hostname in the configuration to the name the MX record "
		    "should point to", host);
	memset(&in, 0, sizeof(in));
	in.domain = domain;
	in.hostname = host;
	dkim_key(cli, domain, &sel, &pub);
	in.dkim_selector = sel;
	in.dkim_pub_b64 = pub;
	cert = config_get(cli->cfg, "tls_cert");
	if (cert[0] != '\0' && access(cert, F_OK) == 0) {
		if (tls_cert_spki_sha256(cert, tlsa, &err) < 0)
			cli_die("%s", err);
		in.tlsa_sha256 = tlsa;
	}
	in.submission = listen_port(cli, "submission_listen");
	in.submissions = listen_port(cli, "submissions_listen");
	in.imap = listen_port(cli, "imap_listen");
	in.imaps = listen_port(cli, "imaps_listen");
	in.pop3 = listen_port(cli, "pop3_listen");
	in.pop3s = listen_port(cli, "pop3s_listen");
	in.sieve = listen_port(cli, "managesieve_listen");
	recs = dnsrec_build(&in, &n);
	if (cli_flag(&a, "json")) {
		str_append(&out, "[");
		for (size_t i = 0; i < n; i++) {
			str_append(&out, i ? ",\n {\"name\": " : "{\"name\": ");
			cli_json_str(&out, recs[i].name);
			str_append(&out, ", \"type\": ");
			cli_json_str(&out, recs[i].type);
			str_printf(&out, ", \"ttl\": %d, \"rdata\": ",
			    DNSREC_TTL);
			cli_json_str(&out, recs[i].rdata);
			str_append(&out, ", \"value\": ");
			cli_json_str(&out, recs[i].value);
			str_printf(&out, ", \"in_zone\": %s}",
			    recs[i].in_zone ? "true" : "false");
		}
		str_append(&out, "]\n");
	} else {
		str_printf(&out, "; records to publish for %s (mail host %s)"
		    "\n$ORIGIN %s.\n", domain, host, domain);
		for (size_t i = 0; i < n; i++) {
			if (!recs[i].in_zone)
				str_printf(&out, "; in the zone of %s:\n; ",
				    host);
			str_printf(&out, "%s\t%d\tIN\t%s\t%s\n",
			    recs[i].name, DNSREC_TTL, recs[i].type,
			    recs[i].rdata);
		}
	}
	cli_print(&out);
	str_free(&out);
	dnsrec_free(recs, n);
	free(sel);
	free(pub);
	free(domain);
	return 0;
}
