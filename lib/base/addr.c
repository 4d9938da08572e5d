/*
 * addr.c: address and domain syntax checks.
 *
 * Input is untrusted (command line, SMTP). We accept the RFC 5321 dot-atom
 * form only; quoted local parts are refused for stored addresses because
 * they have no unambiguous lower-case form and invite relay tricks.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base/addr.h"
#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/base/str.h"

static bool
is_atext(unsigned char c)
{
	/* RFC 5322 3.2.3 atext; RFC 6531 3.3 adds UTF-8 octets. */
	if (isalnum(c) || c >= 0x80)
		return true;
	return strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL && c != '\0';
}

bool
addr_local_valid(const char *local)
{
	size_t len = strlen(local);
	bool prev_dot = true;

	if (len == 0 || len > ADDR_LOCAL_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)local; *p; p++) {
		if (*p == '.') {
			if (prev_dot)
				return false;
			prev_dot = true;
		} else if (is_atext(*p)) {
			prev_dot = false;
		} else {
			return false;
		}
	}
	return !prev_dot;
}

bool
addr_domain_valid(const char *domain)
{
	size_t len = strlen(domain), label = 0;
	unsigned char prev = '.';

	if (len == 0 || len > ADDR_DOMAIN_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)domain; *p; p++) {
		if (*p == '.') {
			if (label == 0 || prev == '-')
				return false;
			label = 0;
		} else if (isalnum(*p) || *p >= 0x80 || *p == '-' || *p == '_') {
			if (label == 0 && *p == '-')
				return false;
			if (++label > 63)
				return false;
		} else {
			return false;
		}
		prev = *p;
	}
	return label > 0 && prev != '-';
}

int
addr_split(const char *address, char **local_r, char **domain_r)
{
	const char *at = strrchr(address, '@');
	char *local, *domain;

	if (at == NULL || at == address || strlen(address) > ADDR_MAX)
		return -1;
	local = xstrndup(address, (size_t)(at - address));
	domain = xstrdup(at + 1);
	if (!addr_local_valid(local) || !addr_domain_valid(domain)) {
		free(local);
		free(domain);
		return -1;
	}
	str_lower(local);
	str_lower(domain);
	if (local_r != NULL)
		*local_r = local;
	else
		free(local);
	*domain_r = domain;
	return 0;
}

int
addr_split_catchall(const char *address, char **domain_r)
{
	if (address[0] != '@' || !addr_domain_valid(address + 1))
		return -1;
	*domain_r = xstrdup(address + 1);
	str_lower(*domain_r);
	return 0;
}
