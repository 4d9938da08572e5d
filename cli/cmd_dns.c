/*
 * cmd_dns.c: petrel dns DOMAIN [--json] -- the records to publish for a
 * hosted domain (lib/dnsrec), as zone-file lines or as JSON. Records
 * whose owner lies outside the domain's zone (the TLSA of an MX host in
 * another domain) are printed commented out, with the zone they belong
 * to, so that the output loads as the domain's zone as it is.
 *
 * petrel dns check DOMAIN looks each of them up through libunbound
 * (`dns_resolver`, as the server's own lookups) and prints one line per
 * record: ok, missing, or different with what was expected and found.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <unbound.h>

#include "cli/cli.h"
#include "lib/base/addr.h"
#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/dkim/sign.h"
#include "lib/dnsrec/dnsrec.h"
#include "lib/tls/tls.h"
#include "lib/trust/dnsq.h"

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

/* The domain's DKIM selector and public key of `which` (lib/dkim/sign.h:
 * "selector", "selector.next", "selector.old"), if it has that key. */
static void
dkim_key(struct petrel_ctx *cli, const char *domain, const char *which,
    char **sel_r, char **pub_r)
{
	const char *dir = config_get(cli->cfg, "dkim_dir"), *err;
	char *kp;

	*pub_r = NULL;
	*sel_r = dkim_selector_read(dir, domain, which);
	if (*sel_r == NULL)
		return;
	kp = dkim_key_path(dir, domain, *sel_r);
	if (access(kp, F_OK) == 0 && tls_key_public_b64(kp, pub_r, &err) < 0)
		cli_die("%s", err);
	if (*pub_r == NULL) {
		free(*sel_r);
		*sel_r = NULL;
	}
	free(kp);
}

/* The records for domain (a.pos[0], checked and lower-cased into
 * *domain_r), with the mail host's name in host. */
static struct dnsrec *
build_records(struct petrel_ctx *cli, const char *arg, char **domain_r,
    char host[256], size_t *n_r)
{
	struct dnsrec_input in;
	struct dnsrec *recs;
	char *domain, *sel, *pub, *more_sel[2], *more_pub[2], tlsa[65];
	const char *err, *cert;

	cli_check_text("the domain", arg);
	domain = xstrdup(arg);
	str_lower(domain);
	if (!addr_domain_valid(domain) || strchr(domain, '.') == NULL)
		cli_die("'%s' is not a valid domain name", arg);
	snprintf(host, 256, "%s", config_get(cli->cfg, "hostname"));
	if (host[0] == '\0' && gethostname(host, 255) < 0)
		host[0] = '\0';
	host[255] = '\0';
	str_lower(host);
	if (!addr_domain_valid(host) || strchr(host, '.') == NULL)
		cli_die("the host name '%s' is not a full domain name: set "
		    "hostname in the configuration to the name the MX record "
		    "should point to", host);
	memset(&in, 0, sizeof(in));
	in.domain = domain;
	in.hostname = host;
	dkim_key(cli, domain, "selector", &sel, &pub);
	in.dkim_selector = sel;
	in.dkim_pub_b64 = pub;
	dkim_key(cli, domain, "selector.next", &more_sel[0], &more_pub[0]);
	dkim_key(cli, domain, "selector.old", &more_sel[1], &more_pub[1]);
	for (size_t i = 0; i < 2; i++) {
		in.dkim_more_selector[i] = more_sel[i];
		in.dkim_more_pub_b64[i] = more_pub[i];
	}
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
	recs = dnsrec_build(&in, n_r);
	free(sel);
	free(pub);
	for (size_t i = 0; i < 2; i++) {
		free(more_sel[i]);
		free(more_pub[i]);
	}
	*domain_r = domain;
	return recs;
}

/* A value as printed: TXT quoted (its octets already escaped). */
static void
append_value(str_t *out, const char *type, const char *v)
{
	if (strcmp(type, "TXT") == 0)
		str_printf(out, "\"%s\"", v);
	else
		str_append(out, v);
}

/* One record looked up and compared: appends its line, returns the
 * verdict. A lookup without an answer ends the command: nothing can be
 * said about the zone. */
static enum dnsrec_verdict
check_one(struct ub_ctx *ub, const struct dnsrec *want, str_t *out)
{
	struct ub_result *res = NULL;
	enum dnsrec_verdict v;
	char **found = NULL;
	size_t nfound = 0;
	int r;

	r = ub_resolve(ub, want->name, dnsrec_type_code(want->type),
	    1 /* IN */, &res);
	if (r != 0)
		cli_die("dns check: lookup of %s %s failed: %s", want->name,
		    want->type, ub_strerror(r));
	if (res->rcode != 0 && res->rcode != 3 /* NXDOMAIN */)
		cli_die("dns check: no usable answer for %s %s (%s): check "
		    "dns_resolver", want->name, want->type,
		    res->rcode == 2 ? "server failure or no server reachable" :
		    res->rcode == 5 ? "refused" : "error");
	if (res->havedata) {
		for (; res->data[nfound] != NULL; nfound++)
			;
		found = xcalloc(nfound ? nfound : 1, sizeof(*found));
		for (size_t i = 0; i < nfound; i++)
			found[i] = dnsrec_wire_value(want->type,
			    (const unsigned char *)res->data[i],
			    (size_t)res->len[i]);
	}
	v = dnsrec_compare(want, found, nfound);
	str_printf(out, "%s %s %s ", v == DNSREC_OK ? "ok" :
	    v == DNSREC_MISSING ? "missing" : "different", want->name,
	    want->type);
	if (v == DNSREC_DIFFERENT)
		str_append(out, "expected ");
	append_value(out, want->type, want->value);
	if (v == DNSREC_DIFFERENT) {
		bool first = true;

		str_append(out, " found ");
		for (size_t i = 0; i < nfound; i++) {
			if (found[i] == NULL || !dnsrec_same_kind(want, found[i]))
				continue;
			if (!first)
				str_append(out, ", ");
			append_value(out, want->type, found[i]);
			first = false;
		}
	}
	str_append_c(out, '\n');
	for (size_t i = 0; i < nfound; i++)
		free(found[i]);
	free(found);
	ub_resolve_free(res);
	return v;
}

/* petrel dns check DOMAIN: exit 0 when every record is published as
 * printed, 2 when some are missing or different, 1 on errors. */
static int
dns_check(struct petrel_ctx *cli, int argc, char **argv)
{
	struct cli_args a;
	struct dnsrec *recs;
	struct ub_ctx *ub;
	char *domain, host[256], *err = NULL;
	str_t out = STR_INIT;
	size_t n;
	int bad = 0;

	cli_parse(argc, argv, NULL, 1, 1, "petrel dns check DOMAIN", &a);
	recs = build_records(cli, a.pos[0], &domain, host, &n);
	if (!cli_domain_hosted(cli, domain))
		cli_die("domain %s is not hosted here", domain);
	ub = dnsq_ctx_new(config_get(cli->cfg, "dns_resolver"), &err);
	if (ub == NULL)
		cli_die("%s", err);
	/* one retry per unanswered server, as the server's own lookups */
	ub_ctx_set_option(ub, "outbound-msg-retry:", "1");
	for (size_t i = 0; i < n; i++)
		if (check_one(ub, &recs[i], &out) != DNSREC_OK)
			bad++;
	ub_ctx_delete(ub);
	cli_print(&out);
	str_free(&out);
	dnsrec_free(recs, n);
	free(domain);
	return bad > 0 ? 2 : 0;
}

int
cmd_dns(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "json", NULL };
	struct cli_args a;
	struct dnsrec *recs;
	char *domain, host[256];
	str_t out = STR_INIT;
	size_t n;

	if (argc >= 1 && strcmp(argv[0], "check") == 0)
		return dns_check(cli, argc - 1, argv + 1);
	cli_parse(argc, argv, allowed, 1, 1,
	    "petrel dns DOMAIN [--json] | petrel dns check DOMAIN", &a);
	recs = build_records(cli, a.pos[0], &domain, host, &n);
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
	free(domain);
	return 0;
}
