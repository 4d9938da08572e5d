/*
 * login.c: password logins against the directory (see login.h).
 *
 * The cache holds, per login, an HMAC of the password under a per-process
 * random key (never the password), the crypt hash it matched and an expiry.
 * A hit still requires the directory to return the same hash, so changing
 * a password or clearing imapok takes effect at once.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "lib/auth/login.h"
#include "lib/auth/password.h"
#include "lib/auth/throttle.h"
#include "lib/base/alloc.h"
#include "lib/dir/dir.h"
#include "lib/tls/tls.h"

#define AUTH_CACHE_BUCKETS 1024
#define AUTH_CACHE_MAX 100000	/* entries; beyond that, no new ones */
#define AUTH_DELAY_MAX_MS 15000
#define AUTH_DELAY_FORGET 600	/* seconds without failure */

struct cache_entry {
	char *login;
	unsigned char digest[32];
	char *crypt;
	time_t expires;
	struct cache_entry *next;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cache_entry *cache[AUTH_CACHE_BUCKETS];
static size_t cache_count;
static unsigned cache_ttl;
static unsigned char cache_key[32];
static struct throttle *throttle;
static atomic_uint check_ms;	/* moving average of a failed check's time */

void
auth_throttle_setup(unsigned max_per_ip, unsigned max_per_user,
    unsigned lockout_s)
{
	throttle_free(throttle);
	throttle = throttle_new(max_per_ip, max_per_user, lockout_s);
}

void
auth_cache_setup(unsigned ttl)
{
	cache_ttl = ttl;
	if (getrandom(cache_key, sizeof(cache_key), 0) != sizeof(cache_key))
		cache_ttl = 0;	/* no key, no cache */
}

static unsigned
bucket(const char *login)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)login; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % AUTH_CACHE_BUCKETS;
}

static void
digest(const char *login, const char *password, unsigned char out[32])
{
	str_t msg = STR_INIT;

	str_append(&msg, login);
	str_append_c(&msg, '\0');
	str_append(&msg, password);
	crypto_hmac_sha256(cache_key, sizeof(cache_key), msg.data, msg.len,
	    out);
	explicit_bzero(msg.data, msg.len);
	str_free(&msg);
}

static bool
cache_hit(const char *login, const unsigned char d[32], const char *crypt)
{
	struct cache_entry *e;
	bool hit = false;
	time_t now = time(NULL);

	pthread_mutex_lock(&cache_lock);
	for (e = cache[bucket(login)]; e != NULL; e = e->next) {
		if (strcmp(e->login, login) != 0)
			continue;
		hit = e->expires > now && strcmp(e->crypt, crypt) == 0 &&
		    memcmp(e->digest, d, 32) == 0;
		break;
	}
	pthread_mutex_unlock(&cache_lock);
	return hit;
}

static void
cache_store(const char *login, const unsigned char d[32], const char *crypt)
{
	struct cache_entry *e;
	unsigned b = bucket(login);

	pthread_mutex_lock(&cache_lock);
	for (e = cache[b]; e != NULL; e = e->next)
		if (strcmp(e->login, login) == 0)
			break;
	if (e == NULL && cache_count < AUTH_CACHE_MAX) {
		e = xmalloc(sizeof(*e));
		e->login = xstrdup(login);
		e->next = cache[b];
		cache[b] = e;
		cache_count++;
	}
	if (e != NULL) {
		free(e->crypt);
		e->crypt = xstrdup(crypt);
		memcpy(e->digest, d, 32);
		e->expires = time(NULL) + (time_t)cache_ttl;
	}
	pthread_mutex_unlock(&cache_lock);
}

static enum auth_result
check(struct dir *dir, const char *login, const char *password,
    const char *challenge, struct dir_user *u_r)
{
	unsigned char d[32];
	const char *err;
	int r;

	r = dir_lookup_login(dir, login, u_r, &err);
	if (r == DIR_TEMPFAIL || r == DIR_FAIL)
		return AUTH_TEMPFAIL;
	if (challenge != NULL) {
		/* CRAM-MD5: only a cleartext password can answer it (no
		 * crypt() runs, for known and unknown users alike) */
		if (r == DIR_OK && password_cram_md5_verify(u_r->clear,
		    challenge, password))
			return AUTH_OK;
		dir_user_clear(u_r);
		return AUTH_FAIL;
	}
	if (r == DIR_OK && !password_hash_usable(u_r->crypt) &&
	    u_r->clear[0] != '\0') {
		/* only the howto's cleartext column: a failure costs the
		 * dummy crypt() as any other does */
		if (password_clear_verify(password, u_r->clear))
			return AUTH_OK;
		password_verify_dummy(password);
		dir_user_clear(u_r);
		return AUTH_FAIL;
	}
	if (r == DIR_NOTFOUND || !password_hash_usable(u_r->crypt)) {
		/* the same crypt() as for a wrong password: no timing
		 * difference between unknown and known users */
		password_verify_dummy(password);
		dir_user_clear(u_r);
		return AUTH_FAIL;
	}
	if (cache_ttl > 0) {
		digest(login, password, d);
		if (cache_hit(login, d, u_r->crypt))
			return AUTH_OK;
	}
	if (!password_verify(password, u_r->crypt)) {
		dir_user_clear(u_r);
		return AUTH_FAIL;
	}
	if (cache_ttl > 0)
		cache_store(login, d, u_r->crypt);
	return AUTH_OK;
}

static enum auth_result
login_checked(struct dir *dir, const char *login, const char *password,
    const char *challenge, const char *ip, struct dir_user *u_r)
{
	enum auth_result res;
	struct timespec t0, t1;

	memset(u_r, 0, sizeof(*u_r));
	if (login[0] == '\0' || password[0] == '\0')
		return AUTH_FAIL;
	/* a refusal costs no crypt() (guessing must not eat the CPU); the
	 * caller waits auth_check_ms() longer instead */
	if (throttle != NULL &&
	    throttle_begin(throttle, ip, login, time(NULL)) == THROTTLE_REFUSE)
		return AUTH_THROTTLED;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	res = check(dir, login, password, challenge, u_r);
	if (res == AUTH_FAIL && challenge == NULL) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		auth_check_ms_note((t1.tv_sec - t0.tv_sec) * 1000 +
		    (t1.tv_nsec - t0.tv_nsec) / 1000000);
	}
	if (throttle != NULL)
		throttle_end(throttle, ip, login, res == AUTH_OK ?
		    THROTTLE_SUCCESS : res == AUTH_FAIL ? THROTTLE_FAILURE :
		    THROTTLE_ABORT, time(NULL));
	return res;
}

enum auth_result
auth_login(struct dir *dir, const char *login, const char *password,
    const char *ip, struct dir_user *u_r)
{
	return login_checked(dir, login, password, NULL, ip, u_r);
}

enum auth_result
auth_login_proxy(struct dir *dir, const char *login, bool secret_ok,
    const char *ip, struct dir_user *u_r)
{
	enum auth_result res = AUTH_FAIL;
	const char *err;
	int r;

	memset(u_r, 0, sizeof(*u_r));
	if (login[0] == '\0')
		return AUTH_FAIL;
	if (throttle != NULL &&
	    throttle_begin(throttle, ip, login, time(NULL)) == THROTTLE_REFUSE)
		return AUTH_THROTTLED;
	if (secret_ok) {
		/* the same row as a password login: a user that query_login
		 * does not return may not log in this way either */
		r = dir_lookup_login(dir, login, u_r, &err);
		if (r == DIR_TEMPFAIL || r == DIR_FAIL)
			res = AUTH_TEMPFAIL;
		else if (r == DIR_OK)
			res = AUTH_OK;
		else
			dir_user_clear(u_r);
	}
	if (throttle != NULL)
		throttle_end(throttle, ip, login, res == AUTH_OK ?
		    THROTTLE_SUCCESS : res == AUTH_FAIL ? THROTTLE_FAILURE :
		    THROTTLE_ABORT, time(NULL));
	return res;
}

enum auth_result
auth_login_cram(struct dir *dir, const char *login, const char *challenge,
    const char *response, const char *ip, struct dir_user *u_r)
{
	return login_checked(dir, login, response, challenge, ip, u_r);
}

void
auth_check_ms_note(long ms)
{
	unsigned old = atomic_load(&check_ms);

	if (ms < 0 || ms > 10000)
		ms = 10000;
	atomic_store(&check_ms, old == 0 ? (unsigned)ms :
	    (old * 7 + (unsigned)ms) / 8);
}

unsigned
auth_check_ms(void)
{
	return atomic_load(&check_ms);
}

/* One list, two kinds of entry: an IP ("ip") with its failures, whose
 * count makes the delay grow, and a pair ("ip|login") with the failures it
 * contributed, which a success for that login takes back. */
struct delay_entry {
	char key[320];
	unsigned failures;
	time_t last;
	struct delay_entry *next;
};

static pthread_mutex_t delay_lock = PTHREAD_MUTEX_INITIALIZER;
static struct delay_entry *delays;

/* Call with delay_lock held; forgets stale entries on the way. */
static struct delay_entry *
delay_find(const char *key, bool create, time_t now)
{
	struct delay_entry *e, **pp;

	for (pp = &delays; (e = *pp) != NULL;) {
		if (now - e->last > AUTH_DELAY_FORGET) {
			*pp = e->next;
			free(e);
			continue;
		}
		if (strcmp(e->key, key) == 0)
			return e;
		pp = &e->next;
	}
	if (!create)
		return NULL;
	e = xcalloc(1, sizeof(*e));
	snprintf(e->key, sizeof(e->key), "%s", key);
	e->next = delays;
	delays = e;
	return e;
}

static void
delay_unlink(struct delay_entry *victim)
{
	for (struct delay_entry **pp = &delays; *pp != NULL;
	    pp = &(*pp)->next) {
		if (*pp == victim) {
			*pp = victim->next;
			free(victim);
			return;
		}
	}
}

unsigned
auth_delay_failure(const char *ip, const char *login, unsigned base_ms)
{
	struct delay_entry *ipe, *pe;
	time_t now = time(NULL);
	unsigned ms, shift;
	char key[320];

	snprintf(key, sizeof(key), "%s|%s", ip, login != NULL ? login : "");
	pthread_mutex_lock(&delay_lock);
	pe = delay_find(key, true, now);
	pe->failures++;
	pe->last = now;
	ipe = delay_find(ip, true, now);
	ipe->failures++;
	ipe->last = now;
	shift = ipe->failures - 1 > 5 ? 5 : ipe->failures - 1;
	pthread_mutex_unlock(&delay_lock);
	ms = base_ms << shift;
	return ms > AUTH_DELAY_MAX_MS ? AUTH_DELAY_MAX_MS : ms;
}

void
auth_delay_success(const char *ip, const char *login)
{
	struct delay_entry *ipe, *pe;
	time_t now = time(NULL);
	char key[320];

	snprintf(key, sizeof(key), "%s|%s", ip, login != NULL ? login : "");
	pthread_mutex_lock(&delay_lock);
	pe = delay_find(key, false, now);
	if (pe != NULL) {
		ipe = delay_find(ip, false, now);
		if (ipe != NULL) {
			ipe->failures = ipe->failures > pe->failures ?
			    ipe->failures - pe->failures : 0;
			if (ipe->failures == 0)
				delay_unlink(ipe);
		}
		delay_unlink(pe);
	}
	pthread_mutex_unlock(&delay_lock);
}
