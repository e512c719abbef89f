#!/usr/bin/env python3
"""The night check on a real year, scored the way an operator would (issue 14).

tools/leak-score replays L-Town's 2018 inlet flows (BattLeDIM, tests/data/) through
`sluicectl replay` and credits each firing of the night check to the earliest-starting
undetected leak whose window contains it (start .. start + 7 d for an abrupt leak,
start .. min(peak + 7 d, start + 60 d) for an incipient one); every other firing counts
against. Checked, each against a floor a little below what was measured (in the
comments: detected, abrupt detected, firings that match no new leak):

  - the defaults (tests/data/battledim.yaml: a night window and nothing else), pump steps
    found in the flow: 10 of 14, 5 of 6 abrupt, 1 unmatched;
  - each half of the year replayed on its own, from a cold start, so that the defaults
    are not a fit to one stretch of it: 6 of 9 (1 unmatched), 4 of 5 (0);
  - the pump's run signal named instead (battledim-pump.yaml, night.exclude): 9 of 14,
    1 unmatched;
  - the nightly verdict that came before (battledim-verdict.yaml, its best settings):
    still what it was, 10 of 14 with 27 of 37 firings unmatched, for comparison.

Uses SLUICE_BIN's sluicectl (build/ by default); no broker, no daemon.
"""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TOP = harness.TOP
DATA = os.path.join(TOP, "tests", "data")
MAPS = ["--map", "p227=inlet.p227", "--map", "p235=inlet.p235"]


def score(config, *extra):
    argv = [sys.executable, os.path.join(TOP, "tools", "leak-score"),
            "--config", os.path.join(DATA, config),
            "--csv", os.path.join(DATA, "battledim-2018-inlets.csv"),
            "--leaks", os.path.join(DATA, "battledim-2018-leaks.csv"),
            "--sluicectl", os.path.join(os.path.abspath(harness.BIN), "sluicectl"),
            "--json"] + MAPS + list(extra)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert p.returncode == 0, p.stderr.decode("utf-8", "replace")
    s = json.loads(p.stdout)
    med = "%.1f h" % s["median_delay_h"] if s["median_delay_h"] is not None else "-"
    print("  %s %s: %d of %d leaks detected, %d of %d abrupt; median delay %s; %d of %d "
          "firings match no new leak" % (config, " ".join(extra), s["detected"], s["leaks"],
                                         s["abrupt_detected"], s["abrupt"], med,
                                         s["unmatched"], s["firings"]))
    return s


def test_defaults():
    s = score("battledim.yaml")
    assert s["leaks"] == 14 and s["abrupt"] == 6, s
    assert s["detected"] >= 8, s
    assert s["abrupt_detected"] >= 4, s
    assert s["unmatched"] <= 3, s
    assert s["median_delay_h"] is not None and s["median_delay_h"] < 7 * 24, s


def test_halves():
    first = score("battledim.yaml", "--to", "2018-07-01")
    second = score("battledim.yaml", "--from", "2018-07-01")
    assert first["leaks"] == 9 and second["leaks"] == 5
    assert first["detected"] >= 5 and first["unmatched"] <= 2, first
    assert second["detected"] >= 2 and second["unmatched"] <= 2, second


def test_pump_run_signal():
    s = score("battledim-pump.yaml", "--map", "pump=inlet.pump")
    assert s["detected"] >= 7, s
    assert s["unmatched"] <= 3, s


def test_verdict_for_comparison():
    s = score("battledim-verdict.yaml")
    # the check as it was: as many leaks, at the price of a page every ten days
    assert s["firings"] == 37, s
    assert s["unmatched"] >= 20, s


if __name__ == "__main__":
    sys.exit(harness.run_tests([test_defaults, test_halves, test_pump_run_signal,
                                test_verdict_for_comparison]))
