/*
 * session.c: ManageSieve (RFC 5804) on managesieve_listen: CAPABILITY,
 * STARTTLS, AUTHENTICATE (PLAIN and LOGIN under allow_plaintext_auth,
 * CRAM-MD5 when the directory has cleartext passwords), LOGOUT, NOOP,
 * UNAUTHENTICATE, XCLIENT (a frontend names its client before login, as
 * for POP3), and once logged in HAVESPACE, PUTSCRIPT, CHECKSCRIPT,
 * LISTSCRIPTS, SETACTIVE, GETSCRIPT, DELETESCRIPT and RENAMESCRIPT on the
 * user's script store (lib/sieve/store.c: what delivery runs and what
 * `petrel sieve` manages).
 *
 * Input: a command is its lines and literals ("{n+}" or "{n}" at the end
 * of a line, then n octets; no continuation is sent for "{n}", as
 * Pigeonhole does). It is gathered whole, bounded (MSIEVE_LINE_MAX a
 * line; a literal SIEVE_SCRIPT_MAX once logged in, MSIEVE_PREAUTH_MAX
 * before), then parsed (lib/managesieve/parse.c). A literal over its
 * bound is read and dropped (up to MSIEVE_SKIP_MAX, else the session
 * ends) and the command answered NO (QUOTA/MAXSIZE). SASL responses are
 * strings framed the same way.
 *
 * Store work (reads, durable writes, parsing a script) runs on the
 * worker's job threads; the reply is built there and written on the
 * loop. Logins take the path every protocol takes (lib/session: the
 * auth process, the failed-login delay, the lockouts).
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/auth/login.h"
#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/fdio.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/config/config.h"
#include "lib/dir/dir.h"
#include "lib/imap/parse.h"
#include "lib/io/jobs.h"
#include "lib/managesieve/parse.h"
#include "lib/route/route.h"
#include "lib/session/sasl.h"
#include "lib/session/session.h"
#include "lib/sieve/sieve.h"
#include "lib/sieve/store.h"
#include "managesieve/managesieve.h"

/* A command line (without its CRLF); SASL responses as quoted strings
 * are the longest lines that make sense. */
#define MSIEVE_LINE_MAX 8192
/* Before login, a literal (a SASL response) and the whole command. */
#define MSIEVE_PREAUTH_MAX 8192
/* A logged-in command: one script and a few lines around it. */
#define MSIEVE_CMD_MAX (SIEVE_SCRIPT_MAX + 4 * MSIEVE_LINE_MAX)
/* A literal over its bound that is still read (and dropped) so that the
 * client gets a NO; a larger one ends the session. */
#define MSIEVE_SKIP_MAX (16u * 1024 * 1024)
#define MSIEVE_ERRORS_MAX 20

enum msieve_state { M_AUTH, M_TRANS };

enum msieve_job { J_PUT, J_CHECK, J_LIST, J_SETACTIVE, J_GET, J_DELETE,
	J_RENAME, J_HAVESPACE };

struct msieve_session {
	struct session base;	/* first: the connection (lib/session) */
	struct msieve_server *srv;
	enum msieve_state state;
	struct sasl sasl;	/* AUTHENTICATE in progress */
	char *login;		/* the user, once logged in */
	struct sieve_store store;

	/* the command being gathered */
	str_t cmd;
	uint64_t lit_left;	/* literal octets still to come */
	bool in_literal;
	bool skip;		/* dropping a refused command's literal */
	bool refused;		/* answer NO (QUOTA/MAXSIZE) at its end */

	/* job in flight */
	struct job job;
	enum msieve_job job_kind;
	char *arg1, *arg2;	/* names */
	char *text;		/* PUTSCRIPT, CHECKSCRIPT */
	size_t text_len;
	uint64_t space;		/* HAVESPACE's size */
	str_t out;		/* the reply, built on the job thread */
};

#define reply(s, ...) session_reply(&(s)->base, __VA_ARGS__)
/* NO counts as an error: too many and the session ends. RFC 5804 has
 * no BAD: syntax errors are NO too, as Pigeonhole answers them. */
#define reply_no(s, ...) session_error(&(s)->base, "NO ", __VA_ARGS__)

/* ---- capabilities ---- */

static void
capabilities(struct msieve_session *s, str_t *o)
{
	str_t ext = STR_INIT;
	unsigned redirects = s->srv->max_redirects;

	str_append(o, "\"IMPLEMENTATION\" \"petrel\"\r\n");
	if (s->state == M_AUTH) {
		str_append(o, "\"SASL\" \"");
		if (session_plaintext_ok(&s->base))
			str_append(o, "PLAIN LOGIN");
		if (session_cram_ok(&s->base))
			str_append(o, session_plaintext_ok(&s->base) ?
			    " CRAM-MD5" : "CRAM-MD5");
		str_append(o, "\"\r\n");
	}
	sieve_extensions(&ext);
	str_append(o, "\"SIEVE\" ");
	msieve_put_string(o, str_c(&ext), ext.len);
	str_append(o, "\r\n");
	str_free(&ext);
	if (s->state == M_AUTH && !s->base.tls && s->srv->sv.tls != NULL)
		str_append(o, "\"STARTTLS\"\r\n");
	str_printf(o, "\"MAXREDIRECTS\" \"%u\"\r\n", redirects > 0 ?
	    redirects : SIEVE_REDIRECTS_DEFAULT);
	if (s->state == M_TRANS) {
		str_append(o, "\"OWNER\" ");
		msieve_put_string(o, s->login, strlen(s->login));
		str_append(o, "\r\n");
		str_append(o, "\"UNAUTHENTICATE\"\r\n");
	}
	str_append(o, "\"VERSION\" \"1.0\"\r\n");
}

static void
send_capabilities(struct msieve_session *s)
{
	str_t o = STR_INIT;

	capabilities(s, &o);
	str_append(&o, "OK \"Capability completed.\"\r\n");
	evbuffer_add(session_output(&s->base), o.data, o.len);
	str_free(&o);
}

/* ---- jobs (on a job thread) ---- */

/* The reply for a failed store operation, by its code. */
static void
store_failed(struct msieve_session *s, const char *what, const char *err)
{
	int code = err_last_code();

	switch (code) {
	case ENOENT:
		str_append(&s->out, "NO (NONEXISTENT) \"There is no such "
		    "script.\"\r\n");
		break;
	case EEXIST:
		str_append(&s->out, "NO (ALREADYEXISTS) \"A script with that "
		    "name already exists.\"\r\n");
		break;
	case EBUSY:
		str_append(&s->out, "NO (ACTIVE) \"The script is active: "
		    "deactivate it first.\"\r\n");
		break;
	case ERR_SYNTAX:
		str_append(&s->out, "NO \"Invalid script name.\"\r\n");
		break;
	case ERR_TOO_MANY:
		str_append(&s->out, "NO (QUOTA/MAXSCRIPTS) \"");
		str_append(&s->out, err);
		str_append(&s->out, ".\"\r\n");
		break;
	case ERR_TOO_BIG:
		str_append(&s->out, "NO (QUOTA/MAXSIZE) \"");
		str_append(&s->out, err);
		str_append(&s->out, ".\"\r\n");
		break;
	default:
		log_error("%016llx: managesieve %s for %s: %s", SID(&s->base),
		    what, s->login, err);
		if (err_code_is_full(code))
			str_append(&s->out, "NO (QUOTA) \"Not enough room to "
			    "store the script.\"\r\n");
		else
			str_append(&s->out, "NO (TRYLATER) \"The script "
			    "store is not available now.\"\r\n");
		break;
	}
}

/* Parse the script: true, or false with the NO written (the parser's
 * errors, one per line). */
static bool
check_text(struct msieve_session *s)
{
	struct sieve_script *script;
	str_t errors = STR_INIT;

	if (sieve_parse(s->text, s->text_len, &script, &errors) == 0) {
		sieve_free(script);
		return true;
	}
	while (errors.len > 0 && errors.data[errors.len - 1] == '\n')
		errors.len--;
	str_append(&s->out, "NO ");
	msieve_put_string(&s->out, errors.data != NULL ? errors.data : "",
	    errors.len);
	str_append(&s->out, "\r\n");
	str_free(&errors);
	return false;
}

static void
list_run(struct msieve_session *s)
{
	char **names, *active;
	size_t n;
	const char *err;

	if (sieve_store_list(&s->store, &names, &n, &active, &err) < 0) {
		store_failed(s, "LISTSCRIPTS", err);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		msieve_put_string(&s->out, names[i], strlen(names[i]));
		if (active != NULL && strcmp(active, names[i]) == 0)
			str_append(&s->out, " ACTIVE");
		str_append(&s->out, "\r\n");
	}
	str_append(&s->out, "OK \"Listscripts completed.\"\r\n");
	sieve_names_free(names, n);
	free(active);
}

static void
get_run(struct msieve_session *s)
{
	char *path = sieve_store_path(&s->store, s->arg1), *data;
	size_t len;
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		int e = fd < 0 ? errno : ENOENT;

		if (fd >= 0)
			close(fd);
		err_fail(NULL, e == ELOOP ? ENOENT : e, "open(%s) failed: %s",
		    path, strerror(e));
		store_failed(s, "GETSCRIPT", err_last());
		free(path);
		return;
	}
	if (st.st_size > SIEVE_SCRIPT_MAX ||
	    read_fd_all(fd, &data, &len, &st) < 0) {
		err_fail(NULL, ERR_OTHER, "%s: unreadable or larger than %d "
		    "bytes", path, SIEVE_SCRIPT_MAX);
		store_failed(s, "GETSCRIPT", err_last());
		close(fd);
		free(path);
		return;
	}
	close(fd);
	str_printf(&s->out, "{%zu}\r\n", len);
	str_append_n(&s->out, data, len);
	str_append(&s->out, "\r\nOK \"Getscript completed.\"\r\n");
	free(data);
	free(path);
}

static void
job_run(struct job *job, void *state)
{
	struct msieve_session *s = (struct msieve_session *)((char *)job -
	    offsetof(struct msieve_session, job));
	const char *err;

	(void)state;
	err_clear();
	switch (s->job_kind) {
	case J_CHECK:
		if (check_text(s))
			str_append(&s->out, "OK \"Script is valid.\"\r\n");
		break;
	case J_PUT:
		if (!check_text(s))
			break;
		if (sieve_store_put(&s->store, s->arg1, s->text, s->text_len,
		    &err) < 0)
			store_failed(s, "PUTSCRIPT", err);
		else
			str_append(&s->out, "OK \"Putscript completed.\"\r\n");
		break;
	case J_LIST:
		list_run(s);
		break;
	case J_SETACTIVE:
		if (sieve_store_activate(&s->store, s->arg1, &err) < 0)
			store_failed(s, "SETACTIVE", err);
		else
			str_append(&s->out, "OK \"Setactive completed.\"\r\n");
		break;
	case J_GET:
		get_run(s);
		break;
	case J_DELETE:
		if (sieve_store_delete(&s->store, s->arg1, &err) < 0)
			store_failed(s, "DELETESCRIPT", err);
		else
			str_append(&s->out, "OK \"Deletescript "
			    "completed.\"\r\n");
		break;
	case J_HAVESPACE:
		/* the limits of sieve_max_scripts and sieve_max_storage */
		if (sieve_store_space(&s->store, s->arg1, s->space, &err) < 0)
			store_failed(s, "HAVESPACE", err);
		else
			str_append(&s->out, "OK \"Putscript would "
			    "succeed.\"\r\n");
		break;
	case J_RENAME:
		if (sieve_store_rename(&s->store, s->arg1, s->arg2, &err) < 0)
			store_failed(s, "RENAMESCRIPT", err);
		else
			str_append(&s->out, "OK \"Renamescript "
			    "completed.\"\r\n");
		break;
	}
}

static void
job_clear(struct msieve_session *s)
{
	xfree(&s->arg1);
	xfree(&s->arg2);
	xfree(&s->text);
	s->text_len = 0;
	str_free(&s->out);
}

static void
job_done(struct job *job)
{
	struct msieve_session *s = (struct msieve_session *)((char *)job -
	    offsetof(struct msieve_session, job));

	if (!s->base.dead) {
		if (s->job_kind == J_PUT || s->job_kind == J_SETACTIVE ||
		    s->job_kind == J_DELETE || s->job_kind == J_RENAME)
			log_info("%016llx: managesieve: user=<%s>, %s%s%s%s: %s",
			    SID(&s->base), s->login,
			    s->job_kind == J_PUT ? "put " :
			    s->job_kind == J_SETACTIVE ? "setactive " :
			    s->job_kind == J_DELETE ? "delete " : "rename ",
			    s->arg1 != NULL ? s->arg1 : "",
			    s->arg2 != NULL ? " to " : "",
			    s->arg2 != NULL ? s->arg2 : "",
			    strncmp(str_c(&s->out), "OK", 2) == 0 ? "ok" :
			    "refused");
		/* a NO here is an answer about the store (no such script,
		 * a name taken), not a client's mistake: not counted */
		evbuffer_add(session_output(&s->base), s->out.data,
		    s->out.len);
	}
	job_clear(s);
	session_job_finished(&s->base);
}

static void
submit(struct msieve_session *s, enum msieve_job kind)
{
	s->job_kind = kind;
	s->job.run = job_run;
	s->job.done = job_done;
	s->job.next = NULL;
	session_job_submit(&s->base, s->srv->sv.jobs, &s->job);
}

/* ---- logins ---- */

/* After a good password, on the directory thread: the user's store. */
static int
login_run(struct session *base, struct authc *ac, const struct dir_user *u)
{
	struct msieve_session *s = (struct msieve_session *)base;
	char *maildir, *home;

	(void)ac;
	maildir = route_maildir_path(s->srv->mail_root, u->maildir);
	if (maildir == NULL) {
		log_error("%016llx: user %s has an unusable maildir",
		    SID(&s->base), u->address);
		return AUTH_TEMPFAIL;
	}
	home = route_user_home(s->srv->mail_root, u->home, maildir);
	free(maildir);
	sieve_store_clear(&s->store);
	sieve_store_init(&s->store, s->srv->sieve_dir, home, u->address);
	s->store.max_scripts = s->srv->max_scripts;
	s->store.max_storage = s->srv->max_storage;
	free(home);
	free(s->login);
	s->login = xstrdup(u->address);
	return AUTH_OK;
}

static void
login_done(struct session *base, int result)
{
	struct msieve_session *s = (struct msieve_session *)base;

	if (result == AUTH_OK) {
		s->state = M_TRANS;
		log_info("%016llx: managesieve login: user=<%s>, %s%s",
		    SID(&s->base), s->login, s->base.peer,
		    s->base.tls ? ", TLS" : "");
		reply(s, "OK \"Logged in.\"");
	} else if (result == AUTH_TEMPFAIL) {
		reply_no(s, "(TRYLATER) \"Temporary authentication failure, "
		    "try again later.\"");
	} else {
		reply_no(s, "\"Authentication failed.\"");
	}
}

/* A frontend: the user's backend session is open and bytes are relayed
 * from now on, or it is not (caps NULL; lib/session). */
static void
proxied(struct session *base, const char *user, const char *caps)
{
	struct msieve_session *s = (struct msieve_session *)base;

	if (caps != NULL) {
		s->state = M_TRANS;
		reply(s, "OK \"Logged in.\"");
	} else {
		reply_no(s, "(TRYLATER) \"The mail server of this account "
		    "cannot be reached, try again later.\"");
	}
}

static void
auth_error(struct session *base, const char *line)
{
	reply_no((struct msieve_session *)base, "\"%s\"", line);
}

static const struct session_sasl_words sasl_words = {
	.challenge = "\"",
	.challenge_end = "\"",
	.aborted = "Authentication aborted.",
	.bad = "Invalid SASL response.",
	.nomech = "Unsupported authentication mechanism.",
	.error = auth_error,
};

/* ---- commands ---- */

/* The argument types a command takes: 'S' a string, 'N' a number (an
 * atom of digits), 's' an optional string at the end. */
static bool
args_ok(struct msieve_session *s, const struct msieve_cmd *c,
    const char *types)
{
	size_t need = 0, max = strlen(types);

	for (const char *t = types; *t != '\0'; t++)
		if (*t != 's')
			need++;
	if (c->nargs < need || c->nargs > max)
		goto bad;
	for (size_t i = 0; i < c->nargs; i++) {
		if (types[i] == 'N') {
			if (c->args[i].type != MSIEVE_ATOM || c->args[i].len == 0 ||
			    c->args[i].len > 19 ||
			    strspn(c->args[i].s, "0123456789") !=
			    c->args[i].len)
				goto bad;
		} else if (c->args[i].type != MSIEVE_STRING) {
			goto bad;
		}
	}
	return true;
bad:
	reply_no(s, "\"Wrong arguments for %s.\"", c->name);
	return false;
}

/* A script name argument (RFC 5804 1.6, as the store takes them). */
static bool
name_ok(struct msieve_session *s, const struct msieve_arg *a)
{
	if (strlen(a->s) == a->len && sieve_name_valid(a->s))
		return true;
	reply_no(s, "\"Invalid script name.\"");
	return false;
}

static void
cmd_capability(struct msieve_session *s, struct msieve_cmd *c)
{
	if (args_ok(s, c, ""))
		send_capabilities(s);
}

static void
cmd_logout(struct msieve_session *s, struct msieve_cmd *c)
{
	if (!args_ok(s, c, ""))
		return;
	reply(s, "OK \"Logout completed.\"");
	session_quit(&s->base);
}

static void
cmd_noop(struct msieve_session *s, struct msieve_cmd *c)
{
	str_t o = STR_INIT;

	if (!args_ok(s, c, "s"))
		return;
	str_append(&o, "OK ");
	if (c->nargs == 1) {
		str_append(&o, "(TAG ");
		msieve_put_string(&o, c->args[0].s, c->args[0].len);
		str_append(&o, ") ");
	}
	str_append(&o, "\"Done\"\r\n");
	evbuffer_add(session_output(&s->base), o.data, o.len);
	str_free(&o);
}

static void
cmd_starttls(struct msieve_session *s, struct msieve_cmd *c)
{
	if (!args_ok(s, c, ""))
		return;
	if (s->base.tls) {
		reply_no(s, "\"TLS is already active.\"");
		return;
	}
	if (s->srv->sv.tls == NULL) {
		reply_no(s, "\"TLS is not available.\"");
		return;
	}
	reply(s, "OK \"Begin TLS negotiation now.\"");
	if (session_starttls(&s->base) < 0)
		return;
	/* anything pipelined after STARTTLS was dropped; RFC 5804 2.2:
	 * the capabilities again, over TLS */
	sasl_reset(&s->sasl);
	send_capabilities(s);
}

/* XCLIENT ADDR=a PORT=p (atoms or strings, any order): a frontend in
 * proxy_trusted_networks names its client before login, as POP3's
 * XCLIENT does; refused to anyone else, and after a login or a first
 * XCLIENT. */
static void
cmd_xclient(struct msieve_session *s, struct msieve_cmd *c)
{
	const char *ip = NULL;
	unsigned port = 0;

	if (!s->base.proxy_trusted) {
		reply_no(s, "\"XCLIENT not allowed from this address.\"");
		return;
	}
	for (size_t i = 0; i < c->nargs; i++) {
		const struct msieve_arg *a = &c->args[i];

		if (strlen(a->s) != a->len)
			continue;
		if (strncasecmp(a->s, "ADDR=", 5) == 0)
			ip = a->s + 5;
		else if (strncasecmp(a->s, "PORT=", 5) == 0)
			port = (unsigned)strtoul(a->s + 5, NULL, 10) & 0xffff;
	}
	if (ip == NULL || !session_set_client(&s->base, ip, port)) {
		reply_no(s, "\"XCLIENT needs ADDR=address, once.\"");
		return;
	}
	reply(s, "OK \"Client address set.\"");
}

static void
cmd_authenticate(struct msieve_session *s, struct msieve_cmd *c)
{
	const char *mech, *ir = NULL;
	unsigned mechs = 0;

	if (!args_ok(s, c, "Ss"))
		return;
	mech = c->args[0].s;
	if (c->nargs == 2) {
		if (strlen(c->args[1].s) != c->args[1].len) {
			reply_no(s, "\"Invalid SASL response.\"");
			return;
		}
		/* an empty initial response is "=" to the SASL code */
		ir = c->args[1].len > 0 ? c->args[1].s : "=";
	}
	if (strcasecmp(mech, "CRAM-MD5") == 0 && session_cram_ok(&s->base)) {
		if (ir != NULL) {
			reply_no(s, "\"CRAM-MD5 takes no initial "
			    "response.\"");
			return;
		}
		mechs = SASL_MECH_CRAM_MD5;
	} else if (strcasecmp(mech, "PLAIN") == 0 ||
	    strcasecmp(mech, "LOGIN") == 0) {
		if (!session_plaintext_ok(&s->base)) {
			reply_no(s, "(ENCRYPT-NEEDED) \"Plain-text "
			    "authentication is not allowed without TLS.\"");
			return;
		}
		mechs = SASL_MECH_PLAIN | SASL_MECH_LOGIN;
	} else {
		reply_no(s, "\"Unsupported authentication mechanism.\"");
		return;
	}
	session_sasl_start(&s->base, &s->sasl, &sasl_words, mechs, mech, ir);
}

static void
cmd_unauthenticate(struct msieve_session *s, struct msieve_cmd *c)
{
	if (!args_ok(s, c, ""))
		return;
	log_info("%016llx: managesieve logout: user=<%s>", SID(&s->base),
	    s->login);
	s->state = M_AUTH;
	xfree(&s->login);
	sieve_store_clear(&s->store);
	reply(s, "OK \"Unauthenticate completed.\"");
}

static void
cmd_havespace(struct msieve_session *s, struct msieve_cmd *c)
{
	if (!args_ok(s, c, "SN") || !name_ok(s, &c->args[0]))
		return;
	if (strtoull(c->args[1].s, NULL, 10) > SIEVE_SCRIPT_MAX) {
		reply_no(s, "(QUOTA/MAXSIZE) \"Scripts may be at most %d "
		    "bytes.\"", SIEVE_SCRIPT_MAX);
		return;
	}
	s->arg1 = xstrdup(c->args[0].s);
	s->space = strtoull(c->args[1].s, NULL, 10);
	submit(s, J_HAVESPACE);
}

static void
take_text(struct msieve_session *s, const struct msieve_arg *a)
{
	s->text = xmalloc(a->len + 1);
	memcpy(s->text, a->s, a->len + 1);
	s->text_len = a->len;
}

static void
cmd_putscript(struct msieve_session *s, struct msieve_cmd *c)
{
	if (!args_ok(s, c, "SS") || !name_ok(s, &c->args[0]))
		return;
	s->arg1 = xstrdup(c->args[0].s);
	take_text(s, &c->args[1]);
	submit(s, J_PUT);
}

static void
cmd_checkscript(struct msieve_session *s, struct msieve_cmd *c)
{
	if (!args_ok(s, c, "S"))
		return;
	take_text(s, &c->args[0]);
	submit(s, J_CHECK);
}

static void
cmd_listscripts(struct msieve_session *s, struct msieve_cmd *c)
{
	if (args_ok(s, c, ""))
		submit(s, J_LIST);
}

static void
cmd_setactive(struct msieve_session *s, struct msieve_cmd *c)
{
	if (!args_ok(s, c, "S"))
		return;
	/* "" deactivates (RFC 5804 2.8) */
	if (c->args[0].len > 0) {
		if (!name_ok(s, &c->args[0]))
			return;
		s->arg1 = xstrdup(c->args[0].s);
	}
	submit(s, J_SETACTIVE);
}

static void
cmd_getscript(struct msieve_session *s, struct msieve_cmd *c)
{
	if (!args_ok(s, c, "S") || !name_ok(s, &c->args[0]))
		return;
	s->arg1 = xstrdup(c->args[0].s);
	submit(s, J_GET);
}

static void
cmd_deletescript(struct msieve_session *s, struct msieve_cmd *c)
{
	if (!args_ok(s, c, "S") || !name_ok(s, &c->args[0]))
		return;
	s->arg1 = xstrdup(c->args[0].s);
	submit(s, J_DELETE);
}

static void
cmd_renamescript(struct msieve_session *s, struct msieve_cmd *c)
{
	if (!args_ok(s, c, "SS") || !name_ok(s, &c->args[0]) ||
	    !name_ok(s, &c->args[1]))
		return;
	s->arg1 = xstrdup(c->args[0].s);
	s->arg2 = xstrdup(c->args[1].s);
	submit(s, J_RENAME);
}

/* Where a command may run (bits). */
#define IN_AUTH		0x1	/* not authenticated */
#define IN_TRANS	0x2	/* authenticated */

static const struct msieve_command {
	const char *name;
	void (*fn)(struct msieve_session *s, struct msieve_cmd *c);
	unsigned states;
} commands[] = {
	{ "CAPABILITY", cmd_capability, IN_AUTH | IN_TRANS },
	{ "LOGOUT", cmd_logout, IN_AUTH | IN_TRANS },
	{ "NOOP", cmd_noop, IN_AUTH | IN_TRANS },
	{ "STARTTLS", cmd_starttls, IN_AUTH },
	{ "AUTHENTICATE", cmd_authenticate, IN_AUTH },
	{ "UNAUTHENTICATE", cmd_unauthenticate, IN_TRANS },
	{ "XCLIENT", cmd_xclient, IN_AUTH },
	{ "HAVESPACE", cmd_havespace, IN_TRANS },
	{ "PUTSCRIPT", cmd_putscript, IN_TRANS },
	{ "CHECKSCRIPT", cmd_checkscript, IN_TRANS },
	{ "LISTSCRIPTS", cmd_listscripts, IN_TRANS },
	{ "SETACTIVE", cmd_setactive, IN_TRANS },
	{ "GETSCRIPT", cmd_getscript, IN_TRANS },
	{ "DELETESCRIPT", cmd_deletescript, IN_TRANS },
	{ "RENAMESCRIPT", cmd_renamescript, IN_TRANS },
};

/* A SASL response: one string (RFC 5804 2.1). */
static void
sasl_response(struct msieve_session *s, const char *buf, size_t len)
{
	str_t line = STR_INIT;
	struct msieve_cmd c;
	const char *err;

	/* parsed as the argument of a command with no name */
	str_reserve(&line, len + 2);
	str_append_n(&line, "X ", 2);
	str_append_n(&line, buf, len);
	if (msieve_parse(line.data, line.len, &c, &err) < 0 ||
	    c.nargs != 1 || c.args[0].type != MSIEVE_STRING ||
	    strlen(c.args[0].s) != c.args[0].len) {
		sasl_reset(&s->sasl);
		reply_no(s, "\"Invalid SASL response.\"");
	} else {
		session_sasl_step(&s->base, &s->sasl, &sasl_words,
		    c.args[0].s);
	}
	msieve_cmd_clear(&c);
	explicit_bzero(line.data, line.cap);
	str_free(&line);
}

static void
dispatch(struct msieve_session *s, const char *buf, size_t len)
{
	struct msieve_cmd c;
	const char *err;
	unsigned in = s->state == M_AUTH ? IN_AUTH : IN_TRANS;

	if (sasl_active(&s->sasl)) {
		sasl_response(s, buf, len);
		return;
	}
	if (msieve_parse(buf, len, &c, &err) < 0) {
		reply_no(s, "\"%s.\"", err);
		msieve_cmd_clear(&c);
		return;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, c.name) != 0)
			continue;
		if (commands[i].states & in)
			commands[i].fn(s, &c);
		else if (in == IN_AUTH)
			reply_no(s, "\"Authenticate first.\"");
		else
			reply_no(s, "\"Already authenticated.\"");
		msieve_cmd_clear(&c);
		return;
	}
	reply_no(s, "\"Unknown command.\"");
	msieve_cmd_clear(&c);
}

static void
cmd_reset(struct msieve_session *s)
{
	if (s->cmd.data != NULL)
		explicit_bzero(s->cmd.data, s->cmd.cap);
	str_free(&s->cmd);
	s->in_literal = s->skip = s->refused = false;
	s->lit_left = 0;
}

/* The session ends on input it cannot frame. */
static void
bye(struct msieve_session *s, const char *text)
{
	sasl_reset(&s->sasl);
	cmd_reset(s);
	reply(s, "BYE \"%s\"", text);
	log_info("%016llx: managesieve: %s, from %s", SID(&s->base), text,
	    s->base.peer);
	session_quit(&s->base);
}

/* A line of the command (or its last one): gather it; true when the
 * command is complete. */
static bool
take_line(struct msieve_session *s, const char *line, size_t n)
{
	bool authed = s->state == M_TRANS && !sasl_active(&s->sasl);
	uint64_t max = authed ? MSIEVE_CMD_MAX : MSIEVE_PREAUTH_MAX, size;
	bool nonsync;

	if (!s->skip) {
		if (s->cmd.len + n + 2 > max) {
			bye(s, "Command too long");
			return false;
		}
		str_append_n(&s->cmd, line, n);
	}
	if (!imap_line_literal(line, n, &size, &nonsync))
		return true;
	if (size > (authed ? (uint64_t)SIEVE_SCRIPT_MAX : MSIEVE_PREAUTH_MAX)) {
		if (!authed || size > MSIEVE_SKIP_MAX) {
			bye(s, "Literal too large");
			return false;
		}
		/* read and dropped with the rest of the command, which is
		 * then refused */
		s->skip = s->refused = true;
	}
	if (!s->skip && s->cmd.len + size + 2 > max) {
		bye(s, "Command too long");
		return false;
	}
	if (!s->skip)
		str_append_n(&s->cmd, "\r\n", 2);
	s->in_literal = size > 0;
	s->lit_left = size;
	return false;
}

/* Command input (lib/session calls this while no job runs). Returns
 * whether a command is partly buffered (its deadline runs). */
static bool
msieve_process(struct session *base)
{
	struct msieve_session *s = (struct msieve_session *)base;

	while (!base->busy && !base->quit && !session_output_full(base)) {
		/* fetched each time: STARTTLS puts a new connection in */
		struct evbuffer *in = session_input(base);
		char *line;
		size_t n;
		int r;

		if (s->in_literal) {
			size_t have = evbuffer_get_length(in);
			size_t k = s->lit_left < have ? (size_t)s->lit_left :
			    have;

			if (k == 0)
				break;
			if (s->skip) {
				evbuffer_drain(in, k);
			} else {
				str_reserve(&s->cmd, k);
				evbuffer_remove(in, s->cmd.data + s->cmd.len,
				    k);
				s->cmd.len += k;
				s->cmd.data[s->cmd.len] = '\0';
			}
			s->lit_left -= k;
			if (s->lit_left == 0)
				s->in_literal = false;
			continue;
		}
		r = session_take_line(base, MSIEVE_LINE_MAX, &line, &n);
		if (r == 0)
			break;
		if (r < 0) {
			bye(s, "Line too long");
			break;
		}
		if (take_line(s, line, n)) {
			if (s->refused) {
				cmd_reset(s);
				reply_no(s, "(QUOTA/MAXSIZE) \"Scripts may be "
				    "at most %d bytes.\"", SIEVE_SCRIPT_MAX);
			} else {
				str_t cmd = s->cmd;

				s->cmd = (str_t)STR_INIT;
				cmd_reset(s);
				dispatch(s, cmd.data != NULL ? cmd.data : "",
				    cmd.len);
				if (cmd.data != NULL)
					explicit_bzero(cmd.data, cmd.cap);
				str_free(&cmd);
			}
		}
		session_line_free(line, n);
	}
	return s->in_literal || s->cmd.len > 0 ||
	    evbuffer_get_length(session_input(base)) > 0;
}

static void
msieve_timeout(struct session *base)
{
	reply((struct msieve_session *)base,
	    "BYE \"Disconnected for inactivity.\"");
}

static bool
msieve_drain(struct session *base)
{
	reply((struct msieve_session *)base,
	    "BYE (TRYLATER) \"Server shutting down.\"");
	return true;
}

static void
msieve_cleanup(struct session *base)
{
	struct msieve_session *s = (struct msieve_session *)base;

	sasl_reset(&s->sasl);
	cmd_reset(s);
	job_clear(s);
	sieve_store_clear(&s->store);
	free(s->login);
}

static void
msieve_greet(struct session *base)
{
	struct msieve_session *s = (struct msieve_session *)base;
	str_t o = STR_INIT;

	s->srv = base->srv->owner;
	capabilities(s, &o);
	str_append(&o, "OK \"petrel ManageSieve ready.\"\r\n");
	evbuffer_add(session_output(base), o.data, o.len);
	str_free(&o);
}

static const struct session_ops msieve_ops = {
	.size = sizeof(struct msieve_session), .proto = "managesieve",
	.listeners = { "managesieve" }, .implicit_tls = { false },
	.timeout_key = "managesieve_timeout", .login_timeout = true,
	.errors_max = MSIEVE_ERRORS_MAX,
	.too_many_errors = "BYE \"Too many errors.\"",
	.refusal = "BYE (TRYLATER) \"Too many connections, try again "
	    "later.\"",
	.greet = msieve_greet, .process = msieve_process,
	.timeout = msieve_timeout, .drain = msieve_drain,
	.cleanup = msieve_cleanup,
	.login_job = login_run, .login_done = login_done,
	.proxied = proxied, .backend_port_field = 3,
};

void
msieve_server_init(struct msieve_server *srv, struct event_base *base,
    struct jobs *jobs, const struct config *cfg, struct tls_server *tls)
{
	srv->mail_root = config_get(cfg, "mail_root");
	srv->sieve_dir = config_get(cfg, "sieve_dir");
	srv->max_scripts = (unsigned)config_get_uint(cfg, "sieve_max_scripts");
	srv->max_storage = config_get_uint(cfg, "sieve_max_storage");
	srv->max_redirects = (unsigned)config_get_uint(cfg,
	    "sieve_max_redirects");
	session_server_init(&srv->sv, &msieve_ops, srv, base, jobs, cfg, tls);
}

void
msieve_server_deinit(struct msieve_server *srv)
{
	session_server_deinit(&srv->sv);
}
