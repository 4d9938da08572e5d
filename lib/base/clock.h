#ifndef PETREL_BASE_CLOCK_H
#define PETREL_BASE_CLOCK_H
/*
 * clock.h: the monotonic clock in milliseconds, for delays in log lines
 * and deadlines (never the wall clock, which may jump).
 */
#include <time.h>

static inline long long
monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
