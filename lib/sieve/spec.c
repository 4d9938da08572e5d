/*
 * spec.c: what each Sieve command and test accepts (RFC 5228 and the
 * extensions in sieve.h).
 */
#include <stddef.h>

#include "lib/sieve/sieve.h"
#include "lib/sieve/spec.h"

const struct sieve_tagspec sieve_tagspecs[] = {
	{ "comparator", 'S', 0, 0 },
	{ "is", 0, 0, 1 }, { "contains", 0, 0, 1 }, { "matches", 0, 0, 1 },
	{ "count", 'S', SIEVE_EXT_RELATIONAL, 1 },
	{ "value", 'S', SIEVE_EXT_RELATIONAL, 1 },
	{ "all", 0, 0, 2 }, { "localpart", 0, 0, 2 }, { "domain", 0, 0, 2 },
	{ "user", 0, SIEVE_EXT_SUBADDRESS, 2 },
	{ "detail", 0, SIEVE_EXT_SUBADDRESS, 2 },
	{ "over", 0, 0, 3 }, { "under", 0, 0, 3 },
	{ "raw", 0, SIEVE_EXT_BODY, 4 }, { "text", 0, SIEVE_EXT_BODY, 4 },
	{ "content", 'L', SIEVE_EXT_BODY, 4 },
	{ "copy", 0, SIEVE_EXT_COPY, 5 },
	{ "create", 0, SIEVE_EXT_MAILBOX, 6 },
	{ "flags", 'L', SIEVE_EXT_IMAP4FLAGS, 7 },
	{ "lower", 0, SIEVE_EXT_VARIABLES, 8 },
	{ "upper", 0, SIEVE_EXT_VARIABLES, 8 },
	{ "lowerfirst", 0, SIEVE_EXT_VARIABLES, 9 },
	{ "upperfirst", 0, SIEVE_EXT_VARIABLES, 9 },
	{ "quotewildcard", 0, SIEVE_EXT_VARIABLES, 10 },
	{ "length", 0, SIEVE_EXT_VARIABLES, 11 },
	{ "days", 'N', SIEVE_EXT_VACATION, 12 },
	{ "seconds", 'N', SIEVE_EXT_VACATION_SECONDS | SIEVE_EXT_DUPLICATE, 12 },
	{ "subject", 'S', SIEVE_EXT_VACATION, 13 },
	{ "from", 'S', SIEVE_EXT_VACATION, 14 },
	{ "addresses", 'L', SIEVE_EXT_VACATION, 15 },
	{ "mime", 0, SIEVE_EXT_VACATION, 16 },
	{ "handle", 'S', SIEVE_EXT_VACATION | SIEVE_EXT_DUPLICATE, 17 },
	{ "zone", 'S', SIEVE_EXT_DATE, 18 },
	{ "originalzone", 0, SIEVE_EXT_DATE, 18 },
	{ "index", 'N', SIEVE_EXT_INDEX | SIEVE_EXT_EDITHEADER,
	  SIEVE_GROUP_INDEX },
	{ "last", 0, SIEVE_EXT_INDEX | SIEVE_EXT_EDITHEADER |
	  SIEVE_EXT_DUPLICATE, SIEVE_GROUP_LAST },
	{ "header", 'S', SIEVE_EXT_DUPLICATE, 21 },
	{ "uniqueid", 'S', SIEVE_EXT_DUPLICATE, 21 },
	{ NULL, 0, 0, 0 },
};

#define MATCH "comparator is contains matches count value"
#define ADDRPART "all localpart domain user detail"
#define INDEX "index last"

const struct sieve_spec sieve_specs[] = {
	/* control */
	{ "if", false, 0, "", "", 0, 1, true, -1, NULL },
	{ "elsif", false, 0, "", "", 0, 1, true, -1, NULL },
	{ "else", false, 0, "", "", 0, 0, true, -1, NULL },
	{ "stop", false, 0, "", "", 0, 0, false, -1, NULL },
	/* actions */
	{ "keep", false, 0, "flags", "", 0, 0, false, -1, NULL },
	{ "discard", false, 0, "", "", 0, 0, false, -1, NULL },
	{ "fileinto", false, SIEVE_EXT_FILEINTO, "copy create flags", "S", 0,
	  0, false, -1, NULL },
	{ "redirect", false, 0, "copy", "S", 0, 0, false, -1, NULL },
	{ "reject", false, SIEVE_EXT_REJECT, "", "S", 0, 0, false, -1, NULL },
	{ "ereject", false, SIEVE_EXT_EREJECT, "", "S", 0, 0, false, -1,
	  NULL },
	{ "vacation", false, SIEVE_EXT_VACATION,
	  "days seconds subject from addresses mime handle", "S", 0, 0, false,
	  -1, NULL },
	{ "setflag", false, SIEVE_EXT_IMAP4FLAGS, "", "SL", 1, 0, false, -1,
	  NULL },
	{ "addflag", false, SIEVE_EXT_IMAP4FLAGS, "", "SL", 1, 0, false, -1,
	  NULL },
	{ "removeflag", false, SIEVE_EXT_IMAP4FLAGS, "", "SL", 1, 0, false,
	  -1, NULL },
	{ "set", false, SIEVE_EXT_VARIABLES,
	  "lower upper lowerfirst upperfirst quotewildcard length", "SS", 0,
	  0, false, -1, NULL },
	{ "addheader", false, SIEVE_EXT_EDITHEADER, "last", "SS", 0, 0, false,
	  -1, NULL },
	{ "deleteheader", false, SIEVE_EXT_EDITHEADER,
	  "comparator is contains matches value " INDEX, "SL", 1, 0, false,
	  -1, NULL },
	/* tests */
	{ "address", true, 0, MATCH " " ADDRPART " " INDEX, "LL", 0, 0, false, -1,
	  NULL },
	{ "envelope", true, SIEVE_EXT_ENVELOPE, MATCH " " ADDRPART, "LL", 0,
	  0, false, -1, NULL },
	{ "header", true, 0, MATCH " " INDEX, "LL", 0, 0, false, -1, NULL },
	{ "exists", true, 0, "", "L", 0, 0, false, -1, NULL },
	{ "size", true, 0, "over under", "N", 0, 0, false, 3,
	  "':over' or ':under'" },
	{ "allof", true, 0, "", "", 0, 2, false, -1, NULL },
	{ "anyof", true, 0, "", "", 0, 2, false, -1, NULL },
	{ "not", true, 0, "", "", 0, 1, false, -1, NULL },
	{ "true", true, 0, "", "", 0, 0, false, -1, NULL },
	{ "false", true, 0, "", "", 0, 0, false, -1, NULL },
	{ "hasflag", true, SIEVE_EXT_IMAP4FLAGS, MATCH, "LL", 1, 0, false,
	  -1, NULL },
	{ "string", true, SIEVE_EXT_VARIABLES, MATCH, "LL", 0, 0, false, -1,
	  NULL },
	{ "body", true, SIEVE_EXT_BODY, MATCH " raw text content", "L", 0, 0,
	  false, -1, NULL },
	{ "date", true, SIEVE_EXT_DATE, MATCH " zone originalzone " INDEX,
	  "SSL", 0, 0, false, -1, NULL },
	{ "currentdate", true, SIEVE_EXT_DATE, MATCH " zone", "SL", 0, 0,
	  false, -1, NULL },
	{ "duplicate", true, SIEVE_EXT_DUPLICATE,
	  "handle header uniqueid seconds last", "", 0, 0, false, -1, NULL },
	{ NULL, false, 0, NULL, NULL, 0, 0, false, -1, NULL },
};
