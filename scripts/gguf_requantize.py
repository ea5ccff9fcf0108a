#!/usr/bin/env python3
"""Rewrites a GGUF with every 2-D weight in another type, by gguf-py's own quantiser
(`gguf.quants.quantize`): for the types llama-quantize writes only in some tensors (MXFP4:
MoE experts). Metadata is copied as it is (general.file_type set to the new type's
llama.cpp ftype); norms and other 1-D tensors stay as they are.

    python3 scripts/gguf_requantize.py IN.gguf OUT.gguf MXFP4

With F32 as the type, every tensor (any rank, any type) becomes gguf-py's dequantisation of
it: the file's f32 twin, on which llama.cpp computes in f32 what the quantised file means
(scripts/make_reference_fixtures.py --quant).
"""
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, GGUFValueType as V

FTYPE = {"MXFP4": 38, "Q8_0": 7, "F32": 0}


def main():
    src, dst, type_name = sys.argv[1:]
    qtype = T[type_name]
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.alignment"):
            continue
        if name == "general.file_type":
            w.add_uint32(name, FTYPE[type_name])
            continue
        main = f.types[0]
        sub = f.types[-1] if main == V.ARRAY else None
        w.add_key_value(name, f.contents(), main, sub)
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    for t in r.tensors:
        shape = [int(x) for x in reversed(t.shape.tolist())]  # numpy order: rows first
        if qtype == T.F32:
            vals = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
            w.add_tensor(t.name, vals, raw_dtype=T.F32)
        elif len(shape) == 2 and shape[-1] % block == 0:
            vals = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
            w.add_tensor(t.name, gguf.quants.quantize(vals, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(t.name, np.array(t.data), raw_shape=shape, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
