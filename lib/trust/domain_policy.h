#ifndef PETREL_TRUST_DOMAIN_POLICY_H
#define PETREL_TRUST_DOMAIN_POLICY_H
/*
 * domain_policy: the trust policy of a recipient domain, from the file
 * `domain_policy_file` names (the way Postfix admins give recipient
 * domains their own restrictions with check_recipient_access and
 * restriction classes). A line is
 *
 *     DOMAIN  KEY=VALUE [KEY=VALUE ...]      # comment
 *
 * with KEY spf_policy (mark|reject|ignore) or dmarc_policy
 * (enforce|mark|ignore); DOMAIN is a domain name, or .DOMAIN for every
 * subdomain of it (the domain itself needs its own line). A key a line
 * does not set comes from the next less specific line that sets it
 * (the domain's own line, then the nearest parent's .DOMAIN line, and
 * so on), else from the server-wide setting.
 * No I/O besides reading the file.
 */
#include <stddef.h>

enum { DP_UNSET = -1 };

/* Values: the index of the word in the key's list above (spf_policy:
 * 0 mark, 1 reject, 2 ignore; dmarc_policy: 0 mark, 1 enforce,
 * 2 ignore), or DP_UNSET. */
struct domain_policy {
	int spf;
	int dmarc;
};

struct domain_policies;

/* Read the file. 0 with *r (NULL for "" or a file without lines), or
 * -1 with *error_r ("PATH:LINE: what is wrong", free it). */
int domain_policies_load(const char *path, struct domain_policies **r,
    char **error_r);
/* The same for text already read; name is used in messages. */
int domain_policies_parse(const char *text, size_t len, const char *name,
    struct domain_policies **r, char **error_r);
void domain_policies_free(struct domain_policies *p);

/* The policy of a domain (case-insensitive, no final dot): the most
 * specific line's, each key DP_UNSET where no line sets it. */
struct domain_policy domain_policy_of(const struct domain_policies *p,
    const char *domain);

/* Does some line set spf_policy (dmarc_policy) at all, to something
 * other than `except` (DP_UNSET: to anything)? */
int domain_policies_sets_spf(const struct domain_policies *p, int except);
int domain_policies_sets_dmarc(const struct domain_policies *p, int except);

#endif
