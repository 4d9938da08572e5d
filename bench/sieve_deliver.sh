#!/bin/sh
# bench/sieve_deliver.sh: what Sieve costs at delivery. petrel receives
# the same SMTP load (smtp-source, end to end until every message is a
# file in the user's Maildir) with bench/sieve/rules.sieve (20 rules) active
# for every user and with no script, alternately, ROUNDS rounds; then, if
# Dovecot's unpacked tree is there (scripts/install-legacy-imap.sh),
# dovecot-lda with Pigeonhole and the same script and messages, with and
# without the sieve plugin: one process per message, as Postfix runs it.
#
#   bench/sieve_deliver.sh                     # 20 sessions, 4000 messages, 3 rounds
#   SESSIONS=8 MESSAGES=2000 ROUNDS=5 bench/sieve_deliver.sh
#
# Env: PETREL (binary, default build/petrel), SESSIONS (20, a multiple of 4),
#      MESSAGES (4000 per measurement, a multiple of 4), ROUNDS (3),
#      LDA_MESSAGES (400 per Dovecot measurement; 0 skips Dovecot),
#      LDA_PAR (dovecot-lda processes at a time, 20), LEGACY (/opt/petrel-legacy),
#      BENCH_DIR (/var/tmp), TIMEOUT (seconds per measurement, 300).
#
# The four messages of bench/sieve/*.eml (about 2.3 KiB each) go one to each
# of four users, a quarter of the load each: three stay in INBOX (one gets
# \Flagged), the list mail is filed into Lists.Dev with a flag; every one is
# read by all 20 rules but the one that files it. Installs and builds nothing;
# runs as root (serve drops to 'mail', dovecot-lda runs as 'mail'); stops
# only the server it started, by PID, and removes its directory.
# Output: RESULT lines and a medians line at the end.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
PETREL=${PETREL:-$here/build/petrel}
SESSIONS=${SESSIONS:-20}
MESSAGES=${MESSAGES:-4000}
ROUNDS=${ROUNDS:-3}
LDA_MESSAGES=${LDA_MESSAGES:-400}
LDA_PAR=${LDA_PAR:-20}
LEGACY=${LEGACY:-/opt/petrel-legacy}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
TIMEOUT=${TIMEOUT:-300}
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
sv=$here/bench/sieve
KINDS="keep1 keep2 flagged list"

die() { echo "sieve_deliver: $*" >&2; exit 1; }
[ -x "$PETREL" ] || die "no petrel binary at $PETREL (build it first)"
[ -x "$SMTP_SOURCE" ] || die "no $SMTP_SOURCE (Debian package postfix)"
[ "$(id -u)" = 0 ] || die "run as root (the server and dovecot-lda run as 'mail')"
[ $((SESSIONS % 4)) = 0 ] && [ $((MESSAGES % 4)) = 0 ] || die "SESSIONS and MESSAGES must be multiples of 4"

dir=$(mktemp -d "$BENCH_DIR/petrel-sieve.XXXXXX")
chmod 755 "$dir"
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$PETREL" sieve check "$sv/rules.sieve" >/dev/null || die "petrel rejects bench/sieve/rules.sieve"
"$PETREL" init --dir "$dir" --domain example.test >/dev/null
conf=$dir/petrel.conf
# Every measurement has its own four users (KIND-ROUNDon, KIND-ROUNDoff):
# no mail is deleted between measurements, so each starts with empty
# Maildirs and the file system does not reuse just-freed inodes (which on
# ext4 costs more than the deliveries).
r=1
while [ $r -le "$ROUNDS" ]; do
	for k in $KINDS; do
		for m in on off; do
			"$PETREL" -c "$conf" user add "$k-$r$m@example.test" >/dev/null 2>&1
		done
		"$PETREL" -c "$conf" sieve put "$k-${r}on@example.test" rules "$sv/rules.sieve" >/dev/null
		"$PETREL" -c "$conf" sieve activate "$k-${r}on@example.test" rules >/dev/null
	done
	r=$((r + 1))
done

port=$(PYTHONPATH="$here/tests" python3 -c 'from harness.ports import free_port; print(free_port())')
"$PETREL" -c "$conf" -o "smtp_listen=127.0.0.1:$port" -o submission_listen= \
	-o submissions_listen= -o imap_listen= -o imaps_listen= -o pop3_listen= \
	-o pop3s_listen= -o http_listen= -o https_listen= -o lmtp_listen= \
	-o managesieve_listen= serve 2>"$dir/serve.log" &
pid=$!
python3 - "$port" <<'PY' || { cat "$dir/serve.log" >&2; die "serve did not start"; }
import socket, sys, time
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
            if s.recv(100).startswith(b"220"):
                s.sendall(b"QUIT\r\n")
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(1)
PY

now() { python3 -c 'import time; print("%.3f" % time.monotonic())'; }
# count ROOT TAG: messages in new/ and cur/ of every folder of the users
# KIND-TAG under ROOT (petrel's mail/example.test or dovecot/home)
count() {
	for k in $KINDS; do echo "$1/$k-$2"; done |
		xargs find 2>/dev/null | grep -cE '/(new|cur)/[^/]+$' || true
}
# wait_all ROOT TAG N T0: until N messages are there (TIMEOUT s at most)
wait_all() {
	while :; do
		n=$(count "$1" "$2")
		[ "$n" -ge "$3" ] && break
		python3 -c "import sys; sys.exit(0 if $(now) - $4 > $TIMEOUT else 1)" &&
			die "only $n of $3 messages delivered in $TIMEOUT s"
		sleep 0.1
	done
}
filed() {	# filed DIR: messages in the Maildir folder DIR
	find "$1" 2>/dev/null | grep -cE '/(new|cur)/[^/]+$' || true
}

echo "petrel: $PETREL (built $(date -r "$PETREL" '+%Y-%m-%d %H:%M'))"
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "smtp-source: $SESSIONS sessions in all, $MESSAGES messages to 4 users per measurement; $ROUNDS rounds"

petrel_run() {	# $1 = on|off, $2 = round; prints msgs/s
	tag=$2$1
	sync
	t0=$(now)
	pids=
	for k in $KINDS; do
		timeout "$TIMEOUT" "$SMTP_SOURCE" -s $((SESSIONS / 4)) -m $((MESSAGES / 4)) \
			-F "$sv/$k.eml" -f sender@x.test -t "$k-$tag@example.test" "127.0.0.1:$port" &
		pids="$pids $!"
	done
	for p in $pids; do wait "$p" || { tail -5 "$dir/serve.log" >&2; die "smtp-source failed"; }; done
	wait_all "$dir/mail/example.test" "$tag" "$MESSAGES" "$t0"
	t1=$(now)
	filed=$(filed "$dir/mail/example.test/list-$tag/.Lists.Dev")
	if [ "$1" = on ] && [ "$filed" -ne $((MESSAGES / 4)) ]; then die "sieve on: $filed messages in Lists.Dev, not $((MESSAGES / 4))"; fi
	if [ "$1" = off ] && [ "$filed" -ne 0 ]; then die "sieve off: $filed messages in Lists.Dev"; fi
	python3 -c "print('%.1f' % ($MESSAGES / ($t1 - $t0)))"
}

# Dovecot LDA + Pigeonhole, one process per message (dovecot-lda -f -a < file,
# as mail, with HOME the user's home), LDA_PAR at a time.
lda=$LEGACY/usr/lib/dovecot/dovecot-lda
lda_ok=
if [ "$LDA_MESSAGES" -gt 0 ] && [ -x "$lda" ] && [ -e "$LEGACY/usr/lib/dovecot/modules/lib90_sieve_plugin.so" ]; then
	dv=$dir/dovecot
	mkdir -p "$dv/run"
	cat >"$dv/base.conf" <<CONF
# settings that differ from Debian's: paths into the unpacked tree and this
# directory, no master process (so no auth: each delivery is run as the user)
base_dir = $dv/run
state_dir = $dv/run
log_path = $dv/lda.log
ssl = no
protocols =
mail_plugin_dir = $LEGACY/usr/lib/dovecot/modules
default_login_user = mail
default_internal_user = mail
mail_uid = mail
mail_gid = mail
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
postmaster_address = postmaster@example.test
CONF
	printf '!include %s/base.conf\nmail_plugins =\n' "$dv" >"$dv/off.conf"
	printf '!include %s/base.conf\nmail_plugins = sieve\nplugin {\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n}\n' "$dv" >"$dv/on.conf"
	r=1
	while [ $r -le "$ROUNDS" ]; do
		for k in $KINDS; do
			mkdir -p "$dv/home/$k-${r}off" "$dv/home/$k-${r}on/sieve"
			cp "$sv/rules.sieve" "$dv/home/$k-${r}on/sieve/rules.sieve"
			ln -s sieve/rules.sieve "$dv/home/$k-${r}on/.dovecot.sieve"
		done
		r=$((r + 1))
	done
	chown -R mail:mail "$dv"
	export LD_LIBRARY_PATH="$LEGACY/usr/lib/x86_64-linux-gnu:$LEGACY/usr/lib:$LEGACY/usr/lib/dovecot"
	if "$LEGACY/usr/bin/doveconf" -c "$dv/off.conf" -e "$LEGACY/usr/bin/sievec" \
		"$sv/rules.sieve" "$dv/check.svbin" >"$dv/sievec.log" 2>&1; then
		lda_ok=1
		ver=$(zcat "$LEGACY/usr/share/doc/dovecot-sieve/changelog.Debian.gz" 2>/dev/null | sed -n '1s/^dovecot (\([^)]*\)).*/\1/p')
		echo "dovecot-lda: $lda (Debian dovecot-core + dovecot-sieve ${ver:-?}), $LDA_MESSAGES messages per measurement, $LDA_PAR processes at a time"
	else
		cat "$dv/sievec.log" >&2
		echo "dovecot: Pigeonhole's sievec rejects the script or cannot run; Dovecot rows skipped"
	fi
elif [ "$LDA_MESSAGES" -gt 0 ]; then
	echo "dovecot: $lda or its sieve plugin not found (scripts/install-legacy-imap.sh); Dovecot rows skipped"
fi

lda_run() {	# $1 = on|off, $2 = round; prints msgs/s
	tag=$2$1
	sync
	python3 - "$1" "$tag" "$LDA_MESSAGES" "$LDA_PAR" "$dv" "$sv" "$LEGACY" "$lda" "$TIMEOUT" <<'PY'
import concurrent.futures, os, subprocess, sys, time
mode, tag, n, par, dv, sv, legacy, lda, timeout = sys.argv[1:]
n, par, timeout = int(n), int(par), float(timeout)
kinds = ["keep1", "keep2", "flagged", "list"]
msgs = {k: open(os.path.join(sv, k + ".eml"), "rb").read() for k in kinds}
conf = os.path.join(dv, mode + ".conf")
def one(i):
    k = kinds[i % 4]
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": os.environ["LD_LIBRARY_PATH"],
           "HOME": os.path.join(dv, "home", k + "-" + tag), "USER": "mail", "LC_ALL": "C"}
    cp = subprocess.run(["setpriv", "--reuid=mail", "--regid=mail", "--clear-groups",
                         os.path.join(legacy, "usr/bin/doveconf"), "-c", conf, "-e", lda,
                         "-f", "sender@x.test", "-a", k + "-" + tag + "@example.test"],
                        input=msgs[k], env=env, capture_output=True, timeout=timeout)
    if cp.returncode != 0:
        raise SystemExit("dovecot-lda exit %d: %s" % (cp.returncode, cp.stderr.decode()[-300:]))
t0 = time.monotonic()
with concurrent.futures.ThreadPoolExecutor(par) as ex:
    list(ex.map(one, range(n)))
t1 = time.monotonic()
print("%.1f" % (n / (t1 - t0)))
PY
	filed=$(filed "$dv/home/list-$tag/Maildir/.Lists.Dev")
	if [ "$1" = on ] && [ "$filed" -ne $((LDA_MESSAGES / 4)) ]; then die "dovecot sieve on: $filed messages in Lists.Dev"; fi
	if [ "$1" = off ] && [ "$filed" -ne 0 ]; then die "dovecot sieve off: $filed messages in Lists.Dev"; fi
	n=$(count "$dv/home" "$tag")
	[ "$n" -eq "$LDA_MESSAGES" ] || die "dovecot: $n of $LDA_MESSAGES delivered"
}

p_on= p_off= d_on= d_off=
r=1
while [ $r -le "$ROUNDS" ]; do
	if [ $((r % 2)) = 1 ]; then order="off on"; else order="on off"; fi
	for m in $order; do
		v=$(petrel_run "$m" $r)
		echo "RESULT round=$r server=petrel sieve=$m msgs_per_s=$v"
		if [ "$m" = on ]; then p_on="$p_on $v"; else p_off="$p_off $v"; fi
	done
	if [ -n "$lda_ok" ]; then
		for m in $order; do
			v=$(lda_run "$m" $r)
			echo "RESULT round=$r server=dovecot-lda sieve=$m msgs_per_s=$v"
			if [ "$m" = on ]; then d_on="$d_on $v"; else d_off="$d_off $v"; fi
		done
	fi
	r=$((r + 1))
done

python3 - "$p_off" "$p_on" "$d_off" "$d_on" <<'PY'
import statistics, sys
def row(name, off, on):
    off = [float(x) for x in off.split()]
    on = [float(x) for x in on.split()]
    if not off:
        return
    mo, mn = statistics.median(off), statistics.median(on)
    print("MEDIAN server=%s no_sieve=%.0f (%.0f-%.0f) sieve=%.0f (%.0f-%.0f) cost=%.1f%%"
          % (name, mo, min(off), max(off), mn, min(on), max(on), 100 * (mo - mn) / mo))
row("petrel", sys.argv[1], sys.argv[2])
row("dovecot-lda", sys.argv[3], sys.argv[4])
PY
