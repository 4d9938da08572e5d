/*
 * cmd_dmarc.c: petrel dmarc report [--dry-run] -- the DMARC aggregate
 * reports (RFC 7489 7.2) of what the SMTP server recorded
 * (`dmarc_reports = yes`, lib/trust/dmarc_report): one report per policy
 * domain covering every row recorded up to this run (the period runs from
 * its first row to now; run it once a day, docs/trust.md), sent to the
 * domain's rua=mailto: addresses through the outbound queue (the one
 * delivery path, lib/deliver, DKIM-signed when the domain of
 * dmarc_report_from has a key), then its rows are removed. An address of
 * another organizational domain gets the report only when that domain
 * publishes POLICY._report._dmarc.ITS-DOMAIN (7.1). A report nobody may
 * receive is dropped with its rows; one that could not be queued (or
 * whose authorization lookup got no answer) keeps them for the next run.
 *
 * --dry-run prints each report's XML and changes nothing.
 *
 * As root it first becomes `user`: the state database and the queue
 * files belong to the server's account.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "cli/cli.h"
#include "lib/base/alloc.h"
#include "lib/base/base64.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/deliver/deliver.h"
#include "lib/queue/queue.h"
#include "lib/queue/spool.h"
#include "lib/route/route.h"
#include "lib/trust/dmarc.h"
#include "lib/trust/dmarc_report.h"
#include "lib/trust/dnsq.h"

#define RUA_MAX 8		/* rua= addresses used per report */

void
cli_become_user(struct petrel_ctx *cli)
{
	const char *user = config_get(cli->cfg, "user");
	const char *group = config_get(cli->cfg, "group");
	struct passwd *pw;
	struct group *gr;
	uid_t uid;

	if (geteuid() != 0 || user[0] == '\0')
		return;
	pw = getpwnam(user);
	if (pw == NULL)
		cli_die("user %s does not exist", user);
	uid = pw->pw_uid;
	if (uid == 0)
		return;
	gr = getgrnam(group[0] != '\0' ? group : user);
	if (gr == NULL)
		cli_die("group %s does not exist", group[0] ? group : user);
	if (setgroups(0, NULL) < 0 || setresgid(gr->gr_gid, gr->gr_gid,
	    gr->gr_gid) < 0 || setresuid(uid, uid, uid) < 0)
		cli_die("cannot become %s: %s", user, strerror(errno));
}

void
cli_gzip(const str_t *in, str_t *out)
{
	z_stream z;
	unsigned char buf[16384];
	int r;

	memset(&z, 0, sizeof(z));
	/* 15 + 16: a gzip wrapper (RFC 1952), as the file name says */
	if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8,
	    Z_DEFAULT_STRATEGY) != Z_OK)
		cli_die("zlib: cannot compress the report");
	z.next_in = (unsigned char *)in->data;
	z.avail_in = (uInt)in->len;
	do {
		z.next_out = buf;
		z.avail_out = sizeof(buf);
		r = deflate(&z, Z_FINISH);
		if (r == Z_STREAM_ERROR)
			cli_die("zlib: cannot compress the report");
		str_append_n(out, (const char *)buf, sizeof(buf) -
		    z.avail_out);
	} while (r != Z_STREAM_END);
	deflateEnd(&z);
}

/* Is dom's owner willing to receive reports about policy (RFC 7489 7.1)?
 * 1 yes, 0 no, -1 no answer. */
static int
external_ok(const char *policy, const char *dom)
{
	char a[256], b[256], *name, *rec = NULL;
	int r;

	dmarc_org_domain(policy, a, sizeof(a));
	dmarc_org_domain(dom, b, sizeof(b));
	if (a[0] != '\0' && strcasecmp(a, b) == 0)
		return 1;
	name = xasprintf("%s._report._dmarc.%s", policy, dom);
	r = dmarc_fetch_record(name, &rec);
	free(name);
	free(rec);
	/* several records still say yes */
	return r == -1 ? -1 : r != 0;
}

struct dest {
	char addr[512];
	uint64_t limit;
};

/* The rua= list's usable addresses of a report about policy. *tempfail:
 * an authorization lookup got no answer. */
static size_t
destinations(const char *policy, const char *rua, struct dest *d,
    bool *tempfail)
{
	size_t n = 0;
	const char *p = rua;

	*tempfail = false;
	while (*p != '\0' && n < RUA_MAX) {
		size_t len = strcspn(p, ",");
		const char *at;
		int ok;

		if (dmarc_report_mailto(p, len, d[n].addr, sizeof(d[n].addr),
		    &d[n].limit) < 0) {
			cli_warn("%s: rua %.*s: not a mailto: address petrel "
			    "sends to; skipped", policy, (int)len, p);
		} else {
			at = strrchr(d[n].addr, '@');
			ok = external_ok(policy, at + 1);
			if (ok < 0) {
				cli_warn("%s: rua %s: no answer for "
				    "%s._report._dmarc.%s", policy,
				    d[n].addr, policy, at + 1);
				*tempfail = true;
			} else if (ok == 0) {
				cli_warn("%s: rua %s: %s does not accept "
				    "reports about %s (no DMARC record at "
				    "%s._report._dmarc.%s); skipped", policy,
				    d[n].addr, at + 1, policy, policy,
				    at + 1);
			} else {
				bool dup = false;

				for (size_t i = 0; i < n; i++)
					if (strcasecmp(d[i].addr, d[n].addr)
					    == 0)
						dup = true;
				if (!dup)
					n++;
			}
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return n;
}

static void
rfc5322_date(char *buf, size_t len, time_t t)
{
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

/* The report as a message (RFC 7489 7.2.1.1). */
static void
build_message(str_t *msg, const char *from, const char *submitter,
    const char *policy, const char *report_id, const char *file,
    const struct dest *d, size_t nd, const str_t *gz, int64_t begin,
    int64_t end, size_t rows)
{
	char date[64], b[64], t1[32], t2[32];
	str_t b64 = STR_INIT;
	struct tm tm;
	time_t tb = (time_t)begin, te = (time_t)end;

	rfc5322_date(date, sizeof(date), time(NULL));
	snprintf(b, sizeof(b), "=_dmarc_%s", report_id);
	gmtime_r(&tb, &tm);
	strftime(t1, sizeof(t1), "%Y-%m-%d %H:%M:%S", &tm);
	gmtime_r(&te, &tm);
	strftime(t2, sizeof(t2), "%Y-%m-%d %H:%M:%S", &tm);
	str_printf(msg, "From: <%s>\nTo: ", from);
	for (size_t i = 0; i < nd; i++)
		str_printf(msg, "%s<%s>", i > 0 ? ",\n\t" : "", d[i].addr);
	str_printf(msg, "\nSubject: Report Domain: %s Submitter: %s "
	    "Report-ID: <%s>\nDate: %s\nMessage-ID: <%s@%s>\n"
	    "Auto-Submitted: auto-generated\nMIME-Version: 1.0\n"
	    "Content-Type: multipart/mixed; boundary=\"%s\"\n\n"
	    "--%s\nContent-Type: text/plain; charset=us-ascii\n\n"
	    "DMARC aggregate report (RFC 7489) for %s from %s:\n"
	    "%zu message%s from %s to %s UTC.\n\n"
	    "--%s\nContent-Type: application/gzip; name=\"%s\"\n"
	    "Content-Transfer-Encoding: base64\n"
	    "Content-Disposition: attachment; filename=\"%s\"\n\n",
	    policy, submitter, report_id, date, report_id, submitter, b, b,
	    policy, submitter, rows, rows == 1 ? "" : "s", t1, t2, b, file,
	    file);
	base64_encode(&b64, gz->data, gz->len);
	for (size_t i = 0; i < b64.len; i += 76) {
		str_append_n(msg, b64.data + i, b64.len - i < 76 ?
		    b64.len - i : 76);
		str_append_c(msg, '\n');
	}
	str_printf(msg, "--%s--\n", b);
	str_free(&b64);
}

int
cli_queue_report(struct petrel_ctx *cli, const char *from,
    const char *const *addrs, size_t nd, const str_t *msg, char qid[17],
    char **error_r)
{
	const char *queue_dir = config_get(cli->cfg, "queue_dir"), *err;
	struct route_dest dests[CLI_REPORT_RCPTS_MAX];
	struct route_result routes[CLI_REPORT_RCPTS_MAX];
	struct deliver_rcpt rcpts[CLI_REPORT_RCPTS_MAX];
	struct deliver_ctx ctx;
	struct deliver_msg dm;
	struct deliver_result res;
	struct spool sp;
	char *tmpdir;
	int ret = 0;

	if (nd > CLI_REPORT_RCPTS_MAX) {
		*error_r = xstrdup("too many recipients");
		return -1;
	}
	memset(dests, 0, sizeof(dests));
	memset(routes, 0, sizeof(routes));
	for (size_t i = 0; i < nd; i++) {
		dests[i].kind = ROUTE_REMOTE;
		dests[i].address = (char *)addrs[i];
		dests[i].transport = (char *)"";
		routes[i].status = ROUTE_OK;
		routes[i].dests = &dests[i];
		routes[i].ndests = 1;
		rcpts[i].address = addrs[i];
		rcpts[i].route = &routes[i];
	}
	queue_id_new(qid);
	tmpdir = xasprintf("%s/tmp", queue_dir);
	spool_init(&sp, tmpdir);
	if (spool_append(&sp, msg->data, msg->len, &err) < 0) {
		*error_r = xstrdup(err);
		ret = -1;
	} else {
		memset(&dm, 0, sizeof(dm));
		dm.qid = qid;
		dm.sender = from;
		dm.rcpts = rcpts;
		dm.nrcpts = nd;
		dm.body = &sp;
		dm.dkim_sign = true;	/* when from's domain has a key */
		dm.no_sieve = true;
		memset(&ctx, 0, sizeof(ctx));
		ctx.queue_dir = queue_dir;
		ctx.dkim_dir = config_get(cli->cfg, "dkim_dir");
		ctx.mail_root = config_get(cli->cfg, "mail_root");
		if (deliver_message(&ctx, &dm, &res, &err) < 0) {
			*error_r = xstrdup(err);
			ret = -1;
		}
	}
	spool_reset(&sp);
	free(tmpdir);
	return ret;
}

/* One policy domain's report. 0 done (sent, or dropped with its rows), -1
 * an error (its rows kept). */
static int
report_domain(struct petrel_ctx *cli, struct dmarc_report_db *db,
    const char *policy, int64_t max_id, bool dry_run, const char *from,
    const char *org)
{
	struct dmarc_report_meta meta;
	str_t xml = STR_INIT, gz = STR_INIT, msg = STR_INIT;
	struct dest d[RUA_MAX], use[RUA_MAX];
	const char *addrs[RUA_MAX];
	char report_id[64], file[1024], qid[17], *rua = NULL, *err = NULL;
	int64_t begin = 0;
	size_t rows = 0, nd, nuse = 0;
	bool tempfail;
	int ret = 0;

	queue_id_new(qid);
	meta.org_name = org;
	meta.email = from;
	meta.end = (int64_t)time(NULL);
	snprintf(report_id, sizeof(report_id), "%lld.%s",
	    (long long)meta.end, qid);
	meta.report_id = report_id;
	if (dmarc_report_build(db, policy, max_id, &meta, &xml, &rua, &begin,
	    &rows, &err) < 0) {
		cli_warn("%s: %s", policy, err);
		free(err);
		str_free(&xml);
		return -1;
	}
	if (dry_run) {
		fwrite(xml.data, 1, xml.len, stdout);
		goto out;
	}
	nd = destinations(policy, rua, d, &tempfail);
	if (nd == 0 && tempfail) {
		cli_warn("%s: report kept for the next run", policy);
		ret = -1;
		goto out;
	}
	/* RFC 7489 7.2.1.1: receiver!policy-domain!begin!end.xml.gz */
	snprintf(file, sizeof(file), "%s!%s!%lld!%lld.xml.gz", org, policy,
	    (long long)begin, (long long)meta.end);
	cli_gzip(&xml, &gz);
	if (nd > 0) {
		build_message(&msg, from, org, policy, report_id, file, d, nd,
		    &gz, begin, meta.end, rows);
		for (size_t i = 0; i < nd; i++) {
			if (d[i].limit > 0 && (uint64_t)msg.len > d[i].limit)
				cli_warn("%s: rua %s: the report (%zu octets) "
				    "is over its limit (%llu); skipped",
				    policy, d[i].addr, msg.len,
				    (unsigned long long)d[i].limit);
			else
				use[nuse++] = d[i];
		}
	}
	if (nuse < nd) {
		str_free(&msg);
		if (nuse > 0)
			build_message(&msg, from, org, policy, report_id,
			    file, use, nuse, &gz, begin, meta.end, rows);
	}
	for (size_t i = 0; i < nuse; i++)
		addrs[i] = use[i].addr;
	if (nuse == 0) {
		printf("%s: %zu message%s, no address to send the report "
		    "to: dropped\n", policy, rows, rows == 1 ? "" : "s");
	} else if (cli_queue_report(cli, from, addrs, nuse, &msg, qid,
	    &err) < 0) {
		cli_warn("%s: the report could not be queued: %s (kept for "
		    "the next run)", policy, err);
		free(err);
		ret = -1;
		goto out;
	} else {
		printf("%s: %zu message%s, report %s queued as %s to",
		    policy, rows, rows == 1 ? "" : "s", report_id, qid);
		for (size_t i = 0; i < nuse; i++)
			printf(" %s", use[i].addr);
		printf("\n");
	}
	/* queued (or nobody may have it): its rows are done */
	if (dmarc_report_remove(db, policy, max_id, &err) < 0) {
		cli_warn("%s: %s", policy, err);
		free(err);
		ret = -1;
	}
out:
	free(rua);
	str_free(&xml);
	str_free(&gz);
	str_free(&msg);
	return ret;
}

static int
dmarc_report(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "dry-run", NULL };
	struct cli_args a;
	struct dmarc_report_db *db = NULL;
	char path[4096], host[256], *from, *err = NULL, **domains = NULL;
	const char *org;
	size_t n = 0;
	int64_t max_id = 0;
	bool dry_run;
	int r, ret = 0;

	cli_parse(argc, argv, allowed, 0, 0, "petrel dmarc report [--dry-run]",
	    &a);
	dry_run = cli_flag(&a, "dry-run");
	snprintf(host, sizeof(host), "%s", config_get(cli->cfg, "hostname"));
	if (host[0] == '\0' && gethostname(host, sizeof(host) - 1) < 0)
		cli_die("cannot get the host name: %s", strerror(errno));
	from = config_get(cli->cfg, "dmarc_report_from")[0] != '\0' ?
	    xstrdup(config_get(cli->cfg, "dmarc_report_from")) :
	    xasprintf("postmaster@%s", host);
	if (strchr(from, '@') == NULL || strpbrk(from, " \t<>\"\n") != NULL)
		cli_die("dmarc_report_from: '%s' is not an address", from);
	org = strrchr(from, '@') + 1;
	/* before the database is opened: its -wal and -shm files must
	 * stay the server's */
	cli_become_user(cli);
	if (!dry_run) {
		if (dnsq_setup(config_get(cli->cfg, "dns_resolver"), &err) < 0)
			cli_die("dns_resolver: %s", err);
		if (dmarc_setup(DMARC_PSL_FILE, &err) < 0)
			cli_die("%s", err);
	}
	snprintf(path, sizeof(path), "%s/state.db",
	    config_get(cli->cfg, "queue_dir"));
	r = dmarc_report_open(path, &db, &err);
	if (r < 0)
		cli_die("%s", err);
	if (r > 0 && dmarc_report_domains(db, &domains, &n, &max_id,
	    &err) < 0)
		cli_die("%s", err);
	if (n == 0 && !dry_run)
		printf("no DMARC report to send\n");
	for (size_t i = 0; i < n; i++) {
		if (report_domain(cli, db, domains[i], max_id, dry_run, from,
		    org) < 0)
			ret = 1;
		free(domains[i]);
	}
	free(domains);
	dmarc_report_close(&db);
	free(from);
	return ret;
}

int
cmd_dmarc(struct petrel_ctx *cli, int argc, char **argv)
{
	if (argc < 1)
		cli_die("usage: petrel dmarc report [--dry-run]");
	if (strcmp(argv[0], "report") == 0)
		return dmarc_report(cli, argc - 1, argv + 1);
	cli_die("unknown dmarc subcommand '%s' (report)", argv[0]);
}
