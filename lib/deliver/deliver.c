/*
 * deliver.c: the one delivery path (see deliver.h) -- Maildir copies with
 * the maildirsize quota (Maildir++) and duplicate elimination, and the
 * outbound queue with DKIM signing, and SRS senders for forwards.
 *
 * Each maildir copy is "Return-Path: <sender>", "Delivered-To: <final
 * address>", the caller's prefix and the body, written through
 * lib/maildir (tmp/, data durable, link into new/, fsync of new/): SPEC
 * section 4, "250 after DATA means the message is on stable storage".
 *
 * One message to many local recipients (an alias list): the copies
 * differ (each has its own Delivered-To, which tests, loop checks and
 * users' filters read), so each is its own file, not a hard link of one;
 * what they share is the fsync of each directory, made once at the end
 * for every copy of the message (a maildir batch), before
 * deliver_message returns. So 1,000 recipients cost 1,000 small writes
 * and one journal commit, not 1,000 commits. The maildirsize lines are
 * appended after that fsync, one per copy.
 *
 * Trust: the routes come from lib/route (maildir paths already confined
 * to mail_root by name; no symbolic link below mail_root is followed,
 * checked here); the sender, addresses and body are the client's and are
 * only copied, never interpreted here.
 */
#include <errno.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/authd/client.h"
#include "lib/base/alloc.h"
#include "lib/base/clock.h"
#include "lib/base/err.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/deliver/deliver.h"
#include "lib/session/counters.h"
#include "lib/deliver/deliver-private.h"
#include "lib/deliver/cut.h"
#include "lib/dkim/sign.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/quota.h"
#include "lib/queue/queue.h"
#include "lib/queue/spool.h"
#include "lib/route/route.h"
#include "lib/trust/arc.h"
#include "lib/trust/srs.h"

struct deliver_batch {
	struct maildir_batch *copies;
	struct quota_add {
		char *maildir;
		int64_t bytes;
	} *quota;
	size_t nquota;
};

struct tmp_writer {
	struct maildir_tmp *tmp;
	const char *error;	/* set when a write failed */
};

/* The body goes through maildir_tmp_write so that the S= and W= sizes
 * in the file name count it. */
static int
tmp_write_cb(void *ctx, const void *data, size_t len)
{
	struct tmp_writer *w = ctx;

	return maildir_tmp_write(w->tmp, data, len, &w->error);
}

int
deliver_maildir_to(const struct deliver_ctx *ctx,
    const struct deliver_msg *msg, const struct route_dest *d,
    const char *folder_dir, const char *flags, const char **error_r)
{
	struct tmp_writer w = { NULL, NULL };
	str_t head = STR_INIT;
	const char *qerr;
	int r = -1;

	str_printf(&head, "Return-Path: <%s>\nDelivered-To: %s\n%s",
	    msg->sender, d->address, msg->prefix != NULL ? msg->prefix : "");
	/* Never outside mail_root: a symbolic link on the way (the maildir,
	 * a level above it, its tmp/ or new/) refuses the delivery, which
	 * the caller answers with a temporary error. */
	if (maildir_check_under(ctx->mail_root, folder_dir, error_r) < 0 ||
	    maildir_tmp_open(folder_dir, &w.tmp, error_r) < 0)
		goto out;
	if (maildir_tmp_write(w.tmp, head.data, head.len, error_r) < 0) {
		maildir_tmp_abort(&w.tmp);
		goto out;
	}
	if (spool_each(msg->body, tmp_write_cb, &w) < 0) {
		/* The write's own error (its code says ENOSPC or EDQUOT),
		 * else reading the spool failed. */
		if (w.error != NULL)
			*error_r = w.error;
		else
			err_fail(error_r, errno, "cannot read the spooled "
			    "message: %s", strerror(errno));
		maildir_tmp_abort(&w.tmp);
		goto out;
	}
	if (msg->batch != NULL) {
		if (maildir_tmp_commit_batch(&w.tmp, flags != NULL &&
		    *flags != '\0' ? flags : NULL, msg->batch->copies, NULL,
		    error_r) < 0)
			goto out;
	} else if (maildir_tmp_commit_flags(&w.tmp, flags != NULL &&
	    *flags != '\0' ? flags : NULL, NULL, error_r) < 0) {
		goto out;
	}
	/* Maildir++: every delivery appends its size to maildirsize. The
	 * copy is durable already (in a batch: once the batch is synced);
	 * a failed append only makes the next check recalculate. */
	if (quota_limit_set(&d->quota)) {
		int64_t bytes = (int64_t)(head.len + msg->body->size);

		if (msg->batch != NULL) {
			struct deliver_batch *b = msg->batch;

			b->quota = xrealloc(b->quota, (b->nquota + 1) *
			    sizeof(*b->quota));
			b->quota[b->nquota].maildir = xstrdup(d->maildir);
			b->quota[b->nquota++].bytes = bytes;
		} else if (maildir_quota_add(d->maildir, bytes, 1,
		    &qerr) < 0) {
			log_warn("%s: maildirsize of %s: %s", msg->qid,
			    d->maildir, qerr);
		}
	}
	r = 0;
out:
	str_free(&head);
	return r;
}

static int
deliver_maildir(const struct deliver_ctx *ctx, const struct deliver_msg *msg,
    const struct route_dest *d, const char **where_r, char **dir_r,
    const char **error_r)
{
	char *dir;
	int r;

	*dir_r = NULL;
	*where_r = d->maildir;
	if (!msg->junk)
		return deliver_maildir_to(ctx, msg, d, d->maildir, NULL,
		    error_r);
	/* quarantined (DMARC): into the Junk folder (IMAP's \Junk), made
	 * when missing */
	dir = maildir_folder_path(d->maildir, "Junk");
	if (maildir_check_under(ctx->mail_root, d->maildir, error_r) < 0 ||
	    maildir_make_folder(d->maildir, "Junk", error_r) < 0) {
		free(dir);
		return -1;
	}
	r = deliver_maildir_to(ctx, msg, d, dir, NULL, error_r);
	*where_r = *dir_r = dir;
	return r;
}

/* Was the same final address already delivered into the same maildir
 * for an earlier destination of this message? (Postfix eliminates such
 * duplicates too: RCPT TO:<a> twice, or an alias and its target.) */
static bool
already_delivered(const struct deliver_msg *msg, size_t ri, size_t di)
{
	const struct route_dest *d = &msg->rcpts[ri].route->dests[di];

	for (size_t i = 0; i <= ri; i++) {
		const struct route_result *r = msg->rcpts[i].route;
		size_t jmax = i == ri ? di : r->ndests;

		for (size_t j = 0; j < jmax; j++) {
			const struct route_dest *e = &r->dests[j];

			if (e->kind == ROUTE_MAILDIR &&
			    strcmp(e->maildir, d->maildir) == 0 &&
			    strcmp(e->address, d->address) == 0)
				return true;
		}
	}
	return false;
}

/* The SRS sender of a forward's queued copy (malloc'd), or NULL: SRS
 * off, the null sender, mail our users send (signed), or a sender of a
 * hosted domain (the directory routes it without relaying). */
static char *
srs_sender(const struct deliver_ctx *ctx, const struct deliver_msg *msg)
{
	const char *at = strrchr(msg->sender, '@'), *why;
	char *res;

	if (ctx->srs_secret == NULL || ctx->srs_secret[0] == '\0' ||
	    ctx->srs_domain == NULL || msg->dkim_sign || at == NULL)
		return NULL;
	if (strcasecmp(at + 1, ctx->srs_domain) == 0)
		return NULL;
	if (msg->authc != NULL) {
		struct route_result r;
		bool hosted;

		authc_route(msg->authc, msg->sender, false, &r);
		hosted = r.status != ROUTE_RELAY_DENIED &&
		    r.status != ROUTE_TEMPFAIL && r.status != ROUTE_CONFIG;
		route_result_clear(&r);
		if (hosted)
			return NULL;
	}
	res = srs_forward(ctx->srs_secret, ctx->srs_domain, msg->sender,
	    time(NULL), &why);
	if (res == NULL)
		log_info("%s: srs: sender <%s> kept: %s", msg->qid,
		    msg->sender, why);
	else
		log_info("%s: srs: sender <%s> rewritten to <%s>", msg->qid,
		    msg->sender, res);
	return res;
}

/* The key that seals a forward: the given domain's, else the first
 * recipient's domain that has one, else srs_domain's. 1 with the key,
 * selector and domain (malloc'd), 0 without, -1 on error. */
static int
arc_key(const struct deliver_ctx *ctx, const struct deliver_msg *msg,
    char **key, char **sel, char **domain, const char **err)
{
	const char *cands[3] = { msg->arc_domain, NULL, ctx->srs_domain };
	int r;

	for (size_t i = 0; i < msg->nrcpts + 2; i++) {
		const char *d, *at;

		if (i == 0 || i == msg->nrcpts + 1) {
			d = cands[i == 0 ? 0 : 2];
		} else {
			at = strrchr(msg->rcpts[i - 1].address, '@');
			d = at != NULL ? at + 1 : NULL;
		}
		if (d == NULL || d[0] == '\0')
			continue;
		r = dkim_key_load(ctx->dkim_dir, d, key, sel, err);
		if (r != 0) {
			if (r > 0)
				*domain = xstrdup(d);
			return r;
		}
	}
	return 0;
}

/* ARC (RFC 8617 5.1): the set this hop adds to a forward, into head. */
static void
arc_seal_forward(const struct deliver_ctx *ctx, const struct deliver_msg *msg,
    const char *prefix, str_t *head)
{
	char *key = NULL, *sel = NULL, *domain = NULL;
	const char *err = NULL;
	int r;

	if (!ctx->arc_seal || msg->arc == NULL || msg->authres == NULL ||
	    msg->dkim_sign || ctx->dkim_dir == NULL)
		return;
	r = arc_key(ctx, msg, &key, &sel, &domain, &err);
	if (r < 0)
		log_error("%s: arc: %s", msg->qid, err);
	if (r <= 0)
		return;
	r = arc_seal(msg->arc, msg->authres, domain, sel, key, prefix,
	    msg->body, time(NULL), head, &err);
	if (r < 0)
		log_error("%s: arc: %s; forwarded unsealed", msg->qid, err);
	else if (r == 0)
		log_info("%s: arc: chain of %u set%s not continued", msg->qid,
		    msg->arc->n, msg->arc->n == 1 ? "" : "s");
	else
		log_info("%s: arc: sealed i=%u cv=%s d=%s s=%s", msg->qid,
		    msg->arc->n + 1, msg->arc->n == 0 ? "none" :
		    arc_result_name(msg->arc->result), domain, sel);
	explicit_bzero(key, strlen(key));
	free(key);
	free(sel);
	free(domain);
}

/* The remote recipients' queue file; with cut-through (ctx->cut) the
 * lmtp: ones are first handed to their backend from here, and the file
 * is published only for those left (remote[] and *nremote become them;
 * *handed_r counts the others). */
static int
deliver_queue(const struct deliver_ctx *ctx, const struct deliver_msg *msg,
    struct queue_rcpt *remote, size_t *nremote, size_t *handed_r,
    const char **error_r)
{
	const char *prefix = msg->prefix != NULL ? msg->prefix : "";
	const char *at = strrchr(msg->sender, '@');
	str_t head = STR_INIT;
	const char *err, *sender;
	struct queue_file qf;
	unsigned flags;
	bool cut = false, off_site = false, *done = NULL;
	size_t left = 0;
	char *srs;
	int r;

	*handed_r = 0;
	/* DKIM: mail our users send out is signed for the sender's domain
	 * when it has a key (RFC 6376). A signing failure is logged; the
	 * message goes out unsigned. */
	if (msg->dkim_sign && ctx->dkim_dir != NULL && at != NULL &&
	    dkim_sign_message(ctx->dkim_dir, at + 1, prefix, msg->body,
	    &head, &err) < 0)
		log_error("%s: %s", msg->qid, err);
	/* ARC and SRS: a message from outside forwarded off-site. Handed
	 * by LMTP (a frontend's backends, a transport to a mailbox server)
	 * it is delivered here, not forwarded: neither applies. */
	for (size_t i = 0; i < *nremote; i++)
		if (strncasecmp(remote[i].transport, "lmtp:", 5) != 0)
			off_site = true;
	if (off_site)
		arc_seal_forward(ctx, msg, prefix, &head);
	str_append(&head, prefix);
	srs = off_site ? srs_sender(ctx, msg) : NULL;
	sender = srs != NULL ? srs : msg->sender;
	/* RFC 8689 5: "TLS-Required: No" (its one value) asks that DANE
	 * and MTA-STS policies be set aside for this message; REQUIRETLS,
	 * when given, wins over it (4.1) */
	flags = msg->requiretls ? QUEUE_F_REQUIRETLS :
	    spool_header_has(msg->body, "TLS-Required") ?
	    QUEUE_F_TLS_OPTIONAL : 0;
	for (size_t i = 0; ctx->cut != NULL && i < *nremote; i++)
		if (deliver_cut_wanted(remote[i].transport))
			cut = true;
	if (!cut) {
		r = queue_enqueue(ctx->queue_dir, msg->qid, sender, flags,
		    remote, *nremote, str_c(&head), msg->body, error_r);
		goto out;
	}
	/* Cut-through: the queue file written, not yet durable nor seen
	 * by the queue manager; the backend's 2xx after the data means its
	 * copy is on its stable storage, so those recipients need no queue
	 * file, and the client's 250 comes after all this. Anything else
	 * is left to the queue: the file is then published as
	 * queue_enqueue would have, for those recipients only. A crash
	 * after a backend's 2xx and before the client's 250 makes a
	 * duplicate (the client sends again), as it does for the queue. */
	r = queue_write(ctx->queue_dir, msg->qid, sender, flags, remote,
	    *nremote, str_c(&head), msg->body, &qf, error_r);
	if (r < 0)
		goto out;
	done = xcalloc(*nremote, sizeof(*done));
	deliver_cut_run(ctx->cut, msg->qid, sender, remote, *nremote, qf.fd,
	    qf.body_offset, msg->arrival_ms, done);
	for (size_t i = 0; i < *nremote; i++)
		if (!done[i])
			remote[left++] = remote[i];
	*handed_r = *nremote - left;
	*nremote = left;
	if (*handed_r == 0) {
		r = queue_publish(&qf, error_r);
	} else {
		/* the file names every recipient: written again for the
		 * ones left (rare: a backend refused some) */
		queue_discard(&qf);
		r = left == 0 ? 0 : queue_enqueue(ctx->queue_dir, msg->qid,
		    sender, flags, remote, left, str_c(&head), msg->body,
		    error_r);
	}
out:
	free(done);
	str_free(&head);
	free(srs);
	return r;
}

/* A local delivery's line in Postfix virtual(8)'s shape, which log
 * readers (pflogsumm) count: "to=<a>, orig_to=<b>, relay=maildir,
 * delay=0.02, dsn=2.0.0, status=sent (...)", as program "virtual". */
void
deliver_log(const struct deliver_msg *msg, const char *orig,
    const char *to, const char *relay, const char *fmt, ...)
{
	const char *prev = log_service_set("virtual");
	long long ms = msg->arrival_ms > 0 ? monotonic_ms() - msg->arrival_ms :
	    0;
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	log_info("%s: to=<%s>, orig_to=<%s>, relay=%s, delay=%.2f, "
	    "dsn=2.0.0, status=sent (%s)", msg->qid, to, orig, relay,
	    ms > 0 ? (double)ms / 1000.0 : 0.0, text);
	node_counters_event(node_counters_self(), NODE_EVENT_DELIVERED);
	node_counters_observe(node_counters_self(), NODE_HIST_DELIVERY,
	    ms > 0 ? (double)ms / 1000.0 : 0.0);
	log_service_set(prev);
}

/* fsync the directories of the message's copies, each once, then append
 * their sizes to maildirsize. */
static int
batch_finish(const struct deliver_msg *msg, struct deliver_batch *b,
    const char **error_r)
{
	const char *qerr;

	if (maildir_batch_sync(b->copies, error_r) < 0)
		return -1;
	for (size_t i = 0; i < b->nquota; i++)
		if (maildir_quota_add(b->quota[i].maildir, b->quota[i].bytes,
		    1, &qerr) < 0)
			log_warn("%s: maildirsize of %s: %s", msg->qid,
			    b->quota[i].maildir, qerr);
	return 0;
}

static void
batch_free(struct deliver_batch *b)
{
	maildir_batch_free(&b->copies);
	for (size_t i = 0; i < b->nquota; i++)
		free(b->quota[i].maildir);
	free(b->quota);
}

int
deliver_message(const struct deliver_ctx *ctx, const struct deliver_msg *orig,
    struct deliver_result *result, const char **error_r)
{
	struct queue_rcpt *remote = NULL;
	struct deliver_wire wire = { STR_INIT, 0, false };
	struct deliver_batch batch = { maildir_batch_new(), NULL, 0 };
	struct deliver_msg copy = *orig;
	const struct deliver_msg *msg = &copy;
	size_t nremote = 0;
	int ret = 0;

	copy.batch = &batch;
	memset(result, 0, sizeof(*result));
	for (size_t i = 0; i < msg->nrcpts && ret == 0; i++) {
		const struct route_result *r = msg->rcpts[i].route;

		for (size_t j = 0; j < r->ndests; j++) {
			const struct route_dest *d = &r->dests[j];

			if (d->kind == ROUTE_REMOTE) {
				remote = xrealloc(remote, (nremote + 1) *
				    sizeof(*remote));
				remote[nremote].address = d->address;
				remote[nremote].transport = d->transport;
				nremote++;
				continue;
			}
			if (d->kind == ROUTE_DISCARD) {
				result->delivered++;
				deliver_log(msg, msg->rcpts[i].address,
				    d->address, "none",
				    "discarded by transport %s",
				    d->transport);
				continue;
			}
			if (already_delivered(msg, i, j)) {
				result->duplicates++;
				continue;
			}
			if (ctx->sieve != NULL && !msg->no_sieve) {
				int sr = deliver_sieve(ctx, msg,
				    msg->rcpts[i].address, d, msg->may_refuse &&
				    msg->nrcpts == 1 && r->ndests == 1, &wire,
				    result, error_r);

				if (sr < 0) {
					ret = -1;
					break;
				}
				if (sr > 0)
					continue;
			}
			{
				const char *where;
				char *dir;

				if (deliver_maildir(ctx, msg, d, &where, &dir,
				    error_r) < 0) {
					free(dir);
					ret = -1;
					break;
				}
				result->delivered++;
				deliver_log(msg, msg->rcpts[i].address,
				    d->address, "maildir", "delivered to "
				    "maildir %s", where);
				free(dir);
			}
		}
	}
	/* the maildir copies durable before the queue file: a failure here
	 * leaves nothing queued (the client's retry sends it all again).
	 * After a failed copy the ones made before it are made durable all
	 * the same, as when each was synced on its own: the client retries,
	 * and a duplicate beats a loss. */
	if (ret == 0) {
		if (batch_finish(msg, &batch, error_r) < 0)
			ret = -1;
	} else {
		char saved[ERR_MSG_MAX];
		int code = err_last_code();
		const char *ignored;

		snprintf(saved, sizeof(saved), "%s", error_r != NULL &&
		    *error_r != NULL ?
		    *error_r : "?");
		if (batch_finish(msg, &batch, &ignored) < 0)
			log_error("%s: the copies made before the failure: %s",
			    msg->qid, ignored);
		err_fail(error_r, code, "%s", saved);
	}
	if (ret == 0 && nremote > 0) {
		size_t handed;

		if (deliver_queue(ctx, msg, remote, &nremote, &handed,
		    error_r) < 0) {
			ret = -1;
		} else {
			result->handed = handed;
			result->queued = nremote;
			for (size_t i = 0; i < nremote; i++)
				log_info("%s: to=<%s>, status=queued (remote)",
				    msg->qid, remote[i].address);
		}
	}
	if (ret < 0)
		result->code = err_last_code();
	str_free(&wire.data);
	batch_free(&batch);
	free(remote);
	return ret;
}
