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
- sluice-sim exits promptly on SIGTERM after the socat peer of its --rtu pty is gone.
"""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Site, config_yaml, free_port, wait_for  # noqa: E402

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
    site = Site("faults-rtutcp")
    try:
        port = free_port()
        site.start_sim(sim_args_units("--rtu-tcp", "127.0.0.1:%d" % port))
        target = ["--rtu-tcp", "127.0.0.1:%d" % port]
        check_exception(site, target)
        check_bad_crc(site, target)
        check_wrong_unit(site, target)
        check_slow(site, target)
        rc = site.stop("sim")
        check(rc == 0, "sim exit status %s" % rc)
    except Exception:
        site.failed = True
        raise
    finally:
        site.close()


def test_probe_tcp():
    site = Site("faults-tcp")
    try:
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
    except Exception:
        site.failed = True
        raise
    finally:
        site.close()


def test_probe_rtu_serial_and_sigterm():
    site = Site("faults-rtu")
    try:
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
    except Exception:
        site.failed = True
        raise
    finally:
        site.close()


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
    site = Site("faults-seed")
    try:
        a = crc_pattern(site, 21)
        b = crc_pattern(site, 21)
        check(a == b, "same seed, different replies hit: %s vs %s" % (a, b))
        check(3 <= a.count("C") <= 13, "a 50 %% share hit %s" % a)
        # usage errors name the option and what is wrong
        for bad, words in ((["--slow", "1"], "UNIT:MS"),
                           (["--exception", "1:register:4"], "holding, input"),
                           (["--exception", "1:holding:9-4"], "not above"),
                           (["--wrong-unit", "1:150"], "0..100"),
                           (["--slow", "7:100"], "no unit 7")):
            r = site.run([os.path.join(harness.BIN, "sluice-sim"), "--rtu-tcp",
                          "127.0.0.1:%d" % free_port(), "-d", "1:" + PROFILE,
                          "--profile-path", profiles_dir()] + bad, timeout=10)
            check(r.returncode == 2 and words in r.stderr and bad[0] in r.stderr,
                  "%r: %s" % (bad, show(r)))
    except Exception:
        site.failed = True
        raise
    finally:
        site.close()


INTERVAL_MS = 1000
TIMEOUT_MS = 300


def telemetry(site, device):
    return [p for t, p in site.messages() if t == "it/gw1/telemetry/" + device]


def test_daemon_exception_split_and_slow():
    site = Site("faults-daemon")
    try:
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
        os.makedirs(os.path.join(site.dir, "devices"), exist_ok=True)
        src = os.path.join(profiles_dir(), PROFILE + ".yaml")
        with open(src, "rb") as f, \
                open(os.path.join(site.dir, "devices", PROFILE + ".yaml"), "wb") as g:
            g.write(f.read())
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
    except Exception:
        site.failed = True
        raise
    finally:
        site.close()


if __name__ == "__main__":
    sys.exit(harness.run_tests([test_probe_rtu_over_tcp, test_probe_tcp,
                                test_probe_rtu_serial_and_sigterm,
                                test_bad_crc_share_follows_seed,
                                test_daemon_exception_split_and_slow]))
