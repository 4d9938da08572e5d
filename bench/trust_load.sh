#!/bin/sh
# bench/trust_load.sh: inbound SMTP with the sender checks on (SPF, DKIM,
# DMARC, records from a local DNS server) and with rspamd as a milter,
# petrel against Postfix with the same checks, same run (issue "trust",
# its load point: with DNS answering from cache, petrel's throughput with
# checks on stays within 25% of the no-checks figure).
#
#   bench/trust_load.sh                           # 2,000 x ~2 KiB, 20 sessions, 1 round
#   MESSAGES=500 bench/trust_load.sh              # quicker
#   PETREL=/path/to/release/petrel ROUNDS=3 bench/trust_load.sh
#
# One run, in private network and mount namespaces (unshare -m -n: a lo of
# its own, with the client's address 198.51.100.7 added; petrel does not
# check SPF and DMARC for clients on 127.0.0.1 and ::1):
#  - Unbound (-d, own config, nothing forwarded: every name outside the
#    test zone is NXDOMAIN) on 127.0.0.1:53, publishing for the sending
#    domain trust.mxtest an SPF record allowing 198.51.100.7 (-all), a
#    2048-bit RSA DKIM key (selector "bench") and a DMARC record p=reject.
#    Port 53, and /etc/resolv.conf bind-mounted (in the namespace only) to
#    a file naming it, because OpenDMARC and policyd-spf (dnspython) use
#    the system's resolver configuration;
#  - one message, DKIM-signed once beforehand with dkimpy (python3-dkim;
#    signing is not measured), From and MAIL FROM in trust.mxtest, sent
#    MESSAGES times by smtp-source -F (the same generator as compare.sh's
#    SMTP rows) in SESSIONS sessions from 198.51.100.7 to
#    rcpt@example.test;
#  - rspamd (the package's binary, own config dir as
#    tests/integration/test_milter.py starts it: its proxy worker in milter
#    mode scanning itself on loopback, no controller, no redis; its DNS is
#    the local Unbound, so it runs its own SPF/DKIM/DMARC modules too);
#  - petrel (`petrel init` instance, dns_resolver = the local Unbound) in
#    four configurations, restarted for each: none (spf_policy=ignore,
#    dkim_verify=no, dmarc_policy=ignore, arc=off), checks (the values
#    `petrel init` writes: spf_policy=mark, dkim_verify=yes,
#    dmarc_policy=enforce, arc=seal), checks+rspamd (the same and
#    milters=inet:127.0.0.1:RSPAMD), rspamd (none's settings and the
#    milter); it listens on 198.51.100.7;
#  - Postfix (Debian's package, own instance `postfix -c DIR`, virtual(8)
#    into a Maildir) with one smtpd per configuration on its own port:
#    none; checks = SPF by postfix-policyd-spf-python (a spawn service,
#    check_policy_service at RCPT; its Received-SPF header feeds
#    OpenDMARC) + the OpenDKIM milter (mode v) + the OpenDMARC milter
#    (RejectFailures true), both foreground on loopback ports with their
#    own config files (OpenDKIM's DNS: Nameservers 127.0.0.1, the local
#    Unbound), neither ignoring any client; checks+rspamd = the
#    same with the same rspamd last; rspamd = only the rspamd milter.
# Each server and configuration first gets WARMUP messages (DNS answers,
# then from cache; rspamd and the milters started), then the timed
# MESSAGES; the clock stops when every message is a file in the
# recipient's Maildir (new/). A run counts only if every message sent was
# delivered, and the last delivered message of each configuration carries
# the checks' header fields (petrel's Authentication-Results with
# spf=pass, dkim=pass, dmarc=pass; Postfix's Received-SPF: Pass and the
# milters' dkim=pass and dmarc=pass; rspamd's X-Spamd-Result). With checks
# on, a message whose body was altered after signing (DKIM fails, MAIL FROM
# in another domain: DMARC fails, p=reject) must be refused by both.
#
# Needs, as root: postfix, unbound, rspamd, opendkim, opendmarc,
# postfix-policyd-spf-python, python3-dkim, openssl, util-linux (unshare),
# iproute2;
# bench/compare.sh installs them; this script only says what is missing.
#
# Env: PETREL (build/petrel; better a release build, as compare.sh makes in build-bench/),
#      MESSAGES (2000), SESSIONS (20), WARMUP (50), ROUNDS (1: medians over
#      rounds, which alternate which server goes first), CONFIGS (all four:
#      "none checks checks+rspamd rspamd"; the figures need none), TIMEOUT
#      (seconds per timed run, 600), BENCH_DIR (/var/tmp), KEEP (1: keep
#      the directory).
# Output: "RESULT server=S config=C round=R seconds=T msgs_per_s=M" per
# run, then "RESULT rate ...", "RESULT cost ..." (ms per message of the
# checks: 1/rate(config) - 1/rate(none)), "RESULT ratio ...", "RESULT
# target ..." (petrel checks/none, the issue's >= 0.75) and "RESULT median
# config=C ..." (compare.sh's rows) lines.
set -eu
# shellcheck disable=SC2034 # read by bench/lib.sh
bench_name=trust_load
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
MESSAGES=${MESSAGES:-2000}
SESSIONS=${SESSIONS:-20}
WARMUP=${WARMUP:-50}
ROUNDS=${ROUNDS:-1}
TIMEOUT=${TIMEOUT:-600}
SMTP_SOURCE=/usr/sbin/smtp-source
SDOMAIN=trust.mxtest
CONFIGS=${CONFIGS:-none checks checks+rspamd rspamd}

[ "$(id -u)" -eq 0 ] || die "must run as root (Postfix, unshare -m -n)"
missing=
for p in postfix unbound rspamd opendkim opendmarc postfix-policyd-spf-python python3-dkim \
	openssl util-linux iproute2; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] || die "missing Debian packages:$missing (apt-get install$missing; bench/compare.sh installs them)"
[ -x "$SMTP_SOURCE" ] || die "no $SMTP_SOURCE (package postfix)"
case $MESSAGES$SESSIONS$WARMUP$ROUNDS in *[!0-9]*) die "MESSAGES, SESSIONS, WARMUP, ROUNDS are numbers" ;; esac

# The rest runs in private network and mount namespaces: the servers see
# the client at CLIENT (on this namespace's lo only; petrel skips SPF and
# DMARC for clients on 127.0.0.1 and ::1), the DNS server has port 53, and
# /etc/resolv.conf names it (OpenDMARC and policyd-spf use the system's
# resolver configuration); nothing outside these namespaces sees either.
CLIENT=198.51.100.7
if [ "${TRUST_LOAD_NS:-}" != 1 ]; then
	self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
	TRUST_LOAD_NS=1 exec unshare -m -n --propagation private sh "$self"
fi
ip link set lo up && ip addr add "$CLIENT/32" dev lo || die "cannot set up lo in the private network namespace"

DNS_PID='' RSPAMD_PID='' DKIM_PID='' DMARC_PID='' PF=''
bench_extra_cleanup='umount /etc/resolv.conf 2>/dev/null; [ -n "$PF" ] && postfix -c "$PF/etc" stop >/dev/null 2>&1; stop_pid "$RSPAMD_PID" rspamd; stop_pid "$DKIM_PID" opendkim; stop_pid "$DMARC_PID" opendmarc; stop_pid "$DNS_PID" unbound'
bench_instance trust_load
printf 'bench-password\n' | "$PETREL" -c "$CONF" user add "rcpt@$DOMAIN" --password-stdin \
	>>"$BDIR/init.log" 2>&1 || die "petrel user add failed"
PMAIL=$ROOT/$DOMAIN/rcpt
[ -d "$PMAIL/new" ] || die "no Maildir at $PMAIL"

# ---------------------------------------------------------------- key, message
mkdir -p "$BDIR/dns"
openssl genrsa -out "$BDIR/dkim.key" 2048 2>/dev/null || die "openssl genrsa failed"
"$PY" - "$BDIR" "$SDOMAIN" "$DOMAIN" <<'PYEOF' || die "signing the message failed"
import base64, subprocess, sys, dkim
d, sdom, rdom = sys.argv[1:4]
key = open(d + "/dkim.key", "rb").read()
der = subprocess.run(["openssl", "pkey", "-in", d + "/dkim.key", "-pubout", "-outform", "DER"],
                     check=True, capture_output=True).stdout
p = base64.b64encode(der).decode()
rec = "v=DKIM1; k=rsa; p=" + p
chunks = " ".join('"%s"' % rec[i:i + 200] for i in range(0, len(rec), 200))
with open(d + "/dkim.txt", "w") as f:
    f.write(chunks + "\n")
body = "".join("Line %02d of the trust benchmark's message, about two kilobytes in all.\r\n" % i
               for i in range(28))
msg = ("From: Sender <sender@%s>\r\nTo: <rcpt@%s>\r\nSubject: trust bench\r\n"
       "Date: Mon, 07 Dec 2026 05:00:00 +0000\r\nMessage-ID: <trust-bench@%s>\r\n"
       "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n%s"
       % (sdom, rdom, sdom, body)).encode()
sig = dkim.sign(msg, b"bench", sdom.encode(), key,
                include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
signed = sig + msg
assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: rec.encode())
# smtp-source -F sends each line with CRLF
open(d + "/msg.eml", "wb").write(signed.replace(b"\r\n", b"\n"))
# the same message altered after signing: DKIM fails (used with a MAIL FROM
# outside the domain, so SPF does not align either: DMARC fails, p=reject)
open(d + "/bad.eml", "wb").write(signed + b"An added line.\r\n")
PYEOF

# ---------------------------------------------------------------- DNS
DNS_ADDR=127.0.0.1
{
	echo "server:"
	echo "    interface: $DNS_ADDR"
	echo "    port: 53"
	echo "    do-daemonize: no"
	echo "    use-syslog: no"
	echo "    logfile: \"\""
	echo "    username: \"\""
	echo "    chroot: \"\""
	echo "    directory: \"$BDIR/dns\""
	echo "    pidfile: \"\""
	echo "    do-ip6: no"
	echo "    access-control: 127.0.0.0/8 allow"
	echo "    module-config: \"iterator\""
	echo "    verbosity: 0"
	echo "    num-threads: 1"
	echo "    local-zone: \".\" static"
	echo "    local-zone: \"$SDOMAIN.\" static"
	echo "    local-data: '$SDOMAIN. 3600 IN TXT \"v=spf1 ip4:$CLIENT -all\"'"
	echo "    local-data: '_dmarc.$SDOMAIN. 3600 IN TXT \"v=DMARC1; p=reject\"'"
	echo "    local-data: 'bench._domainkey.$SDOMAIN. 3600 IN TXT $(cat "$BDIR/dkim.txt")'"
	echo "    local-data: '$SDOMAIN. 3600 IN A 127.0.0.1'"
	echo "remote-control:"
	echo "    control-enable: no"
} >"$BDIR/dns/unbound.conf"
unbound-checkconf "$BDIR/dns/unbound.conf" >"$BDIR/dns/check.log" 2>&1 ||
	{ cat "$BDIR/dns/check.log" >&2; die "unbound-checkconf failed"; }
unbound -d -c "$BDIR/dns/unbound.conf" >"$BDIR/dns/unbound.log" 2>&1 &
DNS_PID=$!
printf 'nameserver %s\noptions timeout:2 attempts:2\n' "$DNS_ADDR" >"$BDIR/resolv.conf"
chmod 644 "$BDIR/resolv.conf"
mount --bind "$BDIR/resolv.conf" /etc/resolv.conf || die "cannot bind-mount $BDIR/resolv.conf on /etc/resolv.conf"
"$PY" - "$DNS_ADDR" "$SDOMAIN" <<'PYEOF' || { cat "$BDIR/dns/unbound.log" >&2; die "the local DNS does not answer"; }
import sys, time
import dns.resolver
r = dns.resolver.Resolver(configure=False)
r.nameservers = [sys.argv[1]]
deadline = time.monotonic() + 20
while True:
    try:
        txt = b"".join(r.resolve("bench._domainkey." + sys.argv[2], "TXT")[0].strings)
        assert txt.startswith(b"v=DKIM1;"), txt
        dm = b"".join(r.resolve("_dmarc." + sys.argv[2], "TXT")[0].strings)
        assert dm == b"v=DMARC1; p=reject", dm
        break
    except (dns.exception.DNSException, OSError):
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
PYEOF

# ---------------------------------------------------------------- rspamd
RDIR=$BDIR/rspamd
RPORT=$(free_port)
mkdir -p "$RDIR/local.d"
cat >"$RDIR/rspamd.conf" <<EOF
.include "\$CONFDIR/common.conf"
options {
    disable_hyperscan = true;
    url_tld = "$RDIR/tld.dat";
    dns { nameserver = ["$DNS_ADDR:53"]; timeout = 1s; retransmits = 2; }
    pidfile = "\$RUNDIR/rspamd.pid";
    .include "\$CONFDIR/options.inc"
}
logging { type = "file"; filename = "\$LOGDIR/rspamd.log"; level = "warning"; }
worker "rspamd_proxy" {
    bind_socket = "127.0.0.1:$RPORT";
    milter = yes;
    timeout = 60s;
    count = $(nproc);
    upstream "local" { default = yes; self_scan = yes; }
}
EOF
cat >"$RDIR/local.d/milter_headers.conf" <<'EOF'
use = ["x-spamd-result", "x-spam-status", "authentication-results"];
skip_local = false;
skip_authenticated = false;
EOF
printf 'test\nmxtest\ncom\norg\nnet\n' >"$RDIR/tld.dat"
chown -R _rspamd:_rspamd "$RDIR"
set -- -f -c "$RDIR/rspamd.conf" -u _rspamd -g _rspamd
for v in LOCAL_CONFDIR RUNDIR LOGDIR DBDIR; do set -- "$@" "--var=$v=$RDIR"; done
rspamd "$@" >/dev/null 2>"$RDIR/stderr.log" &
RSPAMD_PID=$!

# ---------------------------------------------------------------- OpenDKIM, OpenDMARC
KPORT=$(free_port)
MPORT=$(free_port)
AUTHSERV=incumbent.bench.invalid
mkdir -p "$BDIR/milters"
echo 192.0.2.1 >"$BDIR/milters/nobody"   # instead of the default 127.0.0.1
cat >"$BDIR/milters/opendkim.conf" <<EOF
Syslog no
Mode v
Socket inet:$KPORT@127.0.0.1
UserID opendkim:opendkim
InternalHosts $BDIR/milters/nobody
AuthservID $AUTHSERV
AlwaysAddARHeader yes
Nameservers $DNS_ADDR
EOF
cat >"$BDIR/milters/opendmarc.conf" <<EOF
Syslog false
Socket inet:$MPORT@127.0.0.1
UserID opendmarc:opendmarc
IgnoreHosts $BDIR/milters/nobody
AuthservID $AUTHSERV
TrustedAuthservIDs $AUTHSERV
RejectFailures true
FailureReports false
SPFSelfValidate false
EOF
chmod 755 "$BDIR/milters"
chmod 644 "$BDIR/milters"/*
opendkim -f -x "$BDIR/milters/opendkim.conf" >"$BDIR/milters/opendkim.log" 2>&1 &
DKIM_PID=$!
opendmarc -f -c "$BDIR/milters/opendmarc.conf" >"$BDIR/milters/opendmarc.log" 2>&1 &
DMARC_PID=$!

# ---------------------------------------------------------------- Postfix
PF=$BDIR/postfix
mkdir -p "$PF/etc" "$PF/queue" "$PF/data" "$PF/mail"
chown postfix "$PF/data"
chown mail:mail "$PF/mail"
FPORT_none=$(free_port) FPORT_checks=$(free_port) FPORT_checks_rspamd=$(free_port) FPORT_rspamd=$(free_port)
{
	echo "compatibility_level = 3.6"
	echo "queue_directory = $PF/queue"
	echo "data_directory = $PF/data"
	echo "meta_directory = /etc/postfix"
	echo "mail_owner = postfix"
	echo "setgid_group = postdrop"
	echo "maillog_file = $PF/maillog"
	echo "myhostname = $AUTHSERV"
	echo "mydestination ="
	echo "inet_interfaces = 127.0.0.1, $CLIENT"
	echo "inet_protocols = ipv4"
	echo "mynetworks = 127.0.0.0/8"
	echo "alias_maps ="
	echo "local_recipient_maps ="
	echo "smtpd_relay_restrictions = reject_unauth_destination"
	echo "smtpd_recipient_restrictions ="
	echo "virtual_mailbox_domains = $DOMAIN"
	echo "virtual_mailbox_maps = texthash:$PF/etc/vmailbox"
	echo "virtual_mailbox_base = $PF/mail"
	echo "virtual_uid_maps = static:$(id -u mail)"
	echo "virtual_gid_maps = static:$(id -g mail)"
	echo "virtual_minimum_uid = 8"
	echo "milter_default_action = tempfail"
	echo "policyd-spf_time_limit = 3600"
	echo "spf_restrictions = reject_unauth_destination, check_policy_service unix:private/policyd-spf"
	echo "check_milters = inet:127.0.0.1:$KPORT, inet:127.0.0.1:$MPORT"
	echo "check_rspamd_milters = inet:127.0.0.1:$KPORT, inet:127.0.0.1:$MPORT, inet:127.0.0.1:$RPORT"
	echo "rspamd_milters = inet:127.0.0.1:$RPORT"
} >"$PF/etc/main.cf"
echo "rcpt@$DOMAIN $DOMAIN/rcpt/" >"$PF/etc/vmailbox"
{
	echo "debugLevel = 0"
	echo "TestOnly = 1"
	echo "HELO_reject = Fail"
	echo "Mail_From_reject = Fail"
	echo "PermError_reject = False"
	echo "TempError_Defer = False"
	echo "skip_addresses = 192.0.2.1/32"
} >"$PF/etc/policyd-spf.conf"
chmod 644 "$PF/etc/policyd-spf.conf"
# Debian's master.cf services (no chroot), one smtpd per configuration
sed -e '/^127\.0\.0\.1:@SMTP_PORT@/d' -e '/^127\.0\.0\.1:@SMTPS_PORT@/,/@TLS_KEY@/d' \
	"$bench_top/bench/compare/postfix/master.cf.in" >"$PF/etc/master.cf"
cat >>"$PF/etc/master.cf" <<EOF
$CLIENT:$FPORT_none inet n - n - - smtpd
  -o smtpd_milters=
$CLIENT:$FPORT_checks inet n - n - - smtpd
  -o smtpd_recipient_restrictions=\$spf_restrictions -o smtpd_milters=\$check_milters
$CLIENT:$FPORT_checks_rspamd inet n - n - - smtpd
  -o smtpd_recipient_restrictions=\$spf_restrictions -o smtpd_milters=\$check_rspamd_milters
$CLIENT:$FPORT_rspamd inet n - n - - smtpd
  -o smtpd_milters=\$rspamd_milters
policyd-spf unix - n n - 0 spawn
  user=policyd-spf argv=/usr/bin/policyd-spf $PF/etc/policyd-spf.conf
EOF
postfix -c "$PF/etc" check >"$PF/check.log" 2>&1 || { cat "$PF/check.log" >&2; die "postfix check failed"; }
postfix -c "$PF/etc" start >"$PF/start.log" 2>&1 ||
	{ cat "$PF/start.log" >&2; tail -20 "$PF/maillog" >&2 2>/dev/null; die "postfix start failed"; }
FMAIL=$PF/mail/$DOMAIN/rcpt

# rspamd and the milters listening
"$PY" - "$RPORT" "$KPORT" "$MPORT" <<'PYEOF' || {
import socket, sys, time
want = set(int(p) for p in sys.argv[1:])
deadline = time.monotonic() + 90
while want and time.monotonic() < deadline:
    for p in list(want):
        try:
            socket.create_connection(("127.0.0.1", p), timeout=1).close()
            want.discard(p)
        except OSError:
            pass
    time.sleep(0.2)
sys.exit("not listening: %s" % want if want else 0)
PYEOF
	tail -5 "$RDIR/rspamd.log" "$RDIR/stderr.log" "$BDIR/milters/opendkim.log" \
		"$BDIR/milters/opendmarc.log" >&2 2>/dev/null
	die "rspamd, OpenDKIM or OpenDMARC did not start"
}
greeting() { # PORT: until CLIENT:PORT answers 220
	"$PY" - "$CLIENT" "$1" <<'PYEOF' || { tail -5 "$BDIR/serve.log" "$PF/maillog" >&2 2>/dev/null; die "no greeting on $CLIENT:$1"; }
import socket, sys, time
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as s:
            if s.recv(200).startswith(b"220"):
                s.sendall(b"QUIT\r\n")
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(1)
PYEOF
}
for p in $FPORT_none $FPORT_checks $FPORT_checks_rspamd $FPORT_rspamd; do
	greeting "$p"
done

# ---------------------------------------------------------------- petrel
PPORT=$(free_port)
petrel_start() { # CONFIG
	cfg=$1
	set -- -o "smtp_listen=$CLIENT:$PPORT" -o "dns_resolver=$DNS_ADDR:53" \
		-o smtp_max_connections_per_ip=10000
	case $cfg in
	none | rspamd) set -- "$@" -o spf_policy=ignore -o dkim_verify=no -o dmarc_policy=ignore -o arc=off ;;
	esac
	case $cfg in
	*rspamd) set -- "$@" -o "milters=inet:127.0.0.1:$RPORT" -o milter_timeout=60 ;;
	esac
	bench_serve "$@"
	greeting "$PPORT"
}
petrel_stop() {
	stop_pid "$SERVE_PID" "petrel serve"
	SERVE_PID=
}

bench_machine
echo "trust checks as petrel init writes them: $(grep -E '^(spf_policy|dkim_verify|dmarc_policy|arc) *=' "$CONF" | tr -s ' ' | paste -sd, -)"
echo "postfix $(dpkg-query -W -f='${Version}' postfix), opendkim $(dpkg-query -W -f='${Version}' opendkim), opendmarc $(dpkg-query -W -f='${Version}' opendmarc), postfix-policyd-spf-python $(dpkg-query -W -f='${Version}' postfix-policyd-spf-python), rspamd $(dpkg-query -W -f='${Version}' rspamd) (proxy count $(nproc)), unbound $(dpkg-query -W -f='${Version}' unbound) on $DNS_ADDR:53"
echo "load: $ROUNDS round(s) x $CONFIGS; $WARMUP warm-up then $MESSAGES timed messages of $(wc -c <"$BDIR/msg.eml") bytes per run, $SESSIONS smtp-source sessions"

delivered() { find "$1/new" -type f 2>/dev/null | wc -l; }

send() { # PORT COUNT FILE
	timeout "$TIMEOUT" "$SMTP_SOURCE" -s "$SESSIONS" -m "$2" -F "$3" -M client.bench.invalid \
		-f "sender@$SDOMAIN" -t "rcpt@$DOMAIN" "$CLIENT:$1" 2>>"$BDIR/source.log" ||
		{ rc=$?; tail -5 "$BDIR/source.log" >&2; grep -E 'warning|error|reject|fatal' "$PF/maillog" | tail -5 >&2
		  die "smtp-source to port $1 failed (exit $rc)"; }
}

wait_delivered() { # MAILDIR TARGET: until that many files in new/
	end=$(($(date +%s) + TIMEOUT))
	while [ "$(delivered "$1")" -lt "$2" ]; do
		[ "$(date +%s)" -lt "$end" ] || die "only $(delivered "$1") of $2 messages in $1/new after $TIMEOUT s"
		sleep 0.05
	done
	[ "$(delivered "$1")" -eq "$2" ] || die "$(delivered "$1") messages in $1/new, expected $2"
}

verify_headers() { # SERVER CONFIG MAILDIR: the checks ran on the newest message
	f=$(ls -t "$3/new" | head -1)
	h=$(sed '/^$/q' "$3/new/$f")
	need=
	case $1/$2 in
	petrel/checks*) need="spf=pass dkim=pass dmarc=pass" ;;
	postfix/checks*) need="Received-SPF:.Pass dkim=pass dmarc=pass" ;;
	esac
	case $2 in *rspamd) need="$need X-Spamd-Result:" ;; esac
	for w in $need; do
		echo "$h" | grep -q -i -- "$w" || { echo "$h" >&2; die "$1 $2: no \"$w\" in the delivered message's header"; }
	done
	case $2 in none)
		echo "$h" | grep -q -i -E 'dkim=|X-Spamd-Result' && { echo "$h" >&2; die "$1 none: check results in the header"; }
		;;
	esac
	return 0
}

refused() { # SERVER PORT: the altered message from outside the domain gets 5xx
	"$PY" - "$CLIENT" "$2" "$BDIR/bad.eml" "$DOMAIN" <<'PYEOF' || die "$1 checks: the message failing DMARC (p=reject) was not refused"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), local_hostname="client.bench.invalid", timeout=120)
try:
    s.sendmail("forger@other.mxtest", ["rcpt@" + sys.argv[4]], open(sys.argv[3], "rb").read())
except smtplib.SMTPDataError as e:
    print("refused: %d %s" % (e.smtp_code, e.smtp_error.decode(errors="replace")))
    sys.exit(0 if 500 <= e.smtp_code < 600 else 1)
sys.exit(1)
PYEOF
}

one_run() { # SERVER CONFIG ROUND
	if [ "$1" = petrel ]; then
		petrel_start "$2"
		port=$PPORT md=$PMAIL
	else
		eval "port=\$FPORT_$(echo "$2" | tr + _)"
		md=$FMAIL
	fi
	base=$(delivered "$md")
	send "$port" "$WARMUP" "$BDIR/msg.eml"
	wait_delivered "$md" $((base + WARMUP))
	verify_headers "$1" "$2" "$md"
	t0=$(now)
	send "$port" "$MESSAGES" "$BDIR/msg.eml"
	wait_delivered "$md" $((base + WARMUP + MESSAGES))
	t1=$(now)
	verify_headers "$1" "$2" "$md"
	case $2 in checks*) refused "$1" "$port" >&2 ;; esac
	[ "$(delivered "$md")" -eq $((base + WARMUP + MESSAGES)) ] || die "$1 $2: a refused message was delivered"
	[ "$1" = petrel ] && petrel_stop
	echo "RESULT server=$1 config=$2 round=$3 seconds=$("$PY" -c "print('%.2f' % ($t1 - $t0))") msgs_per_s=$("$PY" -c "print('%.1f' % ($MESSAGES / ($t1 - $t0)))")"
}

: >"$BDIR/results"
r=1
while [ "$r" -le "$ROUNDS" ]; do
	i=0
	for c in $CONFIGS; do
		order="petrel postfix"
		[ $(((r + i) % 2)) -eq 0 ] && order="postfix petrel"
		for s in $order; do
			one_run "$s" "$c" "$r" >>"$BDIR/results"
			tail -1 "$BDIR/results"
		done
		i=$((i + 1))
	done
	r=$((r + 1))
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" - "$BDIR/results" <<'PYEOF'
import re, statistics, sys
rate = {}
for line in open(sys.argv[1]):
    m = re.search(r"server=(\w+) config=(\S+) .*msgs_per_s=([\d.]+)", line)
    if m:
        rate.setdefault(m.group(1), {}).setdefault(m.group(2), []).append(float(m.group(3)))
med = {s: {c: statistics.median(v) for c, v in d.items()} for s, d in rate.items()}
configs = [c for c in ("none", "checks", "checks+rspamd", "rspamd")
           if c in med.get("petrel", {}) and c in med.get("postfix", {})]
if "none" not in configs:
    sys.exit(0)
for s in ("petrel", "postfix"):
    print("RESULT rate server=%s %s msgs/s" % (s, " ".join("%s=%.0f" % (c, med[s][c]) for c in configs)))
for s in ("petrel", "postfix"):
    print("RESULT cost server=%s %s ms/msg" % (s, " ".join(
        "%s=%.2f" % (c, 1000 / med[s][c] - 1000 / med[s]["none"]) for c in configs[1:])))
for s in ("petrel", "postfix"):
    print("RESULT ratio server=%s %s (of none)" % (s, " ".join(
        "%s=%.2f" % (c, med[s][c] / med[s]["none"]) for c in configs[1:])))
r = med["petrel"].get("checks", 0) / med["petrel"]["none"]
"checks" in configs and print("RESULT target petrel checks/none=%.2f (target >= 0.75: %s)" % (r, "met" if r >= 0.75 else "NOT met"))
for c in configs:
    p, f = med["petrel"][c], med["postfix"][c]
    print("RESULT median config=%s petrel=%.0f postfix=%.0f ratio=%.2f petrel_cost_ms=%s postfix_cost_ms=%s"
          % (c, p, f, p / f,
             "%.2f" % (1000 / p - 1000 / med["petrel"]["none"]) if c != "none" else "-",
             "%.2f" % (1000 / f - 1000 / med["postfix"]["none"]) if c != "none" else "-"))
print("RESULT petrel/postfix %s" % " ".join(
    "%s=%.2f" % (c, med["petrel"][c] / med["postfix"][c]) for c in configs))
PYEOF
