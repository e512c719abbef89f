#!/usr/bin/env python3
"""uplink.format thingsboard end to end: sluiced polling sluice-sim, publishing the
ThingsBoard gateway API to mosquitto; a subscriber checks the messages' contract shapes
(docs/mqtt.md, "ThingsBoard"; ThingsBoard's gateway API):

- v1/gateway/connect {"device":"fm1","type":<profile>} before a device's first telemetry,
  then v1/gateway/attributes {"fm1":{"name":..,"profile":..,"units":{..}}};
- v1/gateway/telemetry {"fm1":[{"ts":<ms>,"values":{<point>:<number>,...,"sluice_seq":N}}]};
- the devices stop answering: attributes {"fm1":{"online":false,...}}, then
  v1/gateway/disconnect {"device":"fm1"}; the comms alert as the gateway device's
  telemetry (v1/devices/me/telemetry, alert/<rule>/<check>/state ...); they come back:
  connect again before their telemetry;
- health on v1/devices/me/telemetry; no topic_prefix anywhere; every seq at the platform.
"""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Site, config_yaml, free_port, wait_for  # noqa: E402


def site_config(site, sim_port, extra=""):
    buses = ("  - id: lan\n"
             "    tcp: { host: 127.0.0.1, port: %d }\n"
             "    timeout: 300ms\n" % sim_port)
    devices = ""
    for i in range(2):
        devices += ("  - id: fm%d\n"
                    "    bus: lan\n"
                    "    unit_id: %d\n"
                    "    profile: flowmeter-generic\n"
                    "    interval: 200ms\n" % (i + 1, i + 1))
    site.copy_profiles("flowmeter-generic")
    text = config_yaml(site, "gw1", site.broker_port, buses, devices)
    text = text.replace("  topic_prefix: it\n", "  format: thingsboard\n%s" % extra, 1)
    return site.write("sluice.yaml", text)


def on(msgs, topic):
    return [p for t, p in msgs if t == topic]


def check_order(msgs):
    """Each device's telemetry comes while it is connected (a connect before it, no
    disconnect between)."""
    connected = set()
    for t, p in msgs:
        if t == "v1/gateway/connect":
            connected.add(p["device"])
        elif t == "v1/gateway/disconnect":
            connected.discard(p["device"])
        elif t == "v1/gateway/telemetry":
            for dev in p:
                assert dev in connected, "telemetry of %s while not connected" % dev


def test_thingsboard_contract():
    with Site("thingsboard") as site:
        site.start_broker()
        sim_port = free_port()
        cfg = site_config(site, sim_port)
        site.start_sim(["--config", cfg])
        site.start_subscriber("#")
        d = site.start_daemon(cfg)
        wait_for(lambda: len(on(site.messages(), "v1/gateway/telemetry")) > 20, 30,
                 "telemetry")
        msgs = site.messages()
        assert all(t.startswith("v1/") for t, _ in msgs), {t for t, _ in msgs}
        con = on(msgs, "v1/gateway/connect")
        assert {"device": "fm1", "type": "flowmeter-generic"} in con, con
        attrs = [p for p in on(msgs, "v1/gateway/attributes") if "units" in p.get("fm1", {})]
        assert attrs and attrs[0]["fm1"]["profile"] == "flowmeter-generic", attrs
        assert attrs[0]["fm1"]["units"]["flow"] == "m3/h", attrs
        tel = on(msgs, "v1/gateway/telemetry")
        for p in tel:
            assert len(p) == 1, p
            (dev, rows), = p.items()
            assert dev in ("fm1", "fm2") and isinstance(rows, list) and len(rows) == 1, p
            row = rows[0]
            assert set(row) == {"ts", "values"}, row
            assert isinstance(row["ts"], int) and row["ts"] > 1.7e12, row
            assert isinstance(row["values"]["sluice_seq"], int), row
            assert isinstance(row["values"]["flow"], (int, float)), row
        check_order(msgs)

        # the devices go: their state, then disconnect; the alert on the gateway's own
        n = len(site.messages())
        site.stop("sim")
        wait_for(lambda: {p["device"] for p in on(site.messages()[n:], "v1/gateway/disconnect")}
                 == {"fm1", "fm2"}, 30, "disconnect of both")
        later = site.messages()[n:]
        off = [p["fm1"] for p in on(later, "v1/gateway/attributes") if "online" in p.get("fm1", {})]
        assert off and off[-1]["online"] is False and off[-1]["last_error"], off
        assert isinstance(off[-1]["sluice_seq"], int), off
        wait_for(lambda: any(p.get("values", {}).get("alert/comms-fm1/offline/state") == "firing"
                             for p in on(site.messages()[n:], "v1/devices/me/telemetry")), 20,
                 "the comms alert as the gateway's telemetry")
        al = [p for p in on(site.messages()[n:], "v1/devices/me/telemetry")
              if "alert/comms-fm1/offline/state" in p.get("values", {})][0]
        assert isinstance(al["ts"], int) and al["values"]["alert/comms-fm1/offline/severity"] \
            == "yellow", al
        site.start_sim(["--config", cfg])
        n2 = len(site.messages())
        wait_for(lambda: len(on(site.messages()[n2:], "v1/gateway/telemetry")) > 10, 30,
                 "telemetry after the devices return")
        check_order(site.messages())
        health = [p for p in on(site.messages(), "v1/devices/me/telemetry")
                  if "polls_ok" in p.get("values", p)]
        assert health, "no health on the gateway device's telemetry"

        rc = site.stop("sluiced", signal.SIGTERM, timeout=15)
        assert rc == 0, "sluiced exit %s:\n%s" % (rc, d.text())
        r = site.run([os.path.join(harness.BIN, "sluicectl"), "-c", cfg, "--json", "status"])
        assert r.returncode == 0, r.stderr
        st = json.loads(r.stdout)
        got = set()
        for t, p in site.messages():
            if t == "v1/gateway/telemetry":
                for rows in p.values():
                    got.update(r_["values"]["sluice_seq"] for r_ in rows)
            elif t == "v1/gateway/attributes":
                got.update(v["sluice_seq"] for v in p.values() if "sluice_seq" in v)
            elif t == "v1/devices/me/telemetry" and "sluice_seq" in p.get("values", {}):
                got.add(p["values"]["sluice_seq"])
        missing = set(range(1, st["last_seq"] + 1)) - got
        assert not missing, sorted(missing)[:20]
        sys.stdout.write("%d seqs, every one at the platform\n" % st["last_seq"])


if __name__ == "__main__":
    harness.main()
