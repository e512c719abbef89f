"""Headless Chromium driven over the Chrome DevTools Protocol, from Python's standard
library alone (no pip, no npm at test time): Debian's `chromium` started with its own
--user-data-dir and --remote-debugging-port=0, the port read from the DevToolsActivePort
file it writes there, and the page target's websocket spoken with a minimal RFC 6455
client (text frames, masked as a client must).

    with Browser(site) as b:
        b.goto("http://127.0.0.1:8080/")
        b.wait("document.querySelector('.dev') !== null", 20, "the devices")
        b.screenshot("overview.png")

chromium_skip() says why Chromium cannot run here, or None.
"""

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request

from harness import Proc, wait_for

CHROMIUM = os.environ.get("SLUICE_CHROMIUM") or shutil.which("chromium") or shutil.which(
    "chromium-browser") or "chromium"


def chromium_skip():
    """None when chromium starts here; else the reason it cannot (for a SKIP line)."""
    if not shutil.which(CHROMIUM):
        return "no chromium on this machine (tools/install-deps installs Debian's)"
    try:
        r = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--version"],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "chromium does not start: %s" % e
    if r.returncode != 0:
        return "chromium does not start: %s" % (r.stderr.strip() or r.returncode)
    return None


class WebSocket:
    """A websocket client for one connection: send a text message, receive one."""

    def __init__(self, url, timeout=30):
        assert url.startswith("ws://"), url
        hostport, _, path = url[5:].partition("/")
        host, _, port = hostport.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n" % (path, hostport, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket: closed during the handshake")
            head += chunk
        head, _, self.buf = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError("websocket: %r" % head.split(b"\r\n")[0])

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("websocket: closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text):
        data = text.encode()
        n = len(data)
        if n < 126:
            head = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7f
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            op = b0 & 0x0f
            if op == 8:
                raise ConnectionError("websocket: closed by chromium")
            if op == 9:  # ping: answered, and read on
                self.sock.sendall(struct.pack("!BB", 0x8a, 0x80 | len(payload)) + b"\0\0\0\0" +
                                  payload)
                continue
            message += payload
            if b0 & 0x80:
                return message.decode()

    def close(self):
        self.sock.close()


class Browser:
    """One headless Chromium with one page, as a phone would show it (412 px wide)."""

    def __init__(self, site, name="chromium", args=(), width=412, height=915):
        self.site = site
        self.dir = os.path.join(site.dir, name + "-profile")
        os.makedirs(self.dir, exist_ok=True)
        argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
                "--user-data-dir=" + self.dir, "--remote-debugging-port=0",
                "--window-size=%d,%d" % (width, height)] + list(args) + ["about:blank"]
        self.proc = Proc(name, argv, os.path.join(site.dir, name + ".log"))
        site.procs[name] = self.proc
        active = os.path.join(self.dir, "DevToolsActivePort")
        wait_for(lambda: os.path.exists(active) or not self.proc.alive(), 60,
                 "chromium's DevTools port")
        if not self.proc.alive():
            raise AssertionError("chromium exited:\n" + self.proc.text())
        port = int(wait_for(lambda: open(active).read().split("\n")[0].strip(), 10,
                            "the port in DevToolsActivePort"))
        targets = json.load(urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port,
                                                   timeout=10))
        page = [t for t in targets if t.get("type") == "page"][0]
        self.ws = WebSocket(page["webSocketDebuggerUrl"])
        self.next_id = 0
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=2, mobile=True)
        self.errors = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def call(self, method, **params):
        self.next_id += 1
        my = self.next_id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == "Runtime.exceptionThrown":
                self.errors.append(msg["params"]["exceptionDetails"])
            if msg.get("id") == my:
                if "error" in msg:
                    raise AssertionError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})

    def eval(self, expr):
        """expr's value in the page (awaited when it is a promise)."""
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError("%s: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    def goto(self, url):
        self.call("Page.navigate", url=url)
        time.sleep(0.2)
        wait_for(lambda: self.eval("document.readyState") == "complete", 30,
                 "the page at " + url)

    def wait(self, expr, timeout, what):
        return wait_for(lambda: self.eval(expr), timeout, what, interval=0.2)

    def text(self):
        return self.eval("document.body.innerText")

    def screenshot(self, path, full=True):
        """A PNG of the page (all of it, when full), at the phone's width."""
        params = {"format": "png"}
        if full:
            h = self.eval("document.documentElement.scrollHeight")
            w = self.eval("document.documentElement.clientWidth")
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": w, "height": h, "scale": 1})
        data = self.call("Page.captureScreenshot", **params)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.ws.close()
        except OSError:
            pass
        pr = self.site.procs.pop(self.proc.name, None)
        if pr:
            pr.stop()
