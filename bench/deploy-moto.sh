#!/usr/bin/env bash
# Times `wsctl deploy` of the fixture stack against a local moto server: cold (empty account)
# and warm (no change, which makes no mutating call). Usage: bench/deploy-moto.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
cargo build --release -p wsctl --quiet
bin=target/release/wsctl
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto=$!
trap 'kill $moto' EXIT
until curl -s "http://127.0.0.1:$port/moto-api/" >/dev/null; do sleep 0.1; done
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_CONFIG_FILE=/dev/null
deploy() { "$bin" -q -c tests/fixtures/stack.yaml --endpoint-url "http://127.0.0.1:$port" deploy --no-build >/dev/null; }
"$bin" -q -c tests/fixtures/stack.yaml build >/dev/null
# One untimed round: moto imports each service lazily on first use.
deploy; curl -s -X POST "http://127.0.0.1:$port/moto-api/reset" >/dev/null
cold=(); warm=()
for _ in $(seq "$runs"); do
  curl -s -X POST "http://127.0.0.1:$port/moto-api/reset" >/dev/null
  s=$(date +%s.%N); deploy; e=$(date +%s.%N); cold+=("$(echo "$e - $s" | bc)")
  s=$(date +%s.%N); deploy; e=$(date +%s.%N); warm+=("$(echo "$e - $s" | bc)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "deploy, empty account:                   median $(median "${cold[@]}") s over $runs runs"
echo "deploy, no change (0 mutating calls):  median $(median "${warm[@]}") s over $runs runs"
