/* Unit tests for lib/tls/tls.c: self-signed certificates and pair checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/base/alloc.h"
#include "lib/tls/tls.h"
#include "test.h"

static void
test_selfsigned(void)
{
	char *c1 = xasprintf("%s/c1.pem", test_tmpdir());
	char *k1 = xasprintf("%s/k1.pem", test_tmpdir());
	char *c2 = xasprintf("%s/c2.pem", test_tmpdir());
	char *k2 = xasprintf("%s/k2.pem", test_tmpdir());
	const char *err = NULL;
	struct stat st;
	int days = 0;

	test_begin("tls self-signed certificate, key mode, pair check");
	test_assert(tls_make_selfsigned(c1, k1, "mx.example.test", &err) == 0);
	test_assert(stat(k1, &st) == 0 && (st.st_mode & 0777) == 0600);
	test_assert(tls_check_pair(c1, k1, &days, &err) == 0);
	test_assert(days > 3600 && days <= 3650);
	test_end();

	test_begin("tls pair check refuses mismatched, missing, garbage files");
	test_assert(tls_make_selfsigned(c2, k2, "other.test", &err) == 0);
	test_assert(tls_check_pair(c1, k2, NULL, &err) == -1);
	test_assert(err != NULL && strstr(err, "does not match") != NULL);
	test_assert(tls_check_pair("/nonexistent/c.pem", k1, NULL, &err) == -1);
	test_assert(tls_check_pair(c1, "/nonexistent/k.pem", NULL, &err) == -1);
	{
		FILE *fp = fopen(c2, "w");

		test_assert(fp != NULL);
		if (fp != NULL) {
			fputs("not a certificate\n", fp);
			fclose(fp);
		}
	}
	test_assert(tls_check_pair(c2, k2, NULL, &err) == -1);
	test_assert(tls_make_selfsigned("/nonexistent/c.pem", "/nonexistent/k.pem",
	    "x", &err) == -1);
	test_end();
	free(c1);
	free(k1);
	free(c2);
	free(k2);
}

int
main(void)
{
	test_selfsigned();
	return test_done();
}
