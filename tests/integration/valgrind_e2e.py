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
from harness import wait_for  # noqa: E402
from test_e2e import make_site, telemetry  # noqa: E402


def test_valgrind_e2e():
    site, cfg = make_site("valgrind")
    try:
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
    except Exception:
        site.failed = True
        raise
    finally:
        site.close()


if __name__ == "__main__":
    sys.exit(harness.run_tests([test_valgrind_e2e]))
