"""The same causal-LM forward as lathe's executor, in Debian's python3-torch, for benchmarks.

    /usr/bin/python3 bench/torch_reference.py MODEL_DIR TOKENS.u16.bin [--window N] [--batch B]
        [--max-tokens N] [--threads T] [--layers-at-a-time]

Reads an HF-layout Llama checkpoint (config.json and model.safetensors, or shards listed in
model.safetensors.index.json; F32, F16 or BF16) with a small safetensors reader (no safetensors
package on these machines), converts every weight to float32, and evaluates the mean next-token
loss on a uint16 token file cut into non-overlapping windows of --window inputs, --batch windows
per forward, the first --max-tokens targets. Eager Llama: RMSNorm, rotate-half rotary positions
with Hugging Face's inv_freq, grouped-query attention by repeating kv heads, causal softmax,
SiLU-gated MLP, untied head (or the embedding when there is no lm_head.weight).

Prints one JSON line: tokens, seconds, tokens_per_second, mean_loss, peak_rss_bytes, mode.
Only the forward is timed, not loading. --layers-at-a-time keeps one layer's float32 weights in
memory (for models whose float32 copy does not fit: 8B is 32 GB): every window goes through
layer i before layer i+1 is read, and the reads are left out of the time. Run with
/usr/bin/python3.
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
          "I32": torch.int32}
LAYER_TENSORS = ["input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                 "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                 "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"]


class Checkpoint:
    """Tensor locations of a safetensors checkpoint (one file or an index of shards); reads one
    tensor at a time, floating point ones converted to float32."""

    def __init__(self, folder):
        index = os.path.join(folder, "model.safetensors.index.json")
        if os.path.exists(index):
            files = sorted(set(json.load(open(index))["weight_map"].values()))
        else:
            files = ["model.safetensors"]
        self.entries = {}
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                (length,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(length))
            for tensor, entry in header.items():
                if tensor != "__metadata__":
                    self.entries[tensor] = (path, 8 + length + entry["data_offsets"][0],
                                            entry["data_offsets"][1] - entry["data_offsets"][0], entry["dtype"],
                                            entry["shape"])

    def __contains__(self, name):
        return name in self.entries

    def read(self, name):
        path, offset, nbytes, dtype, shape = self.entries[name]
        data = bytearray(nbytes)
        with open(path, "rb") as f:
            f.seek(offset)
            f.readinto(data)
        tensor = torch.frombuffer(data, dtype=DTYPES[dtype]).reshape(shape) if nbytes else \
            torch.empty(shape, dtype=DTYPES[dtype])
        return tensor.to(torch.float32) if tensor.is_floating_point() else tensor


class Llama:
    def __init__(self, folder, resident=True):
        self.c = json.load(open(f"{folder}/config.json"))
        self.checkpoint = Checkpoint(folder)
        # resident: every weight read once, up front; otherwise read on demand (layer_weights)
        self.w = {name: self.checkpoint.read(name) for name in self.checkpoint.entries} if resident else None
        c = self.c
        self.heads, self.kv = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
        self.d = c.get("head_dim", c["hidden_size"] // self.heads)
        inv = 1.0 / (c.get("rope_theta", 10000.0) ** (torch.arange(0, self.d, 2).float() / self.d))
        angles = torch.outer(torch.arange(c["max_position_embeddings"]).float(), inv)
        emb = torch.cat([angles, angles], -1)
        self.cos, self.sin = emb.cos(), emb.sin()

    def weights(self, names):
        return {n: (self.w[n] if self.w is not None else self.checkpoint.read(n)) for n in names}

    def layer_weights(self, i):
        return self.weights([f"model.layers.{i}.{n}" for n in LAYER_TENSORS])

    def head_name(self):
        return "lm_head.weight" if "lm_head.weight" in self.checkpoint else "model.embed_tokens.weight"

    def norm(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c["rms_norm_eps"]) * w

    def rotate(self, x, cos, sin):
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

    def block(self, i, x, w):
        B, T = x.shape[0], x.shape[1]
        cos, sin = self.cos[:T], self.sin[:T]
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        g = self.heads // self.kv
        p = f"model.layers.{i}."
        h = self.norm(x, w[p + "input_layernorm.weight"])
        q = F.linear(h, w[p + "self_attn.q_proj.weight"]).view(B, T, self.heads, self.d).transpose(1, 2)
        k = F.linear(h, w[p + "self_attn.k_proj.weight"]).view(B, T, self.kv, self.d).transpose(1, 2)
        v = F.linear(h, w[p + "self_attn.v_proj.weight"]).view(B, T, self.kv, self.d).transpose(1, 2)
        q, k = self.rotate(q, cos, sin), self.rotate(k, cos, sin)
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.d)
        probs = scores.masked_fill(mask, float("-inf")).softmax(-1)
        ctx = (probs @ v).transpose(1, 2).reshape(B, T, self.heads * self.d)
        x = x + F.linear(ctx, w[p + "self_attn.o_proj.weight"])
        h = self.norm(x, w[p + "post_attention_layernorm.weight"])
        return x + F.linear(F.silu(F.linear(h, w[p + "mlp.gate_proj.weight"])) * F.linear(h, w[p + "mlp.up_proj.weight"]),
                            w[p + "mlp.down_proj.weight"])

    def forward(self, ids):
        """Logits [B, T, vocab] with every weight resident."""
        w = self.w
        x = F.embedding(ids, w["model.embed_tokens.weight"])
        for i in range(self.c["num_hidden_layers"]):
            x = self.block(i, x, w)
        x = self.norm(x, w["model.norm.weight"])
        return F.linear(x, w[self.head_name()])


def batches(tokens, window, batch):
    """(inputs, targets) per batch of non-overlapping windows; short last window padded with -100."""
    starts = list(range(0, len(tokens) - 1, window))
    for b in range(0, len(starts), batch):
        rows = [tokens[s:min(s + window, len(tokens) - 1) + 1] for s in starts[b:b + batch]]
        longest = max(len(r) for r in rows) - 1
        inputs = torch.zeros(len(rows), longest, dtype=torch.long)
        targets = torch.full((len(rows), longest), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            inputs[i, :len(r) - 1] = torch.from_numpy(r[:-1].astype(np.int64))
            targets[i, :len(r) - 1] = torch.from_numpy(r[1:].astype(np.int64))
        yield inputs, targets


def loss_sum(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                           reduction="sum").item()


def evaluate(model, tokens, window, batch):
    """(mean loss, targets, forward seconds), the model resident, one batch through all layers at a time."""
    total, count = 0.0, 0
    start = time.perf_counter()
    with torch.no_grad():
        for inputs, targets in batches(tokens, window, batch):
            total += loss_sum(model.forward(inputs), targets)
            count += int((targets != -100).sum())
    return total / count, count, time.perf_counter() - start


def evaluate_layers(model, tokens, window, batch):
    """(mean loss, targets, forward seconds) reading one layer at a time: every batch goes through
    layer i before layer i+1 is read; the reads are not timed."""
    data = list(batches(tokens, window, batch))
    seconds = 0.0

    def timed(function, *args):
        nonlocal seconds
        start = time.perf_counter()
        result = function(*args)
        seconds += time.perf_counter() - start
        return result

    with torch.no_grad():
        embed = model.checkpoint.read("model.embed_tokens.weight")
        xs = [timed(F.embedding, inputs, embed) for inputs, _ in data]
        del embed
        for i in range(model.c["num_hidden_layers"]):
            w = model.layer_weights(i)
            xs = [timed(model.block, i, x, w) for x in xs]
            del w
        final_norm, head = model.checkpoint.read("model.norm.weight"), model.checkpoint.read(model.head_name())
        total = sum(timed(lambda x, t: loss_sum(F.linear(model.norm(x, final_norm), head), t), x, targets)
                    for x, (_, targets) in zip(xs, data))
    count = sum(int((targets != -100).sum()) for _, targets in data)
    return total / count, count, seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("tokens")
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layers-at-a-time", action="store_true",
                        help="hold one layer's float32 weights at a time (models too big for memory in float32)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokens = np.fromfile(args.tokens, dtype="<u2")
    if args.max_tokens:
        tokens = tokens[:args.max_tokens + 1]
    if args.layers_at_a_time:
        loss, count, seconds = evaluate_layers(Llama(args.model, resident=False), tokens, args.window, args.batch)
    else:
        loss, count, seconds = evaluate(Llama(args.model), tokens, args.window, args.batch)
    print(json.dumps({"mean_loss": loss, "tokens": count, "seconds": seconds, "tokens_per_second": count / seconds,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "mode": "layers-at-a-time" if args.layers_at_a_time else "resident"}))


if __name__ == "__main__":
    sys.exit(main())
