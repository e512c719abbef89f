#!/usr/bin/env python3
"""Short fault storms; `make soak` (tests/soak/soak.py) runs the long ones.

- the broker restarted every 1-3 s for about 20 s, stopped with SIGTERM or with SIGKILL
  at random, sluiced running throughout: every seq arrives, each copy is the store's row
  under that seq, the retained alert/ and device/ states are the last transitions. A
  SIGKILLed mosquitto loses what it acknowledged after its last save (it saves every
  second), which sluiced rightly counted as delivered: so the broker is SIGKILLed only
  once a save holds everything sluiced had sent — sluiced is SIGSTOPped for that moment
  and continued after the kill, finding its connection reset with messages in flight;
- sluiced SIGKILLed 15 times — right after its start, mid-poll, mid-outage (the broker
  away) and mid-drain (just after it reconnected with a backlog) — and started again each
  time: no stored seq is lost, every duplicate is the same row again, and no clean stop
  exits non-zero.

The random choices follow a seed, printed; SLUICE_STORM_SEED=N repeats a run.
"""

import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "soak"))
import harness  # noqa: E402
from harness import wait_for  # noqa: E402
import storms  # noqa: E402

NDEV = 8
# a threshold right at the simulated pressure (0.30 MPa with noise) flaps: alert
# transitions all along, each published retained, one at a time per topic
RULES = ("alerts:\n"
         "  - id: fm1-pressure\n"
         "    kind: threshold\n"
         "    point: fm1.pressure\n"
         "    above: 0.3015\n")


def seed():
    s = os.environ.get("SLUICE_STORM_SEED")
    s = int(s) if s else random.randrange(1 << 30)
    sys.stdout.write("  seed %d (SLUICE_STORM_SEED=%d repeats it)\n" % (s, s))
    return s


def storm_site(name):
    buses = ("  - id: lan\n"
             "    tcp: { host: 127.0.0.1, port: %d }\n"
             "    timeout: 1s\n" % harness.free_port())
    devices = ""
    for i in range(1, NDEV + 1):
        devices += ("  - id: fm%d\n    bus: lan\n    unit_id: %d\n"
                    "    profile: flowmeter-generic\n    interval: 100ms\n" % (i, i))
    # a meter that never answers: its device/ state and comms alert are retained too
    devices += ("  - id: dead\n    bus: lan\n    unit_id: 30\n    profile: flowmeter-generic\n"
                "    interval: 500ms\n    offline_after: 2\n")
    return storms.new_site(name, buses, devices, rules=RULES)


def start_storm_site(site, cfg):
    # the simulated day starts at 23:00, when its demand holds the pressure at the
    # threshold, whatever the hour the test runs
    site.start_sim(["--config", cfg, "--scenario", "dead=dead", "--start", "23:00"])
    site.start_subscriber("it/gw1/#")


def finish(site, cfg, storm, received, windows=()):
    """Broker up, backlog drained, sluiced stopped cleanly; the accounting."""
    if not storm.broker_up:
        storm.start_broker()
    storm.check_daemon("at the end")
    storms.wait_connected(site, cfg, 30)
    storms.wait_backlog(site, cfg, 60, small=64)
    storm.stop_daemon()
    fig, fails = storms.account(site, cfg, received, windows=windows, wait=30)
    sys.stdout.write("  %s\n" % ", ".join("%s %s" % (k, v) for k, v in fig.items()))
    sys.stdout.write("  %s\n" % ", ".join("%s %s" % (k, v) for k, v in storm.summary().items()))
    assert not fails, "\n".join(fails)
    return fig


def test_broker_storm():
    site, cfg = storm_site("brokerstorm")
    with site:
        start_storm_site(site, cfg)
        rnd = random.Random(seed())
        received = storms.Received(site.sub_out)
        storm = storms.Storm(site, cfg, rnd)
        storm.start_daemon()
        wait_for(lambda: len(received.update().seqs()) > 20, 30, "first telemetry")
        storm.broker_storm(20, every=(1.0, 3.0), down=(0.1, 0.8), kill_share=0.5,
                           kill="SIGKILL quiet")
        stops = storm.broker_stops
        assert stops["SIGTERM"] and stops["SIGKILL quiet"], stops
        # sluiced reconnected during the storm, not just at its end. Sessions this short
        # (under the keepalive) do not reset the backoff (docs/mqtt.md, "Connection"):
        # retries 1, 2, 4, 8 s apart, some of them finding the broker down, leave two or
        # three connects in 20 s (every second one, before the backoff waited for a
        # session to last)
        assert storm.connects() >= 2, storm.summary()
        fig = finish(site, cfg, storm, received)
        assert fig["seqs lost"] == 0 and fig["seqs lost by a broker SIGKILL"] == 0, fig
        assert fig["set aside"] == 0, fig
        assert fig["alert transitions"] >= 2, fig
        assert fig["seqs assigned"] > 300, fig


def test_sigkill_storm():
    site, cfg = storm_site("killstorm")
    with site:
        start_storm_site(site, cfg)
        rnd = random.Random(seed())
        received = storms.Received(site.sub_out)
        storm = storms.Storm(site, cfg, rnd)
        storm.start_daemon()
        wait_for(lambda: len(received.update().seqs()) > 20, 30, "first telemetry")
        kills = 15
        storm.sigkill_storm(kills, outage=(1.0, 2.2), poll=(0.5, 1.5))
        assert sum(storm.kills.values()) == kills and len(storm.kills) == 4, storm.kills
        time.sleep(1.0)
        fig = finish(site, cfg, storm, received)
        assert fig["seqs lost"] == 0, fig
        # only rows in flight, or acknowledged but not yet marked, at a kill come again:
        # per kill at most the window (32) and the acks sluiced gathers before it marks
        # them (250 ms of them, 1024 at most: mid-drain that is hundreds)
        assert fig["duplicates"] <= kills * (32 + 1024), fig
        # under valgrind a sluiced killed soon after its start polls little
        assert fig["seqs assigned"] > (100 if harness.VALGRIND else 300), fig


if __name__ == "__main__":
    harness.main()
