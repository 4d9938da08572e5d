#ifndef PETREL_LOG_H
#define PETREL_LOG_H
/* Logging: one line per event on stderr ("petrel[pid]: level: text"), or
 * to syslog (log_open_syslog) or journald (log_open_journald). The *_errno variants append
 * strerror(errno). fatal() is for a broken environment, panic() for a
 * broken invariant; both exit. */
#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_init(const char *ident, bool timestamps);
/* From now on write RFC 3164 datagrams to the syslog socket at path
 * (facility mail) instead of stderr. A line the socket cannot take at
 * once goes to stderr: logging never blocks the event loop. 0 ok, -1
 * (the socket cannot be reached) with *error_r. */
int log_open_syslog(const char *path, const char **error_r);
/* The same to journald's native socket at path (log_target = journald):
 * one datagram per record, fields as log_journal_record() makes them. */
int log_open_journald(const char *path, const char **error_r);
/* One journald record (native protocol) into buf: MESSAGE, PRIORITY,
 * SYSLOG_FACILITY (mail), SYSLOG_IDENTIFIER ("petrel/<service>" as in
 * syslog), SYSLOG_PID, PROTOCOL (the service), and what the text's
 * Postfix shapes name: SESSION_ID ("%016llx: " at its start), QUEUE_ID
 * ("%016llX: "), CLIENT (the address of "client=host[ip]", or for the
 * servers' lines the first "[ip]"), USER ("user=<u>" or
 * "sasl_username=u"). A field that does not fit is left out. Returns the
 * record's length. */
size_t log_journal_record(char *buf, size_t size, int priority,
    const char *ident, const char *service, long pid, const char *text);
/* The service this thread is logging for ("smtpd", "imap", ...; NULL:
 * the process's ident). In syslog lines the program name becomes
 * "petrel/<service>" (Postfix's shapes, which log readers such as
 * pflogsumm know). Returns the previous one, to be put back. */
const char *log_service_set(const char *service);
void log_set_level(enum log_level level);
int log_parse_level(const char *name, enum log_level *level_r);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
void fatal_errno(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
void panic(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

#endif
