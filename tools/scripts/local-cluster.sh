#!/usr/bin/env bash
# A local three-member strata cluster on loopback, in the foreground until
# Ctrl-C (which stops all three). Data under ${DIR:-./local-cluster}.
#   members m1 m2 m3: clients on 127.0.0.1:32379/32381/32383,
#                     peers   on 127.0.0.1:32380/32382/32384
# Then: ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:32379,127.0.0.1:32381,127.0.0.1:32383 member list
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p strata-server --bin strata
bin=target/release/strata
dir=${DIR:-local-cluster}
mkdir -p "$dir"
initial="m1=http://127.0.0.1:32380,m2=http://127.0.0.1:32382,m3=http://127.0.0.1:32384"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for i in 1 2 3; do
  client=$((32377 + 2 * i)); peer=$((32378 + 2 * i))
  "$bin" --name "m$i" --data-dir "$dir/m$i" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$initial" --initial-cluster-token local-cluster 2> "$dir/m$i.log" &
  pids+=($!)
done
echo "three members running; logs in $dir/m{1,2,3}.log; Ctrl-C stops them"
wait
