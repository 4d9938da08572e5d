/*
 * mx_answer.h: the MX records of a DNS answer (RFC 1035 3.3.9, RFC 5321
 * 5.1, RFC 7505), as libunbound hands their rdata to queue/mx.c: apart
 * from the resolver so that it can be tested and fuzzed alone. The rdata
 * comes from whoever answers for the recipient's domain: hostile bytes.
 */
#ifndef PETREL_QUEUE_MX_ANSWER_H
#define PETREL_QUEUE_MX_ANSWER_H

#include <stdbool.h>
#include <stddef.h>

/* At most this many records of one answer are used. */
#define MX_RECORDS_MAX 16

struct mx_record {
	unsigned pref;
	char name[254];	/* a host name, "" for the root (null MX) */
};

/* One MX rdata: a 16-bit preference, then an uncompressed domain name
 * ending at the root label, with nothing after it. The name is accepted
 * only as a host name: labels of 1..63 letters, digits, '-' or '_', at
 * most 253 octets in all (so no NUL, dot, space or control octet can
 * reach getaddrinfo(), the logs or the queue files). false if not. */
bool mx_rdata_parse(const unsigned char *p, size_t len, struct mx_record *r);

/* The usable records of an answer (data[i] of len[i] octets, i < n),
 * the first MX_RECORDS_MAX good ones, sorted by preference; equal
 * preferences keep the resolver's order. Returns how many. */
size_t mx_answer_sort(const unsigned char *const *data, const size_t *len,
    size_t n, struct mx_record *out);

/* RFC 7505: exactly one record, naming the root. */
bool mx_answer_null(const struct mx_record *mx, size_t n);

#endif
