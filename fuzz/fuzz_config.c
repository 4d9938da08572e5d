/*
 * fuzz_config.c: the configuration file parser (config_load_text) on any
 * bytes, then every listener value it accepted through
 * config_parse_listen, and the input as one "-o" assignment.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const listeners[] = { "smtp_listen",
	    "submission_listen", "imap_listen", "pop3_listen" };
	struct config *cfg = config_new();
	char *err = NULL, *text = xmalloc(size + 1);

	memcpy(text, data, size);
	if (config_load_text(cfg, "fuzz", text, size, &err) == 0) {
		for (size_t i = 0; i < 4; i++) {
			struct config_listen *l = NULL;
			size_t n = 0;
			char *e = NULL;

			if (config_parse_listen(config_get(cfg, listeners[i]),
			    &l, &n, &e) == 0)
				config_listen_free(&l, n);
			free(e);
		}
	}
	free(err);
	err = NULL;
	if (memchr(text, '\0', size) == NULL) {
		text[size] = '\0';
		config_override(cfg, text, &err);
		free(err);
	}
	config_free(&cfg);
	free(text);
	return 0;
}
