#!/usr/bin/env python3
"""A step of the wall clock in a running sluiced (issue #7): an injected clock
(SLUICE_TEST_CLOCK_FILE) is stepped an hour forward, then back, while a meter is
polled every 500 ms and a threshold rule has its 'for' pending across each step.

- polls neither stall nor burst: at the subscriber, by receive time, no gap beyond
  interval + timeout (+ the commit wait), and no more polls in a window than the
  schedule allows + 1 (+ the same wait);
- telemetry ts jump by +1 h and -1 h, once each;
- sluiced logs "wall clock stepped by +3600.0 s" and "... by -3600.0 s";
- the threshold's 'for' (8 s), pending when the clock steps, fires after its real
  duration: not at once after the step forward, not an hour late after the step back;
- bad content in the file is a warning, and the offset stays.
"""

import json
import os
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Site, config_yaml, free_port, wait_for  # noqa: E402

HOUR = 3600000
INTERVAL = 0.5
TIMEOUT = 1.0
FOR = 8.0
# rows wait up to 500 ms for their transaction before they are published, and the
# broker and this test's polling add a little: receive times wander by this much
SLACK = 1.0 * (20 if harness.VALGRIND else 1)

RULES = """\
alerts:
  - id: valve-open
    kind: threshold
    point: valve.setpoint
    above: 0.5
    for: 8s
    severity: yellow
"""


class Tail:
    """The subscriber's output as it arrives: (receive time, topic, payload)."""

    def __init__(self, site):
        self.site = site
        self.off = 0
        self.buf = b""
        self.msgs = []

    def pump(self):
        try:
            with open(self.site.sub_out, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except OSError:
            return
        now = time.monotonic()
        self.off += len(data)
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            text = line.decode("utf-8")
            if " " not in text:
                continue
            topic, payload = text.split(" ", 1)
            try:
                self.msgs.append((now, topic, json.loads(payload)))
            except ValueError:
                continue

    def until(self, pred, timeout, what):
        def step():
            self.pump()
            return pred()
        return wait_for(step, timeout, what, interval=0.02)

    def topic(self, name):
        return [(r, p) for r, t, p in self.msgs if t == "it/gw1/" + name]


def write_reg(port, unit, addr, value):
    """Modbus TCP 'write single register' to the sim, as a technician's tool would."""
    req = struct.pack(">HHHBBHH", 7, 0, 6, unit, 6, addr, value)
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(req)
        resp = b""
        while len(resp) < 12:
            chunk = s.recv(64)
            if not chunk:
                break
            resp += chunk
    assert resp[7:8] == b"\x06", resp


def set_clock(path, text):
    """The test hook's file, replaced in one rename (never half-written)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def test_clock_steps():
    with Site("clock") as site:
        site.start_broker()
        sim_port = free_port()
        buses = ("  - id: plant\n    tcp: { host: 127.0.0.1, port: %d }\n    timeout: 1s\n"
                 % sim_port)
        devices = ("  - id: meter\n    bus: plant\n    unit_id: 1\n"
                   "    profile: flowmeter-generic\n    interval: 500ms\n"
                   "  - id: valve\n    bus: plant\n    unit_id: 2\n    interval: 500ms\n"
                   "    points:\n"
                   "      setpoint: { table: holding, address: 0, type: uint16 }\n")
        site.copy_profiles("flowmeter-generic")
        cfg = site.write("sluice.yaml", config_yaml(site, "gw1", site.broker_port, buses,
                                                    devices, extra=RULES))
        site.start_sim(["--config", cfg])
        write_reg(sim_port, 2, 0, 0)
        site.start_subscriber("it/gw1/#")
        clock = os.path.join(site.dir, "clock")  # absent: offset 0
        env = dict(os.environ, SLUICE_TEST_CLOCK_FILE=clock)
        d = harness.Proc("sluiced", site.daemon_argv(cfg), os.path.join(site.dir, "sluiced.log"),
                         env=env)
        site.procs["sluiced"] = d
        tail = Tail(site)
        alert = "alert/valve-open/above"

        def valve_shut():
            return any(p["values"].get("setpoint") == 0 for r, p in tail.topic("telemetry/valve"))

        tail.until(valve_shut, 30 * (10 if harness.VALGRIND else 1), "the valve's first readings")
        n_before = len(tail.topic(alert))

        def pending_step(offset, label):
            """Open the valve, step the clock 3 s into the 'for', wait for the firing;
            the firing's ts against the first open reading's (moved by the step)."""
            mark = len(tail.topic("telemetry/valve"))
            write_reg(sim_port, 2, 0, 1)
            first = tail.until(lambda: [(r, p) for r, p in tail.topic("telemetry/valve")[mark:]
                                        if p["values"].get("setpoint") == 1], 10 * SLACK,
                               "the valve open (%s)" % label)[0]
            t_open = time.monotonic()
            while time.monotonic() < t_open + 3:
                tail.pump()
                time.sleep(0.02)
            set_clock(clock, offset)
            fired = tail.until(lambda: [(r, p) for r, p in tail.topic(alert)[n_before:]
                                        if p["state"] == "firing"], FOR + 10 * SLACK,
                               "the 'for' to run out (%s)" % label)[-1]
            return first, fired

        def check_held(first, fired, step, label):
            # by the readings' stamps (the first open one moved by the step) ...
            held = fired[1]["ts"] - (first[1]["ts"] + step)
            # ... and by when they reached the subscriber
            seen = fired[0] - first[0]
            print("  %s: fired %.1f s after the valve opened by ts, %.1f s by receive time "
                  "(for: %.0f s)" % (label, held / 1000, seen, FOR))
            assert (FOR - INTERVAL) * 1000 <= held <= (FOR + INTERVAL + 1) * 1000, held
            assert FOR - SLACK <= seen <= FOR + 1 + 2 * SLACK, seen

        # forward: +1 h, 3 s into the 8 s 'for'
        first, fired = pending_step("3600000\n", "+1 h")
        check_held(first, fired, HOUR, "+1 h")
        # close: resolved at once
        write_reg(sim_port, 2, 0, 0)
        tail.until(lambda: tail.topic(alert)[-1][1]["state"] == "resolved", 10 * SLACK,
                   "the alert to resolve")
        n_before = len(tail.topic(alert))

        # back: -1 h (the offset back to 0), 3 s into the 'for'
        first, fired = pending_step("0\n", "-1 h")
        check_held(first, fired, -HOUR, "-1 h")

        # bad content: a warning, the offset stays (no step)
        set_clock(clock, "an hour\n")
        wait_for(lambda: "is not a number of milliseconds" in d.text(), 5 * SLACK,
                 "the warning about the clock file")
        end = time.monotonic() + 2
        while time.monotonic() < end:
            tail.pump()
            time.sleep(0.02)

        log = d.text()
        assert "wall clock stepped by +3600.0 s" in log, log
        assert "wall clock stepped by -3600.0 s" in log, log
        steps = [line for line in log.splitlines() if "wall clock stepped by" in line]
        assert len(steps) == 2 and all(line.startswith("<4>") for line in steps), steps

        # the meter's telemetry: ts jump +1 h once and -1 h once; otherwise they advance
        meter = tail.topic("telemetry/meter")
        seqs = [p["seq"] for r, p in meter]
        assert seqs == sorted(seqs), seqs
        jumps = [b["ts"] - a["ts"] for (_, a), (_, b) in zip(meter, meter[1:])]
        fwd = [j for j in jumps if abs(j - HOUR) < 5000]
        back = [j for j in jumps if abs(j + HOUR) < 5000]
        other = [j for j in jumps if abs(abs(j) - HOUR) >= 5000]
        print("  meter: %d readings, ts steps %s, others %d..%d ms"
              % (len(meter), [round(j / 1000, 1) for j in fwd + back], min(other), max(other)))
        assert len(fwd) == 1 and len(back) == 1, jumps
        assert all(0 < j <= (INTERVAL + TIMEOUT) * 1000 + 1000 * SLACK for j in other), other

        # no stall: receive gaps; no burst: polls in any window of receive time
        recv = [r for r, p in meter]
        gaps = [b - a for a, b in zip(recv, recv[1:])]
        print("  meter: largest receive gap %.2f s (bound %.1f)"
              % (max(gaps), INTERVAL + TIMEOUT + SLACK))
        assert max(gaps) <= INTERVAL + TIMEOUT + SLACK, gaps
        win = 3.0
        allowed = int((win + SLACK) / INTERVAL) + 1
        most = max(sum(1 for x in recv[i:] if x <= recv[i] + win) for i in range(len(recv)))
        print("  meter: at most %d polls in %.0f s (allowed %d)" % (most, win, allowed))
        assert most <= allowed, most
        # and the whole run holds as many polls as its monotonic length allows
        span = recv[-1] - recv[0]
        assert len(recv) <= int((span + SLACK) / INTERVAL) + 1, (len(recv), span)

        rc = site.stop("sluiced", signal.SIGTERM, timeout=15)
        assert rc == 0, d.text()


if __name__ == "__main__":
    harness.main()
