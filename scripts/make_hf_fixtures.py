#!/usr/bin/env python3
"""Reference outputs of Hugging Face transformers (float32, CPU) for the CPU engine's
conformance tests, on the same prompt token ids as the llama.cpp fixtures. Run once; the
outputs are committed:

  tests/fixtures/reference/<model>.hf.json     per prompt: 32 greedy ids, per-step top-5
                                               under teacher forcing, reference versions;
  tests/fixtures/reference/<model>.p<N>.final.hf.f32   full final-position logits.

Models: the two GGUFs, loaded by transformers itself (`gguf_file=`, dequantised to float:
the weights strata computes with), and `smollm2-f32`, the F32 safetensors copy made by
scripts/gguf_to_safetensors.py --dtype f32 (the exact check).

    ~/.cache/strata/refvenv/bin/pip install torch transformers gguf numpy
    ~/.cache/strata/refvenv/bin/python scripts/make_hf_fixtures.py
"""
import json
import os
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import torch
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "reference")
CACHE = os.environ.get("STRATA_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "strata")
MODELS_DIR = os.path.join(CACHE, "models")
F32_DIR = os.path.join(MODELS_DIR, "SmolLM2-135M-Instruct-f32")
STEPS = 32


def load(key):
    if key == "smollm2-f32":
        if not os.path.exists(os.path.join(F32_DIR, "config.json")):
            subprocess.check_call([sys.executable, os.path.join(ROOT, "scripts", "gguf_to_safetensors.py"),
                                   os.path.join(MODELS_DIR, "SmolLM2-135M-Instruct.Q4_1.gguf"), F32_DIR, "--dtype", "f32"])
        return AutoModelForCausalLM.from_pretrained(F32_DIR, torch_dtype=torch.float32)
    name = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}[key]
    return AutoModelForCausalLM.from_pretrained(MODELS_DIR, gguf_file=name, torch_dtype=torch.float32)


@torch.no_grad()
def logits_of(model, ids):
    return model(torch.tensor([ids])).logits[0].float().numpy()


def main():
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    refs = {"transformers": version("transformers"), "torch": version("torch"), "gguf": version("gguf")}
    for key, ids_from in [("smollm2", "smollm2"), ("smollm2-f32", "smollm2"), ("gemma3", "gemma3")]:
        model = load(key).eval()
        with open(os.path.join(OUT, f"{ids_from}.llamacpp.json")) as f:
            prompts = [c["prompt_ids"] for c in json.load(f)["cases"]]
        cases = []
        for i, ids in enumerate(prompts):
            final = logits_of(model, ids)[-1]
            final.astype("<f4").tofile(os.path.join(OUT, f"{key}.p{i}.final.hf.f32"))
            greedy, seq = [], list(ids)
            for _ in range(STEPS):  # full recompute each step: no cache subtleties
                nxt = int(np.argmax(logits_of(model, seq)[-1]))
                greedy.append(nxt)
                seq.append(nxt)
            rows = logits_of(model, ids + greedy[:-1])
            top5 = []
            for step in range(STEPS):
                row = rows[len(ids) - 1 + step]
                order = np.argsort(-row, kind="stable")[:5]
                top5.append({"ids": [int(x) for x in order], "logits": [float(row[x]) for x in order]})
            cases.append({"prompt_ids": ids, "greedy": greedy, "top5": top5, "final_logits_file": f"{key}.p{i}.final.hf.f32"})
            print(key, i, len(ids), "greedy", greedy[:8])
        with open(os.path.join(OUT, f"{key}.hf.json"), "w") as f:
            json.dump({"generator": "scripts/make_hf_fixtures.py", "model": key, "reference": refs,
                       "vocab_size": int(model.config.get_text_config().vocab_size), "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
