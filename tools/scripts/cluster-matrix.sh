#!/usr/bin/env bash
# The load matrix of the cluster issue: a three-member strata cluster and a
# three-member etcd cluster (Debian's etcd 3.4 unless ETCD says otherwise)
# on loopback, with the same election settings (etcd's defaults), both
# running at once; then tools/scripts/load-matrix.sh over them (alternating
# rounds, ROUNDS and ROWS passed through). Each line's server_cpu_ticks is
# the sum over the three members (10 ms ticks).
#   usage: ROUNDS=3 tools/scripts/cluster-matrix.sh [STRATA_BIN]
# Data dirs are made under ${TMPDIR:-/tmp} and removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
strata=${1:-target/release/strata}
etcd=${ETCD:-/usr/bin/etcd}
export ETCDCTL_API=3
dir=$(mktemp -d)
pids=()
cleanup() { kill -9 "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM

start() { # name bin base -> endpoints in $dir/name.eps, pids in $dir/name.pids
  local name=$1 bin=$2 base=$3 ic="" eps=""
  for i in 0 1 2; do ic="$ic${ic:+,}m$i=http://127.0.0.1:$((base + 2 * i + 1))"; done
  mkdir -p "$dir/$name"
  for i in 0 1 2; do
    local c=$((base + 2 * i)) p=$((base + 2 * i + 1))
    "$bin" --name "m$i" --data-dir "$dir/$name/m$i" --listen-client-urls "http://127.0.0.1:$c" \
      --advertise-client-urls "http://127.0.0.1:$c" --listen-peer-urls "http://127.0.0.1:$p" \
      --initial-advertise-peer-urls "http://127.0.0.1:$p" --initial-cluster "$ic" \
      --initial-cluster-token "matrix-$name" > "$dir/$name/m$i.log" 2>&1 &
    pids+=($!)
    echo -n "${eps:+,}" >> "$dir/$name.pids"; echo -n $! >> "$dir/$name.pids"
    eps="$eps${eps:+,}127.0.0.1:$c"
  done
  echo -n "$eps" > "$dir/$name.eps"
}

ready() { # endpoints: every member answers and there is a leader
  for _ in $(seq 1 100); do
    if etcdctl --endpoints "$1" --command-timeout=1s endpoint health >/dev/null 2>&1 \
      && etcdctl --endpoints "${1%%,*}" --command-timeout=1s put ready 1 >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  echo "cluster $1 did not become ready" >&2
  return 1
}

start strata "$strata" 33500
start etcd "$etcd" 33520
ready "$(cat "$dir/strata.eps")"
ready "$(cat "$dir/etcd.eps")"
echo "strata $("$strata" --version 2>/dev/null | head -1 || true); etcd $("$etcd" --version | head -1)"
tools/scripts/load-matrix.sh "$(cat "$dir/strata.eps")" "$(cat "$dir/strata.pids")" \
  "$(cat "$dir/etcd.eps")" "$(cat "$dir/etcd.pids")"
