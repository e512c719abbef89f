#!/usr/bin/env python3
"""make soak: a site under faults for SOAK_SECONDS (default 600), then every seq accounted
for, memory and descriptors flat. docs/testing.md says what it does and how to read it.

The site (all on 127.0.0.1): 40 simulated devices polled every second — 15 flow meters
(one of them dead) and 8 SunSpec inverters (one faulted) on one Modbus TCP bus, 10
road-underpass level gauges and a warning sign on another (the sim's rain scenario, 72x
simulated time: a rain event every five minutes that takes the waterlogging alerts
through the grades and back), 6 flow meters on an RTU-over-TCP line — with Modbus
faults on some devices at a share of their replies
(wrong unit id, exceptions, slow replies, corrupt CRCs, and --garbage, --short,
--silent when this sluice-sim lists them), a mosquitto broker with persistence and a
persistent QoS 1 subscriber.

Phases, spread over the time:
  warm-up  the site running, nothing injected
  (a)      the broker restarted every 2-5 s (random) for a minute (10 % of the time when
           shorter), stopped with SIGTERM or, at a random moment mid-stream, SIGKILL
  (b)      sluiced SIGKILLed 50 times (fewer when shorter: 50 x SOAK_SECONDS / 600, at
           least 8) right after its start, mid-poll, mid-outage and mid-drain, restarted
           each time, with broker outages between
  overflow only with SOAK_BUFFER: the broker stopped until sluiced drops rows
  (c)      the rest: one sluiced, never restarted, with occasional broker outages;
           its VmRSS and open descriptors sampled every 2 s
then the broker up, the backlog drained, sluiced stopped with SIGTERM, and the checks
(storms.account, and the RSS and descriptor criteria below). Prints a table of figures;
exits 1 when any check fails.

Environment: SOAK_SECONDS (600), SLUICE_BIN (the build to test, default build/: the
plain build, whose RSS is real), SOAK_SEED (the random choices; printed), SOAK_BUFFER
(buffer.max_size, default 64MiB: a small one on purpose makes drops, which must then
equal the seqs missing exactly), SLUICE_KEEP=1 (keep the site's directory and logs).
"""

import collections
import json
import os
import random
import re
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import storms  # noqa: E402
from storms import harness  # noqa: E402

SAMPLE_EVERY = 2.0
TIME_SCALE = 72          # a rain event every 300 s, rising over 12 s, draining over 25 s

# the criteria (docs/testing.md)
RSS_SLACK_KIB = 1024     # RSS: median of the last fifth <= median of the first fifth
RSS_SLACK_SHARE = 0.05   #      + max(1 MiB, 5 %)
WARM_PAGES = 512         # 2 MiB of 4 KiB pages added: SQLite's 2000 KiB page cache is full
WARM_MIN_S = 60
WARM_MAX_SHARE = 0.7


def say(msg):
    sys.stdout.write("[soak %6.1fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


T0 = time.monotonic()


def clamp(x, lo, hi):
    return max(lo, min(hi, x))


# -- the site ---------------------------------------------------------------------------

def site_config():
    """(buses, devices, rules) YAML of the soak's site; ports are fresh."""
    buses = ("  - id: plant\n    tcp: { host: 127.0.0.1, port: %d }\n    timeout: 1s\n"
             "  - id: road\n    tcp: { host: 127.0.0.1, port: %d }\n    timeout: 1s\n"
             "  - id: dtu\n    rtu_over_tcp: { host: 127.0.0.1, port: %d }\n    timeout: 1s\n"
             % (harness.free_port(), harness.free_port(), harness.free_port()))
    dev = []
    for i in range(1, 15):
        dev.append("  - id: fm%02d\n    bus: plant\n    unit_id: %d\n"
                   "    profile: flowmeter-generic\n    interval: 1s\n" % (i, i))
    # SunSpec inverters (discovered at every start): rows of some fifty values, which
    # fill SQLite's page cache within the warm-up of phase (c)
    for i in range(1, 9):
        dev.append("  - id: inv%02d\n    bus: plant\n    unit_id: %d\n    profile: sunspec\n"
                   "    interval: 1s\n" % (i, 40 + i))
    dev.append("  - id: old-meter\n    name: 老城区 旧水表\n    bus: plant\n    unit_id: 20\n"
               "    profile: flowmeter-generic\n    interval: 1s\n    offline_after: 3\n")
    for i in range(1, 11):
        dev.append("  - id: lv%02d\n    name: 下穿道 %d 号积水点\n    bus: road\n    unit_id: %d\n"
                   "    profile: level-radar\n    interval: 1s\n" % (i, i, i))
    dev.append("  - id: sign\n    bus: road\n    unit_id: 30\n    interval: 5s\n    points:\n"
               "      red_lamp: { table: coil, address: 0, type: bool, writable: true }\n")
    for i in range(1, 7):
        dev.append("  - id: rt%02d\n    bus: dtu\n    unit_id: %d\n"
                   "    profile: flowmeter-generic\n    interval: 1s\n" % (i, i))
    rules = ["alerts:\n"]
    for i in range(1, 11):
        r = ("  - id: lv%02d-waterlogging\n    kind: waterlogging\n    point: lv%02d.level\n"
             "    levels: { blue: 0.10, yellow: 0.15, orange: 0.27, red: 0.40 }\n"
             "    hysteresis: 0.02\n" % (i, i))
        if i == 1:
            r += ("    on_fire:\n      - { severity: red, write: sign.red_lamp, value: 1 }\n"
                  "    on_resolve:\n      - { write: sign.red_lamp, value: 0 }\n")
        rules.append(r)
    # right at the simulated pressure (0.30 MPa with noise): fires and resolves all along
    rules.append("  - id: fm01-pressure\n    kind: threshold\n    point: fm01.pressure\n"
                 "    above: 0.3015\n")
    # a faulted inverter (the sim's fault scenario): fires, and stays active
    rules.append("  - id: inv02\n    kind: pv\n    inverter: inv02\n    severity: yellow\n")
    # the morning and evening peaks of the daily demand (a day is 20 minutes at 72x)
    rules.append("  - id: rt01-flow-high\n    kind: threshold\n    point: rt01.flow\n"
                 "    above: 45\n    hysteresis: 3\n    severity: orange\n")
    return buses, "".join(dev), "".join(rules)


def sim_faults(available):
    """The sim's fault options: (flag, spec) pairs. The newer kinds only when listed."""
    faults = [("--wrong-unit", "fm03:5"),
              ("--wrong-unit", "fm04:40"),   # goes offline and back now and then
              ("--exception", "fm05:holding:8-9"),
              ("--slow", "fm06:300"),
              ("--bad-crc", "rt02:10"),
              ("--wrong-unit", "rt03:5")]
    for opt, tcp, rtu in (("--garbage", "fm07", "rt04"), ("--short", "fm08", "rt05"),
                          ("--silent", "fm09", "rt06")):
        if opt in available:
            faults += [(opt, tcp + ":5"), (opt, rtu + ":5")]
    return faults


def start_sim(site, cfg, seed, faults):
    """sluice-sim for the site; a fault spec it refuses (a newer option that does not
    apply to that transport, say) is left out, and said so."""
    base = ["--config", cfg, "--time-scale", str(TIME_SCALE), "--seed", str(seed),
            "--scenario", "old-meter=dead", "--scenario", "inv02=fault"]
    for i in range(1, 11):
        base += ["--scenario", "lv%02d=rain" % i]
    faults = list(faults)
    while True:
        argv = list(base)
        for opt, spec in faults:
            argv += [opt, spec]
        try:
            site.start_sim(argv)
            return faults
        except AssertionError as e:
            text = str(e)
            bad = [f for f in faults if "%s %s" % f in text]
            if not bad:
                raise
            say("sluice-sim refused %s %s: left out (%s)"
                % (bad[0][0], bad[0][1], text.strip().splitlines()[-1][:200]))
            faults.remove(bad[0])
            site.procs.pop("sim", None)


def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def sim_figures(site):
    """(requests, unanswered by dead devices, replies changed by a fault) from the sim's
    closing log line, once stopped."""
    m = re.search(r"stopping on \w+: (\d+) requests \((\d+) left unanswered by dead devices, "
                  r"(\d+) replies [a-z ]*by a fault\)", read(os.path.join(site.dir, "sim.log")))
    return tuple(int(x) for x in m.groups()) if m else (None, None, None)


# -- phase (c): one sluiced, sampled -----------------------------------------------------

def plan_outages(rnd, lo, hi, n):
    """n broker outages [(from, to)] between lo and hi, one in each equal slot."""
    if n == 0 or hi - lo < 12:
        return []
    slot = (hi - lo) / n
    out = []
    for k in range(n):
        length = rnd.uniform(0.3, 0.6) * slot
        start = lo + k * slot + rnd.uniform(0, slot - length)
        out.append((start, start + length))
    return out


def steady(storm, seconds, rnd, samples, fdinfo):
    """One sluiced, not restarted, for `seconds`, with broker outages in the middle;
    samples (t, rss KiB, fds, settled) every SAMPLE_EVERY s into `samples`.

    Warm-up ends once sluiced has added WARM_PAGES pages to its database, and not before
    WARM_MIN_S: SQLite's page cache (2000 KiB by default) grows with the pages written
    until it is full, then stays — a bounded cache, which a time alone would take for a
    leak at a slow write rate. If that has not happened by WARM_MAX_SHARE of the phase,
    warm-up ends there and RSS is not judged. The outages are then placed between the
    first and the last fifth of what remains (and the reconnect after them), which the
    criteria compare. fdinfo gets what the descriptors are ("start", "end": {target:
    count}) for a report. Returns (warm-up end, whether the page cache had filled,
    outages)."""
    if not storm.broker_up:
        storm.start_broker()
    d = storm.daemon
    pages0 = storms.db_pages(storm.site) or 0
    say("phase (c): %ds with one sluiced (pid %d), sampled every %.0f s"
        % (seconds, d.pid, SAMPLE_EVERY))
    t0 = time.monotonic()
    next_sample = 0.0
    next_report = 30.0
    warm = None
    filled = False
    outages = []
    pending = []
    down_until = None
    connects_at = storm.connects()
    settled_from = 0.0       # connected since (relative), or None while not connected
    while True:
        t = time.monotonic() - t0
        if t >= seconds:
            break
        storm.check_daemon("in phase (c)")
        if d is not storm.daemon:
            raise AssertionError("sluiced was restarted in phase (c)")
        if pending and down_until is None and t >= pending[0][0]:
            down_until = pending.pop(0)[1]
            storm.stop_broker("SIGTERM")
            settled_from = None
            say("phase (c): broker stopped for %ds" % (down_until - t))
        if down_until is not None and t >= down_until:
            down_until = None
            connects_at = storm.connects()
            storm.start_broker()
        if settled_from is None and down_until is None and storm.connects() > connects_at:
            settled_from = t
        if t >= next_sample:
            s = storms.proc_sample(d.pid)
            if s:
                # settled: connected for 3 s, the reconnect's descriptors are in place
                ok = settled_from is not None and t - settled_from >= 3
                samples.append((t, s[0], s[1], ok))
                if ok and warm is not None:
                    # what they are, once after warm-up and at the last settled sample
                    fdinfo.setdefault("start", storms.proc_fd_targets(d.pid))
                    fdinfo["end"] = storms.proc_fd_targets(d.pid)
            next_sample += SAMPLE_EVERY
            if warm is None:
                added = (storms.db_pages(storm.site) or 0) - pages0
                filled = added >= WARM_PAGES
                if (filled and t >= WARM_MIN_S) or t >= WARM_MAX_SHARE * seconds:
                    warm = t
                    span = seconds - warm
                    outages = plan_outages(rnd, warm + span / 5 + 2, seconds - span / 5 - 40,
                                           max(1, int(seconds // 200)))
                    pending = list(outages)
                    say("phase (c): warm-up over at %ds (%d pages added to the database%s); "
                        "broker outages at %s" % (warm, added, "" if filled else
                                                  ": too few to fill the page cache",
                                                  ", ".join("%d-%ds" % o for o in outages)
                                                  or "none"))
        if t >= next_report:
            rss, fds = samples[-1][1:3] if samples else (0, 0)
            say("phase (c): %3ds  VmRSS %.1f MiB  fds %d" % (t, rss / 1024.0, fds))
            next_report += 30.0
        time.sleep(0.1)
    return (warm if warm is not None else seconds), filled, outages


def judge_memory(samples, warm, filled, sanitized, fdinfo):
    """The RSS and descriptor criteria over phase (c)'s samples after warm-up.
    Returns (figures, failures)."""
    fig = collections.OrderedDict()
    fails = []
    after = [s for s in samples if s[0] >= warm]
    if len(after) < 10:
        # a configuration too short for the criteria (SOAK_SECONDS, SOAK_BUFFER's outage)
        fig["verdict"] = ("not judged: %d samples after warm-up, too few (a longer "
                          "SOAK_SECONDS)" % len(after))
        return fig, fails
    k = max(1, len(after) // 5)
    first, last = after[:k], after[-k:]
    m1 = storms.median([s[1] for s in first])
    m2 = storms.median([s[1] for s in last])
    limit = m1 + max(RSS_SLACK_KIB, RSS_SLACK_SHARE * m1)
    start = next((s for s in samples if s[0] >= 10), samples[0])
    fig["warm-up"] = "%.0f s" % warm
    fig["RSS 10 s after start"] = "%.1f MiB" % (start[1] / 1024.0)
    fig["RSS after warm-up (median, first fifth)"] = "%.1f MiB" % (m1 / 1024.0)
    fig["RSS end (median, last fifth)"] = "%.1f MiB" % (m2 / 1024.0)
    fig["RSS last sample"] = "%.1f MiB" % (samples[-1][1] / 1024.0)
    fig["RSS max"] = "%.1f MiB" % (max(s[1] for s in samples) / 1024.0)
    fig["RSS limit (first fifth + max(1 MiB, 5 %))"] = "%.1f MiB" % (limit / 1024.0)
    if sanitized:
        fig["RSS verdict"] = "not judged: sanitizer build (ASan's quarantine holds freed memory)"
    elif not filled:
        fig["RSS verdict"] = ("not judged: phase (c) too short for SQLite's page cache to "
                              "fill (SOAK_SECONDS >= 600 leaves time)")
    elif m2 > limit:
        fails.append("RSS grew: median %.1f MiB in the last fifth against %.1f MiB in the "
                     "first fifth after warm-up (limit %.1f MiB)"
                     % (m2 / 1024.0, m1 / 1024.0, limit / 1024.0))
        fig["RSS verdict"] = "GREW"
    else:
        fig["RSS verdict"] = "flat"

    def mode(ss):
        c = collections.Counter(s[2] for s in ss if s[3])
        return c.most_common(1)[0][0] if c else None
    f1, f2 = mode(first), mode(last)
    fig["fds after warm-up (most common, connected)"] = f1
    fig["fds end (most common, connected)"] = f2
    fig["fds min/max after warm-up"] = "%d/%d" % (min(s[2] for s in after),
                                                  max(s[2] for s in after))
    if f1 is None or f2 is None:
        fails.append("no settled descriptor sample (connected for 3 s) in the %s fifth"
                     % ("first" if f1 is None else "last"))
    elif f1 != f2:
        a, b = fdinfo.get("start", {}), fdinfo.get("end", {})
        diff = {k: (a.get(k, 0), b.get(k, 0)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
        fails.append("open descriptors: %d after warm-up, %d at the end (changed, as "
                     "(after warm-up, end): %s)" % (f1, f2, diff))
    return fig, fails


# -- the run ------------------------------------------------------------------------------

def table(title, rows):
    sys.stdout.write("\n%s\n" % title)
    w = max(len(k) for k, _ in rows) if rows else 0
    for k, v in rows:
        sys.stdout.write("  %-*s  %s\n" % (w, k, v))


def main():
    total = int(os.environ.get("SOAK_SECONDS", "600"))
    seed = int(os.environ.get("SOAK_SEED") or random.randrange(1 << 30))
    buffer = os.environ.get("SOAK_BUFFER")
    rnd = random.Random(seed)
    os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
    os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    if harness.VALGRIND:
        sys.exit("soak: not under valgrind (SLUICE_VALGRIND): its RSS and pace are not sluiced's")
    daemon_bin = os.path.join(harness.BIN, "sluiced")
    sanitized = storms.is_sanitized(daemon_bin)
    warm = clamp(0.05 * total, 10, 30)
    a_len = clamp(0.10 * total, 10, 60)
    kills = 50 if total >= 600 else max(8, int(round(50.0 * total / 600)))
    say("SOAK_SECONDS=%d SOAK_SEED=%d SLUICE_BIN=%s%s%s" % (
        total, seed, harness.BIN, " (sanitizers)" if sanitized else "",
        " SOAK_BUFFER=" + buffer if buffer else ""))

    available = storms.sim_fault_options()
    buses, devices, rules = site_config()
    site, cfg = storms.new_site("soak", buses, devices, rules=rules,
                                profiles=("flowmeter-generic", "level-radar"),
                                buffer=buffer, uplink={"inflight": 32})
    fails = []
    figures = []
    try:
        faults = start_sim(site, cfg, seed, sim_faults(available))
        say("sluice-sim faults: %s" % " ".join("%s %s" % f for f in faults))
        new = sorted({"--garbage", "--short", "--silent"} - available)
        if new:
            say("this sluice-sim does not list %s yet: not injected" % ", ".join(new))
        site.start_subscriber("it/gw1/#")
        received = storms.Received(site.sub_out)
        storm = storms.Storm(site, cfg, rnd, say)
        durations = collections.OrderedDict()

        t = time.monotonic()
        storm.start_daemon()
        harness.wait_for(lambda: len(received.update().seqs()) > 20, 60, "first telemetry")
        time.sleep(max(0, warm - (time.monotonic() - t)))
        durations["warm-up"] = time.monotonic() - t

        say("phase (a): broker restarted every 2-5 s for %ds, SIGTERM or SIGKILL" % a_len)
        t = time.monotonic()
        storm.broker_storm(a_len, every=(2.0, 5.0), down=(0.1, 1.0), kill_share=0.5,
                           kill="SIGKILL live")
        durations["(a) broker restarts"] = time.monotonic() - t
        say("phase (a): %s" % dict(storm.broker_stops))

        say("phase (b): sluiced SIGKILLed %d times" % kills)
        t = time.monotonic()
        storm.sigkill_storm(kills, outage=(1.0, 2.5), poll=(0.6, 3.0))
        durations["(b) sluiced SIGKILLs"] = time.monotonic() - t
        say("phase (b): %s" % dict(storm.kills))

        if buffer:
            # a buffer small on purpose: an outage long enough to make it drop
            say("overflow: broker stopped until sluiced drops rows (SOAK_BUFFER=%s)" % buffer)
            t = time.monotonic()
            if storm.broker_up:
                storm.stop_broker("SIGTERM")
            harness.wait_for(lambda: storms.ctl(site, cfg, "backlog")["dropped"] > 0, 300,
                             "the buffer to drop rows", interval=2.0)
            time.sleep(5)
            storm.start_broker()
            durations["overflow outage"] = time.monotonic() - t
            say("overflow: %d rows dropped" % storms.ctl(site, cfg, "backlog")["dropped"])

        c_len = max(60.0, total - (time.monotonic() - T0))
        samples = []
        t = time.monotonic()
        fdinfo = {}
        c_warm, filled, outages = steady(storm, c_len, rnd, samples, fdinfo)
        durations["(c) steady, sampled"] = time.monotonic() - t

        say("end: broker up, draining the backlog, stopping sluiced")
        t = time.monotonic()
        health = received.update().health
        storms.wait_connected(site, cfg, 60)
        storms.wait_backlog(site, cfg, 120, small=64)
        storm.stop_daemon()
        durations["drain and stop"] = time.monotonic() - t
        site.stop("sim")   # its log ends with what it served
        requests, unanswered, faulted = sim_figures(site)
        fig, acc_fails = storms.account(site, cfg, received, windows=storm.windows,
                                        expect_drops=bool(buffer), wait=120)
        fails += acc_fails
        mem, mem_fails = judge_memory(samples, c_warm, filled, sanitized, fdinfo)
        fails += mem_fails
        text = read(os.path.join(site.dir, "sluiced.log"))
        for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if bad in text:
                fails.append("sluiced's log holds a sanitizer report (%s)" % bad)
        if storm.crashes:
            fails.append("sluiced exited on its own: %s" % storm.crashes)

        durations["total"] = time.monotonic() - T0
        figures.append(("durations", [(k, "%.0f s" % v) for k, v in durations.items()]))
        figures.append(("faults", [
            ("broker restarts", "%d (SIGTERM %d, SIGKILL mid-stream %d)"
             % (sum(storm.broker_stops.values()), storm.broker_stops["SIGTERM"],
                storm.broker_stops["SIGKILL live"])),
            ("sluiced SIGKILLs", "%d (%s)" % (sum(storm.kills.values()), ", ".join(
                "%s %d" % (m, storm.kills[m]) for m in storms.MOMENTS))),
            ("mid-drain kills that cut a drain", storm.drain_kills_with_backlog),
            ("sluiced runs / clean stops (exit status)", "%d / %s" % (
                storm.starts, storm.clean_exits)),
            ("broker outages in phase (c)", "%d (%s)" % (len(outages), ", ".join(
                "%.0f s" % (b - a) for a, b in outages))),
            ("sim requests", requests),
            ("sim requests left unanswered (dead meter)", unanswered),
            ("sim replies changed or withheld by a fault", faulted),
            ("sim faults", " ".join("%s %s" % f for f in faults)),
            ("faults survived", sum(storm.broker_stops.values()) + sum(storm.kills.values())
             + len(outages) + (faulted or 0)),
        ]))
        figures.append(("seqs and messages", [(k, v) for k, v in fig.items()]
                        + [("subscriber lines (health, status too)", received.lines)]))
        if health:
            h = json.loads(health)
            figures.append(("sluiced's last health message, phase (c)", [
                (k, json.dumps(h.get(k))) for k in ("uptime_s", "polls_ok", "polls_failed",
                                                    "not_stored", "dropped", "db_bytes",
                                                    "poll_lag_ms")]))
        figures.append(("memory and descriptors, phase (c), every %.0f s" % SAMPLE_EVERY,
                        list(mem.items()) + [("samples", len(samples))]))
    except Exception as e:  # noqa: BLE001 - report and keep the logs
        fails.append("%s: %s" % (type(e).__name__, e))
    finally:
        for title, rows in figures:
            table(title, rows)
        if fails:
            site.failed = True
        site.close()
    sys.stdout.write("\n")
    for f in fails:
        sys.stdout.write("FAILED: %s\n" % f)
    sys.stdout.write("soak: %s (seed %d)\n" % ("FAILED" if fails else "passed", seed))
    return 1 if fails else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
