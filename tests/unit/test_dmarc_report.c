/* Unit tests for lib/trust/dmarc_report.c: rua= mailto: URIs, XML text,
 * and rows recorded, grouped into a feedback document and removed (a
 * state database in the test's directory). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/trust/dmarc_report.h"
#include "tests/unit/test.h"

static int
mailto(const char *uri, char *addr, uint64_t *limit)
{
	return dmarc_report_mailto(uri, strlen(uri), addr, 512, limit);
}

static void
test_mailto(void)
{
	char a[512];
	uint64_t lim;

	test_begin("DMARC reports: rua= mailto: URIs");
	test_assert(mailto("mailto:d@example.com", a, &lim) == 0);
	test_assert_streq(a, "d@example.com");
	test_assert(lim == 0);
	test_assert(mailto("MAILTO:agg@r.example!10m", a, &lim) == 0);
	test_assert_streq(a, "agg@r.example");
	test_assert(lim == 10u << 20);
	test_assert(mailto("mailto:a@b.example!500", a, &lim) == 0 &&
	    lim == 500);
	test_assert(mailto("mailto:a%2Bb@b.example", a, &lim) == 0);
	test_assert_streq(a, "a+b@b.example");
	/* not ours to send to */
	test_assert(mailto("https://r.example/x", a, &lim) < 0);
	test_assert(mailto("mailto:", a, &lim) < 0);
	test_assert(mailto("mailto:nobody", a, &lim) < 0);
	test_assert(mailto("mailto:a@localhost", a, &lim) < 0);
	test_assert(mailto("mailto:a@b.example!10x", a, &lim) < 0);
	test_assert(mailto("mailto:a@b.example!", a, &lim) < 0);
	test_assert(mailto("mailto:a@b.example?subject=x", a, &lim) < 0);
	test_assert(mailto("mailto:a%0A@b.example", a, &lim) < 0);
	test_assert(mailto("mailto:<a@b.example>", a, &lim) < 0);
	test_assert(mailto("mailto:a@b@c.example", a, &lim) < 0);
	test_assert(mailto("mailto:a@b.example!99999999999999999999t", a,
	    &lim) < 0);
	test_end();
}

static void
test_xml_text(void)
{
	str_t s = STR_INIT;

	test_begin("DMARC reports: XML text escaped");
	dmarc_report_xml_text(&s, "a<b>&\"c'\x01\xc3\xa9");
	test_assert_streq(str_c(&s), "a&lt;b&gt;&amp;&quot;c&apos;???");
	str_free(&s);
	test_end();
}

static void
row(struct dmarc_report_row *r, const char *ip, enum dmarc_disposition d,
    bool spf_pass)
{
	memset(r, 0, sizeof(*r));
	r->time = 1700000000;
	snprintf(r->pub.domain, sizeof(r->pub.domain), "example.com");
	r->pub.p = 'r';
	r->pub.adkim = 's';
	r->pub.aspf = 'r';
	r->pub.pct = 50;
	snprintf(r->pub.rua, sizeof(r->pub.rua), "mailto:d@example.com");
	snprintf(r->ip, sizeof(r->ip), "%s", ip);
	snprintf(r->header_from, sizeof(r->header_from), "example.com");
	snprintf(r->envelope_from, sizeof(r->envelope_from), "<x>.example");
	r->disposition = d;
	r->spf_pass = spf_pass;
	r->ndkim = 1;
	snprintf(r->dkim[0].domain, sizeof(r->dkim[0].domain),
	    "example.com");
	snprintf(r->dkim[0].selector, sizeof(r->dkim[0].selector),
	    "sel with space");
	snprintf(r->dkim[0].result, sizeof(r->dkim[0].result), "fail");
	snprintf(r->spf_domain, sizeof(r->spf_domain), "example.com");
	snprintf(r->spf_result, sizeof(r->spf_result), spf_pass ? "pass" :
	    "fail");
}

static size_t
count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = strstr(hay, needle); p != NULL;
	    p = strstr(p + 1, needle))
		n++;
	return n;
}

static void
test_rows(void)
{
	char *path = xasprintf("%s/state.db", test_tmpdir());
	struct dmarc_report_db *db = NULL;
	struct dmarc_report_row r;
	struct dmarc_report_meta meta = { "org.example", "pm@org.example",
	    "r1", 1700000100 };
	str_t xml = STR_INIT;
	char **domains = NULL, *err = NULL, *rua = NULL;
	size_t n = 0, rows = 0;
	int64_t max_id = 0, begin = 0;

	test_begin("DMARC reports: rows recorded, grouped, removed");
	remove(path);
	test_assert(dmarc_report_open(path, &db, &err) == 0);
	for (int i = 0; i < 3; i++) {
		row(&r, "192.0.2.1", DMARC_D_NONE, true);
		dmarc_report_record(path, &r);
	}
	row(&r, "192.0.2.2", DMARC_D_REJECT, false);
	r.time = 1699999999;
	dmarc_report_record(path, &r);
	/* another policy domain: mark applied nothing p=reject asked for */
	row(&r, "192.0.2.3", DMARC_D_NONE, false);
	snprintf(r.pub.domain, sizeof(r.pub.domain), "other.example");
	r.local_policy = true;
	dmarc_report_record(path, &r);
	dmarc_report_flush();
	test_assert(dmarc_report_open(path, &db, &err) == 1);
	test_assert(dmarc_report_domains(db, &domains, &n, &max_id,
	    &err) == 0);
	test_assert(n == 2 && strcmp(domains[0], "example.com") == 0 &&
	    strcmp(domains[1], "other.example") == 0);
	test_assert(max_id == 5);
	test_assert(dmarc_report_build(db, "example.com", max_id, &meta, &xml,
	    &rua, &begin, &rows, &err) == 0);
	test_assert_streq(rua, "mailto:d@example.com");
	test_assert(begin == 1699999999 && rows == 4);
	test_assert(count(str_c(&xml), "<record>") == 2);
	test_assert(count(str_c(&xml), "<count>3</count>") == 1);
	test_assert(count(str_c(&xml), "<count>1</count>") == 1);
	test_assert(count(str_c(&xml), "<disposition>reject</disposition>")
	    == 1);
	test_assert(strstr(str_c(&xml), "<p>reject</p>\n    <sp>reject</sp>\n"
	    "    <pct>50</pct>") != NULL);
	test_assert(strstr(str_c(&xml), "<adkim>s</adkim>") != NULL);
	test_assert(strstr(str_c(&xml), "<selector>sel_with_space</selector>")
	    != NULL);
	test_assert(strstr(str_c(&xml), "<envelope_from>&lt;x&gt;.example"
	    "</envelope_from>") != NULL);
	test_assert(strstr(str_c(&xml), "<begin>1699999999</begin>") != NULL);
	test_assert(strstr(str_c(&xml), "<end>1700000100</end>") != NULL);
	test_assert(strstr(str_c(&xml), "<reason>") == NULL);
	free(rua);
	str_free(&xml);
	test_assert(dmarc_report_build(db, "other.example", max_id, &meta,
	    &xml, &rua, &begin, &rows, &err) == 0);
	test_assert(rows == 1 && count(str_c(&xml), "<record>") == 1);
	test_assert(strstr(str_c(&xml), "<disposition>none</disposition>\n"
	    "        <dkim>fail</dkim>\n        <spf>fail</spf>\n"
	    "        <reason>\n          <type>local_policy</type>") != NULL);
	/* only the domain reported goes */
	test_assert(dmarc_report_remove(db, "example.com", max_id, &err) ==
	    0);
	for (size_t i = 0; i < n; i++)
		free(domains[i]);
	free(domains);
	test_assert(dmarc_report_domains(db, &domains, &n, &max_id,
	    &err) == 0);
	test_assert(n == 1 && strcmp(domains[0], "other.example") == 0);
	for (size_t i = 0; i < n; i++)
		free(domains[i]);
	free(domains);
	free(rua);
	str_free(&xml);
	dmarc_report_close(&db);
	free(path);
	test_end();
}

int
main(void)
{
	test_mailto();
	test_xml_text();
	test_rows();
	return test_done();
}
