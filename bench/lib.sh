# bench/lib.sh: the start-up the single-product bench scripts share
# (sourced, POSIX sh): a throw-away `petrel init` instance, free loopback
# ports, `petrel serve` started in the background and waited for, and
# stopped by PID (descendants/stop_pid are compare.sh's, which still has its
# own copy: it builds petrel when PETREL is unset, which this file would set).
#
#   . "$(dirname "$0")/lib.sh"
#   bench_instance fanout               # $BDIR, $CONF, $ROOT, $DOMAIN (example.test)
#   port=$(free_port)
#   bench_serve -o "smtp_listen=127.0.0.1:$port"   # $SERVE_PID; every other listener off
#   wait_greeting "$port" 220
#   ...                                 # the EXIT trap stops serve and removes $BDIR
#
# Env read: PETREL (binary, default build/petrel), BENCH_DIR (/var/tmp),
# KEEP (1: keep the instance directory), PY (/usr/bin/python3).

bench_top=$(cd "$(dirname "$0")/.." && pwd)
PETREL=${PETREL:-$bench_top/build/petrel}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
PY=${PY:-/usr/bin/python3}
DOMAIN=${DOMAIN:-example.test}
BDIR=
SERVE_PID=
bench_name=${bench_name:-bench}

die() { echo "$bench_name: $*" >&2; exit 1; }
say() { echo "$bench_name: $*" >&2; }

free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

now() { "$PY" -c 'import time; print("%.4f" % time.monotonic())'; }

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

bench_cleanup() {
	rc=$?
	set +e
	stop_pid "$SERVE_PID" "petrel serve"
	[ -n "${bench_extra_cleanup:-}" ] && eval "$bench_extra_cleanup"
	if [ -n "$BDIR" ]; then
		if [ "${KEEP:-0}" = 1 ]; then say "kept $BDIR"; else rm -rf "$BDIR"; fi
	fi
	exit "$rc"
}

# bench_instance NAME: a `petrel init` instance in a new directory under
# BENCH_DIR (reachable by 'mail', whom serve runs as when started as root)
bench_instance() {
	[ -x "$PETREL" ] || die "no petrel binary at $PETREL (build it first)"
	BDIR=$(mktemp -d "$BENCH_DIR/petrel-$1.XXXXXX")
	chmod 755 "$BDIR"
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM HUP
	"$PETREL" init --dir "$BDIR/petrel" --domain "$DOMAIN" >"$BDIR/init.log" 2>&1 ||
		{ cat "$BDIR/init.log" >&2; die "petrel init failed"; }
	CONF=$BDIR/petrel/petrel.conf
	ROOT=$(sed -n 's/^mail_root *= *//p' "$CONF")
	DB=$(sed -n 's/^database *= *sqlite://p' "$CONF")
}

# bench_users FIRST LAST [PASSWORD]: users uFIRST..uLAST@DOMAIN with empty
# Maildirs (a template user from `petrel user add`, its row copied by
# bench/compare/mailgen.py: same hash, so the same password)
bench_users() {
	printf '%s\n' "${3:-bench-password}" | "$PETREL" -c "$CONF" user add "tmpl@$DOMAIN" \
		--password-stdin >>"$BDIR/init.log" 2>&1 || die "petrel user add failed"
	"$PY" "$bench_top/bench/compare/mailgen.py" "$DB" "tmpl@$DOMAIN" "$DOMAIN" "$ROOT" \
		"u$1-u$2:0:empty" >>"$BDIR/init.log" 2>&1 ||
		{ tail -5 "$BDIR/init.log" >&2; die "mailgen.py failed"; }
}

# bench_serve [-o key=value ...]: petrel serve with every listener off but
# those given; its stderr in $BDIR/serve.log
bench_serve() {
	"$PETREL" -c "$CONF" -o smtp_listen= -o submission_listen= -o submissions_listen= \
		-o imap_listen= -o imaps_listen= -o pop3_listen= -o pop3s_listen= \
		-o http_listen= -o https_listen= -o lmtp_listen= -o managesieve_listen= "$@" \
		serve 2>>"$BDIR/serve.log" &
	SERVE_PID=$!
}

# wait_greeting PORT PREFIX [SECONDS] [tls]: until a connection gets a
# line starting with PREFIX (220, "* OK", +OK)
wait_greeting() {
	"$PY" - "$1" "$2" "${3:-20}" "${4:-}" <<'EOF' || { tail -5 "$BDIR/serve.log" >&2; die "no greeting on port $1"; }
import socket, ssl, sys, time
port, want, limit, tls = int(sys.argv[1]), sys.argv[2].encode(), float(sys.argv[3]), sys.argv[4]
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            if tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                s = ctx.wrap_socket(s)
            if s.recv(200).startswith(want):
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(1)
EOF
}

bench_machine() { # one line: where the figures come from
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
	echo "machine: $(nproc) CPUs ($cpu), $(df -T "$BDIR" | awk 'NR==2 {print $2}') under $BENCH_DIR, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg) (shared machine)"
	echo "petrel: $PETREL (built $(date -r "$PETREL" '+%Y-%m-%d %H:%M'))"
}
