#!/usr/bin/env python3
"""The data directory's bad days: full, limited, damaged.

- the file system under data_dir fills up (a small tmpfs filled by a ballast file;
  skipped, and said, where this test may not mount): the log says what is wrong,
  polling goes on (health's poll counts grow), an alert that fires meanwhile is
  decided and logged at once, and once the ballast goes, what waited in memory is
  stored and delivered: every seq arrives, nothing counted as not stored;
- the same with a file size limit (RLIMIT_FSIZE lowered on the running daemon with
  prlimit, then raised again): writes fail with EFBIG instead of a signal killing it;
- stopped while full (both ways): the rows that waited in memory are kept in
  sluice.spill (0640) and stored first at the next start — every reading made while full
  arrives, in order, with its own timestamp, none counted lost (issue 15, 10a);
- a damaged database at start (pages overwritten, then a file of junk): a clear
  message, the damaged bytes kept under another name, a fresh start whose seqs go on
  above the old ones, and a second start that finds nothing wrong — no crash loop;
  `sluicectl check` says damaged (exit 1) or ok (exit 0) of the same files;
- every page is read at a start only after a stop that was not clean (SIGKILL), not
  after a clean one (issue 15, 10b);
- file modes: umask 022 and a data_dir that already exists 0755 — every file sluiced
  makes is 0640, and the start warns about the directory (issue 15, 9).
"""

import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Site, wait_for  # noqa: E402
from test_store_forward import ctl_status, fast_site, seq_payloads  # noqa: E402

RULE = ("alerts:\n"
        "  - id: fm1-high\n"
        "    kind: threshold\n"
        "    point: fm1.pressure\n"
        "    above: 0.1\n")


def healths(site):
    return [p for t, p in site.messages() if t.endswith("/health") and isinstance(p, dict)]


def log_has(d, text):
    return text in d.text()


def full_episode(name, make_full, make_room, setup=None, cleanup=None):
    site = Site(name)
    data = os.path.join(site.dir, "data")
    try:
        with site:
            cfg = fast_site(site, ndev=6, interval="100ms")
            if setup:
                setup(data)
            site.start_sim(["--config", cfg])
            site.start_subscriber("it/gw1/#")
            d = site.start_daemon(cfg)
            wait_for(lambda: len(seq_payloads(site)) > 60, 30, "first telemetry")

            make_full(data, d.pid)
            wait_for(lambda: log_has(d, "store: cannot write"), 30,
                     "the log to say the store fails")
            line = [ln for ln in d.text().splitlines() if "store: cannot write" in ln][0]
            sys.stdout.write("  %s: %s\n" % (name, line.strip()[:200]))
            assert d.alive(), d.text()

            # polling goes on: health (published directly) shows polls counting and the error
            n0 = len(healths(site))
            wait_for(lambda: any("store_error" in h for h in healths(site)[n0:]), 30,
                     "a health message naming the store error")
            h1 = [h for h in healths(site)[n0:] if "store_error" in h][0]
            wait_for(lambda: any(h.get("polls_ok", 0) > h1["polls_ok"] + 20 and "store_error" in h
                                 for h in healths(site)[n0:]), 30, "polls going on while full")

            # alerting goes on: a rule added now fires at once, while nothing can be stored
            with open(cfg) as f:
                text = f.read()
            with open(cfg, "w") as f:
                f.write(text + RULE)
            d.send(signal.SIGHUP)
            wait_for(lambda: log_has(d, "alert fm1-high/"), 30, "the alert to fire while full")
            assert not [t for t, _ in site.messages() if "/alert/fm1-high/" in t], \
                "an alert was published before it was stored"

            make_room(data, d.pid)
            wait_for(lambda: log_has(d, "store: writing again"), 30, "the store to write again")
            wait_for(lambda: [t for t, _ in site.messages() if "/alert/fm1-high/" in t], 30,
                     "the held alert to be delivered")
            n1 = len(healths(site))
            wait_for(lambda: any("store_error" not in h for h in healths(site)[n1:]), 30,
                     "health without the error")
            assert d.alive(), d.text()

            rc = site.stop("sluiced", signal.SIGTERM, timeout=15)
            assert rc == 0, "sluiced exit %s:\n%s" % (rc, d.text())
            st = ctl_status(site, cfg)
            last = st["last_seq"]
            want = set(range(1, last + 1))
            wait_for(lambda: not (want - set(seq_payloads(site))), 30,
                     "all %d seqs at the subscriber" % last)
            assert healths(site)[-1]["not_stored"] == 0, healths(site)[-1]
            assert st["dropped"] == 0, st
            sys.stdout.write("  %s: %d seqs, all delivered, none dropped\n" % (name, last))
    finally:
        if cleanup:
            cleanup(data)


def can_mount():
    probe = "/tmp/sluice-mount-probe-%d" % os.getpid()
    os.makedirs(probe, exist_ok=True)
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe],
                           capture_output=True)
        if r.returncode != 0:
            return False
        subprocess.run(["umount", probe])
        return True
    finally:
        os.rmdir(probe)


def tmpfs_setup(data):
    os.makedirs(data, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0750", "tmpfs", data],
                   check=True)


def tmpfs_fill(data, pid):
    chunk = b"\0" * 65536
    with open(os.path.join(data, "ballast"), "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    st = os.statvfs(data)
    assert st.f_bavail * st.f_frsize < 65536, st


def tmpfs_room(data, pid):
    os.unlink(os.path.join(data, "ballast"))


def tmpfs_cleanup(data):
    subprocess.run(["umount", "-l", data])


def fsize_limit(data, pid):
    sizes = [os.path.getsize(os.path.join(data, f)) for f in os.listdir(data)
             if f.startswith("sluice.db")]
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (max(sizes) + 4096, resource.RLIM_INFINITY))


def test_file_system_full():
    if not can_mount():
        sys.stdout.write("  SKIPPED: this machine does not let the test mount a tmpfs"
                         " (test_file_size_limit covers the path)\n")
        return
    full_episode("fsfull", tmpfs_fill, tmpfs_room, tmpfs_setup, tmpfs_cleanup)


def test_file_size_limit():
    def unlimit(data, pid):
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    full_episode("fsize", fsize_limit, unlimit)


def readings_by_device(site):
    """{device: sorted [ts, ...]} of every telemetry message at the subscriber, once per seq."""
    out = {}
    for seq, msgs in seq_payloads(site).items():
        t, p = msgs[0][0], json.loads(msgs[0][1])
        if "/telemetry/" in t:
            out.setdefault(t.rsplit("/", 1)[1], []).append(p["ts"])
    return {k: sorted(v) for k, v in out.items()}


def spill_episode(name, make_full, make_room, setup=None, cleanup=None):
    """Stopped while the store cannot write: nothing that waited in memory is lost."""
    site = Site(name)
    data = os.path.join(site.dir, "data")
    try:
        with site:
            cfg = fast_site(site, ndev=6, interval="100ms")
            if setup:
                setup(data)
            site.start_sim(["--config", cfg])
            site.start_subscriber("it/gw1/#")
            d = site.start_daemon(cfg)
            wait_for(lambda: len(seq_payloads(site)) > 60, 30, "first telemetry")
            make_full(data, d.pid)
            wait_for(lambda: log_has(d, "store: cannot write"), 30,
                     "the log to say the store fails")
            time.sleep(3)  # readings pile up in memory
            rc = site.stop("sluiced", signal.SIGTERM, timeout=15)
            stopped_ms = time.time() * 1000
            assert rc == 0, "sluiced exit %s:\n%s" % (rc, d.text())
            m = re.search(r"the (\d+) rows that waited in memory are kept in (\S+):", d.text())
            assert m, d.text()
            held = int(m.group(1))
            assert held > 60, held
            mode = os.stat(m.group(2)).st_mode & 0o7777
            assert mode == 0o640, oct(mode)

            make_room(data, None)
            n0 = len(site.messages())
            d = site.start_daemon(cfg, name="sluiced2")
            wait_for(lambda: log_has(d, "rows kept in") or not d.alive(), 30,
                     "the spilled rows stored")
            m = re.search(r"stored the (\d+) rows kept in \S+ at the last stop"
                          r" \(seqs (\d+)\.\.(\d+)\)", d.text())
            assert m, d.text()
            first, last_spilled = int(m.group(2)), int(m.group(3))
            assert int(m.group(1)) == held and last_spilled - first + 1 == held, \
                (m.group(0), held)
            # before anything else: the rows this start makes come after them
            wait_for(lambda: [p for t, p in site.messages()[n0:]
                              if "/telemetry/" in t and p.get("seq", 0) > last_spilled], 30,
                     "new telemetry")
            h0 = len(healths(site))
            wait_for(lambda: len(healths(site)) > h0, 30, "a health message")
            h = healths(site)[-1]
            assert h["lost_at_stop"] == 0 and h["not_stored"] == 0, h
            rc = site.stop("sluiced2", signal.SIGTERM, timeout=15)
            assert rc == 0, "sluiced exit %s:\n%s" % (rc, d.text())
            st = ctl_status(site, cfg)
            want = set(range(1, st["last_seq"] + 1))
            wait_for(lambda: not (want - set(seq_payloads(site))), 30,
                     "all %d seqs at the subscriber" % st["last_seq"])
            got = seq_payloads(site)
            # with their own timestamps, all made before the stop, each device's in order
            ts = [json.loads(got[s][0][1])["ts"] for s in range(first, last_spilled + 1)]
            assert max(ts) < stopped_ms, (max(ts), stopped_ms)
            by_dev = {}
            for s in range(first, last_spilled + 1):
                t = got[s][0][0]
                if "/telemetry/" in t:
                    by_dev.setdefault(t, []).append(json.loads(got[s][0][1])["ts"])
            for t, v in by_dev.items():
                assert v == sorted(v), (t, v)
            # every reading made before the stop arrived: no device skips a poll (100 ms)
            for dev, v in readings_by_device(site).items():
                before = [x for x in v if x < stopped_ms]
                gaps = [b - a for a, b in zip(before, before[1:])]
                assert max(gaps) < 2000, (dev, max(gaps))
            assert st["dropped"] == 0, st
            sys.stdout.write("  %s: %d rows kept over the stop as seqs %d..%d, all delivered\n"
                             % (name, held, first, last_spilled))
    finally:
        if cleanup:
            cleanup(data)


def test_stopped_while_full():
    """Issue 15, 10a: held rows were lost at a stop ("rows that waited in memory are lost")."""
    if can_mount():
        spill_episode("spillfs", tmpfs_fill, tmpfs_room, tmpfs_setup, tmpfs_cleanup)
    else:
        sys.stdout.write("  SKIPPED the tmpfs half: this machine does not let the test mount"
                         " a tmpfs\n")
    # the limit was the stopped process's own: the next one has none
    spill_episode("spillfsize", fsize_limit, lambda data, pid: None)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def asides(data):
    return sorted(f for f in os.listdir(data)
                  if f.startswith("sluice.db.damaged-") and not f.endswith(("-wal", "-shm")))


def test_damaged_database_at_start():
    with Site("damaged") as site:
        cfg = fast_site(site, ndev=3, interval="100ms")
        data = os.path.join(site.dir, "data")
        db = os.path.join(data, "sluice.db")
        site.start_sim(["--config", cfg])
        site.start_subscriber("it/gw1/#")
        d = site.start_daemon(cfg)
        wait_for(lambda: len(seq_payloads(site)) > 300, 30, "first telemetry")
        assert site.stop("sluiced", signal.SIGTERM, timeout=15) == 0, d.text()
        last1 = ctl_status(site, cfg)["last_seq"]
        assert os.path.getsize(db) > 8 * 4096, os.path.getsize(db)

        ctl = [os.path.join(harness.BIN, "sluicectl"), "-c", cfg, "check"]
        r = site.run(ctl)
        assert r.returncode == 0 and r.stdout.strip() == db + ": ok", \
            (r.returncode, r.stdout, r.stderr)

        # 1. pages in the middle overwritten, as a failing card does
        with open(db, "r+b") as f:
            f.seek(os.path.getsize(db) // 4096 // 2 * 4096)
            f.write(b"\x55" * (2 * 4096))
        bad = sha(db)
        r = site.run(ctl)
        assert r.returncode == 1 and "is damaged" in r.stdout, (r.returncode, r.stdout, r.stderr)
        r = site.run(ctl[:-1] + ["--json", "check"])
        j = json.loads(r.stdout)
        assert r.returncode == 1 and j["ok"] is False and j["problems"], (r.returncode, r.stdout)
        assert sha(db) == bad and not os.path.exists(db + "-wal"), "sluicectl check wrote"
        sys.stdout.write("  sluicectl check: %s\n" % r.stdout.strip()[:160])
        n0 = len(site.messages())
        d = site.start_daemon(cfg, name="sluiced2")
        wait_for(lambda: log_has(d, "starting a fresh database") or not d.alive(), 30,
                 "the damaged file set aside")
        assert d.alive(), d.text()
        m = re.search(r"store: the damaged file is kept as (\S+);", d.text())
        assert m, d.text()
        assert "the file is damaged" in d.text(), d.text()
        assert sha(m.group(1)) == bad, "the kept copy is not the damaged file as it was"
        assert asides(data) == [os.path.basename(m.group(1))], asides(data)
        wait_for(lambda: [p for t, p in site.messages()[n0:] if "/telemetry/" in t], 30,
                 "telemetry after the damaged database")
        # the old file's last seq could be read: seqs go on from it, without a gap
        first = min(p["seq"] for t, p in site.messages()[n0:]
                    if isinstance(p, dict) and p.get("seq", 0) > last1)
        assert first == last1 + 1, (first, last1)
        assert site.stop("sluiced2", signal.SIGTERM, timeout=15) == 0, d.text()
        last2 = ctl_status(site, cfg)["last_seq"]
        assert last2 > last1, (last1, last2)

        # 2. the fresh database is sound: the next start sets nothing aside
        d = site.start_daemon(cfg, name="sluiced3")
        time.sleep(2)
        assert site.stop("sluiced3", signal.SIGTERM, timeout=15) == 0, d.text()
        # (the site's directory is named "damaged": look for the messages, not the word)
        assert "is damaged" not in d.text() and "fresh database" not in d.text(), d.text()
        assert len(asides(data)) == 1, asides(data)
        r = site.run(ctl)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)

        # 3. a file of junk (nothing readable): seqs still go on above the old ones
        last3 = ctl_status(site, cfg)["last_seq"]
        with open(db, "wb") as f:
            f.write(os.urandom(256 * 1024))
        for sfx in ("-wal", "-shm"):
            if os.path.exists(db + sfx):
                os.unlink(db + sfx)
        n0 = len(site.messages())
        d = site.start_daemon(cfg, name="sluiced4")
        wait_for(lambda: log_has(d, "starting a fresh database") or not d.alive(), 30,
                 "the junk file set aside")
        assert d.alive(), d.text()
        wait_for(lambda: [p for t, p in site.messages()[n0:] if "/telemetry/" in t], 30,
                 "telemetry after a junk database")
        new = [p["seq"] for t, p in site.messages()[n0:] if "/telemetry/" in t]
        assert min(new) > last3, (min(new), last3)
        assert site.stop("sluiced4", signal.SIGTERM, timeout=15) == 0, d.text()
        assert len(asides(data)) == 2, asides(data)
        sys.stdout.write("  damaged: seqs %d -> %d (pages) -> %d.. (junk); copies kept: %s\n"
                         % (last1, last2, min(new), ", ".join(asides(data))))


def test_check_only_after_unclean_stop():
    """Issue 15, 10b: every start read every page (quick_check), seconds on an SD card."""
    with Site("cleanstop") as site:
        cfg = fast_site(site, ndev=3, interval="100ms")
        data = os.path.join(site.dir, "data")
        site.start_sim(["--config", cfg])
        site.start_subscriber("it/gw1/#")
        d = site.start_daemon(cfg)
        wait_for(lambda: len(seq_payloads(site)) > 30, 30, "first telemetry")
        assert site.stop("sluiced", signal.SIGTERM, timeout=15) == 0, d.text()
        assert os.path.exists(os.path.join(data, "sluice.clean"))

        d = site.start_daemon(cfg, name="sluiced2")
        wait_for(lambda: log_has(d, "started: gateway"), 30, "a start after a clean stop")
        assert "closed cleanly: not checked" in d.text(), d.text()
        assert "checked every page" not in d.text(), d.text()
        assert not os.path.exists(os.path.join(data, "sluice.clean"))
        n = len(seq_payloads(site))
        wait_for(lambda: len(seq_payloads(site)) > n + 30, 30, "more telemetry")
        site.stop("sluiced2", signal.SIGKILL)

        d = site.start_daemon(cfg, name="sluiced3")
        wait_for(lambda: log_has(d, "started: gateway"), 30, "a start after SIGKILL")
        line = [ln for ln in d.text().splitlines() if "checked every page" in ln]
        assert line and "no record of a clean stop" in line[0], d.text()
        sys.stdout.write("  after SIGKILL: %s\n" % line[0].strip())
        assert site.stop("sluiced3", signal.SIGTERM, timeout=15) == 0, d.text()


def test_file_modes():
    """Issue 15, 9: with umask 022, sluice.db was 0644, readable by every local user."""
    old = os.umask(0o022)
    try:
        with Site("modes") as site:
            cfg = fast_site(site, ndev=3, interval="100ms")
            data = os.path.join(site.dir, "data")
            os.makedirs(data)
            os.chmod(data, 0o755)
            site.start_sim(["--config", cfg])
            site.start_subscriber("it/gw1/#")
            d = site.start_daemon(cfg)
            wait_for(lambda: len(seq_payloads(site)) > 30, 30, "first telemetry")
            assert "data_dir %s is mode 0755" % data in d.text(), d.text()
            assert d.text().count("is mode 0755") == 1, d.text()
            names = ["sluice.db", "sluice.db-wal", "sluice.db-shm", "sluice.lock", "sluice.seq",
                     "sluice.spill"]
            modes = {n: oct(os.stat(os.path.join(data, n)).st_mode & 0o7777) for n in names}
            assert set(modes.values()) == {"0o640"}, modes
            assert site.stop("sluiced", signal.SIGTERM, timeout=15) == 0, d.text()
            left = sorted(os.listdir(data))
            modes = {n: oct(os.stat(os.path.join(data, n)).st_mode & 0o7777) for n in left}
            assert "sluice.clean" in left and set(modes.values()) == {"0o640"}, modes
            sys.stdout.write("  umask 022, data_dir 0755: %s all 0640\n" % ", ".join(left))
    finally:
        os.umask(old)


if __name__ == "__main__":
    harness.main()
