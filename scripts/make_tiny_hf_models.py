#!/usr/bin/env python3
"""Tiny random-weight models of every supported architecture, made and run by HF
transformers (float32, CPU), for the forward-pass conformance test. Committed (a few
hundred KiB in all): tests/fixtures/tiny/<arch>/{config.json, model.safetensors,
logits.f32, tokens.json}. Windows and sizes are chosen so that sliding-window layers,
GQA, biases, QK-norm, soft-capping and partial rotary are all exercised by 24 tokens.

    ~/.cache/strata/refvenv/bin/python scripts/make_tiny_hf_models.py
"""
import json
import os
from importlib.metadata import version

import torch
import transformers as tf

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "tiny")
COMMON = dict(vocab_size=96, hidden_size=64, intermediate_size=80, num_hidden_layers=3, num_attention_heads=4,
              max_position_embeddings=64, rms_norm_eps=1e-6)
MODELS = {
    "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, dict(num_key_value_heads=2, rope_theta=10000.0, tie_word_embeddings=False,
              rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 16})),
    "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, dict(num_key_value_heads=1, rope_theta=1000000.0, tie_word_embeddings=True)),
    "qwen2-yarn": (tf.Qwen2Config, tf.Qwen2ForCausalLM, dict(num_key_value_heads=2, rope_theta=10000.0, tie_word_embeddings=False,
                   rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16})),
    "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM, dict(num_key_value_heads=2, head_dim=24, tie_word_embeddings=True)),
    "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM, dict(num_key_value_heads=2, sliding_window=7, tie_word_embeddings=False,
             pad_token_id=0, bos_token_id=1, eos_token_id=2)),
    "gemma2": (tf.Gemma2Config, tf.Gemma2ForCausalLM, dict(num_key_value_heads=2, head_dim=32, sliding_window=6,
               query_pre_attn_scalar=24, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
               hidden_activation="gelu_pytorch_tanh")),
    "gemma3": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM, dict(num_key_value_heads=1, head_dim=32, sliding_window=5,
               query_pre_attn_scalar=32, rope_theta=1000000.0, rope_local_base_freq=10000.0,
               layer_types=["sliding_attention", "full_attention", "sliding_attention"],
               hidden_activation="gelu_pytorch_tanh")),
}


def main():
    torch.manual_seed(1234)
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, COMMON["vocab_size"], (24,), generator=g).tolist()
    for name, (cfg_cls, model_cls, extra) in MODELS.items():
        cfg = cfg_cls(**COMMON, **extra)
        cfg.torch_dtype = "float32"
        model = model_cls(cfg).eval()
        # Random norm weights too (HF initialises them to 1 or 0): catches offset bugs.
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "norm" in n:
                    p.copy_(torch.randn_like(p) * 0.3 + (0.0 if "gemma" in name else 1.0))
                elif n.endswith(".bias"):
                    p.copy_(torch.randn_like(p) * 0.1)
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        for extra_file in ["generation_config.json"]:
            p = os.path.join(d, extra_file)
            if os.path.exists(p):
                os.remove(p)
        with torch.no_grad():
            logits = model(torch.tensor([tokens])).logits[0].float()
        logits.numpy().astype("<f4").tofile(os.path.join(d, "logits.f32"))
        with open(os.path.join(d, "tokens.json"), "w") as f:
            json.dump({"generator": "scripts/make_tiny_hf_models.py", "reference": {"transformers": version("transformers"), "torch": version("torch")},
                       "tokens": tokens, "logits": "logits.f32 ([tokens, vocab] float32, every position)"}, f, indent=1)
        print(name, "ok", os.path.getsize(os.path.join(d, "model.safetensors")))


if __name__ == "__main__":
    main()
