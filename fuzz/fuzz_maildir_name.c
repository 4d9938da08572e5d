/*
 * fuzz_maildir_name.c: Maildir file-name parsing (maildir_name_parse),
 * flag normalisation and renaming with new flags, folder-name validation,
 * and the database URL parser (dir_url_parse), on any bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/dir/dir.h"
#include "lib/maildir/maildir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
	if (memchr(s, '\0', size) == NULL) {
		maildir_folder_name_valid(s);
		memset(&u, 0, sizeof(u));
		if (dir_url_parse(s, &u, &err) == 0)
			dir_url_clear(&u);
	}
	free(s);
	return 0;
}
