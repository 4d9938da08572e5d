/*
 * fuzz_maildir_name.c: Maildir file-name parsing (maildir_name_parse),
 * flag normalisation and renaming with new flags, folder-name validation,
 * the lines of the subscription files (maildir_subs_parse_line: what a
 * line names is INBOX or a valid folder, and the line written for it
 * names it again) and the database URL parser (dir_url_parse), on any
 * bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/dir/dir.h"
#include "lib/base/str.h"
#include "lib/maildir/maildir.h"
#include "lib/maildir/subscriptions.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
subs_lines(const char *s, size_t size)
{
	static const enum maildir_subs_format fmts[] = {
		MAILDIR_SUBS_DOVECOT1, MAILDIR_SUBS_DOVECOT2,
		MAILDIR_SUBS_COURIER1,
	};
	str_t folder = STR_INIT, line = STR_INIT, again = STR_INIT;

	for (size_t f = 0; f < sizeof(fmts) / sizeof(fmts[0]); f++) {
		if (maildir_subs_parse_line(fmts[f], s, size, &folder) != 1)
			continue;
		if (strcmp(str_c(&folder), "INBOX") != 0 &&
		    !maildir_folder_name_valid(str_c(&folder)))
			abort();
		str_truncate(&line, 0);
		maildir_subs_format_line(fmts[f], str_c(&folder), &line);
		if (maildir_subs_parse_line(fmts[f], line.data, line.len,
		    &again) != 1 || strcmp(str_c(&again), str_c(&folder)) != 0)
			abort();
	}
	str_free(&folder);
	str_free(&line);
	str_free(&again);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct maildir_name mn;
	char norm[MAILDIR_FLAGS_MAX + 1], *s = xmalloc(size + 1), *renamed;
	struct dir_url u;
	const char *err;

	memcpy(s, data, size);
	if (maildir_name_parse(s, size, &mn) == 0 &&
	    memchr(s, '\0', size) == NULL) {
		if (maildir_name_set_flags(s, "FS", &renamed) == 0) {
			struct maildir_name again;

			/* a renamed name must parse, with the same key */
			if (maildir_name_parse(renamed, strlen(renamed),
			    &again) != 0 || again.prefix_len != mn.prefix_len)
				abort();
			free(renamed);
		}
	}
	maildir_flags_normalize(s, size, norm);
	subs_lines(s, size);
	if (memchr(s, '\0', size) == NULL) {
		maildir_folder_name_valid(s);
		memset(&u, 0, sizeof(u));
		if (dir_url_parse(s, &u, &err) == 0)
			dir_url_clear(&u);
	}
	free(s);
	return 0;
}
