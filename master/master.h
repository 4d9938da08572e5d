#ifndef PETREL_MASTER_H
#define PETREL_MASTER_H
/*
 * master.h: petrel serve. One entry point for the three roles the same
 * binary takes: the master (no PETREL_WORKER_FDS, no PETREL_ROLE), a
 * protocol worker (PETREL_WORKER_FDS names its listening sockets) and the
 * queue manager (PETREL_ROLE=queue).
 */

struct petrel_ctx;

/* Run the role until it stops; returns the exit status. -1 with *error_r
 * set when the master cannot start (the caller reports it). */
int serve_run(struct petrel_ctx *ctx, const char **error_r);

#endif
