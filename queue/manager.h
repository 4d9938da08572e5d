#ifndef PETREL_MANAGER_H
#define PETREL_MANAGER_H
/* The outbound queue manager: one process under the master that delivers
 * QUEUE_DIR/incoming with an SMTP client, retries with back-off, and
 * bounces (RFC 3464) what finally fails. */

struct petrel_ctx;

int queue_manager_run(struct petrel_ctx *ctx);

/* Build and deliver a DSN for the bounced recipients of m that `which`
 * marks (NULL: all bounced ones) (queue/dsn.c). Never to the null sender.
 * 0 ok (or nothing to do), -1 error (retry). */
#include <stdbool.h>
struct authc;
struct queue_msg;
struct config;
int dsn_bounce(struct authc *ac, const struct config *cfg,
    const struct queue_msg *m, const bool *which, const char *hostname);

#endif
