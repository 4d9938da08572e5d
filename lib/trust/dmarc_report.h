#ifndef PETREL_TRUST_DMARC_REPORT_H
#define PETREL_TRUST_DMARC_REPORT_H
/*
 * dmarc_report: DMARC aggregate reports (RFC 7489 7.2, Appendix C).
 *
 * The SMTP server records one row per message whose policy record has a
 * rua= (`dmarc_reports = yes`) in petrel's own state database (SQLite,
 * queue_dir/state.db, the file greylisting uses; table dmarc_report).
 * Rows are handed to a writer thread and written in batches: the SMTP
 * reply never waits for the database, and a failure to record is logged,
 * never answered.
 *
 * `petrel dmarc report` reads them back per policy domain, builds the
 * feedback document, and removes the rows once the report is queued.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/base/str.h"
#include "lib/trust/dmarc.h"

#define DMARC_REPORT_DKIM_MAX 8		/* DKIM results kept per message */
#define DMARC_REPORT_PENDING_MAX 4096	/* rows waiting for the writer;
					 * more are dropped (logged) */
#define DMARC_REPORT_ROWS_MAX 1000000	/* the table's bound: the oldest
					 * go first */

struct dmarc_report_dkim {
	char domain[256];
	char selector[128];
	char result[16];
};

/* What one message adds to a report. */
struct dmarc_report_row {
	int64_t time;			/* unix seconds */
	struct dmarc_published pub;
	char ip[64];			/* source_ip */
	char header_from[256];
	char envelope_from[256];	/* the MAIL FROM domain; "" for <> */
	enum dmarc_disposition disposition;	/* applied */
	bool local_policy;	/* the policy asked for more than was done
				 * (dmarc_policy = mark) */
	bool dkim_pass, spf_pass;	/* aligned passes (policy_evaluated) */
	struct dmarc_report_dkim dkim[DMARC_REPORT_DKIM_MAX];
	size_t ndkim;
	char spf_domain[256];
	bool spf_helo;			/* scope helo, else mfrom */
	char spf_result[16];
};

/* Queue a row for the writer thread of this process (started on first
 * use) that writes to the state database at path (made when missing).
 * Never blocks on the database. */
void dmarc_report_record(const char *path, const struct dmarc_report_row *r);

/* Write what is queued now (the writer thread does it by itself; for
 * the end of a process and for tests). */
void dmarc_report_flush(void);

/* ---- reading (petrel dmarc report) ---- */

struct dmarc_report_db;

/* Open the state database at path: 1 with *db, 0 when it has no rows
 * (or does not exist), -1 with *error_r (malloc'd). */
int dmarc_report_open(const char *path, struct dmarc_report_db **db,
    char **error_r);
void dmarc_report_close(struct dmarc_report_db **db);

/* The policy domains with rows up to the newest one now (its id in
 * *max_id): a malloc'd array of malloc'd names. -1 with *error_r. */
int dmarc_report_domains(struct dmarc_report_db *db, char ***domains_r,
    size_t *n_r, int64_t *max_id, char **error_r);

/* Who reports. */
struct dmarc_report_meta {
	const char *org_name;
	const char *email;
	const char *report_id;
	int64_t end;			/* the end of the period (now) */
};

/* One domain's report: the feedback document (Appendix C) of its rows
 * with id <= max_id in *xml, the rua= published last in *rua_r
 * (malloc'd), the period in *begin_r (the first row's time) and
 * meta->end. Rows that agree on everything reported are one record with
 * their count. 0, or -1 with *error_r. */
int dmarc_report_build(struct dmarc_report_db *db, const char *domain,
    int64_t max_id, const struct dmarc_report_meta *meta, str_t *xml,
    char **rua_r, int64_t *begin_r, size_t *rows_r, char **error_r);

/* Remove the domain's rows with id <= max_id. 0, or -1 with *error_r. */
int dmarc_report_remove(struct dmarc_report_db *db, const char *domain,
    int64_t max_id, char **error_r);

/* One URI of a rua= list (RFC 7489 6.2): the mailto: address (percent-
 * decoded) in addr and the size limit in *limit (octets; 0: none).
 * 0, or -1 when it is no mailto: URI petrel can send to. */
int dmarc_report_mailto(const char *uri, size_t len, char *addr,
    size_t addrlen, uint64_t *limit);

/* Append s with XML's five special characters escaped and any control
 * character or non-ASCII byte replaced by '?'. */
void dmarc_report_xml_text(str_t *out, const char *s);

#endif
