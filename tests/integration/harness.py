"""Test harness for sluice's integration tests: real pieces on loopback.

Starts a mosquitto broker on a free 127.0.0.1 port, sluice-sim, sluiced, and a
persistent-session subscriber (mosquitto_sub), each by its process id, with bounded
waits; stops everything it started in `close()` (also on failure), printing the logs
of whatever was running when a test fails. A test is written

    def test_something():
        with Site("something") as site:
            ...

    if __name__ == "__main__":
        harness.main()

and each test gets its own temporary directory and its own free ports, so that test
files can run side by side (tests/integration/run).

Only 127.0.0.1 and ::1 are ever used.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SLUICE_BIN", os.path.join(TOP, "build"))
VALGRIND = os.environ.get("SLUICE_VALGRIND", "") == "1"


_claims = []


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A port nothing listens on now, and no other test of ours has: a test takes
    several before it starts what listens on them, and tests run side by side. Each
    port is claimed, until this process exits, by an abstract unix socket named after
    it (released by the kernel however the process ends)."""
    while True:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            claim.bind("\0sluice-it-port-%d" % port)
        except OSError:
            claim.close()
            continue  # given to this test or another one before
        _claims.append(claim)
        return port


def wait_for(pred, timeout, what, interval=0.05):
    """Poll pred() until it returns a true value or timeout seconds pass."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Proc:
    """A child process with its output in a file."""

    def __init__(self, name, argv, logpath, env=None, stdout_pipe=False, stdout_path=None):
        self.name = name
        self.logpath = logpath
        self.log = open(logpath, "ab")
        out = self.log
        if stdout_pipe:
            out = subprocess.PIPE
        elif stdout_path:
            out = open(stdout_path, "ab")
        self.p = subprocess.Popen(
            argv, stdout=out, stderr=self.log, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )
        if stdout_path:
            out.close()

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def send(self, sig):
        if self.alive():
            os.kill(self.p.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal, wait up to timeout, then SIGKILL. Returns the exit status."""
        if self.alive():
            os.kill(self.p.pid, sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
        if self.p.stdout:
            self.p.stdout.close()
        self.log.close()
        return self.p.returncode

    def text(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class Site:
    """One test site: a temp dir, a broker, a sim, a daemon, a subscriber. Used as a
    context manager, it closes when the block ends, and keeps its directory and
    prints its logs when the block ends by an exception."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="sluice-it-%s-" % name)
        self.procs = {}
        self.broker_port = None
        self.failed = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.failed = True
        self.close()
        return False

    # -- broker -----------------------------------------------------------------

    def start_broker(self, port=None, extra=""):
        self.broker_port = port or self.broker_port or free_port()
        persist = os.path.join(self.dir, "broker") + "/"
        os.makedirs(persist, exist_ok=True)
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(
                "listener %d 127.0.0.1\n"
                "allow_anonymous true\n"
                "persistence true\n"
                "persistence_location %s\n"
                "autosave_interval 1\n"
                # the default 1000 silently drops messages to a subscriber that lags
                # behind a drain
                "max_queued_messages 0\n"
                "max_inflight_messages 100\n"
                "log_type error\nlog_type warning\nlog_type notice\n" % (self.broker_port, persist)
            )
            if os.geteuid() == 0:
                # as root mosquitto drops to the mosquitto user, which cannot reach a
                # private temp dir
                f.write("user root\n")
            f.write(extra)
        pr = Proc("mosquitto", ["mosquitto", "-c", conf], os.path.join(self.dir, "mosquitto.log"))
        self.procs["mosquitto"] = pr
        wait_for(lambda: port_open(self.broker_port) or not pr.alive(), 10, "mosquitto to listen")
        if not pr.alive():
            raise AssertionError("mosquitto exited:\n" + pr.text())
        return pr

    def stop_broker(self):
        pr = self.procs.pop("mosquitto", None)
        if pr:
            pr.stop(signal.SIGTERM)

    # -- subscriber -------------------------------------------------------------

    def start_subscriber(self, topic, client_id="sluice-it-sub"):
        """mosquitto_sub with a persistent session: clean session off, fixed id, QoS 1,
        so that every message queued while it was away reaches it."""
        out = os.path.join(self.dir, "sub.out")
        argv = [
            "mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.broker_port),
            "-i", client_id, "-c", "-q", "1", "-v", "-t", topic, "-k", "5",
        ]
        self.sub_out = out
        pr = Proc("sub", argv, os.path.join(self.dir, "sub.log"), stdout_path=out)
        self.procs["sub"] = pr
        return pr

    def messages(self):
        """[(topic, payload-dict-or-text)] received so far."""
        out = []
        try:
            with open(self.sub_out, "rb") as f:
                data = f.read().decode("utf-8")
        except OSError:
            return out
        for line in data.split("\n"):
            if not line or " " not in line:
                continue
            topic, payload = line.split(" ", 1)
            try:
                out.append((topic, json.loads(payload)))
            except ValueError:
                # a partial last line, still being written
                continue
        return out

    # -- sim and daemon -----------------------------------------------------------

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def copy_profiles(self, *names):
        """The shipped device profiles (config/devices/NAME.yaml; all of them when none
        is named) copied to devices/ in the site's directory, where sluiced and the sim
        look, beside the config. Returns that directory."""
        src = os.path.join(TOP, "config", "devices")
        dst = os.path.join(self.dir, "devices")
        os.makedirs(dst, exist_ok=True)
        for fn in [n + ".yaml" for n in names] or os.listdir(src):
            shutil.copyfile(os.path.join(src, fn), os.path.join(dst, fn))
        return dst

    def start_sim(self, args, name="sim"):
        pr = Proc(name, [os.path.join(BIN, "sluice-sim")] + args,
                  os.path.join(self.dir, name + ".log"), stdout_pipe=True)
        self.procs[name] = pr
        line = wait_for(lambda: self._readline(pr), 20, "sluice-sim to be ready")
        if "ready" not in line:
            raise AssertionError("sluice-sim said %r:\n%s" % (line, pr.text()))
        return pr

    @staticmethod
    def _readline(pr):
        if not pr.alive():
            raise AssertionError("%s exited early:\n%s" % (pr.name, pr.text()))
        import select
        r, _, _ = select.select([pr.p.stdout], [], [], 0.05)
        if r:
            return pr.p.stdout.readline().decode() or "EOF"
        return None

    def daemon_argv(self, config):
        argv = [os.path.join(BIN, "sluiced"), "-c", config]
        if VALGRIND:
            argv = ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
                    "--errors-for-leak-kinds=definite,indirect",
                    "--log-file=" + os.path.join(self.dir, "valgrind.%p.log")] + argv
        return argv

    def start_pty_pair(self, name="socat"):
        """A pseudo-terminal pair joined by socat, as a serial line for RTU tests:
        returns the paths of its two ends (links in the site's directory)."""
        a = os.path.join(self.dir, "ttyA")
        b = os.path.join(self.dir, "ttyB")
        pr = Proc(name, ["socat", "-d", "-d", "pty,raw,echo=0,link=" + a,
                         "pty,raw,echo=0,link=" + b],
                  os.path.join(self.dir, name + ".log"))
        self.procs[name] = pr
        wait_for(lambda: (os.path.exists(a) and os.path.exists(b)) or not pr.alive(), 10,
                 "socat's pty pair")
        if not pr.alive():
            raise AssertionError("socat exited:\n" + pr.text())
        return a, b

    def start_daemon(self, config, name="sluiced"):
        pr = Proc(name, self.daemon_argv(config), os.path.join(self.dir, name + ".log"))
        self.procs[name] = pr
        return pr

    def stop(self, name, sig=signal.SIGTERM, timeout=10):
        pr = self.procs.pop(name, None)
        if pr is None:
            return None
        return pr.stop(sig, timeout)

    def run(self, argv, timeout=60):
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def close(self):
        # the last started first: it may need what was started before it (a sim needs
        # the other end of its pty pair to stop promptly, a daemon its broker)
        for name in reversed(list(self.procs)):
            self.procs.pop(name).stop(signal.SIGTERM, 5)
        if self.failed or os.environ.get("SLUICE_KEEP"):
            sys.stderr.write("kept %s\n" % self.dir)
            for fn in sorted(os.listdir(self.dir)):
                if fn.endswith(".log"):
                    with open(os.path.join(self.dir, fn), "rb") as f:
                        tail = f.read()[-4000:].decode("utf-8", "replace")
                    sys.stderr.write("----- %s (tail) -----\n%s\n" % (fn, tail))
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def payloads(site, topic, gateway="it/gw1"):
    """The payloads received so far on gateway/topic ("telemetry/inlet"), in order."""
    want = gateway + "/" + topic
    return [p for t, p in site.messages() if t == want]


def telemetry(site, device):
    """device's telemetry received so far, in order."""
    return payloads(site, "telemetry/" + device)


def trace_records(path):
    """The lines of a sluice-sim --trace file, parsed; a partial last line (the sim is
    still writing it) is left out."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def load_trace(path):
    """{(unit, point): [values, in the order served]} from a sluice-sim --trace file."""
    served = {}
    for rec in trace_records(path):
        for k, v in rec["values"].items():
            served.setdefault((rec["unit"], k), []).append(v)
    return served


def config_yaml(site, gw_id, broker_port, buses, devices, extra="", prefix="it"):
    """A sluiced config for a loopback site."""
    return (
        "gateway:\n"
        "  id: %s\n"
        "  name: 测试站 %s\n"
        "  timezone: Asia/Shanghai\n"
        "  data_dir: %s\n"
        "  log_level: info\n"
        "uplink:\n"
        "  host: 127.0.0.1\n"
        "  port: %d\n"
        "  topic_prefix: %s\n"
        "  qos: 1\n"
        "  keepalive: 5s\n"
        "  inflight: 32\n"
        "  health_interval: 5s\n"
        "buffer:\n"
        "  max_size: 64MiB\n"
        "  durability: normal\n"
        "  keep_sent: 1d\n"
        "buses:\n%s"
        "devices:\n%s%s"
        % (gw_id, gw_id, os.path.join(site.dir, "data"), broker_port, prefix, buses, devices, extra)
    )


def run_tests(tests):
    """Run test functions (those named on the command line, if any); print a closing
    'N passed, N failed' line; return the exit status."""
    passed = failed = 0
    only = sys.argv[1:]
    unknown = set(only) - {t.__name__ for t in tests}
    if unknown:
        sys.stderr.write("no such test here: %s\n" % ", ".join(sorted(unknown)))
        return 2
    for t in tests:
        if only and t.__name__ not in only:
            continue
        start = time.monotonic()
        sys.stdout.write("[ RUN  ] %s\n" % t.__name__)
        sys.stdout.flush()
        try:
            t()
        except Exception as e:  # noqa: BLE001 - report every failure the same way
            failed += 1
            sys.stdout.write("[ FAIL ] %s (%.1fs): %s: %s\n" % (t.__name__, time.monotonic() - start,
                                                             type(e).__name__, e))
        else:
            passed += 1
            sys.stdout.write("[  OK  ] %s (%.1fs)\n" % (t.__name__, time.monotonic() - start))
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def main():
    """A test file's runner: its test_* functions, in the order they are written (or
    those named on the command line); exits with the status of run_tests."""
    mod = sys.modules["__main__"]
    tests = [f for name, f in vars(mod).items()
             if name.startswith("test_") and callable(f) and f.__module__ == "__main__"]
    tests.sort(key=lambda f: f.__code__.co_firstlineno)
    sys.exit(run_tests(tests))
