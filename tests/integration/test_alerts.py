#!/usr/bin/env python3
"""Alerts end to end: a rain event at a road underpass (sluice-sim's `rain` scenario,
simulated time 60x) raises the waterlogging alert through blue, yellow, orange and
red; at red the rule writes the warning sign's lamp coil (the sim logs the write);
transitions are published retained on alert/<rule>/<check> with seqs; a daemon
restart while the alert is active does not fire it again."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Site, config_yaml, free_port, wait_for  # noqa: E402

RULES = """\
alerts:
  - id: xinhua-waterlogging
    kind: waterlogging
    name: 新华路下穿道 积水
    point: underpass.level
    levels: { blue: 0.10, yellow: 0.15, orange: 0.27, red: 0.40 }
    hysteresis: 0.02
    on_fire:
      - { severity: red, write: sign.red_lamp, value: 1 }
      - { severity: red, write: sign2.red_lamp, value: 1 }
    on_resolve:
      - { write: sign.red_lamp, value: 0 }
"""


def alerts(site):
    return [(t, p) for t, p in site.messages() if "/alert/" in t]


def test_rain_event():
    with Site("alerts") as site:
        site.start_broker()
        sim_port = free_port()
        buses = "  - id: road\n    tcp: { host: 127.0.0.1, port: %d }\n    timeout: 1s\n" % sim_port
        devices = ("  - id: underpass\n    bus: road\n    unit_id: 5\n    profile: level-radar\n"
                   "    interval: 500ms\n"
                   "  - id: sign\n    bus: road\n    unit_id: 9\n    interval: 2s\n    points:\n"
                   "      red_lamp: { table: coil, address: 0, type: bool, writable: true }\n"
                   # a second sign that never answers: its write fails
                   "  - id: sign2\n    bus: road\n    unit_id: 10\n    interval: 2s\n    points:\n"
                   "      red_lamp: { table: coil, address: 0, type: bool, writable: true }\n")
        site.copy_profiles("level-radar")
        cfg = site.write("sluice.yaml", config_yaml(site, "gw1", site.broker_port, buses, devices,
                                                    extra=RULES))
        site.start_sim(["--config", cfg, "--scenario", "underpass=rain", "--scenario", "sign2=dead",
                        "--time-scale", "60"])
        site.start_subscriber("it/gw1/#")
        d = site.start_daemon(cfg)

        topic = "it/gw1/alert/xinhua-waterlogging/level"
        wait_for(lambda: any(p.get("severity") == "red" for t, p in alerts(site) if t == topic),
                 90, "the level alert to reach red")
        fired = [p for t, p in alerts(site) if t == topic]
        grades = [p["severity"] for p in fired if p["state"] == "firing"]
        assert grades[:4] == ["blue", "yellow", "orange", "red"], grades
        red = [p for p in fired if p["severity"] == "red"][0]
        assert red["value"] >= 0.40 and red["threshold"] == 0.40, red
        assert red["rule"] == "xinhua-waterlogging" and red["check"] == "level", red
        assert red["name"] == "新华路下穿道 积水" and red["message"], red
        seqs = [p["seq"] for p in fired]
        assert seqs == sorted(seqs), seqs
        # while connected, messages go out in seq order (docs/mqtt.md), and a transition after
        # the reading that caused it: the first reading at or over blue's 0.10 m arrived
        # before the blue firing, with a lower seq
        msgs = [(t, p) for t, p in site.messages() if isinstance(p, dict) and "seq" in p]
        order = [p["seq"] for t, p in msgs]
        assert order == sorted(order), order
        blue = [i for i, (t, p) in enumerate(msgs)
                if t == topic and p["state"] == "firing" and p["severity"] == "blue"][0]
        wet = [i for i, (t, p) in enumerate(msgs) if t == "it/gw1/telemetry/underpass"
               and (p.get("values", {}).get("level") or 0) >= 0.10][0]
        assert wet < blue and msgs[wet][1]["seq"] < msgs[blue][1]["seq"], (msgs[wet], msgs[blue])

        # the action reached the sign: the sim logs writes by point name
        wait_for(lambda: "red_lamp=true" in site.procs["sim"].text(), 20, "the lamp write")
        assert "writing sign.red_lamp = 1" in d.text(), d.text()

        # the dead sign's write fails: logged, and carried in the alert, re-published
        def failed_write():
            return [p for t, p in alerts(site) if t == topic and "action" in p]
        wait_for(failed_write, 30, "the failed write carried in the alert")
        act = failed_write()[0]
        assert act["action"]["write"] == "sign2.red_lamp" and act["action"]["value"] == 1, act
        assert act["action"]["error"] == "timeout", act
        assert act["state"] == "firing" and act["severity"] == "red", act
        assert "write sign2.red_lamp failed: timeout" in d.text(), d.text()

        # restart while firing: the active alert is not fired again
        n = len([p for t, p in alerts(site) if t == topic])
        rc = site.stop("sluiced", signal.SIGTERM, timeout=15)
        assert rc == 0, d.text()
        d = site.start_daemon(cfg, name="sluiced2")
        time.sleep(4)
        after = [p for t, p in alerts(site) if t == topic][n:]
        assert all(not (p["state"] == "firing" and p["severity"] == "red") for p in after), after

        # the water drains (the sim's rain event ends): resolved, lamp off
        wait_for(lambda: any(p["state"] == "resolved" for t, p in alerts(site) if t == topic),
                 120, "the alert to resolve")
        wait_for(lambda: "red_lamp=false" in site.procs["sim"].text(), 20, "the lamp switched off")
        rc = site.stop("sluiced2", signal.SIGTERM, timeout=15)
        assert rc == 0, d.text()


if __name__ == "__main__":
    harness.main()
