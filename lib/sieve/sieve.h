#ifndef PETREL_SIEVE_H
#define PETREL_SIEVE_H
/*
 * Sieve mail filtering (RFC 5228) with the extensions petrel knows:
 * fileinto, reject/ereject (RFC 5429), envelope, encoded-character,
 * copy (RFC 3894), body (RFC 5173), variables (RFC 5229), relational
 * (RFC 5231), subaddress (RFC 5233), imap4flags (RFC 5232), mailbox
 * (RFC 5490), vacation (RFC 5230) with vacation-seconds (RFC 6131),
 * date and index (RFC 5260), editheader (RFC 5293), duplicate
 * (RFC 7352), include (RFC 6609) and the comparators i;octet, i;ascii-casemap and
 * i;ascii-numeric.
 *
 * sieve_parse() reads and validates a script into a tree; errors carry
 * the line number ("line 3: unknown command 'fileint'"). sieve_run()
 * runs a tree over one message and gives the list of actions: nothing
 * is delivered here. Both are bounded (script size, nesting, commands,
 * string length; actions, redirects, work) and never fail on any input
 * other than with an error message.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/str.h"

#define SIEVE_SCRIPT_MAX	(1024 * 1024)	/* bytes of script */
#define SIEVE_DEPTH_MAX		32	/* nested blocks and tests */
#define SIEVE_NODES_MAX		20000	/* commands and tests */
#define SIEVE_STRING_MAX	(64 * 1024)	/* one string's bytes */
#define SIEVE_LIST_MAX		1000	/* strings in one list */
#define SIEVE_ERRORS_MAX	20	/* reported per script */
#define SIEVE_ACTIONS_MAX	64
#define SIEVE_REDIRECTS_DEFAULT	4
#define SIEVE_VARS_MAX		255
#define SIEVE_VAR_SIZE_MAX	4096	/* one variable's value */
#define SIEVE_WORK_MAX		(64u * 1024 * 1024)	/* bytes compared */
#define SIEVE_ADDHEADER_MAX	64	/* fields added in a run */
#define SIEVE_FIELD_MAX		2048	/* bytes of one added field */
#define SIEVE_INCLUDE_DEPTH	10	/* nested includes */
#define SIEVE_INCLUDES_MAX	64	/* includes run in one run */

enum sieve_arg_type { SIEVE_ARG_NUMBER, SIEVE_ARG_STRING, SIEVE_ARG_LIST,
	SIEVE_ARG_TAG };

struct sieve_arg {
	enum sieve_arg_type type;
	int line;
	uint64_t num;		/* NUMBER */
	char *tag;		/* TAG: the name without ':', lower-case */
	char **strs;		/* STRING (one) and LIST */
	size_t nstrs;
};

struct sieve_tag {
	const char *name;	/* from the command's table */
	struct sieve_arg *value;	/* the tag's argument or NULL */
};

/* A command or a test. After validation the arguments are split into
 * tags (with their values) and positional arguments. */
struct sieve_node {
	char *name;		/* lower-case */
	int line;
	struct sieve_arg *args;	/* as written */
	size_t nargs;
	struct sieve_tag *tags;
	size_t ntags;
	struct sieve_arg **pos;
	size_t npos;
	struct sieve_node *tests;	/* if/elsif: one; allof/anyof: n;
					   not: one */
	size_t ntests;
	bool test_list;		/* the tests were in ( ) */
	struct sieve_node *block;	/* commands inside { } */
	size_t nblock;
	bool has_block;
	const void *spec;	/* the command's table entry */
};

/* The extensions a script requires. */
enum {
	SIEVE_EXT_FILEINTO = 1 << 0, SIEVE_EXT_REJECT = 1 << 1,
	SIEVE_EXT_EREJECT = 1 << 2, SIEVE_EXT_ENVELOPE = 1 << 3,
	SIEVE_EXT_ENCODED = 1 << 4, SIEVE_EXT_COPY = 1 << 5,
	SIEVE_EXT_BODY = 1 << 6, SIEVE_EXT_VARIABLES = 1 << 7,
	SIEVE_EXT_RELATIONAL = 1 << 8, SIEVE_EXT_SUBADDRESS = 1 << 9,
	SIEVE_EXT_IMAP4FLAGS = 1 << 10, SIEVE_EXT_MAILBOX = 1 << 11,
	SIEVE_EXT_NUMERIC = 1 << 12, SIEVE_EXT_VACATION = 1 << 13,
	SIEVE_EXT_VACATION_SECONDS = 1 << 14, SIEVE_EXT_DATE = 1 << 15,
	SIEVE_EXT_INDEX = 1 << 16, SIEVE_EXT_EDITHEADER = 1 << 17,
	SIEVE_EXT_DUPLICATE = 1 << 18, SIEVE_EXT_INCLUDE = 1 << 19,
};

struct sieve_script {
	struct sieve_node *cmds;
	size_t ncmds;
	unsigned exts;
};

/* Parse and validate script text (len bytes, any content). 0 and
 * *script_r, or -1 with the errors in errors (one per line, each
 * "line N: ..."). */
int sieve_parse(const char *text, size_t len, struct sieve_script **script_r,
    str_t *errors);
void sieve_free(struct sieve_script *script);
/* The names a script may require (the extensions and comparators known
 * here), space-separated: what ManageSieve announces as SIEVE. */
void sieve_extensions(str_t *out);

/* The message and its envelope as a script sees them. data is the
 * message in wire form (CRLF lines, see mime_to_crlf()). */
struct sieve_msg {
	const char *data;
	size_t len;
	const char *env_from;	/* "" for <> */
	const char *env_to;	/* the recipient's address */
	/* What the size test compares: the message's size as stored (a
	 * Maildir file's LF form, as Pigeonhole takes the file's physical
	 * size); 0: the size of data. */
	uint64_t size;
	/* What currentdate sees (seconds since the epoch); 0: now. */
	long long now;
	/* duplicate (RFC 7352): has this ID (under this handle, "" for
	 * none) been recorded and not expired yet? NULL: never. */
	bool (*duplicate_seen)(void *ctx, const char *handle, const char *id);
	void *duplicate_ctx;
	/* include (RFC 6609): the script NAME of the user's (personal) or
	 * the global ones, parsed; the caller keeps it until sieve_run()
	 * returns. NULL with *missing_r (no such script) or *error_r
	 * (malloc'd: it does not parse, cannot be read). NULL callback:
	 * every include is missing. */
	const struct sieve_script *(*include_load)(void *ctx, bool global,
	    const char *name, bool *missing_r, char **error_r);
	void *include_ctx;
};

/* duplicate's period without :seconds, and its bound (Pigeonhole's
 * bound too): 7 days */
#define SIEVE_DUPLICATE_DEFAULT	(7 * 86400)
#define SIEVE_DUPLICATE_MAX	(7 * 86400)

/* An ID the duplicate test saw: the caller records it once the message
 * is delivered (RFC 7352 3). With last the period starts again at every
 * message; without, at the first. */
struct sieve_dupmark {
	char *handle, *id;
	uint64_t seconds;
	bool last;
};

enum sieve_action_type { SIEVE_ACT_STORE, SIEVE_ACT_REDIRECT,
	SIEVE_ACT_REJECT, SIEVE_ACT_EREJECT, SIEVE_ACT_DISCARD,
	SIEVE_ACT_VACATION };

#define SIEVE_VACATION_DAYS_DEFAULT	7
#define SIEVE_VACATION_DAYS_MAX		90
#define SIEVE_VACATION_SECONDS_MIN	60

/* The parameters of a vacation action (RFC 5230, RFC 6131). */
struct sieve_vacation {
	uint64_t seconds;	/* the period, already bounded */
	char *subject, *from, *handle;	/* or NULL */
	char **addresses;
	size_t naddresses;
	bool mime;
};

struct sieve_action {
	enum sieve_action_type type;
	char *arg;		/* STORE: the folder ("INBOX" for keep);
				   REDIRECT: the address; REJECT: the
				   reason */
	char **flags;		/* STORE: IMAP flags to set */
	size_t nflags;
	bool create;		/* STORE: :create */
	bool copy;		/* REDIRECT/STORE: :copy */
	bool implicit;		/* STORE: the implicit keep */
	struct sieve_vacation *vacation;	/* VACATION: arg is the
						   reason */
	char *header;		/* STORE/REDIRECT: the header section as
				   editheader left it when the action ran
				   (CRLF fields, no empty line), or NULL:
				   the message as it came */
};

struct sieve_result {
	struct sieve_action *actions;
	size_t nactions;
	char *error;		/* run-time error (the caller keeps the
				   message in INBOX), or NULL */
	char *header;		/* the header section after the run's
				   editheader changes, or NULL (none) */
	struct sieve_dupmark *dups;	/* to record (not on an error) */
	size_t ndups;
};

struct sieve_limits {
	unsigned redirects;	/* 0 = SIEVE_REDIRECTS_DEFAULT */
};

/* Run the script over the message. The result's actions are final: the
 * implicit keep is in the list when it applies. On a run-time error
 * result->error is set and the actions are one implicit keep. */
void sieve_run(const struct sieve_script *script, const struct sieve_msg *msg,
    const struct sieve_limits *limits, struct sieve_result *result);
void sieve_result_clear(struct sieve_result *result);
void sieve_vacation_free(struct sieve_vacation *v);
struct sieve_vacation *sieve_vacation_dup(const struct sieve_vacation *v);
/* The actions as text, one per line (what `petrel sieve test` prints);
 * an edited header follows its action, each line indented by "  | ". */
void sieve_result_text(const struct sieve_result *result, str_t *out);

/* Wildcard match (:matches): '*' any run, '?' one character, '\' quotes
 * the next one. Linear backtracking to the last '*' only, so O(n*m) at
 * worst. With caps (SIEVE_MATCH_CAPS entries), the texts matched by the
 * wildcards in order are stored there (malloc'd; caps[0] = the whole
 * value) and *ncaps_r set. fold: ASCII case-insensitive. *work is
 * increased by the steps taken. */
#define SIEVE_MATCH_CAPS 10
/* Fields editheader may neither add nor delete (RFC 5293 6): the trace
 * and loop-prevention fields. */
bool sieve_header_protected(const char *name);
/* A field name (RFC 5322 ftext: printable ASCII but ':'), 1-200 bytes. */
bool sieve_field_name_ok(const char *name);
bool sieve_match(const char *value, size_t vlen, const char *pat, size_t plen,
    bool fold, char **caps, size_t *ncaps_r, uint64_t *work);

#endif
