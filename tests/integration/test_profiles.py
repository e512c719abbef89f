#!/usr/bin/env python3
"""The shipped profile library (config/devices/) against sluice-sim, on loopback.

- the library holds at least 40 profiles, each file opening with a comment that names
  its source, and each `profile:` equal to its file name;
- one config using every profile passes `sluiced --check-config` (no overlaps, valid
  types, every key known);
- sluice-sim serves one device per profile (its --config) and `sluicectl probe --config
  FILE DEVICE --json` reads every point back: each point's raw registers, decoded here
  independently from the profile's type, byte and word order, bit, scale and offset,
  give the value probe printed, and that value is one the sim served (its --trace);
- every profile that config/*.yaml names exists.

Uses from harness.py only: Site (dir, write, start_sim, run, close, failed), config_yaml,
free_port, wait_for, run_tests, BIN and TOP.
"""

import json
import math
import os
import re
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Site, config_yaml, free_port  # noqa: E402

DEVICES_DIR = os.path.join(harness.TOP, "config", "devices")
MIN_PROFILES = 40

WIDTH = {"bool": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
         "int64": 4, "uint64": 4, "float64": 4}
STRUCT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f",
          "int64": ">q", "uint64": ">Q", "float64": ">d"}


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def profile_files():
    return sorted(f for f in os.listdir(DEVICES_DIR) if f.endswith(".yaml"))


def whole(text):
    text = text.strip().strip('"')
    return int(text, 16) if text.lower().startswith("0x") else int(text)


def parse_profile(path):
    """The points of a shipped profile. The library writes one point per line as a
    flow mapping (`name: { key: value, ... }`); a point written any other way is
    reported, so that this reader never silently skips one."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    head, name, points, in_points = [], None, {}, False
    for ln in lines:
        if not in_points and ln.startswith("#"):
            head.append(ln)
            continue
        m = re.match(r"^profile:\s*(\S+)\s*$", ln)
        if m:
            name = m.group(1)
        if ln.startswith("points:"):
            in_points = True
            continue
        if not in_points or not ln.strip() or ln.lstrip().startswith("#"):
            continue
        m = re.match(r"^  ([A-Za-z0-9_-]+):\s*\{(.*)\}\s*(#.*)?$", ln)
        check(m, "%s: point line not in the one-line form this test reads: %r" % (path, ln))
        pt = {}
        for part in m.group(2).split(","):
            k, v = part.split(":", 1)
            pt[k.strip()] = v.strip().strip('"')
        points[m.group(1)] = pt
    return name, head, points


def decode(pt, raw_hex):
    """The engineering value of a point from the registers probe showed, computed here
    from the profile alone: byte order inside each register, then bit or word order,
    then scale and offset."""
    typ = pt["type"]
    regs = [int(h, 16) for h in raw_hex]
    check(len(regs) == WIDTH[typ], "%s: %d registers for a %s" % (pt, len(regs), typ))
    if pt.get("byte_order", "big") == "little":
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    if typ == "bool":
        if "bit" in pt:
            return bool((regs[0] >> int(pt["bit"])) & 1)
        return regs[0] != 0
    if pt.get("word_order", "big") == "little":
        regs = regs[::-1]
    raw = struct.unpack(STRUCT[typ], struct.pack(">%dH" % len(regs), *regs))[0]
    scale = float(pt.get("scale", 1))
    offset = float(pt.get("offset", 0))
    if "scale" not in pt and "offset" not in pt:
        return raw
    return raw * scale + offset


def close(a, b, rel=1e-9):
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return a == b or abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def tolerance(pt):
    """probe prints a float32 with the digits a float32 has (47202.08, not
    47202.078125): compare those at float32 precision, everything else closely."""
    return 3e-7 if pt["type"] == "float32" else 1e-9


def order_matters(pt, raw_hex):
    """Whether this reading would decode differently with the other word order: a
    reading of two equal halves (or zero) does not show that the order is right."""
    if len(raw_hex) < 2:
        return False
    other = dict(pt)
    other["word_order"] = "big" if pt.get("word_order", "big") == "little" else "little"
    a, b = decode(pt, raw_hex), decode(other, raw_hex)
    return not (a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)))


def library():
    out = {}
    for fn in profile_files():
        name, head, points = parse_profile(os.path.join(DEVICES_DIR, fn))
        out[fn[:-5]] = (name, head, points)
    return out


def all_profiles_config(site, port):
    lib = library()
    buses = ("  - id: sim\n"
             "    tcp: { host: 127.0.0.1, port: %d }\n"
             "    timeout: 2s\n" % port)
    devices = ""
    for unit, prof in enumerate(sorted(lib), start=1):
        devices += ("  - id: %s\n    bus: sim\n    unit_id: %d\n    profile: %s\n"
                    "    interval: 1h\n" % (prof, unit, prof))
    os.makedirs(os.path.join(site.dir, "devices"), exist_ok=True)
    for fn in profile_files():
        with open(os.path.join(DEVICES_DIR, fn), "rb") as f:
            data = f.read()
        with open(os.path.join(site.dir, "devices", fn), "wb") as f:
            f.write(data)
    # the broker port is never used: only --check-config, the sim and probe read it
    return site.write("sluice.yaml", config_yaml(site, "gw-profiles", free_port(), buses,
                                                 devices)), lib


def test_library():
    lib = library()
    check(len(lib) >= MIN_PROFILES,
          "%d profiles in config/devices, expected at least %d" % (len(lib), MIN_PROFILES))
    for prof, (name, head, points) in lib.items():
        check(name == prof, "%s.yaml says profile: %s" % (prof, name))
        check(head, "%s.yaml does not open with a comment" % prof)
        check(any("Source:" in ln for ln in head),
              "%s.yaml: its opening comment names no source ('# Source: ...')" % prof)
        check(points, "%s.yaml has no points" % prof)
        for pname, pt in points.items():
            check(pt.get("type") in WIDTH, "%s.%s: type %r" % (prof, pname, pt.get("type")))
    print("    %d profiles, %d points" % (len(lib), sum(len(p[2]) for p in lib.values())))


def test_check_config():
    site = Site("profiles-check")
    try:
        cfg, lib = all_profiles_config(site, free_port())
        r = site.run([os.path.join(harness.BIN, "sluiced"), "--check-config", cfg])
        check(r.returncode == 0, "rc %d:\n%s%s" % (r.returncode, r.stdout, r.stderr))
        check("warning" not in r.stderr, r.stderr)
        npoints = sum(len(p[2]) for p in lib.values())
        check("%d devices, %d points" % (len(lib), npoints) in r.stdout, r.stdout)
    except Exception:
        site.failed = True
        raise
    finally:
        site.close()


def served(trace, device):
    """{point: [values the sim served, oldest first]} from the sim's --trace."""
    out = {}
    try:
        with open(trace, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("device") != device or rec.get("fault"):
                    continue
                for k, v in rec.get("values", {}).items():
                    out.setdefault(k, []).append(v)
    except OSError:
        pass
    return out


def test_served_and_read_back():
    site = Site("profiles-sim")
    try:
        port = free_port()
        cfg, lib = all_profiles_config(site, port)
        trace = os.path.join(site.dir, "trace.jsonl")
        # noon: the inverters produce, so their powers and energies are not zero
        site.start_sim(["--config", cfg, "--trace", trace, "--seed", "11", "--start", "12:00"])
        probe = os.path.join(harness.BIN, "sluicectl")
        blind = {}
        for prof in sorted(lib):
            _, _, points = lib[prof]
            r = site.run([probe, "probe", "--config", cfg, "--json", prof], timeout=60)
            check(r.returncode == 0, "%s: rc %d\n%s%s" % (prof, r.returncode, r.stdout, r.stderr))
            got = {p["name"]: p for p in json.loads(r.stdout)["points"]}
            check(sorted(got) == sorted(points),
                  "%s: probe read %s, the profile has %s" % (prof, sorted(got), sorted(points)))
            for pname, pt in points.items():
                p = got[pname]
                check("error" not in p and p.get("value") is not None, "%s.%s: %s" % (prof, pname, p))
                check(p["type"] == pt["type"], "%s.%s: %s" % (prof, pname, p))
                check(p["address"] == whole(pt["address"]), "%s.%s: %s" % (prof, pname, p))
                want = decode(pt, p["raw"])
                check(close(p["value"], want, tolerance(pt)),
                      "%s.%s: probe says %r, registers %s decode to %r under the profile"
                      % (prof, pname, p["value"], p["raw"], want))
                if WIDTH[pt["type"]] > 1:
                    blind.setdefault(prof, []).append(order_matters(pt, p["raw"]))
                # the value is one the sim served; its trace line is written after
                # the reply has gone, so wait for it, bounded
                try:
                    harness.wait_for(lambda: any(close(p["value"], v, tolerance(pt))
                                                 for v in served(trace, prof).get(pname, [])[-4:]),
                                     5, "the sim's trace of %s.%s" % (prof, pname))
                except AssertionError:
                    raise AssertionError("%s.%s: probe read %r, the sim served %r"
                                         % (prof, pname, p["value"],
                                            served(trace, prof).get(pname, [])[-4:]))
        # a multi-register reading proves its word order only when the two orders
        # give different values: every profile with such points must have some
        for prof, seen in sorted(blind.items()):
            check(any(seen), "%s: no multi-register point whose reading depends on the "
                             "word order (all zero or symmetric): the order went untested" % prof)
        print("    %d profiles read back through probe; %d multi-register points, %d of them "
              "order-sensitive" % (len(lib), sum(len(s) for s in blind.values()),
                                   sum(sum(s) for s in blind.values())))
    except Exception:
        site.failed = True
        raise
    finally:
        site.close()


def test_example_profiles_exist():
    shipped = set(library())
    confdir = os.path.join(harness.TOP, "config")
    named = 0
    for fn in sorted(os.listdir(confdir)):
        if not fn.endswith(".yaml"):
            continue
        with open(os.path.join(confdir, fn), encoding="utf-8") as f:
            for n, ln in enumerate(f, start=1):
                m = re.match(r"^\s*(?:-\s*)?profile:\s*([A-Za-z0-9_-]+)", ln)
                if not m:
                    continue
                named += 1
                check(m.group(1) == "sunspec" or m.group(1) in shipped,
                      "config/%s:%d names profile %s, which is not shipped" % (fn, n, m.group(1)))
    check(named > 0, "config/*.yaml names no profile")


if __name__ == "__main__":
    sys.exit(harness.run_tests([test_library, test_check_config, test_served_and_read_back,
                                test_example_profiles_exist]))
