#!/bin/sh
# bench/index_scale.sh: does the cost of one change grow with the folder?
#
# For each N in NS, one user whose INBOX holds N small messages (about
# 300 bytes each, named as deliveries name them,
# "<time>.M<usec>P<pid>Q<n>.<host>,S=<size>,W=<vsize>:2,<flags>", some
# with flags), written straight into cur/ before the server starts (fast:
# no realistic bodies, nothing for petrel to parse). A plain-IMAP `petrel serve` on a free loopback
# port is then started, and a Python imaplib client does, per folder:
#   setup:    SELECT INBOX once (the index is built; timed, not a figure)
#   STORE:    UID STORE <uid> +FLAGS (\Flagged), then -FLAGS, on random
#             messages, one command at a time
#   EXPUNGE:  UID STORE <uid> +FLAGS.SILENT (\Deleted) + EXPUNGE, timed
#             as a whole (one message gone per round)
#   deliver:  a message written to tmp/ and renamed into new/ (as a
#             delivery does), then NOOP until "EXISTS" is seen; the time
#             from the rename to the NOOP's tagged OK
#   peer:     after each STORE above, a second session on the same
#             folder sends NOOP and gets the FETCH FLAGS (another
#             session picking up a change)
# Figures are per operation in milliseconds: the median and the 90th
# percentile of ROUNDS rounds. Also the server's RSS per session with the
# folder open (from /proc, the worker's VmRSS growth after SELECT).
#
# The folders are kept in BENCH_DATA between runs (making 1,000,000 files
# takes minutes); `rm -rf` it when done. With FRESH=1 the petrel-index,
# petrel-index.log and petrel-cache files are removed before the run (a
# cold first SELECT).
#
# With DOVECOT=1, Dovecot's imap (the unpacked Debian package under
# PETREL_LEGACY_DIR, /opt/petrel-legacy: scripts/install-legacy-imap.sh)
# runs beside petrel on its own copy of each folder (BENCH_DATA/dovecot/
# home/sN: cur/ and new/ hard-linked from petrel's at its first run, then
# kept; a flag change renames and an expunge unlinks in one copy only, so
# the two stay apart; Dovecot's dovecot.index*, dovecot-uidlist live there,
# outside petrel's folder), with a master, imap-login, a passwd-file and
# one imap process per session, on a free 127.0.0.1 port. Both servers run
# for the whole run; for each N, petrel then Dovecot get the ops above plus
#   select_cold: petrel-index*, petrel-cache (petrel) or dovecot.index*
#             and dovecot-uidlist (Dovecot) removed before the servers
#             start; one SELECT on a new session, once per N
#   select_warm: SELECT INBOX on a new session, ROUNDS times
#   fetch_env: UID FETCH of the last 100 UIDs (ENVELOPE), ROUNDS times
#   mem10:    10 sessions SELECT INBOX; RSS and PSS (/proc/PID/smaps_rollup)
#             summed over the server's processes, their growth since before
#             the folder was first opened (petrel: `serve` and its workers)
#             or their total (Dovecot: the 10 imap processes, one per
#             session), divided by 10, in MB per session
# and every line gets a server column (petrel / dovecot). DOVECOT=1 needs
# folders made by this version (names with Q<n>): refuses others.
#
#   bench/index_scale.sh                          # N = 1000 100000 1000000
#   NS="1000 100000" ROUNDS=50 bench/index_scale.sh
#   NS="1000 100000" DOVECOT=1 bench/index_scale.sh
#
# Env: PETREL_BIN (default build/petrel), NS, ROUNDS (20), BENCH_DATA
#      (.bench-data under the source tree), PYTHON (/usr/bin/python3),
#      DOVECOT (0), PETREL_LEGACY_DIR (/opt/petrel-legacy).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
PETREL=${PETREL_BIN:-$here/../build/petrel}
NS=${NS:-1000 100000 1000000}
ROUNDS=${ROUNDS:-20}
BENCH_DATA=${BENCH_DATA:-$here/../.bench-data}
PY=${PYTHON:-/usr/bin/python3}
DOVECOT=${DOVECOT:-0}
LEGACY=${PETREL_LEGACY_DIR:-/opt/petrel-legacy}

die() { echo "index_scale.sh: $*" >&2; exit 1; }
[ -x "$PETREL" ] || die "no petrel binary at $PETREL (ninja -C build)"
if [ "$DOVECOT" = 1 ]; then
	for f in usr/sbin/dovecot usr/bin/doveconf usr/lib/dovecot/imap usr/lib/dovecot/imap-login; do
		[ -x "$LEGACY/$f" ] || die "DOVECOT=1: no $LEGACY/$f (scripts/install-legacy-imap.sh)"
	done
	# Dovecot's master looks for its services and modules under
	# /usr/lib/dovecot (compiled in): it runs in a mount namespace of its
	# own where /usr/lib is an overlay of the system's and $LEGACY/usr/lib
	[ "$(id -u)" = 0 ] || die "DOVECOT=1 must run as root (Dovecot's master, its private mount)"
	command -v unshare >/dev/null || die "DOVECOT=1 needs unshare (util-linux)"
fi

mkdir -p "$BENCH_DATA"
dir=$(cd "$BENCH_DATA" && pwd)/instance
dvdir=$(cd "$BENCH_DATA" && pwd)/dovecot
dvhome=$dvdir/home
pid=
dvpid=
dvrun=
# alive PID: the process exists and is not a zombie
alive() {
	[ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | grep -q '^Z'
}
# stop_pid PID: TERM, up to 10 s, then KILL
stop_pid() {
	[ -n "$1" ] && alive "$1" || return 0
	kill -TERM "$1" 2>/dev/null || true
	i=0
	while alive "$1" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	if [ -n "$dvpid" ]; then
		# the master stops its services; any left after it are stopped too
		kids=$(ps -o pid= --ppid "$dvpid" 2>/dev/null || true)
		stop_pid "$dvpid"
		for k in $kids; do stop_pid "$k"; done
	fi
	if [ -n "$dvrun" ]; then rm -rf "$dvrun"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -f "$dir/petrel.conf" ]; then
	rm -rf "$dir"
	mkdir -p "$dir"
	chmod 755 "$dir"
	"$PETREL" init --dir "$dir" --domain bench.test >/dev/null 2>"$dir/init.log" ||
		{ cat "$dir/init.log" >&2; exit 1; }
fi
conf=$dir/petrel.conf
mail_root=$(sed -n 's/^mail_root *= *//p' "$conf")

for n in $NS; do
	md=$mail_root/bench.test/s$n
	if [ ! -f "$md/.bench-complete" ]; then
		printf 'pw\n' | "$PETREL" -c "$conf" user add "s$n@bench.test" \
			--password-stdin >/dev/null 2>&1 || true
		[ -d "$md/cur" ] || die "no maildir $md after user add"
		echo "making $n messages in $md ..." >&2
		"$PY" - "$md" "$n" <<'EOF' || die "filling the maildir failed"
import os, sys

md, n = sys.argv[1], int(sys.argv[2])
st = os.stat(md)
cur = os.path.join(md, "cur")
t0 = 1700000000
for i in range(n):
    ts = t0 + i
    data = ("From: a%d@example.org\nTo: s%d@bench.test\nSubject: message %d\n"
            "Date: Tue, 14 Nov 2023 22:13:20 +0000\nMessage-ID: <%d@bench.test>\n\n"
            "Body of message %d.\n" % (i % 97, n, i, i, i)).encode()
    flags = "S" if i % 3 else "" if i % 5 else "RS"
    # as a delivery agent names them: a process delivers a few in a row
    name = "%d.M%dP%dQ%d.bench.test,S=%d,W=%d:2,%s" % (
        ts, (i * 7919) % 1000000, 2000 + (i // 8) % 30000, i % 8 + 1, len(data),
        len(data) + data.count(b"\n"), flags)
    fd = os.open(os.path.join(cur, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    os.close(fd)
    if st.st_uid != os.getuid():
        os.chown(os.path.join(cur, name), st.st_uid, st.st_gid)
EOF
		touch "$md/.bench-complete"
	fi
	if [ "${FRESH:-0}" = 1 ]; then
		rm -f "$md/petrel-index" "$md/petrel-index.log" "$md/petrel-cache"
	fi
	[ "$DOVECOT" = 1 ] || continue
	# the names must be a delivery's for both servers (older versions of
	# this script wrote others)
	bad=$("$PY" - "$md/cur" <<'EOF'
import os, re, sys

pat = re.compile(r"[0-9]+\.M[0-9]+P[0-9]+Q[0-9]+\.[^,:/]+,S=[0-9]+,W=[0-9]+(:2,[A-Za-z]*)?\Z")
with os.scandir(sys.argv[1]) as it:
    for k, e in enumerate(it):
        if k >= 5000:
            break
        if not pat.match(e.name):
            print(e.name)
            break
EOF
) || die "could not list $md/cur"
	[ -z "$bad" ] || die "DOVECOT=1: $md/cur was filled by an older index_scale.sh (a name such as '$bad', not <time>.M<usec>P<pid>Q<n>.<host>,S=,W=:2,<flags>); rm -rf $BENCH_DATA and run again"
	# Dovecot's own copy: hard links to the same files, its own directories
	dvm=$dvhome/s$n
	if [ ! -f "$dvm/.bench-complete" ]; then
		echo "linking $n messages into $dvm ..." >&2
		rm -rf "$dvm"
		mkdir -p "$dvm/cur" "$dvm/new" "$dvm/tmp"
		cp -al "$md/cur/." "$dvm/cur/" && cp -al "$md/new/." "$dvm/new/" ||
			die "linking $md into $dvm failed"
		chown "$(stat -c %u:%g "$md")" "$dvhome" "$dvm" "$dvm/cur" "$dvm/new" "$dvm/tmp"
		touch "$dvm/.bench-complete"
	fi
	# select_cold: no index for either server's first SELECT of this run
	rm -f "$md"/petrel-index* "$md/petrel-cache" "$dvm"/dovecot.index* \
		"$dvm/dovecot-uidlist"
done

port=$(PYTHONPATH="$here/../tests" "$PY" -c 'from harness.ports import free_port; print(free_port())')
"$PETREL" -c "$conf" -o "imap_listen=127.0.0.1:$port" -o imaps_listen= -o smtp_listen= \
	-o submission_listen= -o submissions_listen= -o pop3_listen= -o pop3s_listen= -o http_listen= \
	-o https_listen= -o lmtp_listen= -o managesieve_listen= \
	-o allow_plaintext_auth=yes -o log_level=warning serve 2>"$dir/serve.log" &
pid=$!

if [ "$DOVECOT" = 1 ]; then
	# Dovecot 2.3 with Debian's defaults except: its own base_dir, state_dir
	# and log; plain IMAP on 127.0.0.1 only (ssl = no, plaintext LOGIN
	# allowed); users from a passwd-file ({PLAIN}pw) with a static userdb
	# (the uid/gid owning petrel's maildirs, home = Dovecot's copy of the
	# folder, mail_location = maildir:~/); internal user that same account,
	# login user nobody (no dovecot/dovenull accounts here); no vsz_limit
	# for imap (256 MB by default: a 1,000,000-message folder needs more);
	# mail_max_userip_connections 20 (10 by default: mem10's 10 sessions
	# plus two still logging out).
	set -- $NS
	dvuid=$(stat -c %u "$mail_root/bench.test/s$1")
	dvgid=$(stat -c %g "$mail_root/bench.test/s$1")
	[ "$dvuid" != 0 ] || die "DOVECOT=1: the maildirs belong to root; Dovecot will not serve them"
	dvuser=$(getent passwd "$dvuid" | cut -d: -f1)
	dvgroup=$(getent group "$dvgid" | cut -d: -f1)
	[ -n "$dvuser" ] && [ -n "$dvgroup" ] || die "DOVECOT=1: no account for uid $dvuid / gid $dvgid"
	dvrun=$(mktemp -d /tmp/petrel-dv.XXXXXX)
	chmod 755 "$dvrun"
	dport=$(PYTHONPATH="$here/../tests" "$PY" -c 'from harness.ports import free_port; print(free_port())')
	for n in $NS; do printf 's%s@bench.test:{PLAIN}pw\n' "$n"; done >"$dvdir/passwd"
	cat >"$dvdir/dovecot.conf" <<EOF
# written by bench/index_scale.sh (DOVECOT=1)
base_dir = $dvrun
state_dir = $dvrun
instance_name = index-scale-$$
log_path = $dvdir/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = $dvuser
default_internal_group = $dvgroup
default_login_user = nobody
import_environment = TZ CORE_OUTOFMEM CORE_ERROR LD_LIBRARY_PATH
first_valid_uid = $dvuid
mail_location = maildir:~/
passdb {
  driver = passwd-file
  args = $dvdir/passwd
}
userdb {
  driver = static
  args = uid=$dvuid gid=$dvgid home=$dvhome/%n
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $dport
  }
  inet_listener imaps {
    port = 0
  }
}
service imap {
  vsz_limit = 0
}
protocol imap {
  mail_max_userip_connections = 20
}
EOF
	: >"$dvdir/dovecot.log"
	LD_LIBRARY_PATH="$LEGACY/usr/lib/x86_64-linux-gnu:$LEGACY/usr/lib:$LEGACY/usr/lib/dovecot" \
		unshare -m --propagation private sh -c \
		'mount -t overlay petrel-legacy -o "lowerdir=/usr/lib:$1/usr/lib" /usr/lib &&
		 exec "$1/usr/bin/doveconf" -c "$2" -e "$1/usr/sbin/dovecot" -F -c "$2"' \
		sh "$LEGACY" "$dvdir/dovecot.conf" 2>"$dvdir/stderr.log" &
	dvpid=$!
	dvver=$(zcat "$LEGACY/usr/share/doc/dovecot-core/changelog.Debian.gz" 2>/dev/null |
		sed -n '1s/^dovecot (\([^)]*\)).*/\1/p')
	echo "petrel: $PETREL (built $(date -r "$PETREL" '+%Y-%m-%d %H:%M')); dovecot: ${dvver:-?} ($LEGACY); $(nproc) CPUs; $ROUNDS rounds"
	"$PY" - "$ROUNDS" "$port" "$pid" "$mail_root/bench.test" "$dport" "$dvpid" "$dvhome" $NS <<'EOF' ||
import imaplib, os, random, re, socket, statistics, sys, time

imaplib._MAXLINE = 1 << 30
rounds = int(sys.argv[1])
servers = [("petrel", int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]),
           ("dovecot", int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])]
ns = [int(x) for x in sys.argv[8:]]
IO_TIMEOUT = 3600   # a cold SELECT of 1,000,000 messages takes long


def greet(name, port, pid):
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(5)
                if s.recv(100).startswith(b"* OK"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline or not os.path.exists("/proc/%d" % pid):
            sys.exit("index_scale.sh: %s did not greet on port %d" % (name, port))
        time.sleep(0.05)


def tree(master):
    """[(pid, comm)] of master and its descendants, zombies left out."""
    info, kids = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2:].split()
        info[int(d)] = (s[s.index("(") + 1:s.rindex(")")], rest[0])
        kids.setdefault(int(rest[1]), []).append(int(d))
    out, todo = [], [master]
    while todo:
        p = todo.pop()
        if p in info and info[p][1] != "Z":
            out.append((p, info[p][0]))
        todo.extend(kids.get(p, []))
    return out


def counted(name, master):
    """The processes whose memory is summed: petrel's whole tree (serve and
    its workers), Dovecot's imap processes (one per session)."""
    t = tree(master)
    if name == "dovecot":
        return [p for p, comm in t if comm == "imap"]
    return [p for p, comm in t]


def mem_kb(pids):
    rss = pss = 0
    for p in pids:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def quiesce(name, master):
    """Wait (at most 10 s) for the sessions of the last round to be gone."""
    deadline = time.monotonic() + 10
    while name == "dovecot" and counted(name, master) and time.monotonic() < deadline:
        time.sleep(0.05)


def ms(xs):
    xs = sorted(xs)
    return "%8.2f %8.2f" % (statistics.median(xs) * 1e3, xs[int(len(xs) * 0.9)] * 1e3)


def row(n, name, op, vals, note=""):
    print("%-9d %-8s %-11s %s%s" % (n, name, op, vals, "  " + note if note else ""), flush=True)


def session(port, user):
    m = imaplib.IMAP4("127.0.0.1", port, timeout=IO_TIMEOUT)
    typ, data = m.login(user, "pw")
    assert typ == "OK", data
    return m


def select(m):
    typ, data = m.select("INBOX")
    assert typ == "OK", data
    return int(data[0])


def uids_of(m):
    typ, data = m.uid("SEARCH", "ALL")
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]


for name, port, master, root in servers:
    greet(name, port, master)
print("%-9s %-8s %-11s %8s %8s" % ("N", "server", "op", "median", "p90"),
      "(ms per operation; mem10: MB per session, RSS and PSS)")
for n in ns:
    for name, port, master, root in servers:
        md = os.path.join(root, "s%d" % n)
        user = "s%d@bench.test" % n
        quiesce(name, master)
        base = mem_kb(counted(name, master))
        base_tree = mem_kb([p for p, c in tree(master)])

        m = session(port, user)
        t = time.perf_counter()
        count = select(m)
        cold = time.perf_counter() - t
        m.logout()
        row(n, name, "select_cold", "%8.2f %8s" % (cold * 1e3, ""),
            "(%d messages; index removed before the start; once)" % count)

        warm = []
        for r in range(rounds):
            m = session(port, user)
            t = time.perf_counter()
            select(m)
            warm.append(time.perf_counter() - t)
            m.logout()
        row(n, name, "select_warm", ms(warm))

        a = session(port, user)
        select(a)
        b = session(port, user)
        select(b)
        uids = uids_of(a)
        rnd = random.Random(n)

        store, peer = [], []
        for r in range(rounds):
            uid = rnd.choice(uids)
            for sign in "+-":
                t = time.perf_counter()
                typ, data = a.uid("STORE", str(uid), sign + "FLAGS", "(\\Flagged)")
                store.append(time.perf_counter() - t)
                assert typ == "OK", data
                t = time.perf_counter()
                typ, data = b.noop()
                peer.append(time.perf_counter() - t)
                assert typ == "OK", data
        row(n, name, "store", ms(store))
        row(n, name, "peer", ms(peer))

        expunge = []
        for r in range(rounds):
            uid = uids.pop(rnd.randrange(len(uids)))
            t = time.perf_counter()
            typ, data = a.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
            assert typ == "OK", data
            typ, data = a.expunge()
            expunge.append(time.perf_counter() - t)
            assert typ == "OK" and data[0] is not None, data
            b.noop()
        row(n, name, "expunge", ms(expunge))

        deliver = []
        for r in range(rounds):
            body = b"Subject: new %d\n\nA new message here.\n" % r
            now = time.time()
            fname = "%d.M%dP%dQ%d.bench.test,S=%d,W=%d" % (
                int(now), int(now * 1e6) % 1000000, os.getpid(), r + 1, len(body),
                len(body) + body.count(b"\n"))
            tmp = os.path.join(md, "tmp", fname)
            with open(tmp, "wb") as f:
                f.write(body)
            st = os.stat(md)
            if st.st_uid != os.getuid():
                os.chown(tmp, st.st_uid, st.st_gid)
            t = time.perf_counter()
            os.rename(tmp, os.path.join(md, "new", fname))
            seen = False
            limit = time.monotonic() + 120
            while not seen:
                if time.monotonic() > limit:
                    sys.exit("index_scale.sh: %s: no EXISTS 120 s after a delivery" % name)
                typ, data = a.noop()
                assert typ == "OK", data
                seen = "EXISTS" in a.untagged_responses
                a.untagged_responses.pop("EXISTS", None)
                a.untagged_responses.pop("RECENT", None)
            deliver.append(time.perf_counter() - t)
            b.noop()
        row(n, name, "deliver", ms(deliver))

        last = uids_of(a)[-100:]
        spec = "%d:%d" % (last[0], last[-1])
        fetch = []
        for r in range(rounds):
            t = time.perf_counter()
            typ, data = a.uid("FETCH", spec, "(ENVELOPE)")
            fetch.append(time.perf_counter() - t)
            assert typ == "OK", data
            got = sum(1 for d in data if isinstance(d, tuple) or
                      (isinstance(d, bytes) and re.match(rb"\d+ \(", d)))
            assert got == len(last), (got, len(last))
        row(n, name, "fetch_env", ms(fetch), "(UID FETCH %s (ENVELOPE): %d messages)" % (spec, len(last)))
        a.logout()
        b.logout()

        quiesce(name, master)
        ten = []
        try:
            for i in range(10):
                ten.append(session(port, user))
                select(ten[-1])
            pids = counted(name, master)
            rss, pss = mem_kb(pids)
            rss_t, pss_t = mem_kb([p for p, c in tree(master)])
        finally:
            for m in ten:
                m.logout()
        if name == "dovecot":
            what = "sum over its %d imap processes" % len(pids)
        else:
            what = "growth of the sum over serve + %d workers since before the first SELECT" % (len(pids) - 1)
        row(n, name, "mem10", "%8.1f %8.1f" % ((rss - base[0]) / 10240, (pss - base[1]) / 10240),
            "(%s, / 10; whole tree RSS +%.1f MB, PSS +%.1f MB)"
            % (what, (rss_t - base_tree[0]) / 1024, (pss_t - base_tree[1]) / 1024))
EOF
		{ echo "index_scale.sh: the measuring client failed; server logs:" >&2
		  tail -n 20 "$dir/serve.log" "$dvdir/dovecot.log" "$dvdir/stderr.log" >&2; exit 1; }
	exit 0
fi

echo "petrel: $PETREL (built $(date -r "$PETREL" '+%Y-%m-%d %H:%M')); $(nproc) CPUs; $ROUNDS rounds"
"$PY" - "$port" "$pid" "$mail_root/bench.test" "$ROUNDS" $NS <<'EOF' ||
import imaplib, os, random, re, socket, statistics, sys, time

imaplib._MAXLINE = 1 << 30
port, master, root, rounds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
ns = [int(x) for x in sys.argv[5:]]

deadline = time.monotonic() + 15
while True:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            if s.recv(100).startswith(b"* OK"):
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("index_scale.sh: petrel serve did not greet")
    time.sleep(0.05)


def workers():
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(st[1]) == master:
            out.append(int(d))
    return out


def rss_kb():
    total = 0
    for w in workers():
        try:
            with open("/proc/%d/status" % w) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def ms(xs):
    xs = sorted(xs)
    return "%8.2f %8.2f" % (statistics.median(xs) * 1e3, xs[int(len(xs) * 0.9)] * 1e3)


def uids_of(m):
    typ, data = m.uid("SEARCH", "ALL")
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]


print("%-9s %-8s %8s %8s" % ("N", "op", "median", "p90"), "(ms per operation)")
for n in ns:
    md = os.path.join(root, "s%d" % n)
    user = "s%d@bench.test" % n
    a = imaplib.IMAP4("127.0.0.1", port, timeout=3600)
    a.login(user, "pw")
    b = imaplib.IMAP4("127.0.0.1", port, timeout=3600)
    b.login(user, "pw")
    rss0 = rss_kb()
    t0 = time.perf_counter()
    typ, data = a.select("INBOX")
    t1 = time.perf_counter()
    assert typ == "OK", data
    typ, data = b.select("INBOX")
    assert typ == "OK", data
    rss1 = rss_kb()
    count = int(data[0])
    uids = uids_of(a)
    print("%-9d %-8s %8.2f %8s  (%d messages; RSS +%.1f MB for 2 sessions)"
          % (n, "select", (t1 - t0) * 1e3, "", count, (rss1 - rss0) / 1024), flush=True)
    rnd = random.Random(n)

    store, peer = [], []
    for r in range(rounds):
        uid = rnd.choice(uids)
        for sign in "+-":
            t = time.perf_counter()
            typ, data = a.uid("STORE", str(uid), sign + "FLAGS", "(\\Flagged)")
            store.append(time.perf_counter() - t)
            assert typ == "OK", data
            t = time.perf_counter()
            typ, data = b.noop()
            peer.append(time.perf_counter() - t)
            assert typ == "OK", data
    print("%-9d %-8s %s" % (n, "store", ms(store)), flush=True)
    print("%-9d %-8s %s" % (n, "peer", ms(peer)), flush=True)

    expunge = []
    for r in range(rounds):
        uid = uids.pop(rnd.randrange(len(uids)))
        t = time.perf_counter()
        typ, data = a.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
        assert typ == "OK", data
        typ, data = a.expunge()
        expunge.append(time.perf_counter() - t)
        assert typ == "OK" and data[0] is not None, data
        b.noop()
    print("%-9d %-8s %s" % (n, "expunge", ms(expunge)), flush=True)

    deliver = []
    for r in range(rounds):
        body = b"Subject: new %d\n\nA new message here.\n" % r
        now = time.time()
        name = "%d.M%dP%dQ%d.bench.test,S=%d,W=%d" % (
            int(now), int(now * 1e6) % 1000000, os.getpid(), r + 1, len(body),
            len(body) + body.count(b"\n"))
        tmp = os.path.join(md, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(body)
        st = os.stat(md)
        if st.st_uid != os.getuid():
            os.chown(tmp, st.st_uid, st.st_gid)
        t = time.perf_counter()
        os.rename(tmp, os.path.join(md, "new", name))
        seen = False
        limit = time.monotonic() + 120
        while not seen:
            if time.monotonic() > limit:
                sys.exit("index_scale.sh: no EXISTS 120 s after a delivery")
            typ, data = a.noop()
            assert typ == "OK", data
            seen = "EXISTS" in a.untagged_responses
            a.untagged_responses.pop("EXISTS", None)
            a.untagged_responses.pop("RECENT", None)
        deliver.append(time.perf_counter() - t)
        b.noop()
    print("%-9d %-8s %s" % (n, "deliver", ms(deliver)), flush=True)
    a.logout()
    b.logout()
EOF
	{ echo "index_scale.sh: the measuring client failed; server log:" >&2
	  tail -20 "$dir/serve.log" >&2; exit 1; }
