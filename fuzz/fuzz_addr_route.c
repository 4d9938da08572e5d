/*
 * fuzz_addr_route.c: address syntax (lib/base/addr.c: what RCPT TO, MAIL
 * FROM and every alias target in the directory go through) and the
 * resolution of a directory's maildir column under mail_root
 * (route_maildir_path: hostile column values must not leave mail_root).
 * The first byte picks mail_root; the rest, up to a NUL, is the address
 * and the maildir value. Checks:
 *  - addr_split accepts exactly a valid local part, '@' (the last one),
 *    a valid domain, at most 254 octets, and gives them lower-cased;
 *    addr_split_catchall likewise for "@domain";
 *  - a resolved maildir is mail_root, '/', then components none of
 *    which is empty, "." or "..", with at least one; an optional '/' at
 *    the end only if the value ended so; a full path outside mail_root
 *    or a ".." component anywhere is refused;
 *  - resolving the result again gives it back.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/addr.h"
#include "lib/base/alloc.h"
#include "lib/route/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const roots[8] = {
	"/var/mail", "/var/mail/", "/", "/srv/m//", "/var/mail/vhosts",
	"//", "/v", "/var/mail",
};

static bool
lower_same(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (tolower((unsigned char)a[i]) != (unsigned char)b[i])
			return false;
	return true;
}

static void
check_addr(const char *in)
{
	char *local = NULL, *domain = NULL;
	const char *at = strrchr(in, '@');
	size_t len = strlen(in);

	if (addr_split(in, &local, &domain) == 0) {
		size_t ll = strlen(local), dl = strlen(domain);

		if (at == NULL || len > 254 || ll + 1 + dl != len ||
		    ll != (size_t)(at - in) || !lower_same(in, local, ll) ||
		    !lower_same(at + 1, domain, dl) ||
		    !addr_local_valid(local) || !addr_domain_valid(domain) ||
		    ll == 0 || ll > 64 || dl == 0 || dl > 255)
			abort();
		/* a valid local part is a dot-atom: no '@', no leading,
		 * trailing or double dot */
		if (strchr(local, '@') || local[0] == '.' ||
		    local[ll - 1] == '.' || strstr(local, "..") ||
		    domain[0] == '.' || domain[dl - 1] == '.' ||
		    domain[0] == '-' || strstr(domain, ".."))
			abort();
		free(local);
		free(domain);
	} else if (at != NULL && at != in && len <= 254) {
		/* refused: then one of the halves is invalid */
		char *l = xstrndup(in, (size_t)(at - in));

		if (addr_local_valid(l) && addr_domain_valid(at + 1))
			abort();
		free(l);
	}
	if (addr_split_catchall(in, &domain) == 0) {
		if (in[0] != '@' || !addr_domain_valid(in + 1) ||
		    !lower_same(in + 1, domain, strlen(in + 1)) ||
		    strlen(domain) != len - 1)
			abort();
		free(domain);
	} else if (in[0] == '@' && addr_domain_valid(in + 1)) {
		abort();
	}
}

/* Does the value have a ".." component? */
static bool
has_dotdot(const char *p)
{
	for (;;) {
		size_t n = strcspn(p, "/");

		if (n == 2 && p[0] == '.' && p[1] == '.')
			return true;
		if (p[n] == '\0')
			return false;
		p += n + 1;
	}
}

static void
check_maildir(const char *root, const char *value)
{
	char *path = route_maildir_path(root, value), *again;
	size_t rn = strlen(root), vn = strlen(value);
	const char *p;
	size_t ncomp = 0;

	while (rn > 1 && root[rn - 1] == '/')
		rn--;
	if (rn == 1 && root[0] == '/')
		rn = 0;	/* mail_root "/": paths start at the root */
	if (path == NULL) {
		if (vn > 0 && !has_dotdot(value) && value[0] != '/' &&
		    strspn(value, "/.") < vn && strstr(value, "/") == NULL &&
		    strcmp(value, ".") != 0 &&
		    !route_maildir_is_forward(value))
			abort();	/* a plain name is always accepted,
					   unless it is addresses (a forward) */
		return;
	}
	if (route_maildir_is_forward(value))
		abort();	/* a forward is never a directory */
	if (vn == 0 || has_dotdot(value) || strncmp(path, root, rn) != 0 ||
	    path[rn] != '/')
		abort();
	if (value[0] == '/' && (strncmp(value, root, rn) != 0 ||
	    value[rn] != '/'))
		abort();
	for (p = path + rn + 1;;) {
		size_t n = strcspn(p, "/");

		if (n == 0) {
			/* only a final '/', and only if the value had one */
			if (*p != '\0' || ncomp == 0 || value[vn - 1] != '/')
				abort();
			break;
		}
		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' &&
		    p[1] == '.'))
			abort();
		ncomp++;
		if (p[n] == '\0') {
			if (value[vn - 1] == '/')
				abort();
			break;
		}
		p += n + 1;
	}
	if (ncomp == 0)
		abort();
	again = route_maildir_path(root, path);
	if (again == NULL || strcmp(again, path) != 0)
		abort();
	free(again);
	free(path);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text;

	if (size == 0)
		return 0;
	text = xstrndup((const char *)data + 1, size - 1);
	check_addr(text);
	check_maildir(roots[data[0] & 7], text);
	free(text);
	return 0;
}
