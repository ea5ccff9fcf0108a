#!/usr/bin/env python3
"""Dequantisation references for the files of scripts/make_quant_models.sh (llama.cpp's
llama-quantize, gguf-py's MXFP4), from gguf-py (`gguf.quants.dequantize`), independent of
strata. Committed output, tests/fixtures/reference/quant/dequant.json:

  files: per file, every tensor's type and the sha256 of its dequantised values (f32,
         little-endian, row-major): tests/tests/quant_models.rs dequantises every block of
         every tensor and compares the digest (where the files are);
  rows:  for each weight type in those files, the first and last row of its first tensor,
         raw bytes and values: tests/tests/dequant.rs compares them bit for bit without the
         files (CI, which does not build llama.cpp).

    scripts/make_quant_models.sh && python3 scripts/make_quant_model_fixtures.py
"""
import hashlib
import json
import os
from importlib.metadata import version

import numpy as np
import gguf

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CACHE = os.environ.get("STRATA_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "strata")
FILES = [f"SmolLM2-135M-Instruct.{t}.gguf" for t in ["Q2_K", "Q3_K_M", "IQ4_NL", "IQ4_XS", "MXFP4"]]
FILES += [f"gemma-3-270m.{t}.gguf" for t in ["Q2_K", "Q3_K_M", "IQ4_NL", "IQ4_XS"]]
NEW_TYPES = {"Q2_K", "Q3_K", "IQ4_NL", "IQ4_XS", "MXFP4"}


def main():
    files, rows, seen = {}, [], set()
    for name in FILES:
        r = gguf.GGUFReader(os.path.join(CACHE, "models", name))
        tensors = []
        for t in r.tensors:
            shape = [int(x) for x in reversed(t.shape.tolist())]
            vals = gguf.quants.dequantize(t.data, t.tensor_type).astype("<f4").reshape(-1)
            tensors.append({"name": t.name, "type": t.tensor_type.name, "sha256": hashlib.sha256(vals.tobytes()).hexdigest()})
            tname = t.tensor_type.name
            if tname in NEW_TYPES and tname not in seen and len(shape) == 2:
                seen.add(tname)
                raw = np.asarray(t.data).reshape(shape[0], -1)
                vals = vals.reshape(shape)
                for row in [0, shape[0] - 1]:
                    rows.append({"file": name, "tensor": t.name, "type": tname, "row": row,
                                 "raw_hex": raw[row].tobytes().hex(), "values": [float(x) for x in vals[row]]})
        files[name] = tensors
        print(name, len(tensors), "tensors;", sorted({t["type"] for t in tensors}))
    out = {"generator": "scripts/make_quant_model_fixtures.py", "reference": f"gguf (python) {version('gguf')}, numpy {np.__version__}",
           "files": files, "rows": rows}
    os.makedirs(os.path.join(ROOT, "tests", "fixtures", "reference", "quant"), exist_ok=True)
    with open(os.path.join(ROOT, "tests", "fixtures", "reference", "quant", "dequant.json"), "w") as f:
        json.dump(out, f, indent=0)
    print("rows of", sorted(seen))


if __name__ == "__main__":
    main()
