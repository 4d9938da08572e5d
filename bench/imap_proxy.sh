#!/bin/sh
# bench/imap_proxy.sh: what the frontend's IMAP proxy (issue "scale-out")
# adds to each command and to each login: one client runs the same
# commands against a backend directly and through a frontend that proxies
# to it, alternating, in one run.
#
#   bench/imap_proxy.sh                 # 200 messages, 300 rounds, 3 passes
#   MSGS=1000 ROUNDS=500 PASSES=5 bench/imap_proxy.sh
#
# One `petrel init` instance: user u0 with MSGS "real" messages
# (bench/compare/mailgen.py). The backend is `petrel serve` with IMAP on
# 127.0.0.2 (role = backend, proxy_secret, proxy_trusted_networks =
# 127.0.0.1); the frontend a second `petrel serve` of the same instance
# with role = frontend, IMAP on 127.0.0.1 and backend_default = 127.0.0.2.
# The backend offers STARTTLS, so the frontend's leg to it is TLS, as in
# production; the client's leg is plain loopback on both paths.
#
# Per pass and path: LOGIN + SELECT INBOX + LOGOUT on a new connection
# (ROUNDS/10 times), then in one session ROUNDS rounds of NOOP, UID FETCH
# 1:* (FLAGS), FETCH of one message's BODY.PEEK[] (rotating), UID SEARCH
# UNSEEN and STORE +FLAGS/-FLAGS \Flagged; the median wall time of each.
#
# Env: PETREL (build/petrel), MSGS (200), ROUNDS (300), PASSES (3),
#      BENCH_DIR (/var/tmp), PY (/usr/bin/python3).
# Output: "RESULT cmd=C direct_ms=D frontend_ms=F added_ms=A" lines (the
# median over the passes of each pass's median).
set -eu
# shellcheck disable=SC2034 # read by bench/lib.sh
bench_name=imap_proxy
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
MSGS=${MSGS:-200}
ROUNDS=${ROUNDS:-300}
PASSES=${PASSES:-3}
SECRET=bench-proxy-secret

bench_instance imap_proxy
printf '%s\n' bench-password | "$PETREL" -c "$CONF" user add "tmpl@$DOMAIN" \
	--password-stdin >>"$BDIR/init.log" 2>&1 || die "petrel user add failed"
"$PY" "$bench_top/bench/compare/mailgen.py" "$DB" "tmpl@$DOMAIN" "$DOMAIN" "$ROOT" \
	"u0:$MSGS:real" >>"$BDIR/init.log" 2>&1 || { tail -5 "$BDIR/init.log" >&2; die "mailgen.py failed"; }
bport=$(free_port)
fport=$(free_port)
FE_PID=
bench_extra_cleanup='stop_pid "$FE_PID" "the frontend"'
bench_serve -o "imap_listen=127.0.0.2:$bport" -o role=backend -o "proxy_secret=$SECRET" \
	-o proxy_trusted_networks=127.0.0.1 -o allow_plaintext_auth=yes \
	-o imap_max_connections_per_ip=1000
"$PETREL" -c "$CONF" -o role=frontend -o backend_default=127.0.0.2 \
	-o "backend_ports=24,$bport,110,4190" -o "proxy_secret=$SECRET" \
	-o "imap_listen=127.0.0.1:$fport" -o allow_plaintext_auth=yes \
	-o imap_max_connections_per_ip=1000 -o smtp_listen= -o submission_listen= \
	-o submissions_listen= -o imaps_listen= -o pop3_listen= -o pop3s_listen= \
	-o http_listen= -o https_listen= -o lmtp_listen= -o managesieve_listen= \
	serve 2>>"$BDIR/frontend.log" &
FE_PID=$!
wait_greeting "$fport" "* OK" || { tail -5 "$BDIR/frontend.log" >&2; die "the frontend did not start"; }
bench_machine
echo "load: u0@$DOMAIN with $MSGS messages; $PASSES passes of $ROUNDS command rounds and $((ROUNDS / 10)) logins, direct (127.0.0.2:$bport) and through the frontend (127.0.0.1:$fport) alternating"

"$PY" - "$bport" "$fport" "$ROUNDS" "$PASSES" "u0@$DOMAIN" <<'PYEOF' ||
import imaplib, statistics, sys, time

bport, fport, rounds, passes, user = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                      int(sys.argv[4]), sys.argv[5])
PATHS = {"direct": ("127.0.0.2", bport), "frontend": ("127.0.0.1", fport)}
CMDS = ["login", "noop", "uid_fetch_flags", "fetch_body", "uid_search_unseen", "store"]


def timed(fn):
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def ok(r):
    typ, data = r
    if typ != "OK":
        raise SystemExit("imap_proxy.sh: %r" % (data,))
    return data


def one_pass(host, port):
    t = {c: [] for c in CMDS}
    for _ in range(max(1, rounds // 10)):
        def login():
            c = imaplib.IMAP4(host, port, timeout=30)
            ok(c.login(user, "bench-password"))
            ok(c.select("INBOX"))
            c.logout()
        t["login"].append(timed(login))
    c = imaplib.IMAP4(host, port, timeout=30)
    ok(c.login(user, "bench-password"))
    n = int(ok(c.select("INBOX"))[0])
    for i in range(rounds):
        t["noop"].append(timed(lambda: ok(c.noop())))
        t["uid_fetch_flags"].append(timed(lambda: ok(c.uid("FETCH", "1:*", "(FLAGS)"))))
        seq = str(1 + i % n)
        t["fetch_body"].append(timed(lambda: ok(c.fetch(seq, "(BODY.PEEK[])"))))
        t["uid_search_unseen"].append(timed(lambda: ok(c.uid("SEARCH", "UNSEEN"))))
        op = "+FLAGS" if i % 2 == 0 else "-FLAGS"
        t["store"].append(timed(lambda: ok(c.store(seq, op, "(\\Flagged)"))))
    c.logout()
    return {k: statistics.median(v) for k, v in t.items()}


res = {p: {c: [] for c in CMDS} for p in PATHS}
for k in range(passes):
    for p, (host, port) in PATHS.items():
        m = one_pass(host, port)
        for c in CMDS:
            res[p][c].append(m[c])
        print("pass %d %s: %s" % (k + 1, p, ", ".join("%s %.3f ms" % (c, m[c]) for c in CMDS)))
for c in CMDS:
    d, f = statistics.median(res["direct"][c]), statistics.median(res["frontend"][c])
    print("RESULT cmd=%s direct_ms=%.3f frontend_ms=%.3f added_ms=%.3f" % (c, d, f, f - d))
PYEOF
	{ tail -5 "$BDIR/serve.log" "$BDIR/frontend.log" >&2; die "the client failed"; }
