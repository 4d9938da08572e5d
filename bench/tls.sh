#!/bin/sh
# bench/tls.sh: TLS handshakes per second on petrel's implicit-TLS
# listeners (imaps, pop3s, submissions), full against resumed, with
# `openssl s_time` (one client process, handshakes only, no payload):
# -new = a full handshake each time, -reuse = the first session resumed
# (TLS 1.2: session ticket; s_time does not read TLS 1.3's post-handshake
# tickets, so resumption is measured with TLS 1.2).
#
#   bench/tls.sh                 # SECONDS_EACH=10
#
# Env: PETREL (build/petrel), SECONDS_EACH (10), BENCH_DIR (/var/tmp).
# One s_time client process at a time: on a 2-CPU machine client and
# server share the CPUs, so these are lower bounds of what the server does.
# Output: one "RESULT listener=.. proto=.. mode=new|reuse conns=.. seconds=..
# conns_per_s=.." line each (handshakes over wall-clock seconds).
set -eu
# shellcheck disable=SC2034 # read by bench/lib.sh
bench_name=tls
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
SECONDS_EACH=${SECONDS_EACH:-10}
command -v openssl >/dev/null || die "needs openssl"

bench_instance tls
pi=$(free_port) pp=$(free_port) ps=$(free_port)
bench_serve -o "imaps_listen=127.0.0.1:$pi" -o "pop3s_listen=127.0.0.1:$pp" \
	-o "submissions_listen=127.0.0.1:$ps" -o imaps_max_connections_per_ip=100000 \
	-o pop3s_max_connections_per_ip=100000 -o submissions_max_connections_per_ip=100000
wait_greeting "$pi" "* OK" 20 tls
wait_greeting "$pp" "+OK" 20 tls
wait_greeting "$ps" 220 20 tls
bench_machine
echo "certificate: $(openssl x509 -in "$BDIR/petrel/tls/cert.pem" -noout -text | sed -n 's/.*Public Key Algorithm: //p; s/.*Public-Key: /key /p' | tr '\n' ' ')(petrel init's self-signed one)"
for l in imaps:$pi pop3s:$pp submissions:$ps; do
	name=${l%%:*} port=${l#*:}
	for proto in tls1_3 tls1_2; do
		for mode in new reuse; do
			[ "$proto:$mode" = tls1_3:reuse ] && continue
			t0=$(now)
			out=$(openssl s_time -connect "127.0.0.1:$port" -"$proto" -"$mode" \
				-time "$SECONDS_EACH" 2>&1) || true
			t1=$(now)
			# the handshakes s_time counted, over the wall-clock time
			# of the run (its own rate is per second of client CPU)
			n=$(echo "$out" | sed -n 's/^\([0-9]*\) connections in [0-9.]*s;.*/\1/p' | head -1)
			[ -n "$n" ] || { echo "$out" | tail -5 >&2; die "s_time failed on $name"; }
			echo "RESULT listener=$name proto=$proto mode=$mode conns=$n seconds=$("$PY" -c "print('%.2f' % ($t1 - $t0))") conns_per_s=$("$PY" -c "print('%.0f' % ($n / ($t1 - $t0)))")"
		done
	done
done
