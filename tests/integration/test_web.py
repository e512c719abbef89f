#!/usr/bin/env python3
"""The technicians' page (web:), in a real browser: Debian's headless Chromium over the
DevTools protocol, against sluiced, sluice-sim and mosquitto on loopback.

- without a session: the API answers 401 and the page is the login form (401); a wrong
  password 401, the next try within the wait 429 with Retry-After, the right one a
  session cookie (HttpOnly, SameSite=Strict) and the page; a POST without the page's
  CSRF token, or from another Origin, 403; logout ends the session;
- in Chromium, logged in through the form: the overview shows the gateway, the uplink
  connected, the Chinese device names, live values that change, the dead device
  offline with its error, the firing alert in its colour; English on a click; the
  device page a plot of each point's history and, on a click, its raw registers read
  through sluiced; the alerts page the active alert and the recent transitions; the
  probe form reads through sluiced and shows every 32-bit order; no script error, no
  request outside the box; a screenshot of the overview (SLUICE_WEB_SCREENSHOT=PATH
  keeps it: docs/web-overview.png is made so);
- the JSON API's shapes: /api/status, /api/devices/<id> (404 for none), /api/alerts,
  /api/probe (a device's registers, a raw read, a dead unit's error, a bad body 400);
  a reload (SIGHUP) keeps the page and its sessions;
- HTTPS with a test certificate: served over TLS, the cookie Secure, Chromium loads it;
- without a password on loopback: no login, Chromium's --dump-dom shows the devices,
  and a Host that is not loopback is refused (DNS rebinding);
- a port already taken: logged, and sluiced runs on without the page;
- --check-config refuses web: on 0.0.0.0 without password_file, a password file others
  can read, a line that is not user:$6$..., and warns of a port below 1024.
"""

import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from cdp import Browser, CHROMIUM, chromium_skip  # noqa: E402
from harness import Site, free_port, wait_for  # noqa: E402
from test_e2e import e2e_site  # noqa: E402

# a device the sim does not serve (offline after 2 polls) and an alert that fires at once
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

PASSWORD = "jing-3-hao"


def password_file(site, user="tech", password=PASSWORD, mode=0o640):
    h = subprocess.run(["openssl", "passwd", "-6", password], capture_output=True, text=True,
                       check=True).stdout.strip()
    path = site.write("web.password", "# the page's users\n%s:%s\n" % (user, h))
    os.chmod(path, mode)
    return path


def web_site(site, web):
    """The e2e site with a dead device, an alert, and web: (its YAML lines); the sim
    started; returns the config's path."""
    cfg = e2e_site(site)
    with open(cfg, encoding="utf-8") as f:
        text = f.read()
    sim_cfg = site.write("sim.yaml", text)
    site.start_sim(["--config", sim_cfg, "--seed", "7"])
    return site.write("sluice.yaml", text + EXTRA + "web:\n" + web)


def request(port, method, path, body=None, headers=None, tls=None):
    """(status, headers {lowercase: value}, body bytes) of one request."""
    if tls:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=tls)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def get_json(port, path, cookie=None, tls=None):
    st, hd, body = request(port, "GET", path, headers={"Cookie": cookie} if cookie else {},
                           tls=tls)
    assert hd.get("content-type", "").startswith("application/json"), (path, st, hd)
    return st, json.loads(body)


def login(port, user="tech", password=PASSWORD, tls=None):
    body = "user=%s&password=%s" % (user, password)
    return request(port, "POST", "/login", body=body, tls=tls,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})


def session_cookie(headers):
    m = re.match(r"(sluice_session=[0-9a-f]{64});", headers.get("set-cookie", ""))
    assert m, headers
    return m.group(1)


def wait_page(port):
    wait_for(lambda: harness.port_open(port), 30, "the page to listen")


def skip_without_chromium():
    why = chromium_skip()
    if why:
        print("SKIP: %s: the browser part of this test does not run" % why)
    return why


def check_headers(hd):
    csp = hd.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
    assert "unsafe-inline" not in csp, csp
    assert hd.get("x-content-type-options") == "nosniff", hd
    assert hd.get("referrer-policy") == "same-origin", hd


def check_api(port, cookie):
    """The JSON API's shapes, and the probe through sluiced."""
    st, s = get_json(port, "/api/status", cookie)
    assert st == 200, s
    assert set(s) >= {"gateway", "now", "uplink", "buses", "devices", "alerts"}, s
    assert s["gateway"]["id"] == "gw1" and s["gateway"]["name"] == "测试站 gw1", s["gateway"]
    assert set(s["uplink"]) >= {"host", "port", "connected", "since", "backlog",
                                "backlog_age_s", "dropped", "not_stored", "set_aside"}, s
    assert s["uplink"]["connected"] is True, s["uplink"]
    devs = {d["id"]: d for d in s["devices"]}
    assert set(devs) == {"inlet", "underpass", "mixed", "dead-meter"}, devs
    inlet = devs["inlet"]
    assert inlet["name"] == "三号分区 进水流量计" and inlet["state"] == "online", inlet
    flow = [p for p in inlet["points"] if p["name"] == "flow"][0]
    assert flow["unit"] == "m3/h" and isinstance(flow["value"], float), flow
    dead = devs["dead-meter"]
    assert dead["state"] == "offline" and dead["last_error"], dead
    assert all("error" in p for p in dead["points"]), dead
    firing = [a for a in s["alerts"] if a["rule"] == "inlet-flow-high"]
    assert firing and firing[0]["severity"] == "orange" and firing[0]["state"] == "firing", s
    assert firing[0]["name"] == "进水 流量 偏高", firing

    st, d = get_json(port, "/api/devices/inlet", cookie)
    assert st == 200 and set(d) >= {"device", "history"}, d
    pts = {p["name"]: p for p in d["device"]["points"]}
    assert pts["flow"]["table"] == "holding" and pts["flow"]["type"] == "float32", pts
    assert pts["total"]["regs"] == 4 and pts["total"]["order"] == "ABCDEFGH", pts
    h = d["history"]
    assert h["readings"] >= 2 and h["from"] < h["to"], h
    series = {x["point"]: x for x in h["series"]}
    assert len(series["flow"]["t"]) == len(series["flow"]["v"]) >= 2, series["flow"]
    st, e = get_json(port, "/api/devices/nope", cookie)
    assert st == 404 and e["error"] == "not_found", e
    st, e = get_json(port, "/api/devices/..%2Fetc", cookie)
    assert st == 404, e

    st, a = get_json(port, "/api/alerts", cookie)
    assert st == 200 and set(a) >= {"active", "recent"}, a
    assert any(x["rule"] == "inlet-flow-high" for x in a["active"]), a
    assert any(x["rule"] == "inlet-flow-high" and x["state"] == "firing" for x in a["recent"]), a

    st, sess = get_json(port, "/api/session", cookie)
    assert st == 200 and sess["login"] is True and sess["user"] == "tech", sess
    csrf = sess["csrf"]
    hdr = {"Cookie": cookie, "Content-Type": "application/json", "X-Sluice-CSRF": csrf}

    def probe(body, headers=hdr):
        st, hd, raw = request(port, "POST", "/api/probe", body=json.dumps(body), headers=headers)
        return st, json.loads(raw)

    st, p = probe({"device": "inlet"})
    assert st == 200 and p["points"] == ["flow", "velocity", "total", "pressure", "alarm"], p
    assert p["probe"]["ok"] and p["probe"]["via"] == "sluiced", p
    assert [r["count"] for r in p["probe"]["reads"]] == [2, 2, 4, 2, 1], p
    assert all(len(r["registers"]) == r["count"] for r in p["probe"]["reads"]), p
    st, p = probe({"bus": "site-tcp", "unit": 1,
                   "reads": [{"table": "holding", "address": 0, "count": 4}]})
    assert st == 200 and len(p["probe"]["reads"][0]["registers"]) == 4, p
    st, p = probe({"device": "dead-meter"})
    assert st == 200 and p["probe"]["device"]["state"] == "offline", p
    assert all("error" in r for r in p["probe"]["reads"]), p
    st, p = probe({"bus": "site-tcp", "unit": 1, "reads": [{"table": "holding", "address": 0,
                                                            "count": 500}]})
    assert st == 400 and "count" in p["message"], p
    st, p = probe({"bus": "nowhere", "unit": 1, "reads": [{"table": "coil", "address": 0,
                                                            "count": 1}]})
    assert st == 404, p
    # CSRF: no token, a wrong one, another site's Origin
    for bad in ({"Cookie": cookie}, dict(hdr, **{"X-Sluice-CSRF": "0" * 64}),
                dict(hdr, Origin="http://evil.example")):
        st, p = probe({"device": "inlet"}, headers=bad)
        assert st == 403, (bad, p)
    # what a read takes
    st, hd, _ = request(port, "PUT", "/api/status", headers={"Cookie": cookie})
    assert st == 405, st
    st, hd, _ = request(port, "POST", "/api/status", headers={"Cookie": cookie})
    assert st == 405, st
    st, hd, raw = request(port, "POST", "/api/probe", body="x" * 5000, headers=hdr)
    assert st == 413, (st, raw)
    # chunked, with no length said: let go once past the bound, not read to its end
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/api/probe", body=iter([b"x" * 1000] * 20), headers=hdr,
                     encode_chunked=True)
        st = conn.getresponse().status
    except (http.client.HTTPException, OSError):
        st = None
    finally:
        conn.close()
    assert st is None or st == 413, st


def test_page():
    with Site("web") as site:
        port = free_port()
        pw = password_file(site)
        cfg = web_site(site, "  listen: 127.0.0.1:%d\n  password_file: %s\n" % (port, pw))
        d = site.start_daemon(cfg)
        wait_page(port)

        # no session: 401, and the page is the login form
        st, hd, body = request(port, "GET", "/api/status")
        assert st == 401 and "cookie" in hd.get("www-authenticate", "").lower(), (st, hd)
        st, hd, body = request(port, "GET", "/")
        assert st == 401 and b'action="/login"' in body, (st, body[:200])
        check_headers(hd)
        st, hd, body = request(port, "GET", "/app.js")
        assert st == 200 and hd["content-type"].startswith("text/javascript"), hd
        # a wrong password, then the wait: 429 and how long, without looking at the password
        st, hd, body = login(port, password="wrong")
        assert st == 401 and "set-cookie" not in hd and "data-msg=\"failed\"" in body.decode(), st
        st, hd, body = login(port)
        assert st == 429 and int(hd["retry-after"]) >= 1, (st, hd)
        time.sleep(int(hd["retry-after"]) + 0.2)
        st, hd, body = login(port)
        assert st == 303 and hd["location"] == "/", (st, hd)
        sc = hd["set-cookie"]
        assert "HttpOnly" in sc and "SameSite=Strict" in sc and "Secure" not in sc, sc
        assert PASSWORD not in hd.get("location", ""), hd
        cookie = session_cookie(hd)
        # a login from another site's form is refused
        st, hd, body = request(port, "POST", "/login", body="user=tech&password=" + PASSWORD,
                               headers={"Origin": "http://evil.example",
                                        "Content-Type": "application/x-www-form-urlencoded"})
        assert st == 403, st

        wait_for(lambda: get_json(port, "/api/status", cookie)[1]["uplink"]["connected"], 30,
                 "the uplink")
        wait_for(lambda: {d["state"] for d in get_json(port, "/api/status", cookie)[1]["devices"]
                          if d["id"] == "dead-meter"} == {"offline"}, 30, "the dead device")
        wait_for(lambda: get_json(port, "/api/devices/inlet", cookie)[1]["history"]["readings"]
                 >= 3, 30, "history")
        check_api(port, cookie)

        # a reload keeps the page and its sessions
        d.send(signal.SIGHUP)
        wait_for(lambda: "reloaded" in d.text(), 30, "the reload")
        wait_for(lambda: request(port, "GET", "/api/status", headers={"Cookie": cookie})[0]
                 == 200, 20, "the page after the reload")

        if not skip_without_chromium():
            browse(site, port)

        # a new password and a reload: the page is served again, the user's old session
        # ends, the new password opens a new one, the old one no longer does
        other = password_file(site, password="new-" + PASSWORD)
        os.replace(other, pw)
        d.send(signal.SIGHUP)
        wait_for(lambda: d.text().count("reloaded") >= 2, 30, "the second reload")
        wait_for(lambda: harness.port_open(port), 20, "the page again")
        assert request(port, "GET", "/api/status", headers={"Cookie": cookie})[0] == 401
        assert "serving the page again" in d.text(), d.text()
        time.sleep(1.1)  # the last failed login's wait
        st, hd, _ = login(port)
        assert st == 401, st
        time.sleep(1.1)
        st, hd, _ = login(port, password="new-" + PASSWORD)
        assert st == 303, st
        cookie = session_cookie(hd)
        assert get_json(port, "/api/status", cookie)[0] == 200

        # logout ends the session
        csrf = get_json(port, "/api/session", cookie)[1]["csrf"]
        st, hd, _ = request(port, "POST", "/logout", headers={"Cookie": cookie,
                                                               "X-Sluice-CSRF": csrf})
        assert st == 303 and "Max-Age=0" in hd["set-cookie"], (st, hd)
        assert request(port, "GET", "/api/status", headers={"Cookie": cookie})[0] == 401
        assert d.alive(), d.text()
        assert "ERROR" not in d.text() and "<3>" not in d.text(), d.text()
        # a clean stop (and, under the sanitizers, no leak)
        assert site.stop("sluiced") == 0, d.text()


def browse(site, port):
    base = "http://127.0.0.1:%d" % port
    with Browser(site) as b:
        b.call("Network.enable")
        b.goto(base + "/")
        assert "登录" in b.text(), b.text()
        b.eval("document.getElementById('user').value = 'tech';"
               "document.getElementById('password').value = %s;"
               "document.querySelector('form').submit(); true" % json.dumps(PASSWORD))
        try:
            b.wait("location.pathname === '/' && document.querySelectorAll('.dev').length === 4",
                   30, "the overview after logging in")
        except AssertionError:
            raise AssertionError("not logged in: %s: %s" % (b.eval("location.href"), b.text()))
        # the gateway, the uplink, the names, the dead device, the alert
        b.wait("document.querySelector('#uplink .ok') !== null", 20, "the uplink connected")
        text = b.text()
        for want in ("测试站 gw1", "三号分区 进水流量计", "新华路下穿道", "老城区 旧水表",
                     "进水 流量 偏高", "已连接", "离线", "在线", "正在告警"):
            assert want in text, (want, text)
        dead = b.eval("document.querySelector('[data-device=\"dead-meter\"]').className")
        assert "offline" in dead, dead
        badge = b.eval("document.querySelector('#firing .badge').className + ' ' + "
                       "document.querySelector('#firing .badge').textContent")
        assert "sev-orange" in badge and "橙色" in badge, badge
        colour = b.eval("getComputedStyle(document.querySelector('#firing .badge'))"
                        ".backgroundColor")
        assert colour == "rgb(239, 118, 0)", colour
        # live: the flow shown changes as the sim's does
        flow = "document.querySelector('[data-device=\"inlet\"] .val .v').textContent"
        first = b.eval(flow)
        assert re.match(r"^\d+(\.\d+)?$", first), first
        b.wait("%s !== %s" % (flow, json.dumps(first)), 20, "the flow to change on the page")
        shot = os.environ.get("SLUICE_WEB_SCREENSHOT") or os.path.join(site.dir, "overview.png")
        b.screenshot(shot)
        assert os.path.getsize(shot) > 10000, shot

        # English
        b.eval("document.getElementById('lang').click(); true")
        b.wait("document.body.innerText.includes('Firing')", 10, "the page in English")
        assert "offline" in b.text() and "connected" in b.text(), b.text()
        b.eval("document.getElementById('lang').click(); true")
        b.wait("document.body.innerText.includes('正在告警')", 10, "the page in Chinese")

        # a device: each point, its plot, its registers through sluiced
        b.goto(base + "/#/device/inlet")
        b.wait("document.querySelectorAll('svg.plot path.ln').length >= 4", 30, "the plots")
        d = b.eval("document.querySelector('svg.plot[data-point=\"flow\"] path.ln')"
                   ".getAttribute('d')")
        assert d.startswith("M") and d.count("L") >= 2, d
        b.eval("document.getElementById('read-regs').click(); true")
        b.wait("document.querySelector('#points td.regs') && "
               "/^[0-9A-F]{4} [0-9A-F]{4}$/.test(document.querySelector('#points td.regs')"
               ".textContent)", 30, "the flow's registers")

        # the alerts
        b.goto(base + "/#/alerts")
        b.wait("document.querySelectorAll('#recent tr').length >= 2", 20, "recent transitions")
        assert "进水 流量 偏高" in b.text(), b.text()

        # a probe: every order of the registers read
        b.goto(base + "/#/probe")
        b.wait("document.getElementById('p-bus') !== null", 20, "the probe form")
        b.eval("document.getElementById('p-unit').value = '1';"
               "document.getElementById('p-address').value = '0';"
               "document.getElementById('p-count').value = '2';"
               "document.getElementById('p-read').click(); true")
        b.wait("document.querySelectorAll('#probe-pairs tr').length >= 3", 30, "the probe")
        heads = b.eval("Array.from(document.querySelectorAll('#probe-pairs th'))"
                       ".map(e => e.textContent).join('|')")
        for o in ("float32 ABCD", "float32 CDAB", "float32 BADC", "float32 DCBA",
                  "uint32 CDAB", "int32 ABCD"):
            assert o in heads, heads
        # the register before the one asked for is read too (a 1-based manual)
        around = b.eval("document.querySelectorAll('#probe-regs tr.around').length")
        assert around >= 1, around
        assert not b.errors, b.errors
        # nothing was asked of anything but the box
        urls = b.eval("performance.getEntriesByType('resource').map(e => e.name)")
        assert all(u.startswith(base) for u in urls), urls


def test_https():
    with Site("webtls") as site:
        port = free_port()
        crt, key = os.path.join(site.dir, "web.crt"), os.path.join(site.dir, "web.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                        key, "-out", crt], check=True, capture_output=True)
        os.chmod(key, 0o600)
        pw = password_file(site)
        cfg = web_site(site, "  listen: 127.0.0.1:%d\n  password_file: %s\n  cert_file: %s\n"
                             "  key_file: %s\n" % (port, pw, crt, key))
        d = site.start_daemon(cfg)
        wait_page(port)
        tls = ssl.create_default_context(cafile=crt)
        st, hd, body = request(port, "GET", "/", tls=tls)
        assert st == 401 and b'action="/login"' in body, st
        st, hd, _ = login(port, tls=tls)
        assert st == 303 and "; Secure" in hd["set-cookie"], hd
        cookie = session_cookie(hd)
        wait_for(lambda: any(x["state"] == "online" for x in
                             get_json(port, "/api/status", cookie, tls=tls)[1]["devices"]), 30,
                 "a device online over HTTPS")
        # plain HTTP on the HTTPS port is not served
        try:
            st = request(port, "GET", "/api/status")[0]
        except (http.client.HTTPException, OSError):
            st = None
        assert st != 200, st
        if not skip_without_chromium():
            with Browser(site, args=["--ignore-certificate-errors"]) as b:
                b.goto("https://127.0.0.1:%d/" % port)
                b.wait("document.getElementById('password') !== null", 20,
                       "the login page over HTTPS")
        assert site.stop("sluiced") == 0, d.text()


def test_loopback_without_password():
    with Site("webopen") as site:
        port = free_port()
        cfg = web_site(site, "  listen: \"[::1]:%d\"\n" % port)
        d = site.start_daemon(cfg)
        wait_for(lambda: harness.port_open(port, host="::1"), 30, "the page on [::1]")
        conn = http.client.HTTPConnection("::1", port, timeout=30)
        conn.request("GET", "/api/session")
        r = conn.getresponse()
        s = json.loads(r.read())
        assert r.status == 200 and s["login"] is False and len(s["csrf"]) == 64, s
        # another site's name for this box (DNS rebinding): refused
        conn.request("GET", "/api/status", headers={"Host": "evil.example:%d" % port})
        r = conn.getresponse()
        assert r.status == 403, r.status
        r.read()
        conn.close()
        if not skip_without_chromium():
            wait_for(lambda: '"state":"offline"' in subprocess.run(
                ["curl", "-gs", "http://[::1]:%d/api/status" % port], capture_output=True,
                text=True).stdout, 30, "the dead device offline")
            dom = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                                  "--user-data-dir=" + os.path.join(site.dir, "dump-profile"),
                                  "--virtual-time-budget=8000", "--dump-dom",
                                  "http://[::1]:%d/" % port], capture_output=True, text=True,
                                 timeout=120).stdout
            for want in ("三号分区 进水流量计", "新华路下穿道", "离线", "sev-orange"):
                assert want in dom, (want, dom[:3000])
        assert site.stop("sluiced") == 0, d.text()


def test_port_taken():
    """A page that cannot be served (its port taken) is logged; sluiced runs on without it."""
    with Site("webtaken") as site, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        cfg = web_site(site, "  listen: 127.0.0.1:%d\n" % port)
        d = site.start_daemon(cfg)
        wait_for(lambda: "cannot serve the page at 127.0.0.1:%d" % port in d.text(), 30,
                 "the page's error")
        assert "sluiced runs on without the page" in d.text(), d.text()
        wait_for(lambda: "started" in d.text(), 30, "sluiced to start")
        assert d.alive(), d.text()
        assert site.stop("sluiced") == 0, d.text()


def test_check_config():
    with Site("webcfg") as site:
        cfg = e2e_site(site)
        with open(cfg, encoding="utf-8") as f:
            text = f.read()
        sluiced = os.path.join(harness.BIN, "sluiced")

        def check(web):
            path = site.write("c.yaml", text + "web:\n" + web)
            r = site.run([sluiced, "--check-config", path])
            return r.returncode, r.stdout + r.stderr

        rc, out = check("  listen: 0.0.0.0:8080\n")
        assert rc == 78 and "password_file is required" in out and "c.yaml:" in out, out
        rc, out = check("  listen: localhost:8080\n")
        assert rc == 78 and "names are not looked up" in out, out
        pw = password_file(site, mode=0o644)
        rc, out = check("  listen: 0.0.0.0:8080\n  password_file: %s\n" % pw)
        assert rc == 78 and "can be read by every user" in out, out
        os.chmod(pw, 0o640)
        rc, out = check("  listen: 0.0.0.0:8080\n  password_file: %s\n" % pw)
        assert rc == 0, out
        rc, out = check("  listen: \"[::]:80\"\n  password_file: %s\n" % pw)
        assert rc == 0 and "below 1024" in out, out
        bad = site.write("bad.password", "tech:$1$abc$md5isnotenough\n")
        os.chmod(bad, 0o640)
        rc, out = check("  listen: 0.0.0.0:8080\n  password_file: %s\n" % bad)
        assert rc == 78 and "line 1" in out and "SHA-512" in out, out
        rc, out = check("  listen: 127.0.0.1:8080\n  cert_file: %s\n" % pw)
        assert rc == 78 and "go together" in out, out
        # the daemon refuses to start on what --check-config refuses
        path = site.write("c.yaml", text + "web:\n  listen: 0.0.0.0:8080\n  password_file: %s\n"
                          % bad)
        r = site.run([sluiced, "-c", path], timeout=30)
        assert r.returncode == 78 and "line 1" in r.stderr, r.stderr


if __name__ == "__main__":
    harness.main()
