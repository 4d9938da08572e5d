/*
 * throttle.c: password-guessing limits (see throttle.h).
 *
 * Three open-addressed tables of fixed size: per IP, per account (login,
 * lower-cased) and per (IP, account). An IP or account entry holds a
 * leaking failure score and a lock expiry; a pair entry holds when the IP
 * last failed for the account and until when it is trusted for it (after a
 * success).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "lib/auth/throttle.h"
#include "lib/base/alloc.h"

#define KEY_MAX 320		/* longer keys are truncated */
#define PROBE 16
#define TRUST_TIME 86400	/* a success trusts the pair this long */

struct entry {
	char key[KEY_MAX];
	bool used;
	time_t last;		/* last touched, for eviction */
	double score;		/* IP/account: reserved or failed checks */
	time_t decayed_at;	/* IP/account: score leaked up to here */
	time_t locked_until;	/* IP/account */
	time_t failed_at;	/* pair: last failure (0 none) */
	time_t trusted_until;	/* pair: after a success */
};

struct table {
	struct entry *e;
	uint32_t seed;
};

struct throttle {
	pthread_mutex_t lock;
	unsigned max_ip, max_user, lockout;
	struct table ip, user, pair;
};

static void
table_init(struct table *tb)
{
	tb->e = xcalloc(THROTTLE_CAP, sizeof(*tb->e));
	if (getrandom(&tb->seed, sizeof(tb->seed), 0) != sizeof(tb->seed))
		tb->seed = 0x9e3779b9u;
}

struct throttle *
throttle_new(unsigned max_per_ip, unsigned max_per_user, unsigned lockout_s)
{
	struct throttle *t = xcalloc(1, sizeof(*t));

	pthread_mutex_init(&t->lock, NULL);
	t->max_ip = max_per_ip;
	t->max_user = max_per_user;
	t->lockout = lockout_s > 0 ? lockout_s : 1;
	table_init(&t->ip);
	table_init(&t->user);
	table_init(&t->pair);
	return t;
}

void
throttle_free(struct throttle *t)
{
	if (t == NULL)
		return;
	free(t->ip.e);
	free(t->user.e);
	free(t->pair.e);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static uint32_t
hash(const struct table *tb, const char *key)
{
	uint32_t h = 2166136261u ^ tb->seed;

	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h ^ (h >> 15);
}

/* The entry for key; with create, a new or evicted one (never NULL). */
static struct entry *
lookup(struct table *tb, const char *key, bool create, time_t now)
{
	uint32_t h = hash(tb, key);
	struct entry *victim = NULL;

	for (unsigned i = 0; i < PROBE; i++) {
		struct entry *e = &tb->e[(h + i) % THROTTLE_CAP];

		if (e->used && strcmp(e->key, key) == 0) {
			e->last = now;
			return e;
		}
		if (!e->used) {
			if (victim == NULL || victim->used)
				victim = e;
		} else if (victim == NULL ||
		    (victim->used && e->last < victim->last)) {
			victim = e;
		}
	}
	if (!create)
		return NULL;
	memset(victim, 0, sizeof(*victim));
	victim->used = true;
	snprintf(victim->key, sizeof(victim->key), "%s", key);
	victim->last = now;
	return victim;
}

static void
make_keys(const char *ip, const char *login, char user[KEY_MAX],
    char pair[KEY_MAX])
{
	size_t i;

	for (i = 0; login[i] != '\0' && i < KEY_MAX - 1; i++)
		user[i] = (char)tolower((unsigned char)login[i]);
	user[i] = '\0';
	/* "longer keys are truncated": a pair past KEY_MAX counts with the
	 * others of its prefix */
	if (snprintf(pair, KEY_MAX, "%s|%s", ip, user) >= KEY_MAX)
		pair[KEY_MAX - 1] = '\0';
}

/* Leak the score: limit failures per lockout seconds. */
static void
decay(struct entry *e, unsigned limit, unsigned lockout, time_t now,
    time_t since)
{
	if (limit == 0 || now <= since)
		return;
	e->score -= (double)(now - since) * limit / lockout;
	if (e->score < 0)
		e->score = 0;
}

static struct entry *
counted(struct table *tb, const char *key, unsigned limit, unsigned lockout,
    bool create, time_t now)
{
	struct entry *e = lookup(tb, key, false, now);
	time_t since;

	if (e == NULL) {
		if (!create)
			return NULL;
		e = lookup(tb, key, true, now);
		e->decayed_at = now;
		return e;
	}
	since = e->decayed_at != 0 ? e->decayed_at : now;
	decay(e, limit, lockout, now, since);
	e->decayed_at = now;
	return e;
}

static bool
locked(const struct entry *e, unsigned limit, time_t now)
{
	if (e == NULL || limit == 0)
		return false;
	return e->locked_until > now || e->score >= limit;
}

static void
add(struct entry *e, double n)
{
	e->score += n;
	if (e->score < 0)
		e->score = 0;
}

/* A confirmed failure at or over the limit locks for the lockout time
 * (reservations alone refuse only while they are held). */
static void
maybe_lock(struct entry *e, unsigned limit, unsigned lockout, time_t now)
{
	if (e != NULL && limit > 0 && e->score >= limit)
		e->locked_until = now + (time_t)lockout;
}

enum throttle_verdict
throttle_begin(struct throttle *t, const char *ip, const char *login,
    time_t now)
{
	char ukey[KEY_MAX], pkey[KEY_MAX];
	struct entry *ipe, *ue, *pe;
	bool trusted, failed_for;
	enum throttle_verdict v = THROTTLE_ALLOW;

	make_keys(ip, login, ukey, pkey);
	pthread_mutex_lock(&t->lock);
	ipe = counted(&t->ip, ip, t->max_ip, t->lockout, false, now);
	ue = counted(&t->user, ukey, t->max_user, t->lockout, false, now);
	pe = lookup(&t->pair, pkey, false, now);
	trusted = pe != NULL && pe->trusted_until > now;
	failed_for = pe != NULL && pe->failed_at != 0 &&
	    now - pe->failed_at < (time_t)t->lockout;
	if (!trusted && (locked(ipe, t->max_ip, now) ||
	    (failed_for && locked(ue, t->max_user, now))))
		v = THROTTLE_REFUSE;
	if (v == THROTTLE_ALLOW) {
		/* the check counts as a failure until it succeeds */
		if (ipe == NULL)
			ipe = counted(&t->ip, ip, t->max_ip, t->lockout, true,
			    now);
		if (ue == NULL)
			ue = counted(&t->user, ukey, t->max_user, t->lockout,
			    true, now);
		if (pe == NULL)
			pe = lookup(&t->pair, pkey, true, now);
		add(ipe, 1);
		add(ue, 1);
		pe->failed_at = now;
	}
	pthread_mutex_unlock(&t->lock);
	return v;
}

void
throttle_end(struct throttle *t, const char *ip, const char *login,
    enum throttle_outcome outcome, time_t now)
{
	char ukey[KEY_MAX], pkey[KEY_MAX];
	struct entry *ipe, *ue, *pe;

	make_keys(ip, login, ukey, pkey);
	pthread_mutex_lock(&t->lock);
	ipe = counted(&t->ip, ip, t->max_ip, t->lockout, false, now);
	ue = counted(&t->user, ukey, t->max_user, t->lockout, false, now);
	pe = lookup(&t->pair, pkey, false, now);
	if (outcome == THROTTLE_FAILURE) {
		/* counted when it began */
		maybe_lock(ipe, t->max_ip, t->lockout, now);
		maybe_lock(ue, t->max_user, t->lockout, now);
		if (pe != NULL)
			pe->failed_at = now;
		pthread_mutex_unlock(&t->lock);
		return;
	}
	/* give the reservation back */
	if (ipe != NULL)
		add(ipe, -1);
	if (ue != NULL)
		add(ue, -1);
	if (pe != NULL && outcome == THROTTLE_SUCCESS) {
		pe->failed_at = 0;
		pe->trusted_until = now + TRUST_TIME;
	}
	pthread_mutex_unlock(&t->lock);
}
