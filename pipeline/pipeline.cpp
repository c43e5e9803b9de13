#include "pipeline/pipeline.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/model.h"
#include "datasets/data_sets.h"
#include "passes/analysis_manager.h"
#include "passes/pass_context.h"
#include "passes/pass_description.h"
#include "passes/pass_registry.h"
#include "pipeline/fingerprints.h"
#include "pipeline/outputs.h"
#include "pipeline/report.h"
#include "support/blas_core.h"
#include "support/errors.h"
#include "support/number_text.h"
#include "support/process_stats.h"
#include "support/progress.h"

namespace lathe {
namespace {

// The evaluation the gates judge: the last one that compared against the original model.
const nlohmann::json* gated_metrics(const nlohmann::json& metrics, const nlohmann::json& order) {
  const nlohmann::json* chosen = nullptr;
  for (const auto& label : order)
    if (metrics[label.get<std::string>()].contains("reference_mean_loss")) chosen = &metrics[label.get<std::string>()];
  return chosen;
}

void require_gate_source(const Recipe& recipe) {
  const auto& gates = recipe.gates;
  if (!gates.max_perplexity_increase && !gates.max_loss_increase && !gates.max_kl && !gates.min_top1_agreement) return;
  for (const auto& pass : recipe.passes)
    if (pass.name == "eval" && pass.params.get_bool("kl") && pass.params.get_bool("perplexity")) return;
  throw InputError(gates.where.str() + ": gates judge an evaluation against the original model; add an "
                   "eval pass with kl: true and perplexity: true");
}

nlohmann::json check_gates(const Gates& gates, const nlohmann::json& metrics) {
  auto results = nlohmann::json::array();
  auto check = [&](const char* name, const std::optional<double>& limit, double value, bool at_most) {
    if (!limit) return;
    const bool passed = at_most ? value <= *limit : value >= *limit;
    results.push_back({{"gate", name}, {"limit", *limit}, {"value", value}, {"passed", passed}});
  };
  const double loss = metrics["mean_loss"], reference = metrics["reference_mean_loss"];
  check("max_perplexity_increase", gates.max_perplexity_increase, std::exp(loss - reference) - 1.0, true);
  check("max_loss_increase", gates.max_loss_increase, loss - reference, true);
  check("max_kl", gates.max_kl, metrics["kl"].get<double>(), true);
  check("min_top1_agreement", gates.min_top1_agreement, metrics["top1_agreement"].get<double>(), false);
  return results;
}

}  // namespace

nlohmann::json describe_model(const Model& model) {
  auto layers = nlohmann::json::array();
  for (const auto& layer : model.layers)
    layers.push_back({{"query_heads", layer.query_heads}, {"kv_heads", layer.kv_heads}, {"ffn_width", layer.ffn_width}});
  return {{"path", model.source.path.string()},
          {"format", model.source.format},
          {"family", model.family.name},
          {"hidden", model.config.hidden},
          {"head_dim", model.config.head_dim},
          {"vocab", model.config.vocab},
          {"max_positions", model.config.max_positions},
          {"layers", layers},
          {"parameters", model.parameter_count()},
          {"bytes_on_disk", model.source.bytes_on_disk}};
}

ModelLocation model_location(const ModelSpec& spec) {
  std::error_code error;
  if (!std::filesystem::exists(spec.path, error))
    throw InputError(spec.where.str() + ": model " + spec.path.string() + ": no such file or folder");
  return {spec.path, spec.config, spec.family};
}

void check_recipe_against_model(const Recipe& recipe, const Model& model) {
  PlannedModel planned;
  const std::string checkpoint = "the checkpoint";
  if (model.quantization.active()) planned.quantized = checkpoint;
  if (model.attention.gated) planned.gated_attention = checkpoint;
  if (model.attention.clipped_softmax) planned.clipped_softmax = checkpoint;
  if (has_head_role(model, "retrieval")) planned.head_roles["retrieval"] = checkpoint;
  for (const auto& invocation : recipe.passes) {
    for (const char* entry_param : {"data", "niah_data"}) {
      if (!invocation.params.has(entry_param)) continue;
      const auto& entry = invocation.params.get_string(entry_param);
      if (!entry.empty() && recipe.data.count(entry) == 0) {
        std::string known;
        for (const auto& [name, spec] : recipe.data) known += (known.empty() ? "" : ", ") + name;
        throw InputError(invocation.where.str() + ": " + invocation.name + ": " + entry_param + " \"" + entry +
                         "\" is not a data entry of the recipe" + (known.empty() ? std::string(" (it has none)") : "; it has " + known));
      }
    }
    const auto& info = *find_pass(invocation.name);
    const auto where = invocation.where.str() + ": " + invocation.name;
    if (info.check) info.check(invocation.params, model, where);
    if (info.plan) info.plan(planned, invocation.params, invocation.where.str());
  }
}

RunResult run_recipe(const Recipe& recipe, const RunOptions& options, Progress& progress, Model* final_model) {
  using Clock = std::chrono::steady_clock;
  require_gate_source(recipe);
  RunResult result;
  auto& report = result.report;
  report["schema_version"] = kReportSchemaVersion;
  report["lathe_version"] = LATHE_VERSION;
  report["recipe"] = recipe.source;
  report["normalized_recipe"] = recipe_to_json(recipe);
  report["threads"] = options.threads;
  if (const auto core = openblas_core(); !core.empty())
    report["blas"] = {{"library", "OpenBLAS"}, {"kernels", core}, {"kernels_chosen_by", openblas_core_chosen_by()}};

  reset_peak_rss();
  const auto load_start = Clock::now();
  progress.update("loading " + recipe.model.path.string());
  const Model original = load_model(model_location(recipe.model));
  progress.finish();
  report["model"] = describe_model(original);
  report["load"] = {{"wall_seconds", std::chrono::duration<double>(Clock::now() - load_start).count()},
                    {"peak_rss_bytes", peak_rss_bytes()}};

  check_recipe_against_model(recipe, original);
  DataSets data(recipe.data, original);
  data.check_files();
  std::vector<std::unique_ptr<Pass>> passes;
  for (const auto& invocation : recipe.passes) passes.push_back(find_pass(invocation.name)->create(invocation.params));
  for (const auto& output : recipe.outputs)
    if (std::find(output_formats().begin(), output_formats().end(), output.format) == output_formats().end())
      throw InputError(output.where.str() + ": unknown output format \"" + output.format + "\"");
  // A pass that would not fit is refused before any work starts.
  for (std::size_t i = 0; i < passes.size(); ++i) {
    const auto& info = *find_pass(recipe.passes[i].name);
    const auto needed = info.whole_model_bytes ? info.whole_model_bytes(recipe.passes[i].params, original) : 0;
    if (options.memory_limit > 0 && needed > options.memory_limit)
      throw InputError(recipe.passes[i].where.str() + ": " + info.name + " holds the whole model in float32 at once and needs about " +
                       byte_size(needed) + ", more than the memory limit of " + byte_size(options.memory_limit) +
                       " (--memory-limit; default: the memory available)");
  }
  if (options.dry_run) {
    report["dry_run"] = true;
    report["passes"] = nlohmann::json::array();
    for (const auto& invocation : recipe.passes)
      report["passes"].push_back({{"name", invocation.name}, {"params", param_values_json(invocation.params)}});
    return result;
  }

  report["inputs"] = input_fingerprints(recipe, original);
  Model model = original.clone();
  AnalysisManager analyses;
  PassContext context(original, data, analyses, progress);
  context.memory_limit = options.memory_limit;
  context.artifacts_dir = options.artifacts_dir;
  report["passes"] = nlohmann::json::array();
  auto metric_order = nlohmann::json::array();
  for (std::size_t i = 0; i < passes.size(); ++i) {
    const auto& invocation = recipe.passes[i];
    const auto& info = *find_pass(invocation.name);
    context.where = invocation.where;
    context.statistics = nlohmann::json::object();
    context.summary.clear();
    const auto labels_before = context.metrics.size();
    reset_peak_rss();
    const auto start = Clock::now();
    auto preserved = passes[i]->run(model, context);
    const auto seconds = std::chrono::duration<double>(Clock::now() - start).count();
    analyses.invalidate(preserved);
    if (info.kind == PassKind::Transform) ++context.transforms_applied;
    if (context.metrics.size() > labels_before) metric_order.push_back(context.statistics.value("label", ""));
    report["passes"].push_back({{"name", invocation.name},
                                {"kind", pass_kind_name(info.kind)},
                                {"params", param_values_json(invocation.params)},
                                {"wall_seconds", seconds},
                                {"peak_rss_bytes", peak_rss_bytes()},
                                {"statistics", context.statistics},
                                {"summary", context.summary}});
  }
  report["metrics"] = context.metrics;
  report["artifacts"] = context.artifacts;
  report["analyses"] = {{"computed", analyses.computations()}, {"reused", analyses.hits()}};
  report["result_model"] = describe_model(model);
  if (model.quantization.active()) report["result_model"]["quantization"] = quantization_mode_name(model.quantization.mode);

  if (const auto* gated = gated_metrics(context.metrics, metric_order)) {
    report["gates"] = check_gates(recipe.gates, *gated);
    for (const auto& gate : report["gates"])
      if (!gate["passed"].get<bool>()) result.exit_code = kExitGateFailed;
  }
  report["outputs"] = nlohmann::json::array();
  if (result.exit_code == kExitOk) {
    const std::map<std::string, std::string> provenance = {
        {"lathe_version", LATHE_VERSION},
        {"lathe_source_model", original.source.path.string()},
        {"lathe_recipe", recipe.source},
        {"lathe_passes", [&] {
           std::string names;
           for (const auto& pass : recipe.passes) names += (names.empty() ? "" : ",") + pass.name;
           return names;
         }()}};
    for (const auto& output : recipe.outputs) {
      progress.update("writing " + output.path.string());
      reset_peak_rss();
      const auto start = Clock::now();
      auto written = write_output(model, output, provenance);
      written["wall_seconds"] = std::chrono::duration<double>(Clock::now() - start).count();
      written["peak_rss_bytes"] = peak_rss_bytes();
      report["outputs"].push_back(written);
      progress.finish();
    }
  }
  // The run's peak: the largest of its stages' (each measured from a reset).
  std::uint64_t peak = report["load"]["peak_rss_bytes"].get<std::uint64_t>();
  for (const auto& section : {report["passes"], report["outputs"]})
    for (const auto& stage : section) peak = std::max(peak, stage["peak_rss_bytes"].get<std::uint64_t>());
  report["peak_rss_bytes"] = peak;
  report["status"] = result.exit_code == kExitOk ? "ok" : "gate_failed";
  report["exit_code"] = result.exit_code;
  if (final_model != nullptr) *final_model = std::move(model);
  return result;
}

}  // namespace lathe
