#!/usr/bin/env python3
"""sluice-sim's injected faults, seen through `sluicectl probe` and through sluiced.

- --exception UNIT:TABLE:ADDR-ADDR: a read or write touching the range gets exception 2
  ("illegal data address"), one beside it is answered;
- --bad-crc UNIT:PERCENT: "CRC error" (RTU over TCP and on a socat pty pair); refused for
  a unit served over Modbus TCP only; a 50 % share hits the same replies under the same
  --seed;
- --wrong-unit UNIT:PERCENT: the reply "came from unit" another (Modbus TCP and RTU);
- --slow UNIT:MS: a probe with a shorter timeout gets "timeout", one with a longer
  timeout waits about MS; meanwhile another unit of the same sim answers at once (the
  sim's one thread does not sleep);
- with sluiced: a device with points on both sides of an --exception range reports the
  failing point in `errors` while the others keep values (the merged read is split); a
  --slow device whose delay exceeds its bus timeout reports "timeout" while a healthy
  device on another bus keeps its interval;
- sluice-sim exits promptly on SIGTERM after the socat peer of its --rtu pty is gone;
- --garbage, --short, --silent UNIT:PERCENT over Modbus TCP, RTU over TCP and a pty pair:
  never a reply a master could take (checked on the raw bytes: no header and PDU that
  fit the request, no RTU prefix whose CRC checks out), the kinds the help promises
  (Modbus TCP noise after a matching header and with a header of noise; a header that
  promises more than is sent and an honest one around a PDU too short for its byte
  count; RTU frames cut before their end), the same bytes again under the same --seed;
- with sluiced, a site of faulted devices over Modbus TCP (each on its own bus: one
  healthy, one each with garbage, short replies, wrong unit ids and exceptions at 40 %,
  one that never answers), and two serial lines (a pty pair, and RTU over TCP) each with
  a healthy unit beside garbage, short and silent ones: sluiced keeps running and stops
  cleanly on SIGTERM; the healthy devices keep their schedule; every value published is
  one the sim served in a reply that went out intact (its --trace marks the others); the
  silent device goes offline with a comms alert; each faulted device's failures and last
  error are in health and `sluicectl status --json`; no seq is missing at the subscriber.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Site, config_yaml, free_port, payloads, telemetry, wait_for  # noqa: E402

PROFILE = "flowmeter-generic"  # flow 0-1, velocity 2-3, total 4-7, pressure 8-9, alarm 10


def profiles_dir():
    return os.path.join(harness.TOP, "config", "devices")


def probe(site, *args, timeout=30):
    return site.run([os.path.join(harness.BIN, "sluicectl"), "probe"] + list(args),
                    timeout=timeout)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def show(r):
    return "rc %d: %s %s" % (r.returncode, r.stdout, r.stderr)


def sim_args_units(transport, where):
    return [transport, where,
            "-d", "1:" + PROFILE, "-d", "2:" + PROFILE, "-d", "3:" + PROFILE,
            "-d", "4:" + PROFILE,
            "--profile-path", profiles_dir(),
            "--exception", "1:holding:8-9", "--bad-crc", "2:100", "--wrong-unit", "3:100",
            "--slow", "4:1500", "--seed", "5"]


def check_exception(site, target):
    r = probe(site, *target, "--unit", "1", "--table", "holding", "--address", "8")
    check(r.returncode == 1 and "illegal data address" in r.stdout, show(r))
    # a read that only touches the range's end, from below
    r = probe(site, *target, "--unit", "1", "--table", "holding", "--address", "6",
              "--count", "3")
    check(r.returncode == 1 and "illegal data address" in r.stdout, show(r))
    # beside the range: answered
    for addr in ("4", "10"):
        r = probe(site, *target, "--unit", "1", "--table", "holding", "--address", addr)
        check(r.returncode == 0, show(r))


def check_wrong_unit(site, target):
    r = probe(site, *target, "--unit", "3", "--table", "holding", "--address", "0")
    check(r.returncode == 1 and "from unit 4" in r.stdout, show(r))


def check_bad_crc(site, target):
    r = probe(site, *target, "--unit", "2", "--table", "holding", "--address", "0")
    check(r.returncode == 1 and "CRC error" in r.stdout, show(r))


def check_slow(site, target):
    t0 = time.monotonic()
    r = probe(site, *target, "--unit", "4", "--table", "holding", "--address", "0",
              "--timeout", "400")
    took = time.monotonic() - t0
    check(r.returncode == 1 and "timeout" in r.stdout, show(r))
    check(took < 1.3, "a 400 ms timeout took %.1fs" % took)

    # a patient probe gets the slow answer; another unit answers at once meanwhile
    argv = [os.path.join(harness.BIN, "sluicectl"), "probe"] + list(target) + [
        "--unit", "4", "--table", "holding", "--address", "0", "--timeout", "4000"]
    t0 = time.monotonic()
    slow = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.2)
        t1 = time.monotonic()
        r = probe(site, *target, "--unit", "1", "--table", "holding", "--address", "0")
        fast = time.monotonic() - t1
        check(r.returncode == 0, show(r))
        check(fast < 0.5, "unit 1 took %.2fs while unit 4 was slow" % fast)
        out, err = slow.communicate(timeout=10)
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait(5)
    took = time.monotonic() - t0
    check(slow.returncode == 0, "slow probe: rc %d: %s %s" % (slow.returncode, out, err))
    check(1.4 <= took < 3.0, "the slow reply took %.2fs, not about 1.5s" % took)


def test_probe_rtu_over_tcp():
    with Site("faults-rtutcp") as site:
        port = free_port()
        site.start_sim(sim_args_units("--rtu-tcp", "127.0.0.1:%d" % port))
        target = ["--rtu-tcp", "127.0.0.1:%d" % port]
        check_exception(site, target)
        check_bad_crc(site, target)
        check_wrong_unit(site, target)
        check_slow(site, target)
        rc = site.stop("sim")
        check(rc == 0, "sim exit status %s" % rc)


def test_probe_tcp():
    with Site("faults-tcp") as site:
        port = free_port()
        args = sim_args_units("--listen", "127.0.0.1:%d" % port)
        # Modbus TCP has no CRC: --bad-crc on a TCP-only unit is refused, clearly
        r = site.run([os.path.join(harness.BIN, "sluice-sim")] + args, timeout=10)
        check(r.returncode == 2 and "no CRC" in r.stderr and "--bad-crc 2:100" in r.stderr,
              show(r))
        i = args.index("--bad-crc")
        del args[i:i + 2]
        site.start_sim(args)
        target = ["--tcp", "127.0.0.1:%d" % port]
        check_exception(site, target)
        check_wrong_unit(site, target)
        check_slow(site, target)
        # unit 2 has no fault here: answered
        r = probe(site, *target, "--unit", "2", "--table", "holding", "--address", "0")
        check(r.returncode == 0, show(r))


def test_probe_rtu_serial_and_sigterm():
    with Site("faults-rtu") as site:
        tty_sim, tty_probe = site.start_pty_pair()
        site.start_sim(sim_args_units("--rtu", tty_sim))
        target = ["--rtu", tty_probe, "--baud", "9600"]
        check_exception(site, target)
        check_bad_crc(site, target)
        check_wrong_unit(site, target)

        # the socat peer goes away: the sim still stops at once on SIGTERM
        site.stop("socat")
        sim = site.procs["sim"]
        time.sleep(0.5)
        check(sim.alive(), "the sim exited when its pty peer went:\n" + sim.text())
        t0 = time.monotonic()
        sim.send(signal.SIGTERM)
        wait_for(lambda: not sim.alive(), 3, "sluice-sim to stop on SIGTERM")
        check(time.monotonic() - t0 < 2, "SIGTERM took %.1fs" % (time.monotonic() - t0))
        rc = site.stop("sim")
        check(rc == 0, "sim exit status %s:\n%s" % (rc, sim.text()))


def crc_pattern(site, seed, n=16):
    port = free_port()
    site.start_sim(["--rtu-tcp", "127.0.0.1:%d" % port, "-d", "1:" + PROFILE,
                    "--profile-path", profiles_dir(), "--bad-crc", "1:50",
                    "--seed", str(seed)], name="sim%d" % seed)
    pat = ""
    for _ in range(n):
        r = probe(site, "--rtu-tcp", "127.0.0.1:%d" % port, "--unit", "1", "--table",
                  "holding", "--address", "10")
        check(r.returncode == 0 or "CRC error" in r.stdout, show(r))
        pat += "." if r.returncode == 0 else "C"
    site.stop("sim%d" % seed)
    return pat


def test_bad_crc_share_follows_seed():
    with Site("faults-seed") as site:
        a = crc_pattern(site, 21)
        b = crc_pattern(site, 21)
        check(a == b, "same seed, different replies hit: %s vs %s" % (a, b))
        check(3 <= a.count("C") <= 13, "a 50 %% share hit %s" % a)
        # usage errors name the option and what is wrong
        for bad, words in ((["--slow", "1"], "UNIT:MS"),
                           (["--exception", "1:register:4"], "holding, input"),
                           (["--exception", "1:holding:9-4"], "not above"),
                           (["--wrong-unit", "1:150"], "0..100"),
                           (["--slow", "7:100"], "no unit 7"),
                           (["--garbage", "1:101"], "0..100"),
                           (["--short", "1"], "UNIT:PERCENT"),
                           (["--silent", "x:50"], "unit id"),
                           (["--exception", "1:holding:4-9:150"], "percentage"),
                           (["--exception", "1:holding:4:-5"], "percentage")):
            r = site.run([os.path.join(harness.BIN, "sluice-sim"), "--rtu-tcp",
                          "127.0.0.1:%d" % free_port(), "-d", "1:" + PROFILE,
                          "--profile-path", profiles_dir()] + bad, timeout=10)
            check(r.returncode == 2 and words in r.stderr and bad[0] in r.stderr,
                  "%r: %s" % (bad, show(r)))


# --- garbage, short, silent: the bytes on the wire -----------------------------------

NREGS = 11  # holding 0..10: every point of the profile, as sluiced reads it merged


def crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu_frame(unit, pdu):
    body = bytes([unit]) + pdu
    c = crc16(body)
    return body + bytes([c & 0xFF, c >> 8])


def read_pdu():
    return bytes([3, 0, 0, 0, NREGS])


def exchange(port, req, first=3.0, quiet=0.03):
    """Send req on a fresh connection; every byte that comes back within `first` seconds
    and then until the peer has been quiet for `quiet` seconds (or closes). The sim
    sends a reply, whole or faulted, in one write, so on loopback it comes in one piece."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(req)
        s.settimeout(first)
        data = b""
        try:
            while True:
                d = s.recv(512)
                if not d:
                    break
                data += d
                s.settimeout(quiet)
        except socket.timeout:
            pass
        return data


def tcp_replies(port, unit, n, tid0=100, first=3.0):
    out = []
    for i in range(n):
        tid = tid0 + i
        pdu = read_pdu()
        req = tid.to_bytes(2, "big") + b"\0\0" + (len(pdu) + 1).to_bytes(2, "big") + \
            bytes([unit]) + pdu
        out.append((tid, exchange(port, req, first)))
    return out


def rtu_replies(port, unit, n, first=3.0):
    return [exchange(port, rtu_frame(unit, read_pdu()), first) for _ in range(n)]


def tcp_kind(tid, unit, data):
    """How a Modbus TCP master sees data sent in reply to a read of NREGS registers:
    'ok' (it would take it), 'header' (not the header of this reply), 'promise' (the
    header promises more than came), 'pdu' (framed, but a PDU that does not fit)."""
    if len(data) < 7:
        return "promise" if data else "none"
    rtid = int.from_bytes(data[0:2], "big")
    proto = int.from_bytes(data[2:4], "big")
    length = int.from_bytes(data[4:6], "big")
    if rtid != tid or proto != 0 or data[6] != unit or not 2 <= length <= 254:
        return "header"
    pdu = data[7:]
    if len(pdu) < length - 1:
        return "promise"
    pdu = pdu[:length - 1]
    if len(pdu) == 2 + 2 * NREGS and pdu[0] == 3 and pdu[1] == 2 * NREGS:
        return "ok"
    if len(pdu) == 2 and pdu[0] == 0x83 and pdu[1] != 0:
        return "ok"  # an exception is an answer too
    return "pdu"


def rtu_checks_out(data):
    """Does any prefix of data (4 bytes or more) end in a valid CRC?"""
    return any(crc16(data[:k - 2]) == data[k - 2] | data[k - 1] << 8
               for k in range(4, len(data) + 1))


def wire_faults_sim(site, seed, name):
    tport, rport = free_port(), free_port()
    site.start_sim(["--listen", "127.0.0.1:%d" % tport,
                    "-d", "1:" + PROFILE, "-d", "2:" + PROFILE, "-d", "3:" + PROFILE,
                    "-d", "4:" + PROFILE,
                    "--rtu-tcp", "127.0.0.1:%d" % rport,
                    "-d", "1:" + PROFILE, "-d", "2:" + PROFILE, "-d", "3:" + PROFILE,
                    "-d", "4:" + PROFILE,
                    "--profile-path", profiles_dir(),
                    "--garbage", "1:100", "--short", "2:100", "--silent", "3:100",
                    "--seed", str(seed)], name=name)
    return tport, rport


def test_wire_garbage_short_silent():
    with Site("faults-wire") as site:
        tport, rport = wire_faults_sim(site, 31, "sim")
        full = 3 + 2 * NREGS + 2  # the RTU reply to a read of NREGS registers

        # Modbus TCP noise: never a reply a master takes; after a matching header, and
        # with a header of noise
        garbage = tcp_replies(tport, 1, 16)
        kinds = [tcp_kind(tid, 1, d) for tid, d in garbage]
        check("ok" not in kinds and "none" not in kinds, kinds)
        check(kinds.count("pdu") >= 3 and kinds.count("header") >= 2, kinds)
        # noise of a plausible length: half to one and a half times the reply's PDU
        for (tid, d), k in zip(garbage, kinds):
            check(7 + NREGS <= len(d) <= 7 + 3 * (2 + 2 * NREGS) // 2 + 1, (k, d.hex()))

        # Modbus TCP cut short: a header that promises more, and an honest one around a
        # PDU too short for its byte count
        short = tcp_replies(tport, 2, 16)
        kinds = [tcp_kind(tid, 2, d) for tid, d in short]
        check(set(kinds) == {"promise", "pdu"}, kinds)
        for (tid, d), k in zip(short, kinds):
            # a prefix of the reply: its function code, its byte count, less data
            pdu = d[7:]
            check(len(pdu) < 2 + 2 * NREGS and pdu[:2] == b"\x03\x16"[:len(pdu)], d.hex())
            check(k == "promise" or len(pdu) >= 1, d.hex())

        # silent: nothing at all, and the other units of the address answer meanwhile
        check([d for _, d in tcp_replies(tport, 3, 3, first=0.3)] == [b""] * 3, "silent")
        check(all(tcp_kind(tid, 4, d) == "ok" for tid, d in tcp_replies(tport, 4, 3)),
              "unit 4")

        # RTU noise: no prefix checks out; half the time after the right unit and function
        rg = rtu_replies(rport, 1, 16)
        for d in rg:
            check(d and not rtu_checks_out(d), d.hex())
            check(full // 2 <= len(d) <= full + full // 2, d.hex())
        led = sum(1 for d in rg if d[:2] == b"\x01\x03")
        check(3 <= led <= 13, "%d of 16 noise replies began with unit and function" % led)

        # RTU cut short: a prefix of a reply, the CRC never complete
        for d in rtu_replies(rport, 2, 12):
            check(1 <= len(d) < full and d[0] == 2 and (len(d) < 2 or d[1] == 3), d.hex())
        check(rtu_replies(rport, 3, 2, first=0.3) == [b""] * 2, "silent over RTU")
        healthy = rtu_replies(rport, 4, 2)
        check(all(len(d) == full and crc16(d[:-2]) == d[-2] | d[-1] << 8 for d in healthy),
              [d.hex() for d in healthy])

        # the same seed, the same noise
        again_t, again_r = tcp_replies(tport, 1, 16), rtu_replies(rport, 1, 16)
        site.stop("sim")
        tport2, rport2 = wire_faults_sim(site, 31, "sim2")
        check(tcp_replies(tport2, 1, 16) == garbage, "TCP noise differs under the same seed")
        check(rtu_replies(rport2, 1, 16) == rg, "RTU noise differs under the same seed")
        check(again_t != garbage and again_r != rg, "the noise repeats itself")
        sim = site.procs["sim2"]
        rc = site.stop("sim2")
        check(rc == 0, "sim exit status %s" % rc)
        check("replies changed or withheld by a fault" in sim.text(), sim.text())

        # over a serial line, as a master sees them (sluicectl probe): never a value,
        # always the fault's failure
        tty_sim, tty_probe = site.start_pty_pair()
        site.start_sim(["--rtu", tty_sim, "-d", "1:" + PROFILE, "-d", "2:" + PROFILE,
                        "-d", "3:" + PROFILE, "-d", "4:" + PROFILE,
                        "--profile-path", profiles_dir(), "--garbage", "1:100",
                        "--short", "2:100", "--silent", "3:100", "--seed", "5"],
                       name="simtty")
        target = ["--rtu", tty_probe, "--baud", "9600", "--timeout", "200"]
        for unit, words in ((1, ("malformed reply", "timeout")), (2, ("timeout",)),
                            (3, ("timeout",))):
            for _ in range(3):
                r = probe(site, *target, "--unit", str(unit), "--table", "holding",
                          "--address", "0")
                check(r.returncode == 1 and any(w in r.stdout for w in words), show(r))
        r = probe(site, *target, "--unit", "4", "--table", "holding", "--address", "0")
        check(r.returncode == 0, show(r))


INTERVAL_MS = 1000
TIMEOUT_MS = 300


def test_daemon_exception_split_and_slow():
    with Site("faults-daemon") as site:
        site.start_broker()
        pa, pb, pc = free_port(), free_port(), free_port()
        buses = "".join(
            "  - id: %s\n"
            "    tcp: { host: 127.0.0.1, port: %d }\n"
            "    timeout: %dms\n" % (b, p, TIMEOUT_MS)
            for b, p in (("plc-a", pa), ("plc-b", pb), ("plc-c", pc)))
        devices = (
            "  - id: meter\n"
            "    bus: plc-a\n"
            "    unit_id: 1\n"
            "    profile: %s\n"
            "    interval: 1s\n"
            "  - id: laggard\n"
            "    bus: plc-b\n"
            "    unit_id: 1\n"
            "    profile: %s\n"
            "    interval: 1s\n"
            "  - id: healthy\n"
            "    bus: plc-c\n"
            "    unit_id: 1\n"
            "    profile: %s\n"
            "    interval: 1s\n" % (PROFILE, PROFILE, PROFILE)
        )
        cfg = site.write("sluice.yaml", config_yaml(site, "gw1", site.broker_port, buses,
                                                    devices))
        site.copy_profiles(PROFILE)
        # a device id as the target: pressure (8-9) lies between total and alarm
        site.start_sim(["--config", cfg, "--exception", "meter:holding:8-9",
                        "--slow", "laggard:%d" % (TIMEOUT_MS + 700), "--seed", "3"])
        site.start_subscriber("it/gw1/#")
        d = site.start_daemon(cfg)
        # the laggard goes offline after 3 failed polls and is then retried slower
        for dev, n in (("meter", 6), ("healthy", 6), ("laggard", 3)):
            wait_for(lambda dev=dev, n=n: len(telemetry(site, dev)) >= n, 40,
                     "telemetry of " + dev)

        # the exception: pressure fails, every other point keeps its value
        msgs = telemetry(site, "meter")
        last = msgs[-1]
        check(set(last.get("errors", {})) == {"pressure"}, last)
        check(set(last["values"]) == {"flow", "velocity", "total", "alarm"}, last)
        check("illegal" in last["errors"]["pressure"], last)

        # the slow device times out; the healthy one on another bus keeps its interval
        for msg in telemetry(site, "laggard")[-3:]:
            check(msg["values"] == {} and set(msg["errors"].values()) == {"timeout"}, msg)
        ts = [m["ts"] for m in telemetry(site, "healthy")]
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        check(max(gaps) <= INTERVAL_MS + TIMEOUT_MS + 200, "healthy gaps %s" % gaps)
        check(min(gaps) >= INTERVAL_MS - 100, "healthy gaps %s" % gaps)
        for msg in telemetry(site, "healthy"):
            check("errors" not in msg, msg)

        rc = site.stop("sluiced")
        check(rc == 0, "sluiced exit status %s:\n%s" % (rc, d.text()))
        rc = site.stop("sim")
        check(rc == 0, "sim exit status %s" % rc)


# --- sluiced against a site of faulted devices ----------------------------------------

def device_yaml(dev, bus, unit, interval, offline_after):
    return ("  - id: %s\n"
            "    bus: %s\n"
            "    unit_id: %d\n"
            "    profile: %s\n"
            "    interval: %s\n"
            "    offline_after: %d\n" % (dev, bus, unit, PROFILE, interval, offline_after))


def load_trace_by_device(path):
    """{device: {point: set of values}} of the reads whose replies went out intact, and
    the same of the reads a fault hit (their values must never be published)."""
    intact, faulted = {}, {}
    for rec in harness.trace_records(path):
        into = faulted if rec.get("fault") else intact
        for k, v in rec["values"].items():
            into.setdefault(rec["device"], {}).setdefault(k, set()).add(v)
    return intact, faulted


def check_values_served(site, trace, devices):
    """Every value published for these devices equals one the sim served in a reply
    that went out intact. Returns how many values were checked, by device."""
    intact, faulted = load_trace_by_device(trace)
    counts = {}
    for dev in devices:
        n = 0
        for msg in payloads(site, "telemetry/" + dev):
            for k, v in msg["values"].items():
                ok = v in intact.get(dev, {}).get(k, set())
                why = ("only in a faulted reply"
                       if v in faulted.get(dev, {}).get(k, set()) else "never served")
                check(ok, "%s.%s = %r published, %s (seq %s)" % (dev, k, v, why, msg["seq"]))
                n += 1
        counts[dev] = n
    return counts


def check_errors(site, dev, allowed):
    """The texts in the `errors` of dev's readings are among allowed; returns how many
    readings had errors, how many had none, and the texts seen."""
    bad = good = 0
    seen = set()
    for msg in payloads(site, "telemetry/" + dev):
        errs = set(msg.get("errors", {}).values())
        check(errs <= set(allowed), "%s: errors %s, not among %s" % (dev, errs, allowed))
        seen |= errs
        if errs:
            bad += 1
        else:
            good += 1
    return bad, good, seen


def check_gaps(site, dev, interval_ms, bound_ms, min_ms):
    """dev's polls (their ts: when each began) are never more than bound_ms apart nor
    less than min_ms, and keep to the grid of their interval: none lost, none added."""
    ts = [m["ts"] for m in payloads(site, "telemetry/" + dev)]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    check(len(gaps) >= 5 and max(gaps) <= bound_ms,
          "%s: gaps %s exceed %d ms" % (dev, gaps, bound_ms))
    check(min(gaps) >= min_ms, "%s: gaps %s, below %d ms" % (dev, gaps, min_ms))
    mean = (ts[-1] - ts[0]) / len(gaps)
    check(abs(mean - interval_ms) <= 100, "%s: %.0f ms apart on average: %s" % (dev, mean, gaps))
    return max(gaps)


def check_seqs(site):
    """Every seq from 1 to the highest seen arrived: nothing missing at the subscriber."""
    seqs = {p["seq"] for t, p in site.messages() if isinstance(p, dict) and "seq" in p}
    check(seqs, "no message with a seq")
    missing = sorted(set(range(1, max(seqs) + 1)) - seqs)
    check(not missing, "seqs missing at the subscriber: %s" % missing[:20])
    return max(seqs)


def ctl_status(site, cfg):
    r = site.run([os.path.join(harness.BIN, "sluicectl"), "-c", cfg, "--json", "status"])
    check(r.returncode == 0, show(r))
    return {d["id"]: d for d in json.loads(r.stdout)["devices"]}


def wait_status(site, cfg, expect):
    """Wait until `sluicectl status --json` shows each device as expect[id] says:
    (online or not, the texts its last error may be; none: no failure at all). The
    daemon rewrites its status snapshot every 5 s."""
    def problems():
        st = ctl_status(site, cfg)
        out = []
        for dev, (online, allowed) in expect.items():
            s = st[dev]
            if (s["state"] == "online") != online:
                out.append(s)
            elif not allowed and (s["polls_failed"] != 0 or "last_error" in s):
                out.append(s)
            elif allowed and not (s["polls_failed"] > 0 and s.get("last_error") in allowed):
                out.append(s)
        return out
    last = []

    def ok():
        last[:] = problems()
        return not last
    try:
        wait_for(ok, 12, "sluicectl status to show every device's failures", interval=0.5)
    except AssertionError as e:
        raise AssertionError("%s: %s" % (e, last))


def check_offline(site, dev):
    """dev was published offline with a timeout, and its comms alert fired."""
    off = [p for p in payloads(site, "device/" + dev) if p["state"] == "offline"]
    check(off and off[0].get("last_error") == "timeout",
          "%s: %s" % (dev, payloads(site, "device/" + dev)))
    alerts = payloads(site, "alert/comms-%s/offline" % dev)
    check(any(a["state"] == "firing" for a in alerts), "%s: comms alert %s" % (dev, alerts))


def stop_daemon_within(site, d, seconds=5):
    """SIGTERM: sluiced exits 0 within `seconds`, with no sanitizer report."""
    t0 = time.monotonic()
    d.send(signal.SIGTERM)
    wait_for(lambda: not d.alive(), seconds, "sluiced to exit on SIGTERM")
    took = time.monotonic() - t0
    rc = site.stop("sluiced")
    check(rc == 0, "sluiced exit status %s:\n%s" % (rc, d.text()))
    check("AddressSanitizer" not in d.text() and "runtime error" not in d.text(), d.text())
    return took


# TCP: every device on a bus (a port of the one sim) of its own, as Modbus TCP devices
# each have an address: a faulted device's connection is not the healthy one's
TCP_INTERVAL_MS = 500
TCP_TIMEOUT_MS = 300
TCP_FAULTS = (
    # device, sim options, the errors its readings may carry
    ("healthy", [], ()),
    ("noisy", ["--garbage", "noisy:40"], ("malformed reply",)),
    # a header promising more than is sent waits for the timeout; a PDU too short is
    # malformed at once
    ("clipped", ["--short", "clipped:40"], ("malformed reply", "timeout")),
    ("misaddressed", ["--wrong-unit", "misaddressed:40"], ("reply from another unit",)),
    ("refusing", ["--exception", "refusing:holding:0-10:40"], ("illegal data address",)),
    ("mute", ["--silent", "mute:100"], ("timeout",)),
)


def test_daemon_tcp_faults():
    with Site("faults-tcp-daemon") as site:
        site.start_broker()
        site.copy_profiles(PROFILE)
        buses = devices = ""
        for dev, _, _ in TCP_FAULTS:
            buses += ("  - id: plc-%s\n"
                      "    tcp: { host: 127.0.0.1, port: %d }\n"
                      "    timeout: %dms\n" % (dev, free_port(), TCP_TIMEOUT_MS))
            # the faulted ones fail 40 % of polls: offline only after a long run of them
            devices += device_yaml(dev, "plc-" + dev, 1, "%dms" % TCP_INTERVAL_MS,
                                   3 if dev == "mute" else 20)
        cfg = site.write("sluice.yaml", config_yaml(site, "gw1", site.broker_port, buses,
                                                    devices))
        trace = os.path.join(site.dir, "trace.jsonl")
        args = ["--config", cfg, "--trace", trace, "--seed", "17"]
        for _, opts, _ in TCP_FAULTS:
            args += opts
        site.start_sim(args)
        site.start_subscriber("it/gw1/#")
        d = site.start_daemon(cfg)

        def enough():
            for dev, _, allowed in TCP_FAULTS:
                msgs = payloads(site, "telemetry/" + dev)
                if len(msgs) < 20 and dev != "mute":
                    return False
                if dev not in ("healthy", "mute") and (
                        sum(1 for m in msgs if m.get("errors")) < 4 or
                        sum(1 for m in msgs if m["values"]) < 4):
                    return False
            return any(p["state"] == "offline" for p in payloads(site, "device/mute"))
        wait_for(enough, 40, "readings, failures and successes of every device")
        check(d.alive(), "sluiced exited:\n" + d.text())

        # health and sluicectl status show each faulted device's failures and last error
        def health_seen():
            h = payloads(site, "health")
            return h and all(h[-1]["devices"].get(dev, {}).get("polls_failed", 0) > 0
                             for dev, _, _ in TCP_FAULTS[1:]) and h[-1]
        health = wait_for(health_seen, 15, "a health message counting every fault")
        check(health["devices"]["healthy"]["polls_failed"] == 0, health)
        check(not health["devices"]["mute"]["online"], health)
        wait_status(site, cfg, {dev: (dev != "mute", allowed) for dev, _, allowed in TCP_FAULTS})
        check(ctl_status(site, cfg)["mute"]["polls_ok"] == 0, "mute answered")

        took = stop_daemon_within(site, d)
        rc = site.stop("sim")
        check(rc == 0, "sim exit status %s" % rc)

        # no bad value accepted; each device's failures are the fault's
        counts = check_values_served(site, trace, [dev for dev, _, _ in TCP_FAULTS])
        for dev, _, allowed in TCP_FAULTS:
            bad, good, seen = check_errors(site, dev, allowed)
            if dev == "mute":
                check(good == 0 and bad >= 3, (bad, good))
            elif dev != "healthy":
                check(counts[dev] >= 4 * 5, "%s: only %d values checked" % (dev, counts[dev]))
        # both kinds of short reply came (which replies a share hits follows --seed)
        seen_short = check_errors(site, "clipped", TCP_FAULTS[2][2])[2]
        check(seen_short == {"malformed reply", "timeout"}, seen_short)
        check_offline(site, "mute")
        # the healthy device keeps its schedule: each poll starts within its interval plus
        # its timeout of the last
        worst = check_gaps(site, "healthy", TCP_INTERVAL_MS, TCP_INTERVAL_MS + TCP_TIMEOUT_MS,
                           TCP_INTERVAL_MS - 100)
        last = check_seqs(site)
        sys.stdout.write("  %d seqs, healthy max gap %d ms, values checked %s, SIGTERM %.1fs\n"
                         % (last, worst, counts, took))


# RTU: one serial line (a pty pair, read through libmodbus) and one RTU-over-TCP link (a
# DTU, framed by sluiced itself), each a healthy unit beside noisy, clipped and mute ones
RTU_INTERVAL_MS = 1000
RTU_TIMEOUT_MS = 300
RTU_GUARD_MS = 5
RTU_BAUD = 9600
RTU_UNITS = (
    # suffix, unit, fault, the errors its readings may carry
    ("healthy", 1, None, ()),
    # noise: a CRC that fails, a function code no reply has, or a byte count promising
    # more than comes (then the reply's deadline passes); libmodbus may also see the
    # noise's first byte as another unit's reply
    ("noisy", 2, "--garbage", ("CRC error", "malformed reply", "timeout",
                               "reply from another unit")),
    ("clipped", 3, "--short", ("timeout",)),
    ("mute", 4, "--silent", ("timeout",)),
)


def rtu_bound_ms():
    """The most a healthy unit's poll may start late on a line it shares with the three
    faulted units: one line carries one request at a time, so when the healthy unit falls
    due each of the others may be mid-poll or due just before it, and each costs at most
    its timeout plus the transfer of its request and of the reply expected (8 + 27 bytes
    at 9600 baud, 10 bits a character: 37 ms; sluiced adds it to the timeout on serial
    lines) plus the line's guard. The gap between two polls of the healthy unit is its
    interval plus the difference of their lateness, so at most interval + that, and
    300 ms for scheduling under the sanitizers."""
    transfer = -(-(8 + 3 + 2 * NREGS + 2) * 10 * 1000 // RTU_BAUD)
    return RTU_INTERVAL_MS + 3 * (RTU_TIMEOUT_MS + transfer + RTU_GUARD_MS) + 300


def test_daemon_rtu_faults():
    with Site("faults-rtu-daemon") as site:
        site.start_broker()
        site.copy_profiles(PROFILE)
        tty_sim, tty_daemon = site.start_pty_pair()
        dtu_port = free_port()
        lines = (("tty", "rtu: { device: %s, baud: %d, parity: none }"),
                 ("dtu", "rtu_over_tcp: { host: 127.0.0.1, port: %d }" % dtu_port))
        devices = ""
        for line, _ in lines:
            for suffix, unit, _, _ in RTU_UNITS:
                devices += device_yaml("%s-%s" % (line, suffix), "line-" + line, unit,
                                       "%dms" % RTU_INTERVAL_MS, 3 if suffix == "mute" else 20)

        def cfg_for(tty):
            buses = ""
            for line, spec in lines:
                spec = spec % (tty, RTU_BAUD) if line == "tty" else spec
                buses += ("  - id: line-%s\n"
                          "    %s\n"
                          "    timeout: %dms\n"
                          "    guard: %dms\n" % (line, spec, RTU_TIMEOUT_MS, RTU_GUARD_MS))
            return config_yaml(site, "gw1", site.broker_port, buses, devices)
        cfg = site.write("sluice.yaml", cfg_for(tty_daemon))
        # the sim serves the other end of the pty pair
        sim_cfg = site.write("sim.yaml", cfg_for(tty_sim))
        trace = os.path.join(site.dir, "trace.jsonl")
        args = ["--config", sim_cfg, "--trace", trace, "--seed", "23", "--pace"]
        for line, _ in lines:
            for suffix, _, opt, _ in RTU_UNITS:
                if opt:
                    args += [opt, "%s-%s:%d" % (line, suffix, 100 if suffix == "mute" else 40)]
        site.start_sim(args)
        site.start_subscriber("it/gw1/#")
        d = site.start_daemon(cfg)
        names = ["%s-%s" % (line, suffix) for line, _ in lines for suffix, _, _, _ in RTU_UNITS]

        def enough():
            for dev in names:
                msgs = payloads(site, "telemetry/" + dev)
                if dev.endswith("-mute"):
                    if not any(p["state"] == "offline"
                               for p in payloads(site, "device/" + dev)):
                        return False
                elif len(msgs) < 14:
                    return False
                elif not dev.endswith("-healthy") and (
                        sum(1 for m in msgs if m.get("errors")) < 3 or
                        sum(1 for m in msgs if m["values"]) < 3):
                    return False
            return True
        wait_for(enough, 40, "readings, failures and successes of every unit")
        check(d.alive(), "sluiced exited:\n" + d.text())
        wait_status(site, cfg, {"%s-%s" % (line, suffix): (suffix != "mute", allowed)
                                for line, _ in lines for suffix, _, _, allowed in RTU_UNITS})

        took = stop_daemon_within(site, d)
        rc = site.stop("sim")
        check(rc == 0, "sim exit status %s" % rc)

        counts = check_values_served(site, trace, names)
        bound = rtu_bound_ms()
        worst = {}
        for line, _ in lines:
            for suffix, _, _, allowed in RTU_UNITS:
                dev = "%s-%s" % (line, suffix)
                bad, good, _ = check_errors(site, dev, allowed)
                if suffix == "mute":
                    check(good == 0 and bad >= 3, (dev, bad, good))
                    check_offline(site, dev)
                elif suffix != "healthy":
                    check(counts[dev] >= 3 * 5, "%s: only %d values" % (dev, counts[dev]))
            # a late poll is followed by one on the grid again, so closer than the
            # interval by as much as it was late
            worst[line] = check_gaps(site, line + "-healthy", RTU_INTERVAL_MS, bound,
                                     2 * RTU_INTERVAL_MS - bound)
        last = check_seqs(site)
        sys.stdout.write("  %d seqs, healthy max gaps %s (bound %d ms), values checked %s, "
                         "SIGTERM %.1fs\n" % (last, worst, bound, counts, took))


if __name__ == "__main__":
    harness.main()
