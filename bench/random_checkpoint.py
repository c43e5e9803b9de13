"""Writes a random-weight Llama checkpoint in Hugging Face layout, for real-size benchmarks.

    /usr/bin/python3 bench/random_checkpoint.py OUT_DIR --shape tinyllama|llama2-7b|llama3-8b|tiny
        [--dtype float16|bfloat16] [--max-shard-bytes N] [--seed S]

OUT_DIR receives config.json, model-0000K-of-0000N.safetensors shards (at most --max-shard-bytes
of tensor data each, default 2 GB; a tensor larger than that gets a shard of its own) and
model.safetensors.index.json. Tensor names follow configs/llama.yaml. Weights are normal with
std 0.02, norm weights 1.0, the output head untied. Tensors are generated in float32 a chunk of
rows at a time and streamed to the shard, so the writer holds about one chunk (64 MB) however
big the model: a 16 GB checkpoint is writable on a machine with far less memory. There is no
safetensors package on these machines: the files are written by hand (little-endian u64 header
length, JSON header padded with spaces to 8 bytes, raw little-endian data). Run with
/usr/bin/python3 (Debian's python3-torch).
"""
import argparse
import json
import os
import struct
import sys
import time

import torch

# hidden, layers, heads, kv heads, FFN, vocab, positions, rope theta
SHAPES = {
    "tiny": dict(hidden=256, layers=2, heads=8, kv_heads=2, ffn=688, vocab=32000, positions=2048, theta=10000.0),
    # The test suite's mid-size model: 24 small layers, so a layer is a small part of the whole.
    "mid": dict(hidden=512, layers=24, heads=8, kv_heads=4, ffn=1536, vocab=4096, positions=512, theta=10000.0),
    "tinyllama": dict(hidden=2048, layers=22, heads=32, kv_heads=4, ffn=5632, vocab=32000, positions=2048,
                      theta=10000.0),
    "llama2-7b": dict(hidden=4096, layers=32, heads=32, kv_heads=32, ffn=11008, vocab=32000, positions=4096,
                      theta=10000.0),
    "llama3-8b": dict(hidden=4096, layers=32, heads=32, kv_heads=8, ffn=14336, vocab=128256, positions=4096,
                      theta=500000.0),
}
DTYPES = {"float16": (torch.float16, "F16"), "bfloat16": (torch.bfloat16, "BF16")}
CHUNK_ELEMENTS = 1 << 24  # float32 elements generated at once (64 MB)


def tensors(s):
    """(name, shape, kind) in checkpoint order; kind "norm" is all ones, "weight" is random."""
    h, d = s["hidden"], s["hidden"] // s["heads"]
    yield "model.embed_tokens.weight", [s["vocab"], h], "weight"
    for i in range(s["layers"]):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", [h], "norm"
        yield p + "self_attn.q_proj.weight", [s["heads"] * d, h], "weight"
        yield p + "self_attn.k_proj.weight", [s["kv_heads"] * d, h], "weight"
        yield p + "self_attn.v_proj.weight", [s["kv_heads"] * d, h], "weight"
        yield p + "self_attn.o_proj.weight", [h, s["heads"] * d], "weight"
        yield p + "post_attention_layernorm.weight", [h], "norm"
        yield p + "mlp.gate_proj.weight", [s["ffn"], h], "weight"
        yield p + "mlp.up_proj.weight", [s["ffn"], h], "weight"
        yield p + "mlp.down_proj.weight", [h, s["ffn"]], "weight"
    yield "model.norm.weight", [h], "norm"
    yield "lm_head.weight", [s["vocab"], h], "weight"


def plan_shards(entries, itemsize, max_bytes):
    """Splits the tensors, in order, into shards of at most max_bytes of data each."""
    shards, current, size = [], [], 0
    for entry in entries:
        nbytes = itemsize
        for n in entry[1]:
            nbytes *= n
        if current and size + nbytes > max_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(entry + (nbytes,))
        size += nbytes
    shards.append(current)
    return shards


def header_bytes(shard, dtype_name):
    header, offset = {}, 0
    for name, shape, _, nbytes in shard:
        header[name] = {"dtype": dtype_name, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def write_tensor(f, shape, kind, dtype, generator):
    """Streams one tensor: whole rows at a time, at most CHUNK_ELEMENTS float32 values each."""
    row = shape[-1]
    rows = 1
    for n in shape[:-1]:
        rows *= n
    step = max(1, CHUNK_ELEMENTS // row)
    for begin in range(0, rows, step):
        count = min(step, rows - begin)
        if kind == "norm":
            values = torch.ones(count, row)
        else:
            values = torch.randn(count, row, generator=generator).mul_(0.02)
        # int16 view: numpy has no bfloat16; the bytes are the same little-endian 16-bit words.
        f.write(values.to(dtype).view(torch.int16).numpy().data)


def main():
    parser = argparse.ArgumentParser(description="random-weight Llama checkpoint in Hugging Face layout")
    parser.add_argument("out_dir")
    parser.add_argument("--shape", required=True, choices=sorted(SHAPES))
    parser.add_argument("--dtype", default="float16", choices=sorted(DTYPES))
    parser.add_argument("--max-shard-bytes", type=int, default=2 * 1000 ** 3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, help="decoder layers instead of the shape's")
    args = parser.parse_args()
    s = dict(SHAPES[args.shape])
    if args.layers is not None:
        s["layers"] = args.layers
    dtype, dtype_name = DTYPES[args.dtype]
    os.makedirs(args.out_dir, exist_ok=True)
    start = time.perf_counter()

    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": s["hidden"], "intermediate_size": s["ffn"], "num_hidden_layers": s["layers"],
        "num_attention_heads": s["heads"], "num_key_value_heads": s["kv_heads"], "vocab_size": s["vocab"],
        "max_position_embeddings": s["positions"], "rms_norm_eps": 1e-5, "rope_theta": s["theta"],
        "tie_word_embeddings": False, "torch_dtype": args.dtype, "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu", "initializer_range": 0.02,
    }
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")

    shards = plan_shards(list(tensors(s)), 2, args.max_shard_bytes)
    generator = torch.Generator().manual_seed(args.seed)
    weight_map, total, parameters = {}, 0, 0
    for k, shard in enumerate(shards):
        name = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        with open(os.path.join(args.out_dir, name), "wb") as f:
            f.write(header_bytes(shard, dtype_name))
            for tensor, shape, kind, nbytes in shard:
                write_tensor(f, shape, kind, dtype, generator)
                weight_map[tensor] = name
                total += nbytes
                parameters += nbytes // 2
    with open(os.path.join(args.out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")

    seconds = time.perf_counter() - start
    print(f"{args.shape}: {parameters:,} parameters, {total / 1e9:.2f} GB of {args.dtype} in {len(shards)} shard(s) "
          f"-> {args.out_dir}, {seconds:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
