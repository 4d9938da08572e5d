#!/usr/bin/env bash
# Install, build, create a demo instance in ./demo (domain example.test, one
# user whose password is printed) and run `petrel serve` in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/build.sh
P="$PWD/build/petrel"
D="$PWD/demo"
"$P" init --dir "$D" --domain example.test
pw=$(head -c 12 /dev/urandom | base64 | tr -d '/+=' | head -c 16)
if "$P" -c "$D/petrel.conf" user show demo@example.test >/dev/null 2>&1; then
	printf '%s\n' "$pw" | "$P" -c "$D/petrel.conf" user passwd demo@example.test
else
	printf '%s\n' "$pw" | "$P" -c "$D/petrel.conf" user add demo@example.test \
		--password-stdin --name "Demo User"
fi
echo
echo "demo user: demo@example.test   password: $pw"
echo "config:    $D/petrel.conf"
echo
exec "$P" -c "$D/petrel.conf" serve
