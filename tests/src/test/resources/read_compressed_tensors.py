#!/usr/bin/env python3
"""Independent reader of a compressed-tensors pack-quantized checkpoint, for babai-quant's tests.

Written from compressed-tensors' description of the format (pack_to_int32 / unpack_from_int32, QuantizationArgs,
compressed-tensors 0.16.0) and vLLM's CompressedTensorsWNA16.create_weights, not from babai-quant's Java writer:
it parses the safetensors bytes and config.json itself, unpacks with numpy, dequantizes
W = (q - zp) * scale with signed q and zp, and compares every listed module with an expected float64 matrix.

usage: read_compressed_tensors.py CHECKPOINT_DIR MANIFEST
MANIFEST: one line per module, "MODULE<TAB>EXPECTED.npy" (float64 [out, in], the quantize shards' dequantized weight).
Prints one line per module; exit status 0 when every module matches exactly, 1 otherwise, 2 on malformed input.
"""
import json
import os
import struct
import sys

import numpy as np

DTYPES = {"I32": np.dtype("<i4"), "I64": np.dtype("<i8"), "F16": np.dtype("<f2"), "F32": np.dtype("<f4"),
          "F64": np.dtype("<f8"), "BF16": np.dtype("<u2")}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        dt = DTYPES.get(t["dtype"])
        if dt is None:
            out[name] = (t["dtype"], t["shape"], None)
            continue
        arr = np.frombuffer(raw[base + a:base + b], dtype=dt).reshape(t["shape"])
        if t["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = (t["dtype"], t["shape"], arr)
    return out


def load_checkpoint(d):
    index = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    tensors = {}
    for f in files:
        tensors.update(read_safetensors(os.path.join(d, f)))
    return tensors


def unpack(words, bits, count):
    """Element k of each row sits at bits [bits*k, bits*k + bits) of the row's little-endian int32 stream."""
    u = words.astype(np.int64) & 0xFFFFFFFF
    k = np.arange(count)
    word = (k * bits) // 32
    shift = (k * bits) % 32
    return (u[:, word] >> shift) & ((1 << bits) - 1)


def main():
    ckpt, manifest = sys.argv[1], sys.argv[2]
    qc = json.load(open(os.path.join(ckpt, "config.json")))["quantization_config"]
    if qc.get("quant_method") != "compressed-tensors" or qc.get("format") != "pack-quantized":
        print("not a compressed-tensors pack-quantized config: %r" % qc)
        return 2
    (group,) = qc["config_groups"].values()
    w = group["weights"]
    bits, sym, strategy, gsize = w["num_bits"], w["symmetric"], w["strategy"], w["group_size"]
    offset = 1 << (bits - 1)
    tensors = load_checkpoint(ckpt)
    ok = True
    for line in open(manifest):
        module, expected_file = line.rstrip("\n").split("\t")
        expected = np.load(expected_file)
        out, inp = expected.shape
        shape = tensors[module + ".weight_shape"][2]
        if list(shape) != [out, inp] or module + ".weight" in tensors:
            print("%s: weight_shape %s, dense weight present %s" % (module, list(shape), module + ".weight" in tensors))
            ok = False
            continue
        q = unpack(tensors[module + ".weight_packed"][2], bits, inp) - offset
        scale = tensors[module + ".weight_scale"][2].astype(np.float64)
        groups = scale.shape[1]
        if sym:
            if module + ".weight_zero_point" in tensors:
                print("%s: symmetric scheme but a weight_zero_point is stored" % module)
                ok = False
            zp = np.zeros((out, groups), dtype=np.int64)
        else:
            zpp = tensors[module + ".weight_zero_point"][2]
            zp = unpack(zpp.T.copy(), bits, out).T - offset  # packed along the output axis
        if module + ".weight_g_idx" in tensors:
            g_idx = tensors[module + ".weight_g_idx"][2].astype(np.int64)
        elif strategy == "channel":
            g_idx = np.zeros(inp, dtype=np.int64)
        else:
            g_idx = np.arange(inp) // gsize
        dq = (q - zp[:, g_idx]).astype(np.float64) * scale[:, g_idx]
        diff = float(np.max(np.abs(dq - expected)))
        same = bool(np.array_equal(dq, expected))
        ok &= same
        print("%s %s bits=%d sym=%s strategy=%s groups=%d g_idx=%s max_abs_diff=%r" % (
            "OK" if same else "MISMATCH", module, bits, sym, strategy, groups, module + ".weight_g_idx" in tensors, diff))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
