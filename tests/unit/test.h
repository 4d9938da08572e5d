#ifndef PETREL_TEST_H
#define PETREL_TEST_H
/* Tiny unit-test harness: test_begin("name"); test_assert(expr); ...
 * test_end(); main returns test_done(). Failures print file:line and the
 * expression; the binary exits non-zero if any assertion failed. */
#include <stdbool.h>
#include <string.h>

void test_begin(const char *name);
void test_assert_at(bool ok, const char *expr, const char *file, int line);
void test_end(void);
int test_done(void);
/* A fresh empty directory for this test binary (removed at exit). */
const char *test_tmpdir(void);

#define test_assert(expr) test_assert_at((expr) ? true : false, #expr, __FILE__, __LINE__)
#define test_assert_streq(a, b) \
	test_assert_at(((a) != NULL && (b) != NULL && strcmp((a), (b)) == 0), \
	    #a " == " #b, __FILE__, __LINE__)

#endif
