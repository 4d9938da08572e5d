/*
 * cmd_tlsrpt.c: petrel tlsrpt report [--dry-run] -- the SMTP TLS reports
 * (RFC 8460) of what the queue manager recorded (`tls_rpt_reports = yes`,
 * lib/trust/tls_rpt): one report per policy domain covering every row
 * recorded up to this run (the UTC days of its rows; run it once a day,
 * docs/trust.md), sent to each rua= URI of the domain's _smtp._tls TXT
 * record (looked up through dns_resolver): a mailto: address gets it as
 * a mail through the outbound queue (5.3: multipart/report;
 * report-type="tlsrpt", the gzipped JSON attached), an https: URI by
 * POST with Content-Type application/tlsrpt+gzip (3; the server's
 * certificate checked against smtp_tls_ca or the system's store).
 *
 * The domain's rows are removed once one destination took the report,
 * and dropped (with a line saying so) when the domain publishes no
 * TLSRPT record or none of its URIs is usable. When the record's lookup
 * got no answer, or every destination failed, they are kept for the
 * next run. --dry-run prints, per domain, where the report would go and
 * its JSON, and changes nothing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unbound.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/base/alloc.h"
#include "lib/base/base64.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/queue/queue.h"
#include "lib/tls/tls.h"
#include "lib/trust/dmarc_report.h"
#include "lib/trust/dnsq.h"
#include "lib/trust/rdata.h"
#include "lib/trust/tls_rpt.h"

#define TXT_MAX 4096		/* octets of a TXT record read */
#define TXT_RECORDS_MAX 16
#define URIS_MAX 8		/* rua= URIs used per report */
#define POST_TIMEOUT 30		/* seconds for one HTTPS POST */
#define POST_ADDRS_MAX 4	/* addresses of an https: host tried */

struct report {
	struct petrel_ctx *cli;
	const char *from, *org, *submitter;
	struct tls_client *https;	/* made at the first https: URI */
	const char *https_error;
};

/* The rua= of the TLSRPT record at _smtp._tls.domain: 1 with *rua_r, 0
 * when there is none (no record, several, or one that does not parse:
 * RFC 8460 3), -1 when the lookup got no answer. */
static int
fetch_rua(const char *domain, char **rua_r)
{
	struct ub_result *res = NULL;
	char *name = xasprintf("_smtp._tls.%s", domain), *rua = NULL;
	enum dnsq_status st = dnsq_lookup(name, 16 /* TXT */, &res);
	size_t found = 0;

	free(name);
	*rua_r = NULL;
	if (st == DNSQ_TEMPFAIL)
		return -1;
	if (st != DNSQ_OK)
		return 0;
	for (int i = 0; res->data[i] != NULL && i < TXT_RECORDS_MAX; i++) {
		size_t tlen;
		int trunc, r;
		char *t = rdata_txt_join(res->data[i], (size_t)res->len[i],
		    TXT_MAX, &tlen, &trunc), *v = NULL;

		/* a NUL inside or a record cut short: not one to use */
		r = strlen(t) != tlen || trunc ? (strncmp(t, "v=TLSRPTv1",
		    10) == 0 ? -1 : 0) : tls_rpt_txt_parse(t, tlen, &v);
		free(t);
		if (r == 0)
			continue;
		found++;
		free(rua);
		rua = v;
	}
	ub_resolve_free(res);
	if (found != 1 || rua == NULL) {
		if (found > 0)
			cli_warn("%s: _smtp._tls.%s: %s; as no record", domain,
			    domain, found > 1 ? "more than one TLSRPTv1 "
			    "record" : "the TLSRPTv1 record does not parse");
		free(rua);
		return 0;
	}
	*rua_r = rua;
	return 1;
}

/* An https: URI split: host (brackets removed), port, path. 0, or -1. */
static int
https_split(const char *uri, char *host, size_t hlen, unsigned *port,
    char *path, size_t plen)
{
	const char *h = uri + 8, *he, *p;
	size_t n;

	if (strncasecmp(uri, "https://", 8) != 0)
		return -1;
	p = h + strcspn(h, "/?#");
	if (*p == '#')
		return -1;
	*port = 443;
	if (*h == '[') {
		he = memchr(h, ']', (size_t)(p - h));
		if (he == NULL)
			return -1;
		h++;
		n = (size_t)(he - h);
		he++;
	} else {
		he = memchr(h, ':', (size_t)(p - h));
		if (he == NULL)
			he = p;
		n = (size_t)(he - h);
	}
	if (n == 0 || n >= hlen || strcspn(h, "@") < n)
		return -1;	/* no user info in a report URI */
	memcpy(host, h, n);
	host[n] = '\0';
	if (he < p) {
		unsigned long v = 0;

		if (*he != ':' || he + 1 == p)
			return -1;
		for (he++; he < p; he++) {
			if (*he < '0' || *he > '9' || (v = v * 10 +
			    (unsigned long)(*he - '0')) > 65535)
				return -1;
		}
		if (v == 0)
			return -1;
		*port = (unsigned)v;
	}
	snprintf(path, plen, "%s%s", *p == '/' ? "" : "/", p);
	return strlen(p) + 2 > plen ? -1 : 0;
}

/* POST the report to an https: URI. 0, or -1 with the reason in err. */
static int
post_report(struct report *rp, const char *uri, const str_t *gz, char *err,
    size_t errlen)
{
	static const int types[2] = { 28 /* AAAA */, 1 /* A */ };
	struct sockaddr_storage ss[POST_ADDRS_MAX];
	unsigned sl[POST_ADDRS_MAX], port;
	char host[256], path[2048];
	size_t n = 0;

	if (https_split(uri, host, sizeof(host), &port, path,
	    sizeof(path)) < 0) {
		snprintf(err, errlen, "not an https: URI petrel posts to");
		return -1;
	}
	if (rp->https == NULL && rp->https_error == NULL &&
	    (rp->https = tls_client_new_verify(config_get(rp->cli->cfg,
	    "smtp_tls_ca"), &rp->https_error)) == NULL && rp->https_error ==
	    NULL)
		rp->https_error = "no TLS context";
	if (rp->https == NULL) {
		snprintf(err, errlen, "smtp_tls_ca: %s", rp->https_error);
		return -1;
	}
	memset(ss, 0, sizeof(ss));
	{
		struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)&ss[0];
		struct sockaddr_in6 *s6 =
		    (struct sockaddr_in6 *)(void *)&ss[0];

		if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
			s4->sin_family = AF_INET;
			s4->sin_port = htons((uint16_t)port);
			sl[n++] = sizeof(*s4);
		} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons((uint16_t)port);
			sl[n++] = sizeof(*s6);
		}
	}
	for (int t = 0; n == 0 && t < 2; t++) {
		struct ub_result *res = NULL;
		size_t want = types[t] == 1 ? 4 : 16;

		if (dnsq_lookup(host, types[t], &res) != DNSQ_OK)
			continue;
		for (int i = 0; res->data[i] != NULL && n < POST_ADDRS_MAX;
		    i++) {
			if (res->len[i] != (int)want)
				continue;
			if (want == 4) {
				struct sockaddr_in *s4 =
				    (struct sockaddr_in *)(void *)&ss[n];

				s4->sin_family = AF_INET;
				s4->sin_port = htons((uint16_t)port);
				memcpy(&s4->sin_addr, res->data[i], 4);
				sl[n++] = sizeof(*s4);
			} else {
				struct sockaddr_in6 *s6 =
				    (struct sockaddr_in6 *)(void *)&ss[n];

				s6->sin6_family = AF_INET6;
				s6->sin6_port = htons((uint16_t)port);
				memcpy(&s6->sin6_addr, res->data[i], 16);
				sl[n++] = sizeof(*s6);
			}
		}
		ub_resolve_free(res);
	}
	if (n == 0) {
		snprintf(err, errlen, "no address for %s", host);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (tls_https_post(rp->https, (const struct sockaddr *)&ss[i],
		    sl[i], host, path, "application/tlsrpt+gzip", gz->data,
		    gz->len, POST_TIMEOUT, err, errlen) == 0)
			return 0;
	return -1;
}

/* The report as a mail (RFC 8460 5.3). */
static void
build_message(str_t *msg, const struct report *rp, const char *domain,
    const char *report_id, const char *file, const char *const *to,
    size_t nto, const str_t *gz, size_t sessions)
{
	char date[64], b[400];
	str_t b64 = STR_INIT;
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	snprintf(b, sizeof(b), "=_tlsrpt_%s", report_id);
	str_printf(msg, "From: <%s>\nTo: ", rp->from);
	for (size_t i = 0; i < nto; i++)
		str_printf(msg, "%s<%s>", i > 0 ? ",\n\t" : "", to[i]);
	str_printf(msg, "\nSubject: Report Domain: %s Submitter: %s "
	    "Report-ID: <%s>\nTLS-Report-Domain: %s\n"
	    "TLS-Report-Submitter: %s\nDate: %s\nMessage-ID: <%s>\n"
	    "Auto-Submitted: auto-generated\nMIME-Version: 1.0\n"
	    "Content-Type: multipart/report; report-type=\"tlsrpt\"; "
	    "boundary=\"%s\"\n\n"
	    "--%s\nContent-Type: text/plain; charset=us-ascii\n\n"
	    "SMTP TLS report (RFC 8460) for %s from %s:\n"
	    "%zu session%s.\n\n"
	    "--%s\nContent-Type: application/tlsrpt+gzip\n"
	    "Content-Transfer-Encoding: base64\n"
	    "Content-Disposition: attachment; filename=\"%s\"\n\n",
	    domain, rp->submitter, report_id, domain, rp->submitter, date,
	    report_id, b, b, domain, rp->submitter, sessions,
	    sessions == 1 ? "" : "s", b, file);
	base64_encode(&b64, gz->data, gz->len);
	for (size_t i = 0; i < b64.len; i += 76) {
		str_append_n(msg, b64.data + i, b64.len - i < 76 ?
		    b64.len - i : 76);
		str_append_c(msg, '\n');
	}
	str_printf(msg, "--%s--\n", b);
	str_free(&b64);
}

/* The usable URIs of a rua= list: mailto: addresses into addrs (n_addrs),
 * https: URIs into https (n_https); the others skipped with a line. */
static void
split_rua(const char *domain, const char *rua, char addrs[][512],
    size_t *n_addrs, char https[][1024], size_t *n_https)
{
	const char *p = rua;

	*n_addrs = *n_https = 0;
	while (*p != '\0') {
		size_t len = strcspn(p, ",");
		uint64_t limit;
		char a[512];

		if (*n_addrs + *n_https >= URIS_MAX) {
			cli_warn("%s: rua: more than %d URIs; the rest "
			    "skipped", domain, URIS_MAX);
			break;
		}
		if (len > 8 && strncasecmp(p, "mailto:", 7) == 0 &&
		    dmarc_report_mailto(p, len, a, sizeof(a), &limit) == 0 &&
		    limit == 0) {
			bool dup = false;

			for (size_t i = 0; i < *n_addrs; i++)
				dup |= strcasecmp(addrs[i], a) == 0;
			if (!dup)
				memcpy(addrs[(*n_addrs)++], a, sizeof(a));
		} else if (len > 8 && len < 1024 &&
		    strncasecmp(p, "https://", 8) == 0) {
			memcpy(https[*n_https], p, len);
			https[(*n_https)++][len] = '\0';
		} else {
			cli_warn("%s: rua %.*s: not a mailto: or https: URI "
			    "petrel sends to; skipped", domain,
			    (int)(len > 200 ? 200 : len), p);
		}
		p += len;
		if (*p == ',')
			p++;
	}
}

/* One policy domain's report. 0 done (sent, or dropped with its rows),
 * -1 an error (its rows kept). */
static int
report_domain(struct report *rp, struct tls_rpt_db *db, const char *domain,
    int64_t max_id, bool dry_run)
{
	struct tls_rpt_meta meta;
	str_t json = STR_INIT, gz = STR_INIT, msg = STR_INIT;
	char report_id[320], file[1024], qid[17], *rua = NULL, *err = NULL;
	char addrs[URIS_MAX][512], https[URIS_MAX][1024], perr[400];
	const char *to[URIS_MAX];
	int64_t begin, end;
	size_t sessions, na = 0, nh = 0, sent = 0, failed = 0;
	int r, ret = 0;

	queue_id_new(qid);
	snprintf(report_id, sizeof(report_id), "%lld.%s@%s",
	    (long long)time(NULL), qid, rp->submitter);
	meta.org_name = rp->org;
	meta.contact = rp->from;
	meta.report_id = report_id;
	if (tls_rpt_build(db, domain, max_id, &meta, &json, &begin, &end,
	    &sessions, &err) < 0) {
		cli_warn("%s: %s", domain, err);
		free(err);
		str_free(&json);
		return -1;
	}
	r = fetch_rua(domain, &rua);
	if (r < 0) {
		cli_warn("%s: no answer for _smtp._tls.%s; the report is kept "
		    "for the next run", domain, domain);
		ret = -1;
		goto out;
	}
	if (r > 0)
		split_rua(domain, rua, addrs, &na, https, &nh);
	if (dry_run) {
		printf("%s: %zu session%s, report %s would go to", domain,
		    sessions, sessions == 1 ? "" : "s", report_id);
		for (size_t i = 0; i < na; i++)
			printf(" mailto:%s", addrs[i]);
		for (size_t i = 0; i < nh; i++)
			printf(" %s", https[i]);
		printf("%s\n", na + nh == 0 ? " nobody (no usable TLSRPT "
		    "record: its rows would be dropped)" : "");
		fwrite(json.data, 1, json.len, stdout);
		goto out;
	}
	if (na + nh == 0) {
		printf("%s: %zu session%s, %s: dropped\n", domain, sessions,
		    sessions == 1 ? "" : "s", r == 0 ? "no TLSRPT record at "
		    "_smtp._tls" : "no usable rua= URI");
		goto remove;
	}
	/* RFC 8460 5.3: sender!policy-domain!begin!end!unique-id.json.gz */
	snprintf(file, sizeof(file), "%s!%s!%lld!%lld!%s.json.gz",
	    rp->submitter, domain, (long long)begin, (long long)end, qid);
	cli_gzip(&json, &gz);
	for (size_t i = 0; i < nh; i++) {
		if (post_report(rp, https[i], &gz, perr, sizeof(perr)) < 0) {
			cli_warn("%s: rua %s: %s", domain, https[i], perr);
			failed++;
		} else {
			printf("%s: report %s posted to %s\n", domain,
			    report_id, https[i]);
			sent++;
		}
	}
	if (na > 0) {
		for (size_t i = 0; i < na; i++)
			to[i] = addrs[i];
		build_message(&msg, rp, domain, report_id, file, to, na, &gz,
		    sessions);
		if (cli_queue_report(rp->cli, rp->from, to, na, &msg, qid,
		    &err) < 0) {
			cli_warn("%s: the report could not be queued: %s",
			    domain, err);
			free(err);
			failed++;
		} else {
			printf("%s: report %s queued as %s to", domain,
			    report_id, qid);
			for (size_t i = 0; i < na; i++)
				printf(" %s", addrs[i]);
			printf("\n");
			sent++;
		}
	}
	if (sent == 0) {
		cli_warn("%s: the report reached no destination; kept for "
		    "the next run", domain);
		ret = -1;
		goto out;
	}
	printf("%s: %zu session%s reported\n", domain, sessions,
	    sessions == 1 ? "" : "s");
remove:
	if (tls_rpt_remove(db, domain, max_id, &err) < 0) {
		cli_warn("%s: %s", domain, err);
		free(err);
		ret = -1;
	}
out:
	free(rua);
	str_free(&json);
	str_free(&gz);
	str_free(&msg);
	return ret;
}

static int
tlsrpt_report(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "dry-run", NULL };
	struct cli_args a;
	struct report rp;
	struct tls_rpt_db *db = NULL;
	char path[4096], host[256], *from, *err = NULL, **domains = NULL;
	size_t n = 0;
	int64_t max_id = 0;
	bool dry_run;
	int r, ret = 0;

	cli_parse(argc, argv, allowed, 0, 0,
	    "petrel tlsrpt report [--dry-run]", &a);
	dry_run = cli_flag(&a, "dry-run");
	snprintf(host, sizeof(host), "%s", config_get(cli->cfg, "hostname"));
	if (host[0] == '\0' && gethostname(host, sizeof(host) - 1) < 0)
		cli_die("cannot get the host name: %s", strerror(errno));
	from = config_get(cli->cfg, "tls_rpt_from")[0] != '\0' ?
	    xstrdup(config_get(cli->cfg, "tls_rpt_from")) :
	    xasprintf("postmaster@%s", host);
	if (strchr(from, '@') == NULL || strchr(from, '@')[1] == '\0' ||
	    strpbrk(from, " \t<>\"\n\r") != NULL || !cli_text_ok(from))
		cli_die("tls_rpt_from: '%s' is not an address", from);
	memset(&rp, 0, sizeof(rp));
	rp.cli = cli;
	rp.from = from;
	rp.submitter = strrchr(from, '@') + 1;
	rp.org = config_get(cli->cfg, "tls_rpt_org")[0] != '\0' ?
	    config_get(cli->cfg, "tls_rpt_org") : rp.submitter;
	if (!cli_text_ok(rp.org))
		cli_die("tls_rpt_org: not text");
	cli_become_user(cli);
	if (dnsq_setup(config_get(cli->cfg, "dns_resolver"), &err) < 0)
		cli_die("dns_resolver: %s", err);
	snprintf(path, sizeof(path), "%s/state.db",
	    config_get(cli->cfg, "queue_dir"));
	r = tls_rpt_open(path, &db, &err);
	if (r < 0)
		cli_die("%s", err);
	if (r > 0 && tls_rpt_domains(db, &domains, &n, &max_id, &err) < 0)
		cli_die("%s", err);
	if (n == 0)
		printf("no TLS report to send\n");
	for (size_t i = 0; i < n; i++) {
		if (report_domain(&rp, db, domains[i], max_id, dry_run) < 0)
			ret = 1;
		free(domains[i]);
	}
	free(domains);
	tls_rpt_close(&db);
	tls_client_free(&rp.https);
	free(from);
	return ret;
}

int
cmd_tlsrpt(struct petrel_ctx *cli, int argc, char **argv)
{
	if (argc < 1)
		cli_die("usage: petrel tlsrpt report [--dry-run]");
	if (strcmp(argv[0], "report") == 0)
		return tlsrpt_report(cli, argc - 1, argv + 1);
	cli_die("unknown tlsrpt subcommand '%s' (report)", argv[0]);
}
