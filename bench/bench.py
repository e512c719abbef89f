#!/usr/bin/env python3
"""make bench: what sluiced costs and how fast it is, on stated workloads.

    python3 bench/bench.py [WORKLOAD ...] [--seconds N] [--warmup N] [--health S]
                           [--inflight N] [--perf] [--keep] [--collectd]
                           [--collectd-qos Q] [--wait-load L] [--web]

Workloads (issues 8 and 16):
  small      20 devices x 10 float32 points, polled every 1 s            (the default)
  medium     100 devices x 10 float32 points, 1 s
  reference  1,000 devices x 10 float32 points, 1 s, one TCP endpoint per device
  inline     reference with each device's ten points written in the config (no profile)
  neuron     500 devices x 30 float32 points, 1 s
  scale      5,000 devices x 10 float32 points, 1 s
  rtu        30 devices x 10 points every 2.5 s on one 9600-baud RTU line (a socat pty
             pair; sluice-sim --pace holds each reply for its transfer time), then the
             same line asked for every 1 s, more than it can carry
  drain      an outbox prefilled with 200 devices x 10 points x 3600 s (720,000
             readings, by bench/prefill.c through daemon/store), delivered while the
             200 devices keep being polled
  compare    medium and reference, each with --collectd

--web: sluiced also serves its page (web: on 127.0.0.1, no password) and a client asks
for /api/status every 2 s, as one phone's browser on the overview does; the figures are
then those of sluiced with its page, written to bench/results-<workload>-web.json, to set
beside the run without --web (docs/performance.md, "The web page").

--collectd: after each TCP workload of up to 1,000 devices, collectd (Debian's
collectd-core, installed with apt-get when missing; skipped with the reason when it cannot
be) polls the same sim with its modbus plugin and publishes to a broker like sluiced's with
its mqtt plugin, one run, same window: its CPU per value, RSS, bytes written and latency
(the time in its payloads), and sluiced's CPU per value over collectd's. Past 1,000 TCP
devices it is not run (libmodbus select()s: collectd aborts past about 1,100).

Each run: a mosquitto broker on a free 127.0.0.1 port, sluice-sim serving every device
on its own 127.0.0.1 port, sluiced with a generated config, and bench/sub.c (a C
subscriber on libmosquitto: mosquitto_sub would cost as much CPU as what it measures).
After the warm-up, a measuring window; then everything is stopped by pid, and the
subscriber's seqs are checked against the store's (sluicectl backlog): none missing.

Figures, all over the measuring window unless said otherwise:
  CPU s/1k values  utime+stime of sluiced (/proc/PID/stat) / values delivered x 1000
  peak / final RSS VmHWM and VmRSS of sluiced (/proc/PID/status) at the window's end
  values/s         values in telemetry received by the subscriber / window length
  jitter p50/p99   poll_lag_ms from sluiced's health messages in the window (how late a
                   poll started against its schedule; 1 ms buckets: a p99 of 0 means
                   under 1 ms); p50 the polls-weighted median of the health intervals' p50,
                   p99 the worst interval's p99
  e2e p50/p99      subscriber receive time (CLOCK_REALTIME) - the payload's ts (when the
                   poll began), 0.1 ms buckets
  disk B/value     write_bytes of sluiced (/proc/PID/io) / values delivered
  READY            spawn of sluiced to READY=1 on its $NOTIFY_SOCKET (bound here)
  drain            time from the first to the last prefilled seq at the subscriber, and
                   the rate; bytes on disk per buffered value (the prefilled database's
                   files / values); write_bytes per value delivered while draining
  peak at READY    VmHWM when READY=1 arrives: what loading the config and starting cost

Then each workload's five figures of issue 16 against their targets: CPU per value (and
its ratio to collectd's where measured), peak RSS, e2e p99, bytes written per value,
drain rate.

The bench's own processes share the machine with sluiced: their CPU is reported, and so
is load from outside the bench (a warning when it could disturb timings). Timings are
never asserted: this prints figures.

Writes bench/results-<workload>.json (and bench/perf-<workload>.txt with --perf). Only
127.0.0.1 is used. Build: `make B=build/bench` for sluiced, sluice-sim and sluicectl (this
script runs it), and cc for bench/sub.c and bench/prefill.c into build/bench/bench/.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import harness  # noqa: E402
from harness import Proc, Site, free_port, port_open, wait_for  # noqa: E402

BUILD = os.environ.get("SLUICE_BENCH_BUILD", os.path.join("build", "bench"))
PKGS = ["libmodbus", "libmosquitto", "sqlite3", "yaml-0.1", "libmicrohttpd", "libcrypt"]
CLK_TCK = os.sysconf("SC_CLK_TCK")

WORKLOADS = {
    "small": dict(devices=20, points=10, interval="1s"),
    "medium": dict(devices=100, points=10, interval="1s"),
    "reference": dict(devices=1000, points=10, interval="1s"),
    "inline": dict(devices=1000, points=10, interval="1s", inline=True),
    "neuron": dict(devices=500, points=30, interval="1s"),
    "scale": dict(devices=5000, points=10, interval="1s"),
    "rtu": dict(devices=30, points=10, interval="2.5s", serial=True, baud=9600),
    "drain": dict(devices=200, points=10, interval="1s", prefill_seconds=3600),
}

# Named lists of workloads: `compare` runs collectd beside sluiced on each.
ALIASES = {"compare": ["medium", "reference"]}

# Targets of issues 8 and 16.
TARGET_CPU_PER_1K = 0.004        # at reference
TARGET_CPU_VS_COLLECTD = 0.1     # sluiced's CPU per value / collectd's, same workload
TARGET_RSS_MB = 8.0              # peak, up to 1,000 devices (profile or inline points)
TARGET_RSS_MAX_DEVICES = 1000
TARGET_DRAIN_RATE = 50000.0
TARGET_JITTER_P99_MS = 5.0
TARGET_E2E_P99_MS = 50.0
TARGET_DISK_B_PER_VALUE = 64.0

# collectd's modbus plugin hands each connection to libmodbus, which select()s on it:
# a descriptor numbered 1024 or above is out of an fd_set's range and glibc aborts the
# process. collectd holds one socket per <Host>, so past about a thousand TCP devices it
# cannot run (docs/design.md, "Threads"); the bench does not try it there.
COLLECTD_MAX_DEVICES = 1000
COLLECTD = "/usr/sbin/collectd"
COLLECTD_PLUGINS = "/usr/lib/collectd"
COLLECTD_TYPES = "/usr/share/collectd/types.db"


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


# -- building ----------------------------------------------------------------------------


def build(bindir):
    """sluiced, sluice-sim, sluicectl and libsluice.a by the Makefile in our own build
    dir; sub and prefill by cc (the Makefile is not ours)."""
    targets = [os.path.join(bindir, t)
               for t in ("sluiced", "sluice-sim", "sluicectl", "libsluice.a")]
    jobs = str(os.cpu_count() or 2)
    # called from `make bench`: not the parent's jobserver (its descriptors are not
    # passed on), our own -j
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    subprocess.run(["make", "-s", "-j" + jobs, "B=" + bindir] + targets, cwd=TOP, check=True,
                   env=env)
    out = os.path.join(bindir, "bench")
    os.makedirs(out, exist_ok=True)
    pkg = subprocess.run(["pkg-config", "--cflags", "--libs"] + PKGS, capture_output=True,
                         text=True, check=True).stdout.split()
    common = ["cc", "-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Werror",
              "-Wno-missing-field-initializers", "-D_GNU_SOURCE", "-D_TIME_BITS=64",
              "-D_FILE_OFFSET_BITS=64"]
    progs = {
        "sub": (["bench/sub.c"], []),
        "prefill": (["bench/prefill.c"],
                    ["-Ilib", "-Idrivers", "-Idaemon", os.path.join(bindir, "libsluice.a")]),
    }
    for name, (srcs, extra) in progs.items():
        exe = os.path.join(out, name)
        deps = [os.path.join(TOP, s) for s in srcs] + [os.path.join(TOP, e) for e in extra
                                                       if e.endswith(".a")]
        if os.path.exists(os.path.join(TOP, exe)) and all(
                os.path.getmtime(d) <= os.path.getmtime(os.path.join(TOP, exe)) for d in deps):
            continue
        argv = common + srcs + extra + pkg + ["-lpthread", "-lm", "-o", exe]
        subprocess.run(argv, cwd=TOP, check=True)
    return os.path.join(TOP, bindir), os.path.join(TOP, out)


# -- /proc -------------------------------------------------------------------------------


def proc_cpu(pid):
    """utime + stime of a process (all its threads), seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def system_cpu():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def busy_pct(a, b):
    """Share of the machine's CPUs busy between two system_cpu() samples, in % of all cores."""
    return round(100 * (b[0] - a[0]) / max(1, b[1] - a[1]), 1)


def foreign(busy, sluiced_pct, oth0, oth1, dur):
    """Cores kept busy by processes that are not this bench's: load from elsewhere that
    makes jitter, latency and rates less clean (CPU-seconds much less so)."""
    ours = sluiced_pct + sum(100 * ((oth1.get(k) or 0) - (oth0.get(k) or 0)) / dur for k in oth1)
    return round(max(0.0, busy * (os.cpu_count() or 1) - ours) / 100, 2)


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "Threads"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def wait_quiet(limit, timeout=600):
    """Wait (up to timeout s) for the 1-minute load average to fall under limit: the
    machine is shared, and a busy machine disturbs timings. The load it started at."""
    end = time.monotonic() + timeout
    la = loadavg()
    if la[0] >= limit:
        log("load average %.2f: waiting for it to fall under %.2f (at most %d s)"
            % (la[0], limit, timeout))
    while la[0] >= limit and time.monotonic() < end:
        time.sleep(10)
        la = loadavg()
    if la[0] >= limit:
        log("load average still %.2f after %d s: measuring anyway" % (la[0], timeout))
    return la


def proc_io(pid):
    out = {}
    try:
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = int(v)
    except OSError:
        pass
    return out


def proc_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "mem_gib": round(mem / 2**30, 1),
        "kernel": os.uname().release,
        "fs": fs_type(TOP),
        "sqlite": subprocess.run(["pkg-config", "--modversion", "sqlite3"], capture_output=True,
                                 text=True).stdout.strip(),
        "mosquitto": subprocess.run(["pkg-config", "--modversion", "libmosquitto"],
                                    capture_output=True, text=True).stdout.strip(),
        "commit": git_commit(),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    }


def git_commit():
    """The commit measured, +dirty when the tree has changes (read-only git)."""
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=TOP, capture_output=True,
                           text=True)
        if r.returncode != 0:
            return "?"
        head = r.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=TOP,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except OSError:
        return "?"


def fs_type(path):
    best, typ = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if path.startswith(parts[1]) and len(parts[1]) >= len(best):
                    best, typ = parts[1], parts[2]
    except OSError:
        pass
    return typ


# -- the site ------------------------------------------------------------------------------


def free_port_range(n, lo=10000, hi=32000):
    """n consecutive free 127.0.0.1 ports below the ephemeral range (so sluiced's own
    outgoing connections never take one)."""
    base = lo
    while base + n <= hi:
        bad = None
        for p in range(base, base + n):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    bad = p
                    break
        if bad is None:
            return base
        base = bad + 1
    raise RuntimeError("no %d consecutive free ports in %d..%d" % (n, lo, hi))


def point_names(npoints):
    return ["flow%d" % i for i in range(npoints)]


def point_lines(npoints):
    """P float32 points in adjacent holding registers, one YAML line each."""
    return ["%s: { table: holding, address: %d, type: float32, unit: m3/h }\n" % (name, 2 * i)
            for i, name in enumerate(point_names(npoints))]


def write_profile(site, npoints):
    os.makedirs(os.path.join(site.dir, "devices"), exist_ok=True)
    lines = ["profile: bench%d\n" % npoints,
             "name: bench meter, %d float32 flows\n" % npoints,
             "points:\n"] + ["  " + ln for ln in point_lines(npoints)]
    site.write(os.path.join("devices", "bench%d.yaml" % npoints), "".join(lines))


# uplink.format of every run (--format): sluice, sparkplug or thingsboard.
FORMAT = "sluice"


def format_lines():
    """The uplink lines of FORMAT, in place of the sluice format's topic_prefix and qos."""
    if FORMAT == "sparkplug":
        return "  format: sparkplug\n  sparkplug: { group: bench }\n"
    if FORMAT == "thingsboard":
        return "  format: thingsboard\n  qos: 1\n"
    return "  topic_prefix: bench\n  qos: 1\n"


def bench_config(site, w, broker_port, base_port, health_s, inflight, max_size, tty=None,
                 web_port=0):
    """TCP: one bus (endpoint) per device, unit 1 on each. Serial (tty): every device on
    one RTU line, units 1..N. With web_port, the page on 127.0.0.1:web_port."""
    n = w["devices"]
    buses = []
    devices = []
    if tty:
        buses.append("  - { id: line1, rtu: { device: %s, baud: %d, parity: none } }\n"
                     % (tty, w["baud"]))
    for i in range(n):
        if not tty:
            buses.append("  - { id: b%04d, tcp: { host: 127.0.0.1, port: %d }, timeout: 1s }\n"
                         % (i, base_port + i))
        bus = "line1" if tty else "b%04d" % i
        if w.get("inline"):
            # the points written out in every device, as a site without profiles has them
            devices.append("  - id: dev%04d\n    bus: %s\n    unit_id: %d\n    interval: %s\n"
                           "    points:\n%s" % (i, bus, i + 1 if tty else 1, w["interval"],
                                               "".join("  " * 3 + ln for ln in point_lines(w["points"]))))
        else:
            devices.append("  - { id: dev%04d, bus: %s, unit_id: %d, profile: bench%d, "
                           "interval: %s }\n" % (i, bus, i + 1 if tty else 1, w["points"],
                                                  w["interval"]))
    return (
        "gateway:\n"
        "  id: bench\n"
        "  name: 基准测试站\n"
        "  timezone: Asia/Shanghai\n"
        "  data_dir: %s\n"
        "  log_level: info\n"
        "uplink:\n"
        "  host: 127.0.0.1\n"
        "  port: %d\n"
        "%s"
        "  keepalive: 30s\n"
        "%s"
        "  health_interval: %ds\n"
        "buffer:\n"
        "  max_size: %s\n"
        "  durability: normal\n"
        "buses:\n%s"
        "devices:\n%s%s"
        % (os.path.join(site.dir, "data"), broker_port, format_lines(),
           ("  inflight: %d\n" % inflight) if inflight else "", health_s, max_size,
           "".join(buses), "".join(devices),
           ("web:\n  listen: 127.0.0.1:%d\n" % web_port) if web_port else "")
    )


class WebPoller:
    """One phone on the overview: GET /api/status every 2 s, as the page does."""

    def __init__(self, port):
        self.url = "http://127.0.0.1:%d/api/status" % port
        self.stop = threading.Event()
        self.times, self.sizes, self.errors = [], [], 0
        self.counting = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=10) as r:
                    n = len(r.read())
                if self.counting:
                    self.times.append(time.monotonic() - t)
                    self.sizes.append(n)
            except OSError:
                self.errors += 1
            self.stop.wait(max(0.0, 2.0 - (time.monotonic() - t)))

    def close(self):
        self.stop.set()
        self.thread.join(15)
        ts = sorted(self.times)
        return {"requests": len(ts), "errors": self.errors,
                "bytes": int(statistics.mean(self.sizes)) if self.sizes else None,
                "ms_p50": round(1000 * ts[len(ts) // 2], 2) if ts else None,
                "ms_max": round(1000 * ts[-1], 2) if ts else None}


def start_broker(site):
    """mosquitto as the gateway's local broker: no persistence (it is not what is
    measured), no limit on queued or in-flight messages towards the subscriber."""
    site.broker_port = free_port()
    conf = site.write("mosquitto.conf",
                      "listener %d 127.0.0.1\n"
                      "allow_anonymous true\n"
                      "persistence false\n"
                      "max_queued_messages 0\n"
                      "max_inflight_messages 0\n"
                      # without it, Nagle on the broker's socket to the subscriber meets
                      # the subscriber's delayed ACK: +40 ms on some messages, the broker's
                      # artefact, not the gateway's
                      "set_tcp_nodelay true\n"
                      "log_type error\nlog_type warning\nlog_type notice\n"
                      "%s" % (site.broker_port, "user root\n" if os.geteuid() == 0 else ""))
    pr = Proc("mosquitto", ["mosquitto", "-c", conf], os.path.join(site.dir, "mosquitto.log"))
    site.procs["mosquitto"] = pr
    wait_for(lambda: port_open(site.broker_port) or not pr.alive(), 10, "mosquitto to listen")
    if not pr.alive():
        raise RuntimeError("mosquitto exited:\n" + pr.text())
    return pr


def start_sub(site, benchbin, mark=0, points=0):
    site.sub_stats = os.path.join(site.dir, "sub-stats.json")
    site.sub_health = os.path.join(site.dir, "health.jsonl")
    site.sub_timeline = os.path.join(site.dir, "timeline.txt")
    topic = {"sparkplug": "spBv1.0/bench/#", "thingsboard": "v1/#"}.get(FORMAT, "bench/bench/#")
    argv = [os.path.join(benchbin, "sub"), "-p", str(site.broker_port), "-t", topic,
            "-q", "1", "-o", site.sub_stats, "-H", site.sub_health, "-T", site.sub_timeline,
            "-f", FORMAT, "-n", str(points)]
    if mark:
        argv += ["-m", str(mark)]
    pr = Proc("sub", argv, os.path.join(site.dir, "sub.log"), stdout_pipe=True)
    site.procs["sub"] = pr
    line = wait_for(lambda: Site._readline(pr), 10, "the subscriber to subscribe")
    if "subscribed qos 1" not in line:
        raise RuntimeError("subscriber said %r:\n%s" % (line, pr.text()))
    return pr


def sub_stats(site, pr, sig):
    """Signal the subscriber and read the stats file it writes."""
    try:
        os.unlink(site.sub_stats)
    except OSError:
        pass
    pr.send(sig)
    wait_for(lambda: os.path.exists(site.sub_stats), 10, "the subscriber's stats")
    with open(site.sub_stats) as f:
        return json.load(f)


class Notify:
    """The $NOTIFY_SOCKET sluiced sends READY=1 to."""

    def __init__(self, path):
        self.path = path
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind(path)

    def wait(self, want, timeout, alive):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.s.settimeout(0.05)
            try:
                msg = self.s.recv(4096).decode()
            except socket.timeout:
                if not alive():
                    return None
                continue
            if want in msg.split("\n"):
                return time.monotonic()
        return None

    def close(self):
        self.s.close()


def start_daemon(site, cfg, bindir):
    site.notify = Notify(os.path.join(site.dir, "notify.sock"))
    env = dict(os.environ, NOTIFY_SOCKET=site.notify.path)
    t0 = time.monotonic()
    pr = Proc("sluiced", [os.path.join(bindir, "sluiced"), "-c", cfg],
              os.path.join(site.dir, "sluiced.log"), env=env)
    site.procs["sluiced"] = pr
    t1 = site.notify.wait("READY=1", 120, pr.alive)
    if t1 is None:
        raise RuntimeError("sluiced did not report READY=1:\n" + pr.text()[-4000:])
    return pr, t0, t1 - t0


def health_in(site, t0_ms, t1_ms):
    out = []
    try:
        with open(site.sub_health) as f:
            for line in f:
                recv, _, payload = line.partition(" ")
                try:
                    h = json.loads(payload)
                except ValueError:
                    continue
                if isinstance(h.get("values"), dict):
                    # ThingsBoard's: the gateway device's telemetry, its numbers flat
                    v = h["values"]
                    h = dict(v, ts=h["ts"], poll_lag_ms={"p50": v.get("poll_lag_p50_ms"),
                                                         "p99": v.get("poll_lag_p99_ms"),
                                                         "polls": 0})
                if t0_ms <= h.get("ts", 0) <= t1_ms:
                    out.append(h)
    except OSError:
        pass
    return out


def jitter(healths):
    lags = [h["poll_lag_ms"] for h in healths if h.get("poll_lag_ms", {}).get("polls")]
    if not lags:
        return None, None, 0
    p50s = []
    for lag in lags:
        p50s += [lag["p50"]] * max(1, lag["polls"] // 100)
    return statistics.median(p50s), max(lag["p99"] for lag in lags), sum(lag["polls"] for lag in lags)


def per_device(hs):
    """Polls per device between the first and the last health message of the window:
    min, max and mean, and the span they cover (s) — are all devices served alike?"""
    if len(hs) < 2:
        return None
    a, b = hs[0].get("devices", {}), hs[-1].get("devices", {})
    span = (hs[-1]["ts"] - hs[0]["ts"]) / 1000
    counts = [b[d]["polls_ok"] + b[d]["polls_failed"] - a[d]["polls_ok"] - a[d]["polls_failed"]
              for d in b if d in a]
    if not counts or span <= 0:
        return None
    return {"span_s": round(span, 1), "min": min(counts), "max": max(counts),
            "mean": round(sum(counts) / len(counts), 2),
            "mean_interval_s": round(span * len(counts) / max(1, sum(counts)), 3)}


def rtu_line(w, r):
    """Bus utilisation against the line's physical limit. A poll of P float32 points is
    one FC3 request (8 bytes) and its reply (5 + 4P bytes), each followed by the 3.5
    characters of silence that end an RTU frame; 10 bits a character at 8N1."""
    chars_s = w["baud"] / 10.0
    req, rep = 8, 5 + 4 * w["points"]
    per_poll_chars = req + rep + 2 * 3.5
    max_polls_s = chars_s / per_poll_chars
    pd = r.get("polls_per_device") or {}
    polls_s = (pd["mean"] * w["devices"] / pd["span_s"]) if pd else None
    want_s = w["devices"] / parse_dur(w["interval"])
    return {
        "baud": w["baud"], "bytes_per_poll": req + rep,
        "line_time_per_poll_ms": round(per_poll_chars / chars_s * 1000, 2),
        "max_polls_per_s": round(max_polls_s, 2),
        "asked_polls_per_s": round(want_s, 2),
        "asked_utilisation_pct": round(100 * want_s / max_polls_s, 1),
        "polls_per_s": round(polls_s, 2) if polls_s else None,
        "utilisation_pct": round(100 * polls_s / max_polls_s, 1) if polls_s else None,
        "bytes_on_wire_pct": round(100 * polls_s * (req + rep) / chars_s, 1) if polls_s else None,
        # sluice-sim --pace holds each reply for its own transfer time; the request's
        # transfer and the frame gaps are not simulated (a pty passes them at once), so
        # the simulated line carries more polls than a real one could
        "sim_max_polls_per_s": round(chars_s / rep, 2),
    }


def run_rtu(name, w, args, bindir, benchbin):
    """The line at its design load, then asked for more than it can carry."""
    phases = []
    for interval in (w["interval"], "1s"):
        wi = dict(w, interval=interval)
        r = run_tcp("%s@%s" % (name, interval), wi, args, bindir, benchbin)
        r["line"] = rtu_line(wi, r)
        phases.append(r)
    return {"workload": name, "devices": w["devices"], "points": w["points"], "phases": phases}


def log_summary(pr):
    text = pr.text() if pr else ""
    lines = text.splitlines()
    errs = [ln for ln in lines if ln.startswith("<3>") or ln.startswith("<2>")]
    warns = [ln for ln in lines if ln.startswith("<4>")]
    return {"errors": len(errs), "warnings": len(warns), "first_errors": errs[:5],
            "first_warnings": warns[:5]}


def others_cpu(site):
    return {name: proc_cpu(pr.pid) for name, pr in site.procs.items() if name != "sluiced"}


def serial_available():
    try:
        with open(os.path.join(TOP, "daemon", "core.c")) as f:
            core = f.read()
        with open(os.path.join(TOP, "tools", "sim_args.c")) as f:  # sluice-sim's options
            sim = f.read()
    except OSError:
        return False
    return "serpoll" in core and "--pace" in sim and shutil.which("socat") is not None


# -- one workload ------------------------------------------------------------------------


def run_tcp(name, w, args, bindir, benchbin):
    site = Site("bench-" + name)
    res = {"workload": name, "devices": w["devices"], "points": w["points"],
           "interval": w["interval"], "warmup_s": args.warmup, "seconds": args.seconds}
    sluiced = None
    try:
        write_profile(site, w["points"])
        start_broker(site)
        if w.get("serial"):
            tty_sim, tty_daemon = site.start_pty_pair()
            cfg = site.write("sluice.yaml", bench_config(site, w, site.broker_port, 0,
                                                         args.health, args.inflight, "1GiB",
                                                         tty=tty_daemon))
            sim_args = ["--rtu", tty_sim, "--baud", str(w["baud"]), "--pace",
                        "--profile-path", os.path.join(site.dir, "devices")]
            for i in range(w["devices"]):
                sim_args += ["--device", "%d:bench%d" % (i + 1, w["points"])]
        else:
            base = free_port_range(w["devices"])
            web_port = free_port() if args.web else 0
            cfg = site.write("sluice.yaml", bench_config(site, w, site.broker_port, base,
                                                         args.health, args.inflight, "1GiB",
                                                         web_port=web_port))
            sim_args = ["--config", cfg]
        t = time.monotonic()
        site.start_sim(sim_args)
        res["sim_ready_s"] = round(time.monotonic() - t, 2)
        sub = start_sub(site, benchbin, points=w["points"])
        sluiced, t_spawn, ready = start_daemon(site, cfg, bindir)
        res["ready_s"] = round(ready, 4)
        st_ready = proc_status(sluiced.pid)
        res["rss_peak_at_ready_mb"] = round(st_ready.get("VmHWM", 0) / 1024, 2)
        res["rss_at_ready_mb"] = round(st_ready.get("VmRSS", 0) / 1024, 2)
        log("%s: sluiced pid %d READY after %.3f s; warming up %d s" % (name, sluiced.pid, ready,
                                                                          args.warmup))
        web = WebPoller(web_port) if args.web and not w.get("serial") else None
        time.sleep(args.warmup)
        if not sluiced.alive():
            raise RuntimeError("sluiced exited during the warm-up:\n" + sluiced.text()[-4000:])

        cpu0, io0, oth0 = proc_cpu(sluiced.pid), proc_io(sluiced.pid), others_cpu(site)
        sys0 = system_cpu()
        t0, t0_ms = time.monotonic(), time.time() * 1000
        sub.send(signal.SIGUSR1)
        if web:
            web.counting = True
        perf = start_perf(site, sluiced.pid, args) if args.perf else None
        rss_max = 0
        while time.monotonic() - t0 < args.seconds:
            time.sleep(min(1.0, args.seconds - (time.monotonic() - t0)))
            if not sluiced.alive():
                raise RuntimeError("sluiced exited while measuring:\n" + sluiced.text()[-4000:])
            rss_max = max(rss_max, proc_status(sluiced.pid).get("VmRSS", 0))
        cpu1, io1, st1, oth1 = (proc_cpu(sluiced.pid), proc_io(sluiced.pid),
                                proc_status(sluiced.pid), others_cpu(site))
        sys1 = system_cpu()
        t1, t1_ms = time.monotonic(), time.time() * 1000
        stats = sub_stats(site, sub, signal.SIGUSR2)
        if web:
            res["web"] = web.close()
            web = None
        res["fds"] = proc_fds(sluiced.pid)
        if perf:
            res["perf"] = finish_perf(site, perf, args)
        dur = t1 - t0
        win = stats["window"]
        # health messages take up to an interval to arrive
        time.sleep(min(args.health + 1, 6))
        hs = health_in(site, t0_ms, t1_ms)
        j50, j99, jpolls = jitter(hs)
        res["polls_per_device"] = per_device(hs)
        values = win["values"]
        tel = win["telemetry"]
        res.update({
            "format": FORMAT,
            # a reading's PUBLISH: payload and topic, and MQTT's own 7 bytes at QoS 1
            # (fixed header 1, remaining length 2, topic length 2, packet id 2)
            "payload_bytes_per_reading": round(win["payload_bytes"] / tel, 1) if tel else None,
            "wire_bytes_per_reading": round((win["payload_bytes"] + win["topic_bytes"]) / tel
                                            + 7, 1) if tel else None,
            "window_s": round(dur, 3),
            "cpu_s": round(cpu1 - cpu0, 3),
            "cpu_util_pct": round(100 * (cpu1 - cpu0) / dur, 1),
            "values": values,
            "telemetry": win["telemetry"],
            "with_errors": win["with_errors"],
            "expected_values_per_s": w["devices"] * w["points"] / parse_dur(w["interval"]),
            "values_per_s": round(values / dur, 1),
            "cpu_s_per_1k_values": round((cpu1 - cpu0) / values * 1000, 5) if values else None,
            "rss_peak_mb": round(st1.get("VmHWM", 0) / 1024, 2),
            "rss_final_mb": round(st1.get("VmRSS", 0) / 1024, 2),
            "rss_anon_mb": round(st1.get("RssAnon", 0) / 1024, 2),
            "rss_file_mb": round(st1.get("RssFile", 0) / 1024, 2),
            "threads": st1.get("Threads"),
            "rss_max_sampled_mb": round(rss_max / 1024, 2),
            "write_bytes": io1.get("write_bytes", 0) - io0.get("write_bytes", 0),
            "disk_bytes_per_value": round((io1.get("write_bytes", 0) - io0.get("write_bytes", 0))
                                          / values, 2) if values else None,
            "wchar_per_value": round((io1.get("wchar", 0) - io0.get("wchar", 0)) / values, 1)
            if values else None,
            "jitter_p50_ms": j50, "jitter_p99_ms": j99, "jitter_polls": jpolls,
            "health_messages": len(hs),
            "latency_ms": win["latency_ms"],
            "others_cpu_util_pct": {k: round(100 * ((oth1.get(k) or 0) - (oth0.get(k) or 0)) / dur, 1)
                                    for k in oth1},
            "machine_busy_pct": busy_pct(sys0, sys1),
            "foreign_load_cores": foreign(busy_pct(sys0, sys1), 100 * (cpu1 - cpu0) / dur,
                                          oth0, oth1, dur),
            "not_stored": hs[-1]["not_stored"] if hs else None,
            "polls_failed": hs[-1]["polls_failed"] if hs else None,
            "db_bytes": hs[-1]["db_bytes"] if hs else None,
        })
        t = time.monotonic()
        rc = site.stop("sluiced", signal.SIGTERM, 30)
        res["stop_s"] = round(time.monotonic() - t, 2)
        res["exit_status"] = rc
        res["log"] = log_summary(sluiced)
        res["delivery"] = delivery(site, sub, bindir, cfg)
    except Exception:
        site.failed = True
        if sluiced:
            res["log"] = log_summary(sluiced)
        raise
    finally:
        close_site(site, args)
    return res


def run_drain(name, w, args, bindir, benchbin):
    site = Site("bench-" + name)
    nrows = w["devices"] * w["prefill_seconds"]
    res = {"workload": name, "devices": w["devices"], "points": w["points"],
           "interval": w["interval"], "prefill_rows": nrows}
    sluiced = None
    try:
        base = free_port_range(w["devices"])
        write_profile(site, w["points"])
        data = os.path.join(site.dir, "data")
        log("%s: prefilling %d readings" % (name, nrows))
        out = subprocess.run([os.path.join(benchbin, "prefill"), data, str(w["devices"]),
                              str(w["points"]), str(w["prefill_seconds"]), str(2 << 30)],
                             capture_output=True, text=True, check=True)
        pf = json.loads(out.stdout)
        if pf["unsent"] != nrows:
            raise RuntimeError("prefill stored %r, not %d rows" % (pf, nrows))
        db = sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data)
                 if f.startswith("sluice.db"))
        res["prefill"] = pf
        res["db_bytes_prefilled"] = db
        res["disk_bytes_per_buffered_value"] = round(db / (nrows * w["points"]), 2)
        res["disk_bytes_per_buffered_reading"] = round(db / nrows, 1)

        start_broker(site)
        cfg = site.write("sluice.yaml", bench_config(site, w, site.broker_port, base, 1,
                                                     args.inflight, "2GiB"))
        st = subprocess.run([os.path.join(bindir, "sluicectl"), "-c", cfg, "--json", "backlog"],
                            capture_output=True, text=True)
        res["sluicectl_before"] = json.loads(st.stdout) if st.returncode == 0 else st.stderr
        site.start_sim(["--config", cfg])
        sub = start_sub(site, benchbin, mark=pf["last_seq"])
        sub.send(signal.SIGUSR1)
        oth0 = others_cpu(site)
        sys0 = system_cpu()
        t_spawn_real = time.time() * 1000
        sluiced, t_spawn, ready = start_daemon(site, cfg, bindir)
        res["ready_s"] = round(ready, 4)
        log("%s: sluiced pid %d READY after %.3f s; draining" % (name, sluiced.pid, ready))
        perf = start_perf(site, sluiced.pid, args) if args.perf else None
        rss_max = 0
        end = time.monotonic() + args.drain_timeout
        last_log = 0
        while True:
            if not sluiced.alive():
                raise RuntimeError("sluiced exited while draining:\n" + sluiced.text()[-4000:])
            rss_max = max(rss_max, proc_status(sluiced.pid).get("VmRSS", 0))
            s = sub_stats(site, sub, signal.SIGHUP)["run"]
            if s["mark_have"] >= pf["last_seq"]:
                break
            if time.monotonic() > end:
                raise RuntimeError("drain not done after %d s: %d of %d at the subscriber"
                                   % (args.drain_timeout, s["mark_have"], pf["last_seq"]))
            if time.monotonic() - last_log > 10:
                log("%s: %d of %d delivered" % (name, s["mark_have"], pf["last_seq"]))
                last_log = time.monotonic()
            time.sleep(0.5)
        cpu1, io1, st1 = proc_cpu(sluiced.pid), proc_io(sluiced.pid), proc_status(sluiced.pid)
        oth1 = others_cpu(site)
        sys1 = system_cpu()
        t_done = time.monotonic()
        stats = sub_stats(site, sub, signal.SIGUSR2)
        if perf:
            res["perf"] = finish_perf(site, perf, args)
        run = stats["run"]
        st = subprocess.run([os.path.join(bindir, "sluicectl"), "-c", cfg, "--json", "backlog"],
                            capture_output=True, text=True)
        res["sluicectl_after"] = json.loads(st.stdout) if st.returncode == 0 else st.stderr
        # the live readings that queued behind the backlog: until backlog is back to
        # what one round of polls leaves in flight
        t_live = time.monotonic()
        backlog_after = None
        while time.monotonic() - t_live < 30:
            time.sleep(1)
            hs = health_in(site, time.time() * 1000 - 3000, time.time() * 1000 + 1000)
            if hs:
                backlog_after = hs[-1]["backlog_rows"]
                if backlog_after <= w["devices"]:
                    break
        drain_s = (run["mark_done_ms"] - run["mark_first_ms"]) / 1000
        hs = health_in(site, t_spawn_real, run["mark_done_ms"])
        j50, j99, jpolls = jitter(hs)
        values = run["mark_have"] * w["points"]
        win = stats["window"]
        res.update({
            "drain_s": round(drain_s, 3),
            "drain_rate_msgs_per_s": round(run["mark_have"] / drain_s, 1) if drain_s > 0 else None,
            "spawn_to_done_s": round((run["mark_done_ms"] - t_spawn_real) / 1000, 3),
            "ready_to_first_s": round((run["mark_first_ms"] - t_spawn_real) / 1000 - ready, 3),
            "cpu_s": round(cpu1, 3),
            "cpu_s_per_1k_values": round(cpu1 / (win["values"] or values) * 1000, 5),
            "rss_peak_mb": round(st1.get("VmHWM", 0) / 1024, 2),
            "rss_final_mb": round(st1.get("VmRSS", 0) / 1024, 2),
            "rss_max_sampled_mb": round(rss_max / 1024, 2),
            "write_bytes": io1.get("write_bytes", 0),
            "disk_bytes_per_value": round(io1.get("write_bytes", 0) / (win["values"] or values), 2),
            "values_delivered": win["values"],
            "values_per_s": round(win["values"] / ((t_done - t_spawn) or 1), 1),
            "jitter_p50_ms": j50, "jitter_p99_ms": j99, "jitter_polls": jpolls,
            "not_stored": max((h["not_stored"] for h in hs), default=None),
            "polls_failed": max((h["polls_failed"] for h in hs), default=None),
            "backlog_in_health": [h["backlog_rows"] for h in hs],
            "live_latency_ms": win["latency_ms"],
            "others_cpu_util_pct": {k: round(100 * ((oth1.get(k) or 0) - (oth0.get(k) or 0))
                                             / (t_done - t_spawn), 1) for k in oth1},
            "sluiced_cpu_util_pct": round(100 * cpu1 / (t_done - t_spawn), 1),
            "machine_busy_pct": busy_pct(sys0, sys1),
            "foreign_load_cores": foreign(busy_pct(sys0, sys1), 100 * cpu1 / (t_done - t_spawn),
                                          oth0, oth1, t_done - t_spawn),
            "live_backlog_after_drain": backlog_after,
            "live_catch_up_s": round(time.monotonic() - t_live, 1),
            "run": run,
        })
        t = time.monotonic()
        rc = site.stop("sluiced", signal.SIGTERM, 30)
        res["stop_s"] = round(time.monotonic() - t, 2)
        res["exit_status"] = rc
        res["log"] = log_summary(sluiced)
        res["delivery"] = delivery(site, sub, bindir, cfg)
    except Exception:
        site.failed = True
        if sluiced:
            res["log"] = log_summary(sluiced)
        raise
    finally:
        close_site(site, args)
    return res


# -- collectd, side by side ----------------------------------------------------------------


def collectd_ready():
    """collectd with its modbus and mqtt plugins (Debian's collectd-core), installed here
    when missing: apt-get, through sudo when not root. None when it is there, else why
    not. Its package starts no service: Debian's unit needs /etc/collectd/collectd.conf,
    which collectd-core does not ship, and the bench writes its own config elsewhere."""
    def there():
        return all(os.path.exists(p) for p in (
            COLLECTD, COLLECTD_TYPES, os.path.join(COLLECTD_PLUGINS, "modbus.so"),
            os.path.join(COLLECTD_PLUGINS, "mqtt.so")))
    if there():
        return None
    if not shutil.which("apt-get"):
        return "collectd-core is not installed and there is no apt-get to install it"
    pre = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            return "collectd-core is not installed, and installing it needs root (no sudo)"
        pre = ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    argv = pre + ["apt-get", "install", "-y", "-q", "--no-install-recommends", "collectd-core"]
    log("installing collectd-core for the comparison: %s" % " ".join(argv))
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        # the package lists may be missing or stale
        subprocess.run(pre + ["apt-get", "update", "-q"], capture_output=True, text=True, env=env)
        r = subprocess.run(argv, capture_output=True, text=True, env=env)
    if r.returncode != 0 or not there():
        return "collectd-core could not be installed: %s" % (
            (r.stderr.strip().splitlines() or ["?"])[-1])
    return None


def collectd_config(site, w, base_port, broker_port, qos):
    """The same devices for collectd: one <Host> a device (its own 127.0.0.1 port, unit
    1, every interval), ten <Data> float32 holding registers (collectd's Float: the high
    word first, as sluice-sim serves them; collectd reads each <Data> with a request of
    its own), published by the mqtt plugin to the same broker at QoS qos. Everything else
    as Debian ships it (ReadThreads 5, WriteThreads 5)."""
    d = os.path.join(site.dir, "collectd")
    os.makedirs(d, exist_ok=True)
    secs = parse_dur(w["interval"])
    data = "".join(
        '  <Data "%s">\n    RegisterBase %d\n    RegisterType Float\n    RegisterCmd ReadHolding\n'
        '    Type gauge\n    Instance "%s"\n  </Data>\n' % (n, 2 * i, n)
        for i, n in enumerate(point_names(w["points"])))
    collect = "".join('      Collect "%s"\n' % n for n in point_names(w["points"]))
    hosts = "".join(
        '  <Host "dev%04d">\n    Address "127.0.0.1"\n    Port "%d"\n    Interval %g\n'
        '    <Slave 1>\n      Instance "bench"\n%s    </Slave>\n  </Host>\n'
        % (i, base_port + i, secs, collect) for i in range(w["devices"]))
    return site.write("collectd.conf", (
        'Hostname "bench"\nFQDNLookup false\nBaseDir "%s"\nPIDFile "%s/collectd.pid"\n'
        'PluginDir "%s"\nTypesDB "%s"\nInterval %g\n'
        'LoadPlugin logfile\n<Plugin logfile>\n  LogLevel info\n  File "%s"\n'
        '  Timestamp true\n</Plugin>\n'
        'LoadPlugin modbus\nLoadPlugin mqtt\n'
        '<Plugin modbus>\n%s%s</Plugin>\n'
        '<Plugin mqtt>\n  <Publish "bench">\n    Host "127.0.0.1"\n    Port "%d"\n'
        '    ClientId "collectd-bench"\n    QoS %d\n    Prefix "collectd"\n  </Publish>\n'
        '</Plugin>\n'
        % (d, d, COLLECTD_PLUGINS, COLLECTD_TYPES, secs, os.path.join(site.dir, "collectd.log"),
           data, hosts, broker_port, qos)))


def run_collectd(name, w, args, benchbin):
    """collectd on the same workload, one run: the same sim, a broker like sluiced's,
    the same subscriber reading collectd's payloads. CPU, memory and disk writes of the
    collectd process over the same window; latency from the time in each payload."""
    if w.get("serial") or "prefill_seconds" in w:
        return {"unavailable": "not compared: collectd keeps no outbox to drain"
                if "prefill_seconds" in w else "not compared on the RTU line"}
    if w["devices"] > COLLECTD_MAX_DEVICES:
        return {"unavailable": "not run: %d TCP devices need descriptors past 1023, and "
                "collectd's modbus plugin hands each socket to libmodbus, which select()s on "
                "it (collectd aborts past about 1,100 devices)" % w["devices"]}
    why = collectd_ready()
    if why:
        return {"unavailable": "skipped: " + why}
    site = Site("bench-%s-collectd" % name)
    res = {"devices": w["devices"], "points": w["points"], "interval": w["interval"],
           "version": subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "collectd-core"],
                                     capture_output=True, text=True).stdout.strip() or "?",
           "qos": args.collectd_qos}
    cd = None
    try:
        res["loadavg_before"] = wait_quiet(args.wait_load) if args.wait_load else loadavg()
        write_profile(site, w["points"])
        start_broker(site)
        base = free_port_range(w["devices"])
        cfg = site.write("sluice.yaml", bench_config(site, w, site.broker_port, base,
                                                     args.health, args.inflight, "1GiB"))
        site.start_sim(["--config", cfg])
        conf = collectd_config(site, w, base, site.broker_port, args.collectd_qos)
        site.sub_stats = os.path.join(site.dir, "sub-stats.json")
        sub = Proc("sub", [os.path.join(benchbin, "sub"), "-p", str(site.broker_port),
                           "-t", "collectd/#", "-q", "1", "-c", "-o", site.sub_stats],
                   os.path.join(site.dir, "sub.log"), stdout_pipe=True)
        site.procs["sub"] = sub
        line = wait_for(lambda: Site._readline(sub), 10, "the subscriber to subscribe")
        if "subscribed qos 1" not in line:
            raise RuntimeError("subscriber said %r" % line)
        t = time.monotonic()
        cd = Proc("collectd", [COLLECTD, "-f", "-C", conf], os.path.join(site.dir, "collectd.out"))
        site.procs["collectd"] = cd
        sub.send(signal.SIGHUP)

        def first():
            if not cd.alive():
                raise RuntimeError("collectd exited:\n" + cd.text()[-4000:])
            sub.send(signal.SIGHUP)
            time.sleep(0.1)
            try:
                with open(site.sub_stats) as f:
                    return json.load(f)["run"]["messages"] > 0
            except (OSError, ValueError):
                return False
        wait_for(first, 60, "collectd's first value at the subscriber", interval=0.2)
        res["first_value_s"] = round(time.monotonic() - t, 3)
        log("%s: collectd pid %d, first value after %.3f s; warming up %d s"
            % (name, cd.pid, res["first_value_s"], args.warmup))
        time.sleep(args.warmup)
        if not cd.alive():
            raise RuntimeError("collectd exited during the warm-up:\n" + cd.text()[-4000:])
        cpu0, io0, sys0 = proc_cpu(cd.pid), proc_io(cd.pid), system_cpu()
        oth0 = {k: proc_cpu(p.pid) for k, p in site.procs.items() if k != "collectd"}
        t0 = time.monotonic()
        sub.send(signal.SIGUSR1)
        rss_max = 0
        while time.monotonic() - t0 < args.seconds:
            time.sleep(min(1.0, args.seconds - (time.monotonic() - t0)))
            if not cd.alive():
                raise RuntimeError("collectd exited while measuring:\n" + cd.text()[-4000:])
            rss_max = max(rss_max, proc_status(cd.pid).get("VmRSS", 0))
        cpu1, io1, st1, sys1 = proc_cpu(cd.pid), proc_io(cd.pid), proc_status(cd.pid), system_cpu()
        oth1 = {k: proc_cpu(p.pid) for k, p in site.procs.items() if k != "collectd"}
        dur = time.monotonic() - t0
        win = sub_stats(site, sub, signal.SIGUSR2)["window"]
        values = win["values"]
        res.update({
            "window_s": round(dur, 3),
            "cpu_s": round(cpu1 - cpu0, 3),
            "cpu_util_pct": round(100 * (cpu1 - cpu0) / dur, 1),
            "values": values,
            "expected_values_per_s": w["devices"] * w["points"] / parse_dur(w["interval"]),
            "values_per_s": round(values / dur, 1),
            "cpu_s_per_1k_values": round((cpu1 - cpu0) / values * 1000, 5) if values else None,
            "rss_peak_mb": round(st1.get("VmHWM", 0) / 1024, 2),
            "rss_final_mb": round(st1.get("VmRSS", 0) / 1024, 2),
            "rss_anon_mb": round(st1.get("RssAnon", 0) / 1024, 2),
            "rss_max_sampled_mb": round(rss_max / 1024, 2),
            "threads": st1.get("Threads"),
            "fds": proc_fds(cd.pid),
            "write_bytes": io1.get("write_bytes", 0) - io0.get("write_bytes", 0),
            "disk_bytes_per_value": round((io1.get("write_bytes", 0) - io0.get("write_bytes", 0))
                                          / values, 2) if values else None,
            "latency_ms": win["latency_ms"],
            "others_cpu_util_pct": {k: round(100 * ((oth1.get(k) or 0) - (oth0.get(k) or 0)) / dur, 1)
                                    for k in oth1},
            "machine_busy_pct": busy_pct(sys0, sys1),
            "foreign_load_cores": foreign(busy_pct(sys0, sys1), 100 * (cpu1 - cpu0) / dur,
                                          oth0, oth1, dur),
            "loadavg_after": loadavg(),
        })
        t = time.monotonic()
        res["exit_status"] = site.stop("collectd", signal.SIGTERM, 30)
        res["stop_s"] = round(time.monotonic() - t, 2)
        text = open(os.path.join(site.dir, "collectd.log"), errors="replace").read()
        errs = [ln for ln in text.splitlines() if "[error]" in ln]
        res["log"] = {"errors": len(errs), "first_errors": errs[:5]}
    except Exception as e:  # noqa: BLE001 - the comparison fails alone, sluiced's figures stand
        site.failed = True
        res["failed"] = str(e)[:4000]
        log("%s: collectd run failed: %s" % (name, str(e).splitlines()[0] if str(e) else e))
    finally:
        close_site(site, args)
    return res


def delivery(site, sub, bindir, cfg):
    """After sluiced stopped: is every stored seq at the subscriber? The store's last seq
    and backlog (sluicectl) against the seqs the subscriber saw."""
    st = subprocess.run([os.path.join(bindir, "sluicectl"), "-c", cfg, "--json", "backlog"],
                        capture_output=True, text=True)
    time.sleep(0.5)  # the last PUBACKed messages on their way to the subscriber
    run = sub_stats(site, sub, signal.SIGTERM)["run"]
    out = {"subscriber": run}
    if st.returncode != 0:
        out["sluicectl"] = st.stderr.strip()
        return out
    s = json.loads(st.stdout)
    out.update({
        "last_seq": s["last_seq"],
        "backlog_at_stop": s["backlog_rows"],
        "dropped": s["dropped"],
        "distinct_at_subscriber": run["distinct_seq"],
        "gaps_below_max": run["max_seq"] - run["distinct_seq"],
        "duplicates": run["duplicates"],
        "not_at_subscriber": s["last_seq"] - run["distinct_seq"],
    })
    return out


def parse_dur(s):
    return float(s[:-2]) / 1000 if s.endswith("ms") else float(s[:-1])


def start_perf(site, pid, args):
    path = os.path.join(site.dir, "perf.data")
    # DWARF unwinding: libc and libsqlite3 are built without frame pointers
    argv = ["perf", "record", "-F", "199", "--call-graph", "dwarf,16384", "-p", str(pid),
            "-o", path]
    pr = Proc("perf", argv, os.path.join(site.dir, "perf.log"))
    site.procs["perf"] = pr
    return path


def finish_perf(site, path, args):
    site.stop("perf", signal.SIGINT, 30)
    # self time by library and symbol, then time including callees for sluiced's own
    # functions: which of our code paths the libraries' and the kernel's time is spent for
    flat = subprocess.run(["perf", "report", "-i", path, "--no-children", "--stdio",
                           "--sort", "dso,symbol", "-g", "none", "--percent-limit", "1"],
                          capture_output=True, text=True).stdout
    ours = subprocess.run(["perf", "report", "-i", path, "--children", "--stdio",
                           "--sort", "symbol", "-g", "none", "--dsos", "sluiced",
                           "--percent-limit", "2"], capture_output=True, text=True).stdout
    dest = os.path.join(HERE, "perf-%s.txt" % site.name.replace("bench-", ""))
    with open(dest, "w") as f:
        f.write(flat + "\n" + ours)
    lines = [ln for ln in ours.splitlines() if ln.strip() and not ln.startswith("#")]
    return lines[:30]


def close_site(site, args):
    if getattr(site, "notify", None):
        site.notify.close()
    if args.keep:
        site.failed = True
    # the sim's stdout pipe is closed by Proc.stop
    site.close()


# -- report ------------------------------------------------------------------------------


def fmt(v, spec="%.3g", none="-"):
    return none if v is None else spec % v


def row(r):
    if r.get("unavailable"):
        return "| %s | %s |" % (r["workload"], r["unavailable"])
    # drain: live readings queue behind the backlog; their wait is in the notes
    lat = r.get("latency_ms") or {}
    return "| %-9s | %5d x %-2d | %8s | %6s / %-6s | %9s | %5s / %-5s | %6s / %-6s | %6s | %6s |" % (
        r["workload"], r["devices"], r["points"],
        fmt(r.get("cpu_s_per_1k_values"), "%.4f"),
        fmt(r.get("rss_peak_mb"), "%.1f"), fmt(r.get("rss_final_mb"), "%.1f"),
        fmt(r.get("values_per_s"), "%.0f"),
        fmt(r.get("jitter_p50_ms"), "%g"), fmt(r.get("jitter_p99_ms"), "%g"),
        fmt(lat.get("p50"), "%.1f"), fmt(lat.get("p99"), "%.1f"),
        fmt(r.get("disk_bytes_per_value"), "%.1f"),
        fmt(r.get("ready_s"), "%.3f"),
    )


HEADER = (
    "| workload  | dev x pts | CPU s/1k values | RSS peak / final MB | values/s  | "
    "jitter p50/p99 ms | e2e p50/p99 ms | disk B/value | READY s |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def notes(r):
    out = []
    if r.get("unavailable"):
        return out
    n = r["workload"]
    if "expected_values_per_s" in r:
        exp = r["expected_values_per_s"]
        out.append("%s: %.0f of %.0f values/s expected (%.1f %%); sluiced used %.1f %% of one core; "
                   "others: %s" % (n, r["values_per_s"], exp, 100 * r["values_per_s"] / exp,
                                   r["cpu_util_pct"],
                                   ", ".join("%s %.1f %%" % kv for kv in r["others_cpu_util_pct"].items())))
        out.append("%s: not_stored %s, polls_failed %s, readings with errors %d; "
                   "threads %s, fds %s, stop %.2f s (status %s), log %d errors %d warnings; "
                   "machine %.0f %% busy (of all cores)"
                   % (n, r.get("not_stored"), r.get("polls_failed"), r["with_errors"],
                      r.get("threads"), r.get("fds"), r["stop_s"], r["exit_status"],
                      r["log"]["errors"], r["log"]["warnings"], r["machine_busy_pct"]))
    pd = r.get("polls_per_device")
    if pd:
        out.append("%s: polls per device over %.0f s: min %d, mean %.1f, max %d (mean interval "
                   "%.3f s)" % (n, pd["span_s"], pd["min"], pd["mean"], pd["max"],
                               pd["mean_interval_s"]))
    ln = r.get("line")
    if ln:
        out.append("%s: line %d baud, %d bytes a poll (%.1f ms of line with frame gaps): at most "
                   "%.1f polls/s; asked %.1f/s (%.0f %% of the line), done %s/s = %s %% of the "
                   "line's limit, bytes on the wire %s %% of its capacity (the sim paces "
                   "replies only: its line allows %.1f polls/s)"
                   % (n, ln["baud"], ln["bytes_per_poll"], ln["line_time_per_poll_ms"],
                      ln["max_polls_per_s"], ln["asked_polls_per_s"], ln["asked_utilisation_pct"],
                      ln["polls_per_s"], ln["utilisation_pct"], ln["bytes_on_wire_pct"],
                      ln["sim_max_polls_per_s"]))
    d = r.get("delivery", {})
    if "last_seq" in d:
        out.append("%s: delivery: %d seqs stored, %d at the subscriber (%d missing below the "
                   "highest seen, %d duplicates), backlog %d at stop, dropped %d"
                   % (n, d["last_seq"], d["distinct_at_subscriber"], d["gaps_below_max"],
                      d["duplicates"], d["backlog_at_stop"], d["dropped"]))
    if "drain_rate_msgs_per_s" in r:
        out.append("%s: %d prefilled readings delivered in %.1f s = %.0f messages/s "
                   "(target >= %.0f); spawn to last one %.1f s"
                   % (n, r["prefill_rows"], r["drain_s"], r["drain_rate_msgs_per_s"],
                      TARGET_DRAIN_RATE, r["spawn_to_done_s"]))
        sa = r.get("sluicectl_after")
        if isinstance(sa, dict):
            out.append("%s: sluicectl backlog when the last prefilled reading arrived: %d rows "
                       "(live readings in flight), %d after %.0f s more; dropped %d"
                       % (n, sa["backlog_rows"], r["live_backlog_after_drain"] or 0,
                          r["live_catch_up_s"], sa["dropped"]))
        out.append("%s: on disk %.1f B per buffered value (%.0f B per reading, %d MB for the "
                   "hour); written while draining %.1f B per value delivered"
                   % (n, r["disk_bytes_per_buffered_value"], r["disk_bytes_per_buffered_reading"],
                      r["db_bytes_prefilled"] // 10**6, r["disk_bytes_per_value"]))
        out.append("%s: CPU while draining: sluiced %.0f %% of one core, %s; machine %.0f %% busy"
                   % (n, r["sluiced_cpu_util_pct"],
                      ", ".join("%s %.0f %%" % kv for kv in r["others_cpu_util_pct"].items()),
                      r["machine_busy_pct"]))
        out.append("%s: live polls during the drain: jitter p50 %s / p99 %s ms over %d polls, "
                   "not_stored %s; live readings wait behind the backlog (telemetry goes in seq "
                   "order): e2e p50 %s / p99 %s ms"
                   % (n, r["jitter_p50_ms"], r["jitter_p99_ms"], r["jitter_polls"], r["not_stored"],
                      fmt(r["live_latency_ms"].get("p50"), "%.0f"),
                      fmt(r["live_latency_ms"].get("p99"), "%.0f")))
    if r.get("foreign_load_cores", 0) >= 0.25:
        out.append("%s: WARNING: other processes kept %.2f cores busy during the measurement; "
                   "jitter, latency and rates are not clean figures" % (n, r["foreign_load_cores"]))
    return out


CD_HEADER = (
    "| workload  | dev x pts | collectd CPU s/1k values | sluiced/collectd | RSS peak MB | "
    "values/s | e2e p50/p99 ms | disk B/value |\n|---|---|---|---|---|---|---|---|"
)


def cd_row(r):
    c = r["collectd"]
    if c.get("unavailable") or c.get("failed"):
        return "| %-9s | collectd %s |" % (r["workload"], c.get("unavailable") or
                                          "FAILED: " + c["failed"].splitlines()[0])
    lat = c.get("latency_ms") or {}
    return "| %-9s | %5d x %-2d | %8s | %6s | %5s | %6s of %-6.0f | %6s / %-6s | %6s |" % (
        r["workload"], c["devices"], c["points"], fmt(c.get("cpu_s_per_1k_values"), "%.4f"),
        fmt(r.get("cpu_vs_collectd"), "%.2fx"), fmt(c.get("rss_peak_mb"), "%.1f"),
        fmt(c.get("values_per_s"), "%.0f"), c["expected_values_per_s"],
        fmt(lat.get("p50"), "%.1f"), fmt(lat.get("p99"), "%.1f"),
        fmt(c.get("disk_bytes_per_value"), "%.1f"))


TARGETS_HEADER = (
    "| workload  | CPU s/1k values | vs collectd (<= %gx) | peak RSS MB (<= %g) | e2e p99 ms "
    "(<= %g) | B written/value (<= %g) | drain msgs/s (>= %g) |\n|---|---|---|---|---|---|---|"
    % (TARGET_CPU_VS_COLLECTD, TARGET_RSS_MB, TARGET_E2E_P99_MS, TARGET_DISK_B_PER_VALUE,
       TARGET_DRAIN_RATE))


def mark(ok):
    return "" if ok is None else (" ok" if ok else " NOT MET")


def targets_row(r):
    """The five figures of issue 16 for one workload, each against its target; '-' where
    the target does not apply (no collectd run, more than 1,000 devices, no drain)."""
    phases = r.get("phases")
    if phases:
        return "\n".join(targets_row(dict(p, workload=p["workload"])) for p in phases)
    cpu, vs = r.get("cpu_s_per_1k_values"), r.get("cpu_vs_collectd")
    cpu_ok = (cpu <= TARGET_CPU_PER_1K) if r["workload"] == "reference" and cpu else None
    rss = r.get("rss_peak_mb")
    lat = (r.get("latency_ms") or {}).get("p99")
    disk = r.get("disk_bytes_per_value")
    drain = r.get("drain_rate_msgs_per_s")
    return "| %-9s | %s%s | %s%s | %s%s | %s%s | %s%s | %s%s |" % (
        r["workload"],
        fmt(cpu, "%.4f"), mark(cpu_ok),
        fmt(vs, "%.2fx"), mark(vs <= TARGET_CPU_VS_COLLECTD if vs else None),
        fmt(rss, "%.1f"), mark(rss <= TARGET_RSS_MB
                               if rss and r["devices"] <= TARGET_RSS_MAX_DEVICES else None),
        fmt(lat, "%.1f"), mark(lat <= TARGET_E2E_P99_MS if lat is not None else None),
        fmt(disk, "%.1f"), mark(disk <= TARGET_DISK_B_PER_VALUE if disk is not None else None),
        fmt(drain, "%.0f"), mark(drain >= TARGET_DRAIN_RATE if drain else None))


def main():
    ap = argparse.ArgumentParser(description="sluice benchmark (issues 8 and 16)")
    ap.add_argument("workloads", nargs="*", default=["small"], metavar="WORKLOAD",
                    help="|".join(list(WORKLOADS) + list(ALIASES)) + " (default small; "
                    "compare = medium reference --collectd)")
    ap.add_argument("--seconds", type=float, default=30, help="measuring window (default 30)")
    ap.add_argument("--warmup", type=float, default=10, help="warm-up before it (default 10)")
    ap.add_argument("--health", type=int, default=5, help="health_interval, s (default 5)")
    ap.add_argument("--inflight", type=int, default=0,
                    help="uplink.inflight (default: sluiced's own default)")
    ap.add_argument("--drain-timeout", type=int, default=900)
    ap.add_argument("--perf", action="store_true",
                    help="perf record sluiced in the window; report in bench/perf-<workload>.txt")
    ap.add_argument("--keep", action="store_true", help="keep the run directories and logs")
    ap.add_argument("--build", default=BUILD, help="build dir (default %s)" % BUILD)
    ap.add_argument("--collectd", action="store_true",
                    help="also run collectd (Debian's collectd-core, installed when missing) on "
                    "each TCP workload of up to %d devices, and report the ratio"
                    % COLLECTD_MAX_DEVICES)
    # collectd's mqtt plugin never reads the broker's PUBACKs (a Publish block runs no
    # network loop): at QoS 1 libmosquitto holds its messages once 20 are in flight, and
    # they reach the subscriber 1-2 s late, a quarter of them not within the window
    # (measured here, collectd-core 5.12.0-14). QoS 0, at most once, is how it works.
    ap.add_argument("--collectd-qos", type=int, default=0, choices=(0, 1, 2),
                    help="QoS of collectd's mqtt plugin (default 0: at QoS 1 it never reads its "
                    "PUBACKs and stalls; docs/performance.md)")
    ap.add_argument("--format", default="sluice", choices=("sluice", "sparkplug", "thingsboard"),
                    help="uplink.format of sluiced (default sluice); results in "
                    "bench/results-<workload>-<format>.json for the others")
    ap.add_argument("--web", action="store_true",
                    help="serve the page too, with a client asking for /api/status every 2 s "
                    "(results in bench/results-<workload>-web.json)")
    ap.add_argument("--wait-load", type=float, default=0, metavar="L",
                    help="before each run, wait (at most 10 min) for the 1-minute load average "
                    "to fall under L (default: do not wait)")
    args = ap.parse_args()
    global FORMAT
    FORMAT = args.format
    wls = []
    for wl in args.workloads:
        if wl in ALIASES:
            args.collectd = True
            wls += [a for a in ALIASES[wl] if a not in wls]
        elif wl not in WORKLOADS:
            ap.error("unknown workload %r (known: %s)"
                     % (wl, ", ".join(list(WORKLOADS) + list(ALIASES))))
        elif wl not in wls:
            wls.append(wl)
    args.workloads = wls

    # sim and sluiced need a descriptor per device; they inherit our limit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    bindir, benchbin = build(args.build)
    harness.BIN = bindir
    mach = machine()
    log("machine: %s, %d cores, %.1f GiB, %s on %s" % (mach["cpu"], mach["cores"], mach["mem_gib"],
                                                    mach["kernel"], mach["fs"]))
    results = []
    status = 0
    for wl in args.workloads:
        w = WORKLOADS[wl]
        la0 = wait_quiet(args.wait_load) if args.wait_load else loadavg()
        try:
            if w.get("serial"):
                if not serial_available():
                    r = {"workload": wl, "unavailable": "rtu: not available in this build "
                         "(sluiced polls no serial lines yet: daemon/core.c does not start "
                         "serpoll, and sluice-sim serves Modbus TCP only)"}
                else:
                    r = run_rtu(wl, w, args, bindir, benchbin)
            elif "prefill_seconds" in w:
                r = run_drain(wl, w, args, bindir, benchbin)
            else:
                r = run_tcp(wl, w, args, bindir, benchbin)
        except Exception as e:  # noqa: BLE001 - report and go on with the next workload
            status = 1
            log("%s failed: %s" % (wl, e))
            r = {"workload": wl, "failed": str(e)[:4000]}
        r["loadavg_before"], r["loadavg_after"] = la0, loadavg()
        if args.collectd and "failed" not in r and not r.get("unavailable"):
            r["collectd"] = run_collectd(wl, w, args, benchbin)
            c = r["collectd"]
            if c.get("cpu_s_per_1k_values") and r.get("cpu_s_per_1k_values"):
                r["cpu_vs_collectd"] = round(r["cpu_s_per_1k_values"] / c["cpu_s_per_1k_values"], 3)
        r["machine"] = mach
        r["when"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with open(os.path.join(HERE, "results-%s%s%s.json" % (wl, "-web" if args.web else "",
                                                      "" if FORMAT == "sluice" else "-" + FORMAT)),
                  "w") as f:
            json.dump(r, f, indent=1, ensure_ascii=False)
            f.write("\n")
        results.append(r)

    print("sluice bench on %s (%d cores, %.0f GiB), %s; window %g s after %g s warm-up"
          % (mach["cpu"], mach["cores"], mach["mem_gib"], mach["fs"], args.seconds, args.warmup))
    print(HEADER)
    for r in results:
        if "failed" in r:
            print("| %s | FAILED: %s |" % (r["workload"], r["failed"].splitlines()[0]))
        else:
            for ph in r.get("phases", [r]):
                print(row(ph))
    print()
    for r in results:
        for ph in r.get("phases", [r]):
            for line in notes(ph):
                print("- " + line)
    if any(r.get("collectd") for r in results):
        print()
        c = next(r["collectd"] for r in results if r.get("collectd"))
        print("collectd-core %s (QoS %s), side by side (same sim, broker and window, one run each):"
              % (c.get("version", "?"), c.get("qos", "?")))
        print(CD_HEADER)
        for r in results:
            if r.get("collectd"):
                print(cd_row(r))
    print()
    print("Against the targets (issue 16):")
    print(TARGETS_HEADER)
    for r in results:
        if "failed" not in r and not r.get("unavailable"):
            print(targets_row(r))
    print()
    print("- targets: CPU <= %gx collectd's per value (where measured; at reference <= %.3f "
          "CPU s/1k values); peak RSS <= %.0f MB up to %d devices; e2e p99 <= %.0f ms; <= %.0f B "
          "written per value; drain >= %.0f msgs/s; poll jitter p99 <= %.0f ms"
          % (TARGET_CPU_VS_COLLECTD, TARGET_CPU_PER_1K, TARGET_RSS_MB, TARGET_RSS_MAX_DEVICES,
             TARGET_E2E_P99_MS, TARGET_DISK_B_PER_VALUE, TARGET_DRAIN_RATE, TARGET_JITTER_P99_MS))
    for r in results:
        la0, la1 = r.get("loadavg_before"), r.get("loadavg_after")
        if la0 and la1:
            c = r.get("collectd") or {}
            cl0, cl1 = c.get("loadavg_before"), c.get("loadavg_after")
            print("- %s: load average %.2f before, %.2f after (1 min)%s"
                  % (r["workload"], la0[0], la1[0],
                     "; collectd's run: %.2f before, %.2f after" % (cl0[0], cl1[0])
                     if cl0 and cl1 else ""))
    return status


if __name__ == "__main__":
    sys.exit(main())
