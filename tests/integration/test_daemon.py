#!/usr/bin/env python3
"""The daemon as a service: SIGHUP reloads (a good config is swapped in without
dropping the uplink; a bad one is reported and the running one kept), SIGTERM exits
0 within 5 s, and sd_notify READY/RELOADING/STOPPING reach $NOTIFY_SOCKET."""

import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Proc, Site, telemetry, wait_for  # noqa: E402
from test_e2e import e2e_site  # noqa: E402


def test_reload_and_notify():
    with Site("reload") as site, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as ns:
        cfg = e2e_site(site)
        notify_path = os.path.join(site.dir, "notify.sock")
        ns.bind(notify_path)
        ns.settimeout(0.1)
        got = []

        def notified(what):
            while True:
                try:
                    got.append(ns.recv(4096).decode())
                except socket.timeout:
                    break
            return any(what in g for g in got)

        site.start_sim(["--config", cfg])
        site.start_subscriber("it/gw1/#")
        # a 2 s watchdog: sluiced must ping at half of it from its loop
        env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="2000000")
        d = Proc("sluiced", site.daemon_argv(cfg), os.path.join(site.dir, "sluiced.log"), env=env)
        site.procs["sluiced"] = d
        wait_for(lambda: notified("READY=1"), 30, "READY=1")
        wait_for(lambda: len(telemetry(site, "inlet")) >= 2, 30, "telemetry")
        wait_for(lambda: notified("devices online"), 20, "STATUS= with the devices online")
        assert any(g.startswith("STATUS=3 of 3 devices online") for g in got) or \
            notified("STATUS=3 of 3 devices online"), got
        # watchdog pace: about one ping a second for a 2 s WATCHDOG_USEC
        got.clear()
        time.sleep(5)
        notified("-")
        pings = sum(g.count("WATCHDOG=1") for g in got)
        assert 3 <= pings <= 8 or (harness.VALGRIND and pings >= 1), (pings, got)

        # a bad config: reported, the running one kept
        with open(cfg, encoding="utf-8") as f:
            good = f.read()
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(good.replace("    interval: 1s\n", "    intervall: 1s\n", 1))
        d.send(signal.SIGHUP)
        wait_for(lambda: "the running configuration is kept" in d.text(), 20, "bad reload refused")
        assert "unknown key 'intervall'" in d.text(), d.text()
        n = len(telemetry(site, "inlet"))
        wait_for(lambda: len(telemetry(site, "inlet")) > n + 1, 20, "polling goes on")

        # a good one: a device removed, the uplink kept
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(good.replace("  - id: underpass\n", "  - id: underpass2\n"))
        got.clear()
        d.send(signal.SIGHUP)
        wait_for(lambda: "reloaded:" in d.text(), 20, "reload")
        assert notified("RELOADING=1"), got
        wait_for(lambda: notified("READY=1"), 10, "READY=1 after reload")
        wait_for(lambda: len(telemetry(site, "underpass2")) >= 2, 30, "the renamed device's telemetry")
        n_old = len(telemetry(site, "underpass"))
        time.sleep(2.5)
        assert len(telemetry(site, "underpass")) == n_old, "the old device is still polled"
        status = [p for t, p in site.messages() if t == "it/gw1/status"]
        assert len(status) == 1, "the uplink reconnected on a reload that did not change it: %s" % status

        t0 = time.monotonic()
        rc = site.stop("sluiced", signal.SIGTERM, timeout=15)
        took = time.monotonic() - t0
        assert rc == 0, d.text()
        assert took < 5 or harness.VALGRIND, took
        assert notified("STOPPING=1"), got
        errors = [l for l in d.text().splitlines() if l.startswith("<3>")]
        assert len(errors) == 2 and "intervall" in errors[0] and "is kept" in errors[1], errors


if __name__ == "__main__":
    harness.main()
