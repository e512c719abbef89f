#!/usr/bin/env python3
"""SunSpec end to end: sluice-sim serves its SunSpec inverter (models 1, 103, 120 at
40000); sluiced, with a `profile: sunspec` device, discovers it through the poller that
owns its bus and publishes its telemetry by name.

Over Modbus TCP:
- the discovery is logged with maker, model list and rated power;
- telemetry carries W, WH, Hz, PF, DCA, DCV, DCW, St, Evt1 and the strings Mn, Md, SN,
  each value one the sim served (its --trace);
- a rule naming a SunSpec point (resolved only after discovery) fires;
- a sunspec device that does not answer is logged and left unpolled, the rest runs;
- SIGHUP discovers again and polling goes on; SIGTERM exits 0.
On a serial line (a socat pty pair), shared with a flow meter that is polled meanwhile:
the same telemetry, and the daemon holds the tty open once (discovery reads through the
line's poller, never a second opening). As RTU frames over TCP (a DTU): the same.
A late inverter (the sim started after sluiced, on a pty): not polled at first, found by
a later round of discovery without a reload, and its rule comes alive.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Site, config_yaml, free_port, load_trace, telemetry, wait_for  # noqa: E402

WANT = {"W", "WH", "Hz", "PF", "DCA", "DCV", "DCW", "St", "Evt1", "Mn", "Md", "SN"}


def sunspec_site(site):
    """The inverter site in site: its broker started, the config written. Returns the
    config's path and the port the sim is to serve."""
    site.start_broker()
    sim_port = free_port()
    dead_port = free_port()  # nothing listens here
    buses = (
        "  - id: roof\n"
        "    tcp: { host: 127.0.0.1, port: %d }\n"
        "    timeout: 1s\n"
        "  - id: dead\n"
        "    tcp: { host: 127.0.0.1, port: %d }\n"
        "    timeout: 500ms\n" % (sim_port, dead_port)
    )
    devices = (
        "  - id: school-pv\n"
        "    name: 第三小学 屋顶光伏\n"
        "    bus: roof\n"
        "    unit_id: 3\n"
        "    profile: sunspec\n"
        "    interval: 1s\n"
        "  - id: ghost-pv\n"
        "    bus: dead\n"
        "    unit_id: 1\n"
        "    profile: sunspec\n"
        "    interval: 1s\n"
    )
    alerts = (
        "alerts:\n"
        "  - id: grid-hz\n"
        "    kind: threshold\n"
        "    point: school-pv.Hz\n"
        "    above: 49.5\n"
        "  - id: pv1\n"
        "    kind: pv\n"
        "    inverter: school-pv\n"
    )
    cfg = site.write("sluice.yaml",
                     config_yaml(site, "gw1", site.broker_port, buses, devices, alerts))
    return cfg, sim_port


def test_sunspec_discovery_and_polling():
    with Site("sunspec") as site:
        cfg, sim_port = sunspec_site(site)
        r = site.run([os.path.join(harness.BIN, "sluiced"), "--check-config", cfg])
        assert r.returncode == 0, "check-config: %d %s %s" % (r.returncode, r.stdout, r.stderr)

        trace = os.path.join(site.dir, "trace.jsonl")
        site.start_sim(["--listen", "127.0.0.1:%d" % sim_port, "--device", "3:sunspec",
                        "--trace", trace, "--seed", "5"])
        site.start_subscriber("it/gw1/#")
        d = site.start_daemon(cfg)

        wait_for(lambda: len(telemetry(site, "school-pv")) >= 4, 40, "SunSpec telemetry")
        log = d.text()
        found = [l for l in log.splitlines() if "device school-pv: SunSpec" in l]
        assert found, log
        assert "sluice" in found[0] and "SN SIM-003-" in found[0], found[0]
        assert "models 1 103 120" in found[0], found[0]
        assert "rated 30 kW" in found[0], found[0]
        ghost = [l for l in log.splitlines() if "device ghost-pv" in l]
        assert ghost and "not polled until it answers" in ghost[0], log

        served = load_trace(trace)
        checked = 0
        for msg in telemetry(site, "school-pv"):
            vals = msg["values"]
            assert set(vals) >= WANT, sorted(vals)
            assert vals["Mn"] == "sluice", vals
            assert vals["SN"].startswith("SIM-003-"), vals
            assert isinstance(vals["St"], int) and isinstance(vals["Evt1"], int), vals
            # the sim's temperatures sensors that are not implemented are not points
            assert "TmpTrns" not in vals, vals
            for k, v in vals.items():
                if isinstance(v, str):
                    continue
                got = served.get((3, k), [])
                assert any(abs(v - s) <= 1e-6 * max(1.0, abs(s)) for s in got
                           if isinstance(s, (int, float))), \
                    "%s = %r never served (%r)" % (k, v, got[-5:])
                checked += 1
        assert checked > 30, checked
        assert abs(telemetry(site, "school-pv")[-1]["values"]["Hz"] - 50.0) < 0.05

        # a rule naming a SunSpec point works once discovery has resolved it
        wait_for(lambda: any(t == "it/gw1/alert/grid-hz/above" and p.get("state") == "firing"
                             for t, p in site.messages()), 20, "the grid-hz alert")
        assert not telemetry(site, "ghost-pv")
        st = [p for t, p in site.messages() if t == "it/gw1/device/school-pv"]
        assert st and st[-1]["state"] == "online", st

        # reload: discovered again, polling goes on
        n = len(telemetry(site, "school-pv"))
        d.send(signal.SIGHUP)
        wait_for(lambda: d.text().count("device school-pv: SunSpec") >= 2, 20,
                 "discovery again after SIGHUP")
        wait_for(lambda: len(telemetry(site, "school-pv")) >= n + 3, 20,
                 "telemetry after the reload")

        rc = site.stop("sluiced", signal.SIGTERM, timeout=15)
        assert rc == 0, "sluiced exit status %s:\n%s" % (rc, d.text())
        log = d.text()
        assert "<3>" not in log, "errors in the daemon log:\n" + log


def check_inverter(site, dev, unit, trace, n=4, within=40):
    """dev's telemetry (at least n messages): every SunSpec value, each one the sim
    served."""
    wait_for(lambda: len(telemetry(site, dev)) >= n, within, "SunSpec telemetry of " + dev)
    served = load_trace(trace)
    checked = 0
    for msg in telemetry(site, dev):
        vals = msg["values"]
        assert set(vals) >= WANT, sorted(vals)
        assert vals["SN"].startswith("SIM-%03d-" % unit), vals
        for k, v in vals.items():
            if isinstance(v, str):
                continue
            got = [x for x in served.get((unit, k), []) if isinstance(x, (int, float))]
            assert any(abs(v - x) <= 1e-6 * max(1.0, abs(x)) for x in got), \
                "%s = %r never served (%r)" % (k, v, got[-5:])
            checked += 1
    assert checked > 20, checked


def tty_opens(pid, tty):
    """How many descriptors of process pid are open on tty (a link to a pty)."""
    target = os.path.realpath(tty)
    fds = os.path.join("/proc", str(pid), "fd")
    n = 0
    for fd in os.listdir(fds):
        try:
            if os.readlink(os.path.join(fds, fd)) == target:
                n += 1
        except OSError:
            continue
    return n


SERIAL_DEVICES = (
    "  - id: roof-pv\n"
    "    bus: line\n"
    "    unit_id: 3\n"
    "    profile: sunspec\n"
    "    interval: 1s\n"
    "  - id: meter\n"
    "    bus: line\n"
    "    unit_id: 4\n"
    "    profile: flowmeter-generic\n"
    "    interval: 500ms\n"
)
HZ_RULE = (
    "alerts:\n"
    "  - id: grid-hz\n"
    "    kind: threshold\n"
    "    point: roof-pv.Hz\n"
    "    above: 49.5\n"
)


def test_sunspec_serial_line():
    with Site("sunspec-rtu") as site:
        site.start_broker()
        a, b = site.start_pty_pair()
        site.copy_profiles("flowmeter-generic")
        buses = ("  - id: line\n"
                 "    rtu: { device: %s, baud: 9600 }\n"
                 "    timeout: 300ms\n" % a)
        cfg = site.write("sluice.yaml", config_yaml(site, "gw1", site.broker_port, buses,
                                                    SERIAL_DEVICES, HZ_RULE))
        trace = os.path.join(site.dir, "trace.jsonl")
        site.start_sim(["--rtu", b, "--device", "3:sunspec", "--device",
                        "4:flowmeter-generic", "-p", site.dir + "/devices", "--trace", trace,
                        "--seed", "9"])
        site.start_subscriber("it/gw1/#")
        d = site.start_daemon(cfg)
        check_inverter(site, "roof-pv", 3, trace)
        found = [l for l in d.text().splitlines() if "device roof-pv: SunSpec" in l]
        assert found and "models 1 103 120" in found[0], d.text()
        assert "found after" not in found[0], found  # the first round found it
        # the flow meter on the same line was polled while the inverter was discovered
        assert len(telemetry(site, "meter")) >= 4, telemetry(site, "meter")
        # one master on the line: the daemon holds the tty once
        assert tty_opens(d.pid, a) == 1, tty_opens(d.pid, a)
        wait_for(lambda: any(t == "it/gw1/alert/grid-hz/above" and p.get("state") == "firing"
                             for t, p in site.messages()), 20, "the grid-hz alert")
        assert site.stop("sluiced", signal.SIGTERM, timeout=15) == 0, d.text()
        assert "<3>" not in d.text(), d.text()


def test_sunspec_rtu_over_tcp():
    with Site("sunspec-dtu") as site:
        site.start_broker()
        port = free_port()
        buses = ("  - id: dtu\n"
                 "    rtu_over_tcp: { host: 127.0.0.1, port: %d }\n"
                 "    timeout: 500ms\n" % port)
        devices = ("  - id: dtu-pv\n"
                   "    bus: dtu\n"
                   "    unit_id: 7\n"
                   "    profile: sunspec\n"
                   "    interval: 1s\n")
        cfg = site.write("sluice.yaml", config_yaml(site, "gw1", site.broker_port, buses,
                                                    devices))
        trace = os.path.join(site.dir, "trace.jsonl")
        site.start_sim(["--rtu-tcp", "127.0.0.1:%d" % port, "--device", "7:sunspec",
                        "--trace", trace, "--seed", "3"])
        site.start_subscriber("it/gw1/#")
        d = site.start_daemon(cfg)
        check_inverter(site, "dtu-pv", 7, trace)
        assert "device dtu-pv: SunSpec" in d.text(), d.text()
        assert site.stop("sluiced", signal.SIGTERM, timeout=15) == 0, d.text()
        assert "<3>" not in d.text(), d.text()


def test_sunspec_late_inverter():
    """The inverter's line is there but nothing answers on it when sluiced starts (the
    sim is started after): it is not polled, the daemon runs on, and a later round of
    discovery finds it — no reload — and the rule on its Hz comes alive."""
    with Site("sunspec-late") as site:
        site.start_broker()
        a, b = site.start_pty_pair()
        site.copy_profiles("flowmeter-generic")
        buses = ("  - id: line\n"
                 "    rtu: { device: %s, baud: 9600 }\n"
                 "    timeout: 200ms\n" % a)
        cfg = site.write("sluice.yaml", config_yaml(site, "gw1", site.broker_port, buses,
                                                    SERIAL_DEVICES, HZ_RULE))
        site.start_subscriber("it/gw1/#")
        d = site.start_daemon(cfg)
        wait_for(lambda: "device roof-pv: SunSpec discovery" in d.text(), 20,
                 "the first round of discovery to fail")
        line = [l for l in d.text().splitlines() if "device roof-pv" in l][0]
        assert "not polled until it answers" in line and "tried again in 10 s" in line, line
        time.sleep(1)
        assert not telemetry(site, "roof-pv")
        t0 = time.monotonic()
        trace = os.path.join(site.dir, "trace.jsonl")
        site.start_sim(["--rtu", b, "--device", "3:sunspec", "--device",
                        "4:flowmeter-generic", "-p", site.dir + "/devices", "--trace", trace,
                        "--seed", "4"])
        check_inverter(site, "roof-pv", 3, trace, n=3, within=40)
        took = time.monotonic() - t0
        found = [l for l in d.text().splitlines() if "device roof-pv: SunSpec" in l
                 and "points at" in l]
        assert found and "found after it did not answer" in found[0], d.text()
        assert "SIGHUP" not in d.text()
        sys.stdout.write("  late inverter found %.1f s after it appeared\n" % took)
        wait_for(lambda: any(t == "it/gw1/alert/grid-hz/above" and p.get("state") == "firing"
                             for t, p in site.messages()), 20, "the grid-hz alert")
        # the meter on the same line went on through it all
        ts = [m["ts"] for m in telemetry(site, "meter")]
        assert len(ts) >= 10, ts
        assert tty_opens(d.pid, a) == 1
        assert site.stop("sluiced", signal.SIGTERM, timeout=15) == 0, d.text()
        assert "<3>" not in d.text(), d.text()


if __name__ == "__main__":
    harness.main()
