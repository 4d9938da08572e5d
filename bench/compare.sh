#!/bin/sh
# bench/compare.sh: petrel against the incumbent it replaces (Postfix for
# SMTP, Dovecot for IMAP and POP3, both on an SQL directory), on this
# machine, with the same workloads, and one table of the results.
#
#   bench/compare.sh                  # 3 rounds, full sizes (about 30 min)
#   QUICK=1 ROUNDS=1 bench/compare.sh # smoke run with small counts (minutes)
#
# As root on Debian 12, from a clean clone:
#  1. installs what is missing with apt-get (Postfix + postfix-sqlite, Dovecot
#     core/imapd/pop3d/sqlite, python3, sqlite3, gcc; postfix preseeded to "No
#     configuration"; no package service is started), petrel's own build
#     dependencies (scripts/install-deps.sh), and builds petrel optimized
#     (meson buildtype release in build-bench/) unless PETREL names a binary;
#  2. makes a throw-away directory under BENCH_DIR with: a `petrel init`
#     instance (SQLite directory, users added by the CLI and copies of that
#     row); an incumbent instance whose Postfix (own config, queue and data
#     directories, `postfix -c DIR`) and Dovecot (own config, base_dir,
#     state_dir; `dovecot -F -c FILE`) read a copy of the same SQLite
#     directory (Postfix sqlite: maps, Dovecot sql passdb/userdb with driver
#     sqlite), Postfix delivering with virtual(8) into Maildirs owned by
#     'mail'; the same generated messages written into both products'
#     Maildirs. Config templates and what deviates from Debian's shipped
#     settings: bench/compare/postfix/*.in, bench/compare/dovecot/*.in.
#     Every listener is on 127.0.0.1 at a port chosen free at run time;
#  3. runs the workloads of bench/compare/driver.py against both, alternating
#     which goes first, ROUNDS times (the 10,000 idle IMAP connections only in
#     the last round: Dovecot needs minutes and gigabytes for them);
#     per-round raw figures go to stderr, the table (markdown) to stdout and
#     to OUT;
#  4. stops every daemon it started, by PID, and removes the directory.
#
# Env: ROUNDS (3), QUICK (0; 1 = small counts), OUT (table file,
#      bench/compare/last-table.md), KEEP (0; 1 = keep the temporary directory
#      and print its path), BENCH_DIR (/var/tmp), PETREL (use this binary,
#      skip the build), TIMEOUT (seconds for the measuring part, 10800),
#      MEM_FLOOR_MIB (3072: stop opening idle connections when MemAvailable
#      falls below this), LOGIN_PAR (10), LOGIN_USERS (100), FSYNC_SECONDS (3),
#      BODY_REPS (5: FETCH 1:* BODY[] of the big folder this many times per
#      measurement), SESSION_CLIENTS (20), SESSION_ITERS (1000; quick 200),
#      SESSION_SECONDS (120: persistent sessions, each looping SELECT, APPEND,
#      FETCH, STORE, EXPUNGE that many times or for that long), ONLY (run only
#      these workloads, e.g. "body pop3"; of smtp login session env body
#      search sort pop3 idle; default all; the table says so; sort = SORT by
#      date and subject, THREAD=REFERENCES, an ESEARCH and a SELECT (QRESYNC)
#      after 100 flag changes on the N_SMALL and N_LARGE folders; sieve = bench/sieve_deliver.sh's rows, petrel
#      and dovecot-lda each with and without a 20-rule script; trust =
#      bench/trust_load.sh's rows, inbound SMTP with SPF, DKIM and DMARC on
#      and with rspamd as a milter, against Postfix with policyd-spf,
#      OpenDKIM, OpenDMARC and the same rspamd; tls = TLS
#      handshakes per second, full (TLS 1.3) and resumed (TLS 1.2 session
#      ticket), by `openssl s_time` on petrel's imaps and submissions
#      against Dovecot's imaps and Postfix's smtpd in wrapper mode, each
#      TLS_SECONDS (5) long; "body" includes FETCH BODY[] over imaps; its
#      client is bench/compare/fetch_client.c, built here with OpenSSL, or
#      driver.py's Python client if that build fails);
#      TLS_CLIENTS (1: openssl s_time processes at once per tls row);
#      TLS_KEY (rsa: the RSA 2048 certificate `petrel init` makes, served by
#      all three; ecdsa: an ECDSA P-256 one made here in its place, the
#      key type certbot issues by default since its 2.0, Debian 12's 2.1).
#
# Changed while it runs: the open-files limit of this shell and its children
# (ulimit -n 65536, or the hard limit if that is lower), and, restored at
# exit, fs.inotify.max_user_instances if it is below what one IDLE process
# per connection needs (Dovecot; petrel uses one inotify instance per worker).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cmpdir=$here/compare

ROUNDS=${ROUNDS:-3}
QUICK=${QUICK:-0}
KEEP=${KEEP:-0}
OUT=${OUT:-$cmpdir/last-table.md}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
TIMEOUT=${TIMEOUT:-10800}
PY=/usr/bin/python3

stage="starting"
died=
die() { echo "compare.sh: $*" >&2; died=1; exit 1; }
say() { echo "compare.sh: $*" >&2; }

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, starts Postfix and Dovecot)"
[ -r /etc/debian_version ] || die "needs a Debian system (apt-get)"
case $ROUNDS in '' | *[!0-9]* | 0) die "ROUNDS must be a positive number" ;; esac

# ---------------------------------------------------------------- 1. install, build
stage="installing packages"
pkgs="postfix postfix-sqlite dovecot-core dovecot-imapd dovecot-pop3d dovecot-sqlite
	python3 sqlite3 gcc libc6-dev procps coreutils
	unbound rspamd opendkim opendmarc postfix-policyd-spf-python python3-dkim openssl util-linux iproute2"
missing=
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	say "installing$missing"
	made_policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		# the packages must not start their system services (ports 25/143/110)
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	export DEBIAN_FRONTEND=noninteractive
	log=$(mktemp)
	# shellcheck disable=SC2086
	if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } >"$log" 2>&1; then
		tail -20 "$log" >&2
		[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
		rm -f "$log"
		die "apt-get install failed"
	fi
	rm -f "$log"
	[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
fi
bash "$top/scripts/install-deps.sh" || die "scripts/install-deps.sh failed"

stage="building petrel"
if [ -z "${PETREL:-}" ]; then
	log=$(mktemp)
	if [ ! -f "$top/build-bench/build.ninja" ]; then
		meson setup "$top/build-bench" "$top" --buildtype=release >"$log" 2>&1 ||
			{ tail -30 "$log" >&2; rm -f "$log"; die "meson setup build-bench failed"; }
	fi
	ninja -C "$top/build-bench" petrel >"$log" 2>&1 ||
		{ tail -30 "$log" >&2; rm -f "$log"; die "building petrel (ninja -C build-bench) failed"; }
	rm -f "$log"
	PETREL=$top/build-bench/petrel
fi
[ -x "$PETREL" ] || die "no petrel binary at $PETREL"
SMTP_SOURCE=/usr/sbin/smtp-source
[ -x "$SMTP_SOURCE" ] || die "no $SMTP_SOURCE (package postfix)"
id mail >/dev/null 2>&1 || die "no 'mail' user"
id postfix >/dev/null 2>&1 || die "no 'postfix' user (package postfix)"

# ---------------------------------------------------------------- sizes
if [ "$QUICK" = 1 ]; then
	N_SMALL=1000 N_LARGE=5000 N_BIG=100 IDLE_USERS=150 IDLE_CONNS=100 IDLE_BIG=1000 LOGINS=300
	SMTP_PLAN="1x2048x100 20x2048x500 100x2048x1000 1x102400x50 20x102400x200 100x102400x300"
	TCP_MIB=512
else
	N_SMALL=10000 N_LARGE=100000 N_BIG=1000 IDLE_USERS=1250 IDLE_CONNS=1000 IDLE_BIG=10000 LOGINS=1000
	SMTP_PLAN="1x2048x300 20x2048x4000 100x2048x6000 1x102400x200 20x102400x1500 100x102400x2000"
	TCP_MIB=2048
fi
max_conns=$IDLE_BIG

# ---------------------------------------------------------------- limits
# one descriptor per connection in the client and in the server (Dovecot: in
# its log, stats and anvil processes too): as high as we may, at least
# what the largest idle load needs
need=$((max_conns + 1000))
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need" ] ||
	die "open-files limit $(ulimit -n) < $need and cannot be raised (ulimit -n)"
inotify=/proc/sys/fs/inotify/max_user_instances
inotify_old=
if [ -w "$inotify" ] && [ "$(cat "$inotify")" -lt $((max_conns + 1000)) ]; then
	inotify_old=$(cat "$inotify")
fi

# ---------------------------------------------------------------- cleanup
T=
petrel_pid=
dovecot_pid=
postfix_pid=
descendants() { # PID -> PID and its descendants, one a line
	ps -e -o pid= -o ppid= | awk -v root="$1" '
		{ kids[$2] = kids[$2] " " $1 }
		END { n = split(root, q, " "); out = root
		      while (n > 0) { p = q[n--]; m = split(kids[p], k, " ")
		                      for (i = 1; i <= m; i++) { out = out "\n" k[i]; q[++n] = k[i] } }
		      print out }'
}
stop_pid() { # PID NAME: TERM the daemon, wait up to 20 s, then KILL what is left of its tree
	[ -n "$1" ] || return 0
	kill -0 "$1" 2>/dev/null || return 0
	family=$(descendants "$1")
	kill -TERM "$1" 2>/dev/null || true
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
	for p in $family; do
		kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
	done
	[ $i -lt 200 ] || say "$2 (pid $1) did not stop on SIGTERM within 20 s; killed"
}
cleanup() {
	rc=$?
	set +e
	if [ "$rc" -ne 0 ] && [ -z "$died" ] && [ "$rc" -ne 130 ]; then
		echo "compare.sh: failed while $stage (exit status $rc)" >&2
	fi
	stop_pid "$petrel_pid" "petrel serve"
	stop_pid "$dovecot_pid" "dovecot"
	stop_pid "$postfix_pid" "postfix master"
	[ -n "$inotify_old" ] && echo "$inotify_old" >"$inotify"
	if [ -n "$T" ]; then
		if [ "$KEEP" = 1 ]; then
			say "kept $T"
		else
			rm -rf "$T"
		fi
	fi
	[ "$rc" -eq 0 ] || [ "$rc" -eq 130 ] || exit 1
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

[ -n "$inotify_old" ] && echo $((max_conns + 1000)) >"$inotify"

# ---------------------------------------------------------------- 2. instances
stage="making the petrel instance"
T=$(mktemp -d "$BENCH_DIR/petrel-compare.XXXXXX")
chmod 755 "$T"
PASSWORD=bench-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
DOMAIN=bench.test

"$PETREL" init --dir "$T/petrel" --domain "$DOMAIN" >"$T/init.log" 2>&1 ||
	{ cat "$T/init.log" >&2; die "petrel init failed"; }
pconf=$T/petrel/petrel.conf
pdb=$(sed -n 's/^database *= *sqlite://p' "$pconf")
proot=$(sed -n 's/^mail_root *= *//p' "$pconf")
[ -n "$pdb" ] && [ -n "$proot" ] || die "petrel init made no SQLite database / mail_root"
printf '%s\n' "$PASSWORD" | "$PETREL" -c "$pconf" user add "tmpl@$DOMAIN" --password-stdin \
	>>"$T/init.log" 2>&1 || { cat "$T/init.log" >&2; die "petrel user add failed"; }

case ${TLS_KEY:-rsa} in
rsa) ;;
ecdsa)
	# the same names, an ECDSA P-256 key: every server reads these files
	stage="making an ECDSA certificate"
	cn=$(openssl x509 -in "$T/petrel/tls/cert.pem" -noout -subject -nameopt multiline |
		sed -n 's/^ *commonName *= *//p')
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
		-subj "/CN=${cn:-$DOMAIN}" -addext "subjectAltName=DNS:${cn:-$DOMAIN}" \
		-keyout "$T/petrel/tls/key.pem.new" -out "$T/petrel/tls/cert.pem.new" \
		>"$T/ecdsa.log" 2>&1 || { cat "$T/ecdsa.log" >&2; die "making the ECDSA certificate failed"; }
	chmod --reference="$T/petrel/tls/key.pem" "$T/petrel/tls/key.pem.new"
	chown --reference="$T/petrel/tls/key.pem" "$T/petrel/tls/key.pem.new"
	mv "$T/petrel/tls/key.pem.new" "$T/petrel/tls/key.pem"
	mv "$T/petrel/tls/cert.pem.new" "$T/petrel/tls/cert.pem"
	;;
*) die "TLS_KEY must be rsa or ecdsa" ;;
esac

stage="writing users and messages"
mkdir -p "$T/inc/mail"
iroot=$T/inc/mail
chown mail:mail "$iroot"
chmod 750 "$iroot"
say "writing users and messages into $proot and $iroot"
# the two big folders of real-looking mail only for the workloads that read
# them (env, search, sort): writing them takes minutes
folders="f$N_SMALL:$N_SMALL:real f$N_LARGE:$N_LARGE:real"
case " ${ONLY:-env} " in
*" env "* | *" search "* | *" sort "*) ;;
*) folders= ;;
esac
# shellcheck disable=SC2086
"$PY" "$cmpdir/mailgen.py" "$pdb" "tmpl@$DOMAIN" "$DOMAIN" "$proot,$iroot" \
	$folders "big:$N_BIG:big" "pop:$N_BIG:big" \
	"sink:0:empty" "u0-u$((IDLE_USERS - 1)):20:tiny" || die "mailgen.py failed"

# the incumbent reads a copy of the same directory (schema, rows, hashes)
stage="copying the SQLite directory"
idb=$T/inc/maildb.sqlite
sqlite3 "$pdb" ".backup '$idb'" || die "copying the SQLite directory failed"
sqlite3 "$idb" "PRAGMA journal_mode=DELETE;" >/dev/null || die "sqlite3 $idb failed"
chmod 644 "$idb"

free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
P_SMTP=$(free_port) P_IMAP=$(free_port) P_POP3=$(free_port)
I_SMTP=$(free_port) I_IMAP=$(free_port) I_POP3=$(free_port)
P_IMAPS=$(free_port) P_SMTPS=$(free_port) I_IMAPS=$(free_port) I_SMTPS=$(free_port)

render() { # TEMPLATE OUTPUT: fill in @NAME@ placeholders
	sed -e "s|@CONFIG_DIR@|$T/postfix/etc|g" -e "s|@QUEUE_DIR@|$T/postfix/queue|g" \
		-e "s|@DATA_DIR@|$T/postfix/data|g" -e "s|@LOG_FILE@|$logfile|g" -e "s|@TOP@|$T|g" \
		-e "s|@MAIL_ROOT@|$iroot|g" -e "s|@DB@|$idb|g" -e "s|@SMTP_PORT@|$I_SMTP|g" \
		-e "s|@IMAP_PORT@|$I_IMAP|g" -e "s|@POP3_PORT@|$I_POP3|g" \
		-e "s|@IMAPS_PORT@|$I_IMAPS|g" -e "s|@SMTPS_PORT@|$I_SMTPS|g" \
		-e "s|@BASE_DIR@|$T/dovecot/run|g" -e "s|@STATE_DIR@|$T/dovecot/state|g" \
		-e "s|@INSTANCE@|bench-$(basename "$T")|g" -e "s|@CONF@|$T/dovecot/dovecot.conf|g" \
		-e "s|@SQL_CONF@|$T/dovecot/dovecot-sql.conf.ext|g" \
		-e "s|@TLS_CERT@|$T/petrel/tls/cert.pem|g" -e "s|@TLS_KEY@|$T/petrel/tls/key.pem|g" \
		"$1" >"$2"
	! grep -v '^#' "$2" | grep -q '@[A-Z_]*@' || die "unfilled placeholder in $2"
}

# Postfix, own instance
stage="configuring and starting Postfix"
mkdir -p "$T/postfix/etc" "$T/postfix/queue" "$T/postfix/data"
chown postfix "$T/postfix/data"
logfile=$T/postfix/maillog
for f in "$cmpdir"/postfix/*.in; do
	render "$f" "$T/postfix/etc/$(basename "$f" .in)"
done
postfix -c "$T/postfix/etc" check >"$T/postfix/check.log" 2>&1 ||
	{ cat "$T/postfix/check.log" >&2; die "postfix check failed"; }
postfix -c "$T/postfix/etc" start >"$T/postfix/start.log" 2>&1 ||
	{ cat "$T/postfix/start.log" >&2; tail -20 "$logfile" >&2 2>/dev/null; die "postfix start failed"; }
i=0
while [ ! -s "$T/postfix/queue/pid/master.pid" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
postfix_pid=$(tr -d ' \n' <"$T/postfix/queue/pid/master.pid" 2>/dev/null || true)
[ -n "$postfix_pid" ] && kill -0 "$postfix_pid" 2>/dev/null || die "postfix master did not start"

# Dovecot, own instance
stage="configuring and starting Dovecot"
mkdir -p "$T/dovecot/state"
chmod 755 "$T/dovecot"
logfile=$T/dovecot/dovecot.log
render "$cmpdir/dovecot/dovecot.conf.in" "$T/dovecot/dovecot.conf"
render "$cmpdir/dovecot/dovecot-sql.conf.ext.in" "$T/dovecot/dovecot-sql.conf.ext"
chmod 600 "$T/dovecot/dovecot-sql.conf.ext"
doveconf -c "$T/dovecot/dovecot.conf" -n >"$T/dovecot/doveconf.log" 2>&1 ||
	{ cat "$T/dovecot/doveconf.log" >&2; die "dovecot configuration rejected"; }
dovecot -F -c "$T/dovecot/dovecot.conf" >"$T/dovecot/stderr.log" 2>&1 &
dovecot_pid=$!

# petrel serve: the instance as `petrel init` made it, listeners moved
stage="starting petrel serve"
"$PETREL" -c "$pconf" -o "smtp_listen=127.0.0.1:$P_SMTP" -o "imap_listen=127.0.0.1:$P_IMAP" \
	-o "pop3_listen=127.0.0.1:$P_POP3" -o submission_listen= \
	-o "submissions_listen=127.0.0.1:$P_SMTPS" -o "imaps_listen=127.0.0.1:$P_IMAPS" \
	-o pop3s_listen= -o http_listen= -o https_listen= -o lmtp_listen= \
	-o managesieve_listen= \
	-o imap_max_connections=100000 -o imap_max_connections_per_ip=100000 \
	-o imaps_max_connections_per_ip=100000 -o submissions_max_connections_per_ip=100000 \
	-o pop3_max_connections_per_ip=100000 -o smtp_max_connections_per_ip=100000 \
	serve 2>"$T/petrel/serve.log" &
petrel_pid=$!

"$PY" - "$P_SMTP" "$P_IMAP" "$P_POP3" "$I_SMTP" "$I_IMAP" "$I_POP3" <<'EOF' || {
import socket, sys, time
want = {int(sys.argv[1]): b"220", int(sys.argv[2]): b"* OK", int(sys.argv[3]): b"+OK",
        int(sys.argv[4]): b"220", int(sys.argv[5]): b"* OK", int(sys.argv[6]): b"+OK"}
deadline = time.monotonic() + 30
while want and time.monotonic() < deadline:
    for port, greet in list(want.items()):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                if s.recv(200).startswith(greet):
                    del want[port]
        except OSError:
            pass
    time.sleep(0.1)
if want:
    sys.exit("no greeting on port(s) %s within 30 s" % ", ".join(map(str, want)))
EOF
	tail -5 "$T/petrel/serve.log" "$T/dovecot/dovecot.log" "$T/dovecot/stderr.log" \
		"$T/postfix/maillog" >&2 2>/dev/null
	die "a server did not start"
}

# ---------------------------------------------------------------- helpers, run
stage="compiling the reference programs"
mkdir -p "$T/bin" "$T/work"
cc -O2 -pthread -o "$T/bin/fsync_loop" "$cmpdir/fsync_loop.c" || die "cc fsync_loop.c failed"
cc -O2 -o "$T/bin/tcp_bw" "$cmpdir/tcp_bw.c" || die "cc tcp_bw.c failed"
# the FETCH BODY[] client (OpenSSL for imaps); without it driver.py's
# Python client does those rows and their notes say so
cc -O2 -o "$T/bin/fetch_client" "$cmpdir/fetch_client.c" -lssl -lcrypto ||
	say "cc fetch_client.c failed: the BODY[] rows use the Python client"

pfver=$(dpkg-query -W -f='${Version}' postfix)
dvver=$(dpkg-query -W -f='${Version}' dovecot-core)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
fs=$(df -T "$T" | awk 'NR == 2 { print $2 " on " $1 }')
HEADER="## petrel vs. Postfix + Dovecot ($(date '+%Y-%m-%d %H:%M'))

- petrel: $PETREL, built $(date -r "$PETREL" '+%Y-%m-%d %H:%M'); \`petrel init\` defaults (workers, worker_threads, log_level as written), SQLite directory.
- incumbent: Postfix $pfver (virtual(8) into Maildir, sqlite maps) and Dovecot $dvver (IMAP/POP3, sql passdb/userdb on sqlite); settings that differ from Debian's are listed in bench/compare/postfix/main.cf.in and bench/compare/dovecot/dovecot.conf.in.
- machine: $(nproc) CPUs ($cpu), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $fs, kernel $(uname -r); load average at start $(cut -d' ' -f1-3 /proc/loadavg).
- all servers on 127.0.0.1; every client on this machine too (smtp-source, Python raw-socket IMAP/POP3 clients; FETCH BODY[] by bench/compare/fetch_client.c when it builds)."
if [ "$QUICK" = 1 ]; then
	HEADER="$HEADER
- QUICK=1: small counts, a smoke run only."
fi
if [ -n "${ONLY:-}" ]; then
	HEADER="$HEADER
- ONLY=\"$ONLY\": the other workloads were not run."
fi

stage="running the workloads"
say "servers up: petrel $petrel_pid (smtp $P_SMTP, imap $P_IMAP, pop3 $P_POP3), postfix master $postfix_pid (smtp $I_SMTP), dovecot $dovecot_pid (imap $I_IMAP, pop3 $I_POP3); temp dir $T"
export PETREL_SMTP=$P_SMTP PETREL_IMAP=$P_IMAP PETREL_POP3=$P_POP3 PETREL_PID=$petrel_pid \
	PETREL_IMAPS=$P_IMAPS PETREL_SMTPS=$P_SMTPS INC_IMAPS=$I_IMAPS INC_SMTPS=$I_SMTPS \
	PETREL_ROOT=$proot INC_SMTP=$I_SMTP INC_IMAP=$I_IMAP INC_POP3=$I_POP3 \
	POSTFIX_PID=$postfix_pid DOVECOT_PID=$dovecot_pid INC_ROOT=$iroot DOMAIN PASSWORD \
	SMTP_SOURCE BIN_DIR="$T/bin" WORK_DIR="$T/work" ROUNDS QUICK OUT N_SMALL N_LARGE N_BIG \
	IDLE_USERS IDLE_CONNS IDLE_BIG LOGINS SMTP_PLAN TCP_MIB HEADER
[ -n "${LOGIN_PAR:-}" ] && export LOGIN_PAR
[ -n "${LOGIN_USERS:-}" ] && export LOGIN_USERS
[ -n "${FSYNC_SECONDS:-}" ] && export FSYNC_SECONDS
[ -n "${MEM_FLOOR_MIB:-}" ] && export MEM_FLOOR_MIB
[ -n "${BODY_REPS:-}" ] && export BODY_REPS
[ -n "${TLS_SECONDS:-}" ] && export TLS_SECONDS
[ -n "${TLS_CLIENTS:-}" ] && export TLS_CLIENTS
[ -n "${TLS_KEY:-}" ] && export TLS_KEY
[ -n "${SESSION_CLIENTS:-}" ] && export SESSION_CLIENTS
[ -n "${SESSION_ITERS:-}" ] && export SESSION_ITERS
[ -n "${SESSION_SECONDS:-}" ] && export SESSION_SECONDS
[ -n "${ONLY:-}" ] && export ONLY
mkdir -p "$(dirname "$OUT")"
timeout "$TIMEOUT" "$PY" "$cmpdir/driver.py" || {
	rc=$?
	for f in "$T/petrel/serve.log" "$T/dovecot/dovecot.log" "$T/postfix/maillog"; do
		echo "--- last lines of $f" >&2
		tail -8 "$f" >&2 2>/dev/null || true
	done
	[ $rc -eq 124 ] && die "the measuring run exceeded TIMEOUT=$TIMEOUT s"
	die "the measuring run failed (exit $rc; its error is above)"
}
# Sieve at delivery: petrel with and without a 20-rule script for every
# user, and dovecot-lda with and without Pigeonhole on the same script
# (bench/sieve_deliver.sh, on its own instance; Dovecot from the unpacked
# tree of scripts/install-legacy-imap.sh); its medians become rows.
case " ${ONLY:-sieve} " in
*" sieve "*)
	stage="the Sieve delivery rows"
	sq=""
	[ "$QUICK" = 1 ] && sq="MESSAGES=800 LDA_MESSAGES=80"
	sieve_out=$(env PETREL="$PETREL" ROUNDS="$ROUNDS" BENCH_DIR="$BENCH_DIR" $sq \
		sh "$here/sieve_deliver.sh") || die "bench/sieve_deliver.sh failed"
	{
		echo
		echo "| Sieve at delivery (20 rules, bench/sieve/rules.sieve) | no script msgs/s | script msgs/s | cost |"
		echo "|---|---|---|---|"
		echo "$sieve_out" | sed -n 's/^MEDIAN server=\([^ ]*\) no_sieve=\([^ ]*\) ([^)]*) sieve=\([^ ]*\) ([^)]*) cost=\(.*\)$/| \1 | \2 | \3 | \4 |/p'
	} | tee -a "$OUT"
	;;
esac
# Inbound SMTP with the sender checks on (SPF, DKIM, DMARC from a local DNS
# server) and with rspamd as a milter, against Postfix with
# policyd-spf, OpenDKIM, OpenDMARC and the same rspamd
# (bench/trust_load.sh, on instances of its own in private network and
# mount namespaces); its medians become rows.
case " ${ONLY:-trust} " in
*" trust "*)
	stage="the trust rows"
	tq=""
	[ "$QUICK" = 1 ] && tq="MESSAGES=300 WARMUP=20"
	# shellcheck disable=SC2086
	trust_out=$(env PETREL="$PETREL" ROUNDS="$ROUNDS" BENCH_DIR="$BENCH_DIR" $tq \
		sh "$here/trust_load.sh") || die "bench/trust_load.sh failed"
	{
		echo
		echo "| Inbound SMTP, sender checks (bench/trust_load.sh) | petrel msgs/s | Postfix msgs/s | petrel/Postfix | petrel cost ms/msg | Postfix cost ms/msg |"
		echo "|---|---|---|---|---|---|"
		echo "$trust_out" | sed -n 's/^RESULT median config=\([^ ]*\) petrel=\([^ ]*\) postfix=\([^ ]*\) ratio=\([^ ]*\) petrel_cost_ms=\([^ ]*\) postfix_cost_ms=\([^ ]*\)$/| \1 | \2 | \3 | \4 | \5 | \6 |/p'
		echo "$trust_out" | sed -n 's/^RESULT target \(.*\)$/\n\1/p'
	} | tee -a "$OUT"
	;;
esac
say "table written to $OUT"
