#!/usr/bin/env python3
"""RTU end to end: sluiced polls Modbus RTU devices and forwards to a real mosquitto
broker; sluice-sim serves them.

- over a serial line: socat joins two pseudo-terminals; sluice-sim serves RTU on one end
  (several unit ids on one line, replies paced at 9600 baud), sluiced polls the other
  through libmodbus;
- over TCP: an rtu_over_tcp bus (a DTU), RTU frames and CRC on sluiced's own socket,
  sluice-sim serving the same config;

and in both: every published value equals a value the sim served (its --trace); a dead
unit on the line costs only its timeout, so the healthy units on the same line keep their
interval; after offline_after failed polls the dead device is published offline with its
last error.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (  # noqa: E402
    Site, config_yaml, free_port, load_trace, payloads, telemetry, wait_for)

INTERVAL_MS = 1000
TIMEOUT_MS = 300


DEVICES = (
    "  - id: inlet\n"
    "    name: 三号分区 进水流量计\n"
    "    bus: line1\n"
    "    unit_id: 1\n"
    "    profile: flowmeter-generic\n"
    "    interval: 1s\n"
    "  - id: underpass\n"
    "    bus: line1\n"
    "    unit_id: 5\n"
    "    profile: level-radar\n"
    "    interval: 1s\n"
    "  - id: dead\n"
    "    bus: line1\n"
    "    unit_id: 9\n"
    "    profile: flowmeter-generic\n"
    "    interval: 1s\n"
    "    offline_after: 3\n"
)


def device_states(site, device):
    return payloads(site, "device/" + device)


def check_site(site, trace):
    """What both transports must show."""
    for dev in ("inlet", "underpass"):
        wait_for(lambda dev=dev: len(telemetry(site, dev)) >= 8, 40, "telemetry of " + dev)
    wait_for(lambda: any(p.get("state") == "offline" for p in device_states(site, "dead")),
             30, "the dead device to be published offline")

    # values equal what the sim served
    served = load_trace(trace)
    checked = 0
    for dev, unit in (("inlet", 1), ("underpass", 5)):
        msgs = telemetry(site, dev)
        for msg in msgs:
            assert "errors" not in msg, (dev, msg)
            for k, v in msg["values"].items():
                assert v in served.get((unit, k), []), "%s.%s = %r never served (%r)" % (
                    dev, k, v, served.get((unit, k), [])[-5:])
                checked += 1
        assert set(msgs[-1]["values"]) >= {"flow", "total"} or dev == "underpass", msgs[-1]
    assert checked > 20, checked

    # the dead unit: every point failed with a timeout; offline after 3, with the error
    dead = telemetry(site, "dead")
    assert len(dead) >= 3, dead
    for msg in dead:
        assert msg["values"] == {}, msg
        assert set(msg["errors"].values()) == {"timeout"}, msg
    states = device_states(site, "dead")
    off = [p for p in states if p["state"] == "offline"]
    assert off and off[0]["last_error"] == "timeout", states
    # it went offline after exactly offline_after failed polls
    seq_off = off[0]["seq"]
    before = [m for m in dead if m["seq"] < seq_off]
    assert len(before) in (2, 3), (len(before), dead[:4], off[0])
    assert [p["state"] for p in device_states(site, "inlet")][-1] == "online"

    # the healthy units on the same line keep their interval: a dead unit costs the line
    # its timeout per attempt, nothing more
    for dev in ("inlet", "underpass"):
        ts = [m["ts"] for m in telemetry(site, dev)]
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        bound = INTERVAL_MS + TIMEOUT_MS + 400  # + transfer times and scheduling slack
        assert max(gaps) <= bound, "%s: gaps %s exceed %d ms" % (dev, gaps, bound)
        assert min(gaps) >= INTERVAL_MS - 100, "%s: gaps %s" % (dev, gaps)


def test_rtu_serial_line():
    with Site("rtu") as site:
        site.start_broker()
        site.copy_profiles()
        tty_sim, tty_daemon = site.start_pty_pair()
        buses = (
            "  - id: line1\n"
            "    rtu: { device: %s, baud: 9600, parity: none }\n"
            "    timeout: %dms\n"
            "    guard: 5ms\n" % (tty_daemon, TIMEOUT_MS)
        )
        cfg = site.write("sluice.yaml", config_yaml(site, "gw1", site.broker_port, buses,
                                                    DEVICES))
        r = site.run([os.path.join(harness.BIN, "sluiced"), "--check-config", cfg])
        assert r.returncode == 0, "check-config: %d %s %s" % (r.returncode, r.stdout, r.stderr)

        trace = os.path.join(site.dir, "trace.jsonl")
        site.start_sim(["--rtu", tty_sim, "--device", "1:flowmeter-generic",
                        "--device", "5:level-radar", "--device", "9:flowmeter-generic:dead",
                        "--profile-path", os.path.join(site.dir, "devices"),
                        "--baud", "9600", "--pace", "--trace", trace, "--seed", "11"])
        site.start_subscriber("it/gw1/#")
        d = site.start_daemon(cfg)
        check_site(site, trace)
        assert d.alive(), d.text()
        rc = site.stop("sluiced")
        assert rc == 0, "sluiced exit status %s:\n%s" % (rc, d.text())
        log = d.text()
        assert "<3>" not in log, "errors in the daemon log:\n" + log
        # offline is logged once, not on every failed poll
        assert log.count("device dead") <= 2, log


def test_rtu_over_tcp():
    with Site("rtutcp") as site:
        site.start_broker()
        site.copy_profiles()
        port = free_port()
        buses = (
            "  - id: line1\n"
            "    rtu_over_tcp: { host: 127.0.0.1, port: %d }\n"
            "    timeout: %dms\n"
            "    guard: 5ms\n" % (port, TIMEOUT_MS)
        )
        cfg = site.write("sluice.yaml", config_yaml(site, "gw1", site.broker_port, buses,
                                                    DEVICES))
        trace = os.path.join(site.dir, "trace.jsonl")
        site.start_sim(["--config", cfg, "--scenario", "dead=dead", "--trace", trace,
                        "--seed", "12"])
        site.start_subscriber("it/gw1/#")
        d = site.start_daemon(cfg)
        check_site(site, trace)
        rc = site.stop("sluiced")
        assert rc == 0, "sluiced exit status %s:\n%s" % (rc, d.text())
        assert "<3>" not in d.text(), d.text()


if __name__ == "__main__":
    harness.main()
