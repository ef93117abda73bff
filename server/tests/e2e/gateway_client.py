"""A real gateway client (OpenStack's etcd3gw, from PyPI) against one
member: keys, prefixes, transactions, leases, watches and locks over the
/v3 JSON API. Run by server/tests/gateway.rs as `python3 THIS PORT`; exits
non-zero, with the failing step, on any difference from what etcd gives.
"""

import sys
import threading
import time

import etcd3gw


def check(what, got, want):
    if got != want:
        print(f"{what}: got {got!r}, want {want!r}", file=sys.stderr)
        sys.exit(1)


def main(port):
    c = etcd3gw.client(host="127.0.0.1", port=port, timeout=10)
    check("api path from /version", c.api_path, "/v3/")

    check("put", c.put("gw/a", "1"), True)
    c.put("gw/b", "2")
    c.put("other", "x")
    check("get", c.get("gw/a"), [b"1"])
    check("get missing", c.get("gw/none"), [])
    got = sorted((v, m["key"]) for v, m in c.get_prefix("gw/"))
    check("get_prefix", got, [(b"1", b"gw/a"), (b"2", b"gw/b")])
    check("create on an existing key", c.create("gw/a", "again"), False)
    check("create on a new key", c.create("gw/c", "3"), True)
    check("replace when the value matches", c.replace("gw/c", "3", "4"), True)
    check("replace when it does not", c.replace("gw/c", "3", "5"), False)
    check("get after replace", c.get("gw/c"), [b"4"])
    check("delete", c.delete("gw/c"), True)
    check("delete again", c.delete("gw/c"), False)

    lease = c.lease(ttl=30)
    c.put("gw/leased", "v", lease=lease)
    check("lease keys", lease.keys(), [b"gw/leased"])
    ttl = lease.ttl()
    check("lease ttl in range", 0 < ttl <= 30, True)
    check("lease refresh", lease.refresh(), 30)
    check("lease revoke", lease.revoke(), True)
    check("leased key gone with its lease", c.get("gw/leased"), [])

    # A watch sees a put made after it started.
    events = []
    done = threading.Event()

    def watch():
        events.append(c.watch_once("gw/watched", timeout=10))
        done.set()

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.5)
    for _ in range(50):
        c.put("gw/watched", "seen")
        if done.wait(0.2):
            break
    t.join(15)
    check("watch event value", events and events[0]["kv"]["value"], b"seen")

    lock = c.lock("gw-lock", ttl=30)
    check("lock acquire", lock.acquire(), True)
    check("lock is held", lock.is_acquired(), True)
    check("lock release", lock.release(), True)

    status = c.status()
    check("status names a leader", int(status["leader"]) != 0, True)
    check("one member", len(c.members()), 1)
    print("etcd3gw: every step as etcd")


if __name__ == "__main__":
    main(int(sys.argv[1]))
