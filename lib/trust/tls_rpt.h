#ifndef PETREL_TRUST_TLS_RPT_H
#define PETREL_TRUST_TLS_RPT_H
/*
 * tls_rpt: SMTP TLS reporting (RFC 8460) of the queue's MX deliveries.
 *
 * With `tls_rpt_reports = yes` the queue manager records one row per
 * SMTP session to a recipient domain's MX (and one per failed MTA-STS
 * policy fetch) in petrel's state database (queue_dir/state.db, table
 * tls_rpt): the policy domain, the policy applied (sts, tlsa or
 * no-policy-found, with its text), and the result: "" for a successful
 * session, else an RFC 8460 4.3 result type. Rows are handed to a writer
 * thread: the manager's event loop never waits for SQLite.
 *
 * `petrel tlsrpt report` reads them back per policy domain, builds the
 * JSON report (RFC 8460 4.4) and removes the rows once it is sent.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/str.h"

#define TLS_RPT_PENDING_MAX 2048	/* rows waiting for the writer;
					 * more are dropped (logged) */
#define TLS_RPT_ROWS_MAX 1000000	/* the table's bound: the oldest go */

/* RFC 8460 4.3 result types petrel reports. */
#define TLS_RPT_STARTTLS "starttls-not-supported"
#define TLS_RPT_HOST_MISMATCH "certificate-host-mismatch"
#define TLS_RPT_EXPIRED "certificate-expired"
#define TLS_RPT_NOT_TRUSTED "certificate-not-trusted"
#define TLS_RPT_VALIDATION "validation-failure"
#define TLS_RPT_TLSA_INVALID "tlsa-invalid"
#define TLS_RPT_DNSSEC_INVALID "dnssec-invalid"
#define TLS_RPT_STS_FETCH "sts-policy-fetch-error"
#define TLS_RPT_STS_INVALID "sts-policy-invalid"
#define TLS_RPT_STS_WEBPKI "sts-webpki-invalid"

/* One session (or one failed policy fetch). */
struct tls_rpt_row {
	int64_t time;			/* unix seconds */
	char domain[256];		/* the policy domain */
	char policy_type[16];	/* "sts", "tlsa", "no-policy-found" */
	char policy[2048];	/* policy-string: lines, LF-separated */
	char mx[1024];		/* sts: the mx patterns, LF-separated */
	char result[32];		/* "": success; else a result type */
	char sending_ip[64];		/* "" when no connection was made */
	char receiving_mx[256];
	char receiving_ip[64];
	char detail[256];		/* failure-reason-code (free text) */
};

/* Queue a row for this process's writer thread (started on first use),
 * which writes to the state database at path (made when missing). Never
 * blocks on the database. */
void tls_rpt_record(const char *path, const struct tls_rpt_row *r);

/* Write what is queued now (for the end of a process and for tests). */
void tls_rpt_flush(void);

/* ---- reading (petrel tlsrpt report) ---- */

struct tls_rpt_db;

/* 1 with *db, 0 when the database does not exist, -1 with *error_r. */
int tls_rpt_open(const char *path, struct tls_rpt_db **db, char **error_r);
void tls_rpt_close(struct tls_rpt_db **db);

/* The policy domains with rows up to the newest now (its id in
 * *max_id): a malloc'd array of malloc'd names. -1 with *error_r. */
int tls_rpt_domains(struct tls_rpt_db *db, char ***domains_r, size_t *n_r,
    int64_t *max_id, char **error_r);

struct tls_rpt_meta {
	const char *org_name;
	const char *contact;
	const char *report_id;
};

/* The domain's report (RFC 8460 4.4) of its rows with id <= max_id, as
 * JSON in *json; the first and the last UTC day of its rows (00:00:00
 * of the first, 24:00:00 of the last) in *begin_r, *end_r, the number of
 * sessions in *sessions_r. 0, or -1 with *error_r. */
int tls_rpt_build(struct tls_rpt_db *db, const char *domain, int64_t max_id,
    const struct tls_rpt_meta *meta, str_t *json, int64_t *begin_r,
    int64_t *end_r, size_t *sessions_r, char **error_r);

/* Remove the domain's rows with id <= max_id. 0, or -1 with *error_r. */
int tls_rpt_remove(struct tls_rpt_db *db, const char *domain,
    int64_t max_id, char **error_r);

/* One TXT record at _smtp._tls.DOMAIN (RFC 8460 3): 1 when it is a
 * TLSRPTv1 record, its rua= value (the URIs, comma-separated, white
 * space around them removed) in *rua_r (malloc'd); 0 when it is not one
 * (it does not start with "v=TLSRPTv1"); -1 when it does but does not
 * parse (no rua=, an empty URI, a field without '=', control
 * characters). */
int tls_rpt_txt_parse(const char *txt, size_t len, char **rua_r);

/* Append s as a JSON string (quotes included): '"' and '\\' escaped,
 * control characters as \u00XX, bytes outside ASCII as '?' (the
 * report must be UTF-8; its texts are host names, addresses, records). */
void tls_rpt_json_str(str_t *out, const char *s);

#endif
