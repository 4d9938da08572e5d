/*
 * cmd_quota.c: GETQUOTAROOT, GETQUOTA, SETQUOTA (RFC 2087). The one
 * quota root "" is the maildir's maildirsize. They run on job threads.
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

/* ---- QUOTA (RFC 2087) ---- */

static void
quota_line(struct imap_session *s)
{
	struct maildir_quota q;
	const char *err;
	str_t res = STR_INIT;

	if (!quota_limit_set(&s->quota)) {
		imap_untagged(s, "QUOTA \"\" ()");
		return;
	}
	/* Recalculate when missing or stale, as delivery does. */
	if (maildir_quota_check(s->maildir, &s->quota, 0, &err) < 0 ||
	    maildir_quota_read(s->maildir, &q, &err) <= 0) {
		log_warn("%016llx: quota of %s: %s", SID(&s->base), s->login, err);
		q.bytes = 0;
		q.count = 0;
	}
	/* RFC 2087 3: STORAGE in units of 1024 octets; MESSAGE for a
	 * message-count limit (Courier's "<n>C") */
	if (s->quota.bytes > 0)
		str_printf(&res, "STORAGE %llu %llu", (unsigned long long)
		    (q.bytes > 0 ? (uint64_t)q.bytes / 1024 : 0),
		    (unsigned long long)(s->quota.bytes / 1024));
	if (s->quota.count > 0)
		str_printf(&res, "%sMESSAGE %llu %llu",
		    s->quota.bytes > 0 ? " " : "",
		    (unsigned long long)(q.count > 0 ? (uint64_t)q.count : 0),
		    (unsigned long long)s->quota.count);
	imap_untagged(s, "QUOTA \"\" (%s)", str_c(&res));
	str_free(&res);
}

void
imap_cmd_getquotaroot(struct imap_session *s, struct imap_cmd *c)
{
	const char *name;
	char *path;
	str_t line = STR_INIT;

	if (c->nargs != 1 || (name = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "GETQUOTAROOT needs a mailbox name");
		return;
	}
	if ((path = imap_mailbox_path(s, name)) == NULL)
		return;
	if (!imap_is_dir(path)) {
		imap_no(s, "[NONEXISTENT] No such mailbox");
		free(path);
		return;
	}
	free(path);
	str_append(&line, "QUOTAROOT ");
	imap_append_mailbox(s, &line, imap_is_inbox(name) ? "INBOX" : name);
	str_append(&line, " \"\"");
	imap_untagged(s, "%s", str_c(&line));
	str_free(&line);
	quota_line(s);
	imap_ok(s, "Getquotaroot completed.");
}

void
imap_cmd_getquota(struct imap_session *s, struct imap_cmd *c)
{
	const char *root;

	if (c->nargs != 1 || (root = imap_arg_astring(&c->args[0])) == NULL) {
		imap_bad(s, "GETQUOTA needs a quota root");
		return;
	}
	if (root[0] != '\0') {
		imap_no(s, "[NONEXISTENT] No such quota root");
		return;
	}
	quota_line(s);
	imap_ok(s, "Getquota completed.");
}

void
imap_cmd_setquota(struct imap_session *s, struct imap_cmd *c)
{
	imap_no(s, "[NOPERM] Quotas are set in the directory");
}
