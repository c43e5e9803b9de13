"""Outlier-free INT8, as reported for its issue (run it through bench/int8.sh):
  5. quality: mean loss on the TinyStories token file of stories260K and tinystories-retrieval,
     float and int8 by recipe (W8A8 with min-max, moving-average, percentile and MSE ranges;
     smooth, clipped-softmax + finetune and gated-attention + finetune, each with the best range;
     W8 weight-only), with the attention- and FFN-output outlier metrics of the model the
     quantizer saw; goal: best W8A8 within 1 % of the float loss;
  6. size: INT8 ONNX files against the float export (stories260K and the mid-size random Llama);
     goal <= 30 %;
  7. speed: float, QDQ and dynamic ONNX of the random Llama (hidden 512, 8 layers, sequence 256)
     in ONNX Runtime, latency ratios; goal: the faster int8 form >= 1.5x faster.
  bits: 7-bit weights (target_cpu: any, the default) against 8-bit (target_cpu: vnni): loss of
     both models (W8A8 min-max and percentile, dynamic) and ONNX Runtime latency of the random
     Llama's QDQ and dynamic files, interleaved in one process. Prints whether this CPU has VNNI;
     8-bit files are exact only where it does.
Everything runs through the lathe command line, as a user would run it.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATHE = os.path.join(ROOT, "build", "lathe")
RANDOM_LLAMA = os.path.join(ROOT, "build", "bench", "random_llama_checkpoint")
LATENCY = os.path.join(ROOT, "bench", "onnx_latency.js")
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared"))
TOKENS = os.path.join(SHARED, "data", "tinystories-valid", "tinystories_valid_head.tok512.u16.bin")


class Bench:
    def __init__(self, threads, eval_tokens, steps, work):
        self.threads = threads
        self.eval_tokens = eval_tokens
        self.steps = steps
        self.work = work
        self.runs = 0

    def run(self, model, seq_len, passes, outputs=()):
        """Runs a recipe of `passes` (YAML flow maps) on `model`; returns the report."""
        self.runs += 1
        name = os.path.join(self.work, "run%03d" % self.runs)
        lines = [
            "model: " + model,
            "data:",
            "  calibration: {tokens: %s, seq_len: %d, batch_size: 4, max_tokens: 4096}" % (TOKENS, seq_len),
            "  eval: {tokens: %s, seq_len: %d, batch_size: 8, max_tokens: %d}" % (TOKENS, seq_len, self.eval_tokens),
            "passes:",
        ]
        lines += ["  - " + p for p in passes]
        if outputs:
            lines.append("outputs:")
            lines += ["  - {format: onnx, path: %s}" % path for path in outputs]
        with open(name + ".yaml", "w") as f:
            f.write("\n".join(lines) + "\n")
        result = subprocess.run([LATHE, "run", name + ".yaml", "--report", name + ".json", "--threads", str(self.threads)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit("lathe failed on %s.yaml:\n%s%s" % (name, result.stdout, result.stderr))
        with open(name + ".json") as f:
            return json.load(f)


def metric_losses(report):
    return [m["mean_loss"] for m in report["metrics"].values()]


def outliers(report):
    stats = [p for p in report["passes"] if p["name"] == "outlier-stats"][-1]["statistics"]["over_layers"]
    a, m = stats["attention_output"], stats["mlp_output"]
    return (a["max_inf_norm"], a["mean_kurtosis"], m["max_inf_norm"], m["mean_kurtosis"])


def quality(bench, label, model, seq_len):
    print("-- %s (eval: %d tokens, sequences of %d; calibration: the file's first 4096 tokens)" %
          (label, bench.eval_tokens, seq_len))
    print("%-44s %8s %8s  %9s %9s %9s %9s" % ("", "loss", "vs float", "attn |x|", "attn kurt", "ffn |x|", "ffn kurt"))
    rows = []

    def row(name, loss, metrics, note=""):
        rows.append((name, loss))
        base = rows[0][1]
        cells = ("%9.3f %9.2f %9.3f %9.2f" % metrics) if metrics else ""
        print("%-44s %8.4f %+7.2f%%  %s%s" % (name, loss, 100 * (loss / base - 1), cells, note), flush=True)

    float_report = bench.run(model, seq_len, ["outlier-stats: {}", "eval: {kl: false}"])
    float_metrics = outliers(float_report)
    row("float", metric_losses(float_report)[0], float_metrics)
    ranges = [("W8A8 min-max", "range: minmax"), ("W8A8 moving-average min-max", "range: moving-average"),
              ("W8A8 percentile 99.99", "range: percentile, percentile: 99.99"),
              ("W8A8 percentile 99.999", "range: percentile, percentile: 99.999"), ("W8A8 MSE", "range: mse")]
    range_losses = []
    for name, params in ranges:
        loss = metric_losses(bench.run(model, seq_len, ["quantize: {%s}" % params, "eval: {kl: false}"]))[0]
        range_losses.append(loss)
        row(name, loss, float_metrics)
    best_index = min(range(len(ranges)), key=lambda i: range_losses[i])
    best_name, best = ranges[best_index][0].replace("W8A8 ", ""), ranges[best_index][1]

    def transformed(name, transform):
        report = bench.run(model, seq_len, transform + ["outlier-stats: {}", "eval: {kl: false}",
                                                        "quantize: {%s}" % best, "eval: {kl: false}"])
        float_loss, int8_loss = metric_losses(report)
        row(name + " (float)", float_loss, outliers(report))
        row(name + " + " + best_name, int8_loss, None)

    finetune = "finetune: {steps: %d, learning_rate: 0.001, train: attention, max_tokens: 16384}" % bench.steps
    transformed("smooth alpha 0.5", ["smooth: {alpha: 0.5}"])
    transformed("clipped softmax alpha 4 + finetune", ["clipped-softmax: {alpha: 4, length: %d}" % seq_len, finetune])
    transformed("gated attention + finetune", ["gated-attention: {init: 0.25}", finetune])
    row("W8 weight-only (min-max)", metric_losses(bench.run(model, seq_len, ["quantize: {mode: w8}", "eval: {kl: false}"]))[0],
        None)
    int8_rows = [r for r in rows if "W8A8" in r[0] or (" + " in r[0] and "(float)" not in r[0])]
    best_row = min(int8_rows, key=lambda r: r[1])
    gap = 100 * (best_row[1] / rows[0][1] - 1)
    print("best W8A8: %s, %+.2f%% vs float; goal within 1 %%: %s" % (best_row[0], gap, "yes" if gap <= 1 else "NO"))
    print()


def sizes(bench, label, model, seq_len, folder):
    paths = {name: os.path.join(folder, name + ".onnx") for name in ("float", "w8a8", "w8a8_all", "dynamic")}
    bench.run(model, seq_len, [], [paths["float"]])
    bench.run(model, seq_len, ["quantize: {}"], [paths["w8a8"]])
    bench.run(model, seq_len, ["quantize: {exclude: \"\"}"], [paths["w8a8_all"]])
    bench.run(model, seq_len, ["quantize: {mode: dynamic}"], [paths["dynamic"]])
    size = {name: os.path.getsize(path) + (os.path.getsize(path + ".data") if os.path.exists(path + ".data") else 0)
            for name, path in paths.items()}
    print("-- %s" % label)
    notes = {"float": "", "w8a8": "QDQ, output head float (default)", "w8a8_all": "QDQ, output head int8 too",
             "dynamic": "DynamicQuantizeLinear + MatMulInteger, head float"}
    for name in paths:
        ratio = size[name] / size["float"]
        goal = "" if name == "float" else ("  goal <= 30 %%: %s" % ("yes" if ratio <= 0.30 else "NO"))
        print("%-9s %10d bytes  %6.1f %%  %s%s" % (name, size[name], 100 * ratio, notes[name], goal))
    return paths


def speed(threads, paths, input_path, rounds=150):
    """Float, QDQ and dynamic ONNX of the same model, run interleaved in one ONNX Runtime process."""
    out = subprocess.run(["node", LATENCY, input_path, "1", "256", str(rounds), str(threads),
                          paths["float"], paths["w8a8"], paths["dynamic"]], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("onnxruntime failed:\n%s" % out.stderr)
    results = json.loads(out.stdout)
    print("batch 1 x 256 tokens, onnxruntime-node, %d intra-op thread(s), %d interleaved rounds after 2 warm-ups:"
          % (threads, rounds))
    for name, result in zip(("float", "w8a8", "dynamic"), results):
        print("%-8s median %8.2f ms  min %8.2f ms  speed-up vs float: median of per-round ratios %.2fx, of minima %.2fx" %
              (name, result["median_ms"], result["min_ms"], result["speedup"], results[0]["min_ms"] / result["min_ms"]))
    fastest = max(r["speedup"] for r in results[1:])
    print("faster int8 form: %.2fx; goal >= 1.5x: %s" % (fastest, "yes" if fastest >= 1.5 else "NO"))


def cpu_has_vnni():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return "avx512_vnni" in flags or "avx_vnni" in flags
    return False


def weight_bits(bench, threads, models, random_llama, input_path, rounds=150):
    print("CPU: %s" % ("VNNI (avx512_vnni or avx_vnni): 8-bit weights are exact in ONNX Runtime" if cpu_has_vnni()
                       else "no VNNI (AVX2): ONNX Runtime saturates pair sums of 8-bit weights"))
    configs = [("W8A8 min-max", "mode: w8a8"), ("W8A8 percentile 99.99", "mode: w8a8, range: percentile"),
               ("dynamic", "mode: dynamic")]
    for label, model, seq_len in models:
        print("-- %s (eval: %d tokens, sequences of %d)" % (label, bench.eval_tokens, seq_len))
        base = metric_losses(bench.run(model, seq_len, ["eval: {kl: false}"]))[0]
        print("%-24s %10s %10s %10s %10s" % ("", "7-bit", "vs float", "8-bit", "vs float"))
        print("%-24s %10.4f" % ("float", base))
        for name, params in configs:
            losses = [metric_losses(bench.run(model, seq_len, ["quantize: {%s, target_cpu: %s}" % (params, target),
                                                               "eval: {kl: false}"]))[0] for target in ("any", "vnni")]
            print("%-24s %10.4f %+9.2f%% %10.4f %+9.2f%%" % (name, losses[0], 100 * (losses[0] / base - 1), losses[1],
                                                           100 * (losses[1] / base - 1)), flush=True)
    folder = os.path.join(random_llama, "bits")
    os.makedirs(folder, exist_ok=True)
    paths = []
    for mode in ("w8a8", "dynamic"):
        for target in ("any", "vnni"):
            path = os.path.join(folder, "%s_%s.onnx" % (mode, target))
            bench.run(random_llama, 256, ["quantize: {mode: %s, target_cpu: %s}" % (mode, target)], [path])
            paths.append(path)
    out = subprocess.run(["node", LATENCY, input_path, "1", "256", str(rounds), str(threads)] + paths,
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("onnxruntime failed:\n%s" % out.stderr)
    results = json.loads(out.stdout)
    print("-- random Llama, batch 1 x 256 tokens, %d thread(s), %d interleaved rounds; ratio: median of per-round "
          "(7-bit QDQ time / this time)" % (threads, rounds))
    for path, result in zip(paths, results):
        print("%-22s median %8.2f ms  min %8.2f ms  vs 7-bit QDQ %.3fx" %
              (os.path.basename(path), result["median_ms"], result["min_ms"], result["speedup"]))


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    eval_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 65536
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    sections = sys.argv[4].split(",") if len(sys.argv) > 4 else ["quality", "size", "speed"]
    start = time.time()
    with tempfile.TemporaryDirectory() as work:
        bench = Bench(threads, eval_tokens, steps, work)
        stories = os.path.join(SHARED, "models", "stories260K", "hf")
        retrieval = os.path.join(SHARED, "models", "tinystories-retrieval")
        print("outlier-free INT8 benchmark, %d thread(s)\n" % threads)
        if "quality" in sections:
            print("== 5. quality (finetune: %d AdamW steps on 16384 tokens, distilling from the float model)" % steps)
            quality(bench, "stories260K", stories, 512)
            quality(bench, "tinystories-retrieval", retrieval, 128)
            print("(section 5: %.0f s)\n" % (time.time() - start))
        section = time.time()
        random_llama = os.path.join(work, "random-llama")
        subprocess.run([RANDOM_LLAMA, random_llama], check=True)
        if "size" in sections or "speed" in sections:
            print("== 6. size: ONNX files, int8 vs float")
            sizes(bench, "stories260K", stories, 512, os.path.join(work, "stories"))
            paths = sizes(bench, "random Llama (hidden 512, 8 layers)", random_llama, 256, random_llama)
            print("(section 6: %.0f s)\n" % (time.time() - section))
        if "bits" in sections:
            section = time.time()
            print("== bits: 7-bit (target_cpu: any) vs 8-bit (target_cpu: vnni) weights")
            weight_bits(bench, threads, [("stories260K", stories, 512), ("tinystories-retrieval", retrieval, 128)],
                        random_llama, os.path.join(random_llama, "input.bin"))
            print("(section bits: %.0f s)\n" % (time.time() - section))
        if "speed" in sections:
            section = time.time()
            print("== 7. speed: the random Llama in ONNX Runtime, float vs int8")
            speed(threads, paths, os.path.join(random_llama, "input.bin"))
            print("(section 7: %.0f s)\n" % (time.time() - section))
    print("wall time: %.0f s" % (time.time() - start))


if __name__ == "__main__":
    main()
