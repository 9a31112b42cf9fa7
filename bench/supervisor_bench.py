"""Supervisor benchmarks against a private mpsupd, printing figures:

  spawn    pool.add of N `sleep` workers (start_secs=0) until every one is
           running (counted from process.state events), side by side with a
           plain C posix_spawn loop of the same N in the same run
  status   round-trip time of `status` with 1000 and 10000 processes
  restart  SIGKILL of a worker until its replacement's pid is in `status`
  rss      daemon RSS per managed process at N=1000

  python3 bench/supervisor_bench.py BUILDDIR [--n 1000] [--big 10000]
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


class Client:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rb")

    def call(self, cmd, **kw):
        kw["cmd"] = cmd
        self.s.sendall(json.dumps(kw).encode() + b"\n")
        r = json.loads(self.f.readline())
        if not r.get("ok"):
            raise RuntimeError("%s: %r" % (cmd, r))
        return r["result"]


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_until(cond, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.001)
    raise RuntimeError("timed out")


def pool_args(name, n):
    return dict(pool=name, command="sleep 100000", processes=n, start_secs=0,
                stdout="null", stderr="null", stop_timeout=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--big", type=int, default=10000)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mpsup-bench-")
    sock = os.path.join(tmp, "s.sock")
    conf = os.path.join(tmp, "c.conf")
    with open(conf, "w") as f:
        f.write("[mpsupd]\nsocket = %s\nlog_level = error\nmax_processes = 20000\n" % sock)
    d = subprocess.Popen([os.path.join(a.build, "daemon/mpsupd"), "-c", conf])
    try:
        wait_until(lambda: os.path.exists(sock), 10)
        time.sleep(0.2)
        c = Client(sock)
        rss0 = rss_kb(d.pid)

        # spawn: events tell when each worker is running
        ev = Client(sock)
        ev.s.sendall(b'{"cmd":"events.subscribe","topics":["process"]}\n')
        ev.f.readline()
        t0 = time.monotonic()
        c.call("pool.add", **pool_args("bench", a.n))
        running = 0
        while running < a.n:
            e = json.loads(ev.f.readline())
            if e.get("event") == "process.state" and e.get("to") == "running":
                running += 1
        t_mpsupd = time.monotonic() - t0
        ev.s.close()
        out = subprocess.run([os.path.join(a.build, "bench/spawn_loop"), str(a.n)],
                             capture_output=True, text=True).stdout
        t_loop = float(out.split(" in ")[1].split()[0])
        print("spawn: %d workers running in %.3f s; posix_spawn loop %.3f s; ratio %.2f"
              % (a.n, t_mpsupd, t_loop, t_mpsupd / t_loop))

        # rss per process at N
        time.sleep(0.5)
        rss1 = rss_kb(d.pid)
        print("rss: %d KB before, %d KB with %d processes: %.2f KB per process"
              % (rss0, rss1, a.n, (rss1 - rss0) / a.n))

        # status round trip at N
        # the round trip: request sent until the last byte of the reply is
        # in (the client's own JSON decoding of ~200 bytes per record is
        # not the daemon's time, so it is left out)
        raw = socket.socket(socket.AF_UNIX)
        raw.connect(sock)

        def status_rtt(k=20):
            ts = []
            for _ in range(k):
                t = time.monotonic()
                raw.sendall(b'{"cmd":"status"}\n')
                buf = bytearray()
                while not buf.endswith(b"\n"):
                    chunk = raw.recv(1 << 20)
                    if not chunk:
                        raise RuntimeError("daemon closed the connection")
                    buf += chunk
                ts.append(time.monotonic() - t)
                if not json.loads(buf)["ok"]:
                    raise RuntimeError("status failed")
            return statistics.median(ts) * 1000
        print("status: %d processes, median round trip %.2f ms" % (a.n, status_rtt()))

        # restart latency: SIGKILL a worker until its replacement's pid is in
        # status. The process.state event of the replacement is published
        # when the record has its new pid, so it marks the moment exactly;
        # one status call then confirms it.
        ev = Client(sock)
        ev.s.sendall(b'{"cmd":"events.subscribe","topics":["process"]}\n')
        ev.f.readline()
        lat = []
        # distinct workers, each killed once after a stable run (a worker
        # killed again within a second of its start is a crash loop: backoff)
        for i in range(min(50, a.n)):
            name = "bench:%d" % (i % a.n)
            old = c.call("status", target=name)[0]["pid"]
            t = time.monotonic()
            os.kill(old, signal.SIGKILL)
            while True:
                e = json.loads(ev.f.readline())
                if e.get("name") == name and e.get("pid") not in (None, old) \
                        and e.get("to") in ("starting", "running"):
                    break
            lat.append((time.monotonic() - t) * 1000)
            assert c.call("status", target=name)[0]["pid"] != old
        ev.s.close()
        print("restart: median %.2f ms, max %.2f ms over %d kills"
              % (statistics.median(lat), max(lat), len(lat)))

        # status at big N
        if a.big > a.n:
            c.call("pool.scale", pool="bench", processes=a.big)
            wait_until(lambda: sum(1 for p in c.call("status") if p["state"] == "running")
                       >= a.big, 300)
            print("status: %d processes, median round trip %.2f ms" % (a.big, status_rtt(10)))
        c.call("daemon.shutdown")
        d.wait(timeout=300)
    finally:
        if d.poll() is None:
            d.kill()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
