/*
 * cmd_help.c: petrel help [KEY | --man].
 *
 * Everything printed comes from the key table (lib/config/config.c): the
 * list of keys, one key's value syntax, default and help paragraph, and
 * petrel.conf(5) in roff, which the build runs `petrel help --man` for.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "lib/base/str.h"
#include "lib/config/config.h"

/* Edit distance of two key names, capped: enough to suggest a near name
 * for a mistyped key. */
static size_t
distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];

	if (la >= 64 || lb >= 64)
		return 64;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;

			cur[j] = sub < del ? sub : del;
			if (ins < cur[j])
				cur[j] = ins;
		}
		memcpy(prev, cur, (lb + 1) * sizeof(prev[0]));
	}
	return prev[lb];
}

static void
unknown_key(const char *name)
{
	str_t near = STR_INIT;
	size_t shown = 0;

	for (size_t i = 0; i < config_key_count() && shown < 3; i++) {
		const char *k = config_key_name(i);

		if (distance(name, k) <= 2 ||
		    (strlen(name) >= 4 && strstr(k, name) != NULL)) {
			str_printf(&near, "%s%s", shown ? ", " : "", k);
			shown++;
		}
	}
	if (shown > 0)
		cli_die("unknown configuration key '%s' (did you mean %s?)",
		    name, near.data);
	cli_die("unknown configuration key '%s' (petrel help lists them)",
	    name);
}

/* Plain text, wrapped at width, each line indented. */
static void
print_wrapped(const char *text, const char *indent, size_t width)
{
	const char *p = text;

	while (*p != '\0') {
		size_t avail = width - strlen(indent), n = strlen(p);

		if (n > avail) {
			n = avail;
			while (n > 0 && p[n] != ' ')
				n--;
			if (n == 0)
				n = strcspn(p, " ");
		}
		printf("%s%.*s\n", indent, (int)n, p);
		p += n;
		while (*p == ' ')
			p++;
	}
}

static void
show_key(size_t i)
{
	const char *def = config_key_default(i), *init = config_key_init(i);
	char buf[256];

	printf("%s\n", config_key_name(i));
	printf("    value:   %s\n", config_key_syntax(i, buf, sizeof(buf)));
	printf("    default: %s\n", def[0] != '\0' ? def : "(empty)");
	if (init != NULL)
		printf("    petrel init writes: %s\n", init);
	print_wrapped(config_key_help(i), "    ", 76);
}

/* roff text: a backslash is \e, a line never starts with a control
 * character, a hyphen is a minus sign only where it is an option. */
static void
roff_text(str_t *out, const char *s)
{
	if (*s == '.' || *s == '\'')
		str_append(out, "\\&");
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			str_append(out, "\\e");
		else if (*s == '-' && (s[1] == 'o' || s[1] == 'c') &&
		    (s[2] == ' ' || s[2] == '\0'))
			str_append(out, "\\-");
		else
			str_append_c(out, *s);
	}
}

static void
man_page(void)
{
	str_t out = STR_INIT;
	char buf[256];

	str_append(&out,
	    ".TH PETREL.CONF 5 \"\" \"petrel " PETREL_VERSION "\" "
	    "\"File Formats\"\n"
	    ".SH NAME\n"
	    "petrel.conf \\- configuration file of the petrel mail server\n"
	    ".SH DESCRIPTION\n"
	    "petrel reads its settings from the file named by \\fB\\-c\\fR, "
	    "else from \\fB$PETREL_CONF\\fR, else from \\fI./petrel.conf\\fR, "
	    "else from \\fI" PETREL_SYSCONFDIR "/petrel/petrel.conf\\fR.\n"
	    ".PP\n"
	    "Each line is \\fIkey\\fR = \\fIvalue\\fR. A line starting with "
	    "# is a comment; a line starting with white space continues the "
	    "previous one. Every key is listed below; an unknown key or a "
	    "malformed line is an error that names the file and line. "
	    "\\fB\\-o\\fR \\fIkey\\fR=\\fIvalue\\fR on the command line "
	    "overrides the file for one run, and \\fBpetrel help\\fR "
	    "\\fIkey\\fR prints what this page says of a key.\n"
	    ".PP\n"
	    "A listener key absent from an existing file is off: an upgrade "
	    "opens no new port. \\fBpetrel init\\fR writes every key into a "
	    "new instance's file, listeners on loopback addresses.\n"
	    ".PP\n"
	    "Keys never change meaning: a key renamed or removed, or whose "
	    "values would mean something else, is retired and its new name "
	    "takes its place. A file that sets a retired key is refused with "
	    "a line naming it and what to write instead; \\fBpetrel check\\fR "
	    "lists every such line of the file at once (and every unknown key "
	    "and bad value).\n"
	    ".SH KEYS\n");
	for (size_t i = 0; i < config_key_count(); i++) {
		const char *def = config_key_default(i);
		const char *init = config_key_init(i);

		str_printf(&out, ".TP\n.B %s\n", config_key_name(i));
		roff_text(&out, config_key_help(i));
		str_append(&out, "\n.br\nValue: ");
		roff_text(&out, config_key_syntax(i, buf, sizeof(buf)));
		str_append(&out, ".\n.br\nDefault: ");
		if (def[0] == '\0') {
			str_append(&out, "empty");
		} else {
			str_append(&out, "\\fB");
			roff_text(&out, def);
			str_append(&out, "\\fR");
		}
		if (init != NULL) {
			str_append(&out, "; \\fBpetrel init\\fR writes \\fB");
			roff_text(&out, init);
			str_append(&out, "\\fR");
		}
		str_append(&out, ".\n");
	}
	str_append(&out,
	    ".SH FILES\n"
	    ".TP\n"
	    ".I " PETREL_SYSCONFDIR "/petrel/petrel.conf\n"
	    "the configuration of an installed petrel\n"
	    ".SH SEE ALSO\n"
	    ".BR petrel (8)\n");
	fwrite(out.data, 1, out.len, stdout);
	str_free(&out);
}

int
cmd_help(struct petrel_ctx *cli, int argc, char **argv)
{
	static const char *const allowed[] = { "man", NULL };
	struct cli_args a;
	int i;

	(void)cli;
	cli_parse(argc, argv, allowed, 0, 1, "petrel help [KEY | --man]", &a);
	if (cli_flag(&a, "man")) {
		if (a.npos > 0)
			cli_die("--man takes no KEY (usage: petrel help "
			    "[KEY | --man])");
		man_page();
		return 0;
	}
	if (a.npos == 0) {
		for (size_t k = 0; k < config_key_count(); k++)
			printf("%s\n", config_key_name(k));
		return 0;
	}
	i = config_key_find(a.pos[0]);
	if (i < 0)
		unknown_key(a.pos[0]);
	show_key((size_t)i);
	return 0;
}
