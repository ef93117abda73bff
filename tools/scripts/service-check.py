#!/usr/bin/env python3
"""Starts an installed strata.service the way systemd would, without systemd.

Reads the unit's [Service] section (User, Group, Environment,
EnvironmentFile, ExecStart, WorkingDirectory), builds the environment in
systemd's order (Environment= lines, then the EnvironmentFile, later
assignments winning), and runs ExecStart as the unit's user with a
NOTIFY_SOCKET of its own: the start counts only when the member sends
READY=1, as with Type=notify. Then a put and a get through etcdctl on the
client URL the settings file names, SIGTERM, and the exit status and the
data directory's owner are checked.

Run as root (it switches to the unit's user):
    service-check.py /lib/systemd/system/strata.service
Exit status 0 when every check passed; each failure is printed.
"""

import os
import pwd
import shlex
import socket
import subprocess
import sys
import tempfile
import time

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


def service_section(path):
    """The [Service] section's assignments, in order, as (key, value)."""
    out, section = [], None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]" and "=" in line:
                k, v = line.split("=", 1)
                out.append((k.strip(), v.strip()))
    return out


def env_file(path):
    """KEY=VALUE lines of an EnvironmentFile (quotes taken off)."""
    out = {}
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith(("#", ";")) or "=" not in line:
                continue
            k, v = line.split("=", 1)
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                v = v[1:-1]
            out[k.strip()] = v
    return out


def specifiers(value):
    """The unit specifiers this unit uses: %H (host name) and %%."""
    return value.replace("%H", socket.gethostname()).replace("%%", "%")


def main():
    unit = sys.argv[1]
    failures = []
    lines = service_section(unit)
    keys = dict(lines)
    user = keys.get("User", "root")
    group = keys.get("Group", user)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    for k, v in lines:
        if k == "Environment":
            for item in shlex.split(v):
                name, val = item.split("=", 1)
                env[name] = specifiers(val)
    for k, v in lines:
        if k == "EnvironmentFile":
            optional = v.startswith("-")
            path = v.lstrip("-")
            if os.path.exists(path):
                env.update(env_file(path))
            elif not optional:
                failures.append(f"EnvironmentFile {path} is missing")
    argv = shlex.split(keys["ExecStart"])
    pw = pwd.getpwnam(user)
    env["HOME"] = pw.pw_dir
    env["USER"] = user

    sockdir = tempfile.mkdtemp(prefix="strata-notify-")
    os.chmod(sockdir, 0o755)
    sock_path = os.path.join(sockdir, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    os.chmod(sock_path, 0o666)
    env["NOTIFY_SOCKET"] = sock_path

    log = tempfile.TemporaryFile()
    print(f"starting {argv} as {user}:{group}", flush=True)
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=keys.get("WorkingDirectory", "/"),
        user=user,
        group=group,
        extra_groups=[],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        ready = False
        sock.settimeout(1.0)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                msg = sock.recv(4096).decode()
            except socket.timeout:
                continue
            if "READY=1" in msg.splitlines():
                ready = True
                break
        if not ready:
            failures.append("no READY=1 on NOTIFY_SOCKET within 60 s")
        else:
            print("READY=1 received", flush=True)
            url = env.get("ETCD_ADVERTISE_CLIENT_URLS", "http://127.0.0.1:2379")
            url = url.split(",")[0]
            ctl = ["etcdctl", "--endpoints", url, "--command-timeout=10s"]
            cenv = dict(os.environ, ETCDCTL_API="3")
            put = subprocess.run(ctl + ["put", "packaged", "yes"], env=cenv,
                                 capture_output=True, text=True, timeout=30)
            get = subprocess.run(ctl + ["get", "packaged", "--print-value-only"],
                                 env=cenv, capture_output=True, text=True, timeout=30)
            if put.stdout.strip() != "OK":
                failures.append(f"put: {put.stdout!r} {put.stderr!r}")
            if get.stdout.strip() != "yes":
                failures.append(f"get: {get.stdout!r} {get.stderr!r}")
        proc.terminate()
        try:
            code = proc.wait(timeout=STOP_TIMEOUT)
            if code != 0:
                failures.append(f"exit status {code} after SIGTERM")
        except subprocess.TimeoutExpired:
            failures.append("still running 60 s after SIGTERM")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
        os.unlink(sock_path)
        os.rmdir(sockdir)
    data = env.get("ETCD_DATA_DIR")
    if data:
        member = os.path.join(data, "member")
        if not os.path.isdir(member):
            failures.append(f"no {member} after the run")
        elif pwd.getpwuid(os.stat(member).st_uid).pw_name != user:
            failures.append(f"{member} is not owned by {user}")
    if failures:
        log.seek(0)
        sys.stdout.write(log.read().decode(errors="replace")[-4000:])
        for f in failures:
            print(f"FAIL: {f}")
        return 1
    print("service check passed: ready, put, get, stopped with status 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
