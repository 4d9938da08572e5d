/*
 * fuzz_managesieve_cmd.c: the ManageSieve command parser
 * (lib/managesieve/parse.c) over the input as one gathered command (its
 * lines and literals, as the session hands it over). Checks:
 *  - a parse fails with a message, or gives a non-empty upper-case name
 *    of atom characters and at most MSIEVE_ARGS_MAX arguments, each one
 *    NUL-terminated inside the command's buffer, atoms non-empty and
 *    quoted strings at most MSIEVE_QUOTED_MAX octets;
 *  - the arguments written back (atoms as they are, strings through
 *    msieve_put_string, the response writer: quoted or a literal) parse
 *    again to the same name and arguments.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/str.h"
#include "lib/managesieve/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msieve_cmd c, d;
	const char *err = NULL;
	str_t again = STR_INIT;

	if (msieve_parse((const char *)data, size, &c, &err) < 0) {
		if (err == NULL || *err == '\0')
			abort();
		msieve_cmd_clear(&c);
		return 0;
	}
	if (c.name[0] == '\0' || c.nargs > MSIEVE_ARGS_MAX)
		abort();
	for (const char *p = c.name; *p != '\0'; p++)
		if ((*p >= 'a' && *p <= 'z') || (unsigned char)*p <= ' ' ||
		    (unsigned char)*p >= 0x7f)
			abort();
	str_append(&again, c.name);
	for (size_t i = 0; i < c.nargs; i++) {
		const struct msieve_arg *a = &c.args[i];

		if (a->s < c.buf.data || a->s + a->len >= c.buf.data + c.buf.len ||
		    a->s[a->len] != '\0')
			abort();
		if (a->type == MSIEVE_ATOM && a->len == 0)
			abort();
		str_append_c(&again, ' ');
		if (a->type == MSIEVE_ATOM)
			str_append_n(&again, a->s, a->len);
		else
			msieve_put_string(&again, a->s, a->len);
	}
	if (msieve_parse(again.data, again.len, &d, &err) < 0)
		abort();
	if (strcmp(c.name, d.name) != 0 || c.nargs != d.nargs)
		abort();
	for (size_t i = 0; i < c.nargs; i++)
		if (c.args[i].type != d.args[i].type ||
		    c.args[i].len != d.args[i].len ||
		    memcmp(c.args[i].s, d.args[i].s, c.args[i].len) != 0)
			abort();
	msieve_cmd_clear(&d);
	msieve_cmd_clear(&c);
	str_free(&again);
	return 0;
}
