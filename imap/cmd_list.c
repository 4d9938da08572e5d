/*
 * cmd_list.c: LIST, LSUB, SUBSCRIBE, UNSUBSCRIBE (RFC 3501 6.3), with
 * LIST-EXTENDED (RFC 5258: selection options SUBSCRIBED, REMOTE,
 * RECURSIVEMATCH, return options SUBSCRIBED and CHILDREN, several
 * patterns, \NonExistent, \Subscribed, CHILDINFO), LIST-STATUS (RFC
 * 5819), SPECIAL-USE (RFC 6154 selection and return option) and the
 * CHILDREN attributes (RFC 3348). They run on job threads. The client
 * is trusted for nothing: options are checked against the grammar, the
 * patterns are bounded in number and length (lib/base/limits.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imap/imap-private.h"
#include "imap/imap-cmd.h"
#include "lib/base/alloc.h"
#include "lib/base/fdio.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/quota.h"

/* ---- SUBSCRIBE, UNSUBSCRIBE ---- */

static void
subscription(struct imap_session *s, struct imap_cmd *c, bool add)
{
	const char *name;
	char *folder;

	if (c->nargs != 1 || (name = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "A mailbox name is needed");
		return;
	}
	if ((folder = imap_folder_of(s, name, false)) == NULL)
		return;
	if (imap_set_subscription(s, folder, add) < 0)
		imap_no(s, "[SERVERBUG] Cannot save subscriptions");
	else if (add)
		imap_ok(s, "Subscribe completed.");
	else
		imap_ok(s, "Unsubscribe completed.");
	free(folder);
}

void
imap_cmd_subscribe(struct imap_session *s, struct imap_cmd *c)
{
	subscription(s, c, true);
}

void
imap_cmd_unsubscribe(struct imap_session *s, struct imap_cmd *c)
{
	subscription(s, c, false);
}

/* ---- LIST, LSUB ---- */

/* INBOX matches any case of itself: canonicalise the pattern. */
static char *
canonical_pattern(const char *ref, const char *pat)
{
	char *p;

	if (pat[0] == '.' && ref[0] == '\0')
		pat++;
	p = xasprintf("%s%s", ref, pat);
	if (strncasecmp(p, "INBOX", 5) == 0 && (p[5] == '\0' || p[5] == '.'))
		memcpy(p, "INBOX", 5);
	return p;
}

/* Whether name (modified UTF-7) matches a LIST/LSUB pattern: IMAP4rev2
 * patterns are UTF-8 and match the names' UTF-8 form (a prefix of a
 * name's modified UTF-7 is not the form of its prefix). */
static bool
name_match(const struct imap_session *s, const char *pattern,
    const char *name)
{
	str_t u = STR_INIT;
	bool m;

	if (!s->rev2 || imap_mutf7_to_utf8(name, strlen(name), &u) < 0 ||
	    u.len == 0) {
		str_free(&u);
		return imap_list_match(pattern, name, '.');
	}
	m = imap_list_match(pattern, str_c(&u), '.');
	str_free(&u);
	return m;
}

static void
list_line(struct imap_session *s, const char *cmd, const char *name,
    const char *attrs)
{
	str_t line = STR_INIT;

	str_printf(&line, "%s (%s) \".\" ", cmd, attrs);
	imap_append_mailbox(s, &line, name);
	imap_untagged(s, "%s", str_c(&line));
	str_free(&line);
}

/* ---- LSUB (RFC 3501 6.3.9) ---- */

static void
do_lsub(struct imap_session *s, struct imap_cmd *c)
{
	const char *ref, *pat;
	char *pattern;
	struct imap_names all = { 0 }, subs = { 0 }, shown = { 0 };

	if (c->nargs != 2 || (ref = imap_arg_astring(&c->args[0])) == NULL ||
	    (pat = imap_arg_astring(&c->args[1])) == NULL) {
		imap_bad(s, "LSUB needs a reference and a pattern");
		return;
	}
	pattern = canonical_pattern(ref, pat);
	if (imap_list_folders(s->maildir, &all) < 0) {
		imap_no(s, "[SERVERBUG] Cannot list mailboxes");
		free(pattern);
		return;
	}
	if (imap_read_subscriptions(s, &subs) < 0) {
		imap_no(s, "[SERVERBUG] Cannot read subscriptions");
		imap_names_free(&all);
		free(pattern);
		return;
	}
	/* from here on, names as the client sees them */
	imap_names_to_client(s, &all);
	imap_names_to_client(s, &subs);
	for (size_t i = 0; i < subs.n; i++) {
		const char *name = subs.v[i];
		bool exists = strcmp(name, "INBOX") == 0 ||
		    imap_names_has(&all, name);

		if (!name_match(s, pattern, name))
			continue;
		list_line(s, "LSUB", name,
		    !exists ? "\\NonExistent \\Noselect" :
		    imap_has_children(&all, name) ? "\\HasChildren" :
		    "\\HasNoChildren");
		imap_names_add(&shown, name);
		if (shown.n > 1)
			qsort(shown.v, shown.n, sizeof(*shown.v),
			    imap_names_cmp);
	}
	/* parents of subscribed names that match where the name itself is
	 * not subscribed, as '%' must show them (RFC 3501 6.3.9) */
	for (size_t i = 0; i < subs.n; i++) {
		char *p = xstrdup(subs.v[i]);
		char *dot;

		while ((dot = strrchr(p, '.')) != NULL) {
			*dot = '\0';
			if (imap_names_has(&subs, p) ||
			    imap_names_has(&shown, p) ||
			    !name_match(s, pattern, p))
				continue;
			list_line(s, "LSUB", p, "\\Noselect");
			imap_names_add(&shown, p);
			if (shown.n > 1)
				qsort(shown.v, shown.n, sizeof(*shown.v),
				    imap_names_cmp);
		}
		free(p);
	}
	imap_ok(s, "Lsub completed.");
	imap_names_free(&all);
	imap_names_free(&subs);
	imap_names_free(&shown);
	free(pattern);
}

/* ---- LIST (RFC 3501 6.3.8, RFC 5258 LIST-EXTENDED, RFC 5819
 * LIST-STATUS, RFC 6154 SPECIAL-USE) ---- */

/* selection options (RFC 5258 3.1, RFC 6154 5.1) */
enum {
	SEL_SUBSCRIBED = 0x1, SEL_SPECIAL = 0x2, SEL_REMOTE = 0x4,
	SEL_RECURSIVE = 0x8,
};
#define SEL_BASE (SEL_SUBSCRIBED | SEL_SPECIAL)
/* return options (RFC 5258 3.2, RFC 5819, RFC 6154 5.2) */
enum {
	RET_SUBSCRIBED = 0x1, RET_CHILDREN = 0x2, RET_SPECIAL = 0x4,
	RET_STATUS = 0x8,
};

struct list_req {
	unsigned sel, ret;
	char *pat[IMAP_LIST_PATTERNS_MAX];	/* reference applied */
	size_t npat;
	bool root;		/* LIST "" "": the delimiter alone */
	const struct imap_arg *status;	/* RETURN (STATUS (items)) */
	size_t nstatus;
};

static void
list_req_free(struct list_req *r)
{
	for (size_t i = 0; i < r->npat; i++)
		free(r->pat[i]);
	r->npat = 0;
}

static int
list_add_pattern(struct imap_session *s, struct list_req *r,
    const char *ref, const struct imap_arg *a)
{
	const char *pat = imap_arg_astring(a);

	if (pat == NULL) {
		imap_bad(s, "Invalid mailbox pattern");
		return -1;
	}
	if (r->npat == IMAP_LIST_PATTERNS_MAX ||
	    strlen(ref) + strlen(pat) > IMAP_LIST_PATTERN_LEN_MAX) {
		imap_bad(s, "Too many or too long mailbox patterns");
		return -1;
	}
	r->pat[r->npat++] = canonical_pattern(ref, pat);
	return 0;
}

static int
list_parse_select(struct imap_session *s, struct list_req *r,
    const struct imap_arg *opts)
{
	for (size_t i = 0; i < opts->nlist; i++) {
		const struct imap_arg *o = &opts->list[i];

		if (o->type != IMAP_ARG_ATOM) {
			imap_bad(s, "Invalid selection option");
			return -1;
		}
		if (strcasecmp(o->str, "SUBSCRIBED") == 0)
			r->sel |= SEL_SUBSCRIBED;
		else if (strcasecmp(o->str, "SPECIAL-USE") == 0)
			r->sel |= SEL_SPECIAL;
		else if (strcasecmp(o->str, "REMOTE") == 0)
			r->sel |= SEL_REMOTE;	/* there are no remote
						   mailboxes */
		else if (strcasecmp(o->str, "RECURSIVEMATCH") == 0)
			r->sel |= SEL_RECURSIVE;
		else {
			/* RFC 5258 3: unknown options are refused */
			imap_bad(s, "Unknown selection option %s", o->str);
			return -1;
		}
	}
	/* RFC 5258 3.1: RECURSIVEMATCH needs a base option */
	if ((r->sel & SEL_RECURSIVE) && !(r->sel & SEL_BASE)) {
		imap_bad(s, "RECURSIVEMATCH needs SUBSCRIBED or SPECIAL-USE");
		return -1;
	}
	/* the base options imply their return options (RFC 5258 3.1) */
	if (r->sel & SEL_SUBSCRIBED)
		r->ret |= RET_SUBSCRIBED;
	if (r->sel & SEL_SPECIAL)
		r->ret |= RET_SPECIAL;
	return 0;
}

static int
list_parse_return(struct imap_session *s, struct list_req *r,
    const struct imap_arg *opts)
{
	for (size_t i = 0; i < opts->nlist; i++) {
		const struct imap_arg *o = &opts->list[i];

		if (o->type != IMAP_ARG_ATOM) {
			imap_bad(s, "Invalid return option");
			return -1;
		}
		if (strcasecmp(o->str, "SUBSCRIBED") == 0) {
			r->ret |= RET_SUBSCRIBED;
		} else if (strcasecmp(o->str, "CHILDREN") == 0) {
			r->ret |= RET_CHILDREN;
		} else if (strcasecmp(o->str, "SPECIAL-USE") == 0) {
			r->ret |= RET_SPECIAL;
		} else if (strcasecmp(o->str, "STATUS") == 0 &&
		    !(r->ret & RET_STATUS) && i + 1 < opts->nlist &&
		    opts->list[i + 1].type == IMAP_ARG_LIST) {
			/* RFC 5819 2 */
			i++;
			if (!imap_status_items_valid(opts->list[i].list,
			    opts->list[i].nlist)) {
				imap_bad(s, "Unknown STATUS item");
				return -1;
			}
			r->ret |= RET_STATUS;
			r->status = opts->list[i].list;
			r->nstatus = opts->list[i].nlist;
		} else {
			imap_bad(s, "Unknown return option %s", o->str);
			return -1;
		}
	}
	return 0;
}

/* LIST [SP "(" select-opts ")"] SP reference SP (pattern / "(" pattern
 * *(SP pattern) ")") [SP "RETURN" SP "(" return-opts ")"] */
static int
list_parse(struct imap_session *s, struct imap_cmd *c, struct list_req *r)
{
	const struct imap_arg *a = c->args;
	size_t n = c->nargs;
	const char *ref, *pat;

	memset(r, 0, sizeof(*r));
	if (n >= 1 && a[0].type == IMAP_ARG_LIST) {
		if (list_parse_select(s, r, &a[0]) < 0)
			return -1;
		a++;
		n--;
	}
	if (n == 4 && a[2].type == IMAP_ARG_ATOM &&
	    strcasecmp(a[2].str, "RETURN") == 0 &&
	    a[3].type == IMAP_ARG_LIST) {
		if (list_parse_return(s, r, &a[3]) < 0)
			return -1;
		n = 2;
	}
	if (n != 2 || (ref = imap_arg_astring(&a[0])) == NULL) {
		imap_bad(s, "LIST needs a reference and a pattern");
		return -1;
	}
	if (a[1].type == IMAP_ARG_LIST) {
		if (a[1].nlist == 0) {
			imap_bad(s, "LIST needs a mailbox pattern");
			return -1;
		}
		for (size_t i = 0; i < a[1].nlist; i++)
			if (list_add_pattern(s, r, ref, &a[1].list[i]) < 0)
				return -1;
		return 0;
	}
	if ((pat = imap_arg_astring(&a[1])) != NULL && pat[0] == '\0') {
		r->root = true;	/* RFC 3501 6.3.8 */
		return 0;
	}
	return list_add_pattern(s, r, ref, &a[1]);
}

/* What LIST knows of one name it may show. */
struct list_ent {
	const char *name;
	bool exists;		/* INBOX or a folder */
	bool children;		/* folders below it */
	bool subscribed;
	char *special;		/* its special-use attribute(s), or NULL */
	bool selected;		/* meets the selection options */
	bool matched;		/* some pattern matches it */
};

static bool
list_selected(const struct list_req *r, const struct list_ent *e)
{
	if (!(r->sel & SEL_BASE))
		return e->exists || e->children;
	if ((r->sel & SEL_SUBSCRIBED) && !e->subscribed)
		return false;
	if ((r->sel & SEL_SPECIAL) && (!e->exists || e->special == NULL))
		return false;
	return true;
}

/* RECURSIVEMATCH (RFC 5258 3.5): a descendant meets the selection
 * options but is not shown itself (no pattern matches it), so the name
 * gets CHILDINFO. Descendants follow their parent in the sorted v. */
static bool
list_childinfo(const struct list_ent *v, size_t n, size_t i)
{
	size_t len = strlen(v[i].name);

	for (size_t j = i + 1; j < n; j++) {
		if (strncmp(v[j].name, v[i].name, len) != 0)
			break;
		if (v[j].name[len] != '.')
			continue;	/* "Foo2" between "Foo" and "Foo.x" */
		if (v[j].selected && !v[j].matched)
			return true;
	}
	return false;
}

static void
list_status(struct imap_session *s, const struct list_req *r,
    const char *name)
{
	const char *folder = imap_folder_listed(s, name), *err;
	char *path;

	if (folder == NULL ||
	    (path = maildir_folder_path(s->maildir, folder)) == NULL)
		return;
	/* RFC 5819 2: a mailbox whose status cannot be had gets no
	 * STATUS response, the LIST goes on */
	if (imap_status_append(s, name, path, r->status, r->nstatus,
	    &err) < 0)
		log_warn("%016llx: list-status %s: %s", SID(&s->base), path,
		    err);
	free(path);
}

static void
list_show(struct imap_session *s, const struct list_req *r,
    const struct list_ent *v, size_t n, size_t i)
{
	const struct list_ent *e = &v[i];
	bool childinfo = (r->sel & SEL_RECURSIVE) && list_childinfo(v, n, i);
	str_t line = STR_INIT;

	if (!(e->selected && e->matched) && !(e->matched && childinfo))
		return;
	str_append(&line, "LIST (");
	if (!e->exists && !e->children)
		str_append(&line, "\\NonExistent \\Noselect");
	else if (!e->exists)
		str_append(&line, "\\Noselect \\HasChildren");
	else
		str_append(&line, e->children ? "\\HasChildren" :
		    "\\HasNoChildren");
	if (e->special != NULL) {
		str_append_c(&line, ' ');
		str_append(&line, e->special);
	}
	if ((r->ret & RET_SUBSCRIBED) && e->subscribed)
		str_append(&line, " \\Subscribed");
	str_append(&line, ") \".\" ");
	imap_append_mailbox(s, &line, e->name);
	if (childinfo) {
		str_append(&line, " (\"CHILDINFO\" (");
		if (r->sel & SEL_SUBSCRIBED)
			str_append(&line, "\"SUBSCRIBED\"");
		if (r->sel & SEL_SPECIAL)
			str_append(&line, (r->sel & SEL_SUBSCRIBED) ?
			    " \"SPECIAL-USE\"" : "\"SPECIAL-USE\"");
		str_append(&line, "))");
	}
	imap_untagged(s, "%s", str_c(&line));
	str_free(&line);
	/* RFC 5819: after the LIST response of each selectable mailbox the
	 * selection chose (not one shown only for CHILDINFO) */
	if ((r->ret & RET_STATUS) && e->exists && e->selected)
		list_status(s, r, e->name);
}

/* name and every level above it */
static void
list_add_levels(struct imap_names *cand, const char *name)
{
	char *p = xstrdup(name), *dot;

	imap_names_add(cand, p);
	while ((dot = strrchr(p, '.')) != NULL) {
		*dot = '\0';
		imap_names_add(cand, p);
	}
	free(p);
}

/* The LIST responses of request r; NULL, or what failed. */
static const char *
list_run(struct imap_session *s, const struct list_req *rp)
{
	const struct list_req r = *rp;
	struct imap_names all = { 0 }, subs = { 0 }, cand = { 0 };
	struct list_ent *v = NULL;
	size_t n = 0, inbox = SIZE_MAX;

	if (imap_list_folders(s->maildir, &all) < 0)
		return "Cannot list mailboxes";
	if ((r.ret & RET_SUBSCRIBED) && imap_read_subscriptions(s, &subs) < 0) {
		imap_names_free(&all);
		return "Cannot read subscriptions";
	}
	/* from here on, names as the client sees them */
	imap_names_to_client(s, &all);
	imap_names_to_client(s, &subs);

	/* the names: INBOX, the folders, subscribed names when the
	 * selection is by subscription (RFC 5258 3.1: those that do not
	 * exist too), and every level above them (RFC 3501 6.3.8: '%'
	 * shows a level that exists only as the parent of deeper names);
	 * sorted, each once */
	imap_names_add(&cand, "INBOX");
	for (size_t i = 0; i < all.n; i++)
		list_add_levels(&cand, all.v[i]);
	if (r.sel & SEL_SUBSCRIBED)
		for (size_t i = 0; i < subs.n; i++)
			list_add_levels(&cand, subs.v[i]);
	if (cand.n > 1)
		qsort(cand.v, cand.n, sizeof(*cand.v), imap_names_cmp);
	v = xcalloc(cand.n, sizeof(*v));
	for (size_t i = 0; i < cand.n; i++) {
		struct list_ent *e;
		const char *folder;

		if (n > 0 && strcmp(cand.v[i], v[n - 1].name) == 0)
			continue;
		e = &v[n];
		e->name = cand.v[i];
		e->exists = strcmp(e->name, "INBOX") == 0 ||
		    imap_names_has(&all, e->name);
		e->children = imap_has_children(&all, e->name);
		e->subscribed = imap_names_has(&subs, e->name);
		for (size_t k = 0; k < r.npat && !e->matched; k++)
			e->matched = name_match(s, r.pat[k], e->name);
		/* a file to read per folder: only where it is shown or
		 * the selection depends on it */
		folder = e->exists && (e->matched || (r.sel & SEL_SPECIAL)) ?
		    imap_folder_listed(s, e->name) : NULL;
		e->special = folder != NULL ? imap_folder_special(s, folder) :
		    NULL;
		e->selected = list_selected(&r, e);
		if (strcmp(e->name, "INBOX") == 0)
			inbox = n;
		n++;
	}
	/* INBOX first, then the others in order */
	if (inbox != SIZE_MAX)
		list_show(s, &r, v, n, inbox);
	for (size_t i = 0; i < n; i++)
		if (i != inbox)
			list_show(s, &r, v, n, i);
	for (size_t i = 0; i < n; i++)
		free(v[i].special);
	free(v);
	imap_names_free(&cand);
	imap_names_free(&all);
	imap_names_free(&subs);
	return NULL;
}

static void
do_list(struct imap_session *s, struct imap_cmd *c)
{
	struct list_req r;
	const char *err;

	if (list_parse(s, c, &r) < 0) {
		list_req_free(&r);
		return;
	}
	if (r.root) {
		/* the hierarchy delimiter and root (RFC 3501 6.3.8) */
		imap_untagged(s, "LIST (\\Noselect) \".\" \"\"");
		imap_ok(s, "List completed.");
		return;
	}
	if ((err = list_run(s, &r)) != NULL)
		imap_no(s, "[SERVERBUG] %s", err);
	else
		imap_ok(s, "List completed.");
	list_req_free(&r);
}

void
imap_list_one(struct imap_session *s, const char *name)
{
	struct list_req r;
	const char *err;

	str_t u = STR_INIT;

	memset(&r, 0, sizeof(r));
	/* a pattern in the session's form */
	if (s->rev2 && imap_mutf7_to_utf8(name, strlen(name), &u) == 0 &&
	    u.len > 0)
		name = str_c(&u);
	r.pat[r.npat++] = canonical_pattern("", name);
	str_free(&u);
	if ((err = list_run(s, &r)) != NULL)
		log_warn("%016llx: LIST of %s: %s", SID(&s->base), name, err);
	list_req_free(&r);
}

void
imap_cmd_list(struct imap_session *s, struct imap_cmd *c)
{
	do_list(s, c);
}

void
imap_cmd_lsub(struct imap_session *s, struct imap_cmd *c)
{
	do_lsub(s, c);
}
