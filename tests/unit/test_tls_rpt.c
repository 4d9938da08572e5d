/* Unit tests for lib/trust/tls_rpt.c: the _smtp._tls TXT record, JSON
 * strings, and rows recorded, built into an RFC 8460 report and removed
 * (a state database in the test's directory). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/alloc.h"
#include "lib/base/str.h"
#include "lib/trust/tls_rpt.h"
#include "tests/unit/test.h"

static int
txt(const char *t, char **rua)
{
	return tls_rpt_txt_parse(t, strlen(t), rua);
}

static void
test_txt(void)
{
	char *rua = NULL;

	test_begin("TLS-RPT: the _smtp._tls TXT record");
	test_assert(txt("v=TLSRPTv1; rua=mailto:r@example.com", &rua) == 1);
	test_assert_streq(rua, "mailto:r@example.com");
	free(rua);
	test_assert(txt("v=TLSRPTv1;rua=mailto:a@x.example , "
	    "https://r.example/v1;", &rua) == 1);
	test_assert_streq(rua, "mailto:a@x.example,https://r.example/v1");
	free(rua);
	test_assert(txt("v=TLSRPTv1; ext=1; rua=https://r.example", &rua) ==
	    1);
	test_assert_streq(rua, "https://r.example");
	free(rua);
	/* not a TLSRPT record */
	test_assert(txt("v=spf1 -all", &rua) == 0 && rua == NULL);
	test_assert(txt("v=TLSRPTv10; rua=mailto:a@b.example", &rua) == 0);
	test_assert(txt("", &rua) == 0);
	/* a TLSRPT record that does not parse */
	test_assert(txt("v=TLSRPTv1", &rua) == -1 && rua == NULL);
	test_assert(txt("v=TLSRPTv1; rua=", &rua) == -1);
	test_assert(txt("v=TLSRPTv1; rua=mailto:a@b.example,", &rua) == -1);
	test_assert(txt("v=TLSRPTv1; rua=mailto:a@b.example; rua=mailto:"
	    "c@d.example", &rua) == -1);
	test_assert(txt("v=TLSRPTv1; rua=mailto:a b@c.example", &rua) == -1);
	test_assert(txt("v=TLSRPTv1; junk; rua=mailto:a@b.example", &rua) ==
	    -1);
	test_assert(txt("v=TLSRPTv1; rua=mailto:a@b.example\n", &rua) == -1);
	test_end();
}

static void
test_json_str(void)
{
	str_t s = STR_INIT;

	test_begin("TLS-RPT: JSON strings");
	tls_rpt_json_str(&s, "a\"b\\c\n\x01\xc3\xa9");
	test_assert_streq(str_c(&s), "\"a\\\"b\\\\c\\u000a\\u0001??\"");
	str_free(&s);
	test_end();
}

static void
row(struct tls_rpt_row *r, const char *domain, const char *ptype,
    const char *result, const char *rmx)
{
	memset(r, 0, sizeof(*r));
	r->time = 1700000000;	/* 2023-11-14T22:13:20Z */
	snprintf(r->domain, sizeof(r->domain), "%s", domain);
	snprintf(r->policy_type, sizeof(r->policy_type), "%s", ptype);
	if (strcmp(ptype, "sts") == 0) {
		snprintf(r->policy, sizeof(r->policy), "version: STSv1\n"
		    "mode: enforce\nmx: *.example.com\nmax_age: 86400");
		snprintf(r->mx, sizeof(r->mx), "*.example.com");
	}
	snprintf(r->result, sizeof(r->result), "%s", result);
	snprintf(r->sending_ip, sizeof(r->sending_ip), "192.0.2.1");
	snprintf(r->receiving_mx, sizeof(r->receiving_mx), "%s", rmx);
	snprintf(r->receiving_ip, sizeof(r->receiving_ip), "198.51.100.7");
}

static size_t
count(const char *s, const char *what)
{
	size_t n = 0;

	for (const char *p = s; (p = strstr(p, what)) != NULL; p++)
		n++;
	return n;
}

static void
test_rows(void)
{
	char *path = xasprintf("%s/state.db", test_tmpdir());
	struct tls_rpt_db *db = NULL;
	struct tls_rpt_row r;
	struct tls_rpt_meta meta = { "Org \"X\"", "pm@org.example",
	    "r1@org.example" };
	str_t js = STR_INIT;
	char **domains = NULL, *err = NULL;
	size_t n = 0, sessions = 0;
	int64_t max_id = 0, begin = 0, end = 0;

	test_begin("TLS-RPT: rows recorded, built into a report, removed");
	remove(path);
	test_assert(tls_rpt_open(path, &db, &err) == 0);
	for (int i = 0; i < 3; i++) {
		row(&r, "example.com", "sts", "", "mx1.example.com");
		tls_rpt_record(path, &r);
	}
	for (int i = 0; i < 2; i++) {
		row(&r, "example.com", "sts", TLS_RPT_HOST_MISMATCH,
		    "mx2.example.com");
		snprintf(r.detail, sizeof(r.detail), "hostname mismatch");
		tls_rpt_record(path, &r);
	}
	row(&r, "example.com", "no-policy-found", TLS_RPT_STARTTLS,
	    "mx1.example.com");
	r.time = 1700086400;	/* the next day */
	tls_rpt_record(path, &r);
	row(&r, "other.example", "tlsa", "", "mx.other.example");
	snprintf(r.policy, sizeof(r.policy), "3 1 1 abcd");
	tls_rpt_record(path, &r);
	tls_rpt_flush();
	test_assert(tls_rpt_open(path, &db, &err) == 1);
	test_assert(tls_rpt_domains(db, &domains, &n, &max_id, &err) == 0);
	test_assert(n == 2 && strcmp(domains[0], "example.com") == 0 &&
	    strcmp(domains[1], "other.example") == 0);
	test_assert(max_id == 7);
	test_assert(tls_rpt_build(db, "example.com", max_id, &meta, &js,
	    &begin, &end, &sessions, &err) == 0);
	test_assert(sessions == 6);
	test_assert(begin == 1699920000 && end == 1700092800);
	test_assert(strstr(str_c(&js), "\"organization-name\": \"Org "
	    "\\\"X\\\"\"") != NULL);
	test_assert(strstr(str_c(&js), "\"date-range\": {\"start-datetime\": "
	    "\"2023-11-14T00:00:00Z\", \"end-datetime\": "
	    "\"2023-11-15T23:59:59Z\"}") != NULL);
	test_assert(strstr(str_c(&js), "\"contact-info\": \"pm@org.example\"")
	    != NULL);
	test_assert(strstr(str_c(&js), "\"report-id\": \"r1@org.example\"") !=
	    NULL);
	test_assert(count(str_c(&js), "\"policy-type\"") == 2);
	test_assert(strstr(str_c(&js), "{\"policy-type\": \"sts\", "
	    "\"policy-string\": [\"version: STSv1\", \"mode: enforce\", "
	    "\"mx: *.example.com\", \"max_age: 86400\"], \"policy-domain\": "
	    "\"example.com\", \"mx-host\": [\"*.example.com\"]}") != NULL);
	test_assert(strstr(str_c(&js), "\"total-successful-session-count\": "
	    "3, \"total-failure-session-count\": 2") != NULL);
	test_assert(strstr(str_c(&js), "{\"result-type\": "
	    "\"certificate-host-mismatch\", \"sending-mta-ip\": \"192.0.2.1\", "
	    "\"receiving-mx-hostname\": \"mx2.example.com\", "
	    "\"receiving-ip\": \"198.51.100.7\", \"failed-session-count\": 2, "
	    "\"failure-reason-code\": \"hostname mismatch\"}") != NULL);
	test_assert(strstr(str_c(&js), "{\"policy-type\": \"no-policy-found\", "
	    "\"policy-domain\": \"example.com\"}") != NULL);
	test_assert(strstr(str_c(&js), "\"total-successful-session-count\": "
	    "0, \"total-failure-session-count\": 1") != NULL);
	test_assert(strstr(str_c(&js), "other.example") == NULL);
	str_free(&js);
	test_assert(tls_rpt_build(db, "other.example", max_id, &meta, &js,
	    &begin, &end, &sessions, &err) == 0);
	test_assert(sessions == 1);
	test_assert(strstr(str_c(&js), "\"policy-type\": \"tlsa\", "
	    "\"policy-string\": [\"3 1 1 abcd\"]") != NULL);
	test_assert(strstr(str_c(&js), "failure-details") == NULL);
	str_free(&js);
	test_assert(tls_rpt_build(db, "none.example", max_id, &meta, &js,
	    &begin, &end, &sessions, &err) == -1);
	free(err);
	err = NULL;
	/* only the domain reported goes */
	test_assert(tls_rpt_remove(db, "example.com", max_id, &err) == 0);
	for (size_t i = 0; i < n; i++)
		free(domains[i]);
	free(domains);
	test_assert(tls_rpt_domains(db, &domains, &n, &max_id, &err) == 0);
	test_assert(n == 1 && strcmp(domains[0], "other.example") == 0);
	for (size_t i = 0; i < n; i++)
		free(domains[i]);
	free(domains);
	str_free(&js);
	tls_rpt_close(&db);
	free(path);
	test_end();
}

int
main(void)
{
	test_txt();
	test_json_str();
	test_rows();
	return test_done();
}
