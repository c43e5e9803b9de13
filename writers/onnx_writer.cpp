#include "writers/onnx_writer.h"

#include <ATen/ATen.h>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <numbers>
#include <ostream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/model.h"
#include "executor/executor.h"
#include "support/allocator.h"
#include "support/atomic_file.h"
#include "support/errors.h"

namespace lathe {
namespace {

// IR version 8 is the newest that onnx 1.12's checker accepts; onnxruntime reads it too.
constexpr std::int64_t kIrVersion = 8;
constexpr std::int64_t kSupportedOpset = 17;
// With external data, initializers at least this large move to the data file; shape
// constants and the like stay inline so the graph stays readable on its own.
constexpr std::size_t kMinExternalBytes = 1024;
constexpr std::uint64_t kExternalAlignment = 4096;

// Where initializers of a large model go as they are made: one external data file, each
// tensor at a 4 KiB-aligned offset, so the graph never holds the weights in memory.
struct ExternalData {
  AtomicFile* file = nullptr;
  std::string location;  // file name relative to the model file
  std::uint64_t end = 0;

  // Writes `values` converted to `type` a slice of rows at a time, so a large float16 head or
  // a transposed view never exists whole in float32.
  void place(onnx::TensorProto& proto, const at::Tensor& values, at::ScalarType type) {
    const auto element = static_cast<std::uint64_t>(c10::elementSize(type));
    const auto bytes = static_cast<std::uint64_t>(values.numel()) * element;
    const auto offset = (end + kExternalAlignment - 1) / kExternalAlignment * kExternalAlignment;
    static const std::string padding(kExternalAlignment, '\0');
    auto* out = &file->stream();
    out->write(padding.data(), static_cast<std::streamsize>(offset - end));
    const auto rows = values.dim() == 0 ? 1 : values.size(0);
    const auto row_bytes = std::max<std::uint64_t>(1, bytes / std::max<std::int64_t>(1, rows));
    const auto rows_per_slice = std::max<std::int64_t>(1, static_cast<std::int64_t>((16u << 20) / row_bytes));
    for (std::int64_t first = 0; first < rows; first += rows_per_slice) {
      const auto slice = (values.dim() == 0 ? values : values.narrow(0, first, std::min(rows_per_slice, rows - first)))
                             .to(type)
                             .contiguous();
      out->write(static_cast<const char*>(slice.data_ptr()), static_cast<std::streamsize>(slice.nbytes()));
    }
    if (!*out) file->check_written();  // a full disk stops the export here, not after the last tensor
    end = offset + bytes;
    proto.set_data_location(onnx::TensorProto::EXTERNAL);
    auto add_entry = [&](const std::string& key, const std::string& value) {
      auto& entry = *proto.add_external_data();
      entry.set_key(key);
      entry.set_value(value);
    };
    add_entry("location", location);
    add_entry("offset", std::to_string(offset));
    add_entry("length", std::to_string(bytes));
  }
};

// Appends nodes and initializers to an ONNX graph. Every op method returns the name of the
// value it produces; names are the current scope plus the op, made unique with a suffix.
class GraphBuilder {
 public:
  GraphBuilder(onnx::GraphProto& graph, ExternalData* external) : graph_(graph), external_(external) {}

  // Prefix for the names of the nodes and values made next, e.g. "layers.3.attn".
  void set_scope(std::string scope) { scope_ = std::move(scope); }

  std::string initializer(const std::string& name, const at::Tensor& tensor, const std::string& doc = {}) {
    auto& proto = *graph_.add_initializer();
    proto.set_name(name);
    if (!doc.empty()) proto.set_doc_string(doc);
    const auto values = tensor.detach();
    for (auto size : values.sizes()) proto.add_dims(size);
    auto type = values.scalar_type();
    if (type == at::kLong) {
      proto.set_data_type(onnx::TensorProto::INT64);
    } else if (type == at::kChar) {
      proto.set_data_type(onnx::TensorProto::INT8);
    } else if (type == at::kByte) {
      proto.set_data_type(onnx::TensorProto::UINT8);
    } else {
      type = at::kFloat;
      proto.set_data_type(onnx::TensorProto::FLOAT);
    }
    const auto bytes = static_cast<std::uint64_t>(values.numel()) * c10::elementSize(type);
    if (external_ != nullptr && bytes >= kMinExternalBytes) {
      external_->place(proto, values, type);
    } else {
      const auto contiguous = values.to(type).contiguous();
      proto.set_raw_data(contiguous.data_ptr(), contiguous.nbytes());
    }
    return name;
  }

  // Constants are initializers shared by value, named after their contents.
  std::string int64s(const std::vector<std::int64_t>& values) {
    std::string key = "const_i64";
    for (auto value : values) key.append("_").append(std::to_string(value));
    return shared_constant(key, [&] { return at::tensor(values, at::kLong); });
  }
  std::string int64_scalar(std::int64_t value) {
    return shared_constant("const_i64_scalar_" + std::to_string(value),
                           [&] { return at::scalar_tensor(value, at::kLong); });
  }
  std::string float_scalar(float value) {
    char digits[32];
    std::snprintf(digits, sizeof digits, "%.9g", value);  // round-trips every float
    return shared_constant(std::string("const_f32_") + digits, [&] { return at::scalar_tensor(value, at::kFloat); });
  }

  std::string matmul(const std::string& a, const std::string& b) { return output(node("MatMul", {a, b})); }
  std::string add(const std::string& a, const std::string& b) { return output(node("Add", {a, b})); }
  std::string sub(const std::string& a, const std::string& b) { return output(node("Sub", {a, b})); }
  std::string mul(const std::string& a, const std::string& b) { return output(node("Mul", {a, b})); }
  std::string div(const std::string& a, const std::string& b) { return output(node("Div", {a, b})); }
  std::string pow(const std::string& a, const std::string& b) { return output(node("Pow", {a, b})); }
  std::string sqrt(const std::string& x) { return output(node("Sqrt", {x})); }
  std::string sigmoid(const std::string& x) { return output(node("Sigmoid", {x})); }
  std::string tanh(const std::string& x) { return output(node("Tanh", {x})); }
  std::string erf(const std::string& x) { return output(node("Erf", {x})); }
  std::string relu(const std::string& x) { return output(node("Relu", {x})); }

  std::string quantize_linear(const std::string& x, const std::string& scale, const std::string& zero_point) {
    return output(node("QuantizeLinear", {x, scale, zero_point}));
  }
  std::string dequantize_linear(const std::string& x, const std::string& scale, const std::string& zero_point,
                                std::int64_t axis = 1) {
    auto& n = node("DequantizeLinear", {x, scale, zero_point});
    set_int(n, "axis", axis);
    return output(n);
  }
  // (y uint8, y_scale, y_zero_point)
  std::vector<std::string> dynamic_quantize_linear(const std::string& x) {
    auto& n = node("DynamicQuantizeLinear", {x}, 3);
    return {n.output().begin(), n.output().end()};
  }
  std::string matmul_integer(const std::string& a, const std::string& b, const std::string& a_zero_point) {
    return output(node("MatMulInteger", {a, b, a_zero_point}));
  }
  std::string cast_to_float(const std::string& x) {
    auto& n = node("Cast", {x});
    set_int(n, "to", onnx::TensorProto::FLOAT);
    return output(n);
  }

  std::string gather(const std::string& data, const std::string& indices, std::int64_t axis = 0) {
    auto& n = node("Gather", {data, indices});
    set_int(n, "axis", axis);
    return output(n);
  }
  std::string unsqueeze_last(const std::string& x) { return output(node("Unsqueeze", {x, int64s({-1})})); }
  std::string reshape(const std::string& x, const std::vector<std::int64_t>& shape) {
    return output(node("Reshape", {x, int64s(shape)}));
  }
  std::string transpose(const std::string& x, const std::vector<std::int64_t>& perm) {
    auto& n = node("Transpose", {x});
    set_ints(n, "perm", perm);
    return output(n);
  }
  std::string concat(const std::vector<std::string>& inputs, std::int64_t axis) {
    auto& n = node("Concat", inputs);
    set_int(n, "axis", axis);
    return output(n);
  }
  // Equal parts along `axis`.
  std::vector<std::string> split(const std::string& x, std::int64_t axis, int parts) {
    auto& n = node("Split", {x}, parts);
    set_int(n, "axis", axis);
    return {n.output().begin(), n.output().end()};
  }
  std::string slice(const std::string& x, const std::string& starts, const std::string& ends, const std::string& axes) {
    return output(node("Slice", {x, starts, ends, axes}));
  }
  // Dimensions start .. end of x's shape, as a 1-D int64 tensor.
  std::string shape(const std::string& x, std::int64_t start, std::int64_t end) {
    auto& n = node("Shape", {x});
    set_int(n, "start", start);
    set_int(n, "end", end);
    return output(n);
  }
  std::string constant_of_shape(const std::string& shape, float value) {
    auto& n = node("ConstantOfShape", {shape});
    auto& attribute = *n.add_attribute();
    attribute.set_name("value");
    attribute.set_type(onnx::AttributeProto::TENSOR);
    auto& tensor = *attribute.mutable_t();
    tensor.set_data_type(onnx::TensorProto::FLOAT);
    tensor.add_dims(1);
    tensor.add_float_data(value);
    return output(n);
  }
  std::string upper_triangle(const std::string& x, std::int64_t diagonal) {
    auto& n = node("Trilu", {x, int64_scalar(diagonal)});
    set_int(n, "upper", 1);
    return output(n);
  }
  std::string reduce_mean_last(const std::string& x) {
    auto& n = node("ReduceMean", {x});
    set_ints(n, "axes", {-1});
    set_int(n, "keepdims", 1);
    return output(n);
  }
  std::string reduce_sum_last(const std::string& x) {
    auto& n = node("ReduceSum", {x, int64s({-1})});
    set_int(n, "keepdims", 0);
    return output(n);
  }
  std::string clip(const std::string& x, float low, float high) {
    return output(node("Clip", {x, float_scalar(low), float_scalar(high)}));
  }
  std::string softmax_last(const std::string& x) {
    auto& n = node("Softmax", {x});
    set_int(n, "axis", -1);
    return output(n);
  }
  std::string layer_norm(const std::string& x, const std::string& scale, const std::string& bias, float epsilon) {
    std::vector<std::string> inputs = {x, scale};
    if (!bias.empty()) inputs.push_back(bias);
    auto& n = node("LayerNormalization", inputs);
    set_int(n, "axis", -1);
    set_float(n, "epsilon", epsilon);
    return output(n);
  }

 private:
  onnx::NodeProto& node(const std::string& type, const std::vector<std::string>& inputs, int outputs = 1) {
    auto& n = *graph_.add_node();
    const auto name = unique_name(scope_.empty() ? type : scope_ + "/" + type);
    n.set_op_type(type);
    n.set_name(name);
    for (const auto& input : inputs) n.add_input(input);
    if (outputs == 1) {
      n.add_output(name);
    } else {
      for (int i = 0; i < outputs; ++i) n.add_output(name + ":" + std::to_string(i));
    }
    return n;
  }
  static const std::string& output(const onnx::NodeProto& n) { return n.output(0); }

  std::string unique_name(const std::string& base) {
    auto& count = name_counts_[base];
    return count++ == 0 ? base : base + "_" + std::to_string(count - 1);
  }

  template <typename MakeTensor>
  std::string shared_constant(const std::string& name, MakeTensor make) {
    if (constants_.insert(name).second) initializer(name, make());
    return name;
  }

  static void set_int(onnx::NodeProto& n, const std::string& name, std::int64_t value) {
    auto& attribute = *n.add_attribute();
    attribute.set_name(name);
    attribute.set_type(onnx::AttributeProto::INT);
    attribute.set_i(value);
  }
  static void set_ints(onnx::NodeProto& n, const std::string& name, const std::vector<std::int64_t>& values) {
    auto& attribute = *n.add_attribute();
    attribute.set_name(name);
    attribute.set_type(onnx::AttributeProto::INTS);
    for (auto value : values) attribute.add_ints(value);
  }
  static void set_float(onnx::NodeProto& n, const std::string& name, float value) {
    auto& attribute = *n.add_attribute();
    attribute.set_name(name);
    attribute.set_type(onnx::AttributeProto::FLOAT);
    attribute.set_f(value);
  }

  onnx::GraphProto& graph_;
  ExternalData* external_;
  std::string scope_;
  std::unordered_map<std::string, int> name_counts_;
  std::unordered_set<std::string> constants_;
};

// Translates the IR into ONNX nodes that compute what Executor::forward computes (without
// hooks or a cache), layer structure by layer structure.
class TransformerGraph {
 public:
  TransformerGraph(const Model& model, GraphBuilder& builder) : model_(model), g_(builder) {}

  // input_ids [B, T] -> logits [B, T, vocab].
  std::string build(const std::string& input_ids) {
    g_.set_scope("positions");
    const auto length = g_.shape(input_ids, 1, 2);  // [T]
    const auto& block = model_.family.block;
    if (block.position == PositionKind::Rotary) add_rotary_tables(length);
    if (block.causal) add_causal_mask(length);

    g_.set_scope("embed");
    auto x = embedding(input_ids);
    if (block.position == PositionKind::Learned) {
      auto table = g_.initializer("pos_embed.weight", model_.tensor("pos_embed.weight"));
      x = g_.add(x, first_rows(table, length));
    }

    for (int layer = 0; layer < model_.layer_count(); ++layer) {
      const auto& structure = model_.layers[layer];
      if (structure.has_attention()) {
        g_.set_scope(layer_name(layer, "attn"));
        x = g_.add(x, attention(layer, activation(layer, ActivationSite::AttentionInput,
                                                  norm(x, layer_name(layer, "attn_norm")))));
      }
      if (structure.ffn_width > 0) {
        g_.set_scope(layer_name(layer, "mlp"));
        x = g_.add(x, mlp(layer, activation(layer, ActivationSite::MlpInput, norm(x, layer_name(layer, "mlp_norm")))));
      }
      // The layer's weights are in the graph (or its data file) now: their mapped pages can go.
      for (const auto& name : model_.layer_tensor_names(layer)) model_.release_pages(name);
      return_freed_memory();
    }

    g_.set_scope("head");
    x = activation(-1, ActivationSite::FinalHidden, norm(x, "final_norm"));
    if (model_.quantization.weight_scales.count("lm_head.weight")) return quantized_matmul("lm_head.weight", x);
    std::string output_weight;
    if (model_.config.tied_embeddings) {
      // The embedding, transposed in the graph rather than stored twice; runtimes fold the
      // Transpose of an initializer when they load the model. An int8 table is dequantized
      // whole, so the head computes in float on the (fake-)quantized activation.
      if (dynamic_values_.count(x)) {
        // Dequantized with Sub and Mul rather than DequantizeLinear: ONNX Runtime's extended
        // optimizations would otherwise fold the pair away and feed the head the float values.
        auto quantized = g_.dynamic_quantize_linear(x);
        x = g_.mul(g_.sub(g_.cast_to_float(quantized[0]), g_.cast_to_float(quantized[2])), quantized[1]);
      }
      output_weight = g_.transpose(embedding_table_, {1, 0});
    } else {
      output_weight = weight_in_out("lm_head.weight", model_.stored("lm_head.weight"));
    }
    return g_.matmul(x, output_weight);
  }

 private:
  // Token embedding rows. An int8 table (per-row scales) is gathered as int8 and dequantized
  // row by row, so the work follows the tokens, not the vocabulary.
  std::string embedding(const std::string& input_ids) {
    auto found = model_.quantization.weight_scales.find("embed.weight");
    if (found == model_.quantization.weight_scales.end()) {
      embedding_table_ = g_.initializer("embed.weight", model_.stored("embed.weight"));
      return g_.gather(embedding_table_, input_ids);
    }
    const auto& scales = found->second;
    auto int8 = g_.initializer("embed.weight.int8", model_.stored("embed.weight"),
                               "int8 [vocab, hidden]; value = int8 x scale[row]");
    auto row_scales = g_.initializer("embed.weight.scale", scales);
    if (model_.config.tied_embeddings)  // a constant expression runtimes fold when they load the model
      embedding_table_ = g_.mul(g_.cast_to_float(int8), g_.unsqueeze_last(row_scales));
    auto rows = g_.cast_to_float(g_.gather(int8, input_ids));                       // [B, T, hidden]
    return g_.mul(rows, g_.unsqueeze_last(g_.gather(row_scales, input_ids)));  // x scale [B, T, 1]
  }

  // Rows 0 .. T of a [max_positions, ...] table.
  std::string first_rows(const std::string& table, const std::string& length) {
    return g_.slice(table, g_.int64s({0}), length, g_.int64s({0}));
  }

  void add_rotary_tables(const std::string& length) {
    at::Tensor cos, sin;
    rotary_tables(model_.config.max_positions, model_.config.head_dim, model_.config.rope_theta, cos, sin);
    // Rotate-half multiplies the first half of the rotated vector by -sin: folding that sign
    // into the table saves a Neg per projection and is exact (IEEE negation commutes with *).
    const auto half = model_.config.head_dim / 2;
    auto signed_sin = sin.clone();
    signed_sin.narrow(1, 0, half).neg_();
    // [P, 1, 1, d] broadcasts against q and k as [B, T, Hkv, g or 1, d].
    const std::vector<std::int64_t> shape = {model_.config.max_positions, 1, 1, model_.config.head_dim};
    rotary_cos_ = first_rows(g_.initializer("rotary.cos", cos.reshape(shape)), length);
    rotary_sin_ = first_rows(
        g_.initializer("rotary.sin_signed", signed_sin.reshape(shape), "sin with the first half negated"), length);
  }

  // Additive [T, T] mask, -inf above the diagonal, built from T at run time so the file holds no
  // [max_positions, max_positions] table. Adding -inf is exact like the executor's masked_fill.
  void add_causal_mask(const std::string& length) {
    auto square = g_.concat({length, length}, 0);
    causal_mask_ = g_.upper_triangle(g_.constant_of_shape(square, -std::numeric_limits<float>::infinity()), 1);
  }

  // A linear weight [out, in] stored as [in, out], so MatMul(x, W) needs no Transpose.
  std::string weight_in_out(const std::string& name, const at::Tensor& weight) {
    return g_.initializer(name, weight.t(), "[in, out]: transposed from the [out, in] IR layout");
  }

  // Static quantization: QuantizeLinear + DequantizeLinear on the activation, which ONNX Runtime
  // fuses with the weight's DequantizeLinear and the MatMul into an integer kernel.
  std::string activation(int layer, ActivationSite site, const std::string& x) {
    const auto& quantization = model_.quantization;
    if (quantization.mode == ModelQuantization::Mode::Dynamic && quantization.dynamic_sites.count(site_key(layer, site)))
      dynamic_values_.insert(x);
    if (quantization.mode != ModelQuantization::Mode::Static) return x;
    auto found = quantization.activations.find(site_key(layer, site));
    if (found == quantization.activations.end()) return x;
    const auto key = site_key(layer, site);
    auto dequantized = quantize_dequantize(x, key, found->second);
    static_values_[dequantized] = {x, key, found->second};
    return dequantized;
  }

  std::string quantize_dequantize(const std::string& x, const std::string& name, const ActivationQuantization& parameters) {
    auto scale = g_.initializer(name + ".scale", at::scalar_tensor(parameters.scale, at::kFloat));
    auto zero_point = g_.initializer(name + ".zero_point", at::scalar_tensor(parameters.zero_point, at::kInt).to(at::kChar));
    return g_.dequantize_linear(g_.quantize_linear(x, scale, zero_point), scale, zero_point, 1);
  }

  // What one reader of `x` takes as its input. Every reader of a quantized activation gets its
  // own QuantizeLinear -> DequantizeLinear pair, with scale and zero point initializers of its
  // own (equal in value): ONNX Runtime fuses a pair into its integer MatMul kernel only when the
  // pair has that one reader, and merges pairs that share initializers. Measured on the
  // random-weight Llama of bench/int8.sh: 16 of 56 MatMuls fused with shared pairs, 56 with these.
  std::string reader_input(const std::string& x) {
    auto found = static_values_.find(x);
    if (found == static_values_.end()) return x;
    auto& value = found->second;
    if (value.readers++ == 0) return x;
    return quantize_dequantize(value.source, value.key + "." + std::to_string(value.readers - 1), value.parameters);
  }

  // MatMul with an int8 weight: DequantizeLinear of the [in, out] int8 initializer (per-channel
  // scales on axis 1) for static and weight-only models; DynamicQuantizeLinear of the
  // activation and MatMulInteger for dynamic ones.
  std::string quantized_matmul(const std::string& weight_name, const std::string& x) {
    const auto& scales = model_.quantization.weight_scales.at(weight_name);
    auto int8 = model_.stored(weight_name).t().contiguous();
    auto weight = g_.initializer(weight_name + ".int8", int8, "int8 [in, out]; value = int8 x scale[out]");
    auto weight_scale = g_.initializer(weight_name + ".scale", scales);
    if (!dynamic_values_.count(x)) {
      auto zero = g_.initializer(weight_name + ".zero_point", at::zeros({scales.size(0)}, at::kChar));
      return g_.matmul(x, g_.dequantize_linear(weight, weight_scale, zero, 1));
    }
    auto& quantized = dynamic_inputs_[x];
    if (quantized.empty()) quantized = g_.dynamic_quantize_linear(x);
    auto product = g_.cast_to_float(g_.matmul_integer(quantized[0], weight, quantized[2]));
    return g_.mul(product, g_.mul(quantized[1], weight_scale));
  }

  std::string linear(int layer, const std::string& name, const std::string& value) {
    const auto x = reader_input(value);
    const auto weight_name = layer_name(layer, name + ".weight");
    auto y = model_.quantization.weight_scales.count(weight_name)
                 ? quantized_matmul(weight_name, x)
                 : g_.matmul(x, weight_in_out(weight_name, model_.stored(weight_name)));
    const auto bias_name = layer_name(layer, name + ".bias");
    if (model_.has(bias_name)) y = g_.add(y, g_.initializer(bias_name, model_.tensor(bias_name)));
    return y;
  }

  std::string norm(const std::string& x, const std::string& prefix) {
    const auto eps = static_cast<float>(model_.config.norm_eps);
    auto weight = g_.initializer(prefix + ".weight", model_.tensor(prefix + ".weight"));
    if (model_.family.block.norm == NormKind::Layer) {
      std::string bias;
      if (model_.has(prefix + ".bias")) bias = g_.initializer(prefix + ".bias", model_.tensor(prefix + ".bias"));
      return g_.layer_norm(x, weight, bias, eps);
    }
    // RMSNorm spelled the way ONNX Runtime's SimplifiedLayerNormalization fusion recognises.
    auto mean_square = g_.reduce_mean_last(g_.pow(x, g_.float_scalar(2.0f)));
    auto root = g_.sqrt(g_.add(mean_square, g_.float_scalar(eps)));
    return g_.mul(g_.div(x, root), weight);
  }

  std::string rotate(const std::string& x) {
    auto halves = g_.split(x, -1, 2);
    auto swapped = g_.concat({halves[1], halves[0]}, -1);
    return g_.add(g_.mul(x, rotary_cos_), g_.mul(swapped, rotary_sin_));
  }

  std::string attention(int layer, const std::string& x) {
    const auto& structure = model_.layers[layer];
    auto kv_heads = structure.kv_heads, group = structure.group_size();
    const auto head_dim = model_.config.head_dim;
    const bool rotary = model_.family.block.position == PositionKind::Rotary;

    // Query heads grouped by the kv head they read, as in the executor: q [B, Hkv, g, T, d]
    // against k [B, Hkv, 1, d, S] and v [B, Hkv, 1, S, d], broadcast over g without copies.
    auto k_projection = linear(layer, "attn.k", x);
    auto v_projection = linear(layer, "attn.v", x);
    if (!structure.regular_groups()) {
      // Groups of different sizes: every query head gets its own copy of the kv head it reads.
      auto index = g_.int64s(structure.kv_of_query);
      k_projection = g_.gather(g_.reshape(k_projection, {0, 0, kv_heads, head_dim}), index, 2);
      v_projection = g_.gather(g_.reshape(v_projection, {0, 0, kv_heads, head_dim}), index, 2);
      kv_heads = structure.query_heads;
      group = 1;
    }
    auto q = g_.reshape(linear(layer, "attn.q", x), {0, 0, kv_heads, group, head_dim});
    auto k = g_.reshape(k_projection, {0, 0, kv_heads, 1, head_dim});
    auto v = g_.reshape(v_projection, {0, 0, kv_heads, 1, head_dim});
    if (rotary) {
      q = rotate(q);
      k = rotate(k);
    }
    q = g_.transpose(q, {0, 2, 3, 1, 4});
    k = g_.transpose(k, {0, 2, 3, 4, 1});
    v = g_.transpose(v, {0, 2, 3, 1, 4});

    const auto scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
    auto scores = g_.mul(g_.matmul(q, k), g_.float_scalar(scale));
    if (model_.family.block.causal) scores = g_.add(scores, causal_mask_);
    auto probabilities = g_.softmax_last(scores);
    if (const auto& clipped = model_.attention.clipped_softmax) {
      auto stretched = g_.mul(probabilities, g_.float_scalar(static_cast<float>(clipped->zeta - clipped->gamma)));
      probabilities = g_.clip(g_.add(stretched, g_.float_scalar(static_cast<float>(clipped->gamma))), 0.0f, 1.0f);
    }
    auto context = g_.matmul(probabilities, v);  // [B, Hkv, g, T, d]
    if (model_.attention.gated) context = g_.mul(context, head_output_gates(layer, x, kv_heads, group));
    context = g_.reshape(g_.transpose(context, {0, 3, 1, 2, 4}), {0, 0, structure.query_heads * head_dim});
    return linear(layer, "attn.o", activation(layer, ActivationSite::AttentionContext, context));
  }

  // Gated attention: sigmoid(<w_h, x_h> + b_h) per query head and position, shaped
  // [B, Hkv, g, T, 1] to scale the grouped context.
  std::string head_output_gates(int layer, const std::string& x, std::int64_t kv_heads, std::int64_t group) {
    const auto weight_name = layer_name(layer, "attn.gate.weight");
    const auto& weight = model_.tensor(weight_name);  // [Hq, hidden / Hq]
    auto slices = g_.reshape(reader_input(x), {0, 0, weight.size(0), weight.size(1)});
    auto products = g_.mul(slices, g_.initializer(weight_name, weight));
    const auto bias_name = layer_name(layer, "attn.gate.bias");
    auto gates = g_.sigmoid(g_.add(g_.reduce_sum_last(products), g_.initializer(bias_name, model_.tensor(bias_name))));
    return g_.reshape(g_.transpose(gates, {0, 2, 1}), {0, kv_heads, group, -1, 1});
  }

  std::string mlp(int layer, const std::string& x) {
    std::string hidden;
    switch (model_.family.block.mlp) {
      case MlpKind::GatedSiLU: {
        auto gate = linear(layer, "mlp.gate", x);
        hidden = g_.mul(g_.mul(gate, g_.sigmoid(gate)), linear(layer, "mlp.up", x));
        break;
      }
      case MlpKind::GeluTanh: hidden = gelu_tanh(linear(layer, "mlp.up", x)); break;
      case MlpKind::Gelu: hidden = gelu_erf(linear(layer, "mlp.up", x)); break;
      case MlpKind::Relu: hidden = g_.relu(linear(layer, "mlp.up", x)); break;
    }
    return linear(layer, "mlp.down", activation(layer, ActivationSite::MlpHidden, hidden));
  }

  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); opset 17 has no Gelu op.
  std::string gelu_tanh(const std::string& x) {
    auto cube = g_.mul(x, g_.mul(x, x));
    auto inner = g_.add(x, g_.mul(cube, g_.float_scalar(0.044715f)));
    const auto beta = static_cast<float>(std::sqrt(2.0 / std::numbers::pi));
    auto t = g_.tanh(g_.mul(inner, g_.float_scalar(beta)));
    auto one_plus = g_.add(t, g_.float_scalar(1.0f));
    return g_.mul(g_.mul(x, one_plus), g_.float_scalar(0.5f));
  }

  // 0.5 x (1 + erf(x / sqrt(2))).
  std::string gelu_erf(const std::string& x) {
    auto e = g_.erf(g_.div(x, g_.float_scalar(static_cast<float>(std::numbers::sqrt2))));
    auto one_plus = g_.add(e, g_.float_scalar(1.0f));
    return g_.mul(g_.mul(x, one_plus), g_.float_scalar(0.5f));
  }

  const Model& model_;
  GraphBuilder& g_;
  std::string rotary_cos_, rotary_sin_, causal_mask_;
  std::string embedding_table_;  // float [vocab, hidden], for a tied output head
  struct StaticValue {
    std::string source;  // the float activation
    std::string key;     // its site
    ActivationQuantization parameters;
    int readers = 0;
  };
  std::map<std::string, StaticValue> static_values_;  // by the first DequantizeLinear's output
  std::set<std::string> dynamic_values_;  // activations quantized at run time
  std::map<std::string, std::vector<std::string>> dynamic_inputs_;  // activation -> DynamicQuantizeLinear outputs
};

void set_dimension_names(onnx::ValueInfoProto& value, onnx::TensorProto::DataType type,
                         const std::vector<std::string>& symbolic, const std::vector<std::int64_t>& fixed) {
  auto& tensor_type = *value.mutable_type()->mutable_tensor_type();
  tensor_type.set_elem_type(type);
  auto& shape = *tensor_type.mutable_shape();
  for (const auto& name : symbolic) shape.add_dim()->set_dim_param(name);
  for (auto size : fixed) shape.add_dim()->set_dim_value(size);
}

onnx::ModelProto build_model(const Model& model, const OnnxExportOptions& options, ExternalData* external) {
  onnx::ModelProto proto;
  proto.set_ir_version(kIrVersion);
  proto.set_producer_name("lathe");
#ifdef LATHE_VERSION
  proto.set_producer_version(LATHE_VERSION);
#endif
  auto& opset = *proto.add_opset_import();
  opset.set_domain("");
  opset.set_version(options.opset);

  auto metadata = options.metadata;
  metadata.emplace("family", model.family.name);
  if (!model.annotations.empty()) metadata.emplace("lathe", model.annotations.dump());
  if (model.quantization.active())
    metadata.emplace("lathe_quantization",
                     nlohmann::json{{"mode", quantization_mode_name(model.quantization.mode)},
                                    {"target_cpu", target_cpu_name(model.quantization.target_cpu)},
                                    {"weight_limit", model.quantization.weight_limit}}
                         .dump());
  for (const auto& [key, value] : metadata) {
    auto& entry = *proto.add_metadata_props();
    entry.set_key(key);
    entry.set_value(value);
  }

  auto& graph = *proto.mutable_graph();
  graph.set_name("lathe");
  auto& input = *graph.add_input();
  input.set_name("input_ids");
  set_dimension_names(input, onnx::TensorProto::INT64, {"batch", "sequence"}, {});

  GraphBuilder builder(graph, external);
  auto logits = TransformerGraph(model, builder).build("input_ids");
  // Name the last node's output "logits" rather than adding an Identity.
  auto& last = *graph.mutable_node(graph.node_size() - 1);
  if (last.output(0) != logits) throw std::logic_error("ONNX writer: the logits are not the last node's output");
  last.set_output(0, "logits");
  auto& output = *graph.add_output();
  output.set_name("logits");
  set_dimension_names(output, onnx::TensorProto::FLOAT, {"batch", "sequence"}, {model.config.vocab});
  return proto;
}

// What the initializers will take: int8 weights a byte per value, everything else float32.
std::uint64_t estimated_initializer_bytes(const Model& model) {
  std::uint64_t total = 0;
  for (const auto& [name, tensor] : model.tensors)
    total += static_cast<std::uint64_t>(tensor.numel()) * (model.is_quantized_weight(name) ? 1 : 4);
  return total;
}

// Runs the ONNX checker on the graph (a ModelProto, or the path of a file holding one, whose
// external data it then finds beside it).
template <typename Graph>
void check_graph(const Graph& graph, const std::filesystem::path& destination) {
  try {
    onnx::checker::check_model(graph);
  } catch (const std::exception& error) {
    throw std::runtime_error("the ONNX graph built for " + destination.string() + " fails the ONNX checker: " + error.what());
  }
}

void serialize(const onnx::ModelProto& proto, AtomicFile& file, const std::filesystem::path& destination) {
  if (proto.SerializeToOstream(&file.stream())) return;
  // A failed write is the disk's (full, read-only, a file-size limit), not lathe's.
  file.check_written();
  throw std::runtime_error("cannot serialize the ONNX model " + destination.string());
}

void set_location(onnx::ModelProto& proto, const std::string& location) {
  for (auto& tensor : *proto.mutable_graph()->mutable_initializer())
    for (auto& entry : *tensor.mutable_external_data())
      if (entry.key() == "location") entry.set_value(location);
}

}  // namespace

void write_onnx(const Model& model, const std::filesystem::path& path, const OnnxExportOptions& options) {
  if (options.opset != kSupportedOpset)
    throw InputError(path.string(), "ONNX opset " + std::to_string(options.opset) + " is not supported; lathe writes opset " +
                                        std::to_string(kSupportedOpset));
  at::NoGradGuard no_grad;
  auto data_path = path;
  data_path += ".data";
  if (estimated_initializer_bytes(model) <= options.external_data_threshold) {
    const auto proto = build_model(model, options, nullptr);
    check_graph(proto, path);
    AtomicFile graph(path);
    serialize(proto, graph, path);
    graph.commit();
    // A data file left by an earlier export to the same path would be stale (and counted as
    // part of this output by its size).
    std::error_code ignored;
    std::filesystem::remove(data_path, ignored);
    return;
  }
  // Large models: each initializer goes to the data file as the graph is built. The checker
  // reads the graph from a file beside the data (it resolves external data against the model's
  // folder), first pointing at the data's temporary name, then both are renamed into place.
  AtomicFile data(data_path);
  ExternalData external{&data, data.temporary_path().filename().string()};
  auto proto = build_model(model, options, &external);
  data.check_written();
  {
    AtomicFile checked(path);
    serialize(proto, checked, path);
    checked.check_written();
    check_graph(checked.temporary_path().string(), path);
  }
  set_location(proto, data_path.filename().string());
  AtomicFile graph(path);
  serialize(proto, graph, path);
  // The graph and its data are one model, put in place by two renames. An earlier graph at
  // `path` goes first, so that at no moment a graph there reads data it was not written with:
  // a run killed during the swap leaves the earlier model, no model, or this one.
  std::error_code ec;
  std::filesystem::remove(path, ec);
  if (ec) throw InputError(path.string(), "cannot replace: " + ec.message());
  data.commit();
  graph.commit();
}

}  // namespace lathe
