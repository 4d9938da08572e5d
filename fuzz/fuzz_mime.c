/*
 * fuzz_mime.c: libFuzzer target for lib/mime. The input is a message
 * (any bytes); it goes through everything the IMAP server does with one:
 * wire form, the part tree, ENVELOPE, BODY and BODYSTRUCTURE, section
 * lookups, HEADER.FIELDS, SEARCH and the PREVIEW text (checked: valid
 * UTF-8 without control characters, at most 256 characters).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *       fuzz/fuzz_mime.c lib/mime/mime.c lib/mime/envelope.c \
 *       lib/mime/decode.c lib/mime/preview.c lib/base/alloc.c \
 *       lib/base/str.c lib/base/log.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/str.h"
#include "lib/mime/mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
walk_sections(const char *msg, const struct mime_part *root, str_t *out)
{
	static const uint32_t paths[][4] = {
		{ 1 }, { 2 }, { 1, 1 }, { 1, 2 }, { 2, 1 }, { 2, 2 },
		{ 1, 1, 1 }, { 2, 1, 1 }, { 3, 2, 1 }, { 1, 1, 1, 1 },
	};
	static const size_t lens[] = { 1, 1, 2, 2, 2, 2, 3, 3, 3, 4 };
	static const char *const names[] = {
		"subject", "FROM", "content-type"
	};
	const struct mime_part *p;
	size_t i;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		p = mime_part_find(root, paths[i], lens[i]);
		if (p == NULL)
			continue;
		mime_header_fields(msg + p->hdr_off, p->hdr_len, names, 3,
		    i % 2 == 0, out);
		mime_bodystructure(msg, p, i % 2 == 1, out);
		if (p->message != NULL)
			mime_envelope(msg, p->message, out);
	}
}

/* The preview is valid UTF-8 (shortest forms, no surrogates), has no
 * control characters and at most MIME_PREVIEW_CHARS characters. */
static void
check_preview(const str_t *p)
{
	const unsigned char *u = (const unsigned char *)p->data;
	size_t i = 0, chars = 0;

	while (i < p->len) {
		unsigned char c = u[i];
		size_t n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;

		if (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xc2) ||
		    c > 0xf4 || i + n > p->len)
			abort();
		for (size_t k = 1; k < n; k++)
			if ((u[i + k] & 0xc0) != 0x80)
				abort();
		i += n;
		chars++;
	}
	if (chars > MIME_PREVIEW_CHARS ||
	    (p->len > 0 && (u[0] == ' ' || u[p->len - 1] == ' ')))
		abort();
}

/* Offsets stay inside the parent's body and parents point back. */
static void
check_tree(const char *msg, const struct mime_part *p, size_t lo, size_t hi)
{
	size_t i, lines = 0;

	if (p->hdr_off < lo || p->hdr_off + p->hdr_len != p->body_off ||
	    p->body_off + p->body_len > hi)
		abort();
	for (i = 0; i < p->body_len; i++)
		lines += msg[p->body_off + i] == '\n';
	if (lines != p->body_lines || p->type == NULL ||
	    p->subtype == NULL || p->encoding == NULL)
		abort();
	for (i = 0; i < p->nchildren; i++) {
		if (p->children[i].parent != p)
			abort();
		check_tree(msg, &p->children[i], p->body_off,
		    p->body_off + p->body_len);
	}
	if (p->message != NULL) {
		if (p->message->parent != p)
			abort();
		check_tree(msg, p->message, p->body_off,
		    p->body_off + p->body_len);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	str_t wire = STR_INIT, out = STR_INIT;
	struct mime_part *root;
	const char *msg;
	char *v;

	mime_to_crlf((const char *)data, size, &wire);
	if (mime_crlf_size((const char *)data, size) != wire.len)
		abort();
	/* the raw bytes too: bare LFs must not hurt the parser */
	root = mime_parse((const char *)data, size);
	mime_bodystructure((const char *)data, root, true, &out);
	mime_free(root);

	msg = str_c(&wire);
	root = mime_parse(msg, wire.len);
	check_tree(msg, root, 0, wire.len);
	str_truncate(&out, 0);
	mime_envelope(msg, root, &out);
	mime_bodystructure(msg, root, false, &out);
	mime_bodystructure(msg, root, true, &out);
	mime_part_find(root, NULL, 0);
	walk_sections(msg, root, &out);
	mime_header_fields(msg + root->hdr_off, root->hdr_len, NULL, 0, true,
	    &out);

	v = mime_header_get(msg + root->hdr_off, root->hdr_len, "date");
	if (v != NULL) {
		(void)mime_parse_date(v);
		free(v);
	}
	v = mime_header_get(msg + root->hdr_off, root->hdr_len, "subject");
	if (v != NULL) {
		mime_decode_header(v, strlen(v), &out);
		free(v);
	}
	(void)mime_search_header(msg, root, "subject", "needle");
	(void)mime_search_header(msg, root, NULL, "");
	(void)mime_search_header(msg, root, "from", "\xc3\xa9");
	(void)mime_search_body(msg, root, "needle", false);
	(void)mime_search_body(msg, root, "Needle \xc3\xa9", true);
	str_truncate(&out, 0);
	mime_preview(msg, root, &out);
	check_preview(&out);
	mime_free(root);

	/* the whole input as a header value, and as a date */
	str_truncate(&out, 0);
	mime_decode_header((const char *)data, size, &out);
	v = strndup((const char *)data, size);
	if (v != NULL) {
		(void)mime_parse_date(v);
		free(v);
	}
	str_free(&wire);
	str_free(&out);
	return 0;
}
