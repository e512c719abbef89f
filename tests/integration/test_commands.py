#!/usr/bin/env python3
"""Commands from the platform (uplink.commands: true), end to end in each format:
sluiced polling sluice-sim, the commands published to mosquitto as a platform would.

- a write of a writable point changes the simulator's register (read back with
  `sluicectl probe` through sluiced, and in the readings that follow), answered in the
  command's format (sluice command/reply, ThingsBoard's RPC reply; Sparkplug answers
  with the value in the next DDATA);
- refused writes — a point not writable, a value out of its min/max, an unknown point,
  a command older than command_max_age, malformed JSON or protobuf — change nothing and
  are answered with a reason;
- the same command again (a QoS 1 redelivery) is answered again and not carried out
  twice (the sim's log counts the writes);
- every command and its outcome is stored as an event with a seq (the store's events,
  topic command/event) and published in the format.
"""

import json
import os
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sparkplug  # noqa: E402
from harness import Site, config_yaml, free_port, wait_for  # noqa: E402
from test_sparkplug import HexSub  # noqa: E402

DEVICES = ("  - id: pump\n"
           "    bus: lan\n"
           "    unit_id: 3\n"
           "    interval: 200ms\n"
           "    points:\n"
           "      speed: { table: holding, address: 0, type: uint16, writable: true, "
           "min: 0, max: 3000 }\n"
           "      level: { table: holding, address: 1, type: uint16 }\n")


def site_config(site, sim_port, fmt):
    buses = ("  - id: lan\n"
             "    tcp: { host: 127.0.0.1, port: %d }\n"
             "    timeout: 300ms\n" % sim_port)
    text = config_yaml(site, "gw1", site.broker_port, buses, DEVICES)
    add = "  commands: true\n  command_max_age: 30s\n"
    if fmt == "sparkplug":
        text = text.replace("  qos: 1\n", "", 1)
        add += "  format: sparkplug\n  sparkplug: { group: it-grp }\n"
    elif fmt == "thingsboard":
        add += "  format: thingsboard\n"
    text = text.replace("uplink:\n", "uplink:\n" + add, 1)
    return site.write("sluice.yaml", text)


def publish(site, topic, payload):
    data = payload if isinstance(payload, bytes) else payload.encode()
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(site.broker_port), "-q", "1",
                    "-t", topic, "-s"], input=data, check=True, timeout=10)


def probe_speed(site, cfg):
    r = site.run([os.path.join(harness.BIN, "sluicectl"), "-c", cfg, "--json", "probe", "pump"])
    assert r.returncode == 0, (r.stdout, r.stderr)
    j = json.loads(r.stdout)
    assert j["via"] == "sluiced", j
    return next(p["value"] for p in j["points"] if p["name"] == "speed")


def sim_writes(site):
    """The writes of speed carried out, as sluiced logs each poller's answer (the sim's own
    log is written when it stops)."""
    return [line for line in site.procs["sluiced"].text().splitlines()
            if "write pump.speed done" in line]


def events(site):
    """The command events the store holds: [(seq, body dict)]."""
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(site.dir, "data", "sluice.db"),
                          uri=True, timeout=30)
    try:
        return [(s, json.loads("{" + b + "}")) for s, b in
                con.execute("SELECT seq, body FROM events WHERE topic = 'command/event' "
                            "ORDER BY seq")]
    finally:
        con.close()


def start(site, fmt, sub_topic):
    site.start_broker()
    sim_port = free_port()
    cfg = site_config(site, sim_port, fmt)
    site.start_sim(["--config", cfg])
    site.start_subscriber(sub_topic)
    d = site.start_daemon(cfg)
    wait_for(lambda: "uplink: connected" in d.text(), 20, "sluiced connected")
    wait_for(lambda: "pump" in site.run([os.path.join(harness.BIN, "sluicectl"), "-c", cfg,
                                         "--json", "status"]).stdout and
             '"online"' in site.run([os.path.join(harness.BIN, "sluicectl"), "-c", cfg,
                                     "--json", "status"]).stdout, 20, "the pump online")
    time.sleep(1)
    return cfg, d


def stop_clean(site):
    """sluiced stops cleanly: exit 0 (under the sanitizers, no error and no leak)."""
    d = site.procs["sluiced"]
    rc = site.stop("sluiced", timeout=15)
    assert rc == 0, "sluiced exit %s:\n%s" % (rc, d.text()[-3000:])
    assert "Sanitizer" not in d.text() and "runtime error" not in d.text(), d.text()[-3000:]


def check_refusals_changed_nothing(site, cfg, value, nwrites):
    assert probe_speed(site, cfg) == value
    assert len(sim_writes(site)) == nwrites, sim_writes(site)


def test_sluice_format():
    with Site("cmd-sluice") as site:
        cfg, d = start(site, "sluice", "it/gw1/command/#")
        top = "it/gw1/command/write"

        def replies():
            return [p for t, p in site.messages() if t == "it/gw1/command/reply"]

        publish(site, top, json.dumps({"id": "c-1", "device": "pump", "point": "speed",
                                       "value": 1200}))
        wait_for(lambda: replies(), 15, "the reply")
        assert replies()[0] == {"id": "c-1", "device": "pump", "point": "speed", "ok": True}, \
            replies()
        assert probe_speed(site, cfg) == 1200
        assert len(sim_writes(site)) == 1, sim_writes(site)

        now = int(time.time() * 1000)
        bad = [
            ({"id": "c-2", "device": "pump", "point": "level", "value": 5}, "writable"),
            ({"id": "c-3", "device": "pump", "point": "speed", "value": 5000}, "3000"),
            ({"id": "c-4", "device": "pump", "point": "nosuch", "value": 1}, "no point"),
            ({"id": "c-5", "device": "pump", "point": "speed", "value": 7, "ts": now - 120000},
             "old"),
            ({"id": "c-6", "device": "nosuch", "point": "speed", "value": 7}, "nosuch"),
        ]
        for cmd, why in bad:
            publish(site, top, json.dumps(cmd))
        publish(site, top, '{"id":"c-7","device":"pump",')    # malformed
        wait_for(lambda: len(replies()) >= 1 + len(bad), 15, "the refusals' replies")
        got = {r["id"]: r for r in replies()}
        for cmd, why in bad:
            r = got[cmd["id"]]
            assert r["ok"] is False and why in r["error"], (cmd, r)
        check_refusals_changed_nothing(site, cfg, 1200, 1)

        # a redelivery of c-1 with another value: answered again, not carried out
        publish(site, top, json.dumps({"id": "c-1", "device": "pump", "point": "speed",
                                       "value": 1500}))
        wait_for(lambda: len([r for r in replies() if r["id"] == "c-1"]) == 2, 15,
                 "c-1 answered again")
        assert [r for r in replies() if r["id"] == "c-1"][1]["ok"] is True
        check_refusals_changed_nothing(site, cfg, 1200, 1)
        assert "seen before" in d.text()

        # the audit trail: every command and its outcome, with a seq, stored and published
        wait_for(lambda: len(events(site)) >= 7, 10, "the events stored")
        ev = events(site)
        ids = [b["id"] for _, b in ev]
        assert ids[0] == "c-1" and ev[0][1]["ok"] is True, ev
        assert ev[0][1]["writes"] == [{"point": "speed", "value": 1200}], ev[0]
        assert {"c-2", "c-3", "c-4", "c-5", "c-6"} <= set(ids), ids
        assert ids.count("c-1") == 1, ids
        malformed = [b for _, b in ev if b["id"] is None]
        assert malformed and malformed[0]["ok"] is False, ev
        pub = [p for t, p in site.messages() if t == "it/gw1/command/event"]
        wait_for(lambda: len([p for t, p in site.messages()
                              if t == "it/gw1/command/event"]) >= len(ev), 10,
                 "the events published")
        pub = [p for t, p in site.messages() if t == "it/gw1/command/event"]
        assert sorted(p["seq"] for p in pub) == [s for s, _ in ev], (pub, ev)
        # the written value in the readings that follow
        stop_clean(site)


def test_thingsboard_format():
    with Site("cmd-tb") as site:
        cfg, d = start(site, "thingsboard", "v1/#")

        def replies():
            return [p for t, p in site.messages() if t == "v1/gateway/rpc" and "data" in p
                    and "success" in p["data"]]

        def rpc(i, point, value):
            publish(site, "v1/gateway/rpc", json.dumps(
                {"device": "pump", "data": {"id": i, "method": "write",
                                            "params": {"point": point, "value": value}}}))

        rpc(7, "speed", 900)
        wait_for(lambda: replies(), 15, "the RPC reply")
        assert replies()[0] == {"device": "pump", "id": 7, "data": {"success": True}}, replies()
        assert probe_speed(site, cfg) == 900
        rpc(8, "speed", -1)
        rpc(9, "level", 1)
        publish(site, "v1/gateway/rpc", "not json")
        wait_for(lambda: len(replies()) >= 3, 15, "the refusals")
        got = {r["id"]: r for r in replies()}
        assert got[8]["data"]["success"] is False and got[8]["data"]["error"], got
        assert got[9]["data"]["success"] is False and "writable" in got[9]["data"]["error"], got
        rpc(7, "speed", 100)    # a redelivery of 7
        wait_for(lambda: len([r for r in replies() if r["id"] == 7]) == 2, 15, "7 again")
        check_refusals_changed_nothing(site, cfg, 900, 1)
        wait_for(lambda: len(events(site)) >= 4, 10, "the events stored")
        tel = [p for t, p in site.messages() if t == "v1/devices/me/telemetry"
               and "command" in p.get("values", {})]
        wait_for(lambda: len([p for t, p in site.messages() if t == "v1/devices/me/telemetry"
                              and "command" in p.get("values", {})]) >= 4, 10,
                 "the events as the gateway's telemetry")
        tel = [p["values"] for t, p in site.messages() if t == "v1/devices/me/telemetry"
               and "command" in p.get("values", {})]
        assert tel[0]["command"]["ok"] is True and tel[0]["command"]["format"] == "thingsboard", tel
        assert isinstance(tel[0]["sluice_seq"], int), tel
        stop_clean(site)


def test_sparkplug_format():
    with Site("cmd-spb") as site:
        cfg, d = start(site, "sparkplug", "it/none")
        hsub = HexSub(site, "spBv1.0/it-grp/NDATA/#", name="hsub")
        pb = sparkplug.module()
        topic = "spBv1.0/it-grp/DCMD/gw1/pump"

        def dcmd(ts, **metrics):
            p = pb.Payload(timestamp=ts)
            for name, v in metrics.items():
                if name.startswith("alias_"):
                    m = p.metrics.add(alias=int(name[6:]), datatype=6)
                else:
                    m = p.metrics.add(name=name, datatype=6)
                m.int_value = v
            return p.SerializeToString()

        now = int(time.time() * 1000)
        publish(site, topic, dcmd(now, speed=800))
        wait_for(lambda: len(events(site)) >= 1, 15, "the event of the DCMD")
        wait_for(lambda: probe_speed(site, cfg) == 800, 10, "speed 800")
        # by its alias (device 0, point 0: (0 + 1) << 16 | 1)
        publish(site, topic, dcmd(now + 1, alias_65537=700))
        wait_for(lambda: len(events(site)) >= 2, 15, "the event of the DCMD by alias")
        wait_for(lambda: probe_speed(site, cfg) == 700, 10, "speed 700")
        # refused: not writable, out of range, too old, not protobuf; a redelivery
        publish(site, topic, dcmd(now + 2, level=3))
        publish(site, topic, dcmd(now + 3, speed=9000))
        publish(site, topic, dcmd(now - 600000, speed=5))
        publish(site, topic, b"\xff\xff\xff")
        publish(site, topic, dcmd(now + 1, alias_65537=700))   # the same bytes again
        wait_for(lambda: len(events(site)) >= 6, 15, "the refusals' events")
        time.sleep(1)
        ev = [b for _, b in events(site)]
        assert [e["ok"] for e in ev] == [True, True, False, False, False, False], ev
        assert "writable" in ev[2]["error"] and "3000" in ev[3]["error"], ev
        check_refusals_changed_nothing(site, cfg, 700, 2)
        # the events as the node's sluice/command metric (alias 6), each with its seq
        def published():
            return [json.loads(m.string_value) for t, p in hsub.messages() for m in p.metrics
                    if m.alias == 6]
        wait_for(lambda: len(published()) >= 6, 15, "the events as NDATA")
        assert [e["ok"] for e in published()] == [True, True, False, False, False, False]
        stop_clean(site)


if __name__ == "__main__":
    harness.main()
