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
// Whether an analysis has marked heads with `role` (possibly none of them).
bool has_head_role(const Model& model, const std::string& role);
std::vector<HeadId> heads_with_role(const Model& model, const std::string& role);

// Marks heads protected (adds to those already protected).
void protect_heads(Model& model, const std::vector<HeadId>& heads);
std::vector<HeadId> protected_heads(const Model& model);

// What every transform calls before it removes heads: an InputError naming `origin` (the
// recipe entry of the transform) and the first protected head among `removed`.
void check_not_protected(const Model& model, const std::vector<HeadId>& removed, const std::string& origin);

// The heads a recipe names: those an earlier analysis marked with each of `roles`, and `heads`.
// InputError naming `origin` and `what` (the parameter) for a role no analysis has marked yet
// or a head the model does not have.
std::vector<HeadId> resolve_heads(const Model& model, const std::vector<std::string>& roles,
                                  const std::vector<HeadId>& heads, const std::string& origin, const std::string& what);
// The same check of `heads` alone.
void check_heads_exist(const Model& model, const std::vector<HeadId>& heads, const std::string& origin,
                       const std::string& what);

}  // namespace lathe
