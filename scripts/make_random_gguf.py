#!/usr/bin/env python3
"""A Llama-architecture GGUF with random weights in a real layout, for speed measurements
(decode speed does not need trained weights): every tensor has the name, shape and
quantisation type llama.cpp and strata expect, its blocks filled with random quants and
small, finite scales. The tokenizer (and its vocabulary size) is copied from a real GGUF,
so `strata bench` and `llama-bench` both load it.

  make_random_gguf.py OUT.gguf --tokenizer-from SmolLM2-135M-Instruct.Q4_1.gguf \
      [--preset 1b|7b|8b|tiny] [--type Q4_0|Q8_0|Q4_K|Q6_K|Q4_K_M]

Q4_K_M is llama.cpp's mix of that name: Q4_K, with Q6_K for the output head and for
attn_v / ffn_down in the layers llama.cpp gives more bits (`use_more_bits`).
Presets: 7b = Llama-2-7B's shapes (4096 hidden, 11008 FFN, 32 layers, 32/32 heads),
8b = Llama-3-8B's shapes (4096 hidden, 14336 FFN, 32 layers, 32/8 heads),
1b = TinyLlama-1.1B's (2048, 5632, 22 layers, 32/4 heads), tiny = a test size.
Needs numpy and gguf (pip install gguf numpy).
"""
import argparse

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as VT

PRESETS = {
    "7b": dict(hidden=4096, ffn=11008, layers=32, heads=32, kv_heads=32),
    "8b": dict(hidden=4096, ffn=14336, layers=32, heads=32, kv_heads=8),
    "1b": dict(hidden=2048, ffn=5632, layers=22, heads=32, kv_heads=4),
    "tiny": dict(hidden=256, ffn=512, layers=2, heads=4, kv_heads=2),
}

# (values per block, bytes per block, byte offsets of f16 scale fields)
BLOCKS = {
    "Q4_0": (32, 18, [0]),
    "Q8_0": (32, 34, [0]),
    "Q4_K": (256, 144, [0, 2]),
    "Q6_K": (256, 210, [208]),
}


def random_quant(rng, rows, cols, qtype):
    per, nbytes, scales = BLOCKS[qtype]
    assert cols % per == 0, f"{cols} columns are not whole {qtype} blocks"
    blocks = rows * cols // per
    data = rng.integers(0, 256, size=(blocks, nbytes), dtype=np.uint8)
    # Scales small and finite (random f16 bits would include inf/NaN); d ~ 1/sqrt(cols).
    d = np.array([0.5 / np.sqrt(cols)], dtype=np.float16).view(np.uint8)
    for off in scales:
        data[:, off:off + 2] = d
    return data.reshape(rows, cols // per * nbytes)


def copy_tokenizer(src, w):
    r = gguf.GGUFReader(src)
    vocab = None
    for name, f in r.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vtype = VT(f.types[0])
        val = f.contents()
        if vtype == VT.ARRAY:
            sub = VT(f.types[1])
            w.add_key_value(name, val, vtype, sub_type=sub)
            if name == "tokenizer.ggml.tokens":
                vocab = len(val)
        else:
            w.add_key_value(name, val, vtype)
    if vocab is None:
        raise SystemExit(f"{src}: no tokenizer.ggml.tokens")
    return vocab


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--tokenizer-from", required=True)
    ap.add_argument("--preset", default="8b", choices=PRESETS)
    ap.add_argument("--type", default="Q4_0", choices=[*BLOCKS, "Q4_K_M"])
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    p = PRESETS[a.preset]
    rng = np.random.default_rng(a.seed)
    h, ff, nl, nh, nkv = p["hidden"], p["ffn"], p["layers"], p["heads"], p["kv_heads"]
    hd = h // nh
    w = gguf.GGUFWriter(a.out, "llama")
    w.add_name(f"random-llama-{a.preset}-{a.type}")
    vocab = copy_tokenizer(a.tokenizer_from, w)
    w.add_context_length(8192)
    w.add_embedding_length(h)
    w.add_feed_forward_length(ff)
    w.add_block_count(nl)
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(hd)
    w.add_vocab_size(vocab)
    # The embedding and output head are quantised like the rest (llama.cpp keeps Q6_K or
    # Q8_0 there; any supported type is a real layout). Norms stay f32.
    head_t = "Q8_0" if a.type in ("Q4_0", "Q8_0") else "Q6_K"
    mix = a.type == "Q4_K_M"
    base = "Q4_K" if mix else a.type
    def more_bits(i):
        # llama.cpp's use_more_bits(i_layer, n_layers).
        return i < nl // 8 or i >= 7 * nl // 8 or (i - nl // 8) % 3 == 2
    def quant(name, rows, cols, t=base):
        # uint8 data: gguf takes the byte shape and derives [rows, cols] from the type.
        w.add_tensor(name, random_quant(rng, rows, cols, t), raw_dtype=getattr(Q, t))
    def norm(name, n):
        w.add_tensor(name, (1.0 + 0.01 * rng.standard_normal(n)).astype(np.float32))
    quant("token_embd.weight", vocab, h, base if mix else head_t)
    for i in range(nl):
        b = f"blk.{i}."
        norm(b + "attn_norm.weight", h)
        quant(b + "attn_q.weight", h, h)
        quant(b + "attn_k.weight", nkv * hd, h)
        quant(b + "attn_v.weight", nkv * hd, h, "Q6_K" if mix and more_bits(i) else base)
        quant(b + "attn_output.weight", h, h)
        norm(b + "ffn_norm.weight", h)
        quant(b + "ffn_gate.weight", ff, h)
        quant(b + "ffn_up.weight", ff, h)
        quant(b + "ffn_down.weight", h, ff, "Q6_K" if mix and more_bits(i) else base)
    norm("output_norm.weight", h)
    quant("output.weight", vocab, h, head_t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
