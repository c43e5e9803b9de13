#include "core/head_removal.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>

#include "core/model.h"
#include "core/residual_bias.h"
#include "core/structured_cut.h"

namespace lathe {
namespace {

at::Tensor head_rows(std::int64_t head_dim, const std::vector<std::int64_t>& heads) {
  std::vector<std::int64_t> rows;
  for (auto head : heads)
    for (std::int64_t i = 0; i < head_dim; ++i) rows.push_back(head * head_dim + i);
  return at::tensor(rows, at::kLong);
}

// Keeps per-layer lists in the annotations aligned with the heads that stay.
void remap_annotations(Model& model, int layer, const std::vector<std::int64_t>& kept) {
  if (!model.annotations.is_object()) model.annotations = nlohmann::json::object();
  auto& heads = model.annotations["heads"];
  if (!heads.is_object()) heads = nlohmann::json::object();
  std::map<std::int64_t, std::int64_t> new_index;
  for (std::size_t i = 0; i < kept.size(); ++i) new_index[kept[i]] = static_cast<std::int64_t>(i);
  if (heads.contains("scores"))
    for (auto& [kind, table] : heads["scores"].items())
      if (table.is_array() && layer < static_cast<int>(table.size()) && table[layer].is_array()) {
        auto row = nlohmann::json::array();
        for (auto head : kept)
          if (head < static_cast<std::int64_t>(table[layer].size())) row.push_back(table[layer][head]);
        table[layer] = row;
      }
  for (const char* role : {"retrieval", "protected"}) {
    if (!heads.contains(role)) continue;
    auto list = nlohmann::json::array();
    for (const auto& entry : heads[role]) {
      if (entry[0].get<int>() != layer) {
        list.push_back(entry);
      } else if (auto found = new_index.find(entry[1].get<std::int64_t>()); found != new_index.end()) {
        list.push_back({layer, found->second});
      }
    }
    heads[role] = list;
  }
  // Which original head each remaining head is, through any number of removals.
  auto& origin = heads["origin"];
  if (!origin.is_array()) origin = nlohmann::json::array();
  while (static_cast<int>(origin.size()) <= layer) origin.push_back(nullptr);
  // Null: the layer still has its original heads.
  const auto before = origin[layer].is_array() ? origin[layer].get<std::vector<std::int64_t>>() : std::vector<std::int64_t>{};
  auto after = nlohmann::json::array();
  for (auto head : kept) after.push_back(before.empty() ? head : before[head]);
  origin[layer] = after;
}

}  // namespace

std::int64_t attention_parameters(const Model& model, std::int64_t query_heads, std::int64_t kv_heads) {
  if (query_heads == 0) return 0;
  const auto hidden = model.config.hidden, d = model.config.head_dim;
  std::int64_t count = 2 * query_heads * d * hidden + 2 * kv_heads * d * hidden;  // q, o; k, v
  if (model.family.block.attention_bias) count += query_heads * d + 2 * kv_heads * d + hidden;
  count += hidden * (model.family.block.norm_bias ? 2 : 1);  // the attention norm
  return count;
}

void remove_heads(Model& model, const std::vector<HeadId>& heads) {
  // A gate reads its head's slice of the layer input, hidden / Hq wide: fewer heads would
  // change every slice.
  if (model.attention.gated && !heads.empty())
    throw std::invalid_argument("heads of a gated-attention model cannot be removed");
  std::map<int, std::set<std::int64_t>> by_layer;
  for (const auto& head : heads) {
    if (head.layer < 0 || head.layer >= model.layer_count() || head.head < 0 ||
        head.head >= model.layers[head.layer].query_heads)
      throw std::invalid_argument("no head " + head.str() + " to remove");
    by_layer[head.layer].insert(head.head);
  }
  const auto d = model.config.head_dim;
  for (const auto& [layer, removed] : by_layer) {
    auto& structure = model.layers[layer];
    std::vector<std::int64_t> kept;
    for (std::int64_t h = 0; h < structure.query_heads; ++h)
      if (!removed.count(h)) kept.push_back(h);
    remap_annotations(model, layer, kept);
    if (kept.empty()) {
      if (model.has_layer_tensor(layer, "attn.o.bias"))
        fold_into_earlier_bias(model, layer, ResidualBranch::Attention, model.layer_tensor(layer, "attn.o.bias"));
      erase_with_prefix(model, layer_name(layer, "attn"));
      structure.query_heads = structure.kv_heads = 0;
      structure.kv_of_query.clear();
      continue;
    }
    std::vector<std::int64_t> kv_kept;  // kv heads still read, in order
    for (auto h : kept) kv_kept.push_back(structure.kv_head_of(h));
    std::sort(kv_kept.begin(), kv_kept.end());
    kv_kept.erase(std::unique(kv_kept.begin(), kv_kept.end()), kv_kept.end());
    std::vector<std::int64_t> kv_map;
    for (auto h : kept)
      kv_map.push_back(std::lower_bound(kv_kept.begin(), kv_kept.end(), structure.kv_head_of(h)) - kv_kept.begin());

    const auto q_rows = head_rows(d, kept), kv_rows = head_rows(d, kv_kept);
    select_along(model, layer_name(layer, "attn.q.weight"), q_rows, 0);
    select_along(model, layer_name(layer, "attn.q.bias"), q_rows, 0);
    select_along(model, layer_name(layer, "attn.o.weight"), q_rows, 1);
    for (const char* name : {"attn.k.weight", "attn.k.bias", "attn.v.weight", "attn.v.bias"})
      select_along(model, layer_name(layer, name), kv_rows, 0);

    structure.query_heads = static_cast<std::int64_t>(kept.size());
    structure.kv_heads = static_cast<std::int64_t>(kv_kept.size());
    structure.kv_of_query = kv_map;
    bool regular = structure.query_heads % structure.kv_heads == 0;
    for (std::size_t i = 0; regular && i < kv_map.size(); ++i)
      regular = kv_map[i] == static_cast<std::int64_t>(i) / (structure.query_heads / structure.kv_heads);
    if (regular) structure.kv_of_query.clear();
  }
}

}  // namespace lathe
