/*
 * notify.c: knowing at once when a selected folder changes, so IDLE
 * reports a delivery or another session's change within a second
 * without polling. One inotify descriptor per worker on the event loop;
 * one watch per folder directory (cur/ and new/), shared by every
 * session of the worker that has the folder selected or asked to hear
 * of it (NOTIFY, cmd_notify.c); and for NOTIFY one watch per maildir
 * (a "root" watch) on the maildir directory itself, which tells of
 * folders made, removed and renamed (Maildir++ folders are its
 * subdirectories ".name") and of the subscription files replaced; the
 * other files there (INBOX's index, its log) are not looked at.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "imap/imap-private.h"
#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/maildir/subscriptions.h"

struct imap_watch {
	struct imap_watch *next;
	char *path;		/* the folder directory */
	int wd_cur, wd_new;	/* root: wd_cur is the directory's */
	unsigned refs;
	bool root;
};

#define WATCH_MASK (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | \
    IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)
#define ROOT_MASK (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | \
    IN_CLOSE_WRITE | IN_ONLYDIR)

/* An event in a maildir directory that NOTIFY cares about: a folder
 * (".name", not the "..deleted-" DELETE leaves on its way out) or a
 * subscription file. */
static bool
root_event(const struct inotify_event *ev)
{
	const char *n = ev->name;

	if (ev->len == 0)
		return false;
	if (n[0] == '.')
		return n[1] != '.' && n[1] != '\0';
	return strcmp(n, MAILDIR_SUBS_DOVECOT) == 0 ||
	    strcmp(n, MAILDIR_SUBS_COURIER) == 0;
}

static void
changed(struct imap_server *srv, struct imap_watch *w)
{
	for (struct session *b = srv->sv.sessions; b != NULL; b = b->next) {
		struct imap_session *s = (struct imap_session *)b;

		if (s->watch == w)
			imap_session_changed(s);
		if (s->notify != NULL)
			imap_notify_fired(s, w);
	}
}

static void
inotify_read(evutil_socket_t fd, short what, void *arg)
{
	struct imap_server *srv = arg;
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;

			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				/* events were lost: everyone looks */
				for (struct imap_watch *w = srv->watches;
				    w != NULL; w = w->next)
					changed(srv, w);
				continue;
			}
			for (struct imap_watch *w = srv->watches; w != NULL;
			    w = w->next)
				if ((w->wd_cur == ev->wd || w->wd_new == ev->wd) &&
				    (!w->root || root_event(ev)))
					changed(srv, w);
		}
	}
}

int
imap_notify_init(struct imap_server *srv)
{
	srv->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (srv->inotify_fd < 0)
		return -1;
	srv->inotify_ev = event_new(srv->sv.base, srv->inotify_fd,
	    EV_READ | EV_PERSIST, inotify_read, srv);
	event_add(srv->inotify_ev, NULL);
	return 0;
}

void
imap_notify_deinit(struct imap_server *srv)
{
	while (srv->watches != NULL) {
		struct imap_watch *w = srv->watches;

		srv->watches = w->next;
		free(w->path);
		free(w);
	}
	if (srv->inotify_ev != NULL)
		event_free(srv->inotify_ev);
	srv->inotify_ev = NULL;
	if (srv->inotify_fd >= 0)
		close(srv->inotify_fd);
	srv->inotify_fd = -1;
}

static int
add_dir(struct imap_server *srv, const char *path, const char *sub)
{
	char *dir = xasprintf("%s/%s", path, sub);
	int wd = inotify_add_watch(srv->inotify_fd, dir, WATCH_MASK);

	if (wd < 0)
		log_warn_errno("imap: inotify watch on %s", dir);
	free(dir);
	return wd;
}

static struct imap_watch *
watch_add(struct imap_server *srv, const char *path, bool root)
{
	struct imap_watch *w;

	if (srv->inotify_fd < 0)
		return NULL;
	for (w = srv->watches; w != NULL; w = w->next) {
		if (w->root == root && strcmp(w->path, path) == 0) {
			w->refs++;
			return w;
		}
	}
	w = xcalloc(1, sizeof(*w));
	w->path = xstrdup(path);
	w->refs = 1;
	w->root = root;
	if (root) {
		w->wd_cur = inotify_add_watch(srv->inotify_fd, path, ROOT_MASK);
		if (w->wd_cur < 0)
			log_warn_errno("imap: inotify watch on %s", path);
		w->wd_new = -1;
	} else {
		w->wd_cur = add_dir(srv, path, "cur");
		w->wd_new = add_dir(srv, path, "new");
	}
	w->next = srv->watches;
	srv->watches = w;
	return w;
}

struct imap_watch *
imap_watch_add(struct imap_server *srv, const char *path)
{
	return watch_add(srv, path, false);
}

struct imap_watch *
imap_watch_add_root(struct imap_server *srv, const char *maildir)
{
	return watch_add(srv, maildir, true);
}

void
imap_watch_release(struct imap_server *srv, struct imap_watch **wp)
{
	struct imap_watch *w = *wp, **pp;

	*wp = NULL;
	if (w == NULL || --w->refs > 0)
		return;
	for (pp = &srv->watches; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	/* inotify gives the same descriptor for the same directory; it is
	 * ours alone once the last session let go. */
	if (w->wd_cur >= 0)
		inotify_rm_watch(srv->inotify_fd, w->wd_cur);
	if (w->wd_new >= 0)
		inotify_rm_watch(srv->inotify_fd, w->wd_new);
	free(w->path);
	free(w);
}

const char *
imap_watch_path(const struct imap_watch *w)
{
	return w->path;
}
