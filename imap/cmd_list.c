/*
 * cmd_list.c: LIST, LSUB, SUBSCRIBE, UNSUBSCRIBE (RFC 3501 6.3, RFC 5258
 * selection options SUBSCRIBED and SPECIAL-USE, RFC 6154 SPECIAL-USE,
 * RFC 3348 CHILDREN). They run on job threads.
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

static void
list_line(struct imap_session *s, const char *cmd, const char *name,
    const char *attrs)
{
	str_t line = STR_INIT;

	str_printf(&line, "%s (%s) \".\" ", cmd, attrs);
	imap_append_astring(&line, name, strlen(name));
	imap_untagged(s, "%s", str_c(&line));
	str_free(&line);
}

enum { SEL_SUBSCRIBED = 1, SEL_SPECIAL = 2 };

static void
do_list(struct imap_session *s, struct imap_cmd *c, bool lsub)
{
	const struct imap_arg *a = c->args;
	size_t n = c->nargs;
	const char *ref, *pat;
	char *pattern;
	struct imap_names all = { 0 }, subs = { 0 }, shown = { 0 };
	unsigned sel = 0;

	if (!lsub && n >= 1 && a[0].type == IMAP_ARG_LIST) {
		/* RFC 5258 selection options, as far as we have them */
		for (size_t i = 0; i < a[0].nlist; i++) {
			const char *o = imap_arg_astring(&a[0].list[i]);

			if (o != NULL && strcasecmp(o, "SUBSCRIBED") == 0)
				sel |= SEL_SUBSCRIBED;
			else if (o != NULL && strcasecmp(o, "SPECIAL-USE") == 0)
				sel |= SEL_SPECIAL;
		}
		a++;
		n--;
	}
	if (!lsub && n == 4 && a[2].type == IMAP_ARG_ATOM &&
	    strcasecmp(a[2].str, "RETURN") == 0)
		n = 2;		/* RETURN options: the attributes are there */
	if (n != 2 || (ref = imap_arg_astring(&a[0])) == NULL ||
	    (pat = imap_arg_astring(&a[1])) == NULL) {
		imap_bad(s, "%s needs a reference and a pattern",
		    lsub ? "LSUB" : "LIST");
		return;
	}
	if (pat[0] == '\0' && !lsub) {
		/* the hierarchy delimiter and root (RFC 3501 6.3.8) */
		imap_untagged(s, "LIST (\\Noselect) \".\" \"\"");
		imap_ok(s, "List completed.");
		return;
	}
	pattern = canonical_pattern(ref, pat);
	if (imap_list_folders(s->maildir, &all) < 0) {
		imap_no(s, "[SERVERBUG] Cannot list mailboxes");
		free(pattern);
		return;
	}
	if ((lsub || (sel & SEL_SUBSCRIBED)) &&
	    imap_read_subscriptions(s, &subs) < 0) {
		imap_no(s, "[SERVERBUG] Cannot read subscriptions");
		imap_names_free(&all);
		free(pattern);
		return;
	}
	/* from here on, names as the client sees them */
	imap_names_to_client(s, &all);
	imap_names_to_client(s, &subs);

	/* INBOX first, then the folders, then parents that exist only as
	 * a level of deeper names (\Noselect, as '%' must show them). */
	{
		struct imap_names cand = { 0 };

		imap_names_add(&cand, "INBOX");
		for (size_t i = 0; i < all.n; i++)
			imap_names_add(&cand, all.v[i]);
		if (lsub) {
			for (size_t i = 0; i < subs.n; i++)
				if (!imap_names_has(&all, subs.v[i]) &&
				    strcmp(subs.v[i], "INBOX") != 0)
					imap_names_add(&cand, subs.v[i]);
		}
		for (size_t i = 0; i < cand.n; i++) {
			const char *name = cand.v[i];
			bool exists = strcmp(name, "INBOX") == 0 ||
			    imap_names_has(&all, name);
			bool subscribed = subs.n > 0 &&
			    imap_names_has(&subs, name);
			const char *folder = imap_folder_listed(s, name);
			const char *sp = folder != NULL ?
			    imap_special_attr(folder) : NULL;
			str_t attrs = STR_INIT;

			if (!imap_list_match(pattern, name, '.'))
				continue;
			if ((lsub || (sel & SEL_SUBSCRIBED)) && !subscribed)
				continue;
			if ((sel & SEL_SPECIAL) && sp == NULL)
				continue;
			if (!exists)
				str_append(&attrs, "\\NonExistent \\Noselect");
			else
				str_append(&attrs,
				    imap_has_children(&all, name) ?
				    "\\HasChildren" : "\\HasNoChildren");
			if (sp != NULL && !lsub) {
				str_append_c(&attrs, ' ');
				str_append(&attrs, sp);
			}
			if (sel & SEL_SUBSCRIBED)
				str_append(&attrs, " \\Subscribed");
			list_line(s, lsub ? "LSUB" : "LIST", name,
			    str_c(&attrs));
			imap_names_add(&shown, name);
			str_free(&attrs);
		}
		/* parents of deeper names that match where the name
		 * itself does not exist (LSUB: is not subscribed), as '%'
		 * must show them (RFC 3501 6.3.8, 6.3.9) */
		{
			const struct imap_names *src = lsub ? &subs : &all;

			for (size_t i = 0; i < src->n; i++) {
				char *p = xstrdup(src->v[i]);
				char *dot;

				while ((dot = strrchr(p, '.')) != NULL) {
					*dot = '\0';
					/* INBOX exists: it was shown */
					if (!lsub && strcmp(p, "INBOX") == 0)
						continue;
					if (imap_names_has(src, p) ||
					    !imap_list_match(pattern, p, '.'))
						continue;
					if (shown.n > 1)
						qsort(shown.v, shown.n,
						    sizeof(*shown.v),
						    imap_names_cmp);
					if (imap_names_has(&shown, p))
						continue;
					list_line(s, lsub ? "LSUB" : "LIST", p,
					    lsub ? "\\Noselect" :
					    "\\Noselect \\HasChildren");
					imap_names_add(&shown, p);
				}
				free(p);
			}
		}
		imap_names_free(&cand);
	}
	imap_ok(s, "%s completed.", lsub ? "Lsub" : "List");
	imap_names_free(&all);
	imap_names_free(&subs);
	imap_names_free(&shown);
	free(pattern);
}

void
imap_cmd_list(struct imap_session *s, struct imap_cmd *c)
{
	do_list(s, c, false);
}

void
imap_cmd_lsub(struct imap_session *s, struct imap_cmd *c)
{
	do_list(s, c, true);
}
