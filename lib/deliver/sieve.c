/*
 * sieve.c: Sieve at delivery (docs/sieve.md). For each local recipient
 * the admin scripts of sieve_before, the user's active script
 * (%h/.dovecot.sieve, a file or a link into sieve_dir) and the scripts
 * of sieve_after run over the message in that order (lib/sieve); their
 * actions are merged as Pigeonhole merges a script sequence (the
 * explicit actions of all, the implicit keep unless one cancelled it)
 * and carried out here: copies into folders with flags, redirects
 * through the one delivery path (no scripts run on the redirected copy,
 * so redirects never loop here), discard, and reject: the caller's 550
 * when the message has that one destination and may still be refused,
 * else a refusal (RFC 5429) to the envelope sender.
 *
 * Never losing mail: a script that cannot be read or parsed, fails while
 * running, or whose action cannot be done (a missing folder without
 * :create, a redirect that cannot be routed) leaves the message in INBOX
 * and one log line names the recipient and the error.
 *
 * Parsed scripts are cached per path (device, inode, size and mtime
 * must match), SIEVE_CACHE_MAX of them, shared by the job threads with a
 * reference count.
 *
 * Trust: scripts are the users' (bounded by lib/sieve); the user's link
 * must lead into sieve_dir; folder names from scripts are checked by
 * lib/maildir before they touch the file system.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/authd/client.h"
#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/deliver/deliver-private.h"
#include "lib/imap/parse.h"
#include "lib/maildir/maildir.h"
#include "lib/mime/mime.h"
#include "lib/queue/queue.h"
#include "lib/queue/spool.h"
#include "lib/route/route.h"
#include "lib/sieve/sieve.h"
#include "lib/sieve/store.h"
#include "lib/store/mailbox.h"
#include "lib/tls/tls.h"

#define SIEVE_CACHE_MAX		64	/* parsed scripts kept */
#define SIEVE_SEQ_MAX		32	/* scripts in one sequence */
#define SIEVE_REASON_MAX	200	/* bytes of a reason in a 550 */
#define SIEVE_HEADERS_MAX	(64 * 1024)	/* quoted in a refusal */

struct compiled {
	unsigned refs;
	struct sieve_script *script;	/* NULL: error */
	char *error;
};

struct slot {
	char *path;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	struct compiled *c;
	uint64_t used;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot cache[SIEVE_CACHE_MAX];
static uint64_t cache_clock;

void
deliver_sieve_init(struct deliver_sieve *sv, const struct config *cfg,
    const char *hostname)
{
	sv->dir = config_get(cfg, "sieve_dir");
	sv->before = config_get(cfg, "sieve_before");
	sv->after = config_get(cfg, "sieve_after");
	sv->global = config_get(cfg, "sieve_global");
	sv->max_redirects = (unsigned)config_get_uint(cfg,
	    "sieve_max_redirects");
	sv->hostname = hostname;
}

static void
compiled_unref(struct compiled *c)
{
	if (c == NULL || --c->refs > 0)
		return;
	sieve_free(c->script);
	free(c->error);
	free(c);
}

static struct compiled *
compile(const char *path, const struct stat *st)
{
	struct compiled *c = xcalloc(1, sizeof(*c));
	str_t errs = STR_INIT;
	char *text = NULL;
	ssize_t n = 0;
	size_t got = 0;
	int fd;

	c->refs = 1;
	if (st->st_size > SIEVE_SCRIPT_MAX) {
		c->error = xasprintf("%s: larger than %d bytes", path,
		    SIEVE_SCRIPT_MAX);
		return c;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		c->error = xasprintf("%s: %s", path, strerror(errno));
		return c;
	}
	text = xmalloc((size_t)st->st_size + 1);
	while (got < (size_t)st->st_size && (n = read(fd, text + got,
	    (size_t)st->st_size - got)) > 0)
		got += (size_t)n;
	close(fd);
	if (n < 0) {
		c->error = xasprintf("%s: %s", path, strerror(errno));
	} else if (sieve_parse(text, got, &c->script, &errs) < 0) {
		/* the first error is the line the log shows */
		const char *e = str_c(&errs);
		size_t el = strcspn(e, "\n");

		c->error = xasprintf("%s: %.*s", path, (int)el, e);
		c->script = NULL;
	}
	str_free(&errs);
	free(text);
	return c;
}

/* The slot of path, or NULL and *victim_r: an empty slot or the least
 * recently used one. Under cache_lock. */
static struct slot *
slot_find(const char *path, struct slot **victim_r)
{
	struct slot *victim = NULL;

	for (size_t i = 0; i < SIEVE_CACHE_MAX; i++) {
		struct slot *e = &cache[i];

		if (e->path != NULL && strcmp(e->path, path) == 0)
			return e;
		if (victim == NULL || (victim->path != NULL &&
		    (e->path == NULL || e->used < victim->used)))
			victim = e;
	}
	*victim_r = victim;
	return NULL;
}

/* The parsed script at path (a reference), or NULL when there is no
 * such file. */
static struct compiled *
script_get(const char *path)
{
	struct compiled *c;
	struct slot *s = NULL, *victim = NULL;
	struct stat st;

	if (stat(path, &st) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return NULL;
		c = xcalloc(1, sizeof(*c));
		c->refs = 1;
		c->error = xasprintf("%s: %s", path, strerror(errno));
		return c;
	}
	pthread_mutex_lock(&cache_lock);
	s = slot_find(path, &victim);
	if (s != NULL && s->dev == st.st_dev && s->ino == st.st_ino &&
	    s->size == st.st_size &&
	    s->mtime.tv_sec == st.st_mtim.tv_sec &&
	    s->mtime.tv_nsec == st.st_mtim.tv_nsec) {
		s->used = ++cache_clock;
		c = s->c;
		c->refs++;
		pthread_mutex_unlock(&cache_lock);
		return c;
	}
	pthread_mutex_unlock(&cache_lock);
	/* parsed outside the lock: other deliveries go on meanwhile */
	c = compile(path, &st);
	pthread_mutex_lock(&cache_lock);
	s = slot_find(path, &victim);
	if (s == NULL)
		s = victim;
	free(s->path);
	compiled_unref(s->c);
	s->path = xstrdup(path);
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->size = st.st_size;
	s->mtime = st.st_mtim;
	s->c = c;
	s->used = ++cache_clock;
	c->refs++;
	pthread_mutex_unlock(&cache_lock);
	return c;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The files of a sieve_before/sieve_after list, in order. */
static void
admin_paths(const char *list, const char *home, const char *address,
    char ***paths, size_t *n)
{
	char *copy = xstrdup(list), *save = NULL, *t;

	for (t = strtok_r(copy, ",", &save); t != NULL;
	    t = strtok_r(NULL, ",", &save)) {
		char *p = str_trim(t), *path;
		struct stat st;
		DIR *d;

		if (*p == '\0')
			continue;
		path = sieve_path_expand(p, home, address);
		if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode) ||
		    (d = opendir(path)) == NULL) {
			if (*n < SIEVE_SEQ_MAX) {
				*paths = xrealloc(*paths, (*n + 1) *
				    sizeof(**paths));
				(*paths)[(*n)++] = path;
			} else {
				free(path);
			}
			continue;
		}
		{
			struct dirent *de;
			char **names = NULL;
			size_t nn = 0;

			while ((de = readdir(d)) != NULL &&
			    nn < SIEVE_SEQ_MAX) {
				size_t l = strlen(de->d_name);

				if (de->d_name[0] == '.' || l < 7 ||
				    strcmp(de->d_name + l - 6, ".sieve") != 0)
					continue;
				names = xrealloc(names, (nn + 1) *
				    sizeof(*names));
				names[nn++] = xstrdup(de->d_name);
			}
			closedir(d);
			qsort(names, nn, sizeof(*names), name_cmp);
			for (size_t i = 0; i < nn; i++) {
				if (*n < SIEVE_SEQ_MAX) {
					*paths = xrealloc(*paths, (*n + 1) *
					    sizeof(**paths));
					(*paths)[(*n)++] = xasprintf("%s/%s",
					    path, names[i]);
				}
				free(names[i]);
			}
			free(names);
		}
		free(path);
	}
	free(copy);
}

/* Is path inside dir (both resolved)? */
static bool
path_under(const char *path, const char *dir)
{
	char rp[PATH_MAX], rd[PATH_MAX];
	size_t n;

	if (realpath(path, rp) == NULL || realpath(dir, rd) == NULL)
		return false;
	n = strlen(rd);
	return strncmp(rp, rd, n) == 0 && (rp[n] == '/' || n == 1);
}

/* The user's active script: %h/.dovecot.sieve, a regular file, or a
 * link that leads into sieve_dir. NULL: none. *error_r for a link that
 * leads elsewhere. */
static char *
user_script(const struct deliver_sieve *sv, const struct route_dest *d,
    char **error_r)
{
	char *active = xasprintf("%s/.dovecot.sieve", d->home), *dir;
	struct stat st;

	*error_r = NULL;
	if (lstat(active, &st) < 0) {
		free(active);
		return NULL;
	}
	if (S_ISREG(st.st_mode))
		return active;
	dir = sieve_path_expand(sv->dir, d->home, d->address);
	if (!S_ISLNK(st.st_mode) || !path_under(active, dir)) {
		*error_r = xasprintf("%s: not a file, nor a link into %s",
		    active, dir);
		free(active);
		active = NULL;
	}
	free(dir);
	return active;
}

static int
wire_cb(void *ctx, const void *data, size_t len)
{
	str_append_n(ctx, data, len);
	return 0;
}

static int
wire_make(const struct deliver_msg *msg, struct deliver_wire *w,
    const char **error_r)
{
	str_t lf = STR_INIT;

	if (w->made)
		return 0;
	str_printf(&lf, "Return-Path: <%s>\n%s", msg->sender,
	    msg->prefix != NULL ? msg->prefix : "");
	if (spool_each(msg->body, wire_cb, &lf) < 0) {
		str_free(&lf);
		return err_fail(error_r, errno, "cannot read the spooled "
		    "message: %s", strerror(errno));
	}
	w->size = lf.len;
	mime_to_crlf(lf.data != NULL ? lf.data : "", lf.len, &w->data);
	if (w->data.data == NULL)
		str_append(&w->data, "");
	str_free(&lf);
	w->made = true;
	return 0;
}

/* A reason as one printable line for a 550 reply. */
/* The body of the wire form (after the empty line; *len_r bytes). */
static const char *
wire_body(const struct deliver_wire *w, size_t *len_r)
{
	const char *d = str_c(&w->data);
	const char *e = memmem(d, w->data.len, "\r\n\r\n", 4);

	if (e == NULL) {
		*len_r = 0;
		return "";
	}
	*len_r = w->data.len - (size_t)(e + 4 - d);
	return e + 4;
}

static char *
reason_line(const char *s)
{
	str_t out = STR_INIT;

	for (const unsigned char *p = (const unsigned char *)s;
	    *p != '\0' && out.len < SIEVE_REASON_MAX; p++) {
		if (*p == '\r' || *p == '\n' || *p == '\t')
			str_append_c(&out, ' ');
		else if (*p >= 0x20 && *p < 0x7f)
			str_append_c(&out, (char)*p);
	}
	if (out.len == 0)
		str_append(&out, "Message rejected by a Sieve script");
	return str_steal(&out);
}

/* The IMAP flags of a store as Maildir letters, in ASCII order: system
 * flags as D F R S T, keywords ($Label1, custom ones) as the letters a..z
 * the folder's dovecot-keywords gives them (a new name takes a free
 * letter there, as an IMAP STORE would; past 26 names it is dropped).
 * out must hold 5 + 26 + 1 bytes. */
static void
flag_letters(const struct sieve_action *a, const char *folder, char *out,
    size_t size)
{
	static const struct { const char *name; char letter; } map[] = {
		{ "\\Draft", 'D' }, { "\\Flagged", 'F' },
		{ "\\Answered", 'R' }, { "\\Seen", 'S' }, { "\\Deleted", 'T' },
	};
	bool kw[26] = { false };
	struct mbox *mb = NULL;
	const char *err;
	size_t n = 0;

	for (size_t m = 0; m < sizeof(map) / sizeof(map[0]); m++)
		for (size_t i = 0; i < a->nflags; i++)
			if (strcasecmp(a->flags[i], map[m].name) == 0 &&
			    n + 1 < size) {
				out[n++] = map[m].letter;
				break;
			}
	for (size_t i = 0; i < a->nflags; i++) {
		char letter;

		if (a->flags[i][0] == '\\' || a->flags[i][0] == '\0')
			continue;	/* a system flag, or \Recent */
		if (mb == NULL && mbox_open(folder, true, &mb, &err) < 0) {
			log_warn("sieve: keywords of %s not kept: %s", folder,
			    err);
			break;
		}
		letter = mbox_keyword_letter(mb, a->flags[i], true);
		if (letter >= 'a' && letter <= 'z')
			kw[letter - 'a'] = true;
	}
	mbox_close(&mb);
	for (size_t k = 0; k < 26; k++)
		if (kw[k] && n + 1 < size)
			out[n++] = (char)('a' + k);
	out[n] = '\0';
}

/* The folder's directory for a fileinto name (UTF-8; '/' is taken as
 * the hierarchy separator '.'), made when create is set. NULL with
 * *why when it cannot be used. */
static char *
folder_dir(const struct route_dest *d, const char *name, bool create,
    const char **why)
{
	str_t m7 = STR_INIT;
	char *folder, *path, *cur;
	struct stat st;

	if (strcasecmp(name, "INBOX") == 0)
		return xstrdup(d->maildir);
	folder = xstrdup(name);
	for (char *p = folder; *p != '\0'; p++)
		if (*p == '/')
			*p = '.';
	if (imap_utf8_to_mutf7(folder, strlen(folder), &m7) < 0 ||
	    (path = maildir_folder_path(d->maildir, str_c(&m7))) == NULL) {
		*why = "invalid folder name";
		free(folder);
		str_free(&m7);
		return NULL;
	}
	cur = xasprintf("%s/cur", path);
	if (stat(cur, &st) < 0) {
		if (!create) {
			*why = "no such folder";
			free(path);
			path = NULL;
		} else if (maildir_make_folder(d->maildir, str_c(&m7),
		    why) < 0) {
			free(path);
			path = NULL;
		}
	}
	free(cur);
	free(folder);
	str_free(&m7);
	return path;
}

/* Route one address for a redirect or a refusal: the auth channel, or
 * remote without one. 0, or -1 with *why. */
static int
route_one(const struct deliver_msg *msg, const char *address,
    struct route_result *r, const char **why)
{
	memset(r, 0, sizeof(*r));
	if (msg->authc == NULL) {
		r->status = ROUTE_OK;
		r->dests = xcalloc(1, sizeof(*r->dests));
		r->ndests = 1;
		r->dests[0].kind = ROUTE_REMOTE;
		r->dests[0].address = xstrdup(address);
		r->dests[0].transport = xstrdup("");
		return 0;
	}
	authc_route(msg->authc, address, true, r);
	if (r->status != ROUTE_OK) {
		*why = route_status_name(r->status);
		route_result_clear(r);
		return -1;
	}
	return 0;
}

/* Send body (LF) from sender to address through the one delivery path,
 * with no scripts run on it. */
static int
send_copy(const struct deliver_ctx *ctx, const struct deliver_msg *msg,
    const char *sender, const char *address, const char *prefix,
    struct spool *body, const char **why)
{
	struct route_result r;
	struct deliver_rcpt rcpt;
	struct deliver_msg sub;
	struct deliver_result res;
	char qid[17];
	int ret;

	if (route_one(msg, address, &r, why) < 0)
		return -1;
	queue_id_new(qid);
	rcpt.address = address;
	rcpt.route = &r;
	memset(&sub, 0, sizeof(sub));
	sub.qid = qid;
	sub.sender = sender;
	sub.rcpts = &rcpt;
	sub.nrcpts = 1;
	sub.prefix = prefix;
	sub.body = body;
	sub.authc = msg->authc;
	sub.no_sieve = true;
	if (sender[0] != '\0') {
		/* a redirect: sealed (ARC) as the user's domain forwards */
		const char *at = msg->nrcpts > 0 ?
		    strrchr(msg->rcpts[0].address, '@') : NULL;

		sub.arc = msg->arc;
		sub.authres = msg->authres;
		sub.arc_domain = msg->arc_domain != NULL ? msg->arc_domain :
		    at != NULL ? at + 1 : NULL;
	}
	ret = deliver_message(ctx, &sub, &res, why);
	if (ret == 0)
		log_info("%s: sieve: %s as %s", msg->qid, address, qid);
	route_result_clear(&r);
	return ret;
}

/* The refusal of RFC 5429 2.1.1 (an MDN, RFC 8098) to the sender. */
static int
send_refusal(const struct deliver_ctx *ctx, const struct deliver_msg *msg,
    const struct route_dest *d, const char *reason,
    struct deliver_wire *w, const char **why)
{
	const char *host = ctx->sieve->hostname != NULL ?
	    ctx->sieve->hostname : "localhost";
	char boundary[64], qid[17], date[64];
	const char *hdr = str_c(&w->data), *end;
	struct spool sp;
	str_t m = STR_INIT;
	char *tmpdir;
	time_t now = time(NULL);
	struct tm tm;
	size_t hlen;
	int ret;

	if (msg->sender[0] == '\0') {
		log_info("%s: sieve: refusal for <%s> not sent: null sender",
		    msg->qid, d->address);
		return 0;
	}
	queue_id_new(qid);
	snprintf(boundary, sizeof(boundary), "%s/%s", qid, host);
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	str_printf(&m,
	    "From: Mail Delivery System <MAILER-DAEMON@%s>\n"
	    "To: <%s>\n"
	    "Subject: Automatically rejected mail\n"
	    "Date: %s\n"
	    "Message-ID: <%s@%s>\n"
	    "Auto-Submitted: auto-replied (rejected)\n"
	    "MIME-Version: 1.0\n"
	    "Content-Type: multipart/report; "
	    "report-type=disposition-notification;\n"
	    "\tboundary=\"%s\"\n"
	    "\n"
	    "This is a MIME-encapsulated message.\n"
	    "\n"
	    "--%s\n"
	    "Content-Type: text/plain; charset=utf-8\n"
	    "Content-Transfer-Encoding: 8bit\n"
	    "\n"
	    "Your message to <%s> was automatically rejected:\n"
	    "\n%s\n"
	    "\n--%s\n"
	    "Content-Type: message/disposition-notification\n"
	    "\n"
	    "Reporting-UA: %s; petrel\n"
	    "Final-Recipient: rfc822; %s\n"
	    "Disposition: automatic-action/MDN-sent-automatically; "
	    "deleted\n"
	    "\n--%s\n"
	    "Content-Type: text/rfc822-headers\n"
	    "\n", host, msg->sender, date, qid, host, boundary, boundary,
	    d->address, reason, boundary, host, d->address, boundary);
	end = strstr(hdr, "\r\n\r\n");
	hlen = end != NULL ? (size_t)(end - hdr) + 2 : w->data.len;
	if (hlen > SIEVE_HEADERS_MAX)
		hlen = SIEVE_HEADERS_MAX;
	for (size_t i = 0; i < hlen; i++)
		if (hdr[i] != '\r')
			str_append_c(&m, hdr[i]);
	str_printf(&m, "\n--%s--\n", boundary);
	tmpdir = xasprintf("%s/tmp", ctx->queue_dir);
	spool_init(&sp, tmpdir);
	ret = spool_append(&sp, m.data, m.len, why);
	if (ret == 0)
		ret = send_copy(ctx, msg, "", msg->sender, NULL, &sp, why);
	spool_reset(&sp);
	free(tmpdir);
	str_free(&m);
	return ret;
}

/* The first field named name of the message's header, or NULL. */
static char *
header(const struct deliver_wire *w, const char *name)
{
	const char *hdr = str_c(&w->data), *end = strstr(hdr, "\r\n\r\n");
	size_t len = end != NULL ? (size_t)(end - hdr) + 2 : w->data.len;

	return mime_header_get(hdr, len, name);
}

/* RFC 3834 and RFC 5230 4.6/4.7: no reply to the null sender, to
 * mailing lists, bulk or automatic mail, nor to mail that does not name
 * the user in To, Cc, Bcc or their Resent- forms. The reason, or NULL
 * when a reply may go. */
static const char *
vacation_refused(const struct deliver_msg *msg, const struct route_dest *d,
    const struct sieve_vacation *v, const struct deliver_wire *w)
{
	static const char *const lists[] = { "List-Id", "List-Help",
	    "List-Subscribe", "List-Unsubscribe", "List-Post", "List-Owner",
	    "List-Archive", "X-List" };
	static const char *const dests[] = { "To", "Cc", "Bcc", "Resent-To",
	    "Resent-Cc", "Resent-Bcc" };
	const char *at = strrchr(msg->sender, '@');
	size_t ll = at != NULL ? (size_t)(at - msg->sender) : 0;
	const char *why = NULL;
	bool named = false;
	char *val;

	if (msg->sender[0] == '\0')
		return "null sender";
	if ((ll == 13 && strncasecmp(msg->sender, "mailer-daemon", 13) == 0) ||
	    (ll > 6 && strncasecmp(msg->sender, "owner-", 6) == 0) ||
	    (ll > 8 && strncasecmp(at - 8, "-request", 8) == 0))
		return "sender is a list or a daemon";
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		if ((val = header(w, lists[i])) != NULL) {
			free(val);
			return "list mail";
		}
	}
	if ((val = header(w, "Auto-Submitted")) != NULL) {
		if (strncasecmp(str_trim(val), "no", 2) != 0 ||
		    (val[2] != '\0' && val[2] != ' ' && val[2] != ';' &&
		    val[2] != '('))
			why = "automatic mail (Auto-Submitted)";
		free(val);
		if (why != NULL)
			return why;
	}
	if ((val = header(w, "Precedence")) != NULL) {
		char *t = str_trim(val);

		if (strcasecmp(t, "bulk") == 0 || strcasecmp(t, "junk") == 0 ||
		    strcasecmp(t, "list") == 0)
			why = "bulk mail (Precedence)";
		free(val);
		if (why != NULL)
			return why;
	}
	for (size_t i = 0; i < sizeof(dests) / sizeof(dests[0]) && !named;
	    i++) {
		struct mime_mailbox *mb = NULL;
		size_t n;

		if ((val = header(w, dests[i])) == NULL)
			continue;
		n = mime_mailbox_list(val, &mb);
		for (size_t k = 0; k < n && !named; k++) {
			char *a = xasprintf("%s@%s", mb[k].local, mb[k].host);

			named = strcasecmp(a, d->address) == 0;
			for (size_t j = 0; j < v->naddresses && !named; j++)
				named = strcasecmp(a, v->addresses[j]) == 0;
			free(a);
		}
		mime_mailbox_list_free(mb, n);
		free(val);
	}
	return named ? NULL : "the user is not a recipient in the header";
}

/* Per-sender de-duplication (RFC 5230 4.2): a file per sender and
 * handle in SIEVE_DIR/.petrel-vacation, its mtime the last reply. true
 * when a reply may go now (and the time is recorded). */
static bool
vacation_due(const struct deliver_sieve *sv, const struct route_dest *d,
    const char *sender, const struct sieve_action *a)
{
	const struct sieve_vacation *v = a->vacation;
	char *dir = sieve_path_expand(sv->dir, d->home, d->address);
	char *vdir, *path;
	unsigned char h[32];
	char hex[65];
	str_t key = STR_INIT;
	struct stat st;
	time_t now = time(NULL);
	bool due = true;
	int fd;

	for (const char *p = sender; *p != '\0'; p++)
		str_append_c(&key, (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 :
		    *p));
	str_append_c(&key, '\n');
	if (v->handle != NULL)
		str_printf(&key, "handle %s", v->handle);
	else
		str_printf(&key, "%s\n%s\n%s\n%d", a->arg, v->subject != NULL ?
		    v->subject : "", v->from != NULL ? v->from : "",
		    v->mime ? 1 : 0);
	crypto_sha256(key.data, key.len, h);
	for (size_t i = 0; i < 32; i++)
		snprintf(hex + i * 2, 3, "%02x", h[i]);
	vdir = xasprintf("%s/.petrel-vacation", dir);
	path = xasprintf("%s/%s", vdir, hex);
	if (stat(path, &st) == 0 && st.st_mtime <= now &&
	    (uint64_t)(now - st.st_mtime) < v->seconds)
		due = false;
	if (due) {
		(void)mkdir(dir, 0700);
		(void)mkdir(vdir, 0700);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
		    O_NOFOLLOW, 0600);
		if (fd < 0) {
			/* without a record every message would be answered */
			log_warn("sieve: %s: vacation: cannot record the "
			    "reply in %s: %s", d->address, vdir,
			    strerror(errno));
			due = false;
		} else {
			(void)futimens(fd, NULL);
			close(fd);
		}
	}
	str_free(&key);
	free(path);
	free(vdir);
	free(dir);
	return due;
}

/* include (RFC 6609): NAME.sieve from sieve_dir (:personal) or
 * sieve_global (:global), through the parse cache (each included file
 * is checked against its stat at every use); the references are held
 * until the run ends. */
struct inc_ctx {
	const struct deliver_sieve *sv;
	const struct route_dest *d;
	struct compiled *held[SIEVE_INCLUDES_MAX];
	size_t nheld;
};

static const struct sieve_script *
inc_load(void *ctx, bool global, const char *name, bool *missing_r,
    char **error_r)
{
	struct inc_ctx *ic = ctx;
	const char *base = global ? ic->sv->global : ic->sv->dir;
	char *dir, *path;
	struct compiled *c;
	struct stat st;

	if (base == NULL || *base == '\0' || ic->nheld >= SIEVE_INCLUDES_MAX) {
		*missing_r = true;
		return NULL;
	}
	dir = sieve_path_expand(base, ic->d->home, ic->d->address);
	path = xasprintf("%s/%s.sieve", dir, name);
	if (stat(path, &st) < 0 && errno == ENOENT) {
		*missing_r = true;
		free(path);
		free(dir);
		return NULL;
	}
	/* a link may lead only into the same directory (as the active
	 * script's into sieve_dir) */
	if (!path_under(path, dir)) {
		*error_r = xasprintf("%s: not a file in %s", path, dir);
		free(path);
		free(dir);
		return NULL;
	}
	free(dir);
	c = script_get(path);
	if (c == NULL) {
		*error_r = xasprintf("cannot read %s", path);
		free(path);
		return NULL;
	}
	free(path);
	ic->held[ic->nheld++] = c;
	if (c->script == NULL) {
		*error_r = xstrdup(c->error);
		return NULL;
	}
	return c->script;
}

/* duplicate (RFC 7352): a file per ID and handle in
 * SIEVE_DIR/.petrel-duplicate, named by a SHA-256 of both, its mtime the
 * time the ID expires. */
struct dup_ctx {
	const struct deliver_sieve *sv;
	const struct route_dest *d;
};

static char *
dup_path(const struct dup_ctx *c, const char *handle, const char *id,
    bool dir_only, unsigned char *first_r)
{
	char *dir = sieve_path_expand(c->sv->dir, c->d->home, c->d->address);
	unsigned char h[32];
	char hex[65];
	str_t key = STR_INIT;
	char *path;

	if (dir_only) {
		path = xasprintf("%s/.petrel-duplicate", dir);
		free(dir);
		return path;
	}
	str_printf(&key, "%s\n%s", handle, id);
	crypto_sha256(key.data, key.len, h);
	for (size_t i = 0; i < 32; i++)
		snprintf(hex + i * 2, 3, "%02x", h[i]);
	if (first_r != NULL)
		*first_r = h[0];
	path = xasprintf("%s/.petrel-duplicate/%s", dir, hex);
	str_free(&key);
	free(dir);
	return path;
}

static bool
dup_seen(void *ctx, const char *handle, const char *id)
{
	char *path = dup_path(ctx, handle, id, false, NULL);
	struct stat st;
	bool seen = stat(path, &st) == 0 && st.st_mtime > time(NULL);

	free(path);
	return seen;
}

/* Expired records out (at most DUP_SCAN_MAX entries looked at). */
#define DUP_SCAN_MAX	100000
static void
dup_prune(const char *dir, time_t now)
{
	DIR *dp = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	if (dp == NULL)
		return;
	while ((e = readdir(dp)) != NULL && n++ < DUP_SCAN_MAX) {
		struct stat st;

		if (e->d_name[0] == '.')
			continue;
		if (fstatat(dirfd(dp), e->d_name, &st, AT_SYMLINK_NOFOLLOW) ==
		    0 && st.st_mtime <= now)
			(void)unlinkat(dirfd(dp), e->d_name, 0);
	}
	closedir(dp);
}

/* Record the IDs of a delivered message: a new or expired record gets
 * now + its period; a live one only with :last. One new record in 64
 * sweeps the expired ones out, so the directory stays bounded by what
 * arrives in a period. */
static void
dup_record(const struct dup_ctx *c, const struct sieve_dupmark *m)
{
	char *dir = sieve_path_expand(c->sv->dir, c->d->home, c->d->address);
	char *ddir = dup_path(c, "", "", true, NULL);
	unsigned char first = 0;
	char *path = dup_path(c, m->handle, m->id, false, &first);
	time_t now = time(NULL);
	struct stat st;
	bool live = stat(path, &st) == 0 && st.st_mtime > now;
	struct timespec ts[2];
	int fd;

	if (!live || m->last) {
		(void)mkdir(dir, 0700);
		(void)mkdir(ddir, 0700);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
		    O_NOFOLLOW, 0600);
		if (fd < 0) {
			log_warn("sieve: %s: duplicate: cannot record in %s: "
			    "%s", c->d->address, ddir, strerror(errno));
		} else {
			ts[0].tv_sec = ts[1].tv_sec = now +
			    (time_t)m->seconds;
			ts[0].tv_nsec = ts[1].tv_nsec = 0;
			(void)futimens(fd, ts);
			close(fd);
		}
		if (!live && first < 4)
			dup_prune(ddir, now);
	}
	free(path);
	free(ddir);
	free(dir);
}

/* A header value from a script or a decoded header: one line. */
static void
put_line(str_t *out, const char *s)
{
	for (size_t n = 0; *s != '\0' && n < 998; s++, n++)
		str_append_c(out, *s == '\r' || *s == '\n' ? ' ' : *s);
}

/* vacation: an answer to the envelope sender from the null sender. */
static void
vacation(const struct deliver_ctx *ctx, const struct deliver_msg *msg,
    const struct route_dest *d, const struct sieve_action *a,
    struct deliver_wire *w)
{
	const struct sieve_vacation *v = a->vacation;
	const char *host = ctx->sieve->hostname != NULL ?
	    ctx->sieve->hostname : "localhost";
	const char *why = NULL;
	char *subject = NULL, *msgid = NULL, date[64], qid[17], *tmpdir;
	str_t m = STR_INIT, dec = STR_INIT;
	struct spool sp;
	time_t now = time(NULL);
	struct tm tm;

	if (wire_make(msg, w, &why) < 0 ||
	    (why = vacation_refused(msg, d, v, w)) != NULL) {
		log_info("%s: sieve: %s: no vacation reply to <%s>: %s",
		    msg->qid, d->address, msg->sender, why);
		return;
	}
	if (!vacation_due(ctx->sieve, d, msg->sender, a)) {
		log_info("%s: sieve: %s: no vacation reply to <%s>: already "
		    "answered in the period", msg->qid, d->address,
		    msg->sender);
		return;
	}
	if (v->subject == NULL && (subject = header(w, "Subject")) != NULL)
		mime_decode_header(subject, strlen(subject), &dec);
	msgid = header(w, "Message-ID");
	queue_id_new(qid);
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	str_append(&m, "From: ");
	put_line(&m, v->from != NULL ? v->from : d->address);
	str_printf(&m, "\nTo: <%s>\nSubject: ", msg->sender);
	if (v->subject == NULL)
		str_append(&m, "Auto: ");
	put_line(&m, v->subject != NULL ? v->subject : dec.len > 0 ?
	    str_c(&dec) : "Your message");
	str_printf(&m, "\nDate: %s\nMessage-ID: <%s@%s>\n", date, qid, host);
	if (msgid != NULL)
		str_printf(&m, "In-Reply-To: %s\nReferences: %s\n", msgid,
		    msgid);
	str_append(&m, "Auto-Submitted: auto-replied (vacation)\n"
	    "Precedence: bulk\nMIME-Version: 1.0\n");
	if (!v->mime)
		str_append(&m, "Content-Type: text/plain; charset=utf-8\n"
		    "Content-Transfer-Encoding: 8bit\n\n");
	for (const char *p = a->arg; *p != '\0'; p++)
		if (*p != '\r')
			str_append_c(&m, *p);
	str_append_c(&m, '\n');
	tmpdir = xasprintf("%s/tmp", ctx->queue_dir);
	spool_init(&sp, tmpdir);
	if (spool_append(&sp, m.data, m.len, &why) < 0 ||
	    send_copy(ctx, msg, "", msg->sender, NULL, &sp, &why) < 0)
		log_warn("%s: sieve: %s: vacation reply to <%s>: %s",
		    msg->qid, d->address, msg->sender, why);
	else
		log_info("%s: sieve: %s: vacation reply sent to <%s>",
		    msg->qid, d->address, msg->sender);
	spool_reset(&sp);
	free(tmpdir);
	free(subject);
	free(msgid);
	str_free(&dec);
	str_free(&m);
}

/* The scripts' actions, merged. */
struct plan {
	struct sieve_action *acts;	/* copies of the results' actions */
	size_t nacts;
	bool any_script;
	bool cancelled;		/* the implicit keep is off */
	struct sieve_action keep;	/* the last implicit keep seen */
	bool have_keep;
	char *error;		/* a script failed: INBOX only */
	str_t edited;		/* the message as editheader left it for
				   the next script (CRLF), when edited */
	char *hdr;		/* its header section, or NULL */
	struct sieve_dupmark *dups;	/* to record after delivery */
	size_t ndups;
};

static void
action_copy(struct sieve_action *to, const struct sieve_action *from)
{
	*to = *from;
	to->arg = from->arg != NULL ? xstrdup(from->arg) : NULL;
	to->flags = from->nflags > 0 ? xcalloc(from->nflags,
	    sizeof(*to->flags)) : NULL;
	for (size_t i = 0; i < from->nflags; i++)
		to->flags[i] = xstrdup(from->flags[i]);
	to->vacation = sieve_vacation_dup(from->vacation);
	to->header = from->header != NULL ? xstrdup(from->header) : NULL;
}

static void
action_free(struct sieve_action *a)
{
	free(a->arg);
	for (size_t i = 0; i < a->nflags; i++)
		free(a->flags[i]);
	free(a->flags);
	sieve_vacation_free(a->vacation);
	free(a->header);
}

static void
plan_free(struct plan *p)
{
	for (size_t i = 0; i < p->nacts; i++)
		action_free(&p->acts[i]);
	free(p->acts);
	if (p->have_keep)
		action_free(&p->keep);
	free(p->error);
	str_free(&p->edited);
	free(p->hdr);
	for (size_t i = 0; i < p->ndups; i++) {
		free(p->dups[i].handle);
		free(p->dups[i].id);
	}
	free(p->dups);
}

/* The implicit keep: INBOX with the flags any script gave it. */
static void
keep_merge(struct plan *p, const struct sieve_action *a)
{
	if (!p->have_keep) {
		action_copy(&p->keep, a);
		p->have_keep = true;
		return;
	}
	if (a->header != NULL) {	/* the latest edit */
		free(p->keep.header);
		p->keep.header = xstrdup(a->header);
	}
	for (size_t i = 0; i < a->nflags; i++) {
		bool have = false;

		for (size_t j = 0; j < p->keep.nflags && !have; j++)
			have = strcasecmp(p->keep.flags[j], a->flags[i]) == 0;
		if (have)
			continue;
		p->keep.flags = xrealloc(p->keep.flags, (p->keep.nflags + 1) *
		    sizeof(*p->keep.flags));
		p->keep.flags[p->keep.nflags++] = xstrdup(a->flags[i]);
	}
}

static void
plan_run(const struct deliver_ctx *ctx, const struct deliver_msg *msg,
    const struct route_dest *d, const char *path, struct deliver_wire *w,
    struct plan *p)
{
	struct compiled *c;
	struct sieve_result res;
	struct sieve_msg sm;
	struct sieve_limits lim;
	struct dup_ctx dctx = { ctx->sieve, d };
	struct inc_ctx ictx;
	const char *werr;

	if (p->error != NULL)
		return;
	c = script_get(path);
	if (c == NULL)
		return;
	p->any_script = true;
	if (c->script == NULL) {
		p->error = xstrdup(c->error);
		compiled_unref(c);
		return;
	}
	if (wire_make(msg, w, &werr) < 0) {
		p->error = xstrdup(werr);
		compiled_unref(c);
		return;
	}
	memset(&sm, 0, sizeof(sm));
	sm.data = w->data.data;
	sm.len = w->data.len;
	if (p->edited.len > 0) {	/* an earlier script's editheader */
		sm.data = p->edited.data;
		sm.len = p->edited.len;
	}
	sm.env_from = msg->sender;
	sm.env_to = d->address;
	sm.size = w->size;
	sm.duplicate_seen = dup_seen;
	sm.duplicate_ctx = &dctx;
	memset(&ictx, 0, sizeof(ictx));
	ictx.sv = ctx->sieve;
	ictx.d = d;
	sm.include_load = inc_load;
	sm.include_ctx = &ictx;
	lim.redirects = ctx->sieve->max_redirects;
	sieve_run(c->script, &sm, &lim, &res);
	for (size_t i = 0; i < ictx.nheld; i++)
		compiled_unref(ictx.held[i]);
	if (res.error != NULL) {
		p->error = xasprintf("%s: %s", path, res.error);
	} else {
		bool kept = false;

		/* what this script saw as it came is what an earlier one
		 * edited */
		for (size_t i = 0; p->hdr != NULL && i < res.nactions; i++) {
			struct sieve_action *a = &res.actions[i];

			if ((a->type == SIEVE_ACT_STORE ||
			    a->type == SIEVE_ACT_REDIRECT) && a->header == NULL)
				a->header = xstrdup(p->hdr);
		}
		for (size_t i = 0; i < res.nactions; i++) {
			const struct sieve_action *a = &res.actions[i];

			if (a->type == SIEVE_ACT_STORE && a->implicit) {
				kept = true;
				keep_merge(p, a);
				continue;
			}
			p->acts = xrealloc(p->acts, (p->nacts + 1) *
			    sizeof(*p->acts));
			action_copy(&p->acts[p->nacts++], a);
		}
		if (!kept)
			p->cancelled = true;
		for (size_t i = 0; i < res.ndups; i++) {
			p->dups = xrealloc(p->dups, (p->ndups + 1) *
			    sizeof(*p->dups));
			p->dups[p->ndups] = res.dups[i];
			p->dups[p->ndups].handle = xstrdup(res.dups[i].handle);
			p->dups[p->ndups++].id = xstrdup(res.dups[i].id);
		}
		if (res.header != NULL) {
			size_t blen;
			const char *body = wire_body(w, &blen);
			str_t next = STR_INIT;

			str_append(&next, res.header);
			str_append(&next, "\r\n");
			str_append_n(&next, body, blen);
			str_free(&p->edited);
			p->edited = next;
			free(p->hdr);
			p->hdr = xstrdup(res.header);
		}
	}
	sieve_result_clear(&res);
	compiled_unref(c);
}

/* The message as editheader left it, to deliver: *sub is msg with body
 * the edited header (LF; Return-Path and Delivered-To are the
 * delivery's own, so the script's are left out) and the original body,
 * in spool (initialised here; the caller resets it). */
static int
edited_msg(const struct deliver_msg *msg, const char *header,
    struct deliver_wire *w, struct deliver_msg *sub, struct spool *spool,
    const char **error_r)
{
	str_t lf = STR_INIT;
	size_t blen;
	const char *body = wire_body(w, &blen);
	int r;

	*sub = *msg;
	sub->prefix = NULL;
	sub->body = spool;
	spool_init(spool, msg->body->tmpdir);
	for (const char *h = header; *h != '\0';) {
		const char *e = h;

		/* one field with its continuation lines */
		do {
			const char *eol = strchr(e, '\n');

			e = eol != NULL ? eol + 1 : e + strlen(e);
		} while (*e == ' ' || *e == '\t');
		if (strncasecmp(h, "Return-Path:", 12) != 0 &&
		    strncasecmp(h, "Delivered-To:", 13) != 0)
			for (const char *c = h; c < e; c++)
				if (*c != '\r')
					str_append_c(&lf, *c);
		h = e;
	}
	str_append_c(&lf, '\n');
	for (size_t i = 0; i < blen; i++)
		if (!(body[i] == '\r' && i + 1 < blen && body[i + 1] == '\n'))
			str_append_c(&lf, body[i]);
	r = spool_append(spool, lf.data, lf.len, error_r);
	str_free(&lf);
	return r;
}

/* Store into INBOX (the fallback). */
static int
keep_inbox(const struct deliver_ctx *ctx, const struct deliver_msg *msg,
    const char *orig, const struct route_dest *d, const char *flags,
    struct deliver_result *result, const char **error_r)
{
	if (deliver_maildir_to(ctx, msg, d, d->maildir, flags, error_r) < 0)
		return -1;
	result->delivered++;
	deliver_log(msg, orig, d->address, "maildir", "delivered to maildir "
	    "%s", d->maildir);
	return 0;
}

static int
do_store(const struct deliver_ctx *ctx, const struct deliver_msg *msg,
    const char *orig, const struct route_dest *d,
    const struct sieve_action *a, bool *inbox_done,
    struct deliver_result *result, const char **error_r)
{
	char flags[5 + 26 + 1];
	const char *why = NULL;
	char *dir;
	int r;

	dir = folder_dir(d, a->arg, a->create, &why);
	if (dir == NULL) {
		log_warn("%s: sieve: %s: fileinto \"%s\": %s, kept in INBOX",
		    msg->qid, d->address, a->arg, why);
		if (*inbox_done)
			return 0;
		*inbox_done = true;
		flag_letters(a, d->maildir, flags, sizeof(flags));
		return keep_inbox(ctx, msg, orig, d, flags, result, error_r);
	}
	flag_letters(a, dir, flags, sizeof(flags));
	if (strcmp(dir, d->maildir) == 0) {
		if (*inbox_done) {
			free(dir);
			return 0;
		}
		*inbox_done = true;
	}
	r = deliver_maildir_to(ctx, msg, d, dir, flags, error_r);
	if (r == 0) {
		result->delivered++;
		deliver_log(msg, orig, d->address, "maildir", "delivered to "
		    "maildir %s", dir);
	}
	free(dir);
	return r;
}

/* A store as the action's header says (editheader), else as it came. */
static int
store_action(const struct deliver_ctx *ctx, const struct deliver_msg *msg,
    const char *orig, const struct route_dest *d,
    const struct sieve_action *a, struct deliver_wire *w, bool *inbox_done,
    struct deliver_result *result, const char **error_r)
{
	struct deliver_msg sub;
	struct spool sp;
	const char *why;
	int r;

	if (a->header == NULL)
		return do_store(ctx, msg, orig, d, a, inbox_done, result,
		    error_r);
	if (edited_msg(msg, a->header, w, &sub, &sp, &why) < 0) {
		spool_reset(&sp);
		return err_fail(error_r, errno, "cannot spool the edited "
		    "message: %s", why);
	}
	r = do_store(ctx, &sub, orig, d, a, inbox_done, result, error_r);
	spool_reset(&sp);
	return r;
}

int
deliver_sieve(const struct deliver_ctx *ctx, const struct deliver_msg *msg,
    const char *orig, const struct route_dest *d, bool only,
    struct deliver_wire *wire, struct deliver_result *result,
    const char **error_r)
{
	const struct deliver_sieve *sv = ctx->sieve;
	struct plan p;
	char **paths = NULL, *user, *uerr;
	size_t npaths = 0;
	bool inbox_done = false;
	int ret = 0;

	if (d->home == NULL || d->home[0] == '\0')
		return 0;
	memset(&p, 0, sizeof(p));
	admin_paths(sv->before, d->home, d->address, &paths, &npaths);
	user = user_script(sv, d, &uerr);
	if (uerr != NULL) {
		p.any_script = true;
		p.error = uerr;
	}
	if (user != NULL && npaths < SIEVE_SEQ_MAX) {
		paths = xrealloc(paths, (npaths + 1) * sizeof(*paths));
		paths[npaths++] = user;
	} else {
		free(user);
	}
	admin_paths(sv->after, d->home, d->address, &paths, &npaths);
	for (size_t i = 0; i < npaths; i++)
		plan_run(ctx, msg, d, paths[i], wire, &p);
	for (size_t i = 0; i < npaths; i++)
		free(paths[i]);
	free(paths);
	if (!p.any_script) {
		plan_free(&p);
		return 0;
	}
	if (p.error != NULL) {
		/* The user sees why in the copy itself: an X-Sieve-Error
		 * field above the message (one line, printable). */
		struct deliver_msg copy = *msg;
		size_t hl = strlen(d->home);
		const char *shown = p.error;
		char *why;
		str_t prefix = STR_INIT;

		/* paths in the user's home as ~/..., not the server's */
		if (strncmp(shown, d->home, hl) == 0 && shown[hl] == '/') {
			shown = xasprintf("~%s", shown + hl);
			why = reason_line(shown);
			free((char *)shown);
		} else
			why = reason_line(shown);

		log_warn("%s: sieve: %s: %s; kept in INBOX", msg->qid,
		    d->address, p.error);
		str_printf(&prefix, "X-Sieve-Error: %s; kept in INBOX\n%s", why,
		    msg->prefix != NULL ? msg->prefix : "");
		copy.prefix = str_c(&prefix);
		ret = keep_inbox(ctx, &copy, orig, d, NULL, result, error_r);
		str_free(&prefix);
		free(why);
		plan_free(&p);
		return ret < 0 ? -1 : 1;
	}
	/* The 550 before the reply to DATA: nothing else is done. */
	for (size_t i = 0; only && i < p.nacts; i++) {
		if (p.acts[i].type == SIEVE_ACT_REJECT ||
		    p.acts[i].type == SIEVE_ACT_EREJECT) {
			result->reject = reason_line(p.acts[i].arg);
			log_info("%s: sieve: %s: rejected at DATA: %s",
			    msg->qid, d->address, result->reject);
			plan_free(&p);
			return 1;
		}
	}
	for (size_t i = 0; i < p.nacts && ret == 0; i++) {
		const struct sieve_action *a = &p.acts[i];
		const char *why = NULL;

		switch (a->type) {
		case SIEVE_ACT_STORE:
			ret = store_action(ctx, msg, orig, d, a, wire,
			    &inbox_done, result, error_r);
			break;
		case SIEVE_ACT_REDIRECT: {
			struct deliver_msg sub;
			struct spool sp;
			int sr = -1;

			if (a->header == NULL) {
				sr = send_copy(ctx, msg, msg->sender, a->arg,
				    msg->prefix, msg->body, &why);
			} else {
				if (edited_msg(msg, a->header, wire, &sub,
				    &sp, &why) == 0)
					sr = send_copy(ctx, msg, msg->sender,
					    a->arg, NULL, &sp, &why);
				spool_reset(&sp);
			}
			if (sr == 0) {
				deliver_log(msg, orig, d->address, "sieve",
				    "redirected to <%s>", a->arg);
				break;
			}
			log_warn("%s: sieve: %s: redirect to <%s>: %s; kept "
			    "in INBOX", msg->qid, d->address, a->arg, why);
			if (!inbox_done) {
				inbox_done = true;
				ret = keep_inbox(ctx, msg, orig, d, NULL,
				    result, error_r);
			}
			break;
		}
		case SIEVE_ACT_REJECT:
		case SIEVE_ACT_EREJECT:
			if (wire_make(msg, wire, &why) == 0 &&
			    send_refusal(ctx, msg, d, a->arg, wire,
			    &why) == 0) {
				deliver_log(msg, orig, d->address, "sieve",
				    "rejected: %s", a->arg);
				result->delivered++;
				break;
			}
			log_warn("%s: sieve: %s: refusal to <%s>: %s; kept "
			    "in INBOX", msg->qid, d->address, msg->sender,
			    why);
			if (!inbox_done) {
				inbox_done = true;
				ret = keep_inbox(ctx, msg, orig, d, NULL,
				    result, error_r);
			}
			break;
		case SIEVE_ACT_DISCARD:
			deliver_log(msg, orig, d->address, "none",
			    "discarded by a Sieve script");
			result->delivered++;
			break;
		case SIEVE_ACT_VACATION:
			vacation(ctx, msg, d, a, wire);
			break;
		}
	}
	if (ret == 0 && !p.cancelled && !inbox_done) {
		if (p.have_keep)
			ret = store_action(ctx, msg, orig, d, &p.keep, wire,
			    &inbox_done, result, error_r);
		else
			ret = keep_inbox(ctx, msg, orig, d, NULL, result,
			    error_r);
	}
	/* the message is delivered: its duplicate IDs count from now */
	for (size_t i = 0; ret == 0 && i < p.ndups; i++) {
		struct dup_ctx dc = { sv, d };

		dup_record(&dc, &p.dups[i]);
	}
	plan_free(&p);
	return ret < 0 ? -1 : 1;
}
