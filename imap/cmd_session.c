/*
 * cmd_session.c: the connection-level commands that need no login or no
 * mailbox: CAPABILITY, LOGOUT, ID (RFC 2971), ENABLE (RFC 5161),
 * NAMESPACE (RFC 2342), IDLE (RFC 2177) and COMPRESS (RFC 4978). They run on the loop thread
 * (ON_LOOP in the command table, session.c).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <strings.h>

#include "imap/imap-private.h"
#include "lib/base/log.h"
#include "lib/session/session.h"

void
imap_capabilities(const struct imap_session *s, str_t *out)
{
	str_append(out, "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE "
	    "NAMESPACE UNSELECT");
	if (s->state == S_NOAUTH) {
		if (!s->base.tls && s->srv->sv.tls != NULL)
			str_append(out, " STARTTLS");
		if (session_plaintext_ok(&s->base))
			str_append(out, " AUTH=PLAIN");
		if (session_cram_ok(&s->base))
			str_append(out, " AUTH=CRAM-MD5");
		if (!session_plaintext_ok(&s->base))
			str_append(out, " LOGINDISABLED");
	} else {
		str_append(out, " UIDPLUS MOVE CHILDREN SPECIAL-USE QUOTA "
		    "ESEARCH SEARCHRES COMPRESS=DEFLATE STATUS=SIZE "
		    "LIST-EXTENDED LIST-STATUS CREATE-SPECIAL-USE SORT "
		    "SORT=DISPLAY ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES "
		    "MULTIAPPEND REPLACE BINARY OBJECTID SAVEDATE PREVIEW "
		    "CATENATE METADATA METADATA-SERVER NOTIFY CONDSTORE QRESYNC "
		    "CONTEXT=SEARCH CONTEXT=SORT");
		/* one limit for every mailbox (RFC 7889 3.1) */
		str_printf(out, " APPENDLIMIT=%llu",
		    (unsigned long long)s->srv->size_limit);
	}
}

void
imap_cmd_capability(struct imap_session *s, struct imap_cmd *c)
{
	str_t caps = STR_INIT;

	if (c->nargs != 0) {
		imap_bad(s, "CAPABILITY takes no arguments");
		return;
	}
	imap_capabilities(s, &caps);
	imap_untagged(s, "CAPABILITY %s", str_c(&caps));
	str_free(&caps);
	imap_ok(s, "Capability completed.");
}

void
imap_cmd_logout(struct imap_session *s, struct imap_cmd *c)
{
	imap_untagged(s, "BYE Logging out");
	imap_ok(s, "Logout completed.");
	if (s->logged_in) {
		log_info("%016llx: imap logout: user=<%s>", SID(&s->base), s->login);
		s->logged_out = true;
	}
	imap_logout(s);
}

void
imap_cmd_id(struct imap_session *s, struct imap_cmd *c)
{
	if (c->nargs != 1) {
		imap_bad(s, "ID takes one argument");
		return;
	}
	/* A frontend (proxy_trusted_networks) names its client before
	 * login (Dovecot's field names); from anyone else this is only
	 * informational, and ignored. */
	if (s->state == S_NOAUTH && s->base.proxy_trusted &&
	    c->args[0].type == IMAP_ARG_LIST) {
		const char *ip = NULL;
		unsigned port = 0;

		for (size_t i = 0; i + 1 < c->args[0].nlist; i += 2) {
			const char *k = imap_arg_astring(&c->args[0].list[i]);
			const char *v = imap_arg_astring(
			    &c->args[0].list[i + 1]);

			if (k == NULL || v == NULL)
				continue;
			if (strcasecmp(k, "x-originating-ip") == 0)
				ip = v;
			else if (strcasecmp(k, "x-originating-port") == 0)
				port = (unsigned)strtoul(v, NULL, 10) & 0xffff;
		}
		if (ip != NULL)
			(void)session_set_client(&s->base, ip, port);
	}
	imap_untagged(s, "ID (\"name\" \"petrel\" \"version\" \"%s\")",
	    PETREL_VERSION);
	imap_ok(s, "ID completed.");
}

void
imap_cmd_enable(struct imap_session *s, struct imap_cmd *c)
{
	bool cs = false, qr = false;
	str_t en = STR_INIT;

	if (c->nargs == 0) {
		imap_bad(s, "ENABLE needs capability names");
		return;
	}
	/* CONDSTORE and QRESYNC (RFC 7162; QRESYNC implies CONDSTORE),
	 * IMAP4rev2 (RFC 9051); other names are ignored (RFC 5161) */
	for (size_t k = 0; k < c->nargs; k++) {
		if (c->args[k].type != IMAP_ARG_ATOM) {
			imap_bad(s, "ENABLE takes capability names");
			str_free(&en);
			return;
		}
		if (strcasecmp(c->args[k].str, "CONDSTORE") == 0)
			cs = true;
		else if (strcasecmp(c->args[k].str, "QRESYNC") == 0)
			qr = true;
		else if (strcasecmp(c->args[k].str, "IMAP4rev2") == 0 &&
		    !s->rev2) {
			s->rev2 = true;
			str_append(&en, " IMAP4rev2");
		}
	}
	/* ENABLED names what this command enabled */
	if (cs && !s->condstore)
		str_append(&en, " CONDSTORE");
	if (qr && !s->qresync)
		str_append(&en, " QRESYNC");
	if (cs || qr)
		imap_condstore_enable(s);
	if (qr)
		s->qresync = true;
	imap_untagged(s, "ENABLED%s", str_c(&en));
	str_free(&en);
	imap_ok(s, "Enabled.");
}

void
imap_cmd_namespace(struct imap_session *s, struct imap_cmd *c)
{
	if (c->nargs != 0) {
		imap_bad(s, "NAMESPACE takes no arguments");
		return;
	}
	/* the personal namespace: imap_namespace_prefix (folders.c) */
	imap_untagged(s, "NAMESPACE ((\"%s\" \".\")) NIL NIL",
	    s->srv->ns_prefix);
	imap_ok(s, "Namespace completed.");
}

void
imap_cmd_idle(struct imap_session *s, struct imap_cmd *c)
{
	if (c->nargs != 0) {
		imap_bad(s, "IDLE takes no arguments");
		return;
	}
	if (s->state == S_SELECTED) {
		imap_idle_sync(s);
		return;
	}
	imap_idle_begin(s);
}

void
imap_idle_done(struct imap_session *s, const char *line)
{
	s->idling = false;
	if (s->sync_ev != NULL)
		evtimer_del(s->sync_ev);
	if (strcasecmp(line, "DONE") != 0)
		imap_bad(s, "Expected DONE");
	else
		imap_ok(s, "IDLE terminated.");
	imap_flush(s);
	imap_end_command(s);
}

/* COMPRESS DEFLATE (RFC 4978): the tagged OK leaves uncompressed, then
 * both directions are raw deflate until the connection ends. */
void
imap_cmd_compress(struct imap_session *s, struct imap_cmd *c)
{
	if (c->nargs != 1 || c->args[0].type != IMAP_ARG_ATOM) {
		imap_bad(s, "COMPRESS needs a mechanism");
		return;
	}
	if (strcasecmp(c->args[0].str, "DEFLATE") != 0) {
		imap_bad(s, "Unknown compression mechanism");
		return;
	}
	if (s->base.compressed) {
		imap_no(s, "[COMPRESSIONACTIVE] DEFLATE is already active");
		return;
	}
	imap_ok(s, "DEFLATE active");
	imap_flush(s);
	if (session_compress(&s->base) < 0) {
		log_warn("%016llx: imap: cannot start COMPRESS=DEFLATE",
		    SID(&s->base));
		imap_logout(s);
		return;
	}
	log_info("%016llx: imap: COMPRESS=DEFLATE active", SID(&s->base));
}
