#!/usr/bin/env python3
"""Reference fixtures for the loader, made with the `gguf` Python package (llama.cpp's own
GGUF reader), independent of strata. Run once; the outputs are committed:

  tests/fixtures/ggml_types.json        block size and bytes of every ggml type
  tests/fixtures/<model>.gguf-py.json   metadata scalars and the full tensor table

    pip install gguf==0.19.0 numpy && scripts/fetch_models.sh && python3 scripts/make_fixtures.py
"""
import json
import os
import sys
from importlib.metadata import version

import gguf

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests", "fixtures")
CACHE = os.environ.get("STRATA_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "strata")
MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}
REF = {"generator": "scripts/make_fixtures.py", "reference": f"gguf (python) {version('gguf')}"}


def scalar(field):
    t = gguf.GGUFValueType(field.types[0])
    if t == gguf.GGUFValueType.ARRAY:
        return {"type": "array", "elem": gguf.GGUFValueType(field.types[1]).name.lower() if len(field.types) > 1 else None,
                "len": len(field.data)}
    v = field.contents()
    if isinstance(v, float):
        return {"type": t.name.lower(), "value": v}
    return {"type": t.name.lower(), "value": v}


def main():
    os.makedirs(FIX, exist_ok=True)
    types = [{"id": int(t.value), "name": t.name, "block": b, "bytes": s}
             for t, (b, s) in sorted(gguf.GGML_QUANT_SIZES.items(), key=lambda x: x[0].value)]
    with open(os.path.join(FIX, "ggml_types.json"), "w") as f:
        json.dump({**REF, "types": types}, f, indent=1)
    for key, name in MODELS.items():
        path = os.path.join(CACHE, "models", name)
        if not os.path.exists(path):
            sys.exit(f"{path} missing: run scripts/fetch_models.sh")
        r = gguf.GGUFReader(path)
        meta = {k: scalar(v) for k, v in r.fields.items() if not k.startswith("GGUF.")}
        for k, v in meta.items():
            if k == "tokenizer.chat_template":
                v["value"] = len(v["value"])  # keep the fixture small: length only
                v["type"] = "string_len"
        tensors = [{"name": t.name, "type": t.tensor_type.name, "ggml_dims": [int(d) for d in t.shape.tolist()],
                    "offset": int(t.data_offset), "nbytes": int(t.n_bytes)} for t in r.tensors]
        out = {**REF, "file": name, "file_bytes": os.path.getsize(path), "n_metadata": len(meta),
               "metadata": meta, "tensors": tensors}
        with open(os.path.join(FIX, f"{key}.gguf-py.json"), "w") as f:
            json.dump(out, f, indent=0)
    print("fixtures written to", FIX)


if __name__ == "__main__":
    main()
