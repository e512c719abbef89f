"""An independent Sparkplug B decoder for the tests: Google's protobuf (Debian's
python3-protobuf) with the module protoc generates from the published schema
(tests/data/sparkplug_b.proto, Eclipse Tahu's), compiled at test time into build/proto.
Nothing here shares code with lib/spb.c: what it decodes is what any Sparkplug host
would read.

    payload = sparkplug.decode(data)      # a Payload message
    sparkplug.show(payload)               # {"timestamp":..., "metrics":[...], "seq":...}

Run as a program, it prints the byte vectors tests/unit/test_spb.c checks lib/spb.c
against (`python3 tests/integration/sparkplug.py vectors`), or decodes a payload from
stdin and prints it as JSON (`... decode`; bytes as hex), which
tests/unit/test_payload_sparkplug.c reads back.
"""

import os
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO = os.path.join(TOP, "tests", "data", "sparkplug_b.proto")
OUT = os.path.join(TOP, "build", "proto")

_pb2 = None


def _import_protobuf():
    """google.protobuf from Debian's python3-protobuf: a Python that is not the
    system's (a virtualenv, pyenv) does not see dist-packages by itself."""
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        for d in ("/usr/lib/python3/dist-packages",):
            if os.path.isdir(os.path.join(d, "google", "protobuf")) and d not in sys.path:
                sys.path.append(d)
        import google.protobuf  # noqa: F401


def module():
    """sparkplug_b_pb2, compiled now from the schema (protoc --python_out)."""
    global _pb2
    if _pb2 is not None:
        return _pb2
    _import_protobuf()
    os.makedirs(OUT, exist_ok=True)
    subprocess.run(["protoc", "--proto_path=" + os.path.dirname(PROTO),
                    "--python_out=" + OUT, PROTO], check=True)
    if OUT not in sys.path:
        sys.path.insert(0, OUT)
    import sparkplug_b_pb2
    _pb2 = sparkplug_b_pb2
    return _pb2


def decode(data):
    p = module().Payload()
    p.ParseFromString(bytes(data))
    return p


def _value(holder):
    which = holder.WhichOneof("value")
    return None if which is None else getattr(holder, which)


def show(p):
    """A payload as plain data, the way the spec's examples write one."""
    out = {}
    if p.HasField("timestamp"):
        out["timestamp"] = p.timestamp
    metrics = []
    for m in p.metrics:
        d = {}
        for f in ("name", "alias", "timestamp", "datatype", "is_historical",
                  "is_transient", "is_null"):
            if m.HasField(f):
                d[f] = getattr(m, f)
        if m.HasField("properties"):
            d["properties"] = {k: _value(v) for k, v in
                               zip(m.properties.keys, m.properties.values)}
        if m.WhichOneof("value"):
            d["value"] = _value(m)
        metrics.append(d)
    if metrics:
        out["metrics"] = metrics
    if p.HasField("seq"):
        out["seq"] = p.seq
    if p.HasField("uuid"):
        out["uuid"] = p.uuid
    if p.HasField("body"):
        out["body"] = p.body
    return out


def vectors():
    """The payloads of test_spb.c's vectors, built with Google's encoder."""
    pb = module()
    vs = []

    p = pb.Payload()
    vs.append(("empty", p))

    p = pb.Payload(timestamp=1795706907307, seq=0)
    m = p.metrics.add(name="bdSeq", alias=1, timestamp=1795706907307, datatype=8)
    m.long_value = 3
    m = p.metrics.add(name="Node Control/Rebirth", alias=2, timestamp=1795706907307,
                      datatype=11)
    m.boolean_value = False
    vs.append(("nbirth", p))

    p = pb.Payload(timestamp=1795706960451, seq=255)
    m = p.metrics.add(alias=65537, timestamp=1795706960451, is_historical=True)
    m.float_value = 26.867098
    m = p.metrics.add(alias=65538, timestamp=1795706960451)
    m.int_value = 0xFFFFFFFF & -2          # an Int16 of -2, two's complement
    m = p.metrics.add(alias=65539, timestamp=1795706960451)
    m.long_value = 0xFFFFFFFFFFFFFFFF     # an Int64 of -1
    m = p.metrics.add(alias=65540, timestamp=1795706960451, is_null=True)
    m.properties.keys.append("Quality")
    v = m.properties.values.add(type=3)
    v.int_value = 0
    vs.append(("ddata", p))

    p = pb.Payload(timestamp=1795706907307, seq=1)
    m = p.metrics.add(name="flow", alias=65537, timestamp=1795706907307, datatype=10)
    m.double_value = 12.5
    m.properties.keys.append("engUnit")
    m.properties.values.add(type=12, string_value="m3/h")
    m = p.metrics.add(name="名字", alias=65538, timestamp=1795706907307, datatype=12)
    m.string_value = "三号分区"
    m = p.metrics.add(name="pump", alias=65539, timestamp=1795706907307, datatype=11,
                      is_transient=True)
    m.boolean_value = True
    m = p.metrics.add(name="raw", alias=65540, datatype=17)
    m.bytes_value = b"\x00\x01\xff"
    vs.append(("dbirth", p))

    p = pb.Payload(timestamp=1, uuid="sluice", body=b"\x00x")
    vs.append(("uuid-body", p))
    return vs


def _jsonable(x):
    if isinstance(x, bytes):
        return x.hex()
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "decode":
        import json
        data = sys.stdin.buffer.read()
        print(json.dumps(_jsonable(show(decode(data))), ensure_ascii=False, sort_keys=True,
                         separators=(",", ":")))
        return
    if len(sys.argv) == 2 and sys.argv[1] == "vectors":
        for name, p in vectors():
            data = p.SerializeToString()
            print("/* %s */" % name)
            print('"' + "".join("\\x%02x" % b for b in data) + '"')
        return
    sys.stderr.write("usage: sparkplug.py vectors | decode\n")
    sys.exit(2)


if __name__ == "__main__":
    main()
