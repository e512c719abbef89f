"""A broker that misbehaves on purpose, for the integration tests: raw sockets on
127.0.0.1, speaking just enough MQTT 3.1.1 and 5 to be a broker sluiced believes in —
CONNECT/CONNACK (with properties: Maximum Packet Size), PUBLISH at QoS 0, 1 and 2 with
PUBACK (and its reason code) or PUBREC/PUBREL/PUBCOMP, PINGREQ/PINGRESP, DISCONNECT —
and then to do what a real broker does when it is unwell or strict:

- refuse(topic, payload) -> reason: a PUBACK with that reason code (>= 0x80) for MQTT 5;
  an MQTT 3.1.1 client's connection is dropped instead (3.1.1 has no way to refuse);
- max_packet: a PUBLISH larger than this ends the connection as mosquitto does (the
  whole packet counted, checked when its length arrives, before its body is read; MQTT 5
  gets a DISCONNECT 0x95 first); announced in CONNACK to MQTT 5 clients when announce;
- ack=False: take every PUBLISH and never acknowledge it (PINGREQ still answered);
- drop_after_connack=True: accept every session and drop it at once.

It records what it saw (connects, publishes, pings), with monotonic times, for the
test to check. Each connection has its own thread; stop() closes everything it opened.
"""

import socket
import struct
import threading
import time

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14

PROP_MAXIMUM_PACKET_SIZE = 0x27
RC_PACKET_TOO_LARGE = 0x95
RC_NOT_AUTHORIZED = 0x87


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(ptype, flags, body):
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


class Closed(Exception):
    pass


class FakeBroker:
    def __init__(self, refuse=None, max_packet=None, announce=True, ack=True,
                 drop_after_connack=False):
        self.refuse = refuse
        self.max_packet = max_packet
        self.announce = announce
        self.ack = ack
        self.drop_after_connack = drop_after_connack
        self.lock = threading.Lock()
        self.connects = []        # (time, protocol level)
        self.publishes = []       # dicts: t, topic, payload, qos, dup, pid, refused
        self.pings = 0
        self.drops = []           # (time, why) of connections it ended itself
        self._stop = threading.Event()
        self._threads = []
        self._conns = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]

    # -- life ---------------------------------------------------------------------------

    def start(self):
        t = threading.Thread(target=self._accept, name="fakebroker-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        with self.lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)
        self.sock.close()

    def _accept(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(0.1)
            with self.lock:
                self._conns.append(c)
            t = threading.Thread(target=self._serve, args=(c,), name="fakebroker-conn",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    # -- what it saw ----------------------------------------------------------------------

    def published(self, pred=lambda p: True):
        with self.lock:
            return [p for p in self.publishes if pred(p)]

    def connect_times(self):
        with self.lock:
            return [t for t, _ in self.connects]

    # -- one connection -------------------------------------------------------------------

    def _read(self, c, n):
        buf = b""
        while len(buf) < n:
            if self._stop.is_set():
                raise Closed()
            try:
                d = c.recv(n - len(buf))
            except socket.timeout:
                continue
            except OSError:
                raise Closed()
            if not d:
                raise Closed()
            buf += d
        return buf

    def _header(self, c):
        """(type, flags, remaining length)"""
        b0 = self._read(c, 1)[0]
        n, shift = 0, 0
        while True:
            b = self._read(c, 1)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return b0 >> 4, b0 & 0x0F, n

    def _drop(self, c, why):
        with self.lock:
            self.drops.append((time.monotonic(), why))
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _serve(self, c):
        try:
            self._session(c)
        except Closed:
            pass
        finally:
            with self.lock:
                if c in self._conns:
                    self._conns.remove(c)
            c.close()

    def _session(self, c):
        ptype, _, n = self._header(c)
        if ptype != CONNECT:
            return
        body = self._read(c, n)
        namelen = struct.unpack(">H", body[:2])[0]
        level = body[2 + namelen]
        v5 = level == 5
        with self.lock:
            self.connects.append((time.monotonic(), level))
        if v5:
            props = b""
            if self.max_packet and self.announce:
                props += bytes([PROP_MAXIMUM_PACKET_SIZE]) + struct.pack(">I", self.max_packet)
            c.sendall(packet(CONNACK, 0, b"\x00\x00" + varint(len(props)) + props))
        else:
            c.sendall(packet(CONNACK, 0, b"\x00\x00"))
        if self.drop_after_connack:
            self._drop(c, "drop after CONNACK")
            return
        while True:
            ptype, flags, n = self._header(c)
            whole = 1 + len(varint(n)) + n
            if ptype == PUBLISH and self.max_packet and whole > self.max_packet:
                # as mosquitto: refused on its length, before its body is read
                if v5:
                    c.sendall(packet(DISCONNECT, 0, bytes([RC_PACKET_TOO_LARGE, 0])))
                self._drop(c, "packet of %d bytes over %d" % (whole, self.max_packet))
                return
            body = self._read(c, n)
            if ptype == PUBLISH:
                if not self._publish(c, flags, body, v5):
                    return
            elif ptype == PUBREL:
                c.sendall(packet(PUBCOMP, 0, body[:2]))
            elif ptype == PINGREQ:
                with self.lock:
                    self.pings += 1
                c.sendall(packet(PINGRESP, 0, b""))
            elif ptype == DISCONNECT:
                return

    def _publish(self, c, flags, body, v5):
        qos = (flags >> 1) & 3
        tlen = struct.unpack(">H", body[:2])[0]
        topic = body[2:2 + tlen].decode("utf-8", "replace")
        i = 2 + tlen
        pid = None
        if qos:
            pid = body[i:i + 2]
            i += 2
        if v5:
            plen, shift = 0, 0
            while True:
                b = body[i]
                i += 1
                plen |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            i += plen
        payload = body[i:]
        reason = self.refuse(topic, payload) if self.refuse else None
        with self.lock:
            self.publishes.append({"t": time.monotonic(), "topic": topic, "payload": payload,
                                   "qos": qos, "dup": bool(flags & 8), "refused": reason})
        if reason is not None and not v5:
            # MQTT 3.1.1 cannot refuse a message: the connection goes
            self._drop(c, "refused %s" % topic)
            return False
        if not qos or not self.ack:
            return True
        ack = PUBACK if qos == 1 else PUBREC
        if v5 and reason is not None:
            c.sendall(packet(ack, 0, pid + bytes([reason])))
        else:
            c.sendall(packet(ack, 0, pid))
        return True
