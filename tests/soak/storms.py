"""Fault storms against a live loopback site, and the accounting after them.

Shared by `make soak` (tests/soak/soak.py) and the short storms `make check` runs
(tests/integration/test_storms.py), on top of tests/integration/harness.py:

- `Storm` drives the faults and counts them: the broker stopped with SIGTERM or SIGKILL
  and started again, sluiced SIGKILLed at a chosen kind of moment (right after its start,
  mid-poll, mid-outage, mid-drain) and started again. It notices a sluiced that exited
  without being told to (a crash), and keeps every clean stop's exit status.
- `Received` reads what the persistent subscriber printed, incrementally, keeping the
  raw payload of every message with a seq.
- `account()` checks, once sluiced has stopped cleanly: every seq from 1 to the store's
  last one arrived or was counted (dropped, or skipped at a start after a crash); every
  copy that arrived is the row the store holds under that seq (a transition byte for
  byte, a reading value for value: tests/integration/storedb.py), so a duplicate is the
  same row sent again, never a reused seq; the broker's retained alert/ and device/
  states are the store's latest rows of those topics.

What a SIGKILLed broker can lose: mosquitto acknowledges a QoS 1 PUBLISH at once and
writes its state to disk every `autosave_interval` (1 s in the harness). What it
acknowledged after its last save and had not yet handed to the subscriber is gone when it
is killed: sluiced rightly marked those rows delivered. Two ways to keep the accounting
honest, both used here:
- `Broker kill "quiet"`: sluiced is SIGSTOPped, the broker's database file is watched
  until a save has happened after everything sluiced had written, then the broker is
  SIGKILLed and sluiced continued: it finds its connection reset with messages in flight,
  and the broker had kept all it acknowledged, so every seq must still arrive.
- `Broker kill "live"`: at a random moment mid-stream. The time of the broker's last save
  before the kill and of the kill are kept as a window; a row missing at the subscriber
  is blamed on the broker only if the store recorded it delivered inside such a window
  (a transition by its sent_at; a reading between the two writes of the delivery mark
  around its delivery), and it is counted apart. Anything else missing is a loss.

The store is read with Python's sqlite3, read-only, through storedb.py: the per-row
truth the accounting compares the subscriber with.
"""

import collections
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import harness  # noqa: E402
import storedb  # noqa: E402
from harness import wait_for  # noqa: E402

# the kinds of moment sluiced is SIGKILLed at
AFTER_START = "right after start"
MID_POLL = "mid-poll"
MID_OUTAGE = "mid-outage"
MID_DRAIN = "mid-drain"
MOMENTS = (AFTER_START, MID_POLL, MID_OUTAGE, MID_DRAIN)

# how long after a live broker kill sluiced may still mark rows it had acknowledged
# (transitions are marked every 250 ms, the readings' mark is written within 5 s and
# read here as the span between two writes; generous for the sanitizer build)
MARK_LAG_S = 1.5
# how long a save of the broker's database may take, before its file's mtime
SAVE_TAKES_S = 0.5

SEQ_RE = re.compile(rb'^\{"seq":(\d+),')


def ctl(site, cfg, *args):
    """sluicectl --json ARGS, parsed."""
    r = site.run([os.path.join(harness.BIN, "sluicectl"), "-c", cfg, "--json"] + list(args))
    if r.returncode != 0:
        raise AssertionError("sluicectl %s: %s" % (" ".join(args), r.stderr))
    return json.loads(r.stdout)


def is_sanitized(binpath):
    """True for a binary built with AddressSanitizer (its RSS is the allocator's)."""
    try:
        with open(binpath, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def sim_fault_options():
    """The fault options this build's sluice-sim lists in --help (`--garbage`, ...)."""
    r = subprocess.run([os.path.join(harness.BIN, "sluice-sim"), "--help"],
                       capture_output=True, text=True, timeout=10)
    return set(re.findall(r"^\s+(--[a-z-]+) UNIT:", r.stdout + r.stderr, re.M))


def proc_sample(pid):
    """(VmRSS in KiB, open descriptors) of a live process, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        return rss, len(os.listdir("/proc/%d/fd" % pid))
    except (OSError, StopIteration, ValueError):
        return None


def proc_fd_targets(pid):
    """What each descriptor of pid is ('socket', a path, ...), by kind, for a leak report."""
    out = collections.Counter()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            out[re.sub(r":\[\d+\]$", "", t)] += 1
    except OSError:
        pass
    return dict(out)


class Received:
    """What the persistent subscriber printed (`topic payload` lines), read as it grows.
    by_seq: seq -> [(topic, raw payload bytes)], in arrival order."""

    def __init__(self, path):
        self.path = path
        self.off = 0
        self.rest = b""
        self.by_seq = {}
        self.order = []          # seqs in arrival order, duplicates included
        self.lines = 0
        self.health = None       # the latest health payload

    def update(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except OSError:
            return self
        self.off += len(data)
        data = self.rest + data
        lines = data.split(b"\n")
        self.rest = lines.pop()
        for line in lines:
            if b" " not in line:
                continue
            topic, payload = line.split(b" ", 1)
            self.lines += 1
            m = SEQ_RE.match(payload)
            if m:
                seq = int(m.group(1))
                self.by_seq.setdefault(seq, []).append((topic.decode(), payload))
                self.order.append(seq)
            elif topic.endswith(b"/health"):
                self.health = payload
        return self

    def seqs(self):
        return self.by_seq.keys()


def store_rows(site):
    """{seq: storedb.Row} of the outbox, read-only (with sluiced stopped, or alongside it)."""
    return storedb.read_rows(os.path.join(site.dir, "data"))


def retained_states(site, prefix, topics=("alert/#", "device/#"), wait=5):
    """{topic: raw payload} of what the broker holds retained under prefix/topics."""
    argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(site.broker_port), "-v",
            "--retained-only", "-W", str(wait), "-q", "1"]
    for t in topics:
        argv += ["-t", prefix + "/" + t]
    r = subprocess.run(argv, capture_output=True, timeout=wait + 10)
    out = {}
    for line in r.stdout.split(b"\n"):
        if b" " in line:
            topic, payload = line.split(b" ", 1)
            out[topic.decode()] = payload
    return out


class Storm:
    """Faults against one site (a Site with a broker, a subscriber and a sim already
    started, and a config for sluiced), with their counts."""

    def __init__(self, site, cfg, rnd, say=None):
        self.site = site
        self.cfg = cfg
        self.rnd = rnd
        self.say = say or (lambda msg: None)
        self.daemon_log = os.path.join(site.dir, "sluiced.log")
        self.broker_db = os.path.join(site.dir, "broker", "mosquitto.db")
        self.broker_stops = collections.Counter()   # "SIGTERM", "SIGKILL quiet", "SIGKILL live"
        self.broker_starts = 0
        self.windows = []          # (from, to) real time, s: live broker kills
        self.kills = collections.Counter()          # sluiced SIGKILLs by moment
        self.drain_kills_with_backlog = 0           # mid-drain kills that left outage rows unsent
        self.starts = 0            # sluiced processes started
        self.clean_exits = []      # exit status of every clean stop of sluiced
        self.crashes = []          # sluiced exits nobody asked for
        self._log_off = 0
        self._connects = 0

    # -- sluiced ---------------------------------------------------------------------

    @property
    def daemon(self):
        return self.site.procs.get("sluiced")

    def start_daemon(self):
        self.starts += 1
        return self.site.start_daemon(self.cfg)

    def check_daemon(self, when):
        """Raise if sluiced exited while nobody was stopping it."""
        d = self.daemon
        if d is not None and not d.alive():
            self.site.procs.pop("sluiced")
            self.crashes.append((when, d.p.returncode))
            raise AssertionError("sluiced exited on its own (status %s) %s:\n%s"
                                 % (d.p.returncode, when, d.text()[-3000:]))

    def kill_daemon(self, moment):
        self.check_daemon("before a SIGKILL " + moment)
        self.site.stop("sluiced", signal.SIGKILL)
        self.kills[moment] += 1

    def stop_daemon(self, timeout=30):
        """SIGTERM, and the exit status (kept: every clean stop must be 0)."""
        self.check_daemon("before a clean stop")
        d = self.daemon
        rc = self.site.stop("sluiced", signal.SIGTERM, timeout)
        self.clean_exits.append(rc)
        if rc != 0:
            raise AssertionError("sluiced stopped with status %s:\n%s" % (rc, d.text()[-3000:]))
        return rc

    def connects(self):
        """How many times sluiced has logged a connection to the broker, all runs."""
        try:
            with open(self.daemon_log, "rb") as f:
                f.seek(self._log_off)
                data = f.read()
        except OSError:
            return self._connects
        # keep a partial last line for the next read
        cut = data.rfind(b"\n") + 1
        self._log_off += cut
        self._connects += data[:cut].count(b"uplink: connected to")
        return self._connects

    # -- the broker ------------------------------------------------------------------

    @property
    def broker_up(self):
        pr = self.site.procs.get("mosquitto")
        return pr is not None and pr.alive()

    def start_broker(self):
        self.site.start_broker()
        self.broker_starts += 1

    def _db_mtime(self):
        try:
            return os.stat(self.broker_db).st_mtime
        except OSError:
            return None

    def stop_broker(self, how):
        """how: "SIGTERM" (mosquitto saves and exits), "SIGKILL quiet" (after a save that
        holds everything sluiced sent: sluiced is stopped meanwhile) or "SIGKILL live"
        (now, mid-stream: a window in which it may lose what it acknowledged)."""
        if how == "SIGTERM":
            self.site.stop_broker()
        elif how == "SIGKILL live":
            saved = self._db_mtime()
            t = time.time()
            self.site.stop("mosquitto", signal.SIGKILL)
            self.windows.append(((saved if saved else t - 5) - SAVE_TAKES_S, t + MARK_LAG_S))
        elif how == "SIGKILL quiet":
            d = self.daemon
            running = d is not None and d.alive()
            if running:
                d.send(signal.SIGSTOP)
            try:
                # what sluiced wrote before it stopped reaches the broker within
                # milliseconds; a save that ends later than this holds all of it
                after = time.time() + 0.2
                wait_for(lambda: (self._db_mtime() or 0) > after, 10,
                         "mosquitto to save its database", interval=0.05)
                self.site.stop("mosquitto", signal.SIGKILL)
            finally:
                if running:
                    d.send(signal.SIGCONT)
        else:
            raise ValueError(how)
        self.broker_stops[how] += 1

    # -- storms ----------------------------------------------------------------------

    def broker_storm(self, seconds, every=(1.0, 3.0), down=(0.1, 0.8), kill_share=0.5,
                     kill="SIGKILL quiet"):
        """For `seconds`, stop the broker after a random uptime in `every` (SIGTERM, or
        SIGKILL for kill_share of them, the way `kill` says) and start it again after
        `down`. sluiced keeps running: it is never restarted here."""
        end = time.monotonic() + seconds
        # one of each kind first, in a random order, then as the share says
        first = [kill, "SIGTERM"] if kill_share > 0 else []
        self.rnd.shuffle(first)
        if not self.broker_up:
            self.start_broker()
        while time.monotonic() < end:
            time.sleep(self.rnd.uniform(*every))
            self.check_daemon("during the broker storm")
            how = first.pop() if first else (kill if self.rnd.random() < kill_share
                                             else "SIGTERM")
            self.stop_broker(how)
            time.sleep(self.rnd.uniform(*down))
            self.start_broker()
        self.check_daemon("after the broker storm")

    def sigkill_storm(self, kills, outage=(1.0, 2.5), poll=(0.6, 2.5), connect_wait=20):
        """SIGKILL sluiced `kills` times, each at a moment of one of the four kinds (as
        many of each as can be, in a random order), starting it again at once. The broker
        goes away (SIGTERM) for the mid-outage kills and stays away until a mid-poll or a
        mid-drain kill brings it back, so a backlog builds up across restarts."""
        plan = [MOMENTS[i % len(MOMENTS)] for i in range(kills)]
        self.rnd.shuffle(plan)
        if self.daemon is None:
            self.start_daemon()
        for i, moment in enumerate(plan):
            if moment == AFTER_START:
                time.sleep(self.rnd.uniform(0.02, 0.5))
            elif moment == MID_POLL:
                if not self.broker_up:
                    self.start_broker()
                time.sleep(self.rnd.uniform(*poll))
            elif moment == MID_OUTAGE:
                if self.broker_up:
                    time.sleep(self.rnd.uniform(0.2, 1.0))
                    self.stop_broker("SIGTERM")
                time.sleep(self.rnd.uniform(0.3, 1.5))
            elif moment == MID_DRAIN:
                if self.broker_up:
                    self.stop_broker("SIGTERM")
                # readings pile up while sluiced polls with the broker away; a fresh
                # sluiced retries after ~1 s, then ~2 s more: an outage under 2.5 s
                # ends in time for its second try
                time.sleep(self.rnd.uniform(*outage))
                self.check_daemon("during an outage")
                before = self.connects()
                self.start_broker()
                wait_for(lambda: self.connects() > before or not self.daemon.alive(),
                         connect_wait, "sluiced to reconnect", interval=0.02)
                t_conn = time.time()
                time.sleep(self.rnd.uniform(0.0, 0.25))
            self.kill_daemon(moment)
            if moment == MID_DRAIN:
                b = ctl(self.site, self.cfg, "backlog")
                # rows polled before the reconnect and still unsent: the drain was cut
                if b["backlog_rows"] and b["oldest_unsent_ts"] / 1000.0 < t_conn - 0.5:
                    self.drain_kills_with_backlog += 1
            self.start_daemon()
        self.check_daemon("after the SIGKILL storm")

    def summary(self):
        return {
            "broker stops": dict(self.broker_stops),
            "sluiced SIGKILLs": dict(self.kills),
            "mid-drain kills that cut a drain": self.drain_kills_with_backlog,
            "sluiced starts": self.starts,
            "sluiced connects": self.connects(),
        }


def wait_connected(site, cfg, timeout):
    """Wait for a status snapshot (sluiced writes one every 5 s) written from now on
    that says the uplink is connected."""
    since = time.time() * 1000

    def up():
        s = ctl(site, cfg, "status")
        return s.get("updated", 0) >= since and s.get("uplink", {}).get("connected")
    wait_for(up, timeout, "sluiced to say it is connected", interval=0.5)


def wait_backlog(site, cfg, timeout, small=0):
    """Wait until sluiced's backlog is `small` rows or fewer; the last backlog read."""
    last = {}

    def low():
        last.update(ctl(site, cfg, "backlog"))
        return last["backlog_rows"] <= small
    wait_for(low, timeout, "the backlog to drain (%s)" % last, interval=0.5)
    return last


def account(site, cfg, received, windows=(), expect_drops=False, wait=60, prefix="it/gw1"):
    """Every seq accounted for, with sluiced stopped cleanly and the broker up.
    Returns (figures, failures): failures is a list of sentences, empty when all holds."""
    fails = []
    b = ctl(site, cfg, "backlog")
    rows = store_rows(site)
    last, dropped, skipped = b["last_seq"], b["dropped"], b.get("skipped_seqs", 0)
    aside = b.get("set_aside_rows", 0)

    def exposed(row):
        return row.sent_hi is not None and any(
            lo * 1000 <= row.sent_hi and row.sent_lo <= hi * 1000 for lo, hi in windows)

    def missing_delivered():
        received.update()
        return [s for s, r in rows.items()
                if r.sent_at is not None and s not in received.by_seq and not exposed(r)]
    try:
        wait_for(lambda: not missing_delivered(), wait, "every delivered row at the subscriber",
                 interval=0.5)
    except AssertionError:
        pass  # counted below
    # what the broker holds for the subscriber comes in the same way: give the rows
    # exposed to a broker kill a moment more before calling them lost by it
    time.sleep(1.0)
    received.update()
    got = received.by_seq

    missing = set(range(1, last + 1)) - set(got)
    not_stored = sorted(s for s in missing if s not in rows)     # dropped from the store
    unsent = sorted(s for s in missing if s in rows and rows[s].sent_at is None)
    lost_by_broker = sorted(s for s in missing if s in rows and rows[s].sent_at is not None
                            and exposed(rows[s]))
    lost = sorted(s for s in missing if s in rows and rows[s].sent_at is not None
                  and not exposed(rows[s]))
    phantom = sorted(s for s in got if s > last or s < 1)
    dups = wrong = 0
    wrong_examples = []
    for s, copies in got.items():
        dups += len(copies) - 1
        r = rows.get(s)
        # the store's row; for a row gone from the store (history pruned), the first copy
        for c in copies:
            same = (c[0] == prefix + "/" + r.topic and r.matches(c[1])) if r else c == copies[0]
            if not same:
                wrong += 1
                wrong_examples.append((s, c[0], c[1][:160], r.topic if r else "",
                                       r.text_payload()[:160] if r and r.body is not None
                                       else (r.reading[1:] if r else copies[0][1][:160])))

    if b["backlog_rows"]:
        fails.append("%d rows still in the outbox after a clean stop (seqs %s...)"
                     % (b["backlog_rows"], unsent[:10]))
    # a broker that restarts ends sessions with rows in flight: none of them may be
    # taken for a row the broker refuses (docs/mqtt.md, "A message the broker refuses")
    if aside:
        fails.append("%d good rows set aside as refused by the broker: %s"
                     % (aside, [(r["seq"], r["topic"], r["reason"])
                                for r in b.get("set_aside", [])][:5]))
    if lost:
        fails.append("%d seqs LOST: marked delivered by sluiced, never at the subscriber, "
                     "not near a broker SIGKILL: %s%s" % (len(lost), lost[:20],
                                                          "..." if len(lost) > 20 else ""))
    # every seq missing must be counted: dropped by the size bound, or skipped at a start
    # after a SIGKILL (handed out, and published or not, before it was stored). The
    # counts may be higher by rows that arrived anyway (a SIGKILL before their delivery
    # was recorded; a reading published before it was stored): upper bounds, by design
    # of at-least-once (docs/mqtt.md)
    if len(not_stored) > dropped + skipped:
        fails.append("%d seqs neither in the store nor at the subscriber, but only %d counted"
                     " (%d dropped, %d skipped): %s" % (len(not_stored), dropped + skipped,
                                                         dropped, skipped, not_stored[:20]))
    elif dropped > len(not_stored):
        sys.stdout.write("note: %d rows counted as dropped reached the subscriber anyway"
                         " (delivered before sluiced recorded it)\n"
                         % (dropped - len(not_stored)))
    if dropped and not expect_drops:
        fails.append("%d rows dropped with a buffer that should hold everything" % dropped)
    if phantom:
        fails.append("seqs outside 1..%d arrived: %s" % (last, phantom[:20]))
    if wrong:
        fails.append("%d copies differ from the store's row under their seq (a reused "
                     "seq?): %s" % (wrong, wrong_examples[:3]))

    # retained states: the newest row of every retained topic, unless a broker kill
    # took it (then the broker may hold an older one)
    # (a row pruned from the store as delivered history: the newest copy that arrived)
    latest = {}
    for r in rows.values():
        if r.retain and (r.topic not in latest or r.seq > latest[r.topic][0]):
            latest[r.topic] = (r.seq, r.text_payload(), r)
    for seq, copies in got.items():
        topic = copies[0][0][len(prefix) + 1:]
        if (topic.startswith("alert/") or topic.startswith("device/")) and \
                (topic not in latest or seq > latest[topic][0]):
            latest[topic] = (seq, copies[0][1], rows.get(seq))
    held = retained_states(site, prefix)
    stale = explained = 0
    stale_examples = []
    for topic, (seq, payload, r) in latest.items():
        full = prefix + "/" + topic
        if held.get(full) == payload:
            continue
        if (r is not None and exposed(r)) or seq in lost_by_broker:
            explained += 1
            continue
        stale += 1
        stale_examples.append((full, held.get(full, b"(none)")[:100], payload[:100]))
    for topic in held:
        if topic[len(prefix) + 1:] not in latest:
            stale += 1
            stale_examples.append((topic, held[topic][:100], "(never sent)"))
    if stale:
        fails.append("%d retained states differ from the store's latest transition: %s"
                     % (stale, stale_examples[:3]))

    # what a platform that drops duplicates sees: per retained topic, each new seq newer
    # than the ones before it (re-sends after a crash may repeat an older one: counted)
    firsts = collections.defaultdict(list)
    seen = set()
    resent_older = 0
    for s in received.order:
        if s in seen:
            continue
        seen.add(s)
        r = rows.get(s)
        if r is not None and r.retain:
            firsts[r.topic].append(s)
    backwards = sum(1 for t, ss in firsts.items() for a, b2 in zip(ss, ss[1:]) if b2 < a)
    last_copy = {}
    for s in received.order:
        r = rows.get(s)
        if r is not None and r.retain:
            if r.topic in last_copy and s < last_copy[r.topic]:
                resent_older += 1
            last_copy[r.topic] = s
    if backwards:
        fails.append("%d retained transitions arrived first after a newer one of their "
                     "topic (a state went backwards)" % backwards)

    kinds = collections.Counter(r.kind for r in rows.values())
    fig = collections.OrderedDict([
        ("seqs assigned", last),
        ("rows in the store", len(rows)),
        ("telemetry rows", kinds.get(0, 0)),
        ("state rows (device/, alert/)", kinds.get(1, 0)),
        ("alert transitions", sum(1 for r in rows.values() if r.topic.startswith("alert/"))),
        ("telemetry with errors", sum(1 for r in rows.values()
                                      if r.kind == 0 and r.has_errors())),
        ("messages received (with seq)", sum(len(c) for c in got.values())),
        ("seqs received", len(got)),
        ("duplicates", dups),
        ("dropped (counted)", dropped),
        ("skipped at starts (counted)", skipped),
        ("set aside", aside),
        ("seqs missing, dropped", len(not_stored)),
        ("seqs lost by a broker SIGKILL", len(lost_by_broker)),
        ("seqs lost", len(lost) + len(unsent)),
        ("retained states checked", len(latest)),
        ("retained states stale after a broker SIGKILL", explained),
        ("re-sends of an older transition", resent_older),
    ])
    return fig, fails


def median(xs):
    return statistics.median(xs) if xs else 0


def new_site(name, buses, devices, rules="", profiles=("flowmeter-generic",), buffer=None,
             uplink=None):
    """A Site with its broker started and a sluiced config written: (site, cfg path).
    buses, devices, rules: the YAML of those sections; uplink: {key: value} to change
    in the harness's uplink section (inflight, keepalive, ...)."""
    site = harness.Site(name)
    try:
        site.start_broker()
        site.copy_profiles(*profiles)
        text = harness.config_yaml(site, "gw1", site.broker_port, buses, devices, extra=rules)
        if buffer:
            text = text.replace("  max_size: 64MiB\n", "  max_size: %s\n" % buffer)
        for k, v in (uplink or {}).items():
            text = re.sub(r"(?m)^  %s: .*$" % k, "  %s: %s" % (k, v), text)
        return site, site.write("sluice.yaml", text)
    except Exception:
        site.failed = True
        site.close()
        raise


def db_pages(site):
    """Pages in sluiced's database (with what its write-ahead log adds), read-only."""
    path = os.path.join(site.dir, "data", "sluice.db")
    try:
        con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
        try:
            return con.execute("PRAGMA page_count").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return None
