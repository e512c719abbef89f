#!/usr/bin/env python3
"""One end-to-end run with sluiced under valgrind memcheck: broker, sim, daemon, a
subscriber; telemetry arrives; SIGTERM; zero memcheck errors and zero leaks."""

import glob
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["SLUICE_VALGRIND"] = "1"
import harness  # noqa: E402
from harness import Site, telemetry, wait_for  # noqa: E402
from test_e2e import e2e_site  # noqa: E402


def test_valgrind_e2e():
    with Site("valgrind") as site:
        cfg = e2e_site(site)
        site.start_sim(["--config", cfg])
        site.start_subscriber("it/gw1/#")
        d = site.start_daemon(cfg)
        for dev in ("inlet", "underpass", "mixed"):
            wait_for(lambda dev=dev: len(telemetry(site, dev)) >= 3, 90, "telemetry of " + dev)
        rc = site.stop("sluiced", signal.SIGTERM, timeout=30)
        assert rc == 0, "sluiced under valgrind: status %s\n%s" % (rc, d.text())
        reports = ""
        for fn in glob.glob(os.path.join(site.dir, "valgrind.*.log")):
            with open(fn) as f:
                reports += f.read()
        assert reports.strip() == "", "valgrind:\n" + reports


if __name__ == "__main__":
    harness.main()
