/*
 * fuzz_sieve_parse.c: the Sieve lexer, parser and validator
 * (lib/sieve/parse.c) over any bytes as a script. Checks:
 *  - a script is either accepted (a tree) or refused with errors, every
 *    one a line "line N: ..." with N within the script's lines (plus one
 *    for an error at its end), or the "(N more errors)" summary;
 *  - an accepted script runs over a small fixed message to a result
 *    with at least one action or an error, within the bounds.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/str.h"
#include "lib/sieve/sieve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char message[] =
    "Return-Path: <s@example.org>\r\n"
    "From: Alice <alice@example.com>\r\n"
    "To: bob+tag@example.net, \"C\" <carol@example.net>\r\n"
    "Subject: =?utf-8?q?Caf=C3=A9?= *news*\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Hello, the agenda.\r\n";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sieve_script *script = NULL;
	str_t err = STR_INIT;
	size_t lines = 1;

	for (size_t i = 0; i < size; i++)
		if (data[i] == '\n')
			lines++;
	if (sieve_parse((const char *)data, size, &script, &err) == 0) {
		struct sieve_msg msg = { message, sizeof(message) - 1,
			"s@example.org", "bob+tag@example.net" };
		struct sieve_result res;

		if (script == NULL || err.len != 0)
			abort();
		sieve_run(script, &msg, NULL, &res);
		if (res.nactions == 0 && res.error == NULL)
			abort();
		if (res.nactions > SIEVE_ACTIONS_MAX + 1)
			abort();
		sieve_result_clear(&res);
		sieve_free(script);
	} else {
		const char *p = str_c(&err);

		if (script != NULL || err.len == 0)
			abort();
		while (*p != '\0') {
			unsigned long n;
			char *end;

			if (strncmp(p, "line ", 5) == 0) {
				n = strtoul(p + 5, &end, 10);
				if (n == 0 || n > lines + 1 ||
				    strncmp(end, ": ", 2) != 0)
					abort();
			} else if (*p != '(') {
				abort();
			}
			p = strchr(p, '\n');
			if (p == NULL)
				abort();
			p++;
		}
	}
	str_free(&err);
	return 0;
}
