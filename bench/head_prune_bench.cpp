// Head importance and structured head removal, as reported for the head-removal issue:
//   quality       loss vs fraction of heads removed, per importance method, on stories260K and
//                 tinystories-retrieval (bench/head_prune.sh prints it as section 5)
//   speed DIR     a random-weight Llama (hidden 512, 8 layers, 16 heads): lathe's time to score
//                 and prune it, and ONNX files of it unpruned and with half its heads removed,
//                 for bench/head_prune.sh to time in ONNX Runtime (section 6)
//   preservation METHOD
//                 NIAH recall and loss of tinystories-retrieval with 25 % / 50 % of its heads
//                 removed by METHOD, with and without protecting its retrieval heads (section 7)
//
// Every removal is made by lathe's own head-prune pass with its defaults (global scope,
// min_heads 1, scores normalized per layer). In `quality` the passes run in-process on clones
// of one loaded model and share one analysis cache, so each method's scores are computed once
// for all fractions (a clone is the original model, so the scores the pipeline would compute
// for it are the same); a run of the same recipe through run_recipe checks that.
//
// Usage: head_prune_bench SHARED_DIR quality [--threads N]
//        head_prune_bench SHARED_DIR speed OUT_DIR [--threads N]
//        head_prune_bench SHARED_DIR preservation METHOD [--threads N]
// HEAD_PRUNE_BENCH_VERBOSE=1 prints each in-process pass run and its time on stderr.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/model_loader.h"
#include "datasets/data_sets.h"
#include "passes/analysis_manager.h"
#include "passes/pass_context.h"
#include "passes/pass_registry.h"
#include "pipeline/pipeline.h"
#include "pipeline/recipe.h"
#include "random_llama.h"
#include "support/allocator.h"
#include "support/errors.h"
#include "support/progress.h"
#include "writers/onnx_writer.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

constexpr std::int64_t kEvalTokens = 32768;  // loss prefix (the importance uses the pass default, 8192)
const std::vector<double> kFractions = {0.0, 0.125, 0.25, 0.375, 0.5};
constexpr int kRandomSeeds = 5;
const char* kTokens = "data/tinystories-valid/tinystories_valid_head.tok512.u16.bin";

std::string format(const char* pattern, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, pattern, value);
  return buffer;
}

std::string keep_value(double fraction_removed) { return format("%g", 1.0 - fraction_removed); }

std::string eval_pass(bool niah = false) {
  return "eval: {kl: false, max_tokens: " + std::to_string(kEvalTokens) + (niah ? ", niah: true, needle_ids: 259-511" : "") + "}";
}

std::string prune_pass(double fraction_removed, const std::string& method, int seed) {
  return "head-prune: {keep: " + keep_value(fraction_removed) + ", importance: " + method + ", seed: " + std::to_string(seed) + "}";
}

std::string recipe_text(const std::string& header, const std::vector<std::string>& passes) {
  std::string text = header + "passes:\n";
  for (const auto& pass : passes) text += "  - " + pass + "\n";
  return text;
}

int total_heads(const lathe::Model& model) {
  int heads = 0;
  for (const auto& layer : model.layers) heads += static_cast<int>(layer.query_heads);
  return heads;
}

// A model loaded once with its data; passes run on clones of it in-process, as the pipeline
// runs them, sharing one analysis cache.
class Workbench {
 public:
  Workbench(std::string header, lathe::Model model)
      : header_(std::move(header)),
        recipe_(lathe::parse_recipe(recipe_text(header_, {eval_pass()}), "head_prune_bench")),
        original_(std::move(model)),
        data_(recipe_.data, original_) {}

  explicit Workbench(const std::string& header)
      : Workbench(header, lathe::load_model(lathe::model_location(
                              lathe::parse_recipe(recipe_text(header, {eval_pass()}), "head_prune_bench").model))) {}

  const lathe::Model& original() const { return original_; }

  // Runs one pass (a recipe `passes` entry) on `model`; returns the pass's report section.
  nlohmann::json run(const std::string& pass_yaml, lathe::Model& model, std::int64_t transforms_applied) {
    const auto invocation = lathe::parse_recipe(recipe_text(header_, {pass_yaml}), "head_prune_bench").passes.at(0);
    auto pass = lathe::find_pass(invocation.name)->create(invocation.params);
    lathe::PassContext context(original_, data_, analyses_, progress_);
    context.where = invocation.where;
    context.transforms_applied = transforms_applied;
    const auto start = Clock::now();
    pass->run(model, context);
    if (std::getenv("HEAD_PRUNE_BENCH_VERBOSE")) std::fprintf(stderr, "  %.2f s  %s\n", seconds_since(start), pass_yaml.c_str());
    return context.statistics;
  }

  double loss(lathe::Model& model, std::int64_t transforms_applied) {
    return run(eval_pass(), model, transforms_applied)["mean_loss"].get<double>();
  }

 private:
  std::string header_;
  lathe::Recipe recipe_;
  lathe::Model original_;
  lathe::DataSets data_;
  lathe::AnalysisManager analyses_;
  lathe::Progress progress_{lathe::ProgressStyle::None};
};

std::string model_header(const std::string& shared, const std::string& model, int window) {
  return "model: " + shared + "/" + model + "\n" + "data:\n  eval: {tokens: " + shared + "/" + kTokens +
         ", seq_len: " + std::to_string(window) + "}\n";
}

struct Curve {
  std::string method;
  std::vector<double> loss;    // per fraction (random: mean over seeds)
  std::vector<double> spread;  // random only: standard deviation over seeds
};

// Section 5 for one model; returns the curves.
std::vector<Curve> quality_curve(const std::string& shared, const std::string& name, const std::string& path, int window,
                                 std::string* best_method) {
  const auto start = Clock::now();
  const auto header = model_header(shared, path, window);
  Workbench bench(header);
  const int heads = total_heads(bench.original());
  std::printf("\n%s: %lld layers, %d query heads, windows of %d\n", name.c_str(),
              static_cast<long long>(bench.original().layer_count()), heads, window);

  auto unpruned = bench.original().clone();
  const double base = bench.loss(unpruned, 0);
  std::map<std::string, std::vector<std::string>> removed_at_quarter;  // for the run_recipe check
  std::vector<Curve> curves;
  for (const std::string method : {"gradient", "ablation", "entropy", "magnitude", "random"}) {
    const int seeds = method == "random" ? kRandomSeeds : 1;
    Curve curve{method, {base}, {0.0}};
    for (std::size_t f = 1; f < kFractions.size(); ++f) {
      std::vector<double> losses;
      for (int seed = 0; seed < seeds; ++seed) {
        auto model = bench.original().clone();
        const auto statistics = bench.run(prune_pass(kFractions[f], method, seed), model, 0);
        if (kFractions[f] == 0.25 && seed == 0) removed_at_quarter[method] = statistics["removed"].get<std::vector<std::string>>();
        losses.push_back(bench.loss(model, 1));
      }
      double mean = 0, square = 0;
      for (double loss : losses) mean += loss / seeds;
      for (double loss : losses) square += (loss - mean) * (loss - mean) / seeds;
      curve.loss.push_back(mean);
      curve.spread.push_back(std::sqrt(square));
    }
    curves.push_back(curve);
  }

  std::printf("%-16s", "heads removed");
  for (double fraction : kFractions)
    std::printf(" %14s", (format("%g %%", 100 * fraction) + " (" + std::to_string(static_cast<int>(std::llround(fraction * heads))) + ")").c_str());
  std::printf("\n");
  for (const auto& curve : curves) {
    std::printf("%-16s", (curve.method == "random" ? "random (mean 5)" : curve.method.c_str()));
    for (double loss : curve.loss) std::printf(" %14.4f", loss);
    std::printf("\n");
    if (curve.method == "random") {
      std::printf("%-16s", "random (sd)");
      for (double spread : curve.spread) std::printf(" %14.4f", spread);
      std::printf("\n");
    }
  }

  // The goal at 25 %: the best of the importance analyses (gradient, ablation, entropy).
  const std::size_t quarter = 2;
  const Curve* best = nullptr;
  for (const auto& curve : curves)
    if (curve.method == "gradient" || curve.method == "ablation" || curve.method == "entropy")
      if (!best || curve.loss[quarter] < best->loss[quarter]) best = &curve;
  const double random_increase = curves.back().loss[quarter] - base;
  const double best_increase = best->loss[quarter] - base;
  std::printf("goal (%s, 25 %% removed): best importance method %s loss +%.4f vs random +%.4f: ratio %.2f, best <= half of random: %s\n",
              name.c_str(), best->method.c_str(), best_increase, random_increase, best_increase / random_increase,
              best_increase <= 0.5 * random_increase ? "yes" : "NO");
  if (best_method) *best_method = best->method;

  // The same removal through the whole pipeline (run_recipe) must give the same heads and loss.
  lathe::Progress quiet(lathe::ProgressStyle::None);
  lathe::RunOptions options;
  options.threads = at::get_num_threads();
  const auto report = lathe::run_recipe(
      lathe::parse_recipe(recipe_text(header, {prune_pass(0.25, "gradient", 0), eval_pass()}), "check"), options, quiet).report;
  const auto removed = report["passes"][0]["statistics"]["removed"].get<std::vector<std::string>>();
  const double recipe_loss = report["metrics"]["eval"]["mean_loss"].get<double>();
  const double bench_loss = curves[0].loss[quarter];
  const bool agrees = removed == removed_at_quarter["gradient"] && std::abs(recipe_loss - bench_loss) < 1e-6;
  std::printf("check: run_recipe(head-prune {keep: 0.75, importance: gradient} + eval) removes the same %zu heads, loss %.6f (diff %.1e): %s\n",
              removed.size(), recipe_loss, recipe_loss - bench_loss, agrees ? "agrees" : "MISMATCH");
  std::printf("(%s: %.1f s)\n", name.c_str(), seconds_since(start));
  return curves;
}

int quality(const std::string& shared) {
  std::printf("== 5. quality vs fraction of heads removed\n");
  std::printf("mean loss (nats/token) on the first %lld tokens of %s; importance scores from its first 8192 tokens\n",
              static_cast<long long>(kEvalTokens), kTokens);
  std::printf("(head-prune defaults: global ranking, min_heads 1, scores normalized per layer; random: mean of %d seeds)\n",
              kRandomSeeds);
  quality_curve(shared, "stories260K", "models/stories260K/hf", 512, nullptr);
  std::string best;
  quality_curve(shared, "tinystories-retrieval", "models/tinystories-retrieval", 128, &best);
  std::printf("best-method-retrieval: %s\n", best.c_str());
  return 0;
}

int speed(const std::string& shared, const std::filesystem::path& out) {
  (void)shared;
  std::filesystem::create_directories(out);
  lathe::RandomLlamaShape shape;
  shape.heads = 16;
  shape.kv_heads = 16;
  shape.max_positions = 512;
  auto model = lathe::random_llama(shape, 0);
  const int heads = total_heads(model);

  // Random tokens: the data the importance is scored on, and the ONNX Runtime input.
  std::mt19937 random(0);
  std::uniform_int_distribution<int> id(3, static_cast<int>(shape.vocab) - 1);
  {
    std::ofstream tokens(out / "random_tokens.u16.bin", std::ios::binary);
    for (int i = 0; i < 4096; ++i) {
      const auto value = static_cast<std::uint16_t>(id(random));
      tokens.put(static_cast<char>(value & 0xff)).put(static_cast<char>(value >> 8));
    }
    std::ofstream input(out / "input.bin", std::ios::binary);
    for (int i = 0; i < 256; ++i) {
      const auto value = static_cast<std::int64_t>(id(random));
      for (int b = 0; b < 8; ++b) input.put(static_cast<char>((value >> (8 * b)) & 0xff));
    }
  }
  const std::int64_t score_tokens = 2048;  // 4 batches of 2 x 256
  const auto header = "model: random-llama\ndata:\n  eval: {tokens: " + (out / "random_tokens.u16.bin").string() +
                      ", seq_len: 256, batch_size: 2}\n";
  const auto prune = "head-prune: {keep: 0.5, importance: gradient, max_tokens: " + std::to_string(score_tokens) + "}";

  Workbench bench(header, model.clone());
  auto pruned = bench.original().clone();
  auto start = Clock::now();
  const auto statistics = bench.run(prune, pruned, 0);
  const double total = seconds_since(start);
  auto again = bench.original().clone();
  start = Clock::now();
  bench.run(prune, again, 0);  // scores now cached: selection and removal alone
  const double removal = seconds_since(start);

  std::string layers;
  for (const auto& layer : pruned.layers) layers += (layers.empty() ? "" : " ") + std::to_string(layer.query_heads);
  std::printf("random-weight Llama: hidden %lld, %lld layers x %lld heads (%lld kv heads), ffn %lld, vocab %lld, %lld positions\n",
              static_cast<long long>(shape.hidden), static_cast<long long>(shape.layers), static_cast<long long>(shape.heads),
              static_cast<long long>(shape.kv_heads), static_cast<long long>(shape.ffn), static_cast<long long>(shape.vocab),
              static_cast<long long>(shape.max_positions));
  std::printf("lathe head-prune {keep: 0.5, importance: gradient}: scoring on %lld random tokens (4 batches of 2 x 256) and "
              "removing %d of %d heads: %.2f s (of which selection and removal %.3f s), %d thread(s)\n",
              static_cast<long long>(score_tokens), statistics["heads_removed"].get<int>(), heads, total, removal,
              at::get_num_threads());
  std::printf("parameters %lld -> %lld; query heads per layer after removal: %s\n",
              statistics["parameters_before"].get<long long>(), statistics["parameters_after"].get<long long>(), layers.c_str());

  start = Clock::now();
  lathe::write_onnx(bench.original(), out / "unpruned.onnx");
  lathe::write_onnx(pruned, out / "pruned.onnx");
  std::printf("ONNX export (both models): %.2f s\n", seconds_since(start));
  return 0;
}

int preservation(const std::string& shared, const std::string& method) {
  const auto header = model_header(shared, "models/tinystories-retrieval", 128);
  const std::string protect = "retrieval-heads: {mode: teacher-forced, needle_ids: 259-511, protect: retrieval}";
  struct Row {
    std::string label;
    std::vector<std::string> passes;
  };
  const std::vector<Row> rows = {
      {"unpruned", {eval_pass(true)}},
      {"25 % removed", {prune_pass(0.25, method, 0), eval_pass(true)}},
      {"25 % removed, protected", {protect, prune_pass(0.25, method, 0), eval_pass(true)}},
      {"50 % removed", {prune_pass(0.5, method, 0), eval_pass(true)}},
      {"50 % removed, protected", {protect, prune_pass(0.5, method, 0), eval_pass(true)}},
  };
  std::printf("== 7. retrieval preservation: tinystories-retrieval, head-prune by %s importance\n", method.c_str());
  std::printf("NIAH: eval {niah: true, needle_ids: 259-511} (greedy, random-token needles, default grid); loss on the first %lld tokens, windows of 128\n",
              static_cast<long long>(kEvalTokens));
  std::printf("%-26s %6s %12s %9s  %s\n", "model", "heads", "NIAH recall", "loss", "removed heads");
  std::map<std::string, double> recall;
  lathe::Progress quiet(lathe::ProgressStyle::None);
  lathe::RunOptions options;
  options.threads = at::get_num_threads();
  std::string retrieval_heads;
  for (const auto& row : rows) {
    const auto report = lathe::run_recipe(lathe::parse_recipe(recipe_text(header, row.passes), row.label), options, quiet).report;
    const auto& eval = report["metrics"]["eval"];
    recall[row.label] = eval["niah"]["recall"].get<double>();
    int heads = 0;
    for (const auto& layer : report["result_model"]["layers"]) heads += layer["query_heads"].get<int>();
    std::string removed;
    for (const auto& pass : report["passes"]) {
      if (pass["name"] == "head-prune")
        for (const auto& head : pass["statistics"]["removed"]) removed += (removed.empty() ? "" : " ") + head.get<std::string>();
      if (pass["name"] == "retrieval-heads" && retrieval_heads.empty())
        for (const auto& line : pass["summary"]) retrieval_heads += (retrieval_heads.empty() ? "" : "; ") + line.get<std::string>();
    }
    std::printf("%-26s %6d %12.3f %9.4f  %s\n", row.label.c_str(), heads, recall[row.label], eval["mean_loss"].get<double>(),
                removed.empty() ? "-" : removed.c_str());
  }
  std::printf("retrieval-heads pass: %s\n", retrieval_heads.c_str());
  const double unpruned = recall["unpruned"], with = recall["25 % removed, protected"], without = recall["25 % removed"];
  std::printf("goal (25 %% removed): protected recall %.3f vs unpruned %.3f (%+.1f points, within 5: %s), vs unprotected %.3f "
              "(%+.1f points, clearly above (>= 10 points): %s)\n",
              with, unpruned, 100 * (with - unpruned), std::abs(with - unpruned) <= 0.05 ? "yes" : "NO", without,
              100 * (with - without), with - without >= 0.10 ? "yes" : "NO");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string argument = argv[i];
    if (argument == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else positional.push_back(argument);
  }
  const char* usage =
      "usage: head_prune_bench SHARED_DIR quality | speed OUT_DIR | preservation METHOD [--threads N]\n";
  if (positional.size() < 2) {
    std::fprintf(stderr, "%s", usage);
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines as they come, also through a pipe
  lathe::keep_freed_memory_for_reuse();
  at::set_num_threads(threads);
  const auto shared = std::filesystem::absolute(positional[0]).lexically_normal().string();
  const auto& mode = positional[1];
  try {
    if (mode == "quality") return quality(shared);
    if (mode == "speed" && positional.size() == 3) return speed(shared, positional[2]);
    if (mode == "preservation" && positional.size() == 3) return preservation(shared, positional[2]);
  } catch (const lathe::InputError& error) {
    std::fprintf(stderr, "head_prune_bench: %s\n", error.what());
    return 2;
  }
  std::fprintf(stderr, "%s", usage);
  return 2;
}
