"""The systemd side of an installed sluice: the unit, sysusers.d, tmpfiles.d, make install.

  - `systemd-analyze verify` is clean on the unit as `make install` writes it (its
    ExecStart must exist, so the install goes to a temporary PREFIX holding the built
    binaries), with the man pages its Documentation= names findable;
  - `systemd-analyze security --offline=yes` rates the sandbox no worse than EXPOSURE_MAX,
    so a lost hardening line fails here;
  - systemd-sysusers and systemd-tmpfiles, run on a scratch --root, create the sluice
    user and group and /var/lib/sluice 0750 sluice:sluice;
  - tools/install.sh puts every file where the README and docs/operations.md say, rewrites the unit's
    paths to PREFIX, and keeps an existing /etc/sluice/sluice.yaml.

Needs systemd's tools (Debian package `systemd`); without them the systemd checks are
skipped with a message. Touches nothing outside its temporary directory.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

import harness

TOP = harness.TOP
BIN = os.path.abspath(harness.BIN)
UNIT = os.path.join(TOP, "systemd", "sluiced.service")
EXPOSURE_MAX = 2.0
TIMEOUT = 60


def have(tool):
    if shutil.which(tool):
        return True
    sys.stderr.write("skipped: %s is not installed (Debian package systemd)\n" % tool)
    return False


def run(argv, env=None, ok=(0,)):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                       timeout=TIMEOUT, cwd=TOP)
    out = p.stdout.decode("utf-8", "replace")
    if p.returncode not in ok:
        raise AssertionError("%s: exit %d\n%s" % (" ".join(argv), p.returncode, out))
    return out


def install_to(tmp, prefix, destdir="", sysconfdir=None):
    env = dict(os.environ, DESTDIR=destdir, PREFIX=prefix, B=BIN)
    if sysconfdir:
        env["SYSCONFDIR"] = sysconfdir
    return run([os.path.join(TOP, "tools", "install.sh")], env=env)


def man_env(tmp):
    """MANPATH with man1/man5/man8 holding the source tree's pages, so that verify's
    check of Documentation=man:... finds them before they are installed."""
    root = os.path.join(tmp, "man")
    for sec, page in (("1", "sluicectl.1"), ("5", "sluice.yaml.5"), ("8", "sluiced.8")):
        d = os.path.join(root, "man" + sec)
        os.makedirs(d, exist_ok=True)
        dst = os.path.join(d, page)
        if not os.path.exists(dst):
            os.symlink(os.path.join(TOP, "man", page), dst)
    return dict(os.environ, MANPATH=root)


def man_opt():
    """verify looks up Documentation=man:... with man(1); without man-db it cannot."""
    if shutil.which("man"):
        return "--man=yes"
    sys.stderr.write("note: man is not installed; verify does not check Documentation=\n")
    return "--man=no"


def test_man_pages():
    """The pages render without a warning from groff, and mandoc's lint (when present)."""
    pages = [os.path.join(TOP, "man", p) for p in ("sluiced.8", "sluicectl.1", "sluice.yaml.5",
                                                   "sluice-sim.1")]
    if not shutil.which("groff") and not shutil.which("mandoc"):
        sys.stderr.write("skipped: neither groff nor mandoc is installed\n")
        return
    for page in pages:
        if shutil.which("groff"):
            p = subprocess.run(["groff", "-k", "-man", "-Tutf8", "-ww", "-z", page],
                               stderr=subprocess.PIPE, timeout=TIMEOUT)
            err = p.stderr.decode("utf-8", "replace")
            assert p.returncode == 0 and err == "", "groff on %s:\n%s" % (page, err)
        if shutil.which("mandoc"):
            out = run(["mandoc", "-T", "lint", "-W", "warning", page], ok=(0, 1, 2, 3, 4))
            assert out.strip() == "", "mandoc -T lint on %s:\n%s" % (page, out)


def test_verify_installed_unit():
    if not have("systemd-analyze"):
        return
    with tempfile.TemporaryDirectory(prefix="sluice-unit-") as tmp:
        prefix = os.path.join(tmp, "usr")
        install_to(tmp, prefix, sysconfdir=os.path.join(tmp, "etc"))
        unit = os.path.join(prefix, "lib", "systemd", "system", "sluiced.service")
        text = open(unit, encoding="utf-8").read()
        exe = os.path.join(prefix, "sbin", "sluiced")
        assert "ExecStart=%s -c /etc/sluice/sluice.yaml\n" % exe in text, text
        assert "ExecStartPre=%s --check-config" % exe in text, text
        assert "=/usr/sbin/sluiced" not in text, "an Exec line not rewritten to PREFIX"
        out = run(["systemd-analyze", "verify", man_opt(), unit], env=man_env(tmp), ok=(0, 1))
        assert out.strip() == "", "systemd-analyze verify is not clean:\n" + out


def test_verify_catches_a_missing_binary():
    """The check above can fail: a unit whose ExecStart does not exist is reported."""
    if not have("systemd-analyze"):
        return
    with tempfile.TemporaryDirectory(prefix="sluice-unit-") as tmp:
        unit = os.path.join(tmp, "sluiced.service")
        with open(UNIT, encoding="utf-8") as f, open(unit, "w", encoding="utf-8") as g:
            g.write(f.read().replace("/usr/sbin/sluiced", os.path.join(tmp, "nonexistent")))
        out = run(["systemd-analyze", "verify", man_opt(), unit], env=man_env(tmp), ok=(0, 1))
        assert "nonexistent" in out, "verify did not notice a missing ExecStart:\n" + out


def test_unit_settings():
    """What the issue asks of the unit, read from the source file."""
    text = open(UNIT, encoding="utf-8").read()
    lines = {l.strip() for l in text.splitlines()}
    for want in ("Type=notify", "Restart=on-failure", "RestartPreventExitStatus=78",
                 "ExecReload=/bin/kill -HUP $MAINPID", "User=sluice", "Group=sluice",
                 "StateDirectory=sluice", "ConfigurationDirectory=sluice",
                 "RuntimeDirectory=sluice", "RuntimeDirectoryMode=0750",
                 "SupplementaryGroups=dialout", "ProtectSystem=strict", "ProtectHome=yes",
                 "PrivateTmp=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet=",
                 "SystemCallFilter=@system-service", "DevicePolicy=closed",
                 "MemoryDenyWriteExecute=yes", "UMask=0027"):
        assert want in lines, "sluiced.service lacks %s" % want
    assert re.search(r"^WatchdogSec=\d+s$", text, re.M), "no WatchdogSec="
    m = re.search(r"^LimitNOFILE=(\d+)$", text, re.M)
    assert m and int(m.group(1)) >= 8192, "LimitNOFILE= too low for thousands of devices"
    m = re.search(r"^RestrictAddressFamilies=(.*)$", text, re.M)
    fams = set(m.group(1).split()) if m else set()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= fams and "AF_PACKET" not in fams, fams


def test_security_exposure():
    if not have("systemd-analyze"):
        return
    with tempfile.TemporaryDirectory(prefix="sluice-unit-") as tmp:
        unit = os.path.join(tmp, "sluiced.service")
        with open(UNIT, encoding="utf-8") as f, open(unit, "w", encoding="utf-8") as g:
            g.write(f.read().replace("/usr/sbin/sluiced", os.path.join(BIN, "sluiced")))
        out = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit],
                  ok=(0, 1))
        m = re.search(r"Overall exposure level for sluiced\.service: ([0-9.]+)", out)
        assert m, "no exposure level in:\n" + out
        level = float(m.group(1))
        sys.stdout.write("    exposure %.1f (at most %.1f)\n" % (level, EXPOSURE_MAX))
        assert level <= EXPOSURE_MAX, "exposure %.1f > %.1f:\n%s" % (level, EXPOSURE_MAX, out)


def test_sysusers_and_tmpfiles():
    if not have("systemd-sysusers") or not have("systemd-tmpfiles"):
        return
    with tempfile.TemporaryDirectory(prefix="sluice-unit-") as root:
        os.makedirs(os.path.join(root, "etc"))
        run(["systemd-sysusers", "--root=" + root, os.path.join(TOP, "systemd", "sluice.sysusers")])
        passwd = open(os.path.join(root, "etc", "passwd"), encoding="utf-8").read()
        group = open(os.path.join(root, "etc", "group"), encoding="utf-8").read()
        m = re.search(r"^sluice:x:(\d+):(\d+):[^:]*:/var/lib/sluice:[^:]*nologin$", passwd, re.M)
        assert m, "no sluice user with home /var/lib/sluice:\n" + passwd
        uid, gid = int(m.group(1)), int(m.group(2))
        assert uid < 1000, "sluice is not a system user (uid %d)" % uid
        assert re.search(r"^sluice:x:%d:" % gid, group, re.M), group
        run(["systemd-tmpfiles", "--root=" + root, "--create",
             os.path.join(TOP, "systemd", "sluice.tmpfiles")])
        st = os.stat(os.path.join(root, "var", "lib", "sluice"))
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o750, uid, gid), \
            "/var/lib/sluice is %o %d:%d" % (st.st_mode & 0o7777, st.st_uid, st.st_gid)


def test_install_layout():
    with tempfile.TemporaryDirectory(prefix="sluice-install-") as dest:
        install_to(dest, "/usr", destdir=dest)
        want = {
            "usr/sbin/sluiced": 0o755, "usr/bin/sluicectl": 0o755, "usr/bin/sluice-sim": 0o755,
            "usr/lib/systemd/system/sluiced.service": 0o644,
            "usr/lib/sysusers.d/sluice.conf": 0o644, "usr/lib/tmpfiles.d/sluice.conf": 0o644,
            "usr/share/man/man1/sluicectl.1": 0o644, "usr/share/man/man1/sluice-sim.1": 0o644,
            "usr/share/man/man5/sluice.yaml.5": 0o644,
            "usr/share/man/man8/sluiced.8": 0o644,
            "usr/share/doc/sluice/examples/sluice.example.yaml": 0o644,
            "usr/share/doc/sluice/README.md": 0o644,
            "usr/share/sluice/devices/flowmeter-generic.yaml": 0o644,
            "etc/sluice/sluice.yaml": 0o644,
        }
        for rel, mode in want.items():
            p = os.path.join(dest, rel)
            assert os.path.isfile(p), "make install did not install /%s" % rel
            assert os.stat(p).st_mode & 0o777 == mode, "/%s has mode %o" % (rel, os.stat(p).st_mode)
        profiles = sorted(os.listdir(os.path.join(TOP, "config", "devices")))
        assert sorted(os.listdir(os.path.join(dest, "usr/share/sluice/devices"))) == profiles
        unit = open(os.path.join(dest, "usr/lib/systemd/system/sluiced.service"),
                    encoding="utf-8").read()
        assert "ExecStart=/usr/sbin/sluiced -c /etc/sluice/sluice.yaml" in unit

        # a second install keeps the operator's config
        conf = os.path.join(dest, "etc/sluice/sluice.yaml")
        with open(conf, "w", encoding="utf-8") as f:
            f.write("# the site's own\n")
        out = install_to(dest, "/usr", destdir=dest)
        assert open(conf, encoding="utf-8").read() == "# the site's own\n", \
            "make install overwrote /etc/sluice/sluice.yaml"
        assert "keeping" in out, out

    with tempfile.TemporaryDirectory(prefix="sluice-install-") as dest:
        install_to(dest, "/usr/local", destdir=dest)
        unit = open(os.path.join(dest, "usr/local/lib/systemd/system/sluiced.service"),
                    encoding="utf-8").read()
        assert "ExecStart=/usr/local/sbin/sluiced -c /etc/sluice/sluice.yaml" in unit, unit
        assert os.path.isfile(os.path.join(dest, "etc/sluice/sluice.yaml")), \
            "the config goes to /etc whatever PREFIX"


if __name__ == "__main__":
    harness.main()
