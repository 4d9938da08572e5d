/*
 * route.c: from an RCPT address to delivery destinations.
 *
 * Order of lookups for an address in a hosted domain (Postfix virtual(5),
 * with the catch-all moved after users so it never shadows a mailbox;
 * catchall_order = after-users, the default):
 *   1. virtual alias for the exact address (an alias wins over a user);
 *   2. the users table (query_user);
 *   3. with a recipient delimiter, 1 and 2 for user@domain without +tag;
 *   4. the catch-all alias @domain;
 *   5. a relay transport (smtp:) for the domain; else unknown user.
 * With catchall_order = postfix, Postfix's own order: the aliases of the
 * address, of the address without +tag and @domain, then the users (with
 * and without +tag), then 5: a catch-all takes mail for every user that
 * has no alias of its own (user@d -> user@d keeps a mailbox out of it).
 * The domain's transport is read first: error: and discard: apply to
 * every address of the domain, a transport petrel cannot run
 * (lmtp:unix:, pipe:, ...) defers the recipient with 451 4.3.5 and an
 * error in the log, never a silent local delivery; maildrop: delivers to
 * the Maildir as virtual: does (Courier maildrop's default action).
 * lmtp: over TCP sends the domain's users (and, as smtp: does, the
 * addresses no alias or user takes) to that LMTP server through the
 * queue. On a frontend (rc->lmtp_port set) every user goes to the
 * user's backend by LMTP the same way: the row's host column, else
 * backend_default; with neither the recipient is deferred (451 4.3.0),
 * never delivered to a Maildir on the frontend.
 * Alias targets are resolved recursively. A target equal to its source
 * ("a@x -> a@x, b@x", the Postfix idiom to keep a copy) delivers to the
 * mailbox; any other repetition on the expansion path is a loop (5.4.6).
 * A bare target without '@' means that local part in local_domain when
 * it is set (Postfix appends $myorigin), else in the source's domain.
 * A user whose maildir column holds addresses instead of a path (the
 * Exim howto's redirect router) is an alias to them, never a directory
 * named after an address.
 *
 * Trust: the address is untrusted, already syntax-checked by the caller;
 * directory values (goto lists, maildir paths) are checked here too: a
 * maildir that climbs out of mail_root is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/addr.h"
#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/dir/dir.h"
#include "lib/route/route.h"

/* maildrop: is told once per process, not once per message (route
 * runs on job threads). */
static bool maildrop_warned;

struct ctx {
	struct dir *dir;
	const struct route_config *rc;
	bool may_relay;
	struct route_result *res;
	const char *chain[ALIAS_DEPTH_MAX + 1];
	size_t depth;
	size_t expansions;
	bool failed;		/* res->status already set to a failure */
	const char *domain_lmtp;	/* the domain being resolved has this
					 * lmtp: transport (NULL: none) */
};

const char *
route_status_name(enum route_status s)
{
	static const char *const names[] = {
		"ok", "unknown user", "relay denied", "rejected", "alias loop",
		"directory unavailable", "configuration error",
	};
	return (size_t)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

void
route_result_clear(struct route_result *res)
{
	for (size_t i = 0; i < res->ndests; i++) {
		free(res->dests[i].address);
		free(res->dests[i].maildir);
		free(res->dests[i].home);
		free(res->dests[i].transport);
	}
	free(res->dests);
	free(res->text);
	memset(res, 0, sizeof(*res));
}

bool
route_maildir_is_forward(const char *maildir)
{
	char *copy, *save = NULL, *t;
	bool ok = false;

	if (maildir == NULL || strchr(maildir, '/') != NULL ||
	    strchr(maildir, '@') == NULL)
		return false;
	copy = xstrdup(maildir);
	for (t = strtok_r(copy, ",", &save); t != NULL;
	    t = strtok_r(NULL, ",", &save)) {
		char *a = str_trim(t), *l = NULL, *d = NULL;

		ok = addr_split(a, &l, &d) == 0;
		free(l);
		free(d);
		if (!ok)
			break;
	}
	free(copy);
	return ok;
}

char *
route_maildir_path(const char *mail_root, const char *maildir)
{
	const char *rel = maildir, *p, *e;
	size_t n, ncomp = 0;
	str_t out = STR_INIT;

	if (maildir == NULL || maildir[0] == '\0' || mail_root == NULL ||
	    route_maildir_is_forward(maildir))
		return NULL;
	n = strlen(mail_root);
	while (n > 1 && mail_root[n - 1] == '/')
		n--;
	if (maildir[0] == '/') {
		/* A full path (the howtos store them) must still lie inside
		 * mail_root: a directory row may not send mail, or a login,
		 * anywhere else on the machine. */
		if (n == 1 && mail_root[0] == '/')
			rel = maildir + 1;
		else if (strncmp(maildir, mail_root, n) == 0 &&
		    maildir[n] == '/')
			rel = maildir + n + 1;
		else
			return NULL;
	}
	/* Normalise the part below mail_root: empty and "." components go,
	 * ".." is refused, and at least one real component must remain, so
	 * that "ROOT//", "ROOT/.", "./" or "." never make mail_root itself
	 * somebody's maildir. */
	if (!(n == 1 && mail_root[0] == '/'))
		str_append_n(&out, mail_root, n);
	for (p = rel; *p != '\0'; p = *e == '\0' ? e : e + 1) {
		e = strchr(p, '/');
		if (e == NULL)
			e = p + strlen(p);
		if (e == p || (e - p == 1 && p[0] == '.'))
			continue;
		if (e - p == 2 && p[0] == '.' && p[1] == '.') {
			str_free(&out);
			return NULL;
		}
		str_append(&out, "/");
		str_append_n(&out, p, (size_t)(e - p));
		ncomp++;
	}
	if (ncomp == 0) {
		str_free(&out);
		return NULL;
	}
	if (maildir[strlen(maildir) - 1] == '/')
		str_append(&out, "/");
	return str_steal(&out);
}

enum route_transport
route_transport_kind(const char *t)
{
	static const struct {
		const char *prefix;
		enum route_transport kind;
	} known[] = {
		{ "virtual", TRANSPORT_LOCAL }, { "local", TRANSPORT_LOCAL },
		{ "maildrop", TRANSPORT_MAILDROP },
		{ "smtp", TRANSPORT_RELAY }, { "relay", TRANSPORT_RELAY },
		{ "error", TRANSPORT_ERROR }, { "discard", TRANSPORT_DISCARD },
		{ "lmtp", TRANSPORT_LMTP },
	};
	const char *colon;
	size_t n;

	if (t == NULL || t[0] == '\0')
		return TRANSPORT_LOCAL;
	/* transport(5): "name:nexthop"; a bare name is "name:" */
	colon = strchr(t, ':');
	n = colon != NULL ? (size_t)(colon - t) : strlen(t);
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strlen(known[i].prefix) != n ||
		    strncasecmp(t, known[i].prefix, n) != 0)
			continue;
		/* lmtp: needs a TCP next hop; a UNIX socket (Postfix's
		 * lmtp:unix:private/...) is another machine's path */
		if (known[i].kind == TRANSPORT_LMTP && (colon == NULL ||
		    colon[1] == '\0' || strncasecmp(colon + 1, "unix:", 5) == 0))
			return TRANSPORT_UNSUPPORTED;
		return known[i].kind;
	}
	return TRANSPORT_UNSUPPORTED;
}

static void
fail(struct ctx *c, enum route_status status, const char *text)
{
	/* The first hard failure wins, but a temporary one overrides all:
	 * the client retries and gets the full answer later. */
	if (c->failed && status != ROUTE_TEMPFAIL)
		return;
	c->res->status = status;
	c->res->logged = false;
	free(c->res->text);
	c->res->text = text ? xstrdup(text) : NULL;
	c->failed = true;
}

char *
route_user_home(const char *mail_root, const char *home, const char *maildir)
{
	size_t n = home != NULL ? strlen(home) : 0, m;
	char *md, *slash;

	while (n > 1 && home[n - 1] == '/')
		n--;
	m = mail_root != NULL ? strlen(mail_root) : 0;
	while (m > 1 && mail_root[m - 1] == '/')
		m--;
	if (n > 0 && !(n == 1 && home[0] == '/') &&
	    !(n == m && strncmp(home, mail_root, n) == 0))
		return xstrndup(home, n);
	md = xstrdup(maildir);
	while (strlen(md) > 1 && md[strlen(md) - 1] == '/')
		md[strlen(md) - 1] = '\0';
	slash = strrchr(md, '/');
	if (slash != NULL && slash != md)
		*slash = '\0';
	return md;
}

static void
add_dest(struct ctx *c, enum route_kind kind, const char *address,
    const char *maildir, const char *home, const struct quota_limit *quota,
    const char *transport)
{
	struct route_result *r = c->res;
	struct route_dest *d;

	for (size_t i = 0; i < r->ndests; i++) {
		d = &r->dests[i];
		if (d->kind != kind)
			continue;
		if (kind == ROUTE_MAILDIR && strcmp(d->maildir, maildir) == 0)
			return;
		if (kind != ROUTE_MAILDIR && strcmp(d->address, address) == 0)
			return;
	}
	r->dests = xrealloc(r->dests, (r->ndests + 1) * sizeof(*r->dests));
	d = &r->dests[r->ndests++];
	memset(d, 0, sizeof(*d));
	d->kind = kind;
	d->address = xstrdup(address);
	d->maildir = maildir ? xstrdup(maildir) : NULL;
	d->home = home ? xstrdup(home) : NULL;
	if (quota != NULL)
		d->quota = *quota;
	d->transport = xstrdup(transport ? transport : "");
}

static bool
dir_failed(struct ctx *c, int r, const char *what, const char *err)
{
	if (r == DIR_TEMPFAIL) {
		fail(c, ROUTE_TEMPFAIL, err);
		return true;
	}
	if (r == DIR_FAIL) {
		log_error("%s failed: %s", what, err);
		fail(c, ROUTE_CONFIG, what);
		return true;
	}
	return false;
}

static void expand(struct ctx *c, const char *source, const char *domain,
    const char *list, const char *self_lookup);

/* A backend host from the directory (the host column) or the
 * configuration: a host name or an address, nothing that could change
 * the shape of the transport or of the queue file's line. */
static bool
backend_host_valid(const char *h)
{
	size_t n = strlen(h);

	if (n == 0 || n > 253 || h[0] == '-' || h[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)h[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' ||
		    ch == '_' || ch == ':'))
			return false;
	}
	return true;
}

/* A user whose mailbox is elsewhere: the domain's lmtp: transport, or,
 * on a frontend, the user's backend. 1 = added, -1 = failed. */
static int
add_backend(struct ctx *c, const char *address, const char *host)
{
	const char *h;
	char *t;

	if (c->domain_lmtp != NULL) {
		add_dest(c, ROUTE_REMOTE, address, NULL, NULL, NULL,
		    c->domain_lmtp);
		return 1;
	}
	h = host != NULL && host[0] != '\0' ? host : c->rc->backend_default;
	if (h == NULL || h[0] == '\0') {
		log_error("<%s>: no mailbox backend: the user's host column "
		    "is empty and backend_default is not set; deferred with "
		    "451 4.3.0", address);
		fail(c, ROUTE_TEMPFAIL, "no mailbox backend");
		c->res->logged = true;
		return -1;
	}
	if (!backend_host_valid(h)) {
		log_error("<%s>: unusable backend host '%.80s' (a host name or "
		    "an address is needed); deferred", address, h);
		fail(c, ROUTE_CONFIG, "unusable backend host");
		return -1;
	}
	t = xasprintf("lmtp:[%s]:%u", h, c->rc->lmtp_port);
	add_dest(c, ROUTE_REMOTE, address, NULL, NULL, NULL, t);
	free(t);
	return 1;
}

/* maildir without its trailing '/': the marker's path (malloc'd) */
static char *
moved_path(const char *maildir)
{
	char *p = xstrdup(maildir);
	size_t n = strlen(p);

	while (n > 1 && p[n - 1] == '/')
		p[--n] = '\0';
	return p;
}

bool
route_moved_marker(const char *maildir)
{
	char *p = moved_path(maildir);
	struct stat st;
	bool r = lstat(p, &st) == 0 && S_ISREG(st.st_mode);

	free(p);
	return r;
}

int
route_moved_read(const char *maildir, char **host_r)
{
	char buf[300], *path, *nl;
	struct stat st;
	ssize_t n;
	int fd;

	*host_r = NULL;
	path = moved_path(maildir);
	/* the common case, a maildir, costs one lstat() */
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
		free(path);
		return -1;
	}
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	free(path);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -1;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	if ((nl = strchr(buf, '\n')) != NULL)
		*nl = '\0';
	if (strncmp(buf, "moving ", 7) == 0)
		return 0;
	if (strncmp(buf, "moved ", 6) != 0 || !backend_host_valid(buf + 6))
		return -1;
	*host_r = xstrdup(buf + 6);
	return 1;
}

/* A maildir moved to another backend by `petrel user move`: while the
 * copy is finished the mail waits (451 4.3.0, the sender retries), then
 * it goes on by LMTP to the new backend, so mail queued for this one
 * before the move (a frontend keeps the next hop it chose) still
 * reaches the mailbox. 1 = handled, 0 = not moved. */
static int
moved_user(struct ctx *c, const char *address, const char *path)
{
	char *host, *t;
	int r = route_moved_read(path, &host);

	if (r < 0)
		return 0;
	if (r == 0) {
		log_info("<%s>: the mailbox is being moved to another "
		    "backend; deferred with 451 4.3.0", address);
		fail(c, ROUTE_TEMPFAIL, "mailbox being moved");
		c->res->logged = true;
		return 1;
	}
	t = xasprintf("lmtp:[%s]:%u", host, c->rc->moved_lmtp_port != 0 ?
	    c->rc->moved_lmtp_port : 24);
	add_dest(c, ROUTE_REMOTE, address, NULL, NULL, NULL, t);
	free(t);
	free(host);
	return 1;
}

/* 1 = delivered to a user, 0 = no such user, -1 = failed. forward: the
 * user's row may forward (not when it is its own alias target). */
static int
try_user(struct ctx *c, const char *lookup, const char *address,
    bool forward)
{
	struct dir_user u;
	const char *err;
	char *path, *home;
	struct quota_limit quota;
	int r;

	r = dir_lookup_user(c->dir, lookup, &u, &err);
	if (dir_failed(c, r, "query_user", err))
		return -1;
	if (r == DIR_NOTFOUND)
		return 0;
	if (route_maildir_is_forward(u.maildir)) {
		const char *at = strrchr(lookup, '@');

		if (forward && at != NULL)
			expand(c, address, at + 1, u.maildir, NULL);
		else
			fail(c, ROUTE_LOOP, address);
		dir_user_clear(&u);
		return c->failed ? -1 : 1;
	}
	if (c->domain_lmtp != NULL || c->rc->lmtp_port != 0) {
		/* the mailbox, its quota and Sieve are the backend's */
		r = add_backend(c, address, u.host);
		dir_user_clear(&u);
		return r;
	}
	path = route_maildir_path(c->rc->mail_root, u.maildir);
	if (path == NULL) {
		log_error("user %s has an unusable maildir '%s': it must "
		    "name a directory strictly below mail_root %s, without "
		    "'..'", lookup, u.maildir, c->rc->mail_root);
		dir_user_clear(&u);
		fail(c, ROUTE_CONFIG, "unusable maildir");
		return -1;
	}
	if (moved_user(c, address, path)) {
		dir_user_clear(&u);
		free(path);
		return c->failed ? -1 : 1;
	}
	home = route_user_home(c->rc->mail_root, u.home, path);
	r = dir_lookup_quota(c->dir, lookup, &quota, &err);
	dir_user_clear(&u);
	if (dir_failed(c, r, "query_quota", err)) {
		free(path);
		free(home);
		return -1;
	}
	add_dest(c, ROUTE_MAILDIR, address, path, home, &quota, NULL);
	free(path);
	free(home);
	return 1;
}

static void resolve(struct ctx *c, const char *address);

/* Expand a goto list found for `source` (its domain for bare names).
 * self_lookup: the key to keep a copy in source's own mailbox under
 * ("a -> a, b"); NULL when the list is a user's forward, where "a" is
 * resolved again (and so found as a loop). */
static void
expand(struct ctx *c, const char *source, const char *domain,
    const char *list, const char *self_lookup)
{
	char *copy = xstrdup(list), *save = NULL, *t;

	for (t = strtok_r(copy, ",", &save); t != NULL && !c->failed;
	    t = strtok_r(NULL, ",", &save)) {
		char *target = str_trim(t), *full;

		if (*target == '\0')
			continue;
		if (++c->expansions > ALIAS_TARGETS_MAX) {
			fail(c, ROUTE_LOOP, "too many alias expansions");
			break;
		}
		full = strchr(target, '@') ? xstrdup(target) :
		    xasprintf("%s@%s", target, c->rc->local_domain != NULL &&
		    c->rc->local_domain[0] != '\0' ? c->rc->local_domain :
		    domain);
		str_lower(full);
		if (strcmp(full, source) == 0 && self_lookup != NULL) {
			/* "a -> a, b": keep a copy in a's own mailbox. */
			if (try_user(c, self_lookup, source, false) == 0)
				fail(c, ROUTE_UNKNOWN, source);
		} else {
			resolve(c, full);
		}
		free(full);
	}
	free(copy);
}

/* 1 = an alias for key was found and expanded, 0 = none, -1 = failed. */
static int
try_alias(struct ctx *c, const char *key, const char *address,
    const char *domain)
{
	char *list = NULL;
	const char *err;
	int r;

	r = dir_lookup_alias(c->dir, key, &list, &err);
	if (dir_failed(c, r, "query_alias", err))
		return -1;
	if (r == DIR_NOTFOUND)
		return 0;
	expand(c, address, domain, list, key);
	free(list);
	return 1;
}

static void
resolve(struct ctx *c, const char *address)
{
	char *local = NULL, *domain = NULL, *transport = NULL, *base = NULL;
	char *catchall = NULL;
	const char *err, *outer_lmtp = c->domain_lmtp;
	enum route_transport kind;
	size_t i;
	int r;

	if (c->failed)
		return;
	for (i = 0; i < c->depth; i++) {
		if (strcmp(c->chain[i], address) == 0) {
			fail(c, ROUTE_LOOP, address);
			return;
		}
	}
	if (c->depth >= ALIAS_DEPTH_MAX) {
		fail(c, ROUTE_LOOP, address);
		return;
	}
	if (addr_split(address, &local, &domain) < 0) {
		/* A malformed alias target in the directory. */
		log_warn("alias target <%s> is not a valid address", address);
		fail(c, ROUTE_UNKNOWN, address);
		return;
	}
	c->chain[c->depth++] = address;

	r = dir_lookup_domain(c->dir, domain, &transport, &err);
	if (dir_failed(c, r, "query_domain", err))
		goto out;
	if (r == DIR_NOTFOUND) {
		/* A Postfix-style virtual alias domain: the bare domain as an
		 * alias source marks it hosted (virtual(5)). */
		char *marker = NULL;

		r = dir_lookup_alias(c->dir, domain, &marker, &err);
		if (dir_failed(c, r, "query_alias", err))
			goto out;
		free(marker);
		if (r == DIR_OK) {
			transport = xstrdup("virtual:");
			r = DIR_OK;
		} else {
			r = DIR_NOTFOUND;
		}
	}
	if (r == DIR_NOTFOUND) {
		/* A foreign domain: only an authenticated client may send
		 * there directly; an alias of ours may always forward. */
		if (c->depth == 1 && !c->may_relay)
			fail(c, ROUTE_RELAY_DENIED, domain);
		else
			add_dest(c, ROUTE_REMOTE, address, NULL, NULL, NULL,
			    "");
		goto out;
	}
	switch ((kind = route_transport_kind(transport))) {
	case TRANSPORT_ERROR: {
		const char *text = strchr(transport, ':');

		fail(c, ROUTE_ERROR, text != NULL && text[1] != '\0' ?
		    text + 1 : "address rejected");
		goto out;
	}
	case TRANSPORT_DISCARD:
		add_dest(c, ROUTE_DISCARD, address, NULL, NULL, NULL,
		    transport);
		goto out;
	case TRANSPORT_UNSUPPORTED:
		log_error("domain %s has transport '%s', which petrel cannot "
		    "run (it delivers virtual:, local:, maildrop:, smtp:, "
		    "relay:, lmtp: over TCP, error: and discard:); mail for "
		    "it is deferred", domain, transport);
		fail(c, ROUTE_CONFIG, "unsupported transport");
		goto out;
	case TRANSPORT_MAILDROP:
		if (!__atomic_exchange_n(&maildrop_warned, true,
		    __ATOMIC_RELAXED))
			log_warn("domain %s has transport '%s': delivered to "
			    "the users' Maildirs as virtual: (maildrop "
			    "filters are not run)", domain, transport);
		break;
	default:
		break;
	}
	c->domain_lmtp = kind == TRANSPORT_LMTP ? transport : NULL;
	if (c->rc->delimiter[0] != '\0') {
		char *cut = strpbrk(local, c->rc->delimiter);

		if (cut != NULL && cut != local)
			base = xasprintf("%.*s@%s", (int)(cut - local), local,
			    domain);
	}
	catchall = xasprintf("@%s", domain);
	if (c->rc->catchall_first) {
		/* Postfix virtual(5): the alias lookups (address, address
		 * without +tag, @domain) before the mailboxes */
		if ((r = try_alias(c, address, address, domain)) != 0 ||
		    (base != NULL &&
		    (r = try_alias(c, base, base, domain)) != 0) ||
		    (r = try_alias(c, catchall, address, domain)) != 0 ||
		    (r = try_user(c, address, address, true)) != 0 ||
		    (base != NULL &&
		    (r = try_user(c, base, address, true)) != 0))
			goto out;
	} else {
		/* 1. exact alias, 2. user, 3. both without the +tag,
		 * 4. catch-all */
		if ((r = try_alias(c, address, address, domain)) != 0 ||
		    (r = try_user(c, address, address, true)) != 0 ||
		    (base != NULL &&
		    (r = try_alias(c, base, base, domain)) != 0) ||
		    (base != NULL &&
		    (r = try_user(c, base, address, true)) != 0) ||
		    (r = try_alias(c, catchall, address, domain)) != 0)
			goto out;
	}
	/* 5. relay domain (the next hop knows its users) */
	if (kind == TRANSPORT_RELAY || kind == TRANSPORT_LMTP) {
		add_dest(c, ROUTE_REMOTE, address, NULL, NULL, NULL, transport);
		goto out;
	}
	fail(c, ROUTE_UNKNOWN, address);
out:
	c->domain_lmtp = outer_lmtp;
	c->depth--;
	free(local);
	free(domain);
	free(transport);
	free(base);
	free(catchall);
}

void
route_resolve(struct dir *dir, const struct route_config *rc,
    const char *address, bool may_relay, struct route_result *res)
{
	struct ctx c;
	char *lower = xstrdup(address);

	memset(res, 0, sizeof(*res));
	memset(&c, 0, sizeof(c));
	c.dir = dir;
	c.rc = rc;
	c.may_relay = may_relay;
	c.res = res;
	str_lower(lower);
	resolve(&c, lower);
	free(lower);
	if (!c.failed && res->ndests == 0)
		fail(&c, ROUTE_UNKNOWN, address);
	if (c.failed) {
		char *text = res->text;
		enum route_status st = res->status;
		bool logged = res->logged;

		res->text = NULL;
		route_result_clear(res);
		res->status = st;
		res->text = text;
		res->logged = logged;
	}
}
