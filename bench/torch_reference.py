"""The same causal-LM forward as lathe's executor, in Debian's python3-torch, for benchmarks.

Reads an HF-layout Llama or GPT-2 model.safetensors + config.json with a small safetensors
reader (no safetensors package on these machines) and evaluates the mean next-token loss on a
uint16 token file with non-overlapping windows. Run with /usr/bin/python3.
"""
import argparse
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        array = np.frombuffer(data, dtype=DTYPES[entry["dtype"]], count=(end - begin) // np.dtype(DTYPES[entry["dtype"]]).itemsize,
                              offset=8 + length + begin).reshape(entry["shape"])
        tensors[name] = torch.from_numpy(array.copy())
    return tensors


class Llama:
    def __init__(self, folder):
        self.c = json.load(open(f"{folder}/config.json"))
        self.w = read_safetensors(f"{folder}/model.safetensors")
        c = self.c
        self.heads, self.kv = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
        self.d = c.get("head_dim", c["hidden_size"] // self.heads)
        inv = 1.0 / (c.get("rope_theta", 10000.0) ** (torch.arange(0, self.d, 2).float() / self.d))
        angles = torch.outer(torch.arange(c["max_position_embeddings"]).float(), inv)
        emb = torch.cat([angles, angles], -1)
        self.cos, self.sin = emb.cos(), emb.sin()

    def norm(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c["rms_norm_eps"]) * w

    def rotate(self, x, cos, sin):
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

    def forward(self, ids):
        w, B, T = self.w, ids.shape[0], ids.shape[1]
        x = F.embedding(ids, w["model.embed_tokens.weight"])
        cos, sin = self.cos[:T], self.sin[:T]
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        g = self.heads // self.kv
        for i in range(self.c["num_hidden_layers"]):
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
            x = x + F.linear(F.silu(F.linear(h, w[p + "mlp.gate_proj.weight"])) * F.linear(h, w[p + "mlp.up_proj.weight"]),
                             w[p + "mlp.down_proj.weight"])
        x = self.norm(x, w["model.norm.weight"])
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        return F.linear(x, head)


def evaluate(model, tokens, window, batch):
    starts = list(range(0, len(tokens) - 1, window))
    total, count = 0.0, 0
    with torch.no_grad():
        for b in range(0, len(starts), batch):
            rows = [tokens[s:min(s + window, len(tokens) - 1) + 1] for s in starts[b:b + batch]]
            longest = max(len(r) for r in rows) - 1
            inputs = torch.zeros(len(rows), longest, dtype=torch.long)
            targets = torch.full((len(rows), longest), -100, dtype=torch.long)
            for i, r in enumerate(rows):
                inputs[i, :len(r) - 1] = torch.from_numpy(r[:-1].astype(np.int64))
                targets[i, :len(r) - 1] = torch.from_numpy(r[1:].astype(np.int64))
            logits = model.forward(inputs)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                                     reduction="sum").item()
            count += int((targets != -100).sum())
    return total / count, count


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("tokens")
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokens = np.fromfile(args.tokens, dtype="<u2")
    if args.max_tokens:
        tokens = tokens[:args.max_tokens + 1]
    model = Llama(args.model)
    start = time.perf_counter()
    loss, count = evaluate(model, tokens, args.window, args.batch)
    seconds = time.perf_counter() - start
    print(json.dumps({"mean_loss": loss, "tokens": count, "seconds": seconds, "tokens_per_second": count / seconds}))


if __name__ == "__main__":
    sys.exit(main())
