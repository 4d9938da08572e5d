/*
 * tls_rpt.c: the rows of SMTP TLS reports (RFC 8460) in petrel's state
 * database, the JSON report built from them (4.4), and the
 * _smtp._tls TXT record (3).
 *
 * Recording goes through lib/trust/state_writer, as DMARC report rows
 * do: the queue manager's loop (and its job threads) hand a row to a
 * writer thread, which writes what has accumulated in one transaction on
 * its own connection (WAL, synchronous = NORMAL); the table is kept to
 * TLS_RPT_ROWS_MAX rows.
 *
 * The table, one row per session:
 *   id, time, domain, ptype, policy, mx, result, sip, rmx, rip, detail
 * with result "" for a successful session.
 *
 * Trust: the texts come from DNS (TLSA records, host names), a policy
 * server (mx patterns) and OpenSSL's reasons. They are bound as SQL
 * parameters and escaped when written as JSON.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/trust/state_writer.h"
#include "lib/trust/tls_rpt.h"

static const char create_sql[] =
    "CREATE TABLE IF NOT EXISTS tls_rpt ("
    "id INTEGER PRIMARY KEY, time INTEGER NOT NULL, domain TEXT NOT NULL, "
    "ptype TEXT NOT NULL, policy TEXT NOT NULL, mx TEXT NOT NULL, "
    "result TEXT NOT NULL, sip TEXT NOT NULL, rmx TEXT NOT NULL, "
    "rip TEXT NOT NULL, detail TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS tls_rpt_domain ON tls_rpt (domain, id);";

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

static int
insert_row(sqlite3_stmt *st, const void *row)
{
	const struct tls_rpt_row *r = row;

	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, r->time);
	sqlite3_bind_text(st, 2, r->domain, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, r->policy_type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, r->policy, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, r->mx, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, r->result, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, r->sending_ip, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 8, r->receiving_mx, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 9, r->receiving_ip, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 10, r->detail, -1, SQLITE_STATIC);
	return sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
}

static struct state_writer w = {
	.what = "tls-rpt state",
	.table = "tls_rpt",
	.row_size = sizeof(struct tls_rpt_row),
	.pending_max = TLS_RPT_PENDING_MAX,
	.rows_max = TLS_RPT_ROWS_MAX,
	.open = db_open,
	.insert_sql = "INSERT INTO tls_rpt (time, domain, ptype, policy, mx, "
	    "result, sip, rmx, rip, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
	    "?7, ?8, ?9, ?10)",
	.insert = insert_row,
	STATE_WRITER_LOCKS
};

void
tls_rpt_record(const char *path, const struct tls_rpt_row *r)
{
	state_writer_put(&w, path, r);
}

void
tls_rpt_flush(void)
{
	state_writer_flush(&w);
}

/* ---- reading ---- */

struct tls_rpt_db {
	sqlite3 *db;
};

int
tls_rpt_open(const char *path, struct tls_rpt_db **db_r, char **error_r)
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
tls_rpt_close(struct tls_rpt_db **db)
{
	if (*db == NULL)
		return;
	sqlite3_close((*db)->db);
	free(*db);
	*db = NULL;
}

static int
db_fail(struct tls_rpt_db *db, sqlite3_stmt *st, char **error_r)
{
	return state_db_fail(db->db, st, error_r);
}

int
tls_rpt_domains(struct tls_rpt_db *db, char ***domains_r, size_t *n_r,
    int64_t *max_id, char **error_r)
{
	sqlite3_stmt *st = NULL;
	char **v = NULL;
	size_t n = 0;
	int rc;

	*domains_r = NULL;
	*n_r = 0;
	*max_id = 0;
	if (sqlite3_prepare_v2(db->db, "SELECT max(id) FROM tls_rpt", -1,
	    &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW)
		return db_fail(db, st, error_r);
	*max_id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(db->db, "SELECT DISTINCT domain FROM tls_rpt "
	    "WHERE id <= ?1 ORDER BY domain", -1, &st, NULL) != SQLITE_OK)
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
tls_rpt_json_str(str_t *out, const char *s)
{
	str_append_c(out, '"');
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			str_append_c(out, '\\');
			str_append_c(out, (char)c);
		} else if (c < ' ') {
			str_printf(out, "\\u%04x", c);
		} else {
			str_append_c(out, c >= 0x7f ? '?' : (char)c);
		}
	}
	str_append_c(out, '"');
}

static const char *
col(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return t != NULL ? (const char *)t : "";
}

/* An LF-separated list as a JSON array of strings. */
static void
json_lines(str_t *out, const char *v)
{
	bool first = true;

	str_append_c(out, '[');
	while (*v != '\0') {
		size_t len = strcspn(v, "\n");
		char *line = xstrndup(v, len);

		if (!first)
			str_append(out, ", ");
		first = false;
		tls_rpt_json_str(out, line);
		free(line);
		v += len + (v[len] == '\n');
	}
	str_append_c(out, ']');
}

static void
iso_time(char *buf, size_t len, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The failure-details of one policy (4.4). */
static int
build_failures(struct tls_rpt_db *db, const char *domain, int64_t max_id,
    const char *ptype, const char *policy, const char *mx, str_t *json,
    char **error_r)
{
	sqlite3_stmt *st = NULL;
	bool first = true;
	int rc;

	if (sqlite3_prepare_v2(db->db, "SELECT result, sip, rmx, rip, "
	    "detail, count(*) FROM tls_rpt WHERE domain = ?1 AND id <= ?2 AND "
	    "ptype = ?3 AND policy = ?4 AND mx = ?5 AND result <> '' "
	    "GROUP BY result, sip, rmx, rip, detail ORDER BY min(id)", -1,
	    &st, NULL) != SQLITE_OK)
		return db_fail(db, st, error_r);
	sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, max_id);
	sqlite3_bind_text(st, 3, ptype, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, policy, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, mx, -1, SQLITE_STATIC);
	str_append(json, ",\n      \"failure-details\": [");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		str_append(json, first ? "\n        {" : ",\n        {");
		first = false;
		str_append(json, "\"result-type\": ");
		tls_rpt_json_str(json, col(st, 0));
		if (col(st, 1)[0] != '\0') {
			str_append(json, ", \"sending-mta-ip\": ");
			tls_rpt_json_str(json, col(st, 1));
		}
		if (col(st, 2)[0] != '\0') {
			str_append(json, ", \"receiving-mx-hostname\": ");
			tls_rpt_json_str(json, col(st, 2));
		}
		if (col(st, 3)[0] != '\0') {
			str_append(json, ", \"receiving-ip\": ");
			tls_rpt_json_str(json, col(st, 3));
		}
		str_printf(json, ", \"failed-session-count\": %lld",
		    (long long)sqlite3_column_int64(st, 5));
		if (col(st, 4)[0] != '\0') {
			str_append(json, ", \"failure-reason-code\": ");
			tls_rpt_json_str(json, col(st, 4));
		}
		str_append_c(json, '}');
	}
	if (rc != SQLITE_DONE)
		return db_fail(db, st, error_r);
	sqlite3_finalize(st);
	str_append(json, first ? "]" : "\n      ]");
	return 0;
}

int
tls_rpt_build(struct tls_rpt_db *db, const char *domain, int64_t max_id,
    const struct tls_rpt_meta *meta, str_t *json, int64_t *begin_r,
    int64_t *end_r, size_t *sessions_r, char **error_r)
{
	sqlite3_stmt *st = NULL;
	char t1[32], t2[32];
	bool first = true;
	int rc;

	*sessions_r = 0;
	if (sqlite3_prepare_v2(db->db, "SELECT min(time), max(time), "
	    "count(*) FROM tls_rpt WHERE domain = ?1 AND id <= ?2", -1, &st,
	    NULL) != SQLITE_OK)
		return db_fail(db, st, error_r);
	sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, max_id);
	if (sqlite3_step(st) != SQLITE_ROW)
		return db_fail(db, st, error_r);
	if (sqlite3_column_int64(st, 2) == 0) {
		*error_r = xasprintf("no rows for %s", domain);
		sqlite3_finalize(st);
		return -1;
	}
	/* whole UTC days (4.4: "date-range"; reports cover days) */
	*begin_r = sqlite3_column_int64(st, 0) / 86400 * 86400;
	*end_r = sqlite3_column_int64(st, 1) / 86400 * 86400 + 86400;
	*sessions_r = (size_t)sqlite3_column_int64(st, 2);
	sqlite3_finalize(st);
	iso_time(t1, sizeof(t1), *begin_r);
	iso_time(t2, sizeof(t2), *end_r - 1);
	str_append(json, "{\n  \"organization-name\": ");
	tls_rpt_json_str(json, meta->org_name);
	str_printf(json, ",\n  \"date-range\": {\"start-datetime\": \"%s\", "
	    "\"end-datetime\": \"%s\"},\n  \"contact-info\": ", t1, t2);
	tls_rpt_json_str(json, meta->contact);
	str_append(json, ",\n  \"report-id\": ");
	tls_rpt_json_str(json, meta->report_id);
	str_append(json, ",\n  \"policies\": [");
	/* one entry per policy applied (a policy that changed during the
	 * period is two) */
	if (sqlite3_prepare_v2(db->db, "SELECT ptype, policy, mx, "
	    "sum(result = ''), sum(result <> '') FROM tls_rpt WHERE "
	    "domain = ?1 AND id <= ?2 GROUP BY ptype, policy, mx "
	    "ORDER BY min(id)", -1, &st, NULL) != SQLITE_OK)
		return db_fail(db, st, error_r);
	sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, max_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		str_append(json, first ? "\n    {" : ",\n    {");
		first = false;
		str_append(json, "\n      \"policy\": {\"policy-type\": ");
		tls_rpt_json_str(json, col(st, 0));
		if (strcmp(col(st, 0), "no-policy-found") != 0) {
			str_append(json, ", \"policy-string\": ");
			json_lines(json, col(st, 1));
		}
		str_append(json, ", \"policy-domain\": ");
		tls_rpt_json_str(json, domain);
		if (col(st, 2)[0] != '\0') {
			str_append(json, ", \"mx-host\": ");
			json_lines(json, col(st, 2));
		}
		str_printf(json, "},\n      \"summary\": "
		    "{\"total-successful-session-count\": %lld, "
		    "\"total-failure-session-count\": %lld}",
		    (long long)sqlite3_column_int64(st, 3),
		    (long long)sqlite3_column_int64(st, 4));
		if (sqlite3_column_int64(st, 4) > 0 && build_failures(db,
		    domain, max_id, col(st, 0), col(st, 1), col(st, 2), json,
		    error_r) < 0) {
			sqlite3_finalize(st);
			return -1;
		}
		str_append(json, "\n    }");
	}
	if (rc != SQLITE_DONE)
		return db_fail(db, st, error_r);
	sqlite3_finalize(st);
	str_append(json, "\n  ]\n}\n");
	return 0;
}

int
tls_rpt_remove(struct tls_rpt_db *db, const char *domain, int64_t max_id,
    char **error_r)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v2(db->db, "DELETE FROM tls_rpt WHERE domain = "
	    "?1 AND id <= ?2", -1, &st, NULL) != SQLITE_OK)
		return db_fail(db, st, error_r);
	sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, max_id);
	if (sqlite3_step(st) != SQLITE_DONE)
		return db_fail(db, st, error_r);
	sqlite3_finalize(st);
	return 0;
}

static bool
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

int
tls_rpt_txt_parse(const char *txt, size_t len, char **rua_r)
{
	const char *p = txt, *end = txt + len;
	char *rua = NULL;

	*rua_r = NULL;
	/* RFC 8460 3: tlsrpt-version must come first, exactly */
	if (len < 10 || memcmp(txt, "v=TLSRPTv1", 10) != 0)
		return 0;
	p += 10;
	while (p < end && is_wsp(*p))
		p++;
	if (p < end && *p != ';')
		return 0;	/* "v=TLSRPTv10...": another version */
	for (const char *q = txt; q < end; q++)
		if ((unsigned char)*q < ' ' && !is_wsp(*q))
			goto bad;
	while (p < end) {
		const char *f, *fe, *eq;

		p++;	/* ';' */
		while (p < end && is_wsp(*p))
			p++;
		f = p;
		while (p < end && *p != ';')
			p++;
		fe = p;
		while (fe > f && is_wsp(fe[-1]))
			fe--;
		if (fe == f)
			continue;	/* "...;" at the end, or ";;" */
		eq = memchr(f, '=', (size_t)(fe - f));
		if (eq == NULL || eq == f)
			goto bad;
		if (eq - f == 3 && memcmp(f, "rua", 3) == 0) {
			const char *u = eq + 1;
			str_t s = STR_INIT;

			if (rua != NULL)
				goto bad;	/* given twice */
			/* URIs, comma-separated, white space around them */
			while (u <= fe) {
				const char *ue = memchr(u, ',',
				    (size_t)(fe - u));
				const char *a = u, *b = ue ? ue : fe;

				while (a < b && is_wsp(*a))
					a++;
				while (b > a && is_wsp(b[-1]))
					b--;
				if (a == b || memchr(a, ' ', (size_t)(b - a))
				    != NULL || memchr(a, '\t',
				    (size_t)(b - a)) != NULL) {
					str_free(&s);
					goto bad;
				}
				if (s.len > 0)
					str_append_c(&s, ',');
				str_append_n(&s, a, (size_t)(b - a));
				if (ue == NULL)
					break;
				u = ue + 1;
			}
			rua = xstrdup(str_c(&s));
			str_free(&s);
		}
		/* other fields (extensions) are ignored */
	}
	if (rua == NULL)
		goto bad;
	*rua_r = rua;
	return 1;
bad:
	free(rua);
	return -1;
}
