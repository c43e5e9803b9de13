#include "passes/pass_registry.h"

#include <algorithm>

// One header per pass in pass_registry.def, for its info function.
#include "passes/clipped_softmax_pass.h"
#include "passes/eval_pass.h"
#include "passes/finetune_pass.h"
#include "passes/gated_attention_pass.h"
#include "passes/head_importance_pass.h"
#include "passes/ffn_prune_pass.h"
#include "passes/head_prune_pass.h"
#include "passes/outlier_stats_pass.h"
#include "passes/quantize_pass.h"
#include "passes/retrieval_heads_pass.h"
#include "passes/smooth_pass.h"
#include "passes/vib_prune_pass.h"

namespace lathe {

bool PreservedAnalyses::preserved(const std::string& analysis) const {
  return all_ || std::find(kept_.begin(), kept_.end(), analysis) != kept_.end();
}

const char* pass_kind_name(PassKind kind) {
  switch (kind) {
    case PassKind::Analysis:
      return "analysis";
    case PassKind::Transform:
      return "transform";
    case PassKind::Evaluation:
      return "evaluation";
  }
  return "unknown";
}

const ParamSpec* PassInfo::find_param(const std::string& param) const {
  for (const ParamSpec& spec : params) {
    if (spec.name == param) return &spec;
  }
  return nullptr;
}

const std::vector<PassInfo>& pass_registry() {
  static const std::vector<PassInfo> registry = {
#define LATHE_PASS(info_function) info_function(),
#include "passes/pass_registry.def"
#undef LATHE_PASS
  };
  return registry;
}

const PassInfo* find_pass(const std::string& name) {
  for (const PassInfo& info : pass_registry()) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

std::string pass_names() {
  std::string names;
  for (const PassInfo& info : pass_registry()) {
    if (!names.empty()) names += ", ";
    names += info.name;
  }
  return names;
}

}  // namespace lathe
