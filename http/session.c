/*
 * session.c: the HTTP listeners (http_listen, and https_listen over implicit
 * TLS) on lib/session.
 *
 * One request per connection (every answer says Connection: close): the
 * bytes are read until lib/http/parse.c has a whole request or an error
 * status, the answer is written and the session closes once it is out.
 * The routes:
 *   GET /metrics                      the node's counts, Prometheus text
 *   GET /mail/config-v1.1.xml         Thunderbird autoconfig (also under
 *       /.well-known/autoconfig/)     /.well-known/autoconfig/mail/)
 *   POST /autodiscover/autodiscover.xml  Outlook's Autodiscover (POX)
 *   GET /.well-known/mta-sts.txt      the MTA-STS policy (RFC 8461)
 *   GET /email.mobileconfig?email=A   an Apple configuration profile
 *       (also /mobileconfig)          (unsigned) for mailbox A
 * HEAD works wherever GET does. The ports offered to mail clients are
 * the first of each listener in the configuration, the host hostname.
 */
#include <dirent.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http/http.h"
#include "lib/base/addr.h"
#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/http/parse.h"
#include "lib/authd/client.h"
#include "lib/route/route.h"
#include "lib/session/counters.h"
#include "lib/tls/tls.h"

struct http_session {
	struct session base;
	struct http_server *srv;
	size_t consumed;	/* the request's octets, drained at the end */
	bool head;
	/* /metrics: the queue, counted on a disk job thread */
	struct job job;
	unsigned long long queue_n;
	long long queue_oldest;	/* arrival of the oldest, 0: none */
	/* the node's processes and their resident memory (0: unknown) */
	struct node_process *procs;
	unsigned long long *rss;
	size_t nprocs;
	/* /email.mobileconfig: the address, and whether it is a mailbox
	 * (route_status of its route, -1: not one of its own) */
	char *address;
	int mailbox;
};

#define METRICS_PROCS_MAX 512

static void
respond(struct http_session *s, int status, const char *ctype,
    const char *extra, const char *body, size_t len)
{
	struct session *b = &s->base;

	node_counters_event(b->listener->nc, NODE_EVENT_HTTP_REQUEST);
	session_printf(b, "HTTP/1.1 %d %s\r\n", status, http_reason(status));
	if (ctype != NULL)
		session_printf(b, "Content-Type: %s\r\n", ctype);
	session_printf(b, "Content-Length: %zu\r\nConnection: close\r\n"
	    "Cache-Control: no-store\r\n%s\r\n", len,
	    extra != NULL ? extra : "");
	if (!s->head && len > 0)
		evbuffer_add(session_output(b), body, len);
	evbuffer_drain(session_input(b), s->consumed);
	session_quit(b);
}

static void
respond_error(struct http_session *s, int status)
{
	char body[128];
	int n = snprintf(body, sizeof(body), "%d %s\n", status,
	    http_reason(status));

	respond(s, status, "text/plain; charset=utf-8",
	    status == 405 ? "Allow: GET, HEAD, POST\r\n" : NULL, body,
	    (size_t)n);
}

static void
xml_text(str_t *out, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '&': str_append(out, "&amp;"); break;
		case '<': str_append(out, "&lt;"); break;
		case '>': str_append(out, "&gt;"); break;
		case '"': str_append(out, "&quot;"); break;
		case '\'': str_append(out, "&apos;"); break;
		default: str_append_c(out, *s); break;
		}
	}
}

/* ---- /metrics ---- */

static void
queue_count_run(struct job *job, void *state)
{
	struct http_session *s = (struct http_session *)((char *)job -
	    offsetof(struct http_session, job));
	char path[4096];
	struct dirent *e;
	struct stat st;
	DIR *d;

	/* the resident set of each process, from /proc/PID/statm
	 * (pages); a process that ended meanwhile is left out */
	s->procs = xcalloc(METRICS_PROCS_MAX, sizeof(*s->procs));
	s->rss = xcalloc(METRICS_PROCS_MAX, sizeof(*s->rss));
	s->nprocs = node_counters_processes(s->srv->nc, s->procs,
	    METRICS_PROCS_MAX);
	for (size_t i = 0; i < s->nprocs; i++) {
		unsigned long long size, res;
		FILE *fp;

		snprintf(path, sizeof(path), "/proc/%ld/statm",
		    (long)s->procs[i].pid);
		if ((fp = fopen(path, "r")) == NULL)
			continue;
		if (fscanf(fp, "%llu %llu", &size, &res) == 2)
			s->rss[i] = res * (unsigned long long)
			    sysconf(_SC_PAGESIZE);
		fclose(fp);
	}
	snprintf(path, sizeof(path), "%s/incoming", s->srv->queue_dir);
	if ((d = opendir(path)) == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		s->queue_n++;
		if (s->queue_oldest == 0 || st.st_mtime < s->queue_oldest)
			s->queue_oldest = st.st_mtime;
	}
	closedir(d);
}

static void
metric_head(str_t *out, const char *name, const char *type,
    const char *help)
{
	str_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
deliveries(str_t *out, const struct node_counters *nc)
{
	static const struct {
		const char *name;
		enum node_event e;
		const char *help;
	} d[] = {
		{ "petrel_messages_delivered_total", NODE_EVENT_DELIVERED,
		  "Deliveries done, one per recipient (the log's status=sent: "
		  "local copies and the queue manager's)." },
		{ "petrel_messages_deferred_total", NODE_EVENT_DEFERRED,
		  "Delivery attempts deferred, one per recipient and attempt "
		  "(the log's status=deferred)." },
		{ "petrel_messages_bounced_total", NODE_EVENT_BOUNCED,
		  "Recipients bounced (the log's status=bounced: a 5xx, or "
		  "expired in the queue)." },
	};

	for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
		metric_head(out, d[i].name, "counter", d[i].help);
		str_printf(out, "%s %llu\n", d[i].name,
		    (unsigned long long)node_counters_events(nc, d[i].e));
	}
}

/* A Prometheus histogram: cumulative _bucket lines, _sum and _count. */
static void
histogram(str_t *out, const struct node_counters *nc, enum node_hist h,
    const char *name, const char *help)
{
	uint64_t cum[NODE_HIST_BUCKETS_MAX + 1];
	const double *b;
	double sum;
	size_t n;

	b = node_counters_hist_bounds(h, &n);
	node_counters_hist(nc, h, cum, &sum);
	metric_head(out, name, "histogram", help);
	for (size_t i = 0; i < n; i++)
		str_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, b[i],
		    (unsigned long long)cum[i]);
	str_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n"
	    "%s_count %llu\n", name, (unsigned long long)cum[n], name, sum,
	    name, (unsigned long long)cum[n]);
}

static void
queue_count_done(struct job *job)
{
	struct http_session *s = (struct http_session *)((char *)job -
	    offsetof(struct http_session, job));
	struct http_server *srv = s->srv;
	str_t out = STR_INIT;
	long long age = 0;

	if (s->base.dead) {
		session_job_finished(&s->base);
		return;
	}
	metric_head(&out, "petrel_connections", "gauge",
	    "Sessions open now on the node, by listener.");
	for (unsigned i = 0; srv->nc != NULL && i < srv->nservices; i++)
		str_printf(&out, "petrel_connections{service=\"%s\"} %u\n",
		    srv->service_names[i], node_counters_total(srv->nc, i));
	metric_head(&out, "petrel_logins_total", "counter",
	    "Logins (IMAP, POP3, submission) since the server started, "
	    "by result.");
	str_printf(&out, "petrel_logins_total{result=\"ok\"} %llu\n"
	    "petrel_logins_total{result=\"failed\"} %llu\n",
	    (unsigned long long)node_counters_events(srv->nc,
	    NODE_EVENT_LOGIN_OK),
	    (unsigned long long)node_counters_events(srv->nc,
	    NODE_EVENT_LOGIN_FAILED));
	metric_head(&out, "petrel_messages_received_total", "counter",
	    "Messages accepted over SMTP and submission (250 after DATA or "
	    "BDAT).");
	str_printf(&out, "petrel_messages_received_total %llu\n",
	    (unsigned long long)node_counters_events(srv->nc,
	    NODE_EVENT_MESSAGE_RECEIVED));
	metric_head(&out, "petrel_http_requests_total", "counter",
	    "Requests answered on http_listen and https_listen, this one "
	    "excluded.");
	str_printf(&out, "petrel_http_requests_total %llu\n",
	    (unsigned long long)node_counters_events(srv->nc,
	    NODE_EVENT_HTTP_REQUEST));
	metric_head(&out, "petrel_queue_messages", "gauge",
	    "Messages in the outbound queue.");
	str_printf(&out, "petrel_queue_messages %llu\n", s->queue_n);
	if (s->queue_oldest != 0 && time(NULL) > s->queue_oldest)
		age = (long long)time(NULL) - s->queue_oldest;
	metric_head(&out, "petrel_queue_oldest_age_seconds", "gauge",
	    "Age of the oldest message in the outbound queue (0: empty).");
	str_printf(&out, "petrel_queue_oldest_age_seconds %lld\n", age);
	deliveries(&out, srv->nc);
	histogram(&out, srv->nc, NODE_HIST_DELIVERY,
	    "petrel_delivery_latency_seconds",
	    "Time from a message's arrival to each status=sent delivery "
	    "(local copies and the queue manager's).");
	histogram(&out, srv->nc, NODE_HIST_DIRECTORY,
	    "petrel_directory_query_seconds",
	    "Directory (SQL) queries run by the auth process, by duration.");
	metric_head(&out, "petrel_jobs_waiting", "gauge",
	    "Jobs waiting for a thread, by pool (the protocol workers' "
	    "general and directory pools, the queue manager's).");
	str_printf(&out, "petrel_jobs_waiting{pool=\"worker\"} %llu\n"
	    "petrel_jobs_waiting{pool=\"directory\"} %llu\n"
	    "petrel_jobs_waiting{pool=\"queue\"} %llu\n",
	    (unsigned long long)node_counters_gauge(srv->nc,
	    NODE_GAUGE_JOBS_WAITING),
	    (unsigned long long)node_counters_gauge(srv->nc,
	    NODE_GAUGE_DIR_JOBS_WAITING),
	    (unsigned long long)node_counters_gauge(srv->nc,
	    NODE_GAUGE_QUEUE_JOBS_WAITING));
	metric_head(&out, "petrel_process_resident_memory_bytes", "gauge",
	    "Resident memory of each process under the master, by slot "
	    "(worker), role and pid.");
	for (size_t i = 0; i < s->nprocs; i++) {
		static const char *const roles[] = { "none", "protocol",
		    "queue", "auth" };

		if (s->rss[i] == 0)
			continue;
		str_printf(&out, "petrel_process_resident_memory_bytes"
		    "{worker=\"%u\",role=\"%s\",pid=\"%ld\"} %llu\n",
		    s->procs[i].slot, roles[s->procs[i].role],
		    (long)s->procs[i].pid, s->rss[i]);
	}
	respond(s, 200, "text/plain; version=0.0.4; charset=utf-8", NULL,
	    out.data, out.len);
	str_free(&out);
	session_job_finished(&s->base);
}

static void
metrics(struct http_session *s)
{
	s->job.run = queue_count_run;
	s->job.done = queue_count_done;
	s->job.next = NULL;
	session_job_submit(&s->base, s->srv->sv.jobs, &s->job);
}

/* ---- autoconfig, Autodiscover, MTA-STS ---- */

static void
autoconfig_server(str_t *out, const char *tag, const char *type,
    const char *host, unsigned port, const char *socket_type)
{
	if (port == 0)
		return;
	str_printf(out, "    <%s type=\"%s\">\n      <hostname>", tag, type);
	xml_text(out, host);
	str_printf(out, "</hostname>\n      <port>%u</port>\n"
	    "      <socketType>%s</socketType>\n"
	    "      <username>%%EMAILADDRESS%%</username>\n"
	    "      <authentication>password-cleartext</authentication>\n"
	    "    </%s>\n", port, socket_type, tag);
}

/* The domain a client asks about: from emailaddress=, else the Host
 * header without an "autoconfig." in front, else hostname. NULL: a
 * malformed address. */
static char *
client_domain(struct http_session *s, const struct http_request *req)
{
	char addr[512], host[256];
	char *domain = NULL;
	int r = http_query_param(req->query, req->query_len, "emailaddress",
	    addr, sizeof(addr));

	if (r < 0)
		return NULL;
	if (r > 0)
		return addr_split(addr, NULL, &domain) == 0 ? domain : NULL;
	if (req->host != NULL && req->host_len > 0 &&
	    req->host_len < sizeof(host)) {
		char *colon;

		memcpy(host, req->host, req->host_len);
		host[req->host_len] = '\0';
		if ((colon = strchr(host, ':')) != NULL)
			*colon = '\0';
		if (strncasecmp(host, "autoconfig.", 11) == 0)
			memmove(host, host + 11, strlen(host + 11) + 1);
		if (addr_domain_valid(host)) {
			str_lower(host);
			return xstrdup(host);
		}
	}
	return xstrdup(s->base.srv->hostname);
}

static void
autoconfig(struct http_session *s, const struct http_request *req)
{
	struct http_server *srv = s->srv;
	const char *host = srv->sv.hostname;
	char *domain = client_domain(s, req);
	str_t out = STR_INIT;

	if (domain == NULL) {
		respond_error(s, 400);
		return;
	}
	str_append(&out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	    "<clientConfig version=\"1.1\">\n  <emailProvider id=\"");
	xml_text(&out, domain);
	str_append(&out, "\">\n    <domain>");
	xml_text(&out, domain);
	str_append(&out, "</domain>\n    <displayName>");
	xml_text(&out, domain);
	str_append(&out, "</displayName>\n    <displayShortName>");
	xml_text(&out, domain);
	str_append(&out, "</displayShortName>\n");
	autoconfig_server(&out, "incomingServer", "imap", host, srv->imaps,
	    "SSL");
	autoconfig_server(&out, "incomingServer", "imap", host, srv->imap,
	    "STARTTLS");
	autoconfig_server(&out, "incomingServer", "pop3", host, srv->pop3s,
	    "SSL");
	autoconfig_server(&out, "incomingServer", "pop3", host, srv->pop3,
	    "STARTTLS");
	autoconfig_server(&out, "outgoingServer", "smtp", host,
	    srv->submissions, "SSL");
	autoconfig_server(&out, "outgoingServer", "smtp", host,
	    srv->submission, "STARTTLS");
	str_append(&out, "  </emailProvider>\n</clientConfig>\n");
	respond(s, 200, "application/xml; charset=utf-8", NULL, out.data,
	    out.len);
	str_free(&out);
	free(domain);
}

static void
autodiscover_protocol(str_t *out, const char *type, const char *host,
    unsigned port, const char *address, bool ssl)
{
	if (port == 0)
		return;
	str_printf(out, "      <Protocol>\n        <Type>%s</Type>\n"
	    "        <Server>", type);
	xml_text(out, host);
	str_printf(out, "</Server>\n        <Port>%u</Port>\n"
	    "        <LoginName>", port);
	xml_text(out, address);
	str_printf(out, "</LoginName>\n        <DomainRequired>off"
	    "</DomainRequired>\n        <SPA>off</SPA>\n"
	    "        <SSL>on</SSL>\n%s"
	    "        <AuthRequired>on</AuthRequired>\n      </Protocol>\n",
	    ssl ? "" : "        <Encryption>TLS</Encryption>\n");
}

/* POST body: <Request><EMailAddress>a@b</EMailAddress>... (Outlook's
 * plain-old-XML request); only the address is read from it. */
static void
autodiscover(struct http_session *s, const struct http_request *req)
{
	static const char open[] = "<EMailAddress>", close[] = "</EMailAddress>";
	struct http_server *srv = s->srv;
	const char *b = req->body, *end = req->body + req->body_len, *a, *z;
	char addr[320], *local = NULL, *domain = NULL;
	str_t out = STR_INIT;

	a = b == NULL ? NULL : memmem(b, req->body_len, open, sizeof(open) - 1);
	if (a != NULL)
		a += sizeof(open) - 1;
	z = a == NULL ? NULL : memmem(a, (size_t)(end - a), close,
	    sizeof(close) - 1);
	if (z == NULL || (size_t)(z - a) >= sizeof(addr)) {
		respond_error(s, 400);
		return;
	}
	memcpy(addr, a, (size_t)(z - a));
	addr[z - a] = '\0';
	if (addr_split(str_trim(addr), &local, &domain) < 0) {
		respond_error(s, 400);
		return;
	}
	snprintf(addr, sizeof(addr), "%s@%s", local, domain);
	str_append(&out, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
	    "<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/"
	    "autodiscover/responseschema/2006\">\n"
	    "  <Response xmlns=\"http://schemas.microsoft.com/exchange/"
	    "autodiscover/outlook/responseschema/2006a\">\n"
	    "    <Account>\n      <AccountType>email</AccountType>\n"
	    "      <Action>settings</Action>\n");
	if (srv->imaps != 0)
		autodiscover_protocol(&out, "IMAP", srv->sv.hostname,
		    srv->imaps, addr, true);
	else
		autodiscover_protocol(&out, "IMAP", srv->sv.hostname,
		    srv->imap, addr, false);
	if (srv->pop3s != 0)
		autodiscover_protocol(&out, "POP3", srv->sv.hostname,
		    srv->pop3s, addr, true);
	else
		autodiscover_protocol(&out, "POP3", srv->sv.hostname,
		    srv->pop3, addr, false);
	if (srv->submissions != 0)
		autodiscover_protocol(&out, "SMTP", srv->sv.hostname,
		    srv->submissions, addr, true);
	else
		autodiscover_protocol(&out, "SMTP", srv->sv.hostname,
		    srv->submission, addr, false);
	str_append(&out, "    </Account>\n  </Response>\n</Autodiscover>\n");
	respond(s, 200, "application/xml; charset=utf-8", NULL, out.data,
	    out.len);
	str_free(&out);
	free(local);
	free(domain);
}

/* ---- Apple configuration profile ---- */

/* A UUID-shaped name of (what, address, host): the same profile each
 * time, so that installing it again replaces it. */
static void
profile_uuid(const char *what, const char *address, const char *host,
    char out[37])
{
	unsigned char md[32];
	char *in = xasprintf("%s\n%s\n%s", what, address, host);
	size_t o = 0;

	crypto_sha256(in, strlen(in), md);
	free(in);
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		snprintf(out + o, 3, "%02X", md[i]);
		o += 2;
	}
	out[o] = '\0';
}

static void
plist_string(str_t *out, const char *key, const char *value)
{
	str_printf(out, "\t\t\t<key>%s</key>\n\t\t\t<string>", key);
	xml_text(out, value);
	str_append(out, "</string>\n");
}

static void
plist_server(str_t *out, const char *dir, const char *host, unsigned port,
    bool ssl, const char *address)
{
	str_printf(out, "\t\t\t<key>%sMailServerAuthentication</key>\n"
	    "\t\t\t<string>EmailAuthPassword</string>\n", dir);
	str_printf(out, "\t\t\t<key>%sMailServerHostName</key>\n"
	    "\t\t\t<string>", dir);
	xml_text(out, host);
	str_printf(out, "</string>\n\t\t\t<key>%sMailServerPortNumber</key>\n"
	    "\t\t\t<integer>%u</integer>\n"
	    "\t\t\t<key>%sMailServerUseSSL</key>\n\t\t\t<%s/>\n"
	    "\t\t\t<key>%sMailServerUsername</key>\n\t\t\t<string>", dir, port,
	    dir, ssl ? "true" : "false", dir);
	xml_text(out, address);
	str_append(out, "</string>\n");
}

static void
mobileconfig_run(struct job *job, void *state)
{
	struct http_session *s = (struct http_session *)((char *)job -
	    offsetof(struct http_session, job));
	struct route_result res;

	const char *delim = s->srv->delimiter, *at = strrchr(s->address, '@');
	char *maildir = NULL;
	size_t cut;

	authc_route(state, s->address, false, &res);
	s->mailbox = (int)res.status;
	if (res.status == ROUTE_OK) {
		/* a mailbox's own address: not an alias */
		s->mailbox = -1;
		for (size_t i = 0; i < res.ndests && maildir == NULL; i++)
			if (res.dests[i].kind == ROUTE_MAILDIR &&
			    strcasecmp(res.dests[i].address, s->address) == 0)
				maildir = xstrdup(res.dests[i].maildir);
		if (maildir != NULL)
			s->mailbox = ROUTE_OK;
	}
	route_result_clear(&res);
	/* nor a user+tag address: the same maildir as the address without
	 * the tag (a user whose name holds the delimiter has one of its
	 * own) */
	cut = strcspn(s->address, delim[0] != '\0' ? delim : "@");
	if (maildir != NULL && at != NULL && s->address + cut < at) {
		char *plain = xasprintf("%.*s%s", (int)cut, s->address, at);

		authc_route(state, plain, false, &res);
		for (size_t i = 0; res.status == ROUTE_OK && i < res.ndests; i++)
			if (res.dests[i].kind == ROUTE_MAILDIR &&
			    strcmp(res.dests[i].maildir, maildir) == 0)
				s->mailbox = -1;
		if (res.status == ROUTE_TEMPFAIL)
			s->mailbox = ROUTE_TEMPFAIL;
		route_result_clear(&res);
		free(plain);
	}
	free(maildir);
}

static void
mobileconfig_done(struct job *job)
{
	struct http_session *s = (struct http_session *)((char *)job -
	    offsetof(struct http_session, job));
	struct http_server *srv = s->srv;
	const char *host = srv->sv.hostname, *a = s->address;
	bool imap = srv->imaps != 0 || srv->imap != 0;
	char uuid[37], puuid[37], id[17];
	str_t out = STR_INIT, rev = STR_INIT;

	if (s->base.dead) {
		session_job_finished(&s->base);
		return;
	}
	if (s->mailbox == ROUTE_TEMPFAIL || s->mailbox == ROUTE_CONFIG) {
		respond_error(s, 503);
		session_job_finished(&s->base);
		return;
	}
	if (s->mailbox != ROUTE_OK) {
		respond_error(s, 404);
		session_job_finished(&s->base);
		return;
	}
	profile_uuid("profile", a, host, uuid);
	profile_uuid("account", a, host, puuid);
	memcpy(id, uuid, 8);
	memcpy(id + 8, uuid + 9, 4);
	memcpy(id + 12, uuid + 14, 4);
	id[16] = '\0';
	/* the identifier: the host name reversed, as Apple's are */
	for (const char *end = host + strlen(host), *p = end; ; p--) {
		if (p == host || p[-1] == '.') {
			if (rev.len > 0)
				str_append_c(&rev, '.');
			str_append_n(&rev, p, (size_t)(end - p));
			end = p - 1;
			if (p == host)
				break;
		}
	}
	str_append(&out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	    "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" "
	    "\"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n"
	    "<plist version=\"1.0\">\n<dict>\n\t<key>PayloadContent</key>\n"
	    "\t<array>\n\t\t<dict>\n");
	plist_string(&out, "EmailAccountDescription", a);
	plist_string(&out, "EmailAccountType", imap ? "EmailTypeIMAP" :
	    "EmailTypePOP");
	plist_string(&out, "EmailAddress", a);
	if (imap)
		plist_server(&out, "Incoming", host, srv->imaps ? srv->imaps :
		    srv->imap, srv->imaps != 0, a);
	else
		plist_server(&out, "Incoming", host, srv->pop3s ? srv->pop3s :
		    srv->pop3, srv->pop3s != 0, a);
	plist_server(&out, "Outgoing", host, srv->submissions ?
	    srv->submissions : srv->submission, srv->submissions != 0, a);
	str_append(&out, "\t\t\t<key>OutgoingPasswordSameAsIncomingPassword"
	    "</key>\n\t\t\t<true/>\n");
	plist_string(&out, "PayloadDescription", "Mail account");
	plist_string(&out, "PayloadDisplayName", a);
	str_printf(&out, "\t\t\t<key>PayloadIdentifier</key>\n\t\t\t<string>");
	xml_text(&out, str_c(&rev));
	str_printf(&out, ".petrel.%s.account</string>\n", id);
	plist_string(&out, "PayloadType", "com.apple.mail.managed");
	plist_string(&out, "PayloadUUID", puuid);
	str_append(&out, "\t\t\t<key>PayloadVersion</key>\n"
	    "\t\t\t<integer>1</integer>\n\t\t</dict>\n\t</array>\n"
	    "\t<key>PayloadDisplayName</key>\n\t<string>");
	xml_text(&out, a);
	str_append(&out, "</string>\n\t<key>PayloadIdentifier</key>\n"
	    "\t<string>");
	xml_text(&out, str_c(&rev));
	str_printf(&out, ".petrel.%s</string>\n"
	    "\t<key>PayloadRemovalDisallowed</key>\n\t<false/>\n"
	    "\t<key>PayloadType</key>\n\t<string>Configuration</string>\n"
	    "\t<key>PayloadUUID</key>\n\t<string>%s</string>\n"
	    "\t<key>PayloadVersion</key>\n\t<integer>1</integer>\n"
	    "</dict>\n</plist>\n", id, uuid);
	respond(s, 200, "application/x-apple-aspen-config", "Content-"
	    "Disposition: attachment; filename=\"email.mobileconfig\"\r\n",
	    out.data, out.len);
	str_free(&out);
	str_free(&rev);
	session_job_finished(&s->base);
}

/* GET /email.mobileconfig?email=ADDRESS (or emailaddress=): an unsigned
 * profile with the mailbox's IMAP (else POP3) and submission accounts.
 * 400: no address, or not a plain ASCII address; 404: not a mailbox
 * here, or no client listener to offer. */
static void
mobileconfig(struct http_session *s, const struct http_request *req)
{
	struct http_server *srv = s->srv;
	char addr[320], *local = NULL, *domain = NULL;
	int r = http_query_param(req->query, req->query_len, "email", addr,
	    sizeof(addr));

	if (r == 0)
		r = http_query_param(req->query, req->query_len,
		    "emailaddress", addr, sizeof(addr));
	if (r <= 0) {
		respond_error(s, 400);
		return;
	}
	for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
		if (*p <= ' ' || *p >= 0x7f) {
			respond_error(s, 400);
			return;
		}
	if (addr_split(addr, &local, &domain) < 0) {
		respond_error(s, 400);
		return;
	}
	if ((srv->imaps == 0 && srv->imap == 0 && srv->pop3s == 0 &&
	    srv->pop3 == 0) || (srv->submissions == 0 &&
	    srv->submission == 0) || srv->sv.dir_jobs == NULL) {
		free(local);
		free(domain);
		respond_error(s, 404);
		return;
	}
	s->address = xasprintf("%s@%s", local, domain);
	free(local);
	free(domain);
	s->job.run = mobileconfig_run;
	s->job.done = mobileconfig_done;
	s->job.next = NULL;
	session_job_submit(&s->base, srv->sv.dir_jobs, &s->job);
}

static void
mta_sts(struct http_session *s)
{
	str_t out = STR_INIT;

	str_printf(&out, "version: STSv1\r\nmode: %s\r\nmx: %s\r\n"
	    "max_age: %llu\r\n", s->srv->sts_mode, s->srv->sv.hostname,
	    s->srv->sts_max_age);
	respond(s, 200, "text/plain; charset=utf-8", NULL, out.data, out.len);
	str_free(&out);
}

static bool
path_is(const struct http_request *req, const char *path)
{
	return req->path_len == strlen(path) &&
	    memcmp(req->path, path, req->path_len) == 0;
}

static void
route(struct http_session *s, const struct http_request *req)
{
	bool get = req->method != HTTP_POST;

	s->head = req->method == HTTP_HEAD;
	if (path_is(req, "/metrics")) {
		if (get)
			metrics(s);
		else
			respond_error(s, 405);
	} else if (path_is(req, "/mail/config-v1.1.xml") ||
	    path_is(req, "/.well-known/autoconfig/mail/config-v1.1.xml")) {
		if (get)
			autoconfig(s, req);
		else
			respond_error(s, 405);
	} else if (path_is(req, "/email.mobileconfig") ||
	    path_is(req, "/mobileconfig")) {
		if (get)
			mobileconfig(s, req);
		else
			respond_error(s, 405);
	} else if (path_is(req, "/.well-known/mta-sts.txt")) {
		if (get)
			mta_sts(s);
		else
			respond_error(s, 405);
	} else if (req->path_len == 30 &&
	    strncasecmp(req->path, "/autodiscover/autodiscover.xml", 30) == 0) {
		if (!get)
			autodiscover(s, req);
		else
			respond_error(s, 405);
	} else {
		respond_error(s, 404);
	}
}

static bool
http_process(struct session *base)
{
	struct http_session *s = (struct http_session *)base;
	struct evbuffer *in = session_input(base);
	size_t len = evbuffer_get_length(in);
	struct http_request req;
	const char *buf;
	long r;

	if (len > HTTP_HEADER_MAX + HTTP_BODY_MAX)
		len = HTTP_HEADER_MAX + HTTP_BODY_MAX;
	if (len == 0)
		return false;
	buf = (const char *)evbuffer_pullup(in, (ssize_t)len);
	r = http_parse_request(buf, len, &req);
	if (r == 0)
		return true;
	if (r < 0) {
		log_info("%016llx: http %s: bad request (%ld)", SID(base),
		    base->peer, -r);
		s->consumed = evbuffer_get_length(in);
		respond_error(s, (int)-r);
		return false;
	}
	s->consumed = (size_t)r;
	route(s, &req);
	return false;
}

static void
http_timeout(struct session *base)
{
	respond_error((struct http_session *)base, 408);
}

static bool
http_drain(struct session *base)
{
	return true;
}

static void
http_cleanup(struct session *base)
{
	struct http_session *s = (struct http_session *)base;

	free(s->procs);
	free(s->rss);
	free(s->address);
}

static void
http_greet(struct session *base)
{
	struct http_session *s = (struct http_session *)base;

	s->srv = base->srv->owner;
}

static const struct session_ops http_ops = {
	.size = sizeof(struct http_session), .proto = "http",
	.listeners = { "http", "https" }, .implicit_tls = { false, true },
	.timeout_key = "http_timeout", .default_timeout = 10,
	.refusal = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
	    "Connection: close\r\n",
	.greet = http_greet, .process = http_process, .timeout = http_timeout,
	.drain = http_drain, .cleanup = http_cleanup,
};

/* The first port of a listener key, 0 when it has none. */
static unsigned
first_port(const struct config *cfg, const char *key)
{
	struct config_listen *l = NULL;
	size_t n = 0;
	char *err = NULL;
	unsigned port = 0;

	if (config_parse_listen(config_get(cfg, key), &l, &n, &err) < 0) {
		free(err);
		return 0;
	}
	if (n > 0)
		port = l[0].port;
	config_listen_free(&l, n);
	return port;
}

void
http_server_init(struct http_server *srv, struct event_base *base,
    struct jobs *jobs, const struct config *cfg, struct tls_server *tls)
{
	memset(srv, 0, sizeof(*srv));
	srv->queue_dir = config_get(cfg, "queue_dir");
	srv->imap = first_port(cfg, "imap_listen");
	srv->imaps = first_port(cfg, "imaps_listen");
	srv->pop3 = first_port(cfg, "pop3_listen");
	srv->pop3s = first_port(cfg, "pop3s_listen");
	srv->submission = first_port(cfg, "submission_listen");
	srv->submissions = first_port(cfg, "submissions_listen");
	srv->sts_mode = config_get(cfg, "mta_sts_mode");
	srv->delimiter = config_get(cfg, "recipient_delimiter");
	srv->sts_max_age = (unsigned long long)config_get_uint(cfg,
	    "mta_sts_max_age");
	session_server_init(&srv->sv, &http_ops, srv, base, jobs, cfg, tls);
}

void
http_server_metrics(struct http_server *srv, struct node_counters *nc,
    const char *const *names, unsigned n)
{
	srv->nc = nc;
	srv->service_names = names;
	srv->nservices = n;
}

void
http_server_deinit(struct http_server *srv)
{
	session_server_deinit(&srv->sv);
}
