#include "datasets/data_sets.h"

#include <algorithm>
#include <filesystem>

#include "core/model.h"
#include "formats/dataset.h"
#include "formats/tokenizer.h"
#include "support/errors.h"

namespace lathe {

DataSets::DataSets(const std::map<std::string, DataSpec>& specs, const Model& model) : specs_(specs), model_(model) {}
DataSets::~DataSets() = default;

const DataSpec& DataSets::spec(const std::string& name, const SourceLocation& asked_from) const {
  auto found = specs_.find(name);
  if (found != specs_.end()) return found->second;
  std::string names;
  for (const auto& [known, spec] : specs_) names += (names.empty() ? "" : ", ") + known;
  throw InputError(asked_from.str() + ": no data entry \"" + name + "\" in the recipe" +
                   (names.empty() ? std::string("; the recipe has no data section") : "; entries: " + names));
}

std::string DataSets::calibration_entry(const std::string& requested) const {
  if (!requested.empty()) return requested;
  for (const char* candidate : {"calibration", "eval"})
    if (has(candidate)) return candidate;
  return {};
}

std::string DataSets::require_calibration_entry(const std::string& requested, const SourceLocation& asked_from,
                                                const std::string& purpose) const {
  auto entry = calibration_entry(requested);
  if (entry.empty()) throw InputError(asked_from.str() + ": " + purpose + " needs data: add a calibration or eval entry to data");
  return entry;
}

namespace {

// Data files are read whole or mapped: only a regular file will do (a FIFO would hang the run,
// /dev/zero never end).
void check_data_file(const std::string& name, const DataSpec& spec) {
  std::error_code ec;
  const auto status = std::filesystem::status(spec.path, ec);
  const char* problem = !std::filesystem::exists(status)      ? "no such file"
                        : std::filesystem::is_directory(status) ? "is a folder, expected a data file"
                        : !std::filesystem::is_regular_file(status)
                            ? "is not a regular file (a FIFO, device or socket), expected a data file"
                            : nullptr;
  if (problem != nullptr)
    throw InputError(spec.where.str() + ": data." + name + ": " + spec.path.string() + ": " + problem);
}

}  // namespace

void DataSets::check_files() const {
  for (const auto& [name, spec] : specs_) check_data_file(name, spec);
}

const Tokenizer& DataSets::tokenizer(const DataSpec& spec) {
  if (!tokenizer_) {
    if (model_.source.tokenizer.empty())
      throw InputError(spec.where.str() + ": text data needs a tokenizer (tokenizer.model or vocab.json) beside "
                       "the model or its config.json; none was found for " + model_.source.path.string());
    tokenizer_ = load_tokenizer(model_.source.tokenizer);
  }
  return *tokenizer_;
}

const std::vector<std::vector<std::int32_t>>& DataSets::sequences(const std::string& name,
                                                                  const SourceLocation& asked_from) {
  if (auto found = loaded_.find(name); found != loaded_.end()) return found->second;
  const auto& entry = spec(name, asked_from);
  check_data_file(name, entry);
  std::vector<std::vector<std::int32_t>> sequences;
  if (entry.format == DataFormat::Tokens) {
    sequences.push_back(read_token_file(entry.path, entry.token_type, model_.config.vocab));
  } else {
    TextEncoding encoding;
    encoding.split = entry.split;
    encoding.bos_id = entry.bos ? model_.config.bos_id : -1;
    encoding.eos_id = entry.eos ? model_.config.eos_id : -1;
    if ((entry.bos && encoding.bos_id < 0) || (entry.eos && encoding.eos_id < 0))
      throw InputError(entry.where.str() + ": data." + name + " asks for a BOS/EOS id the model's config does not give");
    sequences = encode_text_file(entry.path, tokenizer(entry), encoding);
    for (const auto& sequence : sequences)
      for (auto id : sequence)
        if (id < 0 || id >= model_.config.vocab)
          throw InputError(entry.path.string(), "the tokenizer produced id " + std::to_string(id) +
                                                    ", outside the model's vocabulary of " + std::to_string(model_.config.vocab));
  }
  return loaded_.emplace(name, std::move(sequences)).first->second;
}

std::vector<EvalBatch> DataSets::batches(const std::string& name, const SourceLocation& asked_from,
                                         std::int64_t batch_size, std::int64_t max_tokens) {
  const auto& entry = spec(name, asked_from);
  const auto& data = sequences(name, asked_from);
  BatchingOptions options;
  options.window = entry.seq_len > 0 ? std::min(entry.seq_len, model_.config.max_positions) : model_.config.max_positions;
  if (entry.seq_len > model_.config.max_positions)
    throw InputError(entry.where.str() + ": data." + name + ".seq_len " + std::to_string(entry.seq_len) +
                     " exceeds the model's " + std::to_string(model_.config.max_positions) + " positions");
  options.batch_size = batch_size > 0 ? batch_size : entry.batch_size;
  options.max_tokens = max_tokens > 0 ? max_tokens : entry.max_tokens;
  auto batches = make_eval_batches(data, entry.pack, options);
  if (batches.empty()) throw InputError(entry.path.string(), "holds no tokens to evaluate on");
  return batches;
}

}  // namespace lathe
