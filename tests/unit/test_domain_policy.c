/* Unit tests for lib/trust/domain_policy.c (domain_policy_file: the
 * syntax, its errors, and which line a domain's policy comes from). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/trust/domain_policy.h"
#include "test.h"

static struct domain_policies *
parse(const char *text)
{
	struct domain_policies *p;
	char *err;

	if (domain_policies_parse(text, strlen(text), "f", &p, &err) < 0) {
		fprintf(stderr, "unexpected: %s\n", err);
		free(err);
		return NULL;
	}
	return p;
}

/* The error of a text that must be refused, or NULL. */
static char *
refused(const char *text)
{
	struct domain_policies *p;
	char *err = NULL;

	if (domain_policies_parse(text, strlen(text), "f", &p, &err) == 0) {
		domain_policies_free(p);
		return NULL;
	}
	return err;
}

static void
test_lookup(void)
{
	struct domain_policies *p;
	struct domain_policy d;

	test_begin("domain_policy: lines and lookups");
	p = parse("# recipient domains\n"
	    "\n"
	    "Example.ORG   spf_policy=reject dmarc_policy=enforce # own\n"
	    ".example.org\tdmarc_policy=ignore\r\n"
	    "lists.example.org spf_policy=ignore\n"
	    "relaxed.test. dmarc_policy=mark\n"
	    ".test spf_policy=mark");
	test_assert(p != NULL);
	d = domain_policy_of(p, "example.org");
	test_assert(d.spf == 1 && d.dmarc == 1);
	d = domain_policy_of(p, "EXAMPLE.org.");
	test_assert(d.spf == 1 && d.dmarc == 1);
	/* .example.org is for subdomains only; the domain's own line is
	 * not inherited by them */
	d = domain_policy_of(p, "a.b.example.org");
	test_assert(d.spf == DP_UNSET && d.dmarc == 2);
	/* a key the own line leaves out comes from the parent's line */
	d = domain_policy_of(p, "lists.example.org");
	test_assert(d.spf == 2 && d.dmarc == 2);
	d = domain_policy_of(p, "relaxed.test");
	test_assert(d.spf == 0 && d.dmarc == 0);
	d = domain_policy_of(p, "other.net");
	test_assert(d.spf == DP_UNSET && d.dmarc == DP_UNSET);
	d = domain_policy_of(p, "");
	test_assert(d.spf == DP_UNSET && d.dmarc == DP_UNSET);
	test_assert(domain_policies_sets_spf(p, DP_UNSET));
	test_assert(domain_policies_sets_spf(p, 2));
	test_assert(domain_policies_sets_dmarc(p, 2));
	domain_policies_free(p);
	/* nothing but comments: no policies at all */
	p = parse("# none\n   \n");
	test_assert(p == NULL);
	d = domain_policy_of(NULL, "example.org");
	test_assert(d.spf == DP_UNSET);
	p = parse("a.test dmarc_policy=ignore\n");
	test_assert(p != NULL && !domain_policies_sets_spf(p, DP_UNSET));
	test_assert(!domain_policies_sets_dmarc(p, 2));
	test_assert(domain_policies_sets_dmarc(p, DP_UNSET));
	domain_policies_free(p);
	test_end();
}

static void
test_errors(void)
{
	char *e;

	test_begin("domain_policy: refused lines name their line");
	e = refused("a.test spf_policy=reject\nb.test spf_policy=maybe\n");
	test_assert(e != NULL && strncmp(e, "f:2: spf_policy must be", 23)
	    == 0);
	free(e);
	e = refused("a.test\n");
	test_assert(e != NULL && strstr(e, "without settings") != NULL);
	free(e);
	e = refused("a.test greylist=yes\n");
	test_assert(e != NULL && strstr(e, "unknown key") != NULL);
	free(e);
	e = refused("a.test spf_policy\n");
	test_assert(e != NULL && strstr(e, "KEY=VALUE") != NULL);
	free(e);
	e = refused("a.test spf_policy=mark spf_policy=reject\n");
	test_assert(e != NULL && strstr(e, "twice") != NULL);
	free(e);
	e = refused("x\n\na.test dmarc_policy=mark\nA.TEST spf_policy=mark\n");
	test_assert(e != NULL && strncmp(e, "f:1:", 4) == 0);
	free(e);
	e = refused("a.test dmarc_policy=mark\nA.TEST spf_policy=mark\n");
	test_assert(e != NULL && strncmp(e, "f:2: the domain has", 19) == 0);
	free(e);
	for (const char *bad = "a..test\0-\0.\0..a\0a b=c\0a/b spf_policy=mark\0"
	    "@a spf_policy=mark\0"; *bad != '\0'; bad += strlen(bad) + 1) {
		char line[64];

		snprintf(line, sizeof(line), "%s spf_policy=mark\n", bad);
		e = refused(line);
		test_assert(e != NULL);
		free(e);
	}
	e = refused("a.test spf_policy=mark\0 b\n");
	test_assert(e == NULL);	/* strlen stops at the NUL */
	{
		struct domain_policies *p;
		const char nul[] = "a.test spf_policy=mark\0x\n";

		test_assert(domain_policies_parse(nul, sizeof(nul) - 1, "f",
		    &p, &e) < 0 && strstr(e, "NUL") != NULL);
		free(e);
	}
	test_end();
}

static void
test_load(void)
{
	char path[512];
	struct domain_policies *p;
	char *e;
	FILE *f;

	test_begin("domain_policy: files");
	test_assert(domain_policies_load("", &p, &e) == 0 && p == NULL);
	snprintf(path, sizeof(path), "%s/policies", test_tmpdir());
	test_assert(domain_policies_load(path, &p, &e) < 0 &&
	    strstr(e, "No such file") != NULL);
	free(e);
	f = fopen(path, "w");
	test_assert(f != NULL);
	fputs(".example.net spf_policy=reject\n", f);
	fclose(f);
	test_assert(domain_policies_load(path, &p, &e) == 0 && p != NULL);
	test_assert(domain_policy_of(p, "mx.example.net").spf == 1);
	domain_policies_free(p);
	test_assert(domain_policies_load(test_tmpdir(), &p, &e) < 0);
	free(e);
	test_end();
}

int
main(void)
{
	test_lookup();
	test_errors();
	test_load();
	return test_done();
}
