#!/usr/bin/env bash
# The load matrix of issue 5: the same strata-bench runs against strata and
# etcd, alternating, ROUNDS rounds (default 3); one line per run with
# requests/s, p50, p99 and the server's CPU seconds (utime+stime from /proc).
#
# usage: tools/scripts/load-matrix.sh STRATA_ENDPOINT STRATA_PID ETCD_ENDPOINT ETCD_PID
# For clusters, ENDPOINT and PID may be comma-separated lists (CPU is summed
# over the members).
# put 1 client goes to the leader (--target-leader), as in etcd's
# performance guide; the 1000-client rows spread their connections over
# all endpoints.
# ROWS (a grep -E pattern over the row names, default all) picks rows, e.g.
# ROWS=range-l for the linearizable range only.
# e.g.   tools/scripts/load-matrix.sh 127.0.0.1:23790 $(pgrep -f 'strata --data-dir /tmp/s') \
#                                   127.0.0.1:23800 $(pgrep -f 'etcd --data-dir /tmp/e')
set -euo pipefail
B=${STRATA_BENCH:-target/release/strata-bench}
SE=$1 SP=$2 EE=$3 EP=$4
ROUNDS=${ROUNDS:-3}
V=$(head -c 256 /dev/zero | tr '\0' v)
ETCDCTL_API=3 etcdctl --endpoints="$SE" put foo "$V" >/dev/null
ETCDCTL_API=3 etcdctl --endpoints="$EE" put foo "$V" >/dev/null
cpu() { local t=0 p; for p in ${1//,/ }; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
run() { # row name endpoint pid args...
  local row=$1 name=$2 ep=$3 pid=$4; shift 4
  local t0 t1 out
  echo "$row" | grep -qE "${ROWS:-.}" || return 0
  t0=$(cpu "$pid")
  out=$("$B" --endpoints "$ep" "$@")
  t1=$(cpu "$pid")
  echo "$row $name rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')" \
    "p50=$(echo "$out" | awk '/^  50%/{print $3}') p99=$(echo "$out" | awk '/^  99%/{print $3}')" \
    "server_cpu_ticks=$((t1 - t0))"
}
for _ in $(seq "$ROUNDS"); do
  for pair in "strata $SE $SP" "etcd $EE $EP"; do
    set -- $pair; run put-1x1 "$1" "$2" "$3" --target-leader put --total 5000 --val-size 256
  done
  for pair in "strata $SE $SP" "etcd $EE $EP"; do
    set -- $pair; run put-100x1000 "$1" "$2" "$3" --conns 100 --clients 1000 put --total 100000 --val-size 256
  done
  for c in l s; do
    for pair in "strata $SE $SP" "etcd $EE $EP"; do
      set -- $pair; run "range-$c-100x1000" "$1" "$2" "$3" --conns 100 --clients 1000 range foo --consistency "$c" --total 100000
    done
  done
done
