#ifndef PETREL_IMAP_H
#define PETREL_IMAP_H
/* The IMAP server (RFC 3501 IMAP4rev1 with IDLE, UIDPLUS, MOVE,
 * NAMESPACE, LITERAL+, ENABLE, ID, UNSELECT, CHILDREN, SPECIAL-USE,
 * QUOTA, SASL-IR) for one worker process, on the Maildir store. */
#include <stdbool.h>
#include <stdint.h>

struct config;
struct event;
struct event_base;
struct jobs;
struct sockaddr;
struct tls_server;

struct imap_server {
	struct event_base *base;
	struct jobs *jobs;		/* the disk: delivery, mailbox work */
	struct jobs *dir_jobs;		/* directory queries */
	const struct config *cfg;
	struct tls_server *tls;		/* NULL: no STARTTLS / imaps */
	char *hostname;
	const char *mail_root;
	const char *plaintext;		/* allow_plaintext_auth */
	unsigned fail_delay_ms;
	unsigned timeout;
	uint64_t size_limit;		/* message_size_limit (APPEND) */
	struct imap_session *sessions;
	unsigned nsessions;
	bool draining;

	/* change notification: one inotify descriptor per worker */
	int inotify_fd;
	struct event *inotify_ev;
	struct imap_watch *watches;
};

void imap_server_init(struct imap_server *srv, struct event_base *base,
    struct jobs *jobs, const struct config *cfg, struct tls_server *tls);
void imap_server_deinit(struct imap_server *srv);
void imap_session_accept(struct imap_server *srv, int fd,
    const struct sockaddr *sa, bool implicit_tls);
unsigned imap_server_drain(struct imap_server *srv);

#endif
