#ifndef PETREL_SIEVE_SPEC_H
#define PETREL_SIEVE_SPEC_H
/* The command, test and tag tables the validator checks a script
 * against (spec.c). */
#include <stdbool.h>

#define SIEVE_TAG_GROUPS 25	/* tags of one group exclude each other */
#define SIEVE_GROUP_INDEX 19	/* :index */
#define SIEVE_GROUP_LAST 20	/* :last */

struct sieve_tagspec {
	const char *name;
	char value;		/* 0, or the argument: 'S' string,
				   'L' string list, 'N' number */
	unsigned ext;		/* SIEVE_EXT_* needed, or 0 */
	int group;
};

struct sieve_spec {
	const char *name;
	bool test;
	unsigned ext;		/* SIEVE_EXT_* needed, or 0 */
	const char *tags;	/* allowed tags, space-separated */
	const char *pos;	/* positional types: 'S' string, 'L' string
				   list, 'N' number */
	size_t optional_pos;	/* how many of the first ones may be left
				   out */
	int tests;		/* 0 none, 1 one test, 2 a test list */
	bool block;
	int need_group;		/* a tag of this group is required, or -1 */
	const char *need_text;
};

extern const struct sieve_tagspec sieve_tagspecs[];
extern const struct sieve_spec sieve_specs[];

#endif
