#!/usr/bin/env python3
"""llama.cpp's token ids (llama-cpp-python) for a corpus of strings on both real models,
for the tokenizer conformance test. Run once; tests/fixtures/reference/tokenizer.json is
committed. `ids` are with BOS as the model's metadata asks (add_bos_token), special=False.

    ~/.cache/strata/refvenv/bin/python scripts/make_tokenizer_fixtures.py
"""
import json
import os
from importlib.metadata import version

from llama_cpp import Llama

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CACHE = os.environ.get("STRATA_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "strata")
MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}
CORPUS = [
    "Hello", "Hello world", " Hello world", "Hello  world", "hello\nworld", "Hello, world! How are you?",
    "The quick brown fox jumps over the lazy dog.", "I'm sure they'll say we've done it.",
    "1234567890", "3.14159 and 2,718,281", "  leading spaces", "trailing spaces   ", "\t\ttabs\tand\nnewlines\n\n\n",
    "café naïve résumé coöperate", "Ærøskøbing Straße", "Привет, мир!", "Γειά σου Κόσμε",
    "日本語のテキストです。", "中文分词测试", "한국어 문장", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
    "emoji: 😀🎉👍🏽 ❤️", "👨‍👩‍👧‍👦 family", "math: ∑ x² ≤ ∞ → ∀ε>0",
    "fn main() {\n    println!(\"hi\");\n}", "def f(x):\n\treturn x**2  # square",
    "<html><body class=\"x\">&amp;</body></html>", "SELECT * FROM t WHERE a >= 10;",
    "https://example.com/path?q=1&r=two#frag", "snake_case camelCase PascalCase kebab-case",
    "a", " ", "!!!???...", "<|im_start|>user\nhi<|im_end|>",
]


def main():
    out = {"generator": "scripts/make_tokenizer_fixtures.py", "reference": {"llama_cpp_python": version("llama-cpp-python")}, "models": {}}
    for key, name in MODELS.items():
        llm = Llama(model_path=os.path.join(CACHE, "models", name), n_ctx=64, vocab_only=True, verbose=False)
        add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "true") == "true"
        cases = []
        for text in CORPUS:
            ids = llm.tokenize(text.encode(), add_bos=add_bos, special=False)
            cases.append({"text": text, "ids": [int(i) for i in ids]})
        out["models"][key] = {"file": name, "add_bos": add_bos, "cases": cases}
    with open(os.path.join(ROOT, "tests", "fixtures", "reference", "tokenizer.json"), "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    print(len(CORPUS), "strings")


if __name__ == "__main__":
    main()
