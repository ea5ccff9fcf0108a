#!/usr/bin/env python3
"""Chat prompts rendered from each real model's GGUF `tokenizer.chat_template` the way
transformers' apply_chat_template does (jinja2 ImmutableSandboxedEnvironment with
trim_blocks and lstrip_blocks), for the chat-template test. Committed output:
tests/fixtures/reference/chat_template.json.

    ~/.cache/strata/refvenv/bin/python scripts/make_chat_fixtures.py
"""
import json
import os
from importlib.metadata import version

import gguf
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CACHE = os.environ.get("STRATA_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "strata")
MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}
CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a color."},
     {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "  Another one, please.\n"}],
]


def raise_exception(msg):
    raise TemplateError(msg)


def main():
    out = {"generator": "scripts/make_chat_fixtures.py", "reference": {"jinja2": version("jinja2")}, "models": {}}
    for key, name in MODELS.items():
        r = gguf.GGUFReader(os.path.join(CACHE, "models", name))
        if "tokenizer.chat_template" not in r.fields:
            out["models"][key] = {"template": None}
            continue
        template = r.fields["tokenizer.chat_template"].contents()
        tokens = r.fields["tokenizer.ggml.tokens"].contents()
        bos = tokens[int(r.fields["tokenizer.ggml.bos_token_id"].contents())]
        eos = tokens[int(r.fields["tokenizer.ggml.eos_token_id"].contents())]
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        t = env.from_string(template)
        cases = []
        for conv in CONVERSATIONS:
            for gen in (True, False):
                cases.append({"messages": conv, "add_generation_prompt": gen,
                              "text": t.render(messages=conv, add_generation_prompt=gen, bos_token=bos, eos_token=eos)})
        out["models"][key] = {"bos": bos, "eos": eos, "cases": cases}
    # A template whose output depends on trim_blocks / lstrip_blocks and Python string methods.
    synthetic = ("{% for m in messages %}\n    {% if m['role'] == 'system' %}\n[SYS] {{ m['content'] | trim }}\n    {% else %}\n"
                 "<{{ m['role'] }}>{{ m['content'].strip() }}</{{ m['role'] }}>\n    {% endif %}\n{% endfor %}\n"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    t = env.from_string(synthetic)
    out["synthetic"] = {"template": synthetic, "cases": [
        {"messages": conv, "add_generation_prompt": True, "text": t.render(messages=conv, add_generation_prompt=True)} for conv in CONVERSATIONS]}
    with open(os.path.join(ROOT, "tests", "fixtures", "reference", "chat_template.json"), "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
