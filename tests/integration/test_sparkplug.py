#!/usr/bin/env python3
"""uplink.format sparkplug end to end: sluiced polling sluice-sim, publishing to
mosquitto; a subscriber keeps every message's bytes (mosquitto_sub -F '%t %x') and
Google's protobuf (tests/integration/sparkplug.py, the published schema) decodes them.

- NBIRTH first, seq 0, with bdSeq, Node Control/Rebirth and the node's metrics; a DBIRTH
  per device before its first DDATA, every point named with its alias; DDATA by alias
  only, each with sluice/seq; the node's seq one more per message, 0..255 and round;
- an NCMD Node Control/Rebirth: NBIRTH (seq 0) and the DBIRTHs again;
- the simulator stopped: DDEATH for each device; started again: DBIRTH before its DDATA;
- a broker outage: after it, readings of the outage arrive as DDATA with is_historical,
  every sluice/seq of the run at the subscriber;
- sluiced killed: the broker publishes its will, NDEATH, whose bdSeq is the NBIRTH's; the
  next start's NBIRTH carries the bdSeq after it (kept in the store across the restart);
  a clean stop publishes NDEATH itself;
- with a primary host: nothing is published until its STATE says online, nothing while
  it says offline (the rows wait), and births again when it returns, the rows of the wait
  then delivered;
- a backlog stored under format sluice (no broker) drains as Sparkplug after a restart
  with format sparkplug: its readings as historical DDATA, its device states as DBIRTH,
  every seq once;
- sparkplug.qos 0 (the specification's): published at QoS 0, a row delivered once written,
  the backlog empty at a clean stop and every seq at the subscriber.
"""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sparkplug  # noqa: E402
import harness  # noqa: E402
from harness import Proc, Site, config_yaml, free_port, wait_for  # noqa: E402

GROUP = "it-grp"
NODE = "gw1"


class HexSub:
    """A persistent QoS 1 subscriber that writes each message as topic and hex bytes."""

    def __init__(self, site, topic, name="sub"):
        self.out = os.path.join(site.dir, name + ".out")
        argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(site.broker_port), "-i",
                "sluice-it-" + name, "-c", "-q", "1", "-F", "%t %x", "-t", topic, "-k", "5"]
        site.procs[name] = Proc(name, argv, os.path.join(site.dir, name + ".log"),
                                stdout_path=self.out)

    def messages(self):
        """[(topic, decoded Payload or None for STATE)] in the order received."""
        out = []
        try:
            with open(self.out, "rb") as f:
                lines = f.read().decode().split("\n")
        except OSError:
            return out
        for line in lines[:-1]:   # the last may be partial
            if " " not in line:
                continue
            topic, hx = line.split(" ", 1)
            try:
                data = bytes.fromhex(hx)
            except ValueError:
                continue
            if "/STATE/" in topic:
                continue
            out.append((topic, sparkplug.decode(data)))
        return out


def verb(topic):
    return topic.split("/")[2]


def device_of(topic):
    parts = topic.split("/")
    return parts[4] if len(parts) > 4 else None


def metric(p, name):
    for m in p.metrics:
        if m.HasField("name") and m.name == name:
            return m
    return None


def row_seqs(msgs):
    """sluice/seq of every message that carries a row (the gateway-wide seq): the node's
    alias 3, a device's (d + 1) << 16."""
    out = []
    for t, p in msgs:
        for m in p.metrics:
            if (m.alias == 3 or (m.alias > 0xFFFF and m.alias & 0xFFFF == 0)) and not m.is_null:
                out.append(m.long_value)
    return out


def check_session(msgs):
    """The rules a host relies on, over messages from one NBIRTH on: seq order, DBIRTH
    before DDATA, aliases known. Returns the aliases born per device."""
    assert msgs and verb(msgs[0][0]) == "NBIRTH", [t for t, _ in msgs[:5]]
    seq = None
    born = {}
    for t, p in msgs:
        v = verb(t)
        if v == "NDEATH":
            continue
        assert p.HasField("seq"), (t, sparkplug.show(p))
        if v == "NBIRTH":
            assert p.seq == 0, sparkplug.show(p)
            born = {}
        else:
            assert p.seq == (seq + 1) % 256, (t, p.seq, seq)
        seq = p.seq
        d = device_of(t)
        if v == "DBIRTH":
            born[d] = {}
            for m in p.metrics:
                assert m.HasField("name") and m.HasField("alias") and m.HasField("datatype"), \
                    sparkplug.show(p)
                born[d][m.alias] = m.name
        elif v == "DDATA":
            assert d in born, "DDATA of %s before its DBIRTH" % d
            for m in p.metrics:
                assert not m.HasField("name"), sparkplug.show(p)
                assert m.alias in born[d], (m.alias, born[d])
        elif v == "DDEATH":
            born.pop(d, None)
    return born


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
    text = config_yaml(site, NODE, site.broker_port, buses, devices)
    text = text.replace("  qos: 1\n", "", 1)
    text = text.replace("  topic_prefix: it\n",
                        "  format: sparkplug\n"
                        "  sparkplug: { group: %s%s }\n" % (GROUP, extra), 1)
    return site.write("sluice.yaml", text)


def since_last(msgs, v):
    """The messages from the last one of verb v on."""
    idx = [i for i, (t, _) in enumerate(msgs) if verb(t) == v]
    return msgs[idx[-1]:] if idx else []


def pub_ncmd_rebirth(site):
    pb = sparkplug.module()
    p = pb.Payload(timestamp=int(time.time() * 1000))
    m = p.metrics.add(name="Node Control/Rebirth", datatype=11)
    m.boolean_value = True
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(site.broker_port), "-q", "1",
                    "-t", "spBv1.0/%s/NCMD/%s" % (GROUP, NODE), "-s"],
                   input=p.SerializeToString(), check=True, timeout=10)


def test_sparkplug_session():
    with Site("sparkplug") as site:
        site.start_broker()
        sim_port = free_port()
        cfg = site_config(site, sim_port)
        site.start_sim(["--config", cfg])
        sub = HexSub(site, "spBv1.0/%s/#" % GROUP)
        d = site.start_daemon(cfg)

        def ddata(n, msgs=None):
            return sum(1 for t, _ in (sub.messages() if msgs is None else msgs)
                   if verb(t) == "DDATA") >= n

        wait_for(lambda: ddata(20), 30, "DDATA")
        msgs = sub.messages()
        born = check_session(msgs)
        assert set(born) == {"fm1", "fm2"}, born
        assert sorted(born["fm1"].values()) == ["alarm", "flow", "pressure", "sluice/seq", "total",
                                                        "velocity"], born
        nb = msgs[0][1]
        bdseq = metric(nb, "bdSeq").long_value
        assert metric(nb, "Node Control/Rebirth").boolean_value is False
        assert metric(nb, "sluice/version") is not None
        # units as engUnit
        db = [p for t, p in msgs if verb(t) == "DBIRTH" and device_of(t) == "fm1"][0]
        flow = metric(db, "flow")
        assert "engUnit" in flow.properties.keys, sparkplug.show(db)
        sys.stdout.write("NBIRTH bdSeq %d, %d messages, seq order and aliases good\n"
                         % (bdseq, len(msgs)))

        # Rebirth
        n0 = sum(1 for t, _ in sub.messages() if verb(t) == "NBIRTH")
        pub_ncmd_rebirth(site)
        wait_for(lambda: sum(1 for t, _ in sub.messages() if verb(t) == "NBIRTH") > n0, 15,
                 "NBIRTH after NCMD Rebirth")
        wait_for(lambda: ddata(10, since_last(sub.messages(), "NBIRTH")), 15,
                 "DDATA after the rebirth")
        reborn = since_last(sub.messages(), "NBIRTH")
        born = check_session(reborn)
        assert set(born) == {"fm1", "fm2"}, born
        # every device online born at once, before any data (values null until then)
        assert [(verb(t), device_of(t)) for t, _ in reborn[1:3]] == \
            [("DBIRTH", "fm1"), ("DBIRTH", "fm2")], [t for t, _ in reborn[:4]]
        assert "rebirth asked for" in d.text(), d.text()

        # the devices stop answering: DDEATH; they come back: DBIRTH before DDATA
        n_live = len(sub.messages())
        site.stop("sim")
        wait_for(lambda: {device_of(t) for t, _ in sub.messages()[n_live:]
                          if verb(t) == "DDEATH"} == {"fm1", "fm2"}, 30, "DDEATH of both")
        # the comms alerts, as node metrics the NBIRTH declared (state ok then), by alias
        nb_alert = metric(nb, "alert/comms-fm1/offline/state")
        assert nb_alert and nb_alert.string_value == "ok", sparkplug.show(nb)
        wait_for(lambda: any(m.alias == nb_alert.alias and m.string_value == "firing"
                             for t, p in sub.messages()[n_live:] if verb(t) == "NDATA"
                             for m in p.metrics), 20, "NDATA of the offline alert firing")
        assert not [t for t, _ in sub.messages()[n_live:] if verb(t) == "NBIRTH"], \
            "born again for an alert the NBIRTH declared"
        site.start_sim(["--config", cfg])
        n_death = len(sub.messages())
        wait_for(lambda: ddata(10, sub.messages()[n_death:]), 30, "DDATA after the devices return")
        born = check_session(since_last(sub.messages(), "NBIRTH"))
        assert set(born) == {"fm1", "fm2"}, born

        # a broker outage: the readings of it arrive afterwards, historical
        site.stop_broker()
        t_out = time.time() * 1000
        time.sleep(3)
        site.start_broker()
        wait_for(lambda: any(m.is_historical for t, p in since_last(sub.messages(), "NBIRTH")
                             if verb(t) == "DDATA" for m in p.metrics), 40,
                 "historical DDATA after the outage")
        wait_for(lambda: any(verb(t) == "DDATA" and not p.metrics[0].is_historical
                             for t, p in since_last(sub.messages(), "NBIRTH")), 20,
                 "live DDATA after the backlog")
        after = since_last(sub.messages(), "NBIRTH")
        check_session(after)
        hist = [p for t, p in after if verb(t) == "DDATA" and p.metrics[0].is_historical]
        assert hist and min(p.metrics[0].timestamp for p in hist) >= t_out - 1000, \
            "historical rows from before the outage"
        live = [p for t, p in after if verb(t) == "DDATA" and not p.metrics[0].is_historical]
        assert live, "no live DDATA after the backlog"
        nb2 = after[0][1]
        bd2 = metric(nb2, "bdSeq").long_value
        # one more per connect attempt (those that failed while the broker was down too)
        assert 0 < (bd2 - bdseq) % 256 < 40, (bd2, bdseq)
        sys.stdout.write("outage: %d historical DDATA, then live; bdSeq %d\n" % (len(hist), bd2))

        # killed: the broker's will, NDEATH with the session's bdSeq
        d.send(signal.SIGKILL)
        site.procs.pop("sluiced").stop(signal.SIGKILL, 5)
        wait_for(lambda: since_last(sub.messages(), "NDEATH")
                 and verb(sub.messages()[-1][0]) == "NDEATH", 20, "NDEATH (the will)")
        nd = sub.messages()[-1][1]
        assert metric(nd, "bdSeq").long_value == bd2, sparkplug.show(nd)
        # the next start: the bdSeq after it, from the store
        d = site.start_daemon(cfg)
        wait_for(lambda: verb(since_last(sub.messages(), "NBIRTH")[0][0]) == "NBIRTH" and
                 metric(since_last(sub.messages(), "NBIRTH")[0][1], "bdSeq").long_value
                 == (bd2 + 1) % 256, 20, "NBIRTH with the next bdSeq after a restart")
        wait_for(lambda: ddata(5, since_last(sub.messages(), "NBIRTH")), 20, "DDATA after restart")
        # a clean stop says NDEATH itself
        rc = site.stop("sluiced", signal.SIGTERM, timeout=15)
        assert rc == 0, "sluiced exit %s:\n%s" % (rc, d.text())
        wait_for(lambda: verb(sub.messages()[-1][0]) == "NDEATH", 10, "NDEATH at a clean stop")
        assert metric(sub.messages()[-1][1], "bdSeq").long_value == (bd2 + 1) % 256

        # every seq sluiced handed out reached the platform (the one killed lost none: a
        # reading is stored before a restart forgets it, or its seq is counted skipped)
        r = site.run([os.path.join(harness.BIN, "sluicectl"), "-c", cfg, "--json", "status"])
        assert r.returncode == 0, r.stderr
        st = json.loads(r.stdout)
        want = set(range(1, st["last_seq"] + 1))
        missing = want - set(row_seqs(sub.messages()))
        assert len(missing) <= st.get("skipped_seqs", 0), \
            "%d seqs missing of %d (%d skipped): %s" % (len(missing), len(want),
                                                       st.get("skipped_seqs", 0),
                                                       sorted(missing)[:20])
        sys.stdout.write("%d seqs, all at the subscriber but %d (skipped %d)\n"
                         % (len(want), len(missing), st.get("skipped_seqs", 0)))


def state(site, online):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(site.broker_port), "-q", "1",
                    "-r", "-t", "spBv1.0/STATE/scada-1", "-m",
                    json.dumps({"online": online, "timestamp": int(time.time() * 1000)})],
                   check=True, timeout=10)


def test_primary_host():
    with Site("sparkplug-host") as site:
        site.start_broker()
        sim_port = free_port()
        cfg = site_config(site, sim_port, ", primary_host: scada-1")
        site.start_sim(["--config", cfg])
        sub = HexSub(site, "spBv1.0/%s/#" % GROUP)
        d = site.start_daemon(cfg)
        wait_for(lambda: "uplink: connected" in d.text(), 20, "sluiced connected")
        time.sleep(2)
        assert not sub.messages(), "published before the primary host was online"
        state(site, True)
        wait_for(lambda: sum(1 for t, _ in sub.messages() if verb(t) == "DDATA") > 10, 20,
                 "DDATA once the host is online")
        check_session(sub.messages())
        state(site, False)
        time.sleep(1)
        n = len(sub.messages())
        time.sleep(2)
        assert len(sub.messages()) == n, "published while the primary host was offline"
        state(site, True)
        wait_for(lambda: since_last(sub.messages(), "NBIRTH") and
                 len(sub.messages()) > n and verb(sub.messages()[n][0]) == "NBIRTH", 20,
                 "NBIRTH when the host returns")
        wait_for(lambda: sum(1 for t, _ in since_last(sub.messages(), "NBIRTH")
                             if verb(t) == "DDATA") > 20, 20, "the rows of the wait")
        check_session(since_last(sub.messages(), "NBIRTH"))
        rc = site.stop("sluiced", signal.SIGTERM, timeout=15)
        assert rc == 0, "sluiced exit %s:\n%s" % (rc, d.text())
        seqs = set(row_seqs(sub.messages()))
        assert seqs == set(range(min(seqs), max(seqs) + 1)), "a gap in sluice/seq"


def test_qos0():
    with Site("sparkplug-qos0") as site:
        site.start_broker()
        sim_port = free_port()
        cfg = site_config(site, sim_port, ", qos: 0")
        site.start_sim(["--config", cfg])
        sub = HexSub(site, "spBv1.0/%s/#" % GROUP)
        time.sleep(0.5)
        d = site.start_daemon(cfg)
        wait_for(lambda: sum(1 for t, _ in sub.messages() if verb(t) == "DDATA") > 20, 20,
                 "DDATA at QoS 0")
        check_session(sub.messages())
        rc = site.stop("sluiced", signal.SIGTERM, timeout=15)
        assert rc == 0, d.text()
        r = site.run([os.path.join(harness.BIN, "sluicectl"), "-c", cfg, "--json", "status"])
        st = json.loads(r.stdout)
        assert st["backlog_rows"] == 0, st
        time.sleep(0.5)
        missing = set(range(1, st["last_seq"] + 1)) - set(row_seqs(sub.messages()))
        assert not missing, sorted(missing)[:10]


def test_backlog_in_the_new_format():
    with Site("sparkplug-switch") as site:
        sim_port = free_port()
        site.broker_port = free_port()   # no broker yet: everything waits in the outbox
        cfg = site_config(site, sim_port)
        sluice_cfg = open(cfg).read().replace("  format: sparkplug\n", "", 1)
        sluice_cfg = sluice_cfg.replace("  sparkplug: { group: %s }\n" % GROUP,
                                        "  topic_prefix: it\n", 1)
        site.write("sluice-format.yaml", sluice_cfg)
        site.start_sim(["--config", cfg])
        d = site.start_daemon(os.path.join(site.dir, "sluice-format.yaml"))
        time.sleep(3)
        rc = site.stop("sluiced", signal.SIGTERM, timeout=15)
        assert rc == 0, d.text()
        r = site.run([os.path.join(harness.BIN, "sluicectl"), "-c", cfg, "--json", "status"])
        stored = json.loads(r.stdout)["last_seq"]
        assert stored > 10, stored

        site.start_broker()
        sub = HexSub(site, "spBv1.0/%s/#" % GROUP)
        time.sleep(0.5)
        d = site.start_daemon(cfg)
        wait_for(lambda: set(range(1, stored + 1)) <= set(row_seqs(sub.messages())), 30,
                 "the backlog's seqs as Sparkplug")
        msgs = sub.messages()
        check_session(msgs)
        old = [p for t, p in msgs if verb(t) == "DDATA"
               and any(m.alias & 0xFFFF == 0 and m.long_value <= stored for m in p.metrics)]
        assert old and all(m.is_historical for p in old for m in p.metrics), "not historical"
        # the devices' online states, stored as the sluice format's text, as DBIRTH
        states = [p for t, p in msgs if verb(t) == "DBIRTH"
                  and any(m.alias & 0xFFFF == 0 and not m.is_null and m.long_value <= stored
                          for m in p.metrics)]
        assert len(states) == 2, [sparkplug.show(p) for p in states]
        rc = site.stop("sluiced", signal.SIGTERM, timeout=15)
        assert rc == 0, d.text()
        seqs = row_seqs(sub.messages())
        assert len(seqs) == len(set(seqs)), "a seq twice"


if __name__ == "__main__":
    harness.main()
