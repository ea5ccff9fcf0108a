#!/usr/bin/env python3
"""Make a Hugging Face style safetensors + config.json copy of a llama-architecture GGUF.

Used to prove that the safetensors path of strata's loader yields the same ModelConfig as
the GGUF path on a real model (SmolLM2-135M-Instruct). Independent of strata: it reads
the GGUF with the `gguf` Python package (llama.cpp's own reader), dequantizes every tensor
with `gguf.quants.dequantize`, undoes llama.cpp's Q/K row permutation (so the weights are
in HF's rotate-half layout again), renames tensors to HF names and writes the safetensors
format by hand (8-byte header length, JSON header, little-endian data).

    python3 scripts/gguf_to_safetensors.py MODEL.gguf OUT_DIR [--shards N] [--dtype bf16|f32]
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import gguf

HF_LAYER = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
HF_GLOBAL = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    v = f.contents()
    return v


def hf_name(name):
    stem, param = name.rsplit(".", 1)
    if stem.startswith("blk."):
        _, layer, part = stem.split(".", 2)
        return f"model.layers.{layer}.{HF_LAYER[part]}.{param}"
    return f"{HF_GLOBAL[stem]}.{param}"


def unpermute(w, n_head):
    """Inverse of llama.cpp convert_hf_to_gguf's `permute` for Q/K rows."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def to_bf16_bytes(a):
    """float32 -> bfloat16 with round-to-nearest-even, as little-endian bytes."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def write_safetensors(path, tensors, dtype):
    header, blobs, offset = {}, [], 0
    for name, arr in tensors:
        data = to_bf16_bytes(arr) if dtype == "bf16" else np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "BF16" if dtype == "bf16" else "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt", "source": "strata scripts/gguf_to_safetensors.py"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)
    return offset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf_path")
    ap.add_argument("out_dir")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    args = ap.parse_args()

    r = gguf.GGUFReader(args.gguf_path)
    arch = field(r, "general.architecture")
    if arch != "llama":
        sys.exit(f"only llama-architecture GGUFs are converted (got {arch})")
    n_head = int(field(r, "llama.attention.head_count"))
    n_kv = int(field(r, "llama.attention.head_count_kv", n_head))
    names = {t.name for t in r.tensors}
    tied = "output.weight" not in names

    tensors = []
    for t in r.tensors:
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        if t.name.endswith("attn_q.weight"):
            w = unpermute(w, n_head)
        elif t.name.endswith("attn_k.weight"):
            w = unpermute(w, n_kv)
        tensors.append((hf_name(t.name), w))

    tokens = field(r, "tokenizer.ggml.tokens")
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": int(field(r, "llama.embedding_length")),
        "intermediate_size": int(field(r, "llama.feed_forward_length")),
        "num_attention_heads": n_head,
        "num_hidden_layers": int(field(r, "llama.block_count")),
        "num_key_value_heads": n_kv,
        "max_position_embeddings": int(field(r, "llama.context_length")),
        "rms_norm_eps": float(field(r, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(field(r, "llama.rope.freq_base", 10000.0)),
        "vocab_size": int(field(r, "llama.vocab_size", len(tokens))),
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "bos_token_id": int(field(r, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(field(r, "tokenizer.ggml.eos_token_id")),
        "torch_dtype": "bfloat16" if args.dtype == "bf16" else "float32",
    }
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(args.out_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]}, f, indent=2)

    if args.shards == 1:
        write_safetensors(os.path.join(args.out_dir, "model.safetensors"), tensors, args.dtype)
    else:
        per = -(-len(tensors) // args.shards)
        weight_map, total = {}, 0
        for i in range(args.shards):
            part = tensors[i * per:(i + 1) * per]
            fname = f"model-{i + 1:05d}-of-{args.shards:05d}.safetensors"
            total += write_safetensors(os.path.join(args.out_dir, fname), part, args.dtype)
            weight_map.update({n: fname for n, _ in part})
        with open(os.path.join(args.out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    print(args.out_dir)


if __name__ == "__main__":
    main()
