/*
 * config.c: the configuration file parser and key table.
 *
 * Trusts nothing in the file: every line is bounded (CONFIG_LINE_MAX), every
 * key must be declared below, numeric keys must parse completely and fit
 * their range. Errors carry "FILE:LINE: what is wrong".
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/config/config.h"

enum key_type { KT_STRING, KT_UINT, KT_ENUM, KT_LEVEL, KT_LISTEN, KT_PORTS };

struct key_def {
	const char *name;
	enum key_type type;
	const char *def;
	const char *choices;	/* KT_ENUM: '|'-separated */
	uint64_t max;		/* KT_UINT; KT_PORTS: how many ports */
	const char *help;	/* one paragraph, plain text */
	const char *init;	/* what `petrel init` writes, if not def */
};

/* Set by the build from sysconfdir and localstatedir (meson.build). */
#ifndef PETREL_SYSCONFDIR
#define PETREL_SYSCONFDIR "/etc"
#endif
#ifndef PETREL_LOCALSTATEDIR
#define PETREL_LOCALSTATEDIR "/var"
#endif
#define ETC_DIR PETREL_SYSCONFDIR "/petrel"
#define STATE_DIR PETREL_LOCALSTATEDIR "/lib/petrel"

#define DEFAULT_QUERY_USER \
	"SELECT id, address, crypt, name, uid, gid, home, maildir FROM users WHERE address = :address"

/*
 * The one table of keys: name, type, default, choices, bound, and the help
 * text that `petrel help KEY` prints and petrel.conf(5) is generated from
 * (`petrel help --man`). `init` is what `petrel init` writes into a new
 * instance when it differs from the default: a listener added after a
 * release stays off in an existing file that lacks it (SPEC 6.1).
 */
static const struct key_def keys[] = {
	{ "hostname", KT_STRING, "", NULL, 0,
	  "The host's public name: SMTP greeting and EHLO, Received headers, "
	  "bounces, the MX and MTA-STS records of petrel dns and the "
	  "servers named by client autoconfiguration. Empty: the system's "
	  "host name." },
	{ "database", KT_STRING, "sqlite:" STATE_DIR "/petrel.db", NULL, 0,
	  "The SQL directory: sqlite:PATH or "
	  "mysql://USER:PASS@HOST[:PORT]/DB[?socket=PATH]; several hosts "
	  "(HOST[:PORT],HOST[:PORT],...: the nodes of a cluster) are tried "
	  "in order, the one that answers kept until it fails." },
	{ "role", KT_ENUM, "single", "single|frontend|backend", 0,
	  "What this node does (docs/scale-out.md): single (everything, "
	  "one machine), frontend (SMTP, submission and the IMAP, POP3 and "
	  "ManageSieve proxy; each user's mail is handed to the user's "
	  "backend by LMTP) or backend (the mail store, LMTP and the "
	  "protocols for its own users)." },
	{ "backend_default", KT_STRING, "", NULL, 0,
	  "On a frontend, the backend (host name or address) of users whose "
	  "directory row has no host column or an empty one; empty: such "
	  "users' mail gets 451 4.3.0 and their logins a temporary error "
	  "(a frontend keeps no mailboxes)." },
	{ "backend_ports", KT_PORTS, "24,143,110,4190", NULL, 4,
	  "The LMTP, IMAP, POP3 and ManageSieve ports of backends, "
	  "comma-separated in that order." },
	{ "proxy_secret", KT_STRING, "", NULL, 0,
	  "The secret with which a frontend opens a session on a backend "
	  "for a user it authenticated (never the user's password); the "
	  "same on every node; a string, or file:PATH (its first line); "
	  "petrel user move proves it to the new backend (XMOVE); "
	  "empty: backends accept no proxied session and no XMOVE." },
	{ "proxy_tls_ca", KT_STRING, "", NULL, 0,
	  "On a frontend, a CA file (PEM) for the backends' certificates: "
	  "when set, every proxied IMAP, POP3 and ManageSieve session and "
	  "every LMTP delivery uses STARTTLS, and the backend's certificate "
	  "must chain to this CA and carry the backend's name or address as "
	  "written in the directory or backend_default (else a temporary "
	  "error, logged); so does petrel user move's copy to a backend; "
	  "empty: STARTTLS when offered, not verified." },
	{ "proxy_trusted_networks", KT_STRING, "", NULL, 0,
	  "On a backend, the addresses and networks of the frontends and "
	  "of the backends that move users here (petrel user move), "
	  "comma-separated (192.0.2.0/24, 2001:db8::/32, 198.51.100.7): "
	  "only connections from them may use proxy_secret, pass on a "
	  "client's address or use XMOVE; empty: none." },
	{ "mail_root", KT_STRING, STATE_DIR "/mail", NULL, 0,
	  "The directory under which users' maildirs live; a maildir path "
	  "from the directory may not climb out of it." },
	{ "queue_dir", KT_STRING, STATE_DIR "/queue", NULL, 0,
	  "The outbound queue (tmp/, incoming/, state/)." },
	{ "smtp_listen", KT_LISTEN, "127.0.0.1:2525", NULL, 0,
	  "Addresses for inbound SMTP (port 25 in production)." },
	{ "submission_listen", KT_LISTEN, "127.0.0.1:2587", NULL, 0,
	  "Addresses for message submission with STARTTLS (port 587)." },
	{ "submissions_listen", KT_LISTEN, "127.0.0.1:2465", NULL, 0,
	  "Addresses for message submission over implicit TLS (port 465)." },
	{ "imap_listen", KT_LISTEN, "127.0.0.1:1143", NULL, 0,
	  "Addresses for IMAP with STARTTLS (port 143)." },
	{ "imaps_listen", KT_LISTEN, "127.0.0.1:1993", NULL, 0,
	  "Addresses for IMAP over implicit TLS (port 993)." },
	{ "pop3_listen", KT_LISTEN, "127.0.0.1:1110", NULL, 0,
	  "Addresses for POP3 with STLS (port 110)." },
	{ "pop3s_listen", KT_LISTEN, "127.0.0.1:1995", NULL, 0,
	  "Addresses for POP3 over implicit TLS (port 995)." },
	{ "http_listen", KT_LISTEN, "", NULL, 0,
	  "Addresses for the HTTP listener: /metrics (Prometheus), mail "
	  "client autoconfiguration and the MTA-STS policy. Off when absent "
	  "from the file.",
	  "127.0.0.1:8080" },
	{ "https_listen", KT_LISTEN, "", NULL, 0,
	  "Addresses for the same HTTP service over implicit TLS with "
	  "tls_cert (or the tls_sni_dir certificate the client names), as "
	  "MTA-STS policy fetchers require (port 443 in production). Off "
	  "when absent from the file.",
	  "127.0.0.1:8443" },
	{ "lmtp_listen", KT_LISTEN, "", NULL, 0,
	  "Addresses for LMTP (RFC 2033), how an MTA in front hands mail for "
	  "local users to petrel (Postfix: virtual_transport = "
	  "lmtp:inet:127.0.0.1:24; port 24 in production). No AUTH: keep it "
	  "on loopback or a trusted network. Off when absent from the file.",
	  "127.0.0.1:2424" },
	{ "managesieve_listen", KT_LISTEN, "", NULL, 0,
	  "Addresses for ManageSieve (RFC 5804), where users upload and "
	  "activate their Sieve scripts (port 4190 in production). Off when "
	  "absent from the file.",
	  "127.0.0.1:4190" },
	{ "tls_cert", KT_STRING, ETC_DIR "/tls/cert.pem", NULL, 0,
	  "The certificate chain (PEM) of every TLS listener." },
	{ "tls_key", KT_STRING, ETC_DIR "/tls/key.pem", NULL, 0,
	  "The private key (PEM) of tls_cert." },
	{ "tls_sni_dir", KT_STRING, "", NULL, 0,
	  "A directory of certificates chosen by the name a TLS client asks "
	  "for (SNI): each subdirectory holds fullchain.pem and privkey.pem, "
	  "as certbot's /etc/letsencrypt/live does; a client naming none of "
	  "their names gets tls_cert. Empty: tls_cert for every client." },
	{ "tls_profile", KT_ENUM, "intermediate", "intermediate|modern", 0,
	  "TLS protocols and ciphers: intermediate (TLS 1.2 and 1.3) or "
	  "modern (TLS 1.3 only)." },
	{ "message_size_limit", KT_UINT, "52428800", NULL, (uint64_t)1 << 40,
	  "The largest message in bytes (SMTP SIZE, IMAP APPENDLIMIT)." },
	{ "user", KT_STRING, "", NULL, 0,
	  "The account the workers and the queue manager run as (when "
	  "started as root)." },
	{ "group", KT_STRING, "", NULL, 0,
	  "The group the workers and the queue manager run as." },
	{ "auth_user", KT_STRING, "petrel-auth", NULL, 0,
	  "The account of the auth process, the only one that opens the "
	  "directory; falls back to user, with a warning, when it does not "
	  "exist." },
	{ "database_password_file", KT_STRING, "", NULL, 0,
	  "A file holding the MariaDB password, read by the auth process "
	  "alone; it replaces a password in database." },
	{ "workers", KT_UINT, "2", NULL, 256,
	  "The number of protocol worker processes." },
	{ "worker_threads", KT_UINT, "4", NULL, 256,
	  "Threads per job pool (directory, disk) in each worker." },
	{ "smtp_max_connections", KT_UINT, "2000", NULL, 1000000,
	  "Inbound SMTP sessions at once on the node." },
	{ "smtp_max_connections_per_ip", KT_UINT, "100", NULL, 1000000,
	  "Inbound SMTP sessions at once from one address." },
	{ "submission_max_connections", KT_UINT, "1000", NULL, 1000000,
	  "Submission sessions at once on the node." },
	{ "submission_max_connections_per_ip", KT_UINT, "50", NULL, 1000000,
	  "Submission sessions at once from one address." },
	{ "submissions_max_connections", KT_UINT, "1000", NULL, 1000000,
	  "Implicit-TLS submission sessions at once on the node." },
	{ "submissions_max_connections_per_ip", KT_UINT, "50", NULL,
	  1000000,
	  "Implicit-TLS submission sessions at once from one address." },
	{ "imap_max_connections", KT_UINT, "10000", NULL, 1000000,
	  "IMAP sessions at once on the node." },
	{ "imap_max_connections_per_ip", KT_UINT, "100", NULL, 1000000,
	  "IMAP sessions at once from one address." },
	{ "imaps_max_connections", KT_UINT, "10000", NULL, 1000000,
	  "IMAPS sessions at once on the node." },
	{ "imaps_max_connections_per_ip", KT_UINT, "100", NULL, 1000000,
	  "IMAPS sessions at once from one address." },
	{ "pop3_max_connections", KT_UINT, "2000", NULL, 1000000,
	  "POP3 sessions at once on the node." },
	{ "pop3_max_connections_per_ip", KT_UINT, "50", NULL, 1000000,
	  "POP3 sessions at once from one address." },
	{ "pop3s_max_connections", KT_UINT, "2000", NULL, 1000000,
	  "POP3S sessions at once on the node." },
	{ "pop3s_max_connections_per_ip", KT_UINT, "50", NULL, 1000000,
	  "POP3S sessions at once from one address." },
	{ "lmtp_max_connections", KT_UINT, "200", NULL, 1000000,
	  "LMTP sessions at once on the node." },
	{ "lmtp_max_connections_per_ip", KT_UINT, "100", NULL, 1000000,
	  "LMTP sessions at once from one address (an MTA in front opens "
	  "many)." },
	{ "managesieve_max_connections", KT_UINT, "200", NULL, 1000000,
	  "ManageSieve sessions at once on the node." },
	{ "managesieve_max_connections_per_ip", KT_UINT, "20", NULL, 1000000,
	  "ManageSieve sessions at once from one address." },
	{ "http_max_connections", KT_UINT, "100", NULL, 1000000,
	  "HTTP connections at once on the node." },
	{ "http_max_connections_per_ip", KT_UINT, "20", NULL, 1000000,
	  "HTTP connections at once from one address." },
	{ "https_max_connections", KT_UINT, "100", NULL, 1000000,
	  "HTTPS connections at once on the node." },
	{ "https_max_connections_per_ip", KT_UINT, "20", NULL, 1000000,
	  "HTTPS connections at once from one address." },
	{ "smtp_timeout", KT_UINT, "300", NULL, 86400,
	  "Seconds an SMTP client may stay silent." },
	{ "smtp_data_timeout", KT_UINT, "600", NULL, 86400,
	  "Seconds for a whole DATA or BDAT phase (0: no limit)." },
	{ "pop3_timeout", KT_UINT, "600", NULL, 86400,
	  "Seconds a logged-in POP3 client may stay silent." },
	{ "imap_timeout", KT_UINT, "1800", NULL, 86400,
	  "Seconds a logged-in IMAP client may stay silent (IDLE too)." },
	{ "managesieve_timeout", KT_UINT, "600", NULL, 86400,
	  "Seconds a ManageSieve client may stay silent." },
	{ "http_timeout", KT_UINT, "10", NULL, 86400,
	  "Seconds an HTTP client has to send its request." },
	{ "login_timeout", KT_UINT, "60", NULL, 86400,
	  "Seconds an IMAP, POP3 or ManageSieve client has to log in after it connected "
	  "(0: no limit)." },
	{ "auth_fail_delay", KT_UINT, "2000", NULL, 60000,
	  "Milliseconds before the answer to a failed login; it grows with "
	  "repeated failures." },
	{ "relayhost", KT_STRING, "", NULL, 0,
	  "Send all outbound mail through this host ([host]:port or "
	  "host:port) instead of the recipients' MX." },
	{ "dns_resolver", KT_LISTEN, "", NULL, 0,
	  "host:port of a DNS server to forward queries to; empty: the "
	  "system's resolvers." },
	{ "dane", KT_ENUM, "off", "off|opportunistic", 0,
	  "Outgoing DANE (RFC 7672), as Postfix's smtp_tls_security_level "
	  "= dane: for MX hosts with DNSSEC-signed TLSA records, STARTTLS "
	  "with a matching certificate or no delivery; others get "
	  "opportunistic TLS. off: opportunistic TLS everywhere." },
	{ "mta_sts", KT_ENUM, "off", "off|on", 0,
	  "Outgoing MTA-STS (RFC 8461): MX deliveries look up the recipient "
	  "domain's _mta-sts TXT record and fetch its policy over HTTPS "
	  "(certificate checked against smtp_tls_ca); under mode enforce "
	  "only matching MX hosts with a verified certificate get the mail, "
	  "under testing failures are logged. Hosts with DANE records "
	  "follow DANE." },
	{ "smtp_tls_ca", KT_STRING, "", NULL, 0,
	  "The CA file (PEM) the queue checks next hops' certificates "
	  "against where a check is required (REQUIRETLS messages, RFC "
	  "8689, and MTA-STS policies and their MX hosts, to hosts without "
	  "DANE records); empty: the system's store (/etc/ssl/certs)." },
	{ "dnssec_trust_anchor", KT_STRING, "/usr/share/dns/root.key", NULL, 0,
	  "The DNSSEC trust anchor file (DS or DNSKEY records) the queue "
	  "manager validates MX, address and TLSA answers from when dane is "
	  "on." },
	{ "dkim_dir", KT_STRING, STATE_DIR "/dkim", NULL, 0,
	  "Where the DKIM keys of the domains are kept (petrel dkim "
	  "keygen)." },
	{ "queue_retry_min", KT_UINT, "300", NULL, 86400,
	  "Seconds before the first retry of a deferred message." },
	{ "queue_retry_max", KT_UINT, "14400", NULL, 864000,
	  "The longest wait in seconds between retries (the back-off "
	  "doubles up to it)." },
	{ "queue_lifetime", KT_UINT, "432000", NULL, 8640000,
	  "Seconds a message may stay in the queue before it bounces." },
	{ "queue_scan_interval", KT_UINT, "60", NULL, 86400,
	  "Seconds between scans of the queue for messages due." },
	{ "queue_concurrency", KT_UINT, "100", NULL, 10000,
	  "Outbound deliveries at once (one connection each; 100 as "
	  "Postfix's default_process_limit)." },
	{ "queue_destination_concurrency", KT_UINT, "5", NULL, 10000,
	  "Outbound deliveries at once to one destination." },
	{ "lmtp_destination_concurrency", KT_UINT, "20", NULL, 10000,
	  "Deliveries at once to one lmtp: next hop (a frontend's backend; "
	  "20 as Postfix's lmtp_destination_concurrency_limit): a backend "
	  "of the same site needs none of the restraint shown to other "
	  "sites' MXs." },
	{ "lmtp_cut_through", KT_ENUM, "yes", "yes|no", 0,
	  "Hand a message for an lmtp: next hop (a frontend's users on "
	  "their backend) over by LMTP from the receiving process before "
	  "the 250, the queue file kept as the fallback for any recipient "
	  "not accepted; no: queue it, the queue manager delivers it." },
	{ "log_level", KT_LEVEL, "info", NULL, 0,
	  "The least important messages logged: error, warning, info or "
	  "debug." },
	{ "log_target", KT_ENUM, "stderr", "stderr|syslog|journald", 0,
	  "Where logs go: stderr, syslog (facility mail, Postfix's "
	  "program names such as petrel/smtpd), or journald (the same lines "
	  "with fields QUEUE_ID, SESSION_ID, CLIENT, USER, PROTOCOL)." },
	{ "journald_socket", KT_STRING, "/run/systemd/journal/socket", NULL, 0,
	  "journald's native socket for log_target = journald." },
	{ "syslog_socket", KT_STRING, "/dev/log", NULL, 0,
	  "The syslog socket for log_target = syslog." },
	{ "allow_plaintext_auth", KT_ENUM, "loopback", "loopback|yes|no", 0,
	  "Logins without TLS: loopback (only from 127.0.0.1 and ::1), yes "
	  "or no." },
	{ "auth_cache_ttl", KT_UINT, "300", NULL, 86400 * 365,
	  "Seconds a successful login is remembered (0: no cache); a "
	  "changed password hash ends it." },
	{ "auth_max_failures_per_ip", KT_UINT, "10", NULL, 1000000,
	  "Failed logins from one address before it is locked out for "
	  "auth_lockout_time." },
	{ "auth_max_failures_per_user", KT_UINT, "10", NULL, 1000000,
	  "Failed logins for one account before it is locked out for "
	  "auth_lockout_time." },
	{ "auth_lockout_time", KT_UINT, "900", NULL, 86400 * 365,
	  "Seconds a lockout for password guessing lasts." },
	{ "mta_sts_mode", KT_ENUM, "testing", "testing|enforce|none", 0,
	  "The mode of the MTA-STS policy served at "
	  "/.well-known/mta-sts.txt (mx: hostname)." },
	{ "mta_sts_max_age", KT_UINT, "604800", NULL, 31557600,
	  "The max_age in seconds of the MTA-STS policy." },
	{ "recipient_delimiter", KT_STRING, "+", NULL, 0,
	  "user+tag@domain falls back to user@domain; empty: no delimiter "
	  "(Postfix's default, and the howtos')." },
	{ "catchall_order", KT_ENUM, "after-users", "after-users|postfix", 0,
	  "Where the catch-all alias @domain is tried: after-users (after "
	  "the exact aliases and the users, so it never shadows a mailbox) "
	  "or postfix (as Postfix virtual(5): every alias lookup, the "
	  "catch-all included, before the users)." },
	{ "local_domain", KT_STRING, "", NULL, 0,
	  "The domain of a bare local name in an alias target (\"root\"), "
	  "as Postfix appends $myorigin; empty: the alias's own domain." },
	{ "imap_namespace_prefix", KT_ENUM, "", "\"\"|INBOX.", 0,
	  "IMAP mailbox names: \"\" names a folder .Work Work; INBOX. names "
	  "it INBOX.Work, as Courier-IMAP does." },
	{ "smtp_helo_required", KT_ENUM, "yes", "yes|no", 0,
	  "yes: MAIL before HELO/EHLO gets 503; no: accepted, as Postfix's "
	  "smtpd_helo_required = no." },
	{ "smtp_strict_envelopes", KT_ENUM, "yes", "yes|no", 0,
	  "yes: MAIL FROM and RCPT TO need <angle brackets>; no: a bare "
	  "address is taken, as Postfix's strict_rfc821_envelopes = no." },
	{ "milters", KT_STRING, "", NULL, 0,
	  "Mail filters (the Sendmail/Postfix milter protocol) asked about "
	  "every message received by SMTP and submission, in order: "
	  "comma-separated inet:HOST:PORT or unix:PATH; empty: none." },
	{ "milter_default_action", KT_ENUM, "tempfail", "tempfail|accept", 0,
	  "What a message gets when a filter cannot be reached, times out or "
	  "breaks the protocol: tempfail (451, the client retries) or accept "
	  "(as if that filter were not configured)." },
	{ "milter_timeout", KT_UINT, "30", NULL, 3600,
	  "Seconds for connecting to a filter and for each of its replies (a "
	  "conversation ends after ten times this; 0 counts as 1)." },
	{ "spf_policy", KT_ENUM, "mark", "mark|reject|ignore", 0,
	  "SPF (RFC 7208) of the MAIL FROM domain (the HELO name for <>) of "
	  "mail received by SMTP: mark (recorded in Authentication-Results), "
	  "reject (fail gets 550 5.7.23, temperror 451 4.7.24) or ignore (not "
	  "checked)." },
	{ "dkim_verify", KT_ENUM, "yes", "yes|no", 0,
	  "yes: every DKIM signature of mail received by SMTP is verified "
	  "and the verdicts recorded in Authentication-Results; no: not "
	  "checked." },
	{ "dmarc_policy", KT_ENUM, "mark", "enforce|mark|ignore", 0,
	  "DMARC (RFC 7489) of the From domain of mail received by SMTP: "
	  "enforce (p=reject gets 550 5.7.1 after the data, p=quarantine is "
	  "stored in the recipient's Junk folder), mark (the result is only "
	  "recorded in Authentication-Results) or ignore (not checked).",
	  "enforce" },
	{ "domain_policy_file", KT_STRING, "", NULL, 0,
	  "A file giving recipient domains their own spf_policy and "
	  "dmarc_policy, a line each: DOMAIN (or .DOMAIN for its subdomains) "
	  "then KEY=VALUE pairs; what a line does not set is the server-wide "
	  "value. With such lines an SPF refusal comes at RCPT, per "
	  "recipient, and a recipient whose dmarc_policy differs from the "
	  "transaction's first one gets 452 4.5.3 (sent again in a "
	  "transaction of its own); docs/trust.md. Empty: none." },
	{ "dmarc_reports", KT_ENUM, "no", "yes|no", 0,
	  "yes: each message received by SMTP whose DMARC record asks for "
	  "aggregate reports (rua=) leaves a row in queue_dir/state.db, which "
	  "petrel dmarc report sends and then removes (docs/trust.md); no: "
	  "nothing is recorded." },
	{ "dmarc_failure_reports", KT_ENUM, "no", "yes|no", 0,
	  "yes: a message received by SMTP that fails DMARC (as the "
	  "record's fo= asks) gets a failure report (RFC 7489 7.3, RFC 6591: "
	  "its header section only) sent to the record's ruf=mailto: "
	  "addresses, at most one per reported domain and client address "
	  "an hour; no: none." },
	{ "dmarc_report_from", KT_STRING, "", NULL, 0,
	  "The address DMARC aggregate and failure reports come from and "
	  "name as the reporting organization's contact; its domain is the "
	  "organization and the receiver in the report's file name. Empty: "
	  "postmaster at hostname." },
	{ "tls_rpt_reports", KT_ENUM, "no", "yes|no", 0,
	  "yes: each SMTP session of the outbound queue to a recipient "
	  "domain's MX (TLS or not, its MTA-STS or DANE policy held or "
	  "failed) leaves a row in queue_dir/state.db, which petrel tlsrpt "
	  "report sends as SMTP TLS reports (RFC 8460) and then removes "
	  "(docs/trust.md); no: nothing is recorded." },
	{ "tls_rpt_from", KT_STRING, "", NULL, 0,
	  "The address TLS reports come from and name as contact-info; "
	  "its domain is the submitter. Empty: postmaster at hostname." },
	{ "tls_rpt_org", KT_STRING, "", NULL, 0,
	  "The organization-name of TLS reports. Empty: the domain of "
	  "tls_rpt_from." },
	{ "arc", KT_ENUM, "verify", "seal|verify|off", 0,
	  "ARC (RFC 8617) of mail received by SMTP: verify (the chain is "
	  "validated and the result recorded in Authentication-Results), "
	  "seal (verified, and mail forwarded off-host gets an ARC set "
	  "signed with the DKIM key of the forwarding address's domain) or "
	  "off (neither).",
	  "seal" },
	{ "dnsbl_sites", KT_STRING, "", NULL, 0,
	  "DNS block lists asked about the address of every SMTP client "
	  "(RFC 5782), comma-separated, in postscreen's syntax: ZONE, "
	  "ZONE*WEIGHT, ZONE=FILTER*WEIGHT with FILTER four octets each N, "
	  "[N..M] or [A;B..C] (e.g. zen.example=127.0.0.[2..11]*3); a "
	  "negative weight for an allow list; empty: none." },
	{ "rhsbl_sites", KT_STRING, "", NULL, 0,
	  "DNS lists of domains asked about the MAIL FROM domain of every "
	  "SMTP transaction (DOMAIN.ZONE), in dnsbl_sites' syntax; their "
	  "weights add to the client's against dnsbl_threshold; empty: "
	  "none." },
	{ "rhsbl_helo_sites", KT_STRING, "", NULL, 0,
	  "DNS lists of domains asked about the HELO/EHLO name of every "
	  "SMTP client (NAME.ZONE, as Postfix's reject_rhsbl_helo), in "
	  "dnsbl_sites' syntax; address literals and names that are not "
	  "domain names are not asked about; their weights add to the "
	  "client's against dnsbl_threshold; empty: none." },
	{ "dnsbl_threshold", KT_UINT, "1", NULL, 100000,
	  "The sum of the weights of the lists that name a client at which "
	  "its recipients get 554 5.7.1 (0 counts as 1)." },
	{ "dnsbl_timeout", KT_UINT, "5", NULL, 60,
	  "Seconds after connect the block lists' answers are waited for "
	  "at the first RCPT; a list that has not answered counts as not "
	  "listing the client (0 counts as 1)." },
	{ "greylist", KT_ENUM, "off", "off|on", 0,
	  "on: a recipient from a new (client /24 or /64, sender, "
	  "recipient) triplet gets 451 4.7.1 until the client retries "
	  "after greylist_delay; state in queue_dir/state.db." },
	{ "greylist_whitelist", KT_STRING, "", NULL, 0,
	  "Client addresses and networks never greylisted, comma-separated "
	  "(192.0.2.0/24, 2001:db8::/32, 198.51.100.7); empty: none." },
	{ "greylist_delay", KT_UINT, "300", NULL, 86400,
	  "Seconds a new greylisting triplet must wait before a retry "
	  "passes." },
	{ "greylist_expire", KT_UINT, "3024000", NULL, 31536000,
	  "Seconds a triplet that passed greylisting stays known after its "
	  "last use (default 35 days)." },
	{ "srs_secret", KT_STRING, "", NULL, 0,
	  "The Sender Rewriting Scheme's secret: mail for a local recipient "
	  "forwarded off-host (an alias, a forwarding address, a Sieve "
	  "redirect) from a sender of another domain leaves with an SRS0 "
	  "address at srs_domain, and bounces to such addresses are checked "
	  "and sent on; a string, or file:PATH (its first line); empty: "
	  "off." },
	{ "srs_domain", KT_STRING, "", NULL, 0,
	  "The domain of SRS addresses; it must be one petrel accepts mail "
	  "for (petrel check warns); empty: the hostname." },
	{ "sieve_max_redirects", KT_UINT, "4", NULL, 64,
	  "Redirects one Sieve script run may make." },
	{ "sieve_max_scripts", KT_UINT, "0", NULL, 100000,
	  "Scripts a user may keep (ManageSieve PUTSCRIPT, petrel sieve "
	  "put); 0: no limit." },
	{ "sieve_max_storage", KT_UINT, "0", NULL, (uint64_t)1 << 40,
	  "Bytes all of a user's scripts may take together; 0: no limit "
	  "(each script is at most 1 MiB in any case)." },
	{ "sieve_dir", KT_STRING, "%h/sieve", NULL, 0,
	  "Where a user's Sieve scripts live (%h the home, %u the address, "
	  "%n its local part, %d its domain); the active one is the file "
	  "%h/.dovecot.sieve or its link into this directory." },
	{ "sieve_before", KT_STRING, "", NULL, 0,
	  "Admin Sieve scripts run before the user's at delivery: files or "
	  "directories (their *.sieve files in name order), comma-separated; "
	  "empty: none." },
	{ "sieve_after", KT_STRING, "", NULL, 0,
	  "Admin Sieve scripts run after the user's at delivery, as "
	  "sieve_before." },
	{ "sieve_global", KT_STRING, "", NULL, 0,
	  "The directory of the global Sieve scripts that include :global "
	  "NAME reads (NAME.sieve; %h %u %n %d as in sieve_dir); empty: "
	  "none." },
	{ "pop3_uidl_format", KT_ENUM, "filename",
	  "filename|courier|dovecot|auto", 0,
	  "The POP3 UIDL of a message: filename (the file name's stable "
	  "part), courier (Courier pop3d's), dovecot (%08Xu%08Xv of the IMAP "
	  "UID and UIDVALIDITY) or auto (per folder, as the server whose "
	  "file the folder holds)." },
	{ "schema", KT_ENUM, "postfix-howto",
	  "postfix-howto|exim-howto|postfixadmin", 0,
	  "The database layout the query_* defaults are written for "
	  "(docs/migration.md): postfix-howto (the Postfix + Courier + MySQL "
	  "howto's transport, virtual and users tables), exim-howto (the "
	  "Exim + Courier + MySQL howto's users and domains tables) or "
	  "postfixadmin (PostfixAdmin's domain, mailbox, alias and "
	  "alias_domain tables, maildir relative to mail_root); a query_* "
	  "key set in the file or with -o wins over the preset." },
	{ "query_domain", KT_STRING,
	  "SELECT transport FROM transport WHERE domain = :domain", NULL, 0,
	  "SQL: the transport of a hosted domain (:domain)." },
	{ "query_alias", KT_STRING,
	  "SELECT goto FROM virtual WHERE address = :address", NULL, 0,
	  "SQL: the comma-separated targets of an alias (:address)." },
	{ "query_user", KT_STRING, DEFAULT_QUERY_USER, NULL, 0,
	  "SQL: a mailbox by address: id, address, crypt, name, uid, gid, "
	  "home, maildir (:address)." },
	{ "query_login", KT_STRING,
	  "SELECT id, address, crypt, name, uid, gid, home, maildir FROM users "
	  "WHERE (id = :login OR address = :login) AND imapok = 1 "
	  "AND bool1 = 1 AND bool2 = 1", NULL, 0,
	  "SQL: the account a login name (:login) may log in as; the columns "
	  "of query_user, then optionally a column named clear (or the 10th) "
	  "with the cleartext password, which turns on CRAM-MD5." },
	{ "query_quota", KT_STRING,
	  "SELECT quota FROM users WHERE address = :address", NULL, 0,
	  "SQL: a user's quota in bytes or as a Maildir++ string (:address); "
	  "empty: no quotas." },
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/*
 * Schema presets: the defaults of the query_* keys for the layouts other
 * than postfix-howto (whose defaults are the key table's, unchanged).
 * Each query binds :address, :local, :domain (or :login) like any
 * configured one; the columns come back in the order dir.h describes.
 */
struct preset_query {
	const char *schema, *key, *sql;
};

/* The mailbox row of PostfixAdmin for :address, also through an alias
 * domain (alias_domain maps the alias's domain to a target domain that
 * holds the mailboxes). */
#define PFA_MAILBOX_WHERE \
	"WHERE active = 1 AND (username = :address OR username = " \
	"(SELECT CONCAT(:local, '@', target_domain) FROM alias_domain " \
	"WHERE alias_domain = :domain AND active = 1))"
#define PFA_ACTIVE_DOMAIN \
	"domain IN (SELECT domain FROM domain WHERE active = 1)"

static const struct preset_query presets[] = {
	/* Exim howto: users(id, crypt, clear, name, uid, gid, home,
	 * maildir, quota), the id being the full address; domains(domain)
	 * lists the hosted domains; no alias table (a redirect is a users
	 * row whose maildir holds addresses); quota in Courier's form. */
	{ "exim-howto", "query_domain",
	  "SELECT 'virtual:' FROM domains WHERE domain = :domain" },
	{ "exim-howto", "query_alias", "" },
	{ "exim-howto", "query_user",
	  "SELECT id, id, crypt, name, uid, gid, home, maildir FROM users "
	  "WHERE id = :address" },
	{ "exim-howto", "query_login",
	  "SELECT id, id, crypt, name, uid, gid, home, maildir, clear "
	  "FROM users WHERE id = :login" },
	{ "exim-howto", "query_quota",
	  "SELECT quota FROM users WHERE id = :address" },
	/* PostfixAdmin: domain(domain, transport, backupmx, active),
	 * mailbox(username, password, name, maildir, quota, local_part,
	 * domain, active), alias(address, goto, domain, active),
	 * alias_domain(alias_domain, target_domain, active); quota in
	 * bytes, 0 = none. A backup-MX domain is not hosted here. */
	{ "postfixadmin", "query_domain",
	  "SELECT transport FROM domain WHERE domain = :domain "
	  "AND active = 1 AND backupmx = 0" },
	{ "postfixadmin", "query_alias",
	  "SELECT goto FROM (SELECT goto, 1 AS o FROM alias "
	  "WHERE address = :address AND active = 1 "
	  "UNION ALL SELECT a.goto, 2 AS o FROM alias a, alias_domain d "
	  "WHERE d.alias_domain = :domain AND d.active = 1 "
	  "AND a.address = CONCAT(:local, '@', d.target_domain) "
	  "AND a.active = 1) x ORDER BY o LIMIT 1" },
	{ "postfixadmin", "query_user",
	  "SELECT username, username, password, name, NULL, NULL, '', "
	  "maildir FROM mailbox " PFA_MAILBOX_WHERE },
	{ "postfixadmin", "query_login",
	  "SELECT username, username, password, name, NULL, NULL, '', "
	  "maildir FROM mailbox WHERE username = :login AND active = 1 "
	  "AND " PFA_ACTIVE_DOMAIN },
	{ "postfixadmin", "query_quota",
	  "SELECT quota FROM mailbox " PFA_MAILBOX_WHERE },
};

struct config {
	char *values[NKEYS];	/* NULL = default */
	char *path;
	str_t *problems;	/* config_check_file: go on, report here */
	unsigned nproblems;
};

/* Keys that are no more (config.h, struct config_retired). None so far:
 * every key since the first release keeps its name and meaning. A key
 * renamed or removed, or whose values change meaning (it then gets a new
 * name), is added here and never taken out, so that a file written for
 * any earlier release is refused with what to write instead. */
static const struct config_retired retired_keys[] = {
	{ NULL, NULL, NULL },
};

static const struct config_retired *retired_extra;
static size_t nretired_extra;

void
config_retired_extra(const struct config_retired *extra, size_t n)
{
	retired_extra = extra;
	nretired_extra = extra != NULL ? n : 0;
}

size_t
config_retired_count(void)
{
	size_t n = 0;

	while (retired_keys[n].name != NULL)
		n++;
	return n;
}

const struct config_retired *
config_retired_get(size_t i)
{
	return i < config_retired_count() ? &retired_keys[i] : NULL;
}

const struct config_retired *
config_retired_find(const char *name)
{
	for (size_t i = 0; retired_keys[i].name != NULL; i++)
		if (strcmp(retired_keys[i].name, name) == 0)
			return &retired_keys[i];
	for (size_t i = 0; i < nretired_extra; i++)
		if (strcmp(retired_extra[i].name, name) == 0)
			return &retired_extra[i];
	return NULL;
}

/* A value may hold a secret (the database URL's password): it is wiped
 * before its memory goes back to the allocator. */
static void
wipe_free(char *p)
{
	if (p != NULL) {
		explicit_bzero(p, strlen(p));
		free(p);
	}
}

const char *
config_locate(const char *explicit_path)
{
	const char *env;

	if (explicit_path != NULL)
		return explicit_path;
	env = getenv("PETREL_CONF");
	if (env != NULL && *env != '\0')
		return env;
	if (access("petrel.conf", F_OK) == 0)
		return "petrel.conf";
	if (access(ETC_DIR "/petrel.conf", F_OK) == 0)
		return ETC_DIR "/petrel.conf";
	return NULL;
}

struct config *
config_new(void)
{
	return xmalloc(sizeof(struct config));
}

void
config_free(struct config **cfgp)
{
	struct config *cfg = *cfgp;

	if (cfg == NULL)
		return;
	for (size_t i = 0; i < NKEYS; i++)
		wipe_free(cfg->values[i]);
	free(cfg->path);
	free(cfg);
	*cfgp = NULL;
}

static int
key_index(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* A choice written "" (two double quotes) is the empty value. */
static bool
enum_allows(const char *choices, const char *value)
{
	size_t vlen = strlen(value);
	const char *p = choices;

	while (*p != '\0') {
		const char *bar = strchr(p, '|');
		size_t n = bar ? (size_t)(bar - p) : strlen(p);

		if (n == vlen && strncmp(p, value, n) == 0)
			return true;
		if (vlen == 0 && n == 2 && strncmp(p, "\"\"", 2) == 0)
			return true;
		p += n + (bar ? 1 : 0);
	}
	return false;
}

/* Check value for key i; NULL if fine, else a static description. */
static const char *
validate(size_t i, const char *value, char *buf, size_t bufsize)
{
	const struct key_def *k = &keys[i];
	enum log_level lvl;

	switch (k->type) {
	case KT_STRING:
		return NULL;
	case KT_UINT: {
		char *end;
		unsigned long long v;

		if (value[0] == '\0' || !isdigit((unsigned char)value[0]))
			goto bad_number;
		errno = 0;
		v = strtoull(value, &end, 10);
		if (errno != 0 || *end != '\0')
			goto bad_number;
		if (v > k->max) {
			snprintf(buf, bufsize, "%s must be at most %llu",
			    k->name, (unsigned long long)k->max);
			return buf;
		}
		return NULL;
	bad_number:
		snprintf(buf, bufsize, "%s must be a non-negative integer",
		    k->name);
		return buf;
	}
	case KT_ENUM:
		if (enum_allows(k->choices, value))
			return NULL;
		snprintf(buf, bufsize, "%s must be one of %s", k->name,
		    k->choices);
		return buf;
	case KT_LISTEN: {
		struct config_listen *l = NULL;
		size_t n = 0;
		char *err = NULL;

		if (config_parse_listen(value, &l, &n, &err) == 0) {
			config_listen_free(&l, n);
			return NULL;
		}
		snprintf(buf, bufsize, "%s: %s", k->name, err);
		free(err);
		return buf;
	}
	case KT_PORTS:
		if (config_port_list(value, (size_t)k->max, NULL) == 0)
			return NULL;
		snprintf(buf, bufsize, "%s must be %llu ports from 1 to "
		    "65535, comma-separated (got '%.60s')", k->name,
		    (unsigned long long)k->max, value);
		return buf;
	case KT_LEVEL:
		if (log_parse_level(value, &lvl) == 0)
			return NULL;
		snprintf(buf, bufsize,
		    "%s must be one of error|warning|info|debug", k->name);
		return buf;
	}
	return NULL;
}

static int
set_value(struct config *cfg, const char *where, const char *key,
    const char *value, char **error_r)
{
	char buf[256];
	const char *why;
	int i = key_index(key);

	if (i < 0) {
		const struct config_retired *r = config_retired_find(key);

		if (r != NULL && r->to != NULL)
			*error_r = xasprintf("%s%s was renamed to %s; write "
			    "%s = %s", where, key, r->to, r->to, value);
		else if (r != NULL)
			*error_r = xasprintf("%s%s was removed: %s", where,
			    key, r->why);
		else
			*error_r = xasprintf("%sunknown configuration key "
			    "'%s'", where, key);
		return -1;
	}
	/* an enum's "" as the SPEC writes it: the empty value */
	if (keys[i].type == KT_ENUM && strcmp(value, "\"\"") == 0)
		value = "";
	why = validate((size_t)i, value, buf, sizeof(buf));
	if (why != NULL) {
		*error_r = xasprintf("%s%s", where, why);
		return -1;
	}
	wipe_free(cfg->values[i]);
	cfg->values[i] = xstrdup(value);
	return 0;
}

int
config_set(struct config *cfg, const char *key, const char *value,
    char **error_r)
{
	return set_value(cfg, "", key, value, error_r);
}

static bool
key_syntax_ok(const char *key)
{
	if (*key == '\0')
		return false;
	for (; *key != '\0'; key++)
		if (!isalnum((unsigned char)*key) && *key != '_')
			return false;
	return true;
}

/* One logical line "key = value" that started on line lineno. */
static int
config_line(struct config *cfg, const char *name, unsigned lineno,
    char *line, char **error_r)
{
	char where[300], *eq, *key, *value;

	snprintf(where, sizeof(where), "%s:%u: ", name, lineno);
	key = str_trim(line);
	eq = strchr(key, '=');
	if (eq == NULL) {
		*error_r = xasprintf("%sexpected 'key = value', got '%s'",
		    where, key);
		return -1;
	}
	*eq = '\0';
	value = str_trim(eq + 1);
	key = str_trim(key);
	if (!key_syntax_ok(key)) {
		*error_r = xasprintf("%sbad key name '%s'", where, key);
		return -1;
	}
	return set_value(cfg, where, key, value, error_r);
}

/* config_line; under config_check_file a refused line is reported and
 * the file read on. */
static int
config_line_checked(struct config *cfg, const char *name, unsigned lineno,
    char *line, char **error_r)
{
	char *err = NULL;

	if (config_line(cfg, name, lineno, line, &err) == 0)
		return 0;
	if (cfg->problems == NULL) {
		*error_r = err;
		return -1;
	}
	str_append(cfg->problems, err);
	str_append(cfg->problems, "\n");
	cfg->nproblems++;
	free(err);
	return 0;
}

/* Like Postfix main.cf: '#' starts a comment line, and a line that starts
 * with white space continues the previous one. */
int
config_load_text(struct config *cfg, const char *name, const char *text,
    size_t len, char **error_r)
{
	str_t logical = STR_INIT;
	unsigned lineno = 0, start = 0;
	size_t pos = 0;
	int r = 0;

	/* reserved whole: never reallocated, so a line with a password
	 * leaves no copy behind (wiped below) */
	str_reserve(&logical, CONFIG_LINE_MAX + 2);

	while (pos < len && r == 0) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t linelen = nl ? (size_t)(nl - (text + pos)) : len - pos;
		char *line, *t;

		lineno++;
		if (linelen > CONFIG_LINE_MAX) {
			*error_r = xasprintf("%s:%u: line too long (more than "
			    "%d bytes)", name, lineno, CONFIG_LINE_MAX);
			r = -1;
			break;
		}
		if (memchr(text + pos, '\0', linelen) != NULL) {
			*error_r = xasprintf("%s:%u: NUL byte in line", name,
			    lineno);
			r = -1;
			break;
		}
		line = xstrndup(text + pos, (size_t)linelen);
		pos += linelen + (nl ? 1 : 0);
		t = str_trim(line);
		if (*t == '\0' || *t == '#') {
			wipe_free(line);
			continue;
		}
		if ((line[0] == ' ' || line[0] == '\t') && logical.len > 0) {
			if (logical.len + strlen(t) > CONFIG_LINE_MAX) {
				*error_r = xasprintf("%s:%u: line too long",
				    name, lineno);
				r = -1;
			} else {
				str_append_c(&logical, ' ');
				str_append(&logical, t);
			}
			wipe_free(line);
			continue;
		}
		if (logical.len > 0)
			r = config_line_checked(cfg, name, start,
			    logical.data, error_r);
		str_truncate(&logical, 0);
		str_append(&logical, t);
		start = lineno;
		wipe_free(line);
	}
	if (r == 0 && logical.len > 0)
		r = config_line_checked(cfg, name, start, logical.data,
		    error_r);
	explicit_bzero(logical.data, logical.cap);
	str_free(&logical);
	return r;
}

int
config_load_file(struct config *cfg, const char *path, char **error_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		*error_r = xasprintf("cannot open configuration file %s: %s",
		    path, strerror(errno));
		return -1;
	}
	return config_load_fd(cfg, fd, path, error_r);
}

int
config_check_file(struct config *cfg, const char *path, char **problems_r,
    char **error_r)
{
	str_t problems = STR_INIT;
	int r;

	str_append(&problems, "");
	cfg->problems = &problems;
	cfg->nproblems = 0;
	r = config_load_file(cfg, path, error_r);
	cfg->problems = NULL;
	if (r < 0) {
		str_free(&problems);
		return -1;
	}
	*problems_r = str_steal(&problems);
	return (int)cfg->nproblems;
}

int
config_load_fd(struct config *cfg, int fd, const char *path,
    char **error_r)
{
	struct stat st;
	size_t cap, len = 0;
	char *text;
	ssize_t n;
	int r;

	/* read(2) into one buffer of our own, wiped after parsing: the file
	 * may hold the database password, and stdio's buffer or a grown
	 * string would leave copies in freed memory */
	if (fstat(fd, &st) < 0) {
		*error_r = xasprintf("cannot read configuration file %s: %s",
		    path, strerror(errno));
		close(fd);
		return -1;
	}
	cap = (st.st_size > 0 ? (size_t)st.st_size : 0) + 4096;
	text = xmalloc(cap + 1);
	while ((n = read(fd, text + len, cap - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = xasprintf("cannot read configuration file "
			    "%s: %s", path, strerror(errno));
			close(fd);
			wipe_free(text);
			return -1;
		}
		len += (size_t)n;
		if (len == cap) {
			/* grew while read: bigger buffer, old one wiped */
			char *bigger = xmalloc(cap * 2 + 1);

			memcpy(bigger, text, len);
			explicit_bzero(text, cap);
			free(text);
			text = bigger;
			cap *= 2;
		}
	}
	close(fd);
	text[len] = '\0';
	r = config_load_text(cfg, path, text, len, error_r);
	explicit_bzero(text, cap);
	free(text);
	if (r == 0) {
		free(cfg->path);
		cfg->path = xstrdup(path);
	}
	return r;
}

int
config_override(struct config *cfg, const char *assignment, char **error_r)
{
	const char *eq = strchr(assignment, '=');
	char *key, *value;
	int r;

	if (eq == NULL) {
		*error_r = xasprintf("-o %s: expected key=value", assignment);
		return -1;
	}
	key = xstrndup(assignment, (size_t)(eq - assignment));
	value = xstrdup(eq + 1);
	r = set_value(cfg, "-o: ", str_trim(key), str_trim(value), error_r);
	free(key);
	wipe_free(value);
	return r;
}

const char *
config_get(const struct config *cfg, const char *key)
{
	int i = key_index(key);

	if (i < 0)
		panic("config_get: undeclared key %s", key);
	if (cfg != NULL && cfg->values[i] != NULL)
		return cfg->values[i];
	if (strncmp(key, "query_", 6) == 0 && cfg != NULL) {
		const char *schema = config_get(cfg, "schema");

		for (size_t p = 0; p < sizeof(presets) / sizeof(presets[0]);
		    p++)
			if (strcmp(presets[p].schema, schema) == 0 &&
			    strcmp(presets[p].key, key) == 0)
				return presets[p].sql;
	}
	return keys[i].def;
}

const char *
config_preset(const char *schema, const char *key)
{
	int i = key_index(key);

	if (i < 0)
		return NULL;
	for (size_t p = 0; p < sizeof(presets) / sizeof(presets[0]); p++)
		if (strcmp(presets[p].schema, schema) == 0 &&
		    strcmp(presets[p].key, key) == 0)
			return presets[p].sql;
	return keys[i].def;
}

uint64_t
config_get_uint(const struct config *cfg, const char *key)
{
	return strtoull(config_get(cfg, key), NULL, 10);
}

int
config_port_list(const char *value, size_t n, unsigned *ports)
{
	const char *p = value;

	for (size_t i = 0; i < n; i++) {
		unsigned long v = 0;
		size_t digits = 0;

		while (*p == ' ')
			p++;
		while (isdigit((unsigned char)*p) && digits < 6) {
			v = v * 10 + (unsigned long)(*p++ - '0');
			digits++;
		}
		while (*p == ' ')
			p++;
		if (digits == 0 || v == 0 || v > 65535)
			return -1;
		if (ports != NULL)
			ports[i] = (unsigned)v;
		if (i + 1 < n && *p++ != ',')
			return -1;
	}
	return *p == '\0' ? 0 : -1;
}

unsigned
config_get_port(const struct config *cfg, const char *key, size_t idx)
{
	unsigned ports[8];
	int i = key_index(key);

	if (i < 0 || keys[i].type != KT_PORTS || idx >= keys[i].max ||
	    keys[i].max > 8 ||
	    config_port_list(config_get(cfg, key), keys[i].max, ports) < 0)
		return 0;
	return ports[idx];
}

bool
config_is_set(const struct config *cfg, const char *key)
{
	int i = key_index(key);

	return i >= 0 && cfg->values[i] != NULL;
}

const char *
config_path(const struct config *cfg)
{
	return cfg->path;
}

size_t
config_key_count(void)
{
	return NKEYS;
}

const char *
config_key_name(size_t i)
{
	return i < NKEYS ? keys[i].name : NULL;
}

int
config_key_find(const char *name)
{
	return key_index(name);
}

const char *
config_key_default(size_t i)
{
	return i < NKEYS ? keys[i].def : NULL;
}

const char *
config_key_help(size_t i)
{
	return i < NKEYS ? keys[i].help : NULL;
}

const char *
config_key_init(size_t i)
{
	return i < NKEYS ? keys[i].init : NULL;
}

const char *
config_key_syntax(size_t i, char *buf, size_t bufsize)
{
	if (i >= NKEYS)
		return NULL;
	switch (keys[i].type) {
	case KT_STRING:
		return "text";
	case KT_UINT:
		snprintf(buf, bufsize, "an integer from 0 to %llu",
		    (unsigned long long)keys[i].max);
		return buf;
	case KT_ENUM:
		snprintf(buf, bufsize, "one of %s", keys[i].choices);
		return buf;
	case KT_LEVEL:
		return "one of error|warning|info|debug";
	case KT_LISTEN:
		return "host:port[,host:port...] ([::1]:port for IPv6; "
		    "empty: none)";
	case KT_PORTS:
		snprintf(buf, bufsize, "%llu ports from 1 to 65535, "
		    "comma-separated", (unsigned long long)keys[i].max);
		return buf;
	}
	return "text";
}

int
config_parse_listen(const char *value, struct config_listen **list_r,
    size_t *n_r, char **error_r)
{
	char *copy = xstrdup(value), *save = NULL, *item;
	struct config_listen *list = NULL;
	size_t n = 0;

	for (item = strtok_r(copy, ",", &save); item != NULL;
	    item = strtok_r(NULL, ",", &save)) {
		char *e = str_trim(item), *colon, *host, *end;
		unsigned long port;

		if (*e == '\0')
			continue;
		if (*e == '[') {
			char *rb = strchr(e, ']');

			if (rb == NULL || rb[1] != ':')
				goto bad;
			host = xstrndup(e + 1, (size_t)(rb - e - 1));
			colon = rb + 1;
		} else {
			colon = strrchr(e, ':');
			if (colon == NULL || strchr(e, ':') != colon)
				goto bad;
			host = xstrndup(e, (size_t)(colon - e));
		}
		errno = 0;
		port = strtoul(colon + 1, &end, 10);
		if (colon[1] == '\0' || *end != '\0' || errno != 0 ||
		    port == 0 || port > 65535 || !isdigit((unsigned char)colon[1])) {
			free(host);
			goto bad;
		}
		list = xrealloc(list, (n + 1) * sizeof(*list));
		list[n].host = host;
		list[n].port = (unsigned)port;
		n++;
		continue;
bad:
		*error_r = xasprintf("'%s' is not host:port (port 1-65535)", e);
		free(copy);
		config_listen_free(&list, n);
		return -1;
	}
	free(copy);
	*list_r = list;
	*n_r = n;
	return 0;
}

void
config_listen_free(struct config_listen **list, size_t n)
{
	if (*list == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free((*list)[i].host);
	free(*list);
	*list = NULL;
}
