#ifndef PETREL_IMAP_PRIVATE_H
#define PETREL_IMAP_PRIVATE_H
/* Shared between the IMAP session (session.c), the command files
 * (cmd_*.c, with mailbox_view.c and folders.c) and change notification
 * (notify.c). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/imap.h"
#include "lib/base/str.h"
#include "lib/store/mailbox.h"
#include "lib/imap/framing.h"
#include "lib/imap/parse.h"
#include "lib/io/jobs.h"
#include "lib/maildir/quota.h"
#include "lib/session/sasl.h"
#include "lib/session/session.h"

struct bufferevent;
struct authc;
struct dir_user;
struct maildir_tmp;

enum imap_state { S_NOAUTH, S_AUTH, S_SELECTED, S_LOGOUT };

/* Where a command may run (bits). */
#define IN_NOAUTH	0x1
#define IN_AUTH		0x2
#define IN_SELECTED	0x4
#define IN_ANY		(IN_NOAUTH | IN_AUTH | IN_SELECTED)
#define IN_LOGGED	(IN_AUTH | IN_SELECTED)
#define ON_LOOP		0x8	/* runs on the loop thread, not a job */
#define NO_EXPUNGE	0x10	/* FETCH, STORE, SEARCH: no EXPUNGE
				   responses while they run (RFC 3501 7.4.1) */

struct imap_session;
typedef void imap_cmd_fn(struct imap_session *s, struct imap_cmd *c);

struct imap_command {
	const char *name;
	imap_cmd_fn *fn;
	unsigned flags;
};

/* What an APPEND message's bytes hold that the store cannot keep as
 * they were sent (Maildir files keep LF line ends): a NUL, a LF without
 * its CR. last: the byte before the next piece. */
struct imap_msg_scan {
	bool nul, bare_lf;
	char last;
};
void imap_msg_scan(struct imap_msg_scan *sc, const char *p, size_t n);

/* An APPEND message larger than IMAP_APPEND_MEM_MAX while it arrives:
 * its bytes go into buf, and a job writes each full buf (and the last
 * one) to a file in the user's tmp/, CRLF stored as LF. The APPEND that
 * ends the command takes the files (cmd_append.c: a MULTIAPPEND has up
 * to IMAP_FRAMER_SPOOLS of them); whatever else happens (a refused
 * command, the client gone) they are removed. */
struct imap_spool {
	uint64_t size;		/* the literal's size, as announced */
	uint64_t got;		/* bytes received so far */
	char *buf;		/* IMAP_SPOOL_CHUNK bytes */
	size_t len;		/* in buf, not written yet */
	struct maildir_tmp *tmp;	/* the file, once a job opened it */
	bool done;		/* all size bytes received */
	struct imap_msg_scan scan;	/* what the bytes hold */
	const char *failed;	/* "[OVERQUOTA] ...": the APPEND's NO text;
				   the rest of the data is dropped */
};

struct imap_session {
	struct session base;	/* first: the connection (lib/session) */
	struct imap_server *srv;
	enum imap_state state;
	unsigned bad_in_row;

	/* input: commands cut by lib/imap/framing */
	struct imap_framer fr;
	struct sasl sasl;	/* AUTHENTICATE: waiting for "+" data */
	bool idling;
	struct event *sync_ev;	/* IDLE: debounced change notification */

	/* the command running */
	struct imap_cmd cmd;
	bool have_cmd;
	const struct imap_command *def;
	str_t out;		/* responses a job produced */
	const char *status;	/* "OK", "NO", "BAD" */
	str_t text;		/* the tagged response text */
	bool more;		/* the command produces more output later */
	bool streaming;		/* a long FETCH: write low watermark set */
	size_t cursor;		/* ... from here */
	void *cmd_state;	/* per-command state across continuations */
	void (*cmd_state_free)(void *);
	struct job job;
	int job_kind;		/* session.c's enum job_kind */
	/* the APPEND messages being spooled, in order; the last one is
	 * the one arriving */
	struct imap_spool *spools[IMAP_FRAMER_SPOOLS];
	size_t nspools;

	/* logged in */
	char *login;		/* address */
	bool logged_in, logged_out;	/* for the login/logout lines */
	char *maildir;
	struct quota_limit quota;	/* none set = none */
	/* ENABLE IMAP4rev2 (RFC 9051): mailbox names in UTF-8, no \Recent
	 * or RECENT, SEARCH answered by ESEARCH, a LIST in SELECT */
	bool rev2;

	/* selected mailbox (NULL in S_SELECTED: the folder was deleted or
	 * re-created under the session, see imap_lost_command) */
	struct mbox *mb;
	char *mbox_name;	/* as the client named it (INBOX canonical) */
	bool readonly;
	size_t known;		/* messages the client knows of (EXISTS) */
	uint32_t known_keywords;	/* keywords in the last FLAGS: bit k
					   for letter 'a' + k */
	/* SEARCHRES (RFC 5182): the UIDs of the saved search result "$",
	 * ascending; at most one per message of the mailbox when saved,
	 * cleared when the mailbox is closed or selected again */
	uint32_t *searchres;
	size_t nsearchres;
	bool changed;		/* inotify saw a change since the last sync */
	/* RFC 7162: CONDSTORE enabled (by ENABLE or a CONDSTORE enabling
	 * command: MODSEQ in every FETCH that reports flags), QRESYNC
	 * enabled (VANISHED instead of EXPUNGE) */
	bool condstore, qresync;
	uint64_t told_modseq;	/* the folder's modseq when the client was
				   last told of every expunge */
	struct imap_watch *watch;
	struct imap_notify *notify;	/* NOTIFY (cmd_notify.c), or NULL */
	/* RFC 5267 RETURN (UPDATE): the updating searches and sorts
	 * (cmd_search.c), at most IMAP_CONTEXTS_MAX */
	struct imap_context *contexts;
	size_t ncontexts;
};

/* Responses (all append to s->out; the tagged line is written once the
 * command is done). */
void imap_untagged(struct imap_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void imap_done(struct imap_session *s, const char *status,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define imap_ok(s, ...) imap_done((s), "OK", __VA_ARGS__)
#define imap_no(s, ...) imap_done((s), "NO", __VA_ARGS__)
#define imap_bad(s, ...) imap_done((s), "BAD", __VA_ARGS__)

/* session.c: write what the command produced and its tagged reply
 * (counting BADs in a row); end the command (frees it, wiping a LOGIN or
 * AUTHENTICATE); close once the replies are out; an IDLE sync job. */
void imap_flush(struct imap_session *s);
void imap_end_command(struct imap_session *s);
void imap_logout(struct imap_session *s);
void imap_idle_sync(struct imap_session *s);
/* IDLE starts: its continuation goes out and the session gives back what
 * a wait does not need (the command shrinks to its tag, the output and
 * input buffers are freed), since most sessions spend their life here. */
void imap_idle_begin(struct imap_session *s);

/* cmd_session.c: CAPABILITY, LOGOUT, ID, ENABLE, NAMESPACE, IDLE (and
 * the line that ends it); the capability list for the state. */
void imap_capabilities(const struct imap_session *s, str_t *out);
void imap_cmd_capability(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_logout(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_id(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_enable(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_namespace(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_compress(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_idle(struct imap_session *s, struct imap_cmd *c);
void imap_idle_done(struct imap_session *s, const char *line);

/* cmd_auth.c: STARTTLS, LOGIN, AUTHENTICATE (and its response lines);
 * the session_ops login callbacks. */
void imap_cmd_starttls(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_login(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_authenticate(struct imap_session *s, struct imap_cmd *c);
void imap_sasl_response(struct imap_session *s, const char *line);
int imap_login_job(struct session *base, struct authc *ac,
    const struct dir_user *u);
void imap_login_done(struct session *base, int result);
void imap_proxied(struct session *base, const char *user, const char *caps);

/* folders.c, the one mapping of mailbox names (as the client sends and
 * sees them, imap_namespace_prefix applied) to folders ("INBOX" or a
 * Maildir++ folder's name without its dot) and their directories.
 * folder_of: the folder a name names, malloc'd (create: the name is to
 * be made, CREATE and RENAME's target); mailbox_locate: its directory,
 * malloc'd, and the folder in *folder_r when not NULL; mailbox_path: the
 * directory alone. Each returns NULL with a NO already set on the
 * session when the name is not acceptable (invalid, or outside the
 * namespace). mailbox_name: the name a client sees for a folder,
 * malloc'd. */
char *imap_folder_of(struct imap_session *s, const char *name, bool create);
char *imap_mailbox_locate(struct imap_session *s, const char *name,
    bool create, char **folder_r);
char *imap_mailbox_path(struct imap_session *s, const char *name);
char *imap_mailbox_name(const struct imap_session *s, const char *folder);
bool imap_is_inbox(const char *name);
/* IMAP4rev2 enabled: the command's mailbox-name arguments, sent in
 * UTF-8, made modified UTF-7 (the form names have everywhere else, on
 * disk included) before the command runs; -1 with a BAD set when one is
 * not valid UTF-8. Nothing to do for other sessions. */
int imap_names_from_client(struct imap_session *s, struct imap_cmd *c);
/* A mailbox name (modified UTF-7) appended for the client: as it is, or
 * in UTF-8 once IMAP4rev2 is enabled. */
void imap_append_mailbox(const struct imap_session *s, str_t *out,
    const char *name);

/* Sync the selected mailbox and append the untagged responses for what
 * changed: EXPUNGE (unless the command forbids them), EXISTS, RECENT,
 * FETCH FLAGS. */
void imap_sync_report(struct imap_session *s, bool allow_expunge);
/* A command that needs the selected folder after the sync found it
 * deleted or re-created (s->mb NULL in S_SELECTED): NO [UNAVAILABLE];
 * CLOSE and UNSELECT close the view (mailbox_view.c). */
void imap_lost_command(struct imap_session *s,
    const struct imap_command *def);
void imap_report_expunges(struct imap_session *s);
/* A CONDSTORE enabling command (RFC 7162 3.1): from now on, and with a
 * mailbox selected, the client is told its HIGHESTMODSEQ once. */
void imap_condstore_enable(struct imap_session *s);
/* "* VANISHED (EARLIER) ..." for the UIDs expunged since modseq since
 * among those of set (NULL: all below UIDNEXT), RFC 7162 3.2.5.1 and
 * 3.2.6. */
void imap_report_vanished_since(struct imap_session *s, uint64_t since,
    const struct imap_seqset *set);
void imap_flags_string(const struct imap_session *s,
    const struct mbox_msg *m, str_t *out);

/* cmd_select.c, cmd_fetch.c, cmd_store.c, cmd_search.c, cmd_sort.c,
 * cmd_copy.c,
 * cmd_expunge.c, cmd_append.c; imap_close_mailbox in mailbox_view.c */
void imap_cmd_select(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_fetch(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_store(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_search(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_sort(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_cancelupdate(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_thread(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_copy(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_move(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_expunge(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_close(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_unselect(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_append(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_replace(struct imap_session *s, struct imap_cmd *c);
/* cmd_append.c: the spools of large APPEND messages. begin: on
 * IMAP_FRAME_SPOOL, a new one (the framer spools at most
 * IMAP_FRAMER_SPOOLS per command); cur: the one arriving, or NULL;
 * write: on a job, writes the current one (opening the file first) and
 * empties its buf; free: removes the files still there. */
void imap_spool_begin(struct imap_session *s, uint64_t size);
struct imap_spool *imap_spool_cur(const struct imap_session *s);
void imap_spool_write(struct imap_session *s);
void imap_spools_free(struct imap_session *s);
void imap_cmd_noop(struct imap_session *s, struct imap_cmd *c);
void imap_close_mailbox(struct imap_session *s);
/* Empty the saved search result (mailbox_view.c). */
void imap_searchres_clear(struct imap_session *s);

/* cmd_mailbox.c, cmd_list.c, cmd_quota.c; imap_prepare_maildir in
 * folders.c */
void imap_cmd_create(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_delete(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_rename(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_subscribe(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_unsubscribe(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_list(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_lsub(struct imap_session *s, struct imap_cmd *c);
/* The LIST response of one mailbox (SELECT in IMAP4rev2). */
void imap_list_one(struct imap_session *s, const char *name);
void imap_cmd_status(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_getquotaroot(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_getquota(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_setquota(struct imap_session *s, struct imap_cmd *c);
/* cmd_metadata.c: GETMETADATA, SETMETADATA (RFC 5464); the entries of
 * a mailbox (by its MAILBOXID) removed (DELETE) or copied to another
 * (RENAME INBOX), on a job thread, failures logged. */
void imap_cmd_getmetadata(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_setmetadata(struct imap_session *s, struct imap_cmd *c);
void imap_metadata_forget(struct imap_session *s, const char *id);
void imap_metadata_copy(struct imap_session *s, const char *from,
    const char *to);
/* At login: the maildir and the special-use folders. */
int imap_prepare_maildir(struct imap_session *s);

/* notify.c: inotify watches on a folder's cur/ and new/, shared by the
 * sessions of this worker that have it selected. */
int imap_notify_init(struct imap_server *srv);
void imap_notify_deinit(struct imap_server *srv);
struct imap_watch *imap_watch_add(struct imap_server *srv, const char *path);
void imap_watch_release(struct imap_server *srv, struct imap_watch **w);
const char *imap_watch_path(const struct imap_watch *w);
/* A watch on a maildir directory itself (NOTIFY: folders and
 * subscription files), shared like a folder's. */
struct imap_watch *imap_watch_add_root(struct imap_server *srv,
    const char *maildir);
/* Called by notify.c for each session watching a changed folder. */
void imap_session_changed(struct imap_session *s);
/* session.c: start a NOTIFY report soon if one is due (loop thread). */
void imap_session_kick(struct imap_session *s);

/* cmd_notify.c: NOTIFY (RFC 5465). fired: notify.c, for every session
 * with s->notify, on any watch's event (loop); new: the state, before
 * the first NOTIFY runs (loop); pending: a report is due
 * (loop); run: the report job; after: on the loop after every job, the
 * watches added and released, events that came during the job taken;
 * free: at the session's end (loop). */
void imap_cmd_notify(struct imap_session *s, struct imap_cmd *c);
void imap_notify_new(struct imap_session *s);
void imap_notify_fired(struct imap_session *s, struct imap_watch *w);
bool imap_notify_pending(const struct imap_session *s);
void imap_notify_run(struct imap_session *s);
void imap_notify_after(struct imap_session *s);
void imap_notify_free(struct imap_session *s);

#endif
