"""storedb: sluiced's database read by the tests, independently of sluiced.

The tests compare what a subscriber received with what the store holds. Since schema 3
a reading is stored as values (daemon/store_codec.c: a device's description in the
`devices` table, the values as tagged bytes), not as the JSON that is published, so
this module decodes both formats itself, from their description in store_int.h and
store_codec.c — a second reader of the bytes, as a platform's decoder would be — and
compares a received payload with a stored reading by value: the same seq, time, point
names, values (a float32 by its bits), and failed points with the same errors.

Read-only (sqlite3 with mode=ro); safe beside a running sluiced.
"""

import collections
import json
import math
import os
import sqlite3
import struct

# lib/mberr.c: the text of each MBE_* code, and of Modbus exceptions (0x100 + code)
MBE_TEXT = {0: "ok", 1: "timeout", 2: "connection failed", 3: "connection closed",
            4: "malformed reply", 5: "i/o error", 6: "unsupported", 7: "not implemented",
            8: "CRC error", 9: "reply from another unit"}
EXC_TEXT = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
            4: "server device failure", 5: "acknowledge", 6: "server device busy",
            8: "memory parity error", 0x0A: "gateway path unavailable",
            0x0B: "gateway target failed to respond"}

PT_FLOAT32 = 7  # lib/point.h enum pt_type


def mbe_text(code):
    if code >= 0x100:
        return EXC_TEXT.get(code - 0x100, "exception %d" % (code - 0x100))
    return MBE_TEXT.get(code, "error %d" % code)


class _Reader:
    def __init__(self, b):
        self.b = b
        self.i = 0

    def u8(self):
        v = self.b[self.i]
        self.i += 1
        return v

    def varint(self):
        v = shift = 0
        while True:
            c = self.u8()
            v |= (c & 0x7F) << shift
            if not c & 0x80:
                return v
            shift += 7

    def raw(self, n):
        v = self.b[self.i:self.i + n]
        if len(v) != n:
            raise ValueError("cut short")
        self.i += n
        return v

    def string(self):
        return self.raw(self.varint()).decode("utf-8", "replace")


Device = collections.namedtuple("Device", "id name points")   # points: [(name, type, unit)]


def decode_device(blob):
    """A device's description (store_int.h, version 1)."""
    r = _Reader(blob)
    if r.u8() != 1:
        raise ValueError("not a version 1 description")
    flags = r.u8()
    dev_id = r.string()
    name = r.string() if flags & 1 else None
    if flags & 2:
        r.string()  # profile
    pts = []
    for _ in range(r.varint()):
        pname = r.string()
        ptype = r.u8()
        unit = r.string()
        pflags = r.u8()
        if pflags & 2:
            r.raw(16)  # scale, offset
        pts.append((pname, ptype, unit))
    return Device(dev_id, name, pts)


def decode_values(blob):
    """A reading's values (store_codec.c): [(tag, value)], tag one of 'none', 'bool',
    'int', 'uint', 'f32', 'f64', 'str'; for 'none' the value is the MBE_* code, for
    'f32' the float's 4 bytes."""
    r = _Reader(blob)
    n = r.varint()
    tags = r.raw((n + 1) // 2)
    out = []
    for k in range(n):
        t = (tags[k // 2] >> (4 * (k % 2))) & 0xF
        if t == 0:
            out.append(("none", r.varint()))
        elif t in (1, 2):
            out.append(("bool", t == 2))
        elif t == 3:
            z = r.varint()
            out.append(("int", (z >> 1) ^ -(z & 1)))
        elif t == 4:
            out.append(("uint", r.varint()))
        elif t == 5:
            out.append(("f32", r.raw(4)))
        elif t == 6:
            out.append(("f64", struct.unpack("<d", r.raw(8))[0]))
        elif t == 7:
            out.append(("str", r.string()))
        else:
            raise ValueError("tag %d" % t)
    if r.i != len(blob):
        raise ValueError("bytes left over")
    return out


class Row(collections.namedtuple("Row", "seq kind topic retain body reading delivered "
                                        "sent_lo sent_hi")):
    """One stored row. kind 0 telemetry, 1 a state transition. A text row (transitions,
    readings of the release before schema 3) has body; a reading has reading (its
    device and values). delivered: as the store records it; sent_lo..sent_hi (real-time
    ms): when it was recorded delivered (a reading: between two writes of the delivery
    mark), None when it is not."""

    @property
    def sent_at(self):
        return self.sent_hi

    def has_errors(self):
        if self.body is not None:
            return '"errors":' in self.body
        return any(t == "none" for t, _ in self.reading[2])

    def text_payload(self):
        """The exact bytes of a text row as published."""
        return ('{"seq":%d,%s}' % (self.seq, self.body)).encode()

    def matches(self, payload):
        """Whether payload (bytes as received) is this row as published."""
        if self.body is not None:
            return payload == self.text_payload()
        try:
            got = json.loads(payload)
        except ValueError:
            return False
        dev, ts, vals = self.reading
        if got.get("seq") != self.seq or got.get("ts") != ts:
            return False
        want_vals, want_errs = {}, {}
        for (pname, ptype, _), (tag, v) in zip(dev.points, vals):
            if tag == "none":
                want_errs[pname] = mbe_text(v)
            else:
                want_vals[pname] = (tag, v, ptype)
        gv, ge = got.get("values", {}), got.get("errors", {})
        if set(gv) != set(want_vals) or ge != want_errs:
            return False
        for pname, (tag, v, ptype) in want_vals.items():
            x = gv[pname]
            if tag == "f32":
                f = struct.unpack("<f", v)[0]
                if math.isnan(f) or math.isinf(f):
                    if x is not None:
                        return False
                elif x is None or struct.pack("<f", x) != v:
                    return False
            elif tag == "f64":
                if math.isnan(v) or math.isinf(v):
                    if x is not None:
                        return False
                elif ptype == PT_FLOAT32:
                    if x is None or struct.pack("<f", x) != struct.pack("<f", v):
                        return False
                elif x != v:
                    return False
            elif x != v:
                return False
        return True


def read_rows(data_dir):
    """{seq: Row} of every row the store holds, read-only."""
    path = os.path.join(data_dir, "sluice.db")
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=30)
    try:
        rows = {}
        aside = {r[0] for r in con.execute("SELECT seq FROM aside")}
        for seq, ts, topic, body, retain, sent in con.execute(
                "SELECT seq, ts, topic, body, retain, sent_at FROM events"):
            rows[seq] = Row(seq, 1, topic, bool(retain), body, None, sent is not None, sent, sent)
        for seq, kind, ts, topic, body, retain, sent in con.execute(
                "SELECT seq, kind, ts, topic, body, retain, sent_at FROM legacy"):
            rows[seq] = Row(seq, kind, topic, bool(retain), body, None, sent is not None, sent,
                            sent)
        marks = con.execute("SELECT at, upto FROM delivered ORDER BY rowid").fetchall()
        devices = {dev: decode_device(blob)
                   for dev, blob in con.execute("SELECT dev, schema FROM devices")}
        mi = 0
        for seq, dev, ts, vals in con.execute("SELECT seq, dev, ts, vals FROM readings "
                                              "ORDER BY seq"):
            d = devices[dev]
            while mi < len(marks) and marks[mi][1] < seq:
                mi += 1
            delivered = mi < len(marks) and seq not in aside
            lo = marks[mi - 1][0] if delivered and mi > 0 else None
            hi = marks[mi][0] if delivered else None
            rows[seq] = Row(seq, 0, "telemetry/" + d.id, False, None,
                            (d, ts, decode_values(bytes(vals))), delivered, lo or hi, hi)
        return rows
    finally:
        con.close()


def last_seq(data_dir):
    """The highest seq the database shows (rows, the delivery mark, last_seq)."""
    path = os.path.join(data_dir, "sluice.db")
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=30)
    try:
        return con.execute(
            "SELECT max(x) FROM (SELECT max(seq) AS x FROM readings UNION ALL "
            "SELECT max(seq) FROM events UNION ALL SELECT max(seq) FROM legacy UNION ALL "
            "SELECT max(upto) FROM delivered UNION ALL "
            "SELECT value FROM counters WHERE name = 'last_seq')").fetchone()[0] or 0
    finally:
        con.close()
