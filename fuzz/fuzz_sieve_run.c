/*
 * fuzz_sieve_run.c: the Sieve interpreter (lib/sieve/run.c) over any bytes
 * as a message. The first byte picks one of the fixed scripts below (every
 * test and action kind: header, address and envelope parts, body,
 * relational, variables with match captures, imap4flags, vacation, date
 * and index, editheader, duplicate: an ID whose second byte is 'd'
 * counts as seen); the
 * rest is the message (headers, body, MIME parts, encoded words). Checks:
 *  - the run ends with actions within the bound, or a run-time error with
 *    exactly the implicit keep;
 *  - the same script over the same message gives the same actions
 *    (sieve_result_text twice, byte for byte);
 *  - every STORE names a folder, every REDIRECT an address, and a message
 *    that is kept (explicitly or not) is kept once per folder.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/str.h"
#include "lib/sieve/sieve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const scripts[] = {
	"require [\"fileinto\", \"mailbox\"];\n"
	"if header :contains \"subject\" [\"news\", \"=?\"] {\n"
	"  fileinto :create \"News\";\n"
	"} elsif address :domain :is \"from\" \"example.com\" {\n"
	"  fileinto \"Friends\";\n"
	"} elsif exists \"list-id\" { discard; }\n",

	"require [\"body\", \"fileinto\", \"imap4flags\"];\n"
	"if body :text :contains \"agenda\" { addflag \"\\\\Flagged\"; }\n"
	"if body :raw :matches \"*urgent*\" { setflag [\"\\\\Seen\", \"$x\"]; }\n"
	"if body :content \"text\" :contains \"x\" { fileinto :flags \"a b\" \"T\"; }\n",

	"require [\"variables\", \"fileinto\", \"mailbox\"];\n"
	"if header :matches \"subject\" \"*[*]*\" {\n"
	"  set :lower :upperfirst \"tag\" \"${2}\";\n"
	"  fileinto :create \"Tags.${tag}\";\n"
	"}\n"
	"if address :localpart :matches \"to\" \"*+*\" {\n"
	"  set \"d\" \"${1}-${2}\"; fileinto :create \"Plus.${d}\";\n"
	"}\n",

	"require [\"relational\", \"comparator-i;ascii-numeric\", \"reject\"];\n"
	"if header :count \"ge\" :comparator \"i;ascii-numeric\" \"received\" \"3\""
	" { reject \"too many hops\"; }\n"
	"if header :value \"gt\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"5\""
	" { discard; stop; }\n"
	"if size :over 100K { keep; }\n",

	"require [\"envelope\", \"subaddress\", \"copy\", \"fileinto\"];\n"
	"if envelope :detail \"to\" \"tag\" { redirect :copy \"other@example.net\"; }\n"
	"if envelope :all :is \"from\" \"\" { fileinto \"Bounces\"; }\n"
	"if address :user \"from\" [\"alice\", \"bob\"] { redirect \"b@example.org\"; }\n",

	"require [\"vacation\", \"variables\"];\n"
	"if header :matches \"subject\" \"*\" { set \"s\" \"${1}\"; }\n"
	"vacation :days 3 :subject \"Away: ${s}\" :addresses [\"bob@example.net\"]"
	" \"I am away.\";\n",

	"require [\"ereject\", \"encoded-character\"];\n"
	"if anyof (header :is \"x-a\" \"${hex:41}\", not exists \"date\",\n"
	"  allof (header :contains \"from\" \"@\", address :all :contains \"cc\" \"x\"))\n"
	"{ ereject \"refused\"; }\n",

	"require [\"date\", \"index\", \"variables\", \"fileinto\", "
	"\"relational\", \"comparator-i;ascii-numeric\"];\n"
	"if date :originalzone :matches \"date\" \"iso8601\" \"*\" "
	"{ fileinto \"D.${0}\"; }\n"
	"if date :zone \"-0330\" :index 1 :last :value \"ge\" "
	":comparator \"i;ascii-numeric\" \"received\" \"julian\" \"60000\" "
	"{ fileinto \"Recent\"; }\n"
	"if header :index 2 :matches \"received\" \"*;*\" { set \"r\" \"${2}\"; }\n"
	"if address :index 1 :last :domain \"to\" \"*\" { fileinto \"A.${r}\"; }\n"
	"if currentdate :value \"gt\" \"date\" \"2024-01-01\" "
	"{ fileinto \"Now\"; }\n",

	"require [\"editheader\", \"index\", \"variables\", \"fileinto\", "
	"\"copy\", \"duplicate\"];\n"
	"if duplicate :header \"x-ticket\" :handle \"t\" :last { discard; }\n"
	"if header :matches \"subject\" \"*\" { set \"s\" \"${1}\"; }\n"
	"fileinto :copy \"Before\";\n"
	"addheader \"X-Subject\" \"${s} ${s}\";\n"
	"addheader :last \"X-Seen\" \"caf\u00e9 ${s}\";\n"
	"deleteheader :index 1 :last :matches \"received\" \"*\";\n"
	"deleteheader :index 2 \"to\";\n"
	"deleteheader :contains \"subject\" [\"a\", \"=?\"];\n"
	"if header :contains \"x-subject\" \"x\" { redirect :copy \"c@example.org\"; }\n"
	"if not exists \"subject\" { fileinto \"NoSubject\"; }\n"
	"if duplicate { fileinto \"Dup\"; }\n",
};

#define NSCRIPTS (sizeof(scripts) / sizeof(scripts[0]))

static struct sieve_script *parsed[NSCRIPTS];

static bool
seen_cb(void *ctx, const char *handle, const char *id)
{
	return id[0] != '\0' && id[1] == 'd';
}

static void
check_actions(const struct sieve_result *res)
{
	if (res->nactions > SIEVE_ACTIONS_MAX + 1 ||
	    (res->error != NULL && res->ndups > 0))
		abort();
	if (res->error != NULL && (res->nactions != 1 ||
	    res->actions[0].type != SIEVE_ACT_STORE ||
	    !res->actions[0].implicit))
		abort();
	for (size_t i = 0; i < res->nactions; i++) {
		const struct sieve_action *a = &res->actions[i];

		if ((a->type == SIEVE_ACT_STORE || a->type ==
		    SIEVE_ACT_REDIRECT) && (a->arg == NULL || *a->arg == '\0'))
			abort();
		if (a->type != SIEVE_ACT_STORE)
			continue;
		for (size_t j = i + 1; j < res->nactions; j++)
			if (res->actions[j].type == SIEVE_ACT_STORE &&
			    strcmp(res->actions[j].arg, a->arg) == 0)
				abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sieve_result r1, r2;
	struct sieve_msg msg;
	str_t t1 = STR_INIT, t2 = STR_INIT, err = STR_INIT;
	size_t k;

	if (size < 1)
		return 0;
	k = data[0] % NSCRIPTS;
	if (parsed[k] == NULL && sieve_parse(scripts[k], strlen(scripts[k]),
	    &parsed[k], &err) < 0)
		abort();	/* every fixed script is valid */
	str_free(&err);
	memset(&msg, 0, sizeof(msg));
	msg.data = (const char *)data + 1;
	msg.len = size - 1;
	msg.env_from = (data[0] & 0x80) ? "" : "alice+tag@example.com";
	msg.env_to = "bob+tag@example.net";
	msg.now = 1719835200;	/* currentdate: the same in both runs */
	msg.duplicate_seen = seen_cb;
	sieve_run(parsed[k], &msg, NULL, &r1);
	check_actions(&r1);
	sieve_run(parsed[k], &msg, NULL, &r2);
	sieve_result_text(&r1, &t1);
	sieve_result_text(&r2, &t2);
	if (t1.len != t2.len || memcmp(str_c(&t1), str_c(&t2), t1.len) != 0 ||
	    (r1.error == NULL) != (r2.error == NULL))
		abort();
	str_free(&t1);
	str_free(&t2);
	sieve_result_clear(&r1);
	sieve_result_clear(&r2);
	return 0;
}
