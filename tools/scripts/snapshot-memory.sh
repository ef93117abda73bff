#!/usr/bin/env bash
# Memory of a snapshot install: a follower is stopped while ~1 GiB (N puts
# of 10 KiB) is written, then resumed: it gets the leader's db as a snapshot.
# Samples the anonymous memory (RssAnon: the heap, not the mapped db) of the
# leader and the follower during the transfer.
#   usage: [N=100000] tools/scripts/snapshot-memory.sh   (after a release build)
set -u
B=${BIN_DIR:-target/release}
D=${DIR:-/tmp/snapmem}; rm -rf $D; mkdir -p $D
base=33800 ic=""
for i in 0 1 2; do ic="$ic${ic:+,}m$i=http://127.0.0.1:$((base + 10 * i + 1))"; done
for i in 0 1 2; do
  c=$((base + 10 * i)) p=$((base + 10 * i + 1))
  $B/strata --name m$i --data-dir $D/m$i --listen-client-urls http://127.0.0.1:$c \
    --advertise-client-urls http://127.0.0.1:$c --listen-peer-urls http://127.0.0.1:$p \
    --initial-advertise-peer-urls http://127.0.0.1:$p --initial-cluster "$ic" \
    --initial-cluster-token snapmem --snapshot-count 10000 --quota-backend-bytes 8589934592 > $D/m$i.log 2>&1 &
  echo $! > $D/m$i.pid
done
sleep 4
export ETCDCTL_API=3
eps=127.0.0.1:33800,127.0.0.1:33810,127.0.0.1:33820
lead=$(etcdctl --endpoints=$eps endpoint status -w json | python3 -c 'import json,sys; s=json.load(sys.stdin); print([i for i,e in enumerate(s) if e["Status"]["leader"]==e["Status"]["header"]["member_id"]][0])')
f=$(( (lead + 1) % 3 ))
echo "leader m$lead, stopped follower m$f"
kill -STOP $(cat $D/m$f.pid)
lp=$(cat $D/m$lead.pid) fp=$(cat $D/m$f.pid)
$B/strata-bench --endpoints 127.0.0.1:$((base + 10 * lead)) --conns 10 --clients 50 put --total ${N:-100000} --val-size 10240 --key-space-size ${N:-100000} --sequential-keys | grep -E "Requests/sec|Total"
etcdctl --endpoints=127.0.0.1:$((base + 10 * lead)) endpoint status -w table
anon() { awk '/RssAnon/{print $2}' /proc/$1/status; }
echo "before: leader RssAnon $(anon $lp) kB, follower $(anon $fp) kB"
kill -CONT $fp
ml=0 mf=0 t0=$(date +%s.%N)
for _ in $(seq 1200); do
  a=$(anon $lp); b=$(anon $fp); [ "$a" -gt $ml ] && ml=$a; [ "$b" -gt $mf ] && mf=$b
  grep -q "installed a database snapshot" $D/m$f.log && break
  sleep 0.1
done
t1=$(date +%s.%N)
echo "install seen after $(echo "$t1 - $t0" | bc) s; peak RssAnon during transfer: leader $ml kB, follower $mf kB"
sleep 2
etcdctl --endpoints=$eps endpoint status -w table
ls -la $D/m$f/member/ $D/m$f/member/snap
for i in 0 1 2; do kill $(cat $D/m$i.pid); done
