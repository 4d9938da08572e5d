/*
 * cmd_notify.c: NOTIFY (RFC 5465): the command, and the reports it asks
 * for, made without polling: notify.c's inotify watches tell the worker
 * when a folder's cur/ or new/ changes and when the maildir's folders or
 * subscription files do; this file keeps, per session, which folders
 * are watched for which events and what was last told of each.
 *
 * Threads: the NOTIFY command and the reports run as jobs (the "job
 * side": they read folders and write responses); the watches are added
 * and released on the loop thread (imap_notify_after, after every job),
 * and an inotify event reaches a session on the loop thread too
 * (imap_notify_fired): it marks the folder dirty at once when no job
 * runs, else it is kept in a pending list the loop applies once the job
 * is done. A debounced timer (session.c) then starts a report job
 * (imap_notify_run) when no command is in progress, or during IDLE.
 *
 * What is reported:
 *  - a folder other than the selected one, for MessageNew,
 *    MessageExpunge, FlagChange: "* STATUS name (MESSAGES n UIDNEXT u
 *    UIDVALIDITY v)" with UNSEEN when FlagChange is asked for, sent
 *    only when it differs from what was last sent (or computed at
 *    NOTIFY SET), so a burst of changes is one line and nothing
 *    queues up beyond one line per folder;
 *  - the selected mailbox, for SELECTED or SELECTED-DELAYED: EXISTS,
 *    RECENT, FETCH FLAGS as after a command, EXPUNGE too for SELECTED
 *    (SELECTED-DELAYED leaves them to the next command that may have
 *    them), and FETCH of MessageNew's attributes for new messages;
 *  - MailboxName: "* LIST () "." name" for a folder made, "(\NonExistent)"
 *    for one gone, and ("OLDNAME" (old)) for one renamed (known by its
 *    directory keeping its inode);
 *  - SubscriptionChange: LIST with or without \Subscribed.
 * Since nothing queues (the reports are differences against state),
 * NOTIFICATIONOVERFLOW never happens; while the client does not read,
 * no report is made. AnnotationChange, MailboxMetadataChange and
 * ServerMetadataChange are answered NO [BADEVENT].
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "imap/imap-private.h"
#include "imap/imap-cmd.h"
#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/maildir/maildir.h"

#define EV_NEW		0x1
#define EV_EXPUNGE	0x2
#define EV_FLAGS	0x4
#define EV_NAME		0x8
#define EV_SUBS		0x10
#define EV_MESSAGE	(EV_NEW | EV_EXPUNGE | EV_FLAGS)

#define BADEVENT "[BADEVENT (MessageNew MessageExpunge FlagChange " \
    "MailboxName SubscriptionChange)]"

enum nf_filter { NF_INBOXES, NF_PERSONAL, NF_SUBSCRIBED, NF_SUBTREE,
    NF_MAILBOXES };

struct nf_group {
	enum nf_filter f;
	struct imap_names folders;	/* SUBTREE, MAILBOXES */
	unsigned events;
};

/* A folder watched for message events. */
struct nf_folder {
	char *folder;
	char *path;
	struct imap_watch *w;	/* NULL until the loop adds it */
	unsigned events;
	char *last;		/* the STATUS line last sent or computed */
	bool dirty;
};

/* A folder the client knows of (MailboxName). */
struct nf_known {
	char *folder;
	ino_t ino;
};

struct imap_notify {
	bool active;
	/* SELECTED / SELECTED-DELAYED */
	bool sel, sel_delayed;
	unsigned sel_events;
	bool have_fetch;
	struct fetch_att fetch;
	/* the other filters */
	struct nf_group *groups;
	size_t ngroups;
	size_t nnames;		/* in SUBTREE and MAILBOXES, while parsing */
	unsigned all_events;	/* of every group */
	struct nf_folder *f;
	size_t nf;
	struct nf_known *known;
	size_t nknown;
	struct imap_names subs;
	/* watches to release (loop) */
	struct imap_watch **release;
	size_t nrelease, caprelease;
	bool root_wanted;
	struct imap_watch *root;
	bool root_dirty, sel_dirty;
	/* events that came while a job ran (loop only) */
	struct imap_watch **pend;
	size_t npend, cappend;
	bool pend_all, pend_sel;
};

/* ---- state ---- */

static void
release_later(struct imap_notify *n, struct imap_watch *w)
{
	if (w == NULL)
		return;
	if (n->nrelease == n->caprelease) {
		n->caprelease = n->caprelease ? 2 * n->caprelease : 16;
		n->release = xrealloc(n->release, n->caprelease *
		    sizeof(*n->release));
	}
	n->release[n->nrelease++] = w;
}

static void
folder_free(struct nf_folder *f)
{
	free(f->folder);
	free(f->path);
	free(f->last);
}

/* Forget the subscription: every watch goes to the release list. Job
 * side (or the loop with no job running). */
static void
notify_clear(struct imap_notify *n)
{
	for (size_t i = 0; i < n->ngroups; i++)
		imap_names_free(&n->groups[i].folders);
	free(n->groups);
	n->groups = NULL;
	n->ngroups = 0;
	for (size_t i = 0; i < n->nf; i++) {
		release_later(n, n->f[i].w);
		folder_free(&n->f[i]);
	}
	free(n->f);
	n->f = NULL;
	n->nf = 0;
	for (size_t i = 0; i < n->nknown; i++)
		free(n->known[i].folder);
	free(n->known);
	n->known = NULL;
	n->nknown = 0;
	imap_names_free(&n->subs);
	if (n->have_fetch)
		imap_fetch_free(&n->fetch);
	n->have_fetch = false;
	n->sel = n->sel_delayed = false;
	n->sel_events = n->all_events = 0;
	n->root_wanted = false;
	n->root_dirty = n->sel_dirty = false;
	n->active = false;
}

/* Whether a folder is under a group's filter. */
static bool
group_has(const struct nf_group *g, const struct imap_notify *n,
    const char *folder)
{
	switch (g->f) {
	case NF_INBOXES:
		return strcmp(folder, "INBOX") == 0;
	case NF_PERSONAL:
		return true;
	case NF_SUBSCRIBED:
		return imap_names_has(&n->subs, folder);
	case NF_MAILBOXES:
		return imap_names_has(&g->folders, folder);
	case NF_SUBTREE:
		for (size_t i = 0; i < g->folders.n; i++) {
			const char *t = g->folders.v[i];
			size_t len = strlen(t);

			if (strcmp(folder, t) == 0 ||
			    (strncmp(folder, t, len) == 0 &&
			    folder[len] == '.'))
				return true;
		}
		return false;
	}
	return false;
}

/* The events the groups ask for a folder (the first group that has
 * the folder decides, RFC 5465 3.1's order). */
static unsigned
folder_events(const struct imap_notify *n, const char *folder)
{
	for (size_t i = 0; i < n->ngroups; i++)
		if (group_has(&n->groups[i], n, folder))
			return n->groups[i].events;
	return 0;
}

static bool
is_selected(const struct imap_session *s, const char *path)
{
	return s->mb != NULL && strcmp(s->mb->path, path) == 0;
}

/* The STATUS line of a folder for its events (malloc'd), or NULL. */
static char *
status_line(struct imap_session *s, const char *folder, const char *path,
    unsigned events)
{
	uint32_t uidvalidity, uidnext, messages, unseen, recent;
	const char *err;
	char *name;
	str_t line = STR_INIT;

	if (mbox_status(path, &uidvalidity, &uidnext, &messages, &unseen,
	    &recent, &err) < 0) {
		log_warn("%016llx: notify: %s", SID(&s->base), err);
		return NULL;
	}
	name = imap_mailbox_name(s, folder);
	str_append(&line, "STATUS ");
	imap_append_mailbox(s, &line, name);
	str_printf(&line, " (MESSAGES %u UIDNEXT %u UIDVALIDITY %u",
	    messages, uidnext, uidvalidity);
	if (events & EV_FLAGS)
		str_printf(&line, " UNSEEN %u", unseen);
	str_append_c(&line, ')');
	free(name);
	return str_steal(&line);
}

/* Every folder of the user, INBOX first. */
static void
all_folders(struct imap_session *s, struct imap_names *out)
{
	struct imap_names l = { 0 };

	imap_names_add(out, "INBOX");
	if (imap_list_folders(s->maildir, &l) == 0)
		for (size_t i = 0; i < l.n; i++)
			imap_names_add(out, l.v[i]);
	imap_names_free(&l);
	qsort(out->v, out->n, sizeof(*out->v), imap_names_cmp);
}

static ino_t
folder_ino(const struct imap_session *s, const char *folder)
{
	char *path = maildir_folder_path(s->maildir, folder);
	struct stat st;
	ino_t ino = 0;

	if (path != NULL && stat(path, &st) == 0)
		ino = st.st_ino;
	free(path);
	return ino;
}

/* The folders watched for message events, from the current folder
 * list: entries kept for folders still there with the same events, new
 * ones (w NULL, the loop adds the watch) with their STATUS as the
 * baseline; the others' watches released. Job side. */
static void
rebuild_folders(struct imap_session *s, struct imap_notify *n,
    const struct imap_names *folders)
{
	struct nf_folder *nf = xcalloc(folders->n + 1, sizeof(*nf));
	size_t k = 0;

	for (size_t i = 0; i < folders->n; i++) {
		const char *folder = folders->v[i];
		unsigned ev = folder_events(n, folder) & EV_MESSAGE;
		struct nf_folder *old = NULL;

		if (ev == 0)
			continue;
		for (size_t j = 0; j < n->nf && old == NULL; j++)
			if (n->f[j].folder != NULL &&
			    strcmp(n->f[j].folder, folder) == 0 &&
			    n->f[j].events == ev)
				old = &n->f[j];
		if (old != NULL) {
			nf[k++] = *old;
			old->folder = NULL;	/* taken */
			continue;
		}
		nf[k].folder = xstrdup(folder);
		nf[k].path = maildir_folder_path(s->maildir, folder);
		if (nf[k].path == NULL) {
			free(nf[k].folder);
			continue;
		}
		nf[k].events = ev;
		nf[k].last = status_line(s, folder, nf[k].path, ev);
		k++;
	}
	for (size_t j = 0; j < n->nf; j++) {
		if (n->f[j].folder == NULL)
			continue;
		release_later(n, n->f[j].w);
		folder_free(&n->f[j]);
	}
	free(n->f);
	n->f = nf;
	n->nf = k;
}

static void
known_set(const struct imap_session *s, struct imap_notify *n,
    const struct imap_names *folders)
{
	for (size_t i = 0; i < n->nknown; i++)
		free(n->known[i].folder);
	free(n->known);
	n->known = xcalloc(folders->n + 1, sizeof(*n->known));
	n->nknown = folders->n;
	for (size_t i = 0; i < folders->n; i++) {
		n->known[i].folder = xstrdup(folders->v[i]);
		n->known[i].ino = folder_ino(s, folders->v[i]);
	}
}

/* ---- NOTIFY ---- */

static int
parse_events(struct imap_session *s, const struct imap_arg *a, bool selected,
    struct imap_notify *n, unsigned *events_r)
{
	unsigned ev = 0;

	*events_r = 0;
	if (a->type == IMAP_ARG_ATOM && strcasecmp(a->str, "NONE") == 0)
		return 0;
	if (a->type != IMAP_ARG_LIST || a->nlist == 0) {
		imap_bad(s, "NOTIFY needs an event list or NONE");
		return -1;
	}
	for (size_t i = 0; i < a->nlist; i++) {
		const struct imap_arg *e = &a->list[i];

		if (e->type != IMAP_ARG_ATOM) {
			imap_bad(s, "Invalid NOTIFY event");
			return -1;
		}
		if (strcasecmp(e->str, "MessageNew") == 0) {
			ev |= EV_NEW;
			if (i + 1 < a->nlist &&
			    a->list[i + 1].type == IMAP_ARG_LIST) {
				const char *err = NULL;

				/* fetch attributes: for the selected
				 * mailbox only (RFC 5465 5.2) */
				if (!selected || n->have_fetch) {
					imap_bad(s, "MessageNew attributes are "
					    "for SELECTED only");
					return -1;
				}
				if (imap_fetch_parse(&a->list[++i], &n->fetch,
				    &err) < 0) {
					imap_bad(s, "%s", err != NULL ? err :
					    "Invalid FETCH attributes");
					return -1;
				}
				n->have_fetch = true;
			}
		} else if (strcasecmp(e->str, "MessageExpunge") == 0) {
			ev |= EV_EXPUNGE;
		} else if (strcasecmp(e->str, "FlagChange") == 0) {
			ev |= EV_FLAGS;
		} else if (strcasecmp(e->str, "MailboxName") == 0) {
			ev |= EV_NAME;
		} else if (strcasecmp(e->str, "SubscriptionChange") == 0) {
			ev |= EV_SUBS;
		} else {
			/* AnnotationChange, the metadata events, and any
			 * we do not know (RFC 5465 3.1) */
			imap_no(s, "%s Unsupported event %s", BADEVENT,
			    e->str);
			return -1;
		}
	}
	/* RFC 5465 5: MessageNew and MessageExpunge go together, and
	 * FlagChange needs both */
	if (((ev & EV_NEW) != 0) != ((ev & EV_EXPUNGE) != 0) ||
	    ((ev & EV_FLAGS) && !(ev & EV_NEW))) {
		imap_bad(s, "MessageNew and MessageExpunge go together, and "
		    "FlagChange needs both");
		return -1;
	}
	/* the selected mailbox has message events only */
	if (selected && (ev & (EV_NAME | EV_SUBS))) {
		imap_bad(s, "Only message events are for SELECTED");
		return -1;
	}
	*events_r = ev;
	return 0;
}

/* One "(filter [mailboxes] events)"; 0 ok, -1 with BAD or NO set. */
static int
parse_group(struct imap_session *s, const struct imap_arg *g,
    struct imap_notify *n)
{
	const struct imap_arg *l = g->list;
	const char *f;
	struct nf_group grp = { 0 };
	size_t need;

	if (g->type != IMAP_ARG_LIST || g->nlist < 2 ||
	    l[0].type != IMAP_ARG_ATOM) {
		imap_bad(s, "Invalid NOTIFY event group");
		return -1;
	}
	f = l[0].str;
	if (strcasecmp(f, "SELECTED") == 0 ||
	    strcasecmp(f, "SELECTED-DELAYED") == 0) {
		if (g->nlist != 2 || n->sel) {
			imap_bad(s, "Invalid or repeated SELECTED group");
			return -1;
		}
		n->sel = true;
		n->sel_delayed = strcasecmp(f, "SELECTED-DELAYED") == 0;
		return parse_events(s, &l[1], true, n, &n->sel_events);
	}
	if (strcasecmp(f, "INBOXES") == 0)
		grp.f = NF_INBOXES;
	else if (strcasecmp(f, "PERSONAL") == 0)
		grp.f = NF_PERSONAL;
	else if (strcasecmp(f, "SUBSCRIBED") == 0)
		grp.f = NF_SUBSCRIBED;
	else if (strcasecmp(f, "SUBTREE") == 0)
		grp.f = NF_SUBTREE;
	else if (strcasecmp(f, "MAILBOXES") == 0)
		grp.f = NF_MAILBOXES;
	else {
		imap_bad(s, "Unknown NOTIFY filter");
		return -1;
	}
	need = grp.f == NF_SUBTREE || grp.f == NF_MAILBOXES ? 3 : 2;
	if (g->nlist != need) {
		imap_bad(s, "Invalid NOTIFY event group");
		return -1;
	}
	if (need == 3) {
		const struct imap_arg *m = &l[1];
		const struct imap_arg *v = m->type == IMAP_ARG_LIST ?
		    m->list : m;
		size_t nm = m->type == IMAP_ARG_LIST ? m->nlist : 1;

		if (nm == 0) {
			imap_bad(s, "NOTIFY needs mailbox names");
			return -1;
		}
		if (nm > IMAP_NOTIFY_NAMES_MAX - n->nnames) {
			imap_bad(s, "Too many mailbox names");
			return -1;
		}
		n->nnames += nm;
		for (size_t i = 0; i < nm; i++) {
			const char *name = imap_arg_astring(&v[i]);
			str_t m7 = STR_INIT;
			char *folder;

			/* IMAP4rev2: the names are UTF-8 */
			if (name == NULL || (s->rev2 &&
			    imap_utf8_to_mutf7(name, strlen(name), &m7) < 0)) {
				imap_bad(s, "Invalid mailbox name");
				imap_names_free(&grp.folders);
				str_free(&m7);
				return -1;
			}
			if (s->rev2)
				name = str_c(&m7);
			/* a name that may exist later is fine; one that
			 * cannot name a folder is left out */
			if ((folder = imap_folder_of(s, name, false)) == NULL) {
				s->status = NULL;
				str_free(&m7);
				continue;
			}
			imap_names_add(&grp.folders, folder);
			free(folder);
			str_free(&m7);
		}
	}
	if (grp.folders.n > 1)
		qsort(grp.folders.v, grp.folders.n, sizeof(*grp.folders.v),
		    imap_names_cmp);
	if (parse_events(s, &l[need - 1], false, n, &grp.events) < 0) {
		imap_names_free(&grp.folders);
		return -1;
	}
	n->groups = xrealloc(n->groups, (n->ngroups + 1) * sizeof(*n->groups));
	n->groups[n->ngroups++] = grp;
	n->all_events |= grp.events;
	return 0;
}

void
imap_cmd_notify(struct imap_session *s, struct imap_cmd *c)
{
	struct imap_notify *n;
	struct imap_names folders = { 0 };
	bool status = false;
	size_t i = 1;

	n = s->notify;	/* made by imap_notify_new */
	if (c->nargs == 1 && c->args[0].type == IMAP_ARG_ATOM &&
	    strcasecmp(c->args[0].str, "NONE") == 0) {
		notify_clear(n);
		imap_ok(s, "NOTIFY completed.");
		return;
	}
	if (c->nargs < 2 || c->args[0].type != IMAP_ARG_ATOM ||
	    strcasecmp(c->args[0].str, "SET") != 0) {
		imap_bad(s, "NOTIFY SET or NOTIFY NONE");
		return;
	}
	if (c->args[1].type == IMAP_ARG_ATOM &&
	    strcasecmp(c->args[1].str, "STATUS") == 0) {
		status = true;
		i = 2;
	}
	if (i >= c->nargs) {
		imap_bad(s, "NOTIFY SET needs event groups");
		return;
	}
	/* the new subscription replaces the old one, which stays as it
	 * was if this one is refused */
	{
		struct imap_notify tmp = { 0 };

		for (size_t k = i; k < c->nargs; k++) {
			if (parse_group(s, &c->args[k], &tmp) < 0) {
				notify_clear(&tmp);
				free(tmp.release);
				return;
			}
		}
		notify_clear(n);
		n->sel = tmp.sel;
		n->sel_delayed = tmp.sel_delayed;
		n->sel_events = tmp.sel_events;
		n->have_fetch = tmp.have_fetch;
		n->fetch = tmp.fetch;
		n->groups = tmp.groups;
		n->ngroups = tmp.ngroups;
		n->all_events = tmp.all_events;
	}
	n->active = true;
	all_folders(s, &folders);
	imap_read_subscriptions(s, &n->subs);
	rebuild_folders(s, n, &folders);
	known_set(s, n, &folders);
	n->root_wanted = n->ngroups > 0;
	/* RFC 5465 3.1: with STATUS, the state of every folder watched
	 * for message events now */
	for (size_t k = 0; status && k < n->nf; k++)
		if (n->f[k].last != NULL && !is_selected(s, n->f[k].path))
			imap_untagged(s, "%s", n->f[k].last);
	imap_names_free(&folders);
	imap_ok(s, "NOTIFY completed.");
}

/* ---- reports (job side) ---- */

/* A mailbox name as a quoted string (UTF-8 for IMAP4rev2). */
static void
append_quoted_name(const struct imap_session *s, str_t *line,
    const char *name)
{
	str_t u = STR_INIT;

	if (s->rev2 && imap_mutf7_to_utf8(name, strlen(name), &u) == 0 &&
	    str_has_8bit(u.data, u.len))
		imap_append_astring_utf8(line, u.data, u.len);
	else
		imap_append_string(line, name, strlen(name));
	str_free(&u);
}

static void
list_line(struct imap_session *s, const char *attrs, const char *folder,
    const char *old)
{
	char *name = imap_mailbox_name(s, folder);
	str_t line = STR_INIT;

	str_printf(&line, "LIST (%s) \".\" ", attrs);
	append_quoted_name(s, &line, name);
	if (old != NULL) {
		char *oname = imap_mailbox_name(s, old);

		str_append(&line, " (\"OLDNAME\" (");
		append_quoted_name(s, &line, oname);
		str_append(&line, "))");
		free(oname);
	}
	imap_untagged(s, "%s", str_c(&line));
	str_free(&line);
	free(name);
}

/* Folders made, removed, renamed; subscriptions changed. */
static void
report_root(struct imap_session *s, struct imap_notify *n)
{
	struct imap_names now = { 0 }, subs = { 0 };
	ino_t *ino;
	bool *was_renamed, *is_renamed;

	all_folders(s, &now);
	ino = xcalloc(now.n + 1, sizeof(*ino));
	is_renamed = xcalloc(now.n + 1, sizeof(*is_renamed));
	was_renamed = xcalloc(n->nknown + 1, sizeof(*was_renamed));
	for (size_t i = 0; i < now.n; i++)
		ino[i] = folder_ino(s, now.v[i]);
	if (n->all_events & EV_NAME) {
		/* renamed: a new name whose directory is one that had
		 * another name */
		for (size_t i = 0; i < now.n; i++) {
			bool had = false;

			for (size_t j = 0; j < n->nknown && !had; j++)
				had = strcmp(n->known[j].folder,
				    now.v[i]) == 0;
			if (had || ino[i] == 0)
				continue;
			for (size_t j = 0; j < n->nknown; j++) {
				const char *old = n->known[j].folder;

				if (n->known[j].ino != ino[i] ||
				    was_renamed[j] ||
				    imap_names_has(&now, old))
					continue;
				was_renamed[j] = is_renamed[i] = true;
				if ((folder_events(n, now.v[i]) |
				    folder_events(n, old)) & EV_NAME)
					list_line(s, "", now.v[i], old);
				break;
			}
		}
		for (size_t j = 0; j < n->nknown; j++)
			if (!was_renamed[j] &&
			    !imap_names_has(&now, n->known[j].folder) &&
			    (folder_events(n, n->known[j].folder) & EV_NAME))
				list_line(s, "\\NonExistent",
				    n->known[j].folder, NULL);
		for (size_t i = 0; i < now.n; i++) {
			bool had = false;

			for (size_t j = 0; j < n->nknown && !had; j++)
				had = strcmp(n->known[j].folder,
				    now.v[i]) == 0;
			if (!had && !is_renamed[i] &&
			    (folder_events(n, now.v[i]) & EV_NAME))
				list_line(s, "", now.v[i], NULL);
		}
	}
	imap_read_subscriptions(s, &subs);
	/* a folder leaving SUBSCRIBED is told by the old list, one
	 * joining it by the new one */
	for (size_t i = 0; (n->all_events & EV_SUBS) && i < n->subs.n; i++)
		if (!imap_names_has(&subs, n->subs.v[i]) &&
		    (folder_events(n, n->subs.v[i]) & EV_SUBS))
			list_line(s, "", n->subs.v[i], NULL);
	{
		struct imap_names old = n->subs;

		n->subs = subs;
		for (size_t i = 0; (n->all_events & EV_SUBS) && i < subs.n;
		    i++)
			if (!imap_names_has(&old, subs.v[i]) &&
			    (folder_events(n, subs.v[i]) & EV_SUBS))
				list_line(s, "\\Subscribed", subs.v[i], NULL);
		imap_names_free(&old);
	}
	known_set(s, n, &now);
	rebuild_folders(s, n, &now);
	free(ino);
	free(is_renamed);
	free(was_renamed);
	imap_names_free(&now);
}

void
imap_notify_run(struct imap_session *s)
{
	struct imap_notify *n = s->notify;

	if (n == NULL || !n->active)
		return;
	if (n->root_dirty) {
		n->root_dirty = false;
		report_root(s, n);
	}
	for (size_t i = 0; i < n->nf; i++) {
		struct nf_folder *f = &n->f[i];
		char *line;

		if (!f->dirty || is_selected(s, f->path))
			continue;
		f->dirty = false;
		line = status_line(s, f->folder, f->path, f->events);
		if (line == NULL)
			continue;
		if (f->last == NULL || strcmp(line, f->last) != 0) {
			imap_untagged(s, "%s", line);
			free(f->last);
			f->last = line;
		} else {
			free(line);
		}
	}
	if (n->sel_dirty) {
		n->sel_dirty = false;
		if (n->sel && n->sel_events != 0 && s->mb != NULL &&
		    s->state == S_SELECTED) {
			size_t before = s->known;

			imap_sync_report(s, !n->sel_delayed);
			if (n->have_fetch && s->mb != NULL &&
			    s->known > before)
				imap_fetch_messages(s, &n->fetch, before,
				    s->known);
		}
	}
}

/* ---- the loop side ---- */

static bool
any_dirty(const struct imap_notify *n)
{
	if (n->root_dirty || n->sel_dirty)
		return true;
	for (size_t i = 0; i < n->nf; i++)
		if (n->f[i].dirty)
			return true;
	return false;
}

static void
mark(struct imap_session *s, struct imap_notify *n, struct imap_watch *w)
{
	if (w != NULL && w == n->root)
		n->root_dirty = true;
	if (w != NULL && w == s->watch)
		n->sel_dirty = true;
	for (size_t i = 0; i < n->nf; i++)
		if (n->f[i].w == w)
			n->f[i].dirty = true;
}

void
imap_notify_new(struct imap_session *s)
{
	s->notify = xcalloc(1, sizeof(*s->notify));
}

void
imap_notify_fired(struct imap_session *s, struct imap_watch *w)
{
	struct imap_notify *n = s->notify;

	/* a job owns everything but the pending list */
	if (s->base.busy) {
		if (n->pend_all)
			return;
		for (size_t i = 0; i < n->npend; i++)
			if (n->pend[i] == w)
				return;
		if (n->npend >= IMAP_NOTIFY_PENDING_MAX) {
			n->pend_all = true;	/* everything, then */
			return;
		}
		if (n->npend == n->cappend) {
			n->cappend = n->cappend ? 2 * n->cappend : 16;
			n->pend = xrealloc(n->pend, n->cappend *
			    sizeof(*n->pend));
		}
		n->pend[n->npend++] = w;
		return;
	}
	if (!n->active)
		return;
	mark(s, n, w);
	imap_session_kick(s);
}

bool
imap_notify_pending(const struct imap_session *s)
{
	return s->notify != NULL && s->notify->active && any_dirty(s->notify);
}

void
imap_notify_after(struct imap_session *s)
{
	struct imap_notify *n = s->notify;

	if (n == NULL)
		return;
	for (size_t i = 0; i < n->nrelease; i++)
		imap_watch_release(s->srv, &n->release[i]);
	n->nrelease = 0;
	if (n->root != NULL && !n->root_wanted)
		imap_watch_release(s->srv, &n->root);
	if (n->root == NULL && n->root_wanted) {
		n->root = imap_watch_add_root(s->srv, s->maildir);
		n->root_dirty = true;	/* what changed meanwhile */
	}
	for (size_t i = 0; i < n->nf; i++) {
		if (n->f[i].w == NULL) {
			n->f[i].w = imap_watch_add(s->srv, n->f[i].path);
			n->f[i].dirty = true;
		}
	}
	if (n->pend_all) {
		n->root_dirty = n->root != NULL;
		n->sel_dirty = true;
		for (size_t i = 0; i < n->nf; i++)
			n->f[i].dirty = true;
	}
	for (size_t i = 0; i < n->npend; i++)
		mark(s, n, n->pend[i]);
	n->npend = 0;
	n->pend_all = false;
	if (!n->active) {
		n->root_dirty = n->sel_dirty = false;
		return;
	}
	imap_session_kick(s);
}

void
imap_notify_free(struct imap_session *s)
{
	struct imap_notify *n = s->notify;

	if (n == NULL)
		return;
	notify_clear(n);
	n->root_wanted = false;
	imap_notify_after(s);
	free(n->release);
	free(n->pend);
	free(n);
	s->notify = NULL;
}
