#include "passes/outlier_stats_pass.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "core/model.h"
#include "datasets/data_sets.h"
#include "executor/executor.h"
#include "passes/layer_streaming.h"
#include "passes/pass_context.h"
#include "support/errors.h"
#include "support/number_text.h"
#include "support/progress.h"
#include "support/svg_heatmap.h"

namespace lathe {
namespace {

// The sites the paper measures: each sublayer's output before the residual add.
struct MeasuredSite {
  ActivationSite site;
  const char* label;  // for the terminal and the chart
};
constexpr MeasuredSite kMeasured[] = {{ActivationSite::AttentionOutput, "attention output"},
                                      {ActivationSite::MlpOutput, "FFN output"}};

// Three significant digits, for labels on narrow bars.
std::string short_number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3g", value);
  return buffer;
}

nlohmann::json number(double value) { return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(nullptr); }

std::string join(const std::vector<std::int64_t>& values, const char* separator) {
  std::string text;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) text += separator;
    text += std::to_string(values[i]);
  }
  return text;
}

// One layer's numbers at one site, NaN where the layer lacks the site.
struct SiteRow {
  double mean_inf_norm = NAN;
  double max_inf_norm = NAN;
  double mean_kurtosis = NAN;
  double max_kurtosis = NAN;
  std::vector<std::int64_t> outliers;
  bool present = false;
};

SiteRow site_row(const LayerActivationStatistics& layer, ActivationSite site, double sigmas) {
  SiteRow row;
  auto found = layer.find(site);
  if (found == layer.end() || found->second.samples() == 0) return row;
  const auto& stats = found->second;
  row = {stats.mean_inf_norm(), stats.max_inf_norm(), stats.mean_kurtosis(), stats.max_kurtosis(),
         stats.outlier_channels(sigmas), true};
  return row;
}

// Mean and largest over layers, and the layer of the largest; NaN and -1 without layers.
struct OverLayers {
  double mean = NAN;
  double max = NAN;
  int worst = -1;
};

OverLayers over_layers(const std::vector<double>& values) {
  OverLayers result;
  double sum = 0;
  int count = 0;
  for (int layer = 0; layer < static_cast<int>(values.size()); ++layer) {
    if (std::isnan(values[layer])) continue;
    sum += values[layer];
    ++count;
    if (result.worst < 0 || values[layer] > result.max) {
      result.max = values[layer];
      result.worst = layer;
    }
  }
  if (count > 0) result.mean = sum / count;
  return result;
}

// Two panels of grouped bars, one group per layer with a bar per site: the max infinity norm
// and the kurtosis, each averaged over samples.
std::string bar_chart_svg(const std::vector<std::vector<SiteRow>>& rows, const std::string& title) {
  constexpr int kBar = 22, kGap = 18, kLeft = 64, kTop = 44, kPanel = 150, kPanelGap = 58;
  constexpr const char* kColors[] = {"#2b6cb0", "#dd6b20"};
  const int layers = static_cast<int>(rows.size());
  const int sites = static_cast<int>(std::size(kMeasured));
  const int group = sites * kBar + kGap;
  const int width = std::max(kLeft + layers * group + 20, 360);
  const int height = kTop + 2 * kPanel + kPanelGap + 60;
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"11\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << kLeft << "\" y=\"20\" font-size=\"14\">" << xml_escape(title) << "</text>\n";
  for (int s = 0; s < sites; ++s)
    svg << "<rect x=\"" << kLeft + s * 130 << "\" y=\"28\" width=\"10\" height=\"10\" fill=\"" << kColors[s]
        << "\"/><text x=\"" << kLeft + s * 130 + 14 << "\" y=\"37\">" << kMeasured[s].label << "</text>\n";

  struct Metric {
    const char* name;
    double SiteRow::*value;
  };
  const Metric metrics[] = {{"max inf-norm (mean over samples)", &SiteRow::mean_inf_norm},
                            {"kurtosis (mean over samples)", &SiteRow::mean_kurtosis}};
  for (int p = 0; p < 2; ++p) {
    const int top = kTop + 18 + p * (kPanel + kPanelGap);
    const int bottom = top + kPanel;
    double high = 0;
    for (const auto& layer : rows)
      for (const auto& row : layer)
        if (std::isfinite(row.*metrics[p].value)) high = std::max(high, row.*metrics[p].value);
    if (high <= 0) high = 1;
    svg << "<text x=\"" << kLeft << "\" y=\"" << top - 6 << "\" font-size=\"12\">" << metrics[p].name << "</text>\n"
        << "<line x1=\"" << kLeft << "\" y1=\"" << bottom << "\" x2=\"" << kLeft + layers * group << "\" y2=\"" << bottom
        << "\" stroke=\"#444\"/>\n"
        << "<line x1=\"" << kLeft << "\" y1=\"" << top << "\" x2=\"" << kLeft << "\" y2=\"" << bottom
        << "\" stroke=\"#444\"/>\n"
        << "<text x=\"" << kLeft - 4 << "\" y=\"" << top + 4 << "\" text-anchor=\"end\">" << number_text(high) << "</text>\n"
        << "<text x=\"" << kLeft - 4 << "\" y=\"" << bottom << "\" text-anchor=\"end\">0</text>\n";
    for (int layer = 0; layer < layers; ++layer) {
      const int x0 = kLeft + layer * group + kGap / 2;
      svg << "<text x=\"" << x0 + sites * kBar / 2 << "\" y=\"" << bottom + 14 << "\" text-anchor=\"middle\">"
          << layer << "</text>\n";
      for (int s = 0; s < sites; ++s) {
        const auto& row = rows[layer][s];
        const double value = row.*metrics[p].value;
        if (!std::isfinite(value)) continue;
        const int bar = static_cast<int>(std::lround(kPanel * value / high));
        svg << "<rect x=\"" << x0 + s * kBar << "\" y=\"" << bottom - bar << "\" width=\"" << kBar - 2
            << "\" height=\"" << bar << "\" fill=\"" << kColors[s] << "\"><title>layer " << layer << ", "
            << kMeasured[s].label << ": " << number_text(value) << "; outlier channels: " << row.outliers.size()
            << "</title></rect>\n"
            << "<text x=\"" << x0 + s * kBar + (kBar - 2) / 2 << "\" y=\"" << bottom - bar - 3
            << "\" text-anchor=\"middle\" font-size=\"9\">" << short_number(value) << "</text>\n";
      }
    }
    svg << "<text x=\"" << kLeft + layers * group / 2 << "\" y=\"" << bottom + 28
        << "\" text-anchor=\"middle\">layer</text>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

using SiteRows = std::vector<std::vector<SiteRow>>;  // [layer][measured site]

nlohmann::json layers_json(const std::vector<LayerActivationStatistics>& statistics, const SiteRows& rows) {
  auto layers = nlohmann::json::array();
  for (std::size_t layer = 0; layer < rows.size(); ++layer) {
    nlohmann::json entry = {{"layer", layer}};
    for (std::size_t s = 0; s < std::size(kMeasured); ++s) {
      const auto& row = rows[layer][s];
      auto& site = entry[activation_site_name(kMeasured[s].site)];
      if (!row.present) continue;  // stays null
      const auto& stats = statistics[layer].at(kMeasured[s].site);
      site = {{"samples", stats.samples()},
              {"tokens", stats.tokens()},
              {"mean_inf_norm", number(row.mean_inf_norm)},
              {"max_inf_norm", number(row.max_inf_norm)},
              {"mean_kurtosis", number(row.mean_kurtosis)},
              {"max_kurtosis", number(row.max_kurtosis)},
              {"mean", number(stats.mean())},
              {"std", number(stats.standard_deviation())},
              {"outlier_channel_count", row.outliers.size()},
              {"outlier_channels", row.outliers}};
    }
    layers.push_back(entry);
  }
  return layers;
}

std::string csv_table(const std::vector<LayerActivationStatistics>& statistics, const SiteRows& rows) {
  std::ostringstream csv;
  csv << "layer,site,samples,mean_inf_norm,max_inf_norm,mean_kurtosis,max_kurtosis,std,outlier_channel_count,"
         "outlier_channels\n";
  for (std::size_t layer = 0; layer < rows.size(); ++layer)
    for (std::size_t s = 0; s < std::size(kMeasured); ++s) {
      const auto& row = rows[layer][s];
      if (!row.present) continue;
      const auto& stats = statistics[layer].at(kMeasured[s].site);
      csv << layer << "," << activation_site_name(kMeasured[s].site) << "," << stats.samples() << ","
          << row.mean_inf_norm << "," << row.max_inf_norm << "," << row.mean_kurtosis << "," << row.max_kurtosis << ","
          << stats.standard_deviation() << "," << row.outliers.size() << ",\"" << join(row.outliers, " ") << "\"\n";
    }
  return csv.str();
}

// Mean and max over layers of both metrics with the worst layers, per site; a terminal line each.
nlohmann::json over_layers_json(const SiteRows& rows, std::vector<std::string>& summary) {
  auto result = nlohmann::json::object();
  for (std::size_t s = 0; s < std::size(kMeasured); ++s) {
    std::vector<double> inf_norms, kurtosis;
    std::size_t outliers = 0;
    for (const auto& layer : rows) {
      inf_norms.push_back(layer[s].mean_inf_norm);
      kurtosis.push_back(layer[s].mean_kurtosis);
      outliers += layer[s].outliers.size();
    }
    const auto norm = over_layers(inf_norms), kurt = over_layers(kurtosis);
    result[activation_site_name(kMeasured[s].site)] = {{"mean_inf_norm", number(norm.mean)},
                                                       {"max_inf_norm", number(norm.max)},
                                                       {"worst_inf_norm_layer", norm.worst},
                                                       {"mean_kurtosis", number(kurt.mean)},
                                                       {"max_kurtosis", number(kurt.max)},
                                                       {"worst_kurtosis_layer", kurt.worst},
                                                       {"outlier_channels", outliers}};
    if (norm.worst < 0) continue;
    summary.push_back(std::string(kMeasured[s].label) + ": inf-norm mean " + number_text(norm.mean) + ", max " +
                      number_text(norm.max) + " (layer " + std::to_string(norm.worst) + "); kurtosis mean " +
                      number_text(kurt.mean) + ", max " + number_text(kurt.max) + " (layer " + std::to_string(kurt.worst) + "); " +
                      std::to_string(outliers) + " outlier channels");
  }
  return result;
}

// The channels that are outliers at the most sites: outlier dimensions of the residual stream
// tend to recur layer after layer.
std::string frequent_outliers(const SiteRows& rows) {
  std::map<std::int64_t, int> sites_of;
  int sites = 0;
  for (const auto& layer : rows)
    for (const auto& row : layer) {
      sites += row.present ? 1 : 0;
      for (auto channel : row.outliers) ++sites_of[channel];
    }
  std::vector<std::pair<std::int64_t, int>> ranked(sites_of.begin(), sites_of.end());
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string text;
  for (std::size_t i = 0; i < ranked.size() && i < 5; ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(ranked[i].first) + " (" + std::to_string(ranked[i].second);
    text += i > 0 ? ")" : " of " + std::to_string(sites) + " sites)";
  }
  return text;
}

class OutlierStatsPass : public Pass {
 public:
  explicit OutlierStatsPass(const ParamValues& params) : params_(params) {}

  PreservedAnalyses run(Model& model, PassContext& context) override {
    const auto data = context.data.require_calibration_entry(params_.get_string("data"), context.where, "outlier-stats");
    const auto max_tokens = params_.get_int("max_tokens");
    const double sigmas = params_.get_float("sigmas");
    const auto& statistics = cached_activation_statistics(model, context, data, max_tokens);

    SiteRows rows(statistics.size());
    std::int64_t tokens = 0, samples = 0;
    for (std::size_t layer = 0; layer < statistics.size(); ++layer) {
      for (const auto& measured : kMeasured) rows[layer].push_back(site_row(statistics[layer], measured.site, sigmas));
      for (const auto& [site, stats] : statistics[layer]) {
        tokens = std::max(tokens, stats.tokens());
        samples = std::max(samples, stats.samples());
      }
    }

    context.summary.push_back(std::to_string(tokens) + " tokens of " + data + " (" + std::to_string(samples) +
                              " samples); metrics averaged over samples, then mean and max over layers");
    const auto over_all = over_layers_json(rows, context.summary);
    const auto frequent = frequent_outliers(rows);
    if (!frequent.empty())
      context.summary.push_back("outlier channels (beyond " + number_text(sigmas) + " std) found most often: " + frequent);
    context.statistics = {{"data", data},       {"max_tokens", max_tokens}, {"tokens", tokens},
                          {"samples", samples}, {"sigmas", sigmas},         {"over_layers", over_all},
                          {"layers", layers_json(statistics, rows)}};
    context.write_artifact("outlier_stats.csv", csv_table(statistics, rows));
    context.write_artifact("outlier_stats.svg", bar_chart_svg(rows, "activation outliers per layer (" + data + ")"));
    return PreservedAnalyses::all();
  }

 private:
  ParamValues params_;
};

}  // namespace

const std::vector<LayerActivationStatistics>& cached_activation_statistics(const Model& model, PassContext& context,
                                                                           const std::string& data,
                                                                           std::int64_t max_tokens) {
  const auto key = "activation-statistics(" + data + "," + std::to_string(max_tokens) + ")";
  return context.analyses.get<std::vector<LayerActivationStatistics>>(key, [&] {
    Executor executor(model);
    const auto batches = context.data.batches(data, context.where, 0, max_tokens);
    auto statistics = gather_activation_statistics(
        executor, batches,
        {ActivationSite::AttentionInput, ActivationSite::AttentionOutput, ActivationSite::MlpInput,
         ActivationSite::MlpOutput},
        layer_streaming(context, "activation statistics", batches));
    context.progress.finish();
    return statistics;
  });
}

PassInfo outlier_stats_pass_info() {
  PassInfo info;
  info.name = "outlier-stats";
  info.kind = PassKind::Analysis;
  info.summary =
      "outlier metrics of every layer's attention and FFN output: max infinity norm and kurtosis averaged over samples, "
      "channels beyond 6 std";
  info.params = {
      {"data", ParamType::String, std::string(""), "data entry; default: calibration, then eval", {}, {}, {}},
      {"max_tokens", ParamType::Int, std::int64_t{8192}, "tokens of the data to use", {}, 1.0, {}},
      {"sigmas", ParamType::Float, 6.0, "a channel is an outlier when a value lies this many std from the site's mean", {}, 0.0, {}},
  };
  info.create = [](const ParamValues& params) { return std::make_unique<OutlierStatsPass>(params); };
  return info;
}

}  // namespace lathe
