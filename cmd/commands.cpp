#include "cmd/commands.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <cstdio>
#include <iostream>

#include "core/embedded_files.h"
#include "core/model_loader.h"
#include "passes/pass_description.h"
#include "passes/pass_registry.h"
#include "pipeline/junit_report.h"
#include "pipeline/output_paths.h"
#include "pipeline/pipeline.h"
#include "pipeline/recipe.h"
#include "pipeline/report.h"
#include "support/errors.h"
#include "support/process_stats.h"
#include "support/progress.h"

namespace lathe {
namespace {

// LibTorch's errors carry a backtrace in what(); the user needs the first line.
template <typename Body>
int with_torch_errors(Body&& body) {
  try {
    return body();
  } catch (const c10::Error& error) {
    throw std::runtime_error(error.what_without_backtrace());
  }
}

Recipe read_recipe(const std::optional<std::filesystem::path>& path, const std::vector<std::string>& overrides) {
  if (path) return load_recipe(*path, overrides);
  const auto& embedded = embedded_default_recipe();
  return parse_recipe(embedded.text, "<default recipe " + embedded.name + ">", overrides);
}

std::filesystem::path default_report_path(const Recipe& recipe) {
  if (recipe.outputs.empty()) return {};
  const auto& first = recipe.outputs.front().path;
  return (first.has_parent_path() ? first.parent_path() : std::filesystem::path(".")) / "report.json";
}

std::string thousands(std::int64_t value) {
  const auto digits = std::to_string(value);
  std::string grouped;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0 && digits[i - 1] != '-') grouped += ',';
    grouped += digits[i];
  }
  return grouped;
}

const char* norm_name(NormKind kind) { return kind == NormKind::RMS ? "RMSNorm" : "LayerNorm"; }
const char* position_name(PositionKind kind) { return kind == PositionKind::Rotary ? "rotary" : "learned"; }
const char* mlp_name(MlpKind kind) {
  switch (kind) {
    case MlpKind::GatedSiLU: return "gated SiLU";
    case MlpKind::GeluTanh: return "GELU (tanh)";
    case MlpKind::Gelu: return "GELU";
    case MlpKind::Relu: return "ReLU";
  }
  return "?";
}

// "16G", "512M", "64k" (powers of 1024) or plain bytes.
std::int64_t parse_memory_limit(const std::string& text) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = text.substr(used);
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  const double scale = unit.empty() ? 1.0
                       : unit == "k" || unit == "K" ? 1024.0
                       : unit == "m" || unit == "M" ? 1024.0 * 1024
                       : unit == "g" || unit == "G" ? 1024.0 * 1024 * 1024
                       : unit == "t" || unit == "T" ? 1024.0 * 1024 * 1024 * 1024
                                                    : -1.0;
  if (used == 0 || scale < 0 || !(value > 0))
    throw InputError("--memory-limit " + text + ": expected a size such as 16G, 512M or a number of bytes");
  return static_cast<std::int64_t>(value * scale);
}

}  // namespace

namespace {

// Where the report of a failed run goes: --report's path until the recipe's output paths are
// checked (may_hold_failure_report decides then), nowhere if that check refuses it, the checked
// path after.
struct FailureReportPlace {
  std::filesystem::path path;
  std::filesystem::path junit;
  bool checked = false;
  std::string recipe_source;
};

// A CI job gets a machine-readable answer on every exit; writing it must not hide the error.
void write_failure_report(const FailureReportPlace& place, int exit_code, const std::string& message) {
  const auto report = failure_report(exit_code, message, place.recipe_source);
  auto may_write = [&](const std::filesystem::path& path) {
    return !path.empty() && (place.checked || may_hold_failure_report(path));
  };
  try {
    if (may_write(place.path)) write_report(report, place.path);
  } catch (const std::exception&) {
    // The run's own error is the one to report.
  }
  try {
    if (may_write(place.junit)) write_junit(report, place.junit);
  } catch (const std::exception&) {
  }
}

int run_recipe_command(const RunCommand& command, FailureReportPlace& failure) {
  return with_torch_errors([&] {
    const auto recipe = read_recipe(command.recipe, command.overrides);
    failure.recipe_source = recipe.source;
    RunOptions options;
    options.dry_run = command.dry_run;
    options.threads = command.threads > 0 ? command.threads : usable_cpu_count();
    at::set_num_threads(options.threads);
    options.memory_limit = command.memory_limit.empty() ? static_cast<std::int64_t>(available_memory_bytes())
                                                        : parse_memory_limit(command.memory_limit);
    const auto report_path = command.report ? *command.report : default_report_path(recipe);
    const auto junit_path = command.junit.value_or(std::filesystem::path());
    failure.path.clear();  // a report path these checks refuse is never written
    failure.junit.clear();
    check_output_paths(recipe, report_path, command.report.has_value(), command.recipe.value_or(std::filesystem::path()),
                       junit_path);
    if (!command.dry_run) failure = {report_path, junit_path, true, recipe.source};
    if (!report_path.empty())
      options.artifacts_dir = report_path.has_parent_path() ? report_path.parent_path() : std::filesystem::path(".");
    Progress progress(command.progress == "plain"  ? ProgressStyle::Plain
                      : command.progress == "none" ? ProgressStyle::None
                                                   : ProgressStyle::Auto);
    auto result = run_recipe(recipe, options, progress);
    std::cout << format_report(result.report) << std::flush;
    if (!command.dry_run) {
      if (!report_path.empty()) {
        write_report(result.report, report_path);
        std::cout << "report   " << report_path.string() << "\n";
      }
      if (!junit_path.empty()) write_junit(result.report, junit_path);
    }
    if (result.exit_code == kExitGateFailed)
      std::fprintf(stderr, "lathe: gate failed: the model misses the recipe's quality gates; no model was written\n");
    return result.exit_code;
  });
}

}  // namespace

int run_command(const RunCommand& command) {
  FailureReportPlace failure;
  if (!command.dry_run) {
    if (command.report) failure.path = *command.report;
    if (command.junit) failure.junit = *command.junit;
  }
  try {
    return run_recipe_command(command, failure);
  } catch (const InputError& error) {
    write_failure_report(failure, kExitBadInput, error.what());
    throw;
  } catch (const GateFailure&) {
    throw;
  } catch (const std::exception& error) {
    write_failure_report(failure, kExitInternalError, error.what());
    throw;
  }
}

int inspect_command(const InspectCommand& command) {
  return with_torch_errors([&] {
    at::set_num_threads(1);
    const auto model = load_model({command.model, command.config, command.family});
    auto layers = nlohmann::json::array();
    for (const auto& layer : model.layers)
      layers.push_back({{"query_heads", layer.query_heads}, {"kv_heads", layer.kv_heads}, {"ffn_width", layer.ffn_width}});
    if (command.json) {
      nlohmann::json json = {{"path", model.source.path.string()}, {"format", model.source.format},
                             {"family", model.family.name},        {"hidden", model.config.hidden},
                             {"head_dim", model.config.head_dim},  {"vocab", model.config.vocab},
                             {"max_positions", model.config.max_positions},
                             {"tied_embeddings", model.config.tied_embeddings},
                             {"layers", layers},                   {"parameters", model.parameter_count()},
                             {"bytes_on_disk", model.source.bytes_on_disk}};
      if (!model.annotations.empty()) json["annotations"] = model.annotations;
      if (model.attention.active()) {
        json["attention"] = {{"gated", model.attention.gated}};
        if (const auto& clipped = model.attention.clipped_softmax)
          json["attention"]["clipped_softmax"] = {{"gamma", clipped->gamma}, {"zeta", clipped->zeta}};
      }
      if (model.quantization.active())
        json["quantization"] = {{"mode", quantization_mode_name(model.quantization.mode)},
                                {"int8_weights", model.quantization.weight_scales.size()},
                                {"target_cpu", target_cpu_name(model.quantization.target_cpu)},
                                {"weight_limit", model.quantization.weight_limit}};
      if (command.tensors)
        for (const auto& [name, tensor] : model.tensors) json["tensors"][name] = tensor.sizes().vec();
      std::cout << json.dump(2) << "\n";
      return kExitOk;
    }
    const auto& block = model.family.block;
    const auto& first = model.layers.front();
    bool uniform = true;
    for (const auto& layer : model.layers)
      uniform = uniform && layer.query_heads == first.query_heads && layer.kv_heads == first.kv_heads &&
                layer.ffn_width == first.ffn_width;
    std::cout << "model        " << model.source.path.string() << "\n"
              << "format       " << model.source.format << ", " << thousands(model.source.bytes_on_disk) << " bytes on disk\n"
              << "family       " << model.family.name << " (" << norm_name(block.norm) << ", " << position_name(block.position)
              << " positions, " << mlp_name(block.mlp) << " MLP" << (model.config.tied_embeddings ? ", tied output head" : "")
              << ")\n"
              << "layers       " << model.layer_count() << "\n";
    if (uniform) {
      std::cout << "heads        " << first.query_heads << "\n"
                << "kv heads     " << first.kv_heads << "\n"
                << "ffn width    " << first.ffn_width << "\n";
    } else {
      std::cout << "per layer    query heads / kv heads / ffn width\n";
      for (std::size_t i = 0; i < model.layers.size(); ++i)
        std::cout << "  layer " << i << "    " << model.layers[i].query_heads << " / " << model.layers[i].kv_heads << " / "
                  << model.layers[i].ffn_width << "\n";
    }
    std::cout << "head size    " << model.config.head_dim << "\n"
              << "hidden       " << model.config.hidden << "\n"
              << "vocab        " << model.config.vocab << "\n"
              << "positions    " << model.config.max_positions << "\n"
              << "parameters   " << thousands(model.parameter_count()) << "\n";
    if (model.attention.active()) {
      std::cout << "attention    ";
      if (model.attention.gated) std::cout << "gated heads" << (model.attention.clipped_softmax ? ", " : "");
      if (const auto& clipped = model.attention.clipped_softmax)
        std::cout << "clipped softmax (gamma " << clipped->gamma << ", zeta " << clipped->zeta << ")";
      std::cout << "\n";
    }
    if (model.quantization.active())
      std::cout << "quantized    " << quantization_mode_name(model.quantization.mode) << ", "
                << model.quantization.weight_scales.size() << " int8 weights (|q| <= "
                << model.quantization.weight_limit << ", for " << target_cpu_name(model.quantization.target_cpu)
                << " CPUs)\n";
    if (command.tensors)
      for (const auto& [name, tensor] : model.tensors) std::cout << "  " << name << " " << tensor.sizes() << "\n";
    return kExitOk;
  });
}

int passes_command(const PassesCommand& command) {
  if (command.json) {
    std::cout << pass_registry_json().dump(2) << "\n";
    return kExitOk;
  }
  if (command.markdown) {
    std::cout << pass_registry_markdown();
    return kExitOk;
  }
  for (const auto& pass : pass_registry()) {
    std::cout << pass.name << " (" << pass_kind_name(pass.kind) << "): " << pass.summary << "\n";
    for (const auto& param : pass.params) {
      std::cout << "    " << param.name << ": " << param_type_name(param.type) << " = "
                << param_value_to_string(param.default_value);
      if (!param.choices.empty()) {
        std::cout << (param.type == ParamType::HeadList ? " (or" : " (one of");
        for (const auto& choice : param.choices) std::cout << " " << choice;
        std::cout << ")";
      }
      std::cout << "  " << param.doc << "\n";
    }
  }
  return kExitOk;
}

int validate_command(const ValidateCommand& command) {
  return with_torch_errors([&] {
    const auto recipe = read_recipe(command.recipe, command.overrides);
    check_output_paths(recipe, default_report_path(recipe), false, command.recipe.value_or(std::filesystem::path()));
    // The model's header and config only: no tensor data is read.
    const auto model = load_model(model_location(recipe.model));
    check_recipe_against_model(recipe, model);
    if (command.json) {
      std::cout << nlohmann::json{{"recipe", recipe_to_json(recipe)}, {"model", describe_model(model)}}.dump(2) << "\n";
    } else {
      std::cout << recipe_to_yaml(recipe);
    }
    return kExitOk;
  });
}

}  // namespace lathe
