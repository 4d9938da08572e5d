/*
 * dmarc_report.c: the rows of DMARC aggregate reports (RFC 7489 7.2) in
 * petrel's state database, and the feedback document built from them
 * (Appendix C).
 *
 * Recording (lib/trust/state_writer): job threads hand a row to a writer
 * thread, which writes whatever has accumulated in one transaction on
 * its own connection (WAL, synchronous = NORMAL: a report row is worth
 * no fsync of its own; greylisting's connection to the same file keeps
 * FULL). The SMTP reply never waits for SQLite. The table is kept to
 * DMARC_REPORT_ROWS_MAX rows (the oldest go) so that a server whose
 * reports are never sent does not grow without bound.
 *
 * The table, one row per message:
 *   id (rowid), time, domain (the policy domain), rua, p, sp, adkim,
 *   aspf, pct, ip, header_from, envelope_from, disposition ("none",
 *   "quarantine", "reject"), dkim and spf ("pass"/"fail": the aligned
 *   results), reason ("" or "local_policy"), auth (the raw results, one
 *   line each: "dkim DOMAIN SELECTOR RESULT" / "spf DOMAIN SCOPE
 *   RESULT", fields without white space).
 *
 * Trust: every text field comes from the sender (From, MAIL FROM, DKIM
 * d= and s=, the record). They are bound as SQL parameters, cut to
 * their buffers, kept free of white space and control characters in
 * auth, and escaped when written as XML.
 */
#include <ctype.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/trust/dmarc_report.h"
#include "lib/trust/state_writer.h"

static const char create_sql[] =
    "CREATE TABLE IF NOT EXISTS dmarc_report ("
    "id INTEGER PRIMARY KEY, time INTEGER NOT NULL, domain TEXT NOT NULL, "
    "rua TEXT NOT NULL, p TEXT NOT NULL, sp TEXT NOT NULL, "
    "adkim TEXT NOT NULL, aspf TEXT NOT NULL, pct INTEGER NOT NULL, "
    "ip TEXT NOT NULL, header_from TEXT NOT NULL, "
    "envelope_from TEXT NOT NULL, disposition TEXT NOT NULL, "
    "dkim TEXT NOT NULL, spf TEXT NOT NULL, reason TEXT NOT NULL, "
    "auth TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS dmarc_report_domain ON "
    "dmarc_report (domain, id);";

/* Open (and create) the state database at path. */
static sqlite3 *
db_open(const char *path, bool create, char **error_r)
{
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
	    (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		*error_r = xasprintf("%s: %s", path, db ?
		    sqlite3_errmsg(db) : "cannot open");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 5000);
	if (state_db_exec(db, "PRAGMA journal_mode = WAL", error_r) < 0 ||
	    state_db_exec(db, "PRAGMA synchronous = NORMAL", error_r) < 0 ||
	    state_db_exec(db, create_sql, error_r) < 0) {
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

/* Append v with its white space and control characters made '_'. */
static void
auth_field(str_t *out, const char *v)
{
	if (*v == '\0') {
		str_append_c(out, '-');
		return;
	}
	for (; *v != '\0'; v++) {
		unsigned char c = (unsigned char)*v;

		str_append_c(out, c <= ' ' || c >= 0x7f ? '_' : (char)c);
	}
}

static void
auth_text(const struct dmarc_report_row *r, str_t *out)
{
	for (size_t i = 0; i < r->ndkim; i++) {
		str_append(out, "dkim ");
		auth_field(out, r->dkim[i].domain);
		str_append_c(out, ' ');
		auth_field(out, r->dkim[i].selector);
		str_append_c(out, ' ');
		auth_field(out, r->dkim[i].result);
		str_append_c(out, '\n');
	}
	str_append(out, "spf ");
	auth_field(out, r->spf_domain);
	str_append(out, r->spf_helo ? " helo " : " mfrom ");
	auth_field(out, r->spf_result[0] ? r->spf_result : "none");
	str_append_c(out, '\n');
}

static const char *
policy_text(char p)
{
	return p == 'r' ? "reject" : p == 'q' ? "quarantine" :
	    p == 'n' ? "none" : "";
}

static int
insert_row(sqlite3_stmt *st, const void *row)
{
	const struct dmarc_report_row *r = row;
	str_t auth = STR_INIT;
	char adkim[2] = { r->pub.adkim, 0 }, aspf[2] = { r->pub.aspf, 0 };
	int rc;

	auth_text(r, &auth);
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, r->time);
	sqlite3_bind_text(st, 2, r->pub.domain, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, r->pub.rua, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, policy_text(r->pub.p), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, policy_text(r->pub.sp), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, adkim, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 7, aspf, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 8, r->pub.pct);
	sqlite3_bind_text(st, 9, r->ip, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 10, r->header_from, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 11, r->envelope_from, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 12, dmarc_disposition_name(r->disposition), -1,
	    SQLITE_STATIC);
	sqlite3_bind_text(st, 13, r->dkim_pass ? "pass" : "fail", -1,
	    SQLITE_STATIC);
	sqlite3_bind_text(st, 14, r->spf_pass ? "pass" : "fail", -1,
	    SQLITE_STATIC);
	sqlite3_bind_text(st, 15, r->local_policy ? "local_policy" : "", -1,
	    SQLITE_STATIC);
	sqlite3_bind_text(st, 16, str_c(&auth), -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	str_free(&auth);
	return rc == SQLITE_DONE ? 0 : -1;
}

static struct state_writer w = {
	.what = "dmarc report state",
	.table = "dmarc_report",
	.row_size = sizeof(struct dmarc_report_row),
	.pending_max = DMARC_REPORT_PENDING_MAX,
	.rows_max = DMARC_REPORT_ROWS_MAX,
	.open = db_open,
	.insert_sql = "INSERT INTO dmarc_report (time, domain, rua, p, sp, "
	    "adkim, aspf, pct, ip, header_from, envelope_from, disposition, "
	    "dkim, spf, reason, auth) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
	    "?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
	.insert = insert_row,
	STATE_WRITER_LOCKS
};

void
dmarc_report_record(const char *path, const struct dmarc_report_row *r)
{
	state_writer_put(&w, path, r);
}

void
dmarc_report_flush(void)
{
	state_writer_flush(&w);
}

/* ---- reading ---- */

struct dmarc_report_db {
	sqlite3 *db;
};

int
dmarc_report_open(const char *path, struct dmarc_report_db **db_r,
    char **error_r)
{
	sqlite3 *db;
	int r = state_db_open_existing(path, db_open, &db, error_r);

	*db_r = NULL;
	if (r <= 0)
		return r;
	*db_r = xcalloc(1, sizeof(**db_r));
	(*db_r)->db = db;
	return 1;
}

void
dmarc_report_close(struct dmarc_report_db **db)
{
	if (*db == NULL)
		return;
	sqlite3_close((*db)->db);
	free(*db);
	*db = NULL;
}

static int
db_fail(struct dmarc_report_db *db, sqlite3_stmt *st, char **error_r)
{
	return state_db_fail(db->db, st, error_r);
}

int
dmarc_report_domains(struct dmarc_report_db *db, char ***domains_r,
    size_t *n_r, int64_t *max_id, char **error_r)
{
	sqlite3_stmt *st = NULL;
	char **v = NULL;
	size_t n = 0;
	int rc;

	*domains_r = NULL;
	*n_r = 0;
	*max_id = 0;
	if (sqlite3_prepare_v2(db->db, "SELECT max(id) FROM dmarc_report", -1,
	    &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW)
		return db_fail(db, st, error_r);
	*max_id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(db->db, "SELECT DISTINCT domain FROM "
	    "dmarc_report WHERE id <= ?1 ORDER BY domain", -1, &st, NULL) !=
	    SQLITE_OK)
		return db_fail(db, st, error_r);
	sqlite3_bind_int64(st, 1, *max_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		v = xrealloc(v, (n + 1) * sizeof(*v));
		v[n++] = xstrdup((const char *)sqlite3_column_text(st, 0));
	}
	if (rc != SQLITE_DONE) {
		for (size_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
		return db_fail(db, st, error_r);
	}
	sqlite3_finalize(st);
	*domains_r = v;
	*n_r = n;
	return 0;
}

void
dmarc_report_xml_text(str_t *out, const char *s)
{
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		switch (c) {
		case '<':
			str_append(out, "&lt;");
			break;
		case '>':
			str_append(out, "&gt;");
			break;
		case '&':
			str_append(out, "&amp;");
			break;
		case '"':
			str_append(out, "&quot;");
			break;
		case '\'':
			str_append(out, "&apos;");
			break;
		default:
			str_append_c(out, c < ' ' || c >= 0x7f ? '?' :
			    (char)c);
		}
	}
}

static void
xml_elem(str_t *out, const char *indent, const char *name, const char *v)
{
	str_printf(out, "%s<%s>", indent, name);
	dmarc_report_xml_text(out, v);
	str_printf(out, "</%s>\n", name);
}

static const char *
col(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return t != NULL ? (const char *)t : "";
}

/* The auth column as <auth_results>. */
static void
xml_auth(str_t *out, const char *auth)
{
	bool spf = false;

	str_append(out, "    <auth_results>\n");
	while (*auth != '\0') {
		const char *nl = strchr(auth, '\n');
		size_t len = nl ? (size_t)(nl - auth) : strlen(auth);
		char line[1024], *f[4], *save = NULL;
		int nf = 0;

		if (len < sizeof(line)) {
			memcpy(line, auth, len);
			line[len] = '\0';
			for (char *t = strtok_r(line, " ", &save);
			    t != NULL && nf < 4; t = strtok_r(NULL, " ", &save))
				f[nf++] = strcmp(t, "-") == 0 ? "" : t;
		}
		if (nf == 4 && strcmp(f[0], "dkim") == 0) {
			str_append(out, "      <dkim>\n");
			xml_elem(out, "        ", "domain", f[1]);
			xml_elem(out, "        ", "selector", f[2]);
			xml_elem(out, "        ", "result", f[3]);
			str_append(out, "      </dkim>\n");
		} else if (nf == 4 && strcmp(f[0], "spf") == 0 && !spf) {
			spf = true;
			str_append(out, "      <spf>\n");
			xml_elem(out, "        ", "domain", f[1]);
			xml_elem(out, "        ", "scope", f[2]);
			xml_elem(out, "        ", "result", f[3]);
			str_append(out, "      </spf>\n");
		}
		auth += len + (nl != NULL);
	}
	if (!spf)	/* the schema wants one */
		str_append(out, "      <spf>\n        <domain></domain>\n"
		    "        <result>none</result>\n      </spf>\n");
	str_append(out, "    </auth_results>\n");
}

int
dmarc_report_build(struct dmarc_report_db *db, const char *domain,
    int64_t max_id, const struct dmarc_report_meta *meta, str_t *xml,
    char **rua_r, int64_t *begin_r, size_t *rows_r, char **error_r)
{
	sqlite3_stmt *st = NULL;
	char buf[32];
	int rc;

	*rua_r = NULL;
	*rows_r = 0;
	/* the record as last seen */
	if (sqlite3_prepare_v2(db->db, "SELECT rua, p, sp, adkim, aspf, pct, "
	    "(SELECT min(time) FROM dmarc_report WHERE domain = ?1 AND "
	    "id <= ?2), (SELECT count(*) FROM dmarc_report WHERE domain = ?1 "
	    "AND id <= ?2) FROM dmarc_report WHERE domain = ?1 AND id <= ?2 "
	    "ORDER BY id DESC LIMIT 1", -1, &st, NULL) != SQLITE_OK)
		return db_fail(db, st, error_r);
	sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, max_id);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		if (rc == SQLITE_DONE) {
			*error_r = xasprintf("no rows for %s", domain);
			sqlite3_finalize(st);
			return -1;
		}
		return db_fail(db, st, error_r);
	}
	*rua_r = xstrdup(col(st, 0));
	*begin_r = sqlite3_column_int64(st, 6);
	*rows_r = (size_t)sqlite3_column_int64(st, 7);
	str_append(xml, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	    "<feedback>\n  <version>1.0</version>\n  <report_metadata>\n");
	xml_elem(xml, "    ", "org_name", meta->org_name);
	xml_elem(xml, "    ", "email", meta->email);
	xml_elem(xml, "    ", "report_id", meta->report_id);
	str_append(xml, "    <date_range>\n");
	snprintf(buf, sizeof(buf), "%lld", (long long)*begin_r);
	xml_elem(xml, "      ", "begin", buf);
	snprintf(buf, sizeof(buf), "%lld", (long long)meta->end);
	xml_elem(xml, "      ", "end", buf);
	str_append(xml, "    </date_range>\n  </report_metadata>\n"
	    "  <policy_published>\n");
	xml_elem(xml, "    ", "domain", domain);
	xml_elem(xml, "    ", "adkim", col(st, 3));
	xml_elem(xml, "    ", "aspf", col(st, 4));
	xml_elem(xml, "    ", "p", col(st, 1));
	/* sp= not given: p= applies to subdomains too (RFC 7489 6.3) */
	xml_elem(xml, "    ", "sp", col(st, 2)[0] ? col(st, 2) : col(st, 1));
	snprintf(buf, sizeof(buf), "%d", sqlite3_column_int(st, 5));
	xml_elem(xml, "    ", "pct", buf);
	str_append(xml, "  </policy_published>\n");
	sqlite3_finalize(st);
	/* the records: rows that agree on everything a record says */
	if (sqlite3_prepare_v2(db->db, "SELECT ip, count(*), disposition, "
	    "dkim, spf, reason, header_from, envelope_from, auth FROM "
	    "dmarc_report WHERE domain = ?1 AND id <= ?2 GROUP BY ip, "
	    "disposition, dkim, spf, reason, header_from, envelope_from, auth "
	    "ORDER BY min(id)", -1, &st, NULL) != SQLITE_OK)
		return db_fail(db, st, error_r);
	sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, max_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		str_append(xml, "  <record>\n    <row>\n");
		xml_elem(xml, "      ", "source_ip", col(st, 0));
		snprintf(buf, sizeof(buf), "%lld",
		    (long long)sqlite3_column_int64(st, 1));
		xml_elem(xml, "      ", "count", buf);
		str_append(xml, "      <policy_evaluated>\n");
		xml_elem(xml, "        ", "disposition", col(st, 2));
		xml_elem(xml, "        ", "dkim", col(st, 3));
		xml_elem(xml, "        ", "spf", col(st, 4));
		if (col(st, 5)[0] != '\0') {
			str_append(xml, "        <reason>\n");
			xml_elem(xml, "          ", "type", col(st, 5));
			str_append(xml, "        </reason>\n");
		}
		str_append(xml, "      </policy_evaluated>\n    </row>\n"
		    "    <identifiers>\n");
		if (col(st, 7)[0] != '\0')
			xml_elem(xml, "      ", "envelope_from", col(st, 7));
		xml_elem(xml, "      ", "header_from", col(st, 6));
		str_append(xml, "    </identifiers>\n");
		xml_auth(xml, col(st, 8));
		str_append(xml, "  </record>\n");
	}
	if (rc != SQLITE_DONE) {
		free(*rua_r);
		*rua_r = NULL;
		return db_fail(db, st, error_r);
	}
	sqlite3_finalize(st);
	str_append(xml, "</feedback>\n");
	return 0;
}

int
dmarc_report_remove(struct dmarc_report_db *db, const char *domain,
    int64_t max_id, char **error_r)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v2(db->db, "DELETE FROM dmarc_report WHERE "
	    "domain = ?1 AND id <= ?2", -1, &st, NULL) != SQLITE_OK)
		return db_fail(db, st, error_r);
	sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, max_id);
	if (sqlite3_step(st) != SQLITE_DONE)
		return db_fail(db, st, error_r);
	sqlite3_finalize(st);
	return 0;
}

static int
hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ?
	    c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int
dmarc_report_mailto(const char *uri, size_t len, char *addr, size_t addrlen,
    uint64_t *limit)
{
	size_t n = 0, at = 0, i;
	const char *bang;

	*limit = 0;
	if (len < 8 || strncasecmp(uri, "mailto:", 7) != 0 || addrlen == 0)
		return -1;
	uri += 7;
	len -= 7;
	/* a size limit: "!" 1*DIGIT [ "k" / "m" / "g" / "t" ] (6.2) */
	bang = memchr(uri, '!', len);
	if (bang != NULL) {
		const char *p = bang + 1, *end = uri + len;
		uint64_t v = 0;

		if (p == end)
			return -1;
		for (; p < end && isdigit((unsigned char)*p); p++) {
			if (v > UINT64_MAX / 10 / 1024 / 1024 / 1024 / 1024)
				return -1;
			v = v * 10 + (uint64_t)(*p - '0');
		}
		if (p < end) {
			int shift = *p == 'k' ? 10 : *p == 'm' ? 20 :
			    *p == 'g' ? 30 : *p == 't' ? 40 : -1;

			if (shift < 0 || p + 1 != end)
				return -1;
			v <<= shift;
		}
		*limit = v;
		len = (size_t)(bang - uri);
	}
	/* the address, percent-decoded; no query part (?subject=...) */
	for (i = 0; i < len; i++) {
		char c = uri[i];

		if (c == '%' && i + 2 < len && hexval(uri[i + 1]) >= 0 &&
		    hexval(uri[i + 2]) >= 0) {
			c = (char)(hexval(uri[i + 1]) * 16 +
			    hexval(uri[i + 2]));
			i += 2;
		} else if (c == '%' || c == '?') {
			return -1;
		}
		/* printable ASCII without what would break an envelope or
		 * a header */
		if ((unsigned char)c <= ' ' || (unsigned char)c >= 0x7f ||
		    strchr("<>()[],;:\"\\", c) != NULL)
			return -1;
		if (c == '@')
			at = n + 1;
		if (n + 1 >= addrlen)
			return -1;
		addr[n++] = c;
	}
	addr[n] = '\0';
	/* local@domain, the domain a name with a dot */
	if (at <= 1 || at >= n || strchr(addr, '@') != addr + at - 1 ||
	    strchr(addr + at, '.') == NULL || addr[n - 1] == '.')
		return -1;
	return 0;
}
