#!/usr/bin/env python3
"""Broker failover (uplink.fallback): two mosquitto brokers on loopback, sluiced polling
sluice-sim with the first as its broker and the second as its fallback.

- the first is stopped: sluiced goes to the fallback at once (no backoff within a round)
  and delivers there, its status online there;
- the first is started again: within uplink.fallback_check sluiced goes back to it,
  saying offline on the fallback first;
- the first is stopped and started once more, to see both ways twice;
- no seq is lost: what the subscribers of the two brokers received together holds every
  seq sluiced assigned (duplicates allowed: a row in flight at a switch is sent again).

And --check-config takes every format, commands and a fallback.
"""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Proc, Site, config_yaml, free_port, port_open, wait_for  # noqa: E402


class Fallback:
    """The second broker, beside the site's own, with a persistent subscriber."""

    def __init__(self, site):
        self.site = site
        self.port = free_port()
        self.dir = os.path.join(site.dir, "fallback")
        os.makedirs(os.path.join(self.dir, "db"), exist_ok=True)
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write("listener %d 127.0.0.1\n"
                    "allow_anonymous true\n"
                    "persistence true\n"
                    "persistence_location %s/\n"
                    "autosave_interval 1\n"
                    "max_queued_messages 0\n"
                    "max_inflight_messages 100\n"
                    "log_type error\nlog_type warning\nlog_type notice\n"
                    % (self.port, os.path.join(self.dir, "db")))
            if os.geteuid() == 0:
                f.write("user root\n")
        self.out = os.path.join(self.dir, "sub.out")

    def start(self):
        pr = Proc("mosquitto-fb", ["mosquitto", "-c", self.conf],
                  os.path.join(self.site.dir, "mosquitto-fallback.log"))
        self.site.procs["mosquitto-fb"] = pr
        wait_for(lambda: port_open(self.port) or not pr.alive(), 10, "the fallback to listen")
        assert pr.alive(), pr.text()

    def subscribe(self, topic):
        argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), "-i",
                "sluice-it-sub-fb", "-c", "-q", "1", "-v", "-t", topic, "-k", "5"]
        self.site.procs["sub-fb"] = Proc("sub-fb", argv,
                                         os.path.join(self.site.dir, "sub-fb.log"),
                                         stdout_path=self.out)

    def messages(self):
        return read_messages(self.out)


def read_messages(path):
    """[(topic, payload)] in a mosquitto_sub -v output file; a partial last line left out."""
    out = []
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8")
    except OSError:
        return out
    for line in data.split("\n"):
        if " " not in line:
            continue
        topic, payload = line.split(" ", 1)
        try:
            out.append((topic, json.loads(payload)))
        except ValueError:
            continue
    return out


def seqs(msgs):
    return {p["seq"] for t, p in msgs if isinstance(p, dict) and "seq" in p}


def last_status(msgs):
    st = [p for t, p in msgs if t == "it/gw1/status"]
    return st[-1] if st else None


def site_config(site, fb_port):
    sim_port = free_port()
    buses = ("  - id: lan\n"
             "    tcp: { host: 127.0.0.1, port: %d }\n"
             "    timeout: 1s\n" % sim_port)
    devices = ""
    for i in range(2):
        devices += ("  - id: fm%d\n"
                    "    bus: lan\n"
                    "    unit_id: %d\n"
                    "    profile: flowmeter-generic\n"
                    "    interval: 200ms\n" % (i + 1, i + 1))
    site.copy_profiles("flowmeter-generic")
    text = config_yaml(site, "gw1", site.broker_port, buses, devices)
    text = text.replace("uplink:\n", "uplink:\n"
                        "  fallback:\n"
                        "    - { host: 127.0.0.1, port: %d }\n"
                        "  fallback_check: 10s\n" % fb_port, 1)
    return site.write("sluice.yaml", text)


def test_failover_and_back():
    with Site("failover") as site:
        site.start_broker()
        fb = Fallback(site)
        fb.start()
        cfg = site_config(site, fb.port)
        site.start_sim(["--config", cfg])
        site.start_subscriber("it/gw1/#")
        fb.subscribe("it/gw1/#")
        d = site.start_daemon(cfg)
        wait_for(lambda: len(seqs(site.messages())) > 20, 30, "telemetry on the first broker")
        assert not seqs(fb.messages()), "the fallback was used while the first broker was up"

        for round_ in range(2):
            # the first goes: the fallback takes over
            site.stop_broker()
            t0 = time.monotonic()
            n = len(seqs(fb.messages()))
            wait_for(lambda n=n: len(seqs(fb.messages())) > n + 20, 30,
                     "telemetry on the fallback (round %d)" % round_)
            took = time.monotonic() - t0
            assert d.alive(), d.text()
            st = last_status(fb.messages())
            assert st and st["state"] == "online", st
            wait_for(lambda: "is fallback 1" in d.text(), 5, "the log line of the fallback")
            sys.stdout.write("round %d: on the fallback %.1f s after the first stopped\n"
                             % (round_, took))

            # the first comes back: sluiced returns within a check (10 s) and a bit
            n = len(seqs(site.messages()))
            site.start_broker()
            t0 = time.monotonic()
            wait_for(lambda n=n: len(seqs(site.messages())) > n + 20, 40,
                     "telemetry on the first broker again (round %d)" % round_)
            sys.stdout.write("round %d: back on the first %.1f s after it started\n"
                             % (round_, time.monotonic() - t0))
            assert "answers again: leaving" in d.text(), d.text()
            # the fallback was told, before the session there ended
            wait_for(lambda: (last_status(fb.messages()) or {}).get("state") == "offline", 10,
                     "status offline on the fallback")
            assert d.alive(), d.text()

        rc = site.stop("sluiced", signal.SIGTERM, timeout=15)
        assert rc == 0, "sluiced exit %s:\n%s" % (rc, d.text())
        r = site.run([os.path.join(harness.BIN, "sluicectl"), "-c", cfg, "--json", "status"])
        assert r.returncode == 0, r.stderr
        st = json.loads(r.stdout)
        assert st["backlog_rows"] == 0, st
        last = st["last_seq"]
        want = set(range(1, last + 1))
        wait_for(lambda: not (want - seqs(site.messages()) - seqs(fb.messages())), 30,
                 "every seq at one subscriber or the other")
        both = seqs(site.messages()) & seqs(fb.messages())
        sys.stdout.write("%d seqs: %d on the first broker, %d on the fallback, %d on both\n"
                         % (last, len(seqs(site.messages())), len(seqs(fb.messages())),
                            len(both)))
        assert last > 200, last


def test_check_config_takes_the_formats_and_commands():
    with Site("formats") as site:
        base = ("gateway: { id: gw, data_dir: %s }\n"
                "buses: [ { id: b, tcp: { host: 127.0.0.1 } } ]\n"
                "devices: [ { id: d, bus: b, points: { p: { table: holding, address: 0, "
                "type: uint16 } } } ]\n" % os.path.join(site.dir, "data"))
        sluiced = os.path.join(harness.BIN, "sluiced")
        for uplink in ("uplink: { host: 127.0.0.1, format: sparkplug, sparkplug: { group: cq } }\n",
                       "uplink: { host: 127.0.0.1, format: thingsboard }\n",
                       "uplink: { host: 127.0.0.1, commands: true }\n",
                       "uplink: { host: 127.0.0.1, fallback: [ { host: 127.0.0.2 } ] }\n"):
            cfg = site.write("c.yaml", base + uplink)
            r = site.run([sluiced, "--check-config", cfg])
            assert r.returncode == 0, (uplink, r.stdout, r.stderr)


if __name__ == "__main__":
    harness.main()
