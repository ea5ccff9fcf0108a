#!/usr/bin/env python3
"""Reference dequantization fixtures from llama.cpp's Python implementation
(`gguf.quants.dequantize`, numpy), independent of strata. Committed output:

  tests/fixtures/dequant.json  for each compute format: random blocks (seeded; f16 scale
                               fields set to finite values) and their dequantized floats,
                               plus rows of real tensors from both real models.

    pip install gguf==0.19.0 numpy && scripts/fetch_models.sh && python3 scripts/make_quant_fixtures.py
"""
import json
import os
from importlib.metadata import version

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CACHE = os.environ.get("STRATA_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "strata")

# Byte offsets of the f16 scale fields in each block (the rest is random).
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.IQ4_NL: [0], T.IQ4_XS: [0], T.MXFP4: [],
}
# Byte offsets of E8M0 exponents (MXFP4): set to 2^-17 .. 2^7 (every value finite).
E8M0_FIELDS = {T.MXFP4: [0]}


def random_blocks(rng, t, n_blocks):
    block, size = gguf.GGML_QUANT_SIZES[t]
    if t == T.F32:
        return rng.standard_normal(n_blocks * block).astype("<f4").tobytes()
    if t == T.F16:
        return rng.standard_normal(n_blocks * block).astype("<f2").tobytes()
    if t == T.BF16:
        f = rng.standard_normal(n_blocks * block).astype("<f4").view("<u4")
        return (f >> 16).astype("<u2").tobytes()
    raw = bytearray(rng.integers(0, 256, n_blocks * size, dtype=np.uint8).tobytes())
    for b in range(n_blocks):
        for off in F16_FIELDS[t]:
            v = np.float16(rng.uniform(-0.05, 0.05))
            raw[b * size + off: b * size + off + 2] = v.tobytes()
        for off in E8M0_FIELDS.get(t, []):
            raw[b * size + off] = int(rng.integers(110, 135))
    return bytes(raw)


def main():
    rng = np.random.default_rng(1234)
    cases = []
    # (New formats are appended, so that the earlier ones keep their random blocks.)
    for t in [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q4_K, T.Q5_K, T.Q6_K,
              T.Q2_K, T.Q3_K, T.IQ4_NL, T.IQ4_XS, T.MXFP4]:
        block, size = gguf.GGML_QUANT_SIZES[t]
        n_blocks = max(1, 512 // block) if block > 1 else 64
        raw = random_blocks(rng, t, n_blocks)
        vals = gguf.quants.dequantize(np.frombuffer(raw, dtype=np.uint8), t).astype(np.float32).reshape(-1)
        cases.append({"type": t.name, "raw_hex": raw.hex(), "values": [float(x) for x in vals]})

    real = []
    for name in ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]:
        r = gguf.GGUFReader(os.path.join(CACHE, "models", name))
        seen = set()
        for t in r.tensors:
            if t.tensor_type in seen or len(t.shape) != 2:
                continue
            seen.add(t.tensor_type)
            rows = gguf.quants.dequantize(t.data, t.tensor_type).reshape(int(t.shape[1]), int(t.shape[0]))
            for row in [0, int(t.shape[1]) - 1]:
                real.append({"file": name, "tensor": t.name, "type": t.tensor_type.name, "row": row,
                             "values": [float(x) for x in rows[row].astype(np.float32)]})
    out = {"generator": "scripts/make_quant_fixtures.py", "reference": f"gguf (python) {version('gguf')}, numpy {np.__version__}",
           "blocks": cases, "real_rows": real}
    with open(os.path.join(ROOT, "tests", "fixtures", "dequant.json"), "w") as f:
        json.dump(out, f)
    print("wrote tests/fixtures/dequant.json")


if __name__ == "__main__":
    main()
