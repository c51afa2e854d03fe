#!/usr/bin/env python3
"""weights_compare.py — are two model `weights` parts the same tensors?

  weights_compare.py A B

Each file is a FLOWWTS v1 tensor file (flow-model v1 artifacts) or a
safetensors file (v2).  Prints one line per tensor that differs (name,
shape, or any value bit) and a summary; exit 0 when every tensor has the
same name, shape and float32 bits in both, 1 otherwise.  Used by
legal_parts_diff.sh to show that a weights part changed its format only.
"""
import json
import struct
import sys

import numpy as np


def read_flowwts(raw):
    ver, n, data_off = struct.unpack_from("<IIQ", raw, 8)
    pos, out = 24, {}
    for _ in range(n):
        (l,) = struct.unpack_from("<I", raw, pos)
        name = raw[pos + 4:pos + 4 + l].decode()
        pos += 4 + l
        (nd,) = struct.unpack_from("<I", raw, pos)
        dims = struct.unpack_from("<%dQ" % nd, raw, pos + 4)
        pos += 4 + 8 * nd
        off, count = struct.unpack_from("<QQ", raw, pos)
        pos += 16
        a = np.frombuffer(raw, dtype="<f4", count=count, offset=data_off + 4 * off)
        out[name] = a.reshape([int(d) for d in dims])
    return out


def read_safetensors(raw):
    (hl,) = struct.unpack_from("<Q", raw, 0)
    header = json.loads(raw[8:8 + hl])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        b, e = t["data_offsets"]
        a = np.frombuffer(raw, dtype="<f4", count=(e - b) // 4, offset=8 + hl + b)
        out[name] = a.reshape(t["shape"])
    return out


def read(path):
    raw = open(path, "rb").read()
    return read_flowwts(raw) if raw[:8] == b"FLOWWTS\0" else read_safetensors(raw)


def main():
    a, b = read(sys.argv[1]), read(sys.argv[2])
    bad = 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print("only in %s: %s" % ("A" if name in a else "B", name))
            bad += 1
        elif a[name].shape != b[name].shape:
            print("%s: shape %s vs %s" % (name, a[name].shape, b[name].shape))
            bad += 1
        elif a[name].tobytes() != b[name].tobytes():
            print("%s: values differ" % name)
            bad += 1
    print("%d tensors, %d differ" % (len(set(a) | set(b)), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
