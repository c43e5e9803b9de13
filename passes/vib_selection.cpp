#include "passes/vib_selection.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <queue>
#include <set>

#include "core/model.h"
#include "core/structure_size.h"
#include "support/errors.h"

namespace lathe {
namespace {

std::vector<double> values_of(const VibMask& mask) {
  if (mask.empty()) return {};
  const auto values = mask.log_alpha().detach().to(at::kDouble).contiguous();
  return {values.data_ptr<double>(), values.data_ptr<double>() + values.numel()};
}

// The kept width a chunked structure (hidden dimensions, one layer's FFN neurons) may have:
// a multiple of `multiple` or its whole width.
std::int64_t removal_chunk(std::int64_t kept, std::int64_t multiple) {
  return kept % multiple != 0 ? kept % multiple : std::min(kept, multiple);
}
std::int64_t addition_chunk(std::int64_t kept, std::int64_t width, std::int64_t multiple) {
  return std::min(width, (kept / multiple + 1) * multiple) - kept;
}
std::int64_t rounded_width(std::int64_t kept, std::int64_t width, std::int64_t multiple) {
  const auto down = kept / multiple * multiple;
  const auto up = std::min(width, down + multiple);
  return kept - down < up - kept ? down : up;
}

// Units in order of importance (lowest log alpha first).
std::vector<std::int64_t> importance_order(const std::vector<double>& scores) {
  std::vector<std::int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return scores[a] < scores[b]; });
  return order;
}

enum class UnitKind { Hidden, Ffn, Head, Group, Attention, Mlp };

struct Candidate {
  double score;
  UnitKind kind;
  int layer;
  std::int64_t index;
};

// A selection being adjusted, with each layer's widths kept current.
class SelectionState {
 public:
  SelectionState(const Model& model, const VibLogAlpha& scores, const SelectionRules& rules)
      : model_(model), scores_(scores), rules_(rules) {
    const auto layers = model.layer_count();
    head_.resize(layers), group_.resize(layers), guarded_.resize(layers), ffn_order_.resize(layers);
    attention_.assign(layers, false), mlp_.assign(layers, false), ffn_kept_.assign(layers, 0), widths_.resize(layers);
    for (const auto& head : rules.protected_heads) guarded_[head.layer].insert(head.head);
    hidden_order_ = importance_order(scores.hidden);
    for (int l = 0; l < layers; ++l) {
      const auto& structure = model.layers[l];
      head_[l].assign(structure.query_heads, true);
      group_[l].assign(structure.kv_heads, true);
      attention_[l] = structure.has_attention();
      mlp_[l] = structure.ffn_width > 0;
      ffn_kept_[l] = structure.ffn_width;
      ffn_order_[l] = importance_order(scores.layers[l].ffn);
      refresh(l);
    }
    hidden_kept_ = model.config.hidden;
  }

  // Keeps what the masks keep: log alpha < 0, widths rounded.
  void start_from_masks() {
    const auto multiple = rules_.multiple_of;
    auto kept_count = [](const std::vector<double>& scores) {
      return static_cast<std::int64_t>(std::count_if(scores.begin(), scores.end(), [](double s) { return s < 0; }));
    };
    hidden_kept_ = std::max(min_hidden(), rounded_width(kept_count(scores_.hidden), model_.config.hidden, multiple));
    for (int l = 0; l < model_.layer_count(); ++l) {
      const auto& scores = scores_.layers[l];
      for (std::size_t h = 0; h < head_[l].size(); ++h) head_[l][h] = scores.heads[h] < 0 || guarded_head(l, h);
      for (std::size_t g = 0; g < group_[l].size(); ++g)
        group_[l][g] = scores.groups.empty() || scores.groups[g] < 0 || guarded_group(l, g);
      if (model_.layers[l].has_attention()) attention_[l] = scores.attention < 0 || !guarded_[l].empty();
      if (model_.layers[l].ffn_width > 0) {
        mlp_[l] = scores.mlp < 0;
        ffn_kept_[l] = rounded_width(kept_count(scores.ffn), model_.layers[l].ffn_width, multiple);
      }
      refresh(l);
    }
  }

  // Everything removable removed.
  void remove_all() {
    hidden_kept_ = min_hidden();
    for (int l = 0; l < model_.layer_count(); ++l) {
      for (std::size_t h = 0; h < head_[l].size(); ++h) head_[l][h] = guarded_head(l, h);
      for (std::size_t g = 0; g < group_[l].size(); ++g) group_[l][g] = guarded_group(l, g);
      attention_[l] = !guarded_[l].empty();
      mlp_[l] = false;
      ffn_kept_[l] = 0;
      refresh(l);
    }
  }

  double size() const {
    const auto hidden = static_cast<double>(hidden_kept_);
    double total = rules_.include_embeddings
                       ? embedding_parameter_count(model_.family.block, model_.config.vocab, model_.config.max_positions,
                                                   model_.config.tied_embeddings, hidden)
                       : 0.0;
    for (const auto& widths : widths_) total += layer_parameter_count(model_.family.block, model_.config.head_dim, hidden, widths);
    return total;
  }

  void remove_until_target() {
    std::priority_queue<Candidate, std::vector<Candidate>, decltype(&less_important)> queue(&less_important);
    for (const auto& candidate : candidates(/*removal=*/true)) queue.push(candidate);
    while (size() > static_cast<double>(rules_.target) && !queue.empty()) {
      const auto candidate = queue.top();
      queue.pop();
      if (!apply(candidate, /*removal=*/true)) continue;
      if (auto next = chunk_candidate(candidate.kind, candidate.layer, /*removal=*/true)) queue.push(*next);
    }
  }

  void add_while_fitting() {
    std::priority_queue<Candidate, std::vector<Candidate>, decltype(&more_important)> queue(&more_important);
    for (const auto& candidate : candidates(/*removal=*/false)) queue.push(candidate);
    while (!queue.empty()) {
      const auto candidate = queue.top();
      queue.pop();
      const auto saved = mutable_state();
      if (!apply(candidate, /*removal=*/false)) continue;
      const double after = size();
      // Size only grows from here, so a unit that does not fit now never will. A unit that
      // adds nothing by itself (a block without its heads, hidden dimensions of an empty
      // decoder) still goes back: what it holds may follow.
      if (after > static_cast<double>(rules_.target)) {
        restore(saved);
        continue;
      }
      if (auto next = chunk_candidate(candidate.kind, candidate.layer, /*removal=*/false)) queue.push(*next);
      // A group or block back in place lets its heads come back.
      if (candidate.kind == UnitKind::Group || candidate.kind == UnitKind::Attention)
        for (const auto& unit : candidates(/*removal=*/false))
          if (unit.kind == UnitKind::Head && unit.layer == candidate.layer) queue.push(unit);
      if (candidate.kind == UnitKind::Attention)
        for (const auto& unit : candidates(/*removal=*/false))
          if (unit.kind == UnitKind::Group && unit.layer == candidate.layer) queue.push(unit);
      if (candidate.kind == UnitKind::Mlp)
        if (auto next = chunk_candidate(UnitKind::Ffn, candidate.layer, false)) queue.push(*next);
    }
  }

  VibKeep keep() const {
    VibKeep keep;
    keep.hidden.assign(model_.config.hidden, false);
    for (std::int64_t i = 0; i < hidden_kept_; ++i) keep.hidden[hidden_order_[i]] = true;
    for (int l = 0; l < model_.layer_count(); ++l) {
      const auto& structure = model_.layers[l];
      LayerKeep layer;
      layer.heads.assign(structure.query_heads, false);
      layer.groups.assign(structure.kv_heads, false);
      for (std::int64_t h = 0; h < structure.query_heads; ++h) {
        layer.heads[h] = head_kept(l, h);
        if (layer.heads[h]) layer.groups[structure.kv_head_of(h)] = true;
      }
      layer.attention = widths_[l].attention > 0;
      layer.ffn.assign(structure.ffn_width, false);
      if (mlp_[l])
        for (std::int64_t i = 0; i < ffn_kept_[l]; ++i) layer.ffn[ffn_order_[l][i]] = true;
      layer.mlp = widths_[l].mlp > 0;
      keep.layers.push_back(std::move(layer));
    }
    return keep;
  }

 private:
  static bool less_important(const Candidate& a, const Candidate& b) { return a.score < b.score; }  // max-heap
  static bool more_important(const Candidate& a, const Candidate& b) { return a.score > b.score; }  // min-heap

  std::int64_t min_hidden() const { return std::min(rules_.multiple_of, model_.config.hidden); }
  bool guarded_head(int l, std::size_t h) const { return guarded_[l].count(static_cast<int>(h)) > 0; }
  bool guarded_group(int l, std::size_t g) const {
    for (int h : guarded_[l])
      if (model_.layers[l].kv_head_of(h) == static_cast<std::int64_t>(g)) return true;
    return false;
  }
  bool head_kept(int l, std::int64_t h) const {
    return attention_[l] && group_[l][model_.layers[l].kv_head_of(h)] && head_[l][h];
  }

  void refresh(int l) {
    const auto& structure = model_.layers[l];
    LayerWidths<double> widths{0, 0, 0, 0, 0};
    std::vector<bool> kv_read(structure.kv_heads, false);
    for (std::int64_t h = 0; h < structure.query_heads; ++h)
      if (head_kept(l, h)) {
        widths.query_heads += 1;
        kv_read[structure.kv_head_of(h)] = true;
      }
    widths.kv_heads = static_cast<double>(std::count(kv_read.begin(), kv_read.end(), true));
    widths.attention = widths.query_heads > 0 ? 1 : 0;
    if (mlp_[l] && ffn_kept_[l] > 0) {
      widths.ffn = static_cast<double>(ffn_kept_[l]);
      widths.mlp = 1;
    }
    widths_[l] = widths;
  }

  double chunk_score(const std::vector<double>& scores, const std::vector<std::int64_t>& order, std::int64_t first,
                     std::int64_t count) const {
    double sum = 0;
    for (std::int64_t i = first; i < first + count; ++i) sum += scores[order[i]];
    return sum / static_cast<double>(count);
  }

  // The next chunk of a hidden or FFN structure to remove or add back, if any.
  std::optional<Candidate> chunk_candidate(UnitKind kind, int l, bool removal) const {
    const auto multiple = rules_.multiple_of;
    if (kind == UnitKind::Hidden) {
      const auto width = model_.config.hidden;
      if (removal) {
        const auto size = removal_chunk(hidden_kept_, multiple);
        if (hidden_kept_ - size < min_hidden()) return std::nullopt;
        return Candidate{chunk_score(scores_.hidden, hidden_order_, hidden_kept_ - size, size), kind, -1, 0};
      }
      if (hidden_kept_ == width) return std::nullopt;
      return Candidate{chunk_score(scores_.hidden, hidden_order_, hidden_kept_, addition_chunk(hidden_kept_, width, multiple)),
                       kind, -1, 0};
    }
    if (kind != UnitKind::Ffn || !mlp_[l]) return std::nullopt;
    const auto width = model_.layers[l].ffn_width;
    const auto& scores = scores_.layers[l].ffn;
    if (removal) {
      if (ffn_kept_[l] == 0) return std::nullopt;
      const auto size = removal_chunk(ffn_kept_[l], multiple);
      return Candidate{chunk_score(scores, ffn_order_[l], ffn_kept_[l] - size, size), kind, l, 0};
    }
    if (ffn_kept_[l] == width) return std::nullopt;
    return Candidate{chunk_score(scores, ffn_order_[l], ffn_kept_[l], addition_chunk(ffn_kept_[l], width, multiple)), kind, l, 0};
  }

  // Units that may be removed (kept, not protected) or added back (removed).
  std::vector<Candidate> candidates(bool removal) const {
    std::vector<Candidate> all;
    if (auto hidden = chunk_candidate(UnitKind::Hidden, -1, removal)) all.push_back(*hidden);
    for (int l = 0; l < model_.layer_count(); ++l) {
      const auto& scores = scores_.layers[l];
      const auto& structure = model_.layers[l];
      if (auto ffn = chunk_candidate(UnitKind::Ffn, l, removal)) all.push_back(*ffn);
      if (structure.ffn_width > 0 && mlp_[l] == removal) all.push_back({scores.mlp, UnitKind::Mlp, l, 0});
      if (!structure.has_attention()) continue;
      if (guarded_[l].empty() && attention_[l] == removal) all.push_back({scores.attention, UnitKind::Attention, l, 0});
      if (!attention_[l]) continue;
      if (!scores.groups.empty())
        for (std::int64_t g = 0; g < structure.kv_heads; ++g)
          if (group_[l][g] == removal && !guarded_group(l, g)) all.push_back({scores.groups[g], UnitKind::Group, l, g});
      for (std::int64_t h = 0; h < structure.query_heads; ++h)
        if (head_[l][h] == removal && !guarded_head(l, h) && group_[l][structure.kv_head_of(h)])
          all.push_back({scores.heads[h], UnitKind::Head, l, h});
    }
    return all;
  }

  // Removes or adds back a unit; false when that changes nothing any more.
  bool apply(const Candidate& candidate, bool removal) {
    const int l = candidate.layer;
    switch (candidate.kind) {
      case UnitKind::Hidden:
        hidden_kept_ += removal ? -removal_chunk(hidden_kept_, rules_.multiple_of)
                                : addition_chunk(hidden_kept_, model_.config.hidden, rules_.multiple_of);
        return true;
      case UnitKind::Ffn:
        if (!mlp_[l]) return false;
        ffn_kept_[l] += removal ? -removal_chunk(ffn_kept_[l], rules_.multiple_of)
                                : addition_chunk(ffn_kept_[l], model_.layers[l].ffn_width, rules_.multiple_of);
        break;
      case UnitKind::Mlp:
        if (mlp_[l] != removal) return false;
        mlp_[l] = !removal;
        break;
      case UnitKind::Attention:
        if (attention_[l] != removal) return false;
        attention_[l] = !removal;
        break;
      case UnitKind::Group:
        if (!attention_[l] || group_[l][candidate.index] != removal) return false;
        group_[l][candidate.index] = !removal;
        break;
      case UnitKind::Head:
        if (!attention_[l] || !group_[l][model_.layers[l].kv_head_of(candidate.index)] ||
            head_[l][candidate.index] != removal)
          return false;
        head_[l][candidate.index] = !removal;
        break;
    }
    refresh(l);
    return true;
  }

  // What apply() changes, to undo it.
  struct Saved {
    std::vector<std::vector<bool>> head, group;
    std::vector<bool> attention, mlp;
    std::vector<std::int64_t> ffn_kept;
    std::int64_t hidden_kept;
    std::vector<LayerWidths<double>> widths;
  };
  Saved mutable_state() const { return {head_, group_, attention_, mlp_, ffn_kept_, hidden_kept_, widths_}; }
  void restore(const Saved& saved) {
    head_ = saved.head, group_ = saved.group, attention_ = saved.attention, mlp_ = saved.mlp;
    ffn_kept_ = saved.ffn_kept, hidden_kept_ = saved.hidden_kept, widths_ = saved.widths;
  }

  const Model& model_;
  const VibLogAlpha& scores_;
  const SelectionRules& rules_;
  std::vector<std::vector<bool>> head_, group_;
  std::vector<std::set<int>> guarded_;
  std::vector<bool> attention_, mlp_;
  std::vector<std::vector<std::int64_t>> ffn_order_;
  std::vector<std::int64_t> ffn_kept_;
  std::vector<std::int64_t> hidden_order_;
  std::int64_t hidden_kept_ = 0;
  std::vector<LayerWidths<double>> widths_;
};

std::string list_heads(const std::vector<HeadId>& heads) {
  std::string text;
  for (std::size_t i = 0; i < heads.size() && i < 8; ++i) text += (i ? ", " : "") + heads[i].str();
  if (heads.size() > 8) text += ", ...";
  return text;
}

}  // namespace

VibLogAlpha log_alphas(const VibMasks& masks) {
  VibLogAlpha scores;
  scores.hidden = values_of(masks.hidden);
  for (const auto& layer : masks.layers) {
    LayerLogAlpha entry{values_of(layer.heads), values_of(layer.groups), values_of(layer.ffn), 0.0, 0.0};
    if (!layer.attention.empty()) entry.attention = values_of(layer.attention).front();
    if (!layer.mlp.empty()) entry.mlp = values_of(layer.mlp).front();
    scores.layers.push_back(std::move(entry));
  }
  return scores;
}

std::int64_t counted_parameters(const Model& model, const VibKeep& selected, bool include_embeddings) {
  const auto keep = consistent_keep(model, selected);
  const auto hidden = static_cast<double>(std::count(keep.hidden.begin(), keep.hidden.end(), true));
  double total = include_embeddings ? embedding_parameter_count(model.family.block, model.config.vocab,
                                                                model.config.max_positions, model.config.tied_embeddings, hidden)
                                    : 0.0;
  for (int l = 0; l < model.layer_count(); ++l) {
    const auto& layer = keep.layers[l];
    LayerWidths<double> widths{0, 0, 0, 0, 0};
    widths.query_heads = static_cast<double>(std::count(layer.heads.begin(), layer.heads.end(), true));
    widths.kv_heads = static_cast<double>(std::count(layer.groups.begin(), layer.groups.end(), true));
    widths.attention = layer.attention && widths.query_heads > 0 ? 1 : 0;
    const auto ffn = static_cast<double>(std::count(layer.ffn.begin(), layer.ffn.end(), true));
    if (layer.mlp && ffn > 0) widths.ffn = ffn, widths.mlp = 1;
    total += layer_parameter_count(model.family.block, model.config.head_dim, hidden, widths);
  }
  return std::llround(total);
}

std::int64_t fewest_counted_parameters(const Model& model, const SelectionRules& rules) {
  VibLogAlpha zeros;
  zeros.hidden.assign(model.config.hidden, 0.0);
  for (const auto& structure : model.layers)
    zeros.layers.push_back({std::vector<double>(structure.query_heads, 0.0), std::vector<double>(structure.kv_heads, 0.0),
                            std::vector<double>(structure.ffn_width, 0.0), 0.0, 0.0});
  SelectionState state(model, zeros, rules);
  state.remove_all();
  return std::llround(state.size());
}

VibKeep select_units(const Model& model, const VibLogAlpha& scores, const SelectionRules& rules, const std::string& origin) {
  SelectionState state(model, scores, rules);
  state.start_from_masks();
  state.remove_until_target();
  if (state.size() > static_cast<double>(rules.target)) {
    std::string why = "hidden size at least " + std::to_string(std::min(rules.multiple_of, model.config.hidden));
    if (!rules.protected_heads.empty())
      why += ", " + std::to_string(rules.protected_heads.size()) + " protected heads (" + list_heads(rules.protected_heads) +
             ") with their kv heads and attention blocks";
    throw InputError(origin + ": vib-prune cannot reach " + std::to_string(rules.target) + " counted parameters (" +
                     std::to_string(std::llround(state.size())) + " at best: " + why + ")");
  }
  state.add_while_fitting();
  return state.keep();
}

}  // namespace lathe
