#!/usr/bin/env python3
"""sluicectl probe against sluice-sim on loopback.

- a float stored low word first (as TUF-2000M meters do) is found under CDAB, and its
  value is the one the sim served (its --trace);
- the register before the address asked for is read too, labelled with its 1-based number;
- a configured device's points are printed with their raw registers and values, each
  value one the sim served;
- an exception, a dead unit (timeout, bounded) and a refused connection give clear
  messages and exit status 1; bad usage gives 2;
- with no sluiced running for the config's data directory, the line is opened here:
  `via: direct` in text and --json (test_control.py has the probes through sluiced);
- the same over RTU: on a socat pseudo-terminal pair against `sluice-sim --rtu` (several
  unit ids on one line), and as RTU frames over TCP against `sluice-sim --rtu-tcp`; a
  TUF-2000M float (low word first) is found under CDAB there too.
"""

import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Site, config_yaml, free_port  # noqa: E402

TUF_POINTS = """\
    points:
      flow:   { table: holding, address: 0, type: float32, word_order: little, unit: m3/h }
      status: { table: holding, address: 10, type: uint16 }
"""


def probe_site(site):
    """A sim serving a flow meter, a TUF-2000M and a dead unit from a config in site.
    Returns the config's path, the sim's port and its trace file."""
    sim_port = free_port()
    buses = (
        "  - id: site-tcp\n"
        "    tcp: { host: 127.0.0.1, port: %d }\n"
        "    timeout: 1s\n" % sim_port
    )
    devices = (
        "  - id: inlet\n"
        "    bus: site-tcp\n"
        "    unit_id: 1\n"
        "    profile: flowmeter-generic\n"
        "  - id: tuf\n"
        "    bus: site-tcp\n"
        "    unit_id: 2\n" + TUF_POINTS +
        "  - id: dead\n"
        "    bus: site-tcp\n"
        "    unit_id: 3\n"
        "    profile: flowmeter-generic\n"
    )
    site.copy_profiles()
    # the broker port is never used: probe talks to devices only
    cfg = site.write("sluice.yaml", config_yaml(site, "gw1", free_port(), buses, devices))
    trace = os.path.join(site.dir, "trace.jsonl")
    site.start_sim(["--config", cfg, "--trace", trace, "--seed", "7", "-s", "dead=dead"])
    return cfg, sim_port, trace


def probe(site, *args, timeout=30):
    return site.run([os.path.join(harness.BIN, "sluicectl"), "probe"] + list(args), timeout=timeout)


def served(trace, unit, point):
    return [rec["values"][point] for rec in harness.trace_records(trace)
            if rec.get("unit") == unit and point in rec.get("values", {})]


def f32(hi, lo):
    return struct.unpack(">f", struct.pack(">HH", hi, lo))[0]


def close_f32(a, b):
    return a == b or abs(a - b) <= 1e-6 * max(abs(a), abs(b))


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def test_word_swapped_float():
    with Site("probe-raw") as site:
        cfg, port, trace = probe_site(site)
        r = probe(site, "--tcp", "127.0.0.1:%d" % port, "--unit", "2", "--read", "holding:0:2",
                  "--json")
        check(r.returncode == 0, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        out = json.loads(r.stdout)
        # no sluiced runs for this data directory: the line is opened here
        check(out["via"] == "direct" and "bus" not in out, out)
        regs = out["registers"]
        check([x["address"] for x in regs] == [0, 1, 2], regs)
        check([x["asked"] for x in regs] == [True, True, False], regs)
        w0, w1 = regs[0]["uint16"], regs[1]["uint16"]
        check(regs[0]["hex"] == "%04X" % w0, regs[0])
        cdab = regs[0]["float32"]["CDAB"]
        abcd = regs[0]["float32"]["ABCD"]
        check(close_f32(cdab, f32(w1, w0)), (cdab, w0, w1))
        check(close_f32(abcd, f32(w0, w1)), (abcd, w0, w1))
        # the sim served this flow low word first: CDAB is its value
        # the sim writes its trace after it replied: wait for the line
        flows = harness.wait_for(lambda: [v for v in served(trace, 2, "flow")[-3:]
                                          if close_f32(cdab, v)], 5,
                                 "the sim's trace of the tuf.flow it served")
        check(flows, "the sim traced no read of tuf.flow")
        check(not close_f32(abcd, cdab), (abcd, cdab))
        check(regs[0]["uint32"]["CDAB"] == (w1 << 16 | w0), regs[0])

        # the text table: both numberings, the extra register marked
        r = probe(site, "--tcp", "127.0.0.1:%d" % port, "--unit", "2", "--table", "holding",
                  "--address", "1", "--count", "1")
        check(r.returncode == 0, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        lines = r.stdout.splitlines()
        check(lines[1] == "via: direct", r.stdout)
        check(any("wire" in ln and "1-based" in ln for ln in lines), r.stdout)
        check("float32 CDAB" in r.stdout and "int32 ABCD" in r.stdout, r.stdout)
        rows = {int(ln[1:].split()[0]): ln for ln in lines
                if len(ln) > 2 and ln[0] in " +" and ln[1:].split() and ln[1:].split()[0].isdigit()}
        check(0 in rows and rows[0].startswith("+"), rows)   # read around: wire 0 = 1-based 1
        check(rows[0][1:].split()[1] == "1", rows[0])
        check(1 in rows and rows[1].startswith(" "), rows)
        check("manual that numbers registers from 1" in r.stdout, r.stdout)


PASTE_POINTS = """\
    points:
      reading: { table: holding, address: 0, type: float32, order: CDAB }
      head:    { table: holding, address: 10, type: float32, order: CDAB }
      sw:      { table: holding, address: 20, type: float32, order: BADC }
      counter: { table: holding, address: 30, type: uint32, order: CDAB }
      big:     { table: holding, address: 40, type: float64, order: GHEFCDAB }
      mode:    { table: holding, address: 50, type: uint16 }
      code:    { table: holding, address: 60, type: uint16 }
"""


def test_yaml_to_paste():
    """probe marks the column that looks right and prints the point line to paste, for a
    float32 in each of its common orders, a uint32, a float64 and a uint16 (the sim serves
    these points as constants, fixed by their names); a float another order also reads in
    range is named as such. Pasted into a config, the lines pass --check-config and read,
    through probe --config, the values probe showed. Registers that are all 0 tell
    nothing, and probe says so."""
    site = Site("probe-paste")
    try:
        port = free_port()
        buses = ("  - id: site-tcp\n    tcp: { host: 127.0.0.1, port: %d }\n"
                 "    timeout: 1s\n" % port)
        served_cfg = site.write("served.yaml", config_yaml(
            site, "gw1", free_port(), buses,
            "  - id: meter\n    bus: site-tcp\n    unit_id: 5\n" + PASTE_POINTS))
        site.start_sim(["--config", served_cfg])
        target = "127.0.0.1:%d" % port
        want = {"reading": (0, 2, "float32", "CDAB"), "head": (10, 2, "float32", "CDAB"),
                "sw": (20, 2, "float32", "BADC"), "counter": (30, 2, "uint32", "CDAB"),
                "big": (40, 4, "float64", "GHEFCDAB"), "mode": (50, 1, "uint16", "AB")}
        pasted, values = [], {}
        for name, (addr, count, typ, order) in want.items():
            r = probe(site, "--tcp", target, "--unit", "5", "--read",
                      "holding:%d:%d" % (addr, count), "--json")
            check(r.returncode == 0, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
            g = json.loads(r.stdout)["looks_right"]
            check(g["type"] == typ and g["order"] == order and g["address"] == addr, (name, g))
            check(g["yaml"] == "value: { table: holding, address: %d, type: %s, order: %s }"
                  % (addr, typ, order), g)
            values[name] = g["value"]

            # text: the mark under the column of that reading, then the same line
            r = probe(site, "--tcp", target, "--unit", "5", "--read",
                      "holding:%d:%d" % (addr, count))
            lines = r.stdout.splitlines()
            mark = [i for i, ln in enumerate(lines) if "^^^" in ln][0]
            heading = "%s %s" % (typ, order) if count > 1 else typ
            head = [ln for ln in lines[:mark] if (" %s " % heading) in ln + " "][-1]
            check(lines[mark].index("^") == head.index(heading) and
                  lines[mark].count("^") == len(heading) and
                  "looks right for wire %d" % addr in lines[mark], (name, head, lines[mark]))
            line = [ln.strip() for ln in lines[mark:] if ln.strip().startswith("value: {")][0]
            check(line == g["yaml"], (line, g))
            pasted.append(line.replace("value:", name + ":", 1))
            if g.get("also_in_range"):
                check("also reads in range" in r.stdout and "display tells which" in r.stdout,
                      r.stdout)
        # swapping the bytes of 626.59 reads -330.22: in range, so named
        r = probe(site, "--tcp", target, "--unit", "5", "--read", "holding:10:2", "--json")
        check([a["order"] for a in json.loads(r.stdout)["looks_right"]["also_in_range"]] ==
              ["BADC"], r.stdout)

        r = probe(site, "--tcp", target, "--unit", "5", "--read", "holding:60", "--json")
        check(json.loads(r.stdout)["looks_right"] is None, r.stdout)
        r = probe(site, "--tcp", target, "--unit", "5", "--read", "holding:60")
        check("all zero" in r.stdout and "^" not in r.stdout, r.stdout)

        # pasted: a config that reads what probe showed
        cfg = site.write("pasted.yaml", config_yaml(
            site, "gw1", free_port(), buses,
            "  - id: pasted\n    bus: site-tcp\n    unit_id: 5\n    points:\n" +
            "".join("      %s\n" % ln for ln in pasted)))
        r = site.run([os.path.join(harness.BIN, "sluiced"), "--check-config", cfg])
        check(r.returncode == 0, "check-config: %d %s %s" % (r.returncode, r.stdout, r.stderr))
        r = probe(site, "--config", cfg, "--json", "pasted")
        check(r.returncode == 0, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        got = {p["name"]: p["value"] for p in json.loads(r.stdout)["points"]}
        check(got == values, (got, values))
    except Exception:
        site.failed = True
        raise
    finally:
        site.close()


def test_configured_device():
    with Site("probe-cfg") as site:
        cfg, port, trace = probe_site(site)
        r = probe(site, "--config", cfg, "inlet")
        check(r.returncode == 0, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        check(r.stdout.splitlines()[1] == "via: direct", r.stdout)
        for name in ("flow", "velocity", "total", "pressure", "alarm"):
            check(any(ln.split()[:1] == [name] for ln in r.stdout.splitlines()), r.stdout)
        flow = [ln for ln in r.stdout.splitlines() if ln.startswith("flow ")][0]
        check("holding" in flow and "float32" in flow and flow.endswith("m3/h"), flow)

        r = probe(site, "--config", cfg, "--json", "tuf")
        check(r.returncode == 0, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        pts = {p["name"]: p for p in json.loads(r.stdout)["points"]}
        flow = pts["flow"]
        lo, hi = (int(h, 16) for h in flow["raw"])
        check(close_f32(flow["value"], f32(hi, lo)), flow)
        harness.wait_for(lambda: flow["value"] in served(trace, 2, "flow"), 5,
                         "the sim's trace of the flow it served (%r)" % flow)
        check(flow["unit"] == "m3/h" and "error" not in flow, flow)
        check(isinstance(pts["status"]["value"], int), pts["status"])


def test_profiles_from_build_tree():
    """A config with no devices/ beside it: run from the build tree, sluiced
    --check-config, sluice-sim and sluicectl probe find the tree's config/devices; a
    profile found nowhere is named with every place looked in and how to add it."""
    site = Site("probe-buildtree")
    saved = os.environ.pop("SLUICE_PROFILE_PATH", None)
    try:
        sim_port = free_port()
        buses = ("  - id: site-tcp\n"
                 "    tcp: { host: 127.0.0.1, port: %d }\n"
                 "    timeout: 1s\n" % sim_port)
        devices = ("  - id: inlet\n"
                   "    bus: site-tcp\n"
                   "    unit_id: 1\n"
                   "    profile: flowmeter-generic\n")
        cfg = site.write("sluice.yaml", config_yaml(site, "gw1", free_port(), buses, devices))
        check(not os.path.exists(os.path.join(site.dir, "devices")), site.dir)
        r = site.run([os.path.join(harness.BIN, "sluiced"), "--check-config", cfg])
        check(r.returncode == 0, "check-config: %d %s %s" % (r.returncode, r.stdout, r.stderr))
        site.start_sim(["--config", cfg, "--seed", "7"])
        r = probe(site, "--config", cfg, "inlet")
        check(r.returncode == 0, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        check(any(ln.startswith("flow ") for ln in r.stdout.splitlines()), r.stdout)

        bad = site.write("bad.yaml", config_yaml(site, "gw1", free_port(), buses,
                                                 devices.replace("generic", "generik")))
        r = site.run([os.path.join(harness.BIN, "sluiced"), "--check-config", bad])
        check(r.returncode == 78, "check-config: %d %s %s" % (r.returncode, r.stdout, r.stderr))
        tree = os.path.join(os.path.realpath(harness.TOP), "config", "devices")
        for want in (os.path.join(site.dir, "devices") + " (beside the config)",
                     tree + " (this build's)", "/share/sluice/devices (installed)",
                     "did you mean 'flowmeter-generic'?",
                     "put flowmeter-generik.yaml in " + os.path.join(site.dir, "devices"),
                     "SLUICE_PROFILE_PATH"):
            check(want in r.stderr, (want, r.stderr))
    except Exception:
        site.failed = True
        raise
    finally:
        if saved is not None:
            os.environ["SLUICE_PROFILE_PATH"] = saved
        site.close()


def test_errors():
    with Site("probe-err") as site:
        cfg, port, trace = probe_site(site)
        # an exception: the hint names the numbering
        r = probe(site, "--tcp", "127.0.0.1:%d" % port, "--unit", "1", "--read", "holding:400:2")
        check(r.returncode == 1, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        check("illegal data address" in r.stdout and "numbers from 1" in r.stdout, r.stdout)

        # a unit that never answers: a timeout, bounded by --timeout, and the other
        # points are not tried one timeout each
        t0 = time.monotonic()
        r = probe(site, "--config", cfg, "--timeout", "300", "dead")
        took = time.monotonic() - t0
        check(r.returncode == 1, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        check(r.stdout.count("error: timeout") == 5, r.stdout)
        check(took < 3, "probe of a dead unit took %.1fs" % took)
        r = probe(site, "--config", cfg, "--json", "--timeout", "300", "dead")
        check(json.loads(r.stdout)["via"] == "direct", r.stdout)
        pts = json.loads(r.stdout)["points"]
        check(all(p["value"] is None and p["error"] == "timeout" for p in pts), pts)

        # nobody listening
        r = probe(site, "--tcp", "127.0.0.1:%d" % free_port(), "--read", "holding:0")
        check(r.returncode == 1, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        check("cannot connect" in r.stderr, r.stderr)
        r = probe(site, "--tcp", "127.0.0.1:%d" % free_port(), "--read", "holding:0", "--json")
        err = json.loads(r.stdout)
        check(err["via"] == "direct" and err["error"] == "connection failed", err)

        # usage
        for bad in (["--tcp", "127.0.0.1:%d" % port, "--read", "holding"],
                    ["--tcp", "127.0.0.1:%d" % port, "--read", "bogus:1"],
                    ["--tcp", "127.0.0.1:%d" % port, "--read", "holding:0:200"],
                    ["--tcp", "127.0.0.1:%d" % port, "--unit", "300", "--read", "holding:0"],
                    ["--tcp", "::1:502", "--read", "holding:0"],
                    ["--tcp", "127.0.0.1:%d" % port],
                    ["--config", cfg, "nosuchdevice"],
                    ["--config", cfg, "inlet", "--read", "holding:0"],
                    []):
            r = probe(site, *bad)
            check(r.returncode == 2, "%r: rc %d: %s %s" % (bad, r.returncode, r.stdout, r.stderr))
            check(r.stderr.strip(), "%r: no message" % (bad,))


def test_numbered_address():
    """A read of a 3xxxx/4xxxx address refused with ILLEGAL DATA ADDRESS: probe (raw and
    --config, text and JSON) and sluicectl status and tail (as a technician sees a running
    daemon) say the manual may number from 30001/40001 and name the wire address to try;
    the address named reads."""
    with Site("probe-numbered") as site:
        cfg, port, trace = probe_site(site)
        r = probe(site, "--tcp", "127.0.0.1:%d" % port, "--unit", "2", "--read",
                  "holding:40001:2")
        check(r.returncode == 1, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        check("illegal data address" in r.stdout and
              "may number holding registers from 40001" in r.stdout and
              "try --read holding:0" in r.stdout, r.stdout)
        r = probe(site, "--tcp", "127.0.0.1:%d" % port, "--unit", "2", "--read",
                  "holding:40001:2", "--json")
        check("try --read holding:0" in json.loads(r.stdout)["hint"], r.stdout)
        r = probe(site, "--tcp", "127.0.0.1:%d" % port, "--unit", "2", "--read", "holding:0:2")
        check(r.returncode == 0, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        # an input register numbered 3xxxx, given as holding: the table changes too
        r = probe(site, "--tcp", "127.0.0.1:%d" % port, "--unit", "2", "--read", "input:30011")
        check("may number input registers from 30001" in r.stdout and
              "try --read input:10" in r.stdout, r.stdout)

        # the tuf meter's map as a manual numbers it
        numbered = """\
  - id: tuf4x
    bus: site-tcp
    unit_id: 2
    interval: 1s
    points:
      flow:   { table: holding, address: 40001, type: float32, order: CDAB, unit: m3/h }
      status: { table: holding, address: 40011, type: uint16 }
"""
        with open(cfg, encoding="utf-8") as f:
            text = f.read()
        cfg2 = site.write("numbered.yaml", text.replace("devices:\n", "devices:\n" + numbered, 1))
        r = probe(site, "--config", cfg2, "tuf4x")
        check(r.returncode == 1, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        lines = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.split()}
        check("(40001 is wire address 0): try address: 0" in lines["flow"], r.stdout)
        check("try address: 10" in lines["status"], r.stdout)
        r = probe(site, "--config", cfg2, "--json", "tuf4x")
        pts = {p["name"]: p for p in json.loads(r.stdout)["points"]}
        check(pts["status"]["hint"].endswith("try address: 10"), pts)

        # what a technician sees of a running daemon: status and tail
        site.start_daemon(cfg2)
        ctl = [os.path.join(harness.BIN, "sluicectl"), "-c", cfg2]
        harness.wait_for(lambda: "(illegal data address)" in site.run(ctl + ["tail", "tuf4x"]).stdout,
                         20, "a refused reading of tuf4x")
        r = site.run(ctl + ["tail", "tuf4x"])
        check("flow (holding 40001): the manual may number holding registers from 40001" in
              r.stdout and "try address: 0" in r.stdout, r.stdout)
        check("status (holding 40011)" in r.stdout and "try address: 10" in r.stdout, r.stdout)
        r = harness.wait_for(lambda: (lambda r: r if "tuf4x: illegal data address" in r.stdout
                                      else None)(site.run(ctl + ["status"])),
                             20, "status to show tuf4x's error")
        check("flow (holding 40001)" in r.stdout and "try address: 0" in r.stdout, r.stdout)
        # the other devices answer at their real addresses: no hint for them
        check("inlet:" not in r.stdout, r.stdout)


def start_rtu_sims(site):
    """sluice-sim serving TUF-2000M meters (shipped profile: floats low word first) at
    units 2 and 4 of a pty line, and at unit 5 as RTU over TCP."""
    a, b = site.start_pty_pair()
    port = free_port()
    trace = os.path.join(site.dir, "trace.jsonl")
    site.start_sim(["--rtu", a, "--device", "2:tuf2000m", "--device", "4:tuf2000m",
                    "--rtu-tcp", "127.0.0.1:%d" % port, "--device", "5:tuf2000m",
                    "-p", os.path.join(harness.TOP, "config", "devices"),
                    "--trace", trace, "--seed", "3"])
    return b, port, trace


def check_cdab(site, target, unit, trace):
    r = probe(site, *target, "--unit", str(unit), "--read", "holding:0:2", "--json")
    check(r.returncode == 0, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
    regs = json.loads(r.stdout)["registers"]
    check([x["address"] for x in regs] == [0, 1, 2], regs)
    w0, w1 = regs[0]["uint16"], regs[1]["uint16"]
    cdab = regs[0]["float32"]["CDAB"]
    check(close_f32(cdab, f32(w1, w0)), (cdab, w0, w1))
    # the sim writes its trace after the reply has gone: wait for the line, bounded
    try:
        harness.wait_for(lambda: any(close_f32(cdab, v)
                                     for v in served(trace, unit, "flow")[-3:]),
                         5, "the sim's trace of unit %d's flow" % unit)
    except AssertionError:
        raise AssertionError((cdab, served(trace, unit, "flow")[-3:]))
    check(not close_f32(regs[0]["float32"]["ABCD"], cdab), regs[0])
    return cdab


def test_rtu_serial():
    with Site("probe-rtu") as site:
        tty, port, trace = start_rtu_sims(site)
        line = ["--rtu", tty, "--baud", "9600", "--parity", "none", "--stop-bits", "1"]
        # two unit ids on one line, each answering for itself
        check_cdab(site, line, 2, trace)
        check_cdab(site, line, 4, trace)

        # the text table, as a technician sees it
        r = probe(site, *line, "--unit", "2", "--table", "holding", "--address", "0",
                  "--count", "2")
        check(r.returncode == 0, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        check("float32 CDAB" in r.stdout and tty in r.stdout, r.stdout)

        # an exception, named, with the numbering hint
        r = probe(site, *line, "--unit", "2", "--read", "holding:4000:2")
        check(r.returncode == 1, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        check("illegal data address" in r.stdout and "numbers from 1" in r.stdout, r.stdout)

        # a unit nobody serves: silence on the line, a bounded timeout
        t0 = time.monotonic()
        r = probe(site, *line, "--unit", "9", "--timeout", "300", "--read", "holding:0")
        took = time.monotonic() - t0
        check(r.returncode == 1, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        check("timeout" in r.stdout and "unit id" in r.stdout, r.stdout)
        check(took < 3, "probe of a silent unit took %.1fs" % took)

        # the line is still usable after the timeout
        check_cdab(site, line, 4, trace)

        # bad line settings and devices
        for bad in (["--rtu", tty, "--parity", "mark", "--read", "holding:0"],
                    ["--rtu", tty, "--stop-bits", "3", "--read", "holding:0"],
                    ["--rtu-tcp", "127.0.0.1:%d" % port, "--baud", "9600",
                     "--read", "holding:0"],
                    ["--rtu", tty, "--tcp", "127.0.0.1:%d" % port, "--read", "holding:0"]):
            r = probe(site, *bad)
            check(r.returncode == 2, "%r: rc %d: %s %s" % (bad, r.returncode, r.stdout,
                                                          r.stderr))
            check(r.stderr.strip(), "%r: no message" % (bad,))
        r = probe(site, "--rtu", os.path.join(site.dir, "no-such-tty"), "--read", "holding:0")
        check(r.returncode == 1 and "cannot open" in r.stderr, (r.returncode, r.stderr))


def test_rtu_over_tcp():
    with Site("probe-rtu-tcp") as site:
        tty, port, trace = start_rtu_sims(site)
        check_cdab(site, ["--rtu-tcp", "127.0.0.1:%d" % port], 5, trace)

        # Modbus TCP framing to an RTU-over-TCP port: no valid reply, said so in time
        t0 = time.monotonic()
        r = probe(site, "--tcp", "127.0.0.1:%d" % port, "--unit", "5", "--timeout", "500",
                  "--read", "holding:0:2")
        check(r.returncode == 1, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        check(time.monotonic() - t0 < 5, "took too long")

        # exception over RTU over TCP, as JSON
        r = probe(site, "--rtu-tcp", "127.0.0.1:%d" % port, "--unit", "5",
                  "--read", "input:0:2", "--json")
        check(r.returncode == 1, "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        out = json.loads(r.stdout)
        check(out["error"] in ("illegal data address", "illegal function"), out)


def test_rtu_over_tcp_ipv6():
    if not harness_ipv6():
        sys.stderr.write("skipped: no IPv6 loopback\n")
        return
    with Site("probe-rtu-v6") as site:
        port = free_port(socket.AF_INET6, "::1")
        trace = os.path.join(site.dir, "trace.jsonl")
        site.start_sim(["--rtu-tcp", "[::1]:%d" % port, "--device", "5:tuf2000m",
                        "-p", os.path.join(harness.TOP, "config", "devices"),
                        "--trace", trace])
        check_cdab(site, ["--rtu-tcp", "[::1]:%d" % port], 5, trace)


def harness_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    harness.main()
