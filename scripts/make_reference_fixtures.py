#!/usr/bin/env python3
"""Reference outputs of llama.cpp (through llama-cpp-python) on the real models, for the
CPU engine's conformance tests. Run once; the outputs are committed (not the weights):

  tests/fixtures/reference/<model>.llamacpp.json   per prompt: prompt token ids, 32 greedy
      ids, per-step top-5 (ids and logits) under teacher forcing along them, and the
      reference versions;
  tests/fixtures/reference/<model>.p<N>.final.f32  the full final-position logits
      (little-endian f32, vocab_size values).

    python3 -m venv ~/.cache/strata/refvenv
    ~/.cache/strata/refvenv/bin/pip install llama-cpp-python gguf numpy
    scripts/fetch_models.sh && ~/.cache/strata/refvenv/bin/python scripts/make_reference_fixtures.py

With --quant: the models of scripts/make_quant_models.sh (Q2_K, Q3_K_M, IQ4_NL, IQ4_XS,
MXFP4), into tests/fixtures/reference/quant/<model>.<type>.llamacpp.json, the final
position as its top 64 (ids and logits) instead of a full-vocabulary file. llama-cpp-python
may run over the llama.cpp that scripts/llama_cpp.sh built (its Python package from the
same sdist on PYTHONPATH, LLAMA_CPP_LIB_PATH=<build>/bin). Each quantised file is also
run as its f32 twin (every tensor dequantised by gguf-py, scripts/gguf_requantize.py F32,
written to a temporary file), with an f32 KV cache and no flash attention, into
quant/<model>.<type>.f32.llamacpp.json: llama.cpp computing in f32 what the file's blocks
mean, free of its 8-bit activation quantisation (Q8_K for the K and IQ4_XS types), so a
backend that computes in f32 is held to a tight bound there.
"""
import sys
import json
import os
from importlib.metadata import version

import subprocess
import tempfile

import numpy as np
from llama_cpp import Llama

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "reference")
CACHE = os.environ.get("STRATA_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "strata")
MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}
QUANT_MODELS = {f"smollm2.{t.lower()}": f"SmolLM2-135M-Instruct.{t}.gguf" for t in ["Q2_K", "Q3_K_M", "IQ4_NL", "IQ4_XS", "MXFP4"]}
QUANT_MODELS.update({f"gemma3.{t.lower()}": f"gemma-3-270m.{t}.gguf" for t in ["Q2_K", "Q3_K_M", "IQ4_NL", "IQ4_XS"]})
FINAL_TOP = 64
STEPS = 32
LONG = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
    "combined movable metal type, oil-based inks and a wooden press adapted from those used to make "
    "wine. Before his invention, books in Europe were copied by hand, usually by monks working in "
    "scriptoria, and a single volume could take months to finish. Printing changed the economics of "
    "knowledge: within fifty years, presses operated in more than two hundred cities, and millions of "
    "books had been produced. Scholars could compare identical copies of a text, errors could be "
    "corrected in later editions, and ideas travelled faster than ever before. The Reformation, the "
    "Scientific Revolution and the rise of newspapers all depended on cheap printed material. Yet the "
    "technology itself changed slowly; for nearly four centuries, printers set type letter by letter, "
    "inked the forme, and pulled each sheet by hand. Only in the nineteenth century did steam-powered "
    "presses, continuous rolls of paper and mechanical typesetting make printing truly industrial. "
    "Today, digital screens have replaced much of what paper once carried, but the basic idea remains: "
    "to make many faithful copies of a message so that it can reach people far away in space and time. "
    "In summary, the most important consequence of the printing press was"
)
# (name, text, add_bos): prompt 0 is a single token (no BOS).
PROMPTS = [("single", "The", False), ("short", "The capital of France is", True), ("long", LONG, True)]


def main():
    quant = "--quant" in sys.argv[1:]
    out_dir = os.path.join(OUT, "quant") if quant else OUT
    os.makedirs(out_dir, exist_ok=True)
    try:
        lcpp_version = version("llama-cpp-python")
    except Exception:  # the package from the sdist on PYTHONPATH, not installed
        import llama_cpp
        lcpp_version = llama_cpp.__version__
    refs = {"llama_cpp_python": lcpp_version, "numpy": np.__version__}
    for key, name in (QUANT_MODELS if quant else MODELS).items():
        path = os.path.join(CACHE, "models", name)
        run(key, name, Llama(model_path=path, n_ctx=1024, logits_all=True, n_threads=os.cpu_count(), verbose=False, seed=0), quant, out_dir, refs)
        if quant:
            with tempfile.TemporaryDirectory(dir=os.path.join(CACHE, "models")) as tmp:
                twin = os.path.join(tmp, "twin.f32.gguf")
                subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gguf_requantize.py"), path, twin, "F32"], check=True)
                f32 = 0  # GGML_TYPE_F32
                llm = Llama(model_path=twin, n_ctx=1024, logits_all=True, n_threads=os.cpu_count(), verbose=False, seed=0,
                            type_k=f32, type_v=f32, flash_attn=False)
                run(f"{key}.f32", f"{name} as its f32 twin", llm, quant, out_dir, refs)
                del llm


def run(key, name, llm, quant, out_dir, refs):
    """Greedy continuation and teacher-forced top-5 of `llm` on every prompt, into
    <out_dir>/<key>.llamacpp.json."""
    add_bos_meta = llm.metadata.get("tokenizer.ggml.add_bos_token", "true") == "true"
    cases = []
    for i, (pname, text, want_bos) in enumerate(PROMPTS):
        ids = llm.tokenize(text.encode(), add_bos=want_bos and add_bos_meta, special=False)
        if pname == "single":
            ids = ids[:1]
        llm.reset()
        llm.eval(ids)
        final = np.array(llm.scores[len(ids) - 1], dtype=np.float32)
        if quant:
            order = np.argsort(-final, kind="stable")[:FINAL_TOP]
            final_ref = {"final_top": {"ids": [int(x) for x in order], "logits": [float(final[x]) for x in order]}}
        else:
            final.astype("<f4").tofile(os.path.join(OUT, f"{key}.p{i}.final.f32"))
            final_ref = {"final_logits_file": f"{key}.p{i}.final.f32"}
        greedy = []
        logits = final
        for _ in range(STEPS):
            nxt = int(np.argmax(logits))
            greedy.append(nxt)
            llm.eval([nxt])
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        # Teacher forcing along prompt + greedy[:-1]: logits at the 32 predicting positions.
        llm.reset()
        llm.eval(ids + greedy[:-1])
        scores = np.array(llm.scores[: llm.n_tokens], dtype=np.float32)
        top5 = []
        for step in range(STEPS):
            row = scores[len(ids) - 1 + step]
            order = np.argsort(-row, kind="stable")[:5]
            top5.append({"ids": [int(x) for x in order], "logits": [float(row[x]) for x in order]})
        cases.append({"name": pname, "text": text, "add_bos": bool(want_bos and add_bos_meta), "prompt_ids": [int(x) for x in ids],
                      "greedy": greedy, "top5": top5, **final_ref})
        print(key, pname, len(ids), "tokens; greedy:", llm.detokenize(greedy)[:60])
    with open(os.path.join(out_dir, f"{key}.llamacpp.json"), "w") as f:
        json.dump({"generator": "scripts/make_reference_fixtures.py", "model": name, "reference": refs,
                   "vocab_size": llm.n_vocab(), "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
