#!/usr/bin/env python3
"""sluicectl against the database of a short run: sluice-sim serves the e2e site
(make_site) plus a meter that never answers; a threshold rule on the inlet's flow fires;
sluiced runs, then stops. Checked while it runs and after it stopped:

- status: running with a pid and an uptime, the uplink connected, the bus, every device
  with its state (the dead meter offline with its error), backlog, drops; --json is one
  valid object with the same facts, asked of the running daemon (source "sluiced",
  updated now); after SIGTERM: "not running", stopped, the stored status, the uplink
  as it was at the stop (a span that ends there, not a duration that keeps growing);
- alerts: the threshold alert and the dead meter's comms alert active, with severity,
  since and message; recent transitions (-n); --json;
- tail DEVICE: readings as a table whose columns line up, --json readings equal to what
  the broker received; an unknown device is an error that names the known ones;
- backlog: rows and age, --json;
- people tables line up in display columns with Chinese names (CJK = 2 columns);
- helpful errors: no database, a database without a status, permission denied;
- options before or after the command, for probe as for the others (`--json probe`);
- a FIFO in the place of the database, its WAL or the config is refused, not opened;
- sluicectl never writes: the database file is unchanged and no -wal/-shm appear
  after the daemon stopped.
"""

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Site, telemetry, wait_for  # noqa: E402
from test_e2e import e2e_site  # noqa: E402

EXTRA = """\
  - id: dead-meter
    name: 老城区 旧水表
    bus: site-tcp
    unit_id: 11
    profile: flowmeter-generic
    interval: 1s
    offline_after: 2
alerts:
  - id: inlet-flow-high
    kind: threshold
    name: 进水 流量 偏高
    point: inlet.flow
    above: 0.5
    severity: orange
"""


def ctl_argv(*args):
    argv = [os.path.join(harness.BIN, "sluicectl")] + list(args)
    if os.environ.get("SLUICECTL_VALGRIND") == "1":
        argv = ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
                "--errors-for-leak-kinds=all"] + argv
    return argv


def ctl(site, *args, rc=0):
    r = site.run(ctl_argv(*args))
    assert r.returncode == rc, "sluicectl %s: exit %d, wanted %d\nstdout:\n%s\nstderr:\n%s" % (
        " ".join(args), r.returncode, rc, r.stdout, r.stderr)
    return r


def ctl_json(site, *args):
    r = ctl(site, "--json", *args)
    text = r.stdout.strip()
    assert text.count("\n") == 0, "more than one line: %r" % r.stdout
    return json.loads(text)


def width(s):
    """Display columns: East Asian Wide and Fullwidth take 2."""
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def table(text, head):
    """The lines of the table whose header line starts with head (to the blank line)."""
    lines = text.split("\n")
    start = next(i for i, l in enumerate(lines) if l.lstrip().startswith(head))
    out = []
    for l in lines[start:]:
        if not l.strip():
            break
        out.append(l)
    return out


def column_starts(header):
    """Display-column offsets of each header word (headers are one or two words
    separated by single spaces; columns by two or more)."""
    starts, col, i = [], 0, 0
    while i < len(header):
        if header[i] != " " and (i == 0 or header[i - 2:i] == "  " or (i == 1 and header[0] == " ")):
            starts.append(col)
        col += width(header[i])
        i += 1
    return starts


def assert_aligned(lines, cols_left, may_be_empty=()):
    """Every left-aligned column's cell starts at the header's column: the text at that
    display column is preceded by two blanks (or is the line's start)."""
    starts = column_starts(lines[0])
    for line in lines[1:]:
        # display column -> character index
        idx, col = {}, 0
        for i, ch in enumerate(line):
            idx[col] = i
            col += width(ch)
        idx[col] = len(line)
        for c in cols_left:
            s = starts[c]
            assert s in idx, "column %d at %d cuts a wide character:\n%s" % (c, s, "\n".join(lines))
            i = idx[s]
            assert i == 0 or line[i - 1] == " ", "misaligned at column %d:\n%s" % (c, "\n".join(lines))
            if c in may_be_empty and (i >= len(line) or line[i] == " "):
                continue
            assert i < len(line) and line[i] != " ", \
                "column %d empty or shifted:\n%s" % (c, "\n".join(lines))


def uplink_line(out):
    return next(l for l in out.split("\n") if l.startswith("uplink    "))


def local(ms):
    """A real-time ms stamp as sluicectl prints it (local time, to the second)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms // 1000))


def db_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_sluicectl():
    with Site("ctl") as site:
        cfg = e2e_site(site)
        with open(cfg, "a", encoding="utf-8") as f:
            f.write(EXTRA)
        data = os.path.join(site.dir, "data")

        # before any run: no database
        r = ctl(site, "-c", cfg, "status", rc=1)
        assert "no database at %s/sluice.db: has sluiced run with this data_dir?" % data \
            in r.stderr, r.stderr
        ctl(site, "-D", data, "alerts", rc=1)
        r = ctl(site, "-c", cfg, "bogus", rc=2)
        assert "no command 'bogus'" in r.stderr, r.stderr

        site.start_sim(["--config", cfg, "--seed", "3", "--scenario", "dead-meter=dead"])
        site.start_subscriber("it/gw1/#")
        d = site.start_daemon(cfg)

        def status_ready():
            r = site.run(ctl_argv("-c", cfg, "--json", "status"))
            if r.returncode != 0:
                return None
            s = json.loads(r.stdout)
            devs = {x["id"]: x for x in s["devices"]}
            if (s["uplink"]["connected"] and devs["dead-meter"]["state"] == "offline"
                    and devs["inlet"]["state"] == "online" and devs["inlet"]["polls_ok"] >= 3
                    and s["alerts_firing"] >= 2):
                return s
            return None
        s = wait_for(status_ready, 60, "a status with the dead meter offline and 2 alerts", 0.5)

        # --- status while running -------------------------------------------------------
        assert s["running"] is True and s["state"] == "running", s
        # asked of the running daemon: as it is now, not as stored up to 5 s ago
        assert s["source"] == "sluiced", s
        live = ctl_json(site, "-c", cfg, "status")
        assert abs(live["updated"] - time.time() * 1000) < 1500, (live["updated"], time.time())
        assert s["pid"] == d.pid or harness.VALGRIND, (s["pid"], d.pid)
        assert s["gateway"] == "gw1" and s["version"], s
        assert 0 <= s["uptime_s"] < 120, s
        assert s["uplink"]["host"] == "127.0.0.1" and s["uplink"]["port"] == site.broker_port, s
        assert len(s["buses"]) == 1, s
        assert s["buses"][0]["id"] == "site-tcp" and s["buses"][0]["kind"] == "tcp", s
        assert s["buses"][0]["address"].startswith("127.0.0.1:"), s
        devs = {x["id"]: x for x in s["devices"]}
        assert set(devs) == {"inlet", "underpass", "mixed", "dead-meter"}, devs
        assert devs["inlet"]["name"] == "三号分区 进水流量计", devs["inlet"]
        dead = devs["dead-meter"]
        assert dead["state"] == "offline" and dead["polls_ok"] == 0 and dead["polls_failed"] >= 2, dead
        assert dead["last_error"] == "timeout", dead
        assert dead["since"] and dead["since"] <= time.time() * 1000, dead
        assert devs["inlet"]["last_poll"] > 0 and devs["inlet"]["since"], devs["inlet"]
        for k in ("backlog_rows", "backlog_age_s", "oldest_unsent_ts", "dropped", "rows",
                  "last_seq", "db_bytes"):
            assert isinstance(s[k], int) and s[k] >= 0, (k, s)
        assert s["dropped"] == 0 and s["last_seq"] > 0, s

        r = ctl(site, "-c", cfg, "status")
        out = r.stdout
        assert "gateway   gw1 (sluiced " in out, out
        assert "sluiced   running, pid %d, up " % s["pid"] in out, out
        assert "uplink    127.0.0.1:%d connected since " % site.broker_port in out, out
        assert "backlog   " in out and "dropped   0" in out, out
        assert "firing (sluicectl alerts)" in out, out
        bus = table(out, "BUS")
        assert bus[1].split() == ["site-tcp", "tcp", s["buses"][0]["address"]], bus
        assert_aligned(bus, [0, 1, 2])
        dev = table(out, "DEVICE")
        assert all(l == l.rstrip() for l in out.split("\n")), "trailing blanks:\n" + out
        assert len(dev) == 5, dev
        assert_aligned(dev, [0, 1, 2, 3], may_be_empty=[1])
        dline = next(l for l in dev if l.startswith("dead-meter"))
        assert "老城区 旧水表" in dline and " offline " in dline and dline.endswith("timeout"), dline
        iline = next(l for l in dev if l.startswith("inlet "))
        assert "三号分区 进水流量计" in iline and " online " in iline, iline

        # --- alerts ---------------------------------------------------------------------
        a = ctl_json(site, "-c", cfg, "alerts")
        active = {x["alert"]: x for x in a["active"]}
        assert set(active) >= {"inlet-flow-high/above", "comms-dead-meter/offline"}, active
        hi = active["inlet-flow-high/above"]
        assert hi["state"] == "firing" and hi["severity"] == "orange", hi
        assert hi["threshold"] == 0.5 and hi["value"] > 0.5 and hi["message"], hi
        assert hi["since"] <= hi["ts"] and hi["seq"] > 0, hi
        # the alerts the broker received are the ones sluicectl shows
        sub = [p for t, p in site.messages() if t == "it/gw1/alert/inlet-flow-high/above"]
        assert sub and sub[0]["seq"] == hi["seq"], (sub, hi)
        assert all(x["rule"] and x["state"] in ("firing", "resolved") for x in a["recent"]), a
        assert len(a["recent"]) >= 2, a
        a1 = ctl_json(site, "-c", cfg, "-n", "1", "alerts")
        assert len(a1["recent"]) == 1 and a1["recent"][0] == a["recent"][-1], (a1, a)

        out = ctl(site, "-c", cfg, "alerts").stdout
        assert "active alerts: %d" % len(a["active"]) in out, out
        act = table(out, "SEVERITY")
        assert_aligned(act, [0, 1, 2, 3, 4])
        line = next(l for l in act if "inlet-flow-high/above" in l)
        assert line.split()[0] == "orange" and hi["message"] in line, line
        rec = table(out, "TIME")
        assert len(rec) == 1 + len(a["recent"]), (rec, a["recent"])
        assert_aligned(rec, [0, 1, 2, 3, 4])

        # --- tail -----------------------------------------------------------------------
        # the live status may be ahead of the store by a commit (500 ms)
        t = wait_for(lambda: (lambda t: t if len(t["readings"]) == 3 else None)(
            ctl_json(site, "-c", cfg, "-n", "3", "tail", "inlet")), 10, "3 readings stored")
        assert t["device"] == "inlet" and len(t["readings"]) == 3, t
        seqs = [x["seq"] for x in t["readings"]]
        assert seqs == sorted(seqs), seqs
        assert set(t["readings"][0]["values"]) == {"flow", "velocity", "total", "pressure",
                                                   "alarm"}, t
        got = {p["seq"]: p for p in telemetry(site, "inlet")}
        for x in t["readings"]:
            if x["seq"] in got:
                assert got[x["seq"]] == x, (got[x["seq"]], x)
        out = ctl(site, "-c", cfg, "tail", "mixed", "-n", "4").stdout
        tl = out.rstrip("\n").split("\n")
        assert len(tl) == 5 and tl[0].startswith("TIME") and "label" in tl[0], out
        ends = {len(l) for l in tl}
        assert len(ends) == 1, "right-aligned columns should end together:\n" + out
        assert "SLUICE-SIM" in tl[1], out
        r = ctl(site, "-c", cfg, "tail", "no-such", rc=1)
        assert "no device 'no-such'" in r.stderr and "dead-meter" in r.stderr, r.stderr
        r = ctl(site, "-c", cfg, "tail", "dead-meter")
        assert "no readings of dead-meter stored" in r.stdout or "(timeout)" in r.stdout, r.stdout

        # --- backlog --------------------------------------------------------------------
        b = ctl_json(site, "-c", cfg, "backlog")
        assert set(b) >= {"backlog_rows", "backlog_age_s", "oldest_unsent_ts", "dropped"}, b
        out = ctl(site, "-D", data, "backlog").stdout
        assert "rows waiting for the broker" in out and "dropped   0" in out, out

        # --- options before or after any command ---------------------------------------
        after = json.loads(ctl(site, "status", "--json", "-c", cfg).stdout)
        assert after["gateway"] == "gw1" and after["running"] is True, after
        t = json.loads(ctl(site, "tail", "inlet", "-c", cfg, "-n", "2", "--json").stdout)
        assert len(t["readings"]) == 2, t
        before = json.loads(ctl(site, "--json", "-c", cfg, "probe", "inlet").stdout)
        inside = json.loads(ctl(site, "probe", "--json", "--config", cfg, "inlet").stdout)
        assert before["device"] == inside["device"] == "inlet", (before, inside)
        # sluiced polls the bus: the probe goes through it
        assert before["via"] == inside["via"] == "sluiced", (before, inside)
        assert [p["name"] for p in before["points"]] == [p["name"] for p in inside["points"]]
        out = ctl(site, "-c", cfg, "probe", "inlet").stdout
        assert out.startswith("device inlet on bus site-tcp"), out
        r = ctl(site, "-D", data, "probe", "inlet", rc=2)
        assert "-D (--data-dir) is for status, alerts, backlog and tail, not probe" in r.stderr, \
            r.stderr
        assert "usage: sluicectl probe" in ctl(site, "--help", "probe").stdout

        # --- stopped --------------------------------------------------------------------
        rc = site.stop("sluiced", signal.SIGTERM, timeout=15)
        assert rc == 0, d.text()
        db = os.path.join(data, "sluice.db")
        before = db_digest(db)
        s2 = ctl_json(site, "-c", cfg, "status")
        assert s2["running"] is False and s2["state"] == "stopped", s2
        assert s2["source"] == "stored", s2
        assert s2["backlog_rows"] == 0, s2
        out = ctl(site, "-c", cfg, "status").stdout
        assert "sluiced   not running: stopped at " in out, out
        assert "as last seen at " in out, out
        # the uplink as it was when the daemon stopped: a span that ends there, not a
        # "connected since" that keeps growing after the stop
        up = uplink_line(out)
        assert up.startswith("uplink    127.0.0.1:%d was connected from %s until sluiced "
                             "stopped at %s (" % (site.broker_port,
                                                  local(s2["uplink"]["since"]),
                                                  local(s2["updated"]))), up
        time.sleep(2.1)
        assert uplink_line(ctl(site, "-c", cfg, "status").stdout) == up, "the line changed"
        assert_aligned(table(out, "DEVICE"), [0, 1, 2, 3], may_be_empty=[1])
        a2 = ctl_json(site, "-c", cfg, "alerts")
        assert {x["alert"] for x in a2["active"]} == set(active), (a2, active)
        t2 = ctl_json(site, "-c", cfg, "tail", "underpass")
        under = telemetry(site, "underpass")
        assert len(under) >= 3 and t2["readings"] == under[-10:], (t2, under)
        ctl_json(site, "-c", cfg, "backlog")
        assert db_digest(db) == before, "sluicectl changed the database"
        assert not os.path.exists(db + "-wal") and not os.path.exists(db + "-shm"), \
            os.listdir(data)

        # a daemon that died without a word: its pid is gone
        con = sqlite3.connect(db)
        snap = json.loads(con.execute("SELECT value FROM meta WHERE key='status'").fetchone()[0])
        snap["running"] = True
        snap["pid"] = 999999999 if not os.path.exists("/proc/999999") else 2 ** 22 + 12345
        con.execute("UPDATE meta SET value=? WHERE key='status'", (json.dumps(snap),))
        con.commit()
        con.close()
        s3 = ctl_json(site, "-c", cfg, "status")
        assert s3["running"] is False and s3["state"] == "gone", s3
        out = ctl(site, "-c", cfg, "status").stdout
        assert "not running: pid %d is gone" % snap["pid"] in out, out
        assert " and still when last seen at %s (" % local(snap["updated"]) in uplink_line(out), out
        # alive but not updating (our own pid stands in for a stuck daemon)
        snap["pid"] = os.getpid()
        snap["updated"] = int(time.time() * 1000) - 10 * 60 * 1000
        con = sqlite3.connect(db)
        con.execute("UPDATE meta SET value=? WHERE key='status'", (json.dumps(snap),))
        # the daemon never ran (no status): a helpful error
        con.commit()
        con.close()
        s4 = ctl_json(site, "-c", cfg, "status")
        assert s4["state"] == "stale" and s4["running"] is False, s4
        assert "not running: no status since " in ctl(site, "-c", cfg, "status").stdout

        con = sqlite3.connect(db)
        con.execute("DELETE FROM meta WHERE key='status'")
        con.commit()
        con.close()
        r = ctl(site, "-c", cfg, "status", rc=1)
        assert "sluiced has not run with %s yet" % data in r.stderr, r.stderr
        ctl(site, "-c", cfg, "backlog")  # needs no status

        # permission denied, as a user who may not read the data directory
        if os.geteuid() == 0:
            os.chmod(data, 0o700)
            r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
                               + ctl_argv("-D", data, "status"),
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 1 and "ermission denied" in r.stderr, (r.returncode, r.stderr)


def test_fifo_refused():
    """A FIFO where sluicectl expects a file it did not create — the database, its WAL,
    the config — is refused at once with a message; opening one would wait for a writer
    for ever."""
    with Site("ctl-fifo") as site:
        cfg = e2e_site(site)
        data = os.path.join(site.dir, "data")
        os.makedirs(data, exist_ok=True)
        db = os.path.join(data, "sluice.db")
        os.mkfifo(db)
        for args in (["-D", data, "status"], ["-c", cfg, "backlog"]):
            r = site.run(ctl_argv(*args), timeout=20)
            assert r.returncode == 1, (args, r.returncode, r.stdout, r.stderr)
            assert "%s is a FIFO (named pipe), not a database file" % db in r.stderr, r.stderr
        fifo_cfg = os.path.join(site.dir, "fifo.yaml")
        os.mkfifo(fifo_cfg)
        r = site.run(ctl_argv("-c", fifo_cfg, "status"), timeout=20)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        assert "%s: is not a regular file" % fifo_cfg in r.stderr, r.stderr
        r = site.run([os.path.join(harness.BIN, "sluiced"), "--check-config", fifo_cfg],
                     timeout=20)
        assert r.returncode == 78 and "is not a regular file" in r.stderr, (r.returncode,
                                                                           r.stderr)


if __name__ == "__main__":
    harness.main()
