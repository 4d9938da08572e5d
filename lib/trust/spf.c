/*
 * spf.c: SPF with libspf2. libspf2 asks its DNS layer for records; ours
 * (lookup_layer) answers each query with a dnsq lookup, so every SPF
 * query goes where `dns_resolver` says. libspf2 bounds the mechanisms
 * that need lookups (10), MX and PTR names, and recursion through
 * include/redirect; a record over a bound is a permerror.
 *
 * Trust: the records are the sender domain owner's, hence hostile; they
 * reach libspf2 only as the character-strings of TXT rdata (bounded,
 * NUL-terminated here), names as dotted text decoded with bounds.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unbound.h>

#define HAVE_NS_TYPE 1
#include <spf2/spf.h>
#include <spf2/spf_dns.h>

#include "lib/base/alloc.h"
#include "lib/base/log.h"
#include "lib/trust/dnsq.h"
#include "lib/trust/rdata.h"
#include "lib/trust/spf.h"

#define TXT_MAX 4096	/* joined strings of one TXT record */

static SPF_dns_rr_t *
lookup_layer(SPF_dns_server_t *layer, const char *domain, ns_type type,
    int should_cache)
{
	struct ub_result *res = NULL;
	enum dnsq_status st = dnsq_lookup(domain, (int)type, &res);
	SPF_dns_rr_t *rr;
	int n = 0;

	switch (st) {
	case DNSQ_NXDOMAIN:
		return SPF_dns_rr_new_init(layer, domain, type, 0,
		    HOST_NOT_FOUND);
	case DNSQ_NODATA:
		return SPF_dns_rr_new_init(layer, domain, type, 0, NO_DATA);
	case DNSQ_TEMPFAIL:
		return SPF_dns_rr_new_init(layer, domain, type, 0, TRY_AGAIN);
	default:
		break;
	}
	rr = SPF_dns_rr_new_init(layer, domain, type, res->ttl, NETDB_SUCCESS);
	if (rr == NULL) {
		ub_resolve_free(res);
		return NULL;
	}
	for (int i = 0; res->data[i] != NULL; i++) {
		const unsigned char *d = (const unsigned char *)res->data[i];
		size_t len = (size_t)res->len[i];
		char name[256];

		switch (type) {
		case ns_t_a:
			if (len != 4 ||
			    SPF_dns_rr_buf_realloc(rr, n, 4) != SPF_E_SUCCESS)
				continue;
			memcpy(&rr->rr[n]->a, d, 4);
			break;
		case ns_t_aaaa:
			if (len != 16 ||
			    SPF_dns_rr_buf_realloc(rr, n, 16) != SPF_E_SUCCESS)
				continue;
			memcpy(&rr->rr[n]->aaaa, d, 16);
			break;
		case ns_t_mx:
		case ns_t_ptr: {
			size_t skip = type == ns_t_mx ? 2 : 0;

			if (len < skip + 1 ||
			    rdata_name_text(d + skip, len - skip, name,
			    sizeof(name)) < 0 ||
			    SPF_dns_rr_buf_realloc(rr, n, strlen(name) + 1) !=
			    SPF_E_SUCCESS)
				continue;
			memcpy(type == ns_t_mx ? rr->rr[n]->mx :
			    rr->rr[n]->ptr, name, strlen(name) + 1);
			break;
		}
		case ns_t_txt:
		case ns_t_spf: {
			size_t tlen;
			int trunc;
			char *txt = rdata_txt_join((const char *)d, len, TXT_MAX,
			    &tlen, &trunc);

			if (SPF_dns_rr_buf_realloc(rr, n, tlen + 1) !=
			    SPF_E_SUCCESS) {
				free(txt);
				continue;
			}
			memcpy(rr->rr[n]->txt, txt, tlen + 1);
			free(txt);
			break;
		}
		default:
			continue;
		}
		n++;
	}
	rr->num_rr = n;
	if (n == 0)
		rr->herrno = NO_DATA;
	ub_resolve_free(res);
	return rr;
}

static SPF_dns_server_t layer = {
	.destroy = NULL,	/* shared: never freed by libspf2 */
	.lookup = lookup_layer,
	.name = "petrel",
};

/* libspf2's messages go to petrel's log, not stdout/stderr. */
static void
spf_log_warning(const char *file, int line, const char *msg)
{
	log_debug("libspf2: %s", msg);
}

static void
spf_log_quiet(const char *file, int line, const char *msg)
{
}

static pthread_once_t spf_once = PTHREAD_ONCE_INIT;

static void
spf_init(void)
{
	SPF_warning_handler = spf_log_warning;
	SPF_info_handler = spf_log_quiet;
	SPF_debug_handler = spf_log_quiet;
}

/* The MAIL FROM query (RFC 7208 4): the sender domain's record, then
 * its evaluation. SPF_request_query_mailfrom does the same but first
 * passes every 127/8 and ::1 client without looking at the record;
 * petrel decides itself which clients are not checked (smtp/trust.c),
 * and evaluates the others' records as they are. */
static SPF_response_t *
query(SPF_request_t *req)
{
	SPF_response_t *resp = SPF_response_new(req);
	SPF_record_t *rec = NULL;
	SPF_errcode_t err;

	if (resp == NULL)
		return NULL;
	req->cur_dom = req->use_helo ? req->helo_dom : req->env_from_dp;
	if (req->cur_dom == NULL) {
		SPF_i_done(resp, SPF_RESULT_NONE, SPF_REASON_NONE,
		    SPF_E_NOT_CONFIG);
		return resp;
	}
	err = SPF_server_get_record(req->spf_server, req, resp, &rec);
	if (err != SPF_E_SUCCESS) {
		/* no record (none), a DNS failure (temperror), a record that
		 * does not compile (permerror): the result is set */
		if (rec != NULL)
			SPF_record_free(rec);
		if (resp->result == SPF_RESULT_INVALID)
			/* this libspf2 sets none itself, and leaves DNS
			 * failures and records that do not compile without
			 * a result */
			resp->result = err == SPF_E_DNS_ERROR ?
			    SPF_RESULT_TEMPERROR : SPF_RESULT_PERMERROR;
		SPF_i_done(resp, resp->result, resp->reason, resp->err);
		return resp;
	}
	resp->spf_record_exp = rec;
	SPF_record_interpret(rec, req, resp, 0);
	SPF_record_free(rec);
	resp->spf_record_exp = NULL;
	return resp;
}

enum spf_result
spf_check(const char *ip, const char *helo, const char *sender,
    const char *receiver)
{
	SPF_server_t *srv;
	SPF_request_t *req = NULL;
	SPF_response_t *resp = NULL;
	enum spf_result r = SPF_R_NONE;
	char *from = NULL;

	pthread_once(&spf_once, spf_init);
	srv = SPF_server_new_dns(&layer, 0);
	if (srv == NULL)
		return SPF_R_TEMPERROR;
	if (receiver != NULL && receiver[0] != '\0')
		SPF_server_set_rec_dom(srv, receiver);
	req = SPF_request_new(srv);
	if (req == NULL) {
		r = SPF_R_TEMPERROR;
		goto out;
	}
	if ((strchr(ip, ':') != NULL ?
	    SPF_request_set_ipv6_str(req, ip) :
	    SPF_request_set_ipv4_str(req, ip)) != SPF_E_SUCCESS)
		goto out;	/* not an address: nothing to check */
	if (helo != NULL && helo[0] != '\0')
		SPF_request_set_helo_dom(req, helo);
	if (sender[0] != '\0')
		from = xstrdup(sender);
	else if (helo != NULL && helo[0] != '\0' && helo[0] != '[')
		from = xasprintf("postmaster@%s", helo);
	else
		goto out;	/* no identity to check */
	if (SPF_request_set_env_from(req, from) != 0)
		goto out;
	resp = query(req);
	if (resp == NULL) {
		r = SPF_R_TEMPERROR;
		goto out;
	}
	switch (SPF_response_result(resp)) {
	case SPF_RESULT_PASS: r = SPF_R_PASS; break;
	case SPF_RESULT_FAIL: r = SPF_R_FAIL; break;
	case SPF_RESULT_SOFTFAIL: r = SPF_R_SOFTFAIL; break;
	case SPF_RESULT_NEUTRAL: r = SPF_R_NEUTRAL; break;
	case SPF_RESULT_TEMPERROR: r = SPF_R_TEMPERROR; break;
	case SPF_RESULT_PERMERROR: r = SPF_R_PERMERROR; break;
	case SPF_RESULT_NONE: r = SPF_R_NONE; break;
	default: r = SPF_R_PERMERROR; break;
	}
out:
	free(from);
	if (resp != NULL)
		SPF_response_free(resp);
	if (req != NULL)
		SPF_request_free(req);
	SPF_server_free(srv);
	return r;
}

const char *
spf_result_name(enum spf_result r)
{
	static const char *const names[] = {
		"none", "neutral", "pass", "fail", "softfail", "temperror",
		"permerror",
	};

	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] :
	    "permerror";
}
