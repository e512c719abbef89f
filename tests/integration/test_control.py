#!/usr/bin/env python3
"""The control socket: sluicectl probe through the running sluiced, status as it is now,
and clients that misbehave.

- probe through sluiced on a serial line (a socat pty pair) that sluiced polls: both
  forms (--config FILE DEVICE, and a raw --rtu target with --config) say `via: sluiced`
  in text and --json, print what the sim served, and the daemon's polls go on meanwhile;
  sluiced holds the tty once; another --baud than the line's is refused; a device the
  daemon has offline is tried once (one timeout) and said to be offline; several probes
  at once on one line: one at a time, the others told the line is busy, none opens it;
- over TCP: a raw target that is one of the daemon's buses goes through it, one that is
  not goes direct (with why), one of the wrong kind is refused with the option to use;
  with the daemon stopped, the same probe goes direct;
- status --json while running has source "sluiced" and is up to date; stopped: "stored";
- a socket that accepts and never answers (a stuck daemon): status falls back to the
  stored status and says when it was stored and why it could not ask; probe refuses to
  open the line;
- clients that send garbage, a line too long, stall, or come one too many get a clear
  error reply or are let go, and never hold up the daemon: its telemetry keeps its pace
  and other clients are answered;
- under systemd's RuntimeDirectory= ($RUNTIME_DIRECTORY), the socket is there, mode
  0660, with a link at data_dir/control that sluicectl follows; both go at the stop.
"""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Proc, Site, config_yaml, free_port, telemetry, wait_for  # noqa: E402


def ctl(site, *args):
    return site.run([os.path.join(harness.BIN, "sluicectl")] + list(args), timeout=60)


def served(trace, unit, point):
    return [rec["values"][point] for rec in harness.trace_records(trace)
            if rec.get("unit") == unit and point in rec.get("values", {})]


def tty_opens(pid, tty):
    target = os.path.realpath(tty)
    fds = os.path.join("/proc", str(pid), "fd")
    n = 0
    for fd in os.listdir(fds):
        try:
            n += os.readlink(os.path.join(fds, fd)) == target
        except OSError:
            continue
    return n


def max_gap(ts):
    return max(b - a for a, b in zip(ts, ts[1:]))


SERIAL = (
    "  - id: inlet\n"
    "    bus: line\n"
    "    unit_id: 1\n"
    "    profile: flowmeter-generic\n"
    "    interval: 500ms\n"
    "  - id: tuf\n"
    "    bus: line\n"
    "    unit_id: 2\n"
    "    interval: 500ms\n"
    "    points:\n"
    "      flow:   { table: holding, address: 0, type: float32, order: CDAB, unit: m3/h }\n"
    "      status: { table: holding, address: 10, type: uint16 }\n"
)


DEAD = (
    "  - id: dead\n"
    "    bus: line\n"
    "    unit_id: 9\n"
    "    profile: flowmeter-generic\n"
    "    interval: 500ms\n"
    "    offline_after: 2\n"
)


# more points than one request to sluiced takes (128): the probe asks in two
BIG = ("  - id: big\n"
       "    bus: line\n"
       "    unit_id: 3\n"
       "    interval: 5s\n"
       "    points:\n" + "".join("      p%03d: { table: holding, address: %d, type: uint16 }\n"
                                  % (i, 2 * i) for i in range(130)))


def serial_site(site, extra_env=None, extra="", silent=""):
    """sluiced polling a pty line (units 1 and 2, and the devices of extra) served by the
    sim, and those of silent, which the sim does not serve. Returns the config, the
    daemon's end of the line, the trace, the daemon."""
    site.start_broker()
    a, b = site.start_pty_pair()
    site.copy_profiles("flowmeter-generic")
    buses = ("  - id: line\n"
             "    rtu: { device: %s, baud: 9600 }\n"
             "    timeout: 300ms\n" % a)
    cfg = site.write("sluice.yaml", config_yaml(site, "gw1", site.broker_port, buses,
                                                SERIAL + extra + silent))
    sim_cfg = site.write("sim.yaml", config_yaml(site, "gw1", site.broker_port,
                                                 buses.replace(a, b), SERIAL + extra))
    trace = os.path.join(site.dir, "trace.jsonl")
    site.start_sim(["--config", sim_cfg, "--trace", trace, "--seed", "11"])
    site.start_subscriber("it/gw1/#")
    if extra_env:
        env = dict(os.environ, **extra_env)
        d = Proc("sluiced", site.daemon_argv(cfg), os.path.join(site.dir, "sluiced.log"),
                 env=env)
        site.procs["sluiced"] = d
    else:
        d = site.start_daemon(cfg)
    wait_for(lambda: len(telemetry(site, "inlet")) >= 3, 30, "the line polled")
    return cfg, a, trace, d


def test_probe_through_sluiced_on_a_serial_line():
    with Site("ctl-rtu") as site:
        cfg, tty, trace, d = serial_site(site, extra=BIG, silent=DEAD)

        # a configured device: every point, through the daemon's line
        r = ctl(site, "-c", cfg, "probe", "tuf")
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        lines = r.stdout.splitlines()
        assert lines[0].startswith("device tuf on bus line"), r.stdout
        assert lines[1] == "via: sluiced (bus line, between its polls)", r.stdout
        j = json.loads(ctl(site, "-c", cfg, "--json", "probe", "tuf").stdout)
        assert j["via"] == "sluiced" and j["bus"] == "line", j
        assert j["sluiced_device"] == {"id": "tuf", "state": "online"}, j
        flow = next(p for p in j["points"] if p["name"] == "flow")
        wait_for(lambda: any(abs(flow["value"] - v) < 1e-3 for v in served(trace, 2, "flow")),
                 5, "the sim's trace of the flow probed")

        j = json.loads(ctl(site, "-c", cfg, "--json", "probe", "big").stdout)
        assert j["via"] == "sluiced" and len(j["points"]) == 130, j["via"]
        bad = [p for p in j["points"] if "error" in p or not isinstance(p["value"], int)]
        assert not bad, bad[:3]

        # a raw target naming the daemon's line, with --config to find the daemon
        r = ctl(site, "probe", "--config", cfg, "--rtu", tty, "--unit", "2",
                "--read", "holding:0:2", "--json")
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        j = json.loads(r.stdout)
        assert j["via"] == "sluiced" and j["bus"] == "line", j
        assert [x["address"] for x in j["registers"]] == [0, 1, 2], j
        r = ctl(site, "-c", cfg, "probe", "--rtu", tty, "--unit", "2", "--read", "holding:0:2")
        assert "via: sluiced (bus line, between its polls)" in r.stdout, r.stdout
        assert "float32 CDAB" in r.stdout, r.stdout
        # the line's own settings, named: a probe cannot change them under the daemon
        r = ctl(site, "-c", cfg, "probe", "--rtu", tty, "--baud", "19200", "--unit", "2",
                "--read", "holding:0")
        assert r.returncode == 2 and "sluiced polls %s at 9600 baud" % tty in r.stderr, \
            (r.returncode, r.stderr)
        # a unit nobody answers for: its timeout, said as a probe says it
        r = ctl(site, "-c", cfg, "probe", "--rtu", tty, "--unit", "9", "--timeout", "200",
                "--read", "holding:0")
        assert r.returncode == 1 and "timeout" in r.stdout and "via: sluiced" in r.stdout, \
            (r.returncode, r.stdout, r.stderr)

        # a device the daemon has offline: the probe tries it once more, and says so
        wait_for(lambda: any(p.get("state") == "offline"
                             for p in harness.payloads(site, "device/dead")), 20,
                 "the dead unit offline")
        t0 = time.monotonic()
        r = ctl(site, "-c", cfg, "probe", "dead")
        assert r.returncode == 1 and "via: sluiced" in r.stdout, (r.stdout, r.stderr)
        assert "sluiced has dead offline (timeout): it polls it at the slower offline pace" \
            in r.stdout, r.stdout
        assert r.stdout.count("error: timeout") == 5, r.stdout  # one timeout, not five
        assert time.monotonic() - t0 < 5
        j = json.loads(ctl(site, "-c", cfg, "--json", "probe", "dead").stdout)
        assert j["sluiced_device"] == {"id": "dead", "state": "offline",
                                       "last_error": "timeout"}, j

        # several at once on one line: one at a time; the others are told it is busy
        argv = [os.path.join(harness.BIN, "sluicectl"), "-c", cfg, "probe", "--json", "tuf"]
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(4)]
        outs = [p.communicate(timeout=60) for p in procs]
        ok = [json.loads(o) for o, e in outs if o.strip()]
        busy = [e for o, e in outs if "another probe is in progress on bus line" in e]
        assert ok and all(x["via"] == "sluiced" for x in ok), outs
        assert len(ok) + len(busy) == 4, outs

        # one master on the line all along, and the polls went on at their pace
        assert tty_opens(d.pid, tty) == 1
        wait_for(lambda: len(telemetry(site, "inlet")) >= 6, 20, "more polls")
        ts = [m["ts"] for m in telemetry(site, "inlet")]
        assert max_gap(ts) < 2000, ts
        assert "control: probe of bus line" in d.text(), d.text()
        assert site.stop("sluiced", signal.SIGTERM, timeout=15) == 0, d.text()
        assert not os.path.exists(os.path.join(site.dir, "data", "control"))

        # no daemon: the same probe opens the line itself
        r = ctl(site, "-c", cfg, "probe", "--rtu", tty, "--unit", "2", "--read",
                "holding:0:2", "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["via"] == "direct", (r.stdout,
                                                                                r.stderr)


def test_probe_tcp_targets():
    with Site("ctl-tcp") as site:
        site.start_broker()
        port, other = free_port(), free_port()
        site.copy_profiles("flowmeter-generic")
        buses = ("  - id: plc\n"
                 "    tcp: { host: 127.0.0.1, port: %d }\n"
                 "    timeout: 500ms\n" % port)
        devices = ("  - id: inlet\n"
                   "    bus: plc\n"
                   "    unit_id: 1\n"
                   "    profile: flowmeter-generic\n"
                   "    interval: 1s\n")
        cfg = site.write("sluice.yaml", config_yaml(site, "gw1", site.broker_port, buses,
                                                    devices))
        site.start_sim(["--listen", "127.0.0.1:%d" % port, "--device", "1:flowmeter-generic",
                        "--listen", "127.0.0.1:%d" % other, "--device", "1:flowmeter-generic",
                        "-p", site.dir + "/devices"])
        site.start_subscriber("it/gw1/#")
        d = site.start_daemon(cfg)
        wait_for(lambda: len(telemetry(site, "inlet")) >= 2, 30, "inlet polled")

        # one of the daemon's buses: through it
        r = ctl(site, "-c", cfg, "probe", "--tcp", "127.0.0.1:%d" % port, "--read",
                "holding:0:2", "--json")
        j = json.loads(r.stdout)
        assert r.returncode == 0 and j["via"] == "sluiced" and j["bus"] == "plc", (r.stdout,
                                                                                   r.stderr)
        assert j["sluiced_device"]["id"] == "inlet", j
        # not one of its buses: direct, and why
        r = ctl(site, "-c", cfg, "probe", "--tcp", "127.0.0.1:%d" % other, "--read",
                "holding:0:2")
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "via: direct (sluiced runs, but sluiced has no bus at 127.0.0.1:%d" % other \
            in r.stdout, r.stdout
        j = json.loads(ctl(site, "-c", cfg, "probe", "--tcp", "127.0.0.1:%d" % other,
                           "--read", "holding:0:2", "--json").stdout)
        assert j["via"] == "direct", j
        # its bus, as the wrong kind
        r = ctl(site, "-c", cfg, "probe", "--rtu-tcp", "127.0.0.1:%d" % port, "--read",
                "holding:0")
        assert r.returncode == 2 and "is tcp in sluiced's configuration: probe it with --tcp" \
            in r.stderr, (r.returncode, r.stderr)
        # SunSpec devices are probed raw, named with their own bus's option
        assert site.stop("sluiced", signal.SIGTERM, timeout=15) == 0, d.text()
        j = json.loads(ctl(site, "-c", cfg, "probe", "--tcp", "127.0.0.1:%d" % port,
                           "--read", "holding:0:2", "--json").stdout)
        assert j["via"] == "direct", j


def test_status_live_and_stored():
    with Site("ctl-status") as site:
        cfg, tty, trace, d = serial_site(site)
        for _ in range(3):
            s = json.loads(ctl(site, "-c", cfg, "--json", "status").stdout)
            assert s["source"] == "sluiced" and s["running"] is True, s
            # live: its counters are this moment's, not up to 5 s old
            assert abs(s["updated"] - time.time() * 1000) < 1000, s["updated"]
            time.sleep(0.3)
        n1 = {x["id"]: x["polls_ok"] for x in s["devices"]}
        time.sleep(1.2)
        s = json.loads(ctl(site, "-c", cfg, "--json", "status").stdout)
        n2 = {x["id"]: x["polls_ok"] for x in s["devices"]}
        assert n2["inlet"] >= n1["inlet"] + 2, (n1, n2)
        out = ctl(site, "-c", cfg, "status").stdout
        assert "as it stored it" not in out, out
        assert site.stop("sluiced", signal.SIGTERM, timeout=15) == 0, d.text()
        s = json.loads(ctl(site, "-c", cfg, "--json", "status").stdout)
        assert s["source"] == "stored" and s["running"] is False, s


def stuck_listener(path):
    """A socket at path that takes connections and never answers, as a stuck daemon's
    would. Returns a function that removes it."""
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(path)
    lst.listen(4)
    lst.settimeout(0.2)
    held = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                held.append(lst.accept()[0])
            except OSError:
                continue
    th = threading.Thread(target=accept)
    th.start()

    def close():
        stop.set()
        th.join()
        for c in held:
            c.close()
        lst.close()
        os.unlink(path)
    return close


def test_stuck_daemon():
    """A daemon that takes a connection and never answers: status shows what it stored
    and why it could not be asked; probe does not open the line."""
    with Site("ctl-stuck") as site:
        cfg, tty, trace, d = serial_site(site)
        path = os.path.join(site.dir, "data", "control")
        # the daemon's own socket aside, a stuck one in its place
        os.rename(path, path + ".real")
        close = stuck_listener(path)
        try:
            t0 = time.monotonic()
            r = ctl(site, "-c", cfg, "status")
            took = time.monotonic() - t0
            assert r.returncode == 0, r.stderr
            lines = r.stdout.splitlines()
            assert lines[1].startswith("sluiced   running, pid %d" % d.pid), r.stdout
            assert lines[2].startswith("          (as it stored it ") and \
                "did not answer within 5000 ms)" in lines[2], r.stdout
            assert 4.5 < took < 10, took
            s = json.loads(ctl(site, "-c", cfg, "--json", "status").stdout)
            assert s["source"] == "stored" and s["running"] is True, s
            r = ctl(site, "-c", cfg, "probe", "--rtu", tty, "--unit", "2", "--read",
                    "holding:0")
            assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
            assert "did not answer within" in r.stderr, r.stderr
            assert "a sluiced may be polling this line and cannot be asked, so the line is " \
                   "not opened" in r.stderr, r.stderr
            assert tty_opens(d.pid, tty) == 1
        finally:
            close()
            os.rename(path + ".real", path)
        s = json.loads(ctl(site, "-c", cfg, "--json", "status").stdout)
        assert s["source"] == "sluiced", s
        assert site.stop("sluiced", signal.SIGTERM, timeout=15) == 0, d.text()

        # stopped, with a stuck socket left in its place: the stored status, "not running"
        close = stuck_listener(path)
        try:
            r = ctl(site, "-c", cfg, "status")
            assert r.returncode == 0 and "not running: stopped at" in r.stdout, r.stdout
        finally:
            close()


def raw_client(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    return s


def read_reply(s):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return json.loads(buf) if buf else None


def test_misbehaving_clients():
    with Site("ctl-bad") as site:
        cfg, tty, trace, d = serial_site(site)
        path = os.path.join(site.dir, "data", "control")
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)

        # garbage and unknown requests: a clear error each, the connection still serves
        c = raw_client(path)
        for req, code in ((b"\x00\xffhello\n", "bad_request"),
                          (b'{"v":1,"op":"reboot"}\n', "unknown_op"),
                          (b'{"v":9,"op":"status"}\n', "version"),
                          (b'{"v":1,"op":"probe","unit":1}\n', "bad_request")):
            c.sendall(req)
            rep = read_reply(c)
            assert rep["ok"] is False and rep["error"] == code and rep["message"], (req, rep)
        c.sendall(b'{"v":1,"op":"hello","id":"h"}\n')
        rep = read_reply(c)
        assert rep["ok"] and rep["id"] == "h" and rep["data_dir"] == os.path.join(site.dir,
                                                                                  "data"), rep
        c.close()

        # a line past the bound: said, then let go
        c = raw_client(path)
        c.sendall(b"x" * 20000)
        rep = read_reply(c)
        assert rep and rep["error"] == "too_large", rep
        c.close()

        # seven that stall mid-request, and one more that says nothing: the daemon goes on
        stalled = []
        for _ in range(7):
            s = raw_client(path)
            s.sendall(b'{"v":1,"op":')
            stalled.append(s)
        t0 = time.monotonic()
        r = ctl(site, "-c", cfg, "--json", "status")
        assert r.returncode == 0 and json.loads(r.stdout)["source"] == "sluiced", r.stderr
        assert time.monotonic() - t0 < 3
        # all slots taken: the next one is told so at once
        last = raw_client(path)
        extra = raw_client(path)
        rep = read_reply(extra)
        assert rep["error"] == "busy" and "clients are connected" in rep["message"], rep
        extra.close()
        n0 = len(telemetry(site, "inlet"))
        time.sleep(3)
        ts = [m["ts"] for m in telemetry(site, "inlet")]
        assert len(ts) >= n0 + 4 and max_gap(ts[-8:]) < 1500, ts[-10:]
        # let go at their deadline (10 s), told why
        stalled[0].settimeout(15)
        last.settimeout(15)
        rep = read_reply(stalled[0])
        assert rep["error"] == "timeout", rep
        assert stalled[0].recv(10) == b""
        assert last.recv(10) == b""  # the idle one: without a word
        for s in stalled:
            s.close()
        last.close()
        r = ctl(site, "-c", cfg, "--json", "status")
        assert r.returncode == 0 and json.loads(r.stdout)["source"] == "sluiced", r.stderr
        assert site.stop("sluiced", signal.SIGTERM, timeout=15) == 0, d.text()
        assert "<3>" not in d.text(), d.text()


def test_runtime_directory():
    """As the unit runs it: RuntimeDirectory=sluice sets $RUNTIME_DIRECTORY."""
    with Site("ctl-run") as site:
        run = os.path.join(site.dir, "run")
        os.makedirs(run, mode=0o750)
        cfg, tty, trace, d = serial_site(site, {"RUNTIME_DIRECTORY": run})
        sock = os.path.join(run, "control")
        link = os.path.join(site.dir, "data", "control")
        st = os.stat(sock)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
        assert os.path.islink(link) and os.readlink(link) == sock, link
        s = json.loads(ctl(site, "-c", cfg, "--json", "status").stdout)
        assert s["source"] == "sluiced", s
        j = json.loads(ctl(site, "-c", cfg, "--json", "probe", "tuf").stdout)
        assert j["via"] == "sluiced", j
        assert site.stop("sluiced", signal.SIGTERM, timeout=15) == 0, d.text()
        assert not os.path.lexists(sock) and not os.path.lexists(link)


if __name__ == "__main__":
    harness.main()
