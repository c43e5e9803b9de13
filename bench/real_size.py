"""Helpers of bench/real_size.sh (run with /usr/bin/python3 from there):

    real_size.py ids TOKENS.u16.bin BATCH SEQ OUT.bin
        the first BATCH*SEQ ids of the token file as int64, BATCH rows of SEQ (run_onnx.js input)
    real_size.py onnx-check LOGITS.bin FLOAT_MODEL TOKENS.u16.bin BATCH SEQ [--threads T]
                            [--int8-report R.json] [--w8a8-report R.json]
        compares ONNX Runtime's logits of the int8 ONNX file on those ids with the float
        checkpoint's logits in python3-torch (bench/torch_reference.py, one layer in memory at a
        time) and with lathe's loss of its int8 safetensors output on the same windows
    real_size.py table RESULTS SHAPE...
        the table of wall seconds and peak RSS of every timed command and the goals, from the
        /usr/bin/time -v files, reports and JSON lines bench/real_size.sh left in RESULTS/SHAPE/

Sizes are decimal: MB = 10^6 bytes, GB = 10^9.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference  # noqa: E402

# step file name -> what bench/real_size.sh ran
STEPS = [
    ("checkpoint", "write checkpoint (bench/random_checkpoint.py)"),
    ("inspect", "lathe inspect"),
    ("w8a8", "lathe run: quantize w8a8 + eval kl, write onnx + safetensors"),
    ("float-eval", "lathe run: eval, kl false"),
    ("float32-copy", "lathe run: write a float32 copy of the checkpoint"),
    ("float32-eval", "lathe run: eval, kl false, of the float32 copy"),
    ("torch", "python3-torch forward (bench/torch_reference.py)"),
    ("torch-default", "python3-torch forward, OpenBLAS's own kernels"),
    ("int8-eval", "lathe run: eval of the int8 safetensors output, 2 x 64"),
    ("executor-logits", "lathe's executor: logits of the int8 safetensors output, 2 x 64"),
    ("exact", "exact evaluation of the int8 ONNX (tests/python/onnx_exact.py)"),
    ("executor-double", "lathe's executor in float64, int8 output, 2 x 64"),
    ("onnx-steps", "ONNX Runtime step by step vs the graph (onnx_exact.py)"),
    ("onnx", "onnxruntime-node: int8 ONNX, 2 x 64 (tests/node/run_onnx.js)"),
]
def ids(tokens, batch, seq, out):
    data = np.fromfile(tokens, dtype="<u2")[:batch * seq]
    if len(data) != batch * seq:
        sys.exit(f"{tokens}: fewer than {batch * seq} tokens")
    data.astype("<i8").tofile(out)


def onnx_check(arguments):
    import argparse
    parser = argparse.ArgumentParser(prog="real_size.py onnx-check")
    parser.add_argument("logits")
    parser.add_argument("model")
    parser.add_argument("tokens")
    parser.add_argument("batch", type=int)
    parser.add_argument("seq", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--int8-report")
    parser.add_argument("--w8a8-report")
    parser.add_argument("--executor-logits", help="lathe's executor's logits of the int8 safetensors output "
                        "(bench/executor_logits), same ids")
    parser.add_argument("--exact-logits", help="the exact evaluation of the graph (tests/python/onnx_exact.py)")
    parser.add_argument("--executor-double-logits", help="lathe's executor in float64 (executor_logits --double)")
    parser.add_argument("--runtime-steps", help="onnx_exact.py --check-runtime's report")
    parser.add_argument("--result", help="writes the comparisons as JSON here")
    args = parser.parse_args(arguments)
    torch.set_num_threads(args.threads)
    B, S = args.batch, args.seq
    model = torch_reference.Llama(args.model, resident=False)
    vocab = model.c["vocab_size"]
    onnx = np.fromfile(args.logits, dtype="<f4")
    if onnx.size != B * S * vocab:
        print(f"ONNX logits: {onnx.size} floats, expected {B} x {S} x {vocab}: FAILED")
        return 1
    onnx = torch.from_numpy(onnx.reshape(B, S, vocab))
    tokens = np.fromfile(args.tokens, dtype="<u2")[:B * S + 1].astype(np.int64)
    inputs = torch.from_numpy(tokens[:B * S].reshape(B, S))
    # the same windows as lathe's and torch_reference's: row r predicts tokens[r*S+1 : r*S+S+1]
    targets = torch.from_numpy(tokens[1:].reshape(B, S))
    finite = bool(torch.isfinite(onnx).all())
    print(f"int8 ONNX in onnxruntime-node on {B} x {S} ids: logits [{B}, {S}, {vocab}], "
          f"finite: {'yes' if finite else 'NO'}")
    if not finite:
        return 1

    with torch.no_grad():  # the float checkpoint in python3-torch, one layer's weights at a time
        x = F.embedding(inputs, model.checkpoint.read("model.embed_tokens.weight"))
        for i in range(model.c["num_hidden_layers"]):
            x = model.block(i, x, model.layer_weights(i))
        x = model.norm(x, model.checkpoint.read("model.norm.weight"))
        reference = F.linear(x, model.checkpoint.read(model.head_name()))
    onnx_log = onnx.double().log_softmax(-1)
    reference_log = reference.double().log_softmax(-1)
    onnx_loss = -onnx_log.gather(-1, targets[..., None]).mean().item()
    reference_loss = -reference_log.gather(-1, targets[..., None]).mean().item()
    kl = (reference_log.exp() * (reference_log - onnx_log)).sum(-1).mean().item()
    top1 = (onnx.argmax(-1) == reference.argmax(-1)).double().mean().item()
    print(f"  vs the float checkpoint in python3-torch, same ids: top-1 agreement {top1:.4f}, "
          f"KL(float || onnx) {kl:.6f}, loss onnx {onnx_loss:.4f} vs float {reference_loss:.4f}")
    if args.w8a8_report:
        metrics = next(iter(json.load(open(args.w8a8_report))["metrics"].values()))
        print(f"  for scale, lathe's executor, its W8A8 model vs float on its eval data ({metrics['tokens']} "
              f"tokens, other windows): top-1 agreement {metrics['top1_agreement']:.4f}, KL {metrics['kl']:.6f}")
    if args.int8_report:
        metrics = next(iter(json.load(open(args.int8_report))["metrics"].values()))
        print(f"  vs lathe's executor on its int8 safetensors output, same {metrics['tokens']} targets: loss "
              f"{metrics['mean_loss']:.6f} vs onnx {onnx_loss:.6f} (difference {onnx_loss - metrics['mean_loss']:+.2e})")
    result = {}

    def read_logits(path, what):
        values = np.fromfile(path, dtype="<f4")
        if values.size != B * S * vocab:
            print(f"  {what}: {values.size} floats, expected {B} x {S} x {vocab}: FAILED")
            return None
        return torch.from_numpy(values.reshape(B, S, vocab)).double()

    scale = reference.abs().max().item()  # the float model's largest |logit|

    def per_position(a, b):  # max |a - b| over the vocabulary, per position
        rows = (a - b).abs().amax(-1).flatten()
        return rows.median().item(), rows.max().item(), (rows > 1e-3 * scale).double().mean().item()

    exact = read_logits(args.exact_logits, "exact evaluation") if args.exact_logits else None
    if args.executor_logits and (lathe := read_logits(args.executor_logits, "lathe's executor")) is not None:
        # The test suite's end-to-end int8 bound (tests/core/onnx_runtime.cpp, expect_int8_logits_agree):
        # the median position within 1e-4 x the float model's largest |logit|, at most a quarter
        # of the positions beyond 1e-3 x.
        median, largest, off = per_position(onnx.double(), lathe)
        met = median <= 1e-4 * scale and off <= 0.25
        result["end_to_end"] = {"median": median, "max": largest, "off_fraction": off, "scale": scale, "met": met}
        print(f"  vs lathe's executor (float32) on its int8 safetensors output, per position: median {median:.3g}, "
              f"max {largest:.3g}, {100 * off:.1f} % of positions beyond 1e-3 x {scale:.3g}; end-to-end bound (median "
              f"<= {1e-4 * scale:.3g}, <= 25 % beyond): {'met' if met else 'MISSED'}")
        if exact is not None:
            spread = per_position(lathe, exact)
            result["end_to_end"]["executor_vs_exact"] = {"median": spread[0], "off_fraction": spread[2]}
            print(f"    lathe's float32 executor vs the exact evaluation of the graph: median {spread[0]:.3g}, "
                  f"{100 * spread[2]:.1f} % beyond" + ("" if met else " (two correct evaluations differ as much: an "
                  "activation on the other side of a quantizer's rounding boundary changes what follows it)"))
    if exact is not None and args.executor_double_logits:
        double = read_logits(args.executor_double_logits, "lathe's executor in float64")
        if double is not None:
            largest = (double - exact).abs().max().item()
            met = largest <= 1e-5 * exact.abs().max().item()
            result["executor_exact"] = {"max": largest, "scale": exact.abs().max().item(), "met": met}
            print(f"  lathe's executor in float64 vs the exact evaluation of the graph, every position: max difference "
                  f"{largest:.3g} (bound 1e-5 x {exact.abs().max().item():.3g}): {'met' if met else 'MISSED'}")
    if args.runtime_steps:
        steps = json.load(open(args.runtime_steps))
        worst = max(steps, key=lambda s: s["max_difference"] / max(s["max_magnitude"], 1e-30))
        relative = worst["max_difference"] / max(worst["max_magnitude"], 1e-30)
        result["runtime_steps"] = {"steps": len(steps), "worst": relative, "at": f"{worst['op']} {worst['name']}",
                                   "met": relative <= 1e-4}
        print(f"  ONNX Runtime step by step against the graph given its own inputs: {len(steps)} quantized steps, "
              f"largest relative difference {relative:.2g} at {worst['op']} {worst['name']} (bound 1e-4): "
              f"{'met' if relative <= 1e-4 else 'MISSED'}")
    if args.result:
        json.dump(result, open(args.result, "w"))
    return 0


def time_file(path):
    """(wall seconds, peak RSS bytes, exit status) from a /usr/bin/time -v output file."""
    wall = rss = status = None
    for line in open(path):
        key, _, value = line.strip().rpartition(": ")
        if key.startswith("Elapsed (wall clock) time"):
            wall = 0.0
            for part in value.split(":"):
                wall = wall * 60 + float(part)
        elif key == "Maximum resident set size (kbytes)":
            rss = int(value) * 1024
        elif key == "Exit status":
            status = int(value)
    return wall, rss, status


def megabytes(n):
    return "-" if n is None else f"{n / 1e6:,.0f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def table(results, shapes):
    print(f"{'shape':<10} {'command':<62} {'wall s':>8} {'peak RSS':>10}  status")
    steps = {}
    for shape in shapes:
        folder = os.path.join(results, shape)
        for step, label in STEPS:
            base = os.path.join(folder, step)
            if os.path.exists(base + ".time"):
                wall, rss, status = time_file(base + ".time")
                # lathe resets the kernel's peak at each stage (to report each stage's own), which
                # resets what time -v reads too; the report has the run's peak over all stages.
                if os.path.exists(base + ".json"):
                    reported = json.load(open(base + ".json")).get("peak_rss_bytes")
                    if reported is not None and (rss is None or reported > rss):
                        rss = reported
                if os.path.exists(base + ".status"):  # the shell's: time -v says 0 for a killed command
                    status = int(open(base + ".status").read())
                steps[shape, step] = (wall, rss, status)
                state = "ok" if status == 0 else f"FAILED (exit {status})"
                print(f"{shape:<10} {label:<62} {wall:>8.2f} {megabytes(rss):>10}  {state}")
            elif os.path.exists(base + ".skipped"):
                print(f"{shape:<10} {label:<62} {'-':>8} {'-':>10}  skipped: {open(base + '.skipped').read().strip()}")

    print()
    print(f"{'shape':<10} {'goal':<46} {'measured':<52} result")

    def goal(shape, text, measured, met):
        print(f"{shape:<10} {text:<46} {measured:<52} {'met' if met else 'MISSED'}")

    def ran(shape, step):
        return steps.get((shape, step), (None, None, None))

    for shape in shapes:
        wall, rss, status = ran(shape, "inspect")
        if status is not None:
            goal(shape, "inspect < 1 s and < 200 MB", f"{wall:.2f} s, {megabytes(rss)}",
                 status == 0 and wall < 1 and rss < 200e6)
        wall, rss, status = ran(shape, "w8a8")
        if status is not None and shape == "tinyllama":
            goal(shape, "W8A8 1.1B < 180 s and < 2 GB", f"{wall:.1f} s, {megabytes(rss)}",
                 status == 0 and wall < 180 and rss < 2e9)
        elif status is not None and shape == "llama3-8b":
            goal(shape, "W8A8 8B completes and < 5 GB",
                 f"{'completed' if status == 0 else 'failed'}, {wall:.1f} s, {megabytes(rss)}",
                 status == 0 and rss < 5e9)
        torch_line = os.path.join(results, shape, "torch.out")
        t = json.loads(open(torch_line).read().strip().splitlines()[-1]) if ran(shape, "torch")[2] == 0 else None
        for step, text in (("float32-eval", "forward, float32 weights: lathe / torch >= 1.0"),
                           ("float-eval", "eval of the float16 file: lathe / torch >= 1.0")):
            if ran(shape, step)[2] != 0 or t is None:
                if ran(shape, step)[2] is not None or step == "float-eval":
                    print(f"{shape:<10} {text:<46} {'not measured (a run failed or was skipped)':<52} -")
                continue
            r = json.load(open(os.path.join(results, shape, step + ".json")))
            metrics = next(iter(r["metrics"].values()))
            seconds = [p["wall_seconds"] for p in r["passes"] if p["name"] == "eval"][-1]
            lathe_rate = metrics["tokens"] / seconds
            goal(shape, text, f"{lathe_rate / t['tokens_per_second']:.2f} ({lathe_rate:,.0f} vs {t['tokens_per_second']:,.0f} /s)",
                 lathe_rate >= t["tokens_per_second"])
            blas = r.get("blas", {})
            print(f"{'':<10}   float loss on {metrics['tokens']} tokens: lathe {metrics['mean_loss']:.5f}, python3-torch "
                  f"{t['mean_loss']:.5f} ({t['tokens']} tokens, {t['mode']}); lathe's rate is tokens / the eval pass's "
                  f"wall_seconds ({seconds:.2f} s{', float16 to float32 conversion included' if step == 'float-eval' else ''}), "
                  f"torch's counts only its forward ({t['seconds']:.2f} s); OpenBLAS kernels "
                  f"{blas.get('kernels', '?')}, chosen by {blas.get('kernels_chosen_by', '?')}")
        if ran(shape, "torch-default")[2] == 0 and t is not None:
            d = json.loads(open(os.path.join(results, shape, "torch-default.out")).read().strip().splitlines()[-1])
            print(f"{'':<10}   python3-torch with OpenBLAS's own kernels (its SSE3 fallback on this CPU): "
                  f"{d['seconds']:.2f} s, {t['seconds'] / d['seconds']:.2f}x the rate above")
        comparison = os.path.join(results, shape, "onnx-logits.json")
        c = json.load(open(comparison)) if os.path.exists(comparison) else {}
        if "executor_exact" in c:
            e = c["executor_exact"]
            goal(shape, "lathe's int8 executor (f64) = the ONNX graph", f"max {e['max'] / e['scale']:.1e} x max|logit|", e["met"])
        if "runtime_steps" in c:
            r = c["runtime_steps"]
            goal(shape, "ONNX Runtime = the graph, every int8 step", f"{r['steps']} steps, worst {r['worst']:.1e}", r["met"])
        if "end_to_end" in c:
            e = c["end_to_end"]
            measured = f"median {e['median'] / e['scale']:.1e}, {100 * e['off_fraction']:.0f} % > 1e-3 (x max|logit|)"
            goal(shape, "int8 ONNX logits = lathe's f32, end to end", measured, e["met"])
            if "executor_vs_exact" in e:
                v = e["executor_vs_exact"]
                why = "" if e["met"] else ": as far off, so rounding flips, not a bound two correct evaluations meet"
                print(f"{'':<10}   lathe f32 vs the exact graph: median {v['median'] / e['scale']:.1e}, "
                      f"{100 * v['off_fraction']:.0f} % > 1e-3{why}")
        elif ran(shape, "onnx")[2] is not None or os.path.exists(os.path.join(results, shape, "onnx.skipped")):
            print(f"{shape:<10} {'int8 ONNX logits = lathe f32, end to end':<46} {'not measured (see (e))':<52} -")
    return 0


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "ids" and len(sys.argv) == 6:
        return ids(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    if len(sys.argv) >= 2 and sys.argv[1] == "onnx-check":
        return onnx_check(sys.argv[2:])
    if len(sys.argv) >= 4 and sys.argv[1] == "table":
        return table(sys.argv[2], sys.argv[3:])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
