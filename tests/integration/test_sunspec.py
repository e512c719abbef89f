#!/usr/bin/env python3
"""SunSpec end to end: sluice-sim serves its SunSpec inverter (models 1, 103, 120 at
40000) over Modbus TCP; sluiced, with a `profile: sunspec` device, discovers it at
start and publishes its telemetry by name.

- the discovery is logged with maker, model list and rated power;
- telemetry carries W, WH, Hz, PF, DCA, DCV, DCW, St, Evt1 and the strings Mn, Md, SN,
  each value one the sim served (its --trace);
- a rule naming a SunSpec point (resolved only after discovery) fires;
- a sunspec device that does not answer is logged and left unpolled, the rest runs;
- SIGHUP discovers again and polling goes on; SIGTERM exits 0.
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
        assert ghost and "not polled until the next reload" in ghost[0], log

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


if __name__ == "__main__":
    harness.main()
