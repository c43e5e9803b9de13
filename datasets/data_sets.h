#pragma once

// The recipe's named data entries, read and tokenized for the model once and shared by the
// passes that use them.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "datasets/data_spec.h"
#include "executor/evaluation.h"
#include "support/source_location.h"

namespace lathe {

class Model;
class Tokenizer;

class DataSets {
 public:
  DataSets(const std::map<std::string, DataSpec>& specs, const Model& model);
  ~DataSets();

  // InputError naming the recipe location when there is no entry `name`.
  const DataSpec& spec(const std::string& name, const SourceLocation& asked_from) const;
  const std::vector<std::vector<std::int32_t>>& sequences(const std::string& name, const SourceLocation& asked_from);
  // Evaluation batches of entry `name`; overrides of 0 keep the entry's own settings.
  std::vector<EvalBatch> batches(const std::string& name, const SourceLocation& asked_from,
                                 std::int64_t batch_size = 0, std::int64_t max_tokens = 0);
  bool has(const std::string& name) const { return specs_.count(name) != 0; }
  // The entry a calibrating pass uses: `requested`, else calibration, else eval; "" when the
  // recipe has neither.
  std::string calibration_entry(const std::string& requested) const;
  // The same, but an InputError at `asked_from` saying that `purpose` needs data when there is none.
  std::string require_calibration_entry(const std::string& requested, const SourceLocation& asked_from,
                                        const std::string& purpose) const;
  // Checks that every entry's file exists, without reading it.
  void check_files() const;

 private:
  const Tokenizer& tokenizer(const DataSpec& spec);

  std::map<std::string, DataSpec> specs_;
  const Model& model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::map<std::string, std::vector<std::vector<std::int32_t>>> loaded_;
};

}  // namespace lathe
