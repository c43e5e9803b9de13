#pragma once

// Per-head facts that passes leave in the IR for later passes and for the writers: scores
// (retrieval, importance), roles (retrieval heads) and protection. Stored in
// Model::annotations["heads"], so both writers carry them in their metadata and lathe reads
// them back.
//
//   "heads": {
//     "scores":    {"retrieval": [[layer 0 scores per query head], ...]},
//     "retrieval": [[layer, head], ...],
//     "protected": [[layer, head], ...]
//   }

#include <string>
#include <vector>

namespace lathe {

class Model;

struct HeadId {
  int layer = 0;
  int head = 0;
  bool operator==(const HeadId&) const = default;
  auto operator<=>(const HeadId&) const = default;
  std::string str() const { return std::to_string(layer) + "." + std::to_string(head); }
};

void set_head_scores(Model& model, const std::string& kind, const std::vector<std::vector<double>>& scores);
// Empty when the model has no scores of that kind.
std::vector<std::vector<double>> head_scores(const Model& model, const std::string& kind);

void set_head_role(Model& model, const std::string& role, std::vector<HeadId> heads);
std::vector<HeadId> heads_with_role(const Model& model, const std::string& role);

// Marks heads protected (adds to those already protected).
void protect_heads(Model& model, const std::vector<HeadId>& heads);
std::vector<HeadId> protected_heads(const Model& model);

// What every transform calls before it removes heads: an InputError naming `origin` (the
// recipe entry of the transform) and the first protected head among `removed`.
void check_not_protected(const Model& model, const std::vector<HeadId>& removed, const std::string& origin);

// Resolves a `protect` value of a recipe: "retrieval" (the heads the retrieval-heads analysis
// marked) or a comma-separated list of layer.head; InputError naming `origin` otherwise.
std::vector<HeadId> parse_protect(const Model& model, const std::string& value, const std::string& origin);

}  // namespace lathe
