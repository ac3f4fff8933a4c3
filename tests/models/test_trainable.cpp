// The trainable twin (models/trainable.h) against the inference Decoder: same weights -> same logits for
// every family of the tiny test zoo (GQA, q/k/v bias, sliding windows, MoE, linear RoPE, tied
// embeddings), gradients that reach every parameter, and sparse upcycling that leaves the function of
// the dense model unchanged; the per-head output norms of the training's group-lasso penalty; the head
// gate of staged training against the Decoder's zero masking.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>

#include "models/checkpoint.h"
#include "models/decoder.h"
#include "models/model_config.h"
#include "models/trainable.h"
#include "tests/models/tiny_models.h"

namespace {

models::TensorMap as_tensor_map(const tiny::Model& m) {
  models::TensorMap out;
  for (const auto& [name, t] : m.weights) out[name] = t;
  return out;
}

torch::Tensor decoder_logits(const models::ModelSpec& spec, const models::TensorLookup& lookup,
                             const torch::Tensor& ids, const models::HeadMask* mask = nullptr) {
  models::Decoder decoder(spec, lookup);
  models::KvCache cache = decoder.new_cache(ids.size(0), ids.size(1));
  models::ForwardOptions fo;
  fo.all_logits = true;
  fo.mask = mask;
  return decoder.forward(ids, cache, fo);
}

class TrainableParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainableParity, LogitsEqualTheDecoderOnTheSameWeights) {
  at::set_num_threads(1);
  tiny::Model m = tiny::make_model(GetParam());
  m.spec.checkpoint_dtype = models::DType::Float32;
  models::TrainableModel trainable(m.spec, as_tensor_map(m));
  torch::manual_seed(3);
  torch::Tensor ids = torch::randint(0, m.spec.vocab_size, {2, 11}, torch::kInt64);
  torch::Tensor expected = decoder_logits(m.spec, m.lookup(), ids);
  torch::Tensor got;
  {
    torch::NoGradGuard no_grad;
    got = trainable.forward(ids);
  }
  ASSERT_EQ(got.sizes(), expected.sizes());
  EXPECT_LT((got - expected).abs().max().item<double>(), 1e-4 * (1 + expected.abs().max().item<double>()))
      << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Families, TrainableParity, ::testing::ValuesIn(tiny::family_names()));

TEST(Trainable, FreshWeightsAreSeededAndEveryParameterGetsAGradient) {
  at::set_num_threads(1);
  models::ModelSpec spec = tiny::make_spec("qwen2");
  spec.checkpoint_dtype = models::DType::Float32;
  models::TrainableModel a(spec, 7), b(spec, 7), c(spec, 8);
  auto ta = a.tensors(), tb = b.tensors(), tc = c.tensors();
  const std::string q = models::checkpoint_tensor_name(spec, "q_proj", 0);
  EXPECT_TRUE(torch::equal(ta.at(q), tb.at(q)));
  EXPECT_FALSE(torch::equal(ta.at(q), tc.at(q)));
  torch::Tensor ids = torch::randint(0, spec.vocab_size, {2, 9}, torch::kInt64);
  a.forward(ids).logsumexp(-1).sum().backward();
  for (const auto& p : a.parameters()) {
    ASSERT_TRUE(p.grad().defined());
  }
  // A saved model loads into the inference decoder with the trainable's function.
  models::TensorMap saved = a.tensors();
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    expected = a.forward(ids);
  }
  auto lookup = [&](const std::string& name) { return saved.count(name) ? saved.at(name) : torch::Tensor(); };
  EXPECT_LT((decoder_logits(spec, lookup, ids) - expected).abs().max().item<double>(), 1e-4);
}

TEST(Trainable, HeadOutputNormsAreTheNormsOfEachHeadsOutputProjectionBlock) {
  at::set_num_threads(1);
  models::ModelSpec spec = tiny::make_spec("qwen2");  // GQA: more query heads than KV heads
  spec.checkpoint_dtype = models::DType::Float32;
  models::TrainableModel model(spec, 3);
  torch::Tensor norms = model.head_output_norms();
  ASSERT_EQ(norms.sizes(), (std::vector<int64_t>{spec.n_layer, spec.n_head}));
  // Naive: element loops over o_proj's columns h*d .. h*d + d - 1 (head h's output), in double.
  const int64_t d = spec.head_dim;
  for (int64_t l = 0; l < spec.n_layer; ++l) {
    torch::Tensor o = model.tensors().at(models::checkpoint_tensor_name(spec, "o_proj", l)).to(torch::kFloat64);
    auto a = o.accessor<double, 2>();
    for (int64_t h = 0; h < spec.n_head; ++h) {
      double ss = 0;
      for (int64_t r = 0; r < o.size(0); ++r) {
        for (int64_t c = h * d; c < (h + 1) * d; ++c) ss += a[r][c] * a[r][c];
      }
      EXPECT_NEAR(norms[l][h].item<double>(), std::sqrt(ss), 1e-6 * std::sqrt(ss)) << "layer " << l << " head " << h;
    }
  }
  // The group-lasso gradient: d(sum of norms)/d o = o / (norm of its head's block), column block by block.
  // Only the o_proj leaves are in the graph, so they are the only ones with a gradient.
  norms.sum().backward();
  int64_t checked = 0;
  for (const auto& p : model.parameters()) {
    if (!p.grad().defined()) continue;
    ++checked;
    ASSERT_EQ(p.sizes(), (std::vector<int64_t>{spec.hidden_size, spec.n_head * d}));
    torch::Tensor blocks = p.detach().view({spec.hidden_size, spec.n_head, d});
    torch::Tensor expected = (blocks / blocks.pow(2).sum(at::IntArrayRef{0, 2}, true).sqrt()).view_as(p);
    EXPECT_LT((p.grad() - expected).abs().max().item<double>(), 1e-5);
  }
  EXPECT_EQ(checked, spec.n_layer);
}

class TrainableHeadGate : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainableHeadGate, SilencesHeadsAsZeroMaskingDoesAndStopsTheirGradients) {
  at::set_num_threads(1);
  tiny::Model m = tiny::make_model(GetParam());
  m.spec.checkpoint_dtype = models::DType::Float32;
  const models::ModelSpec& spec = m.spec;
  const int64_t d = spec.head_dim;
  const std::vector<std::pair<int64_t, int64_t>> silenced = {{0, 1}, {1, spec.n_head - 1}};
  torch::Tensor gate = torch::ones({spec.n_layer, spec.n_head});
  for (const auto& [l, h] : silenced) gate[l][h] = 0.0;
  models::TrainableModel model(spec, as_tensor_map(m));
  model.set_head_gate(gate);
  torch::manual_seed(5);
  torch::Tensor ids = torch::randint(0, spec.vocab_size, {2, 10}, torch::kInt64);

  // Independent reference: the inference Decoder with those heads zero-masked over the whole prompt.
  models::HeadMask zero(spec, models::HeadMaskMode::Zero, silenced, /*in_prefill=*/true);
  torch::Tensor expected = decoder_logits(spec, m.lookup(), ids, &zero);
  torch::Tensor got = model.forward(ids);
  EXPECT_LT((got.detach() - expected).abs().max().item<double>(), 1e-4 * (1 + expected.abs().max().item<double>()));

  // A silenced head's query rows and output-projection columns get exactly no gradient; the others do.
  got.logsumexp(-1).sum().backward();
  std::map<std::string, torch::Tensor> grads;  // parameters() are in checkpoint order, required tensors only
  const auto params = model.parameters();
  size_t i = 0;
  for (const auto& t : models::expected_tensors(spec)) {
    if (t.required) grads[t.name] = params.at(i++).grad();
  }
  ASSERT_EQ(i, params.size());
  for (int64_t l = 0; l < spec.n_layer; ++l) {
    torch::Tensor gq = grads.at(models::checkpoint_tensor_name(spec, "q_proj", l));
    torch::Tensor go = grads.at(models::checkpoint_tensor_name(spec, "o_proj", l));
    for (int64_t h = 0; h < spec.n_head; ++h) {
      const bool off = gate[l][h].item<double>() == 0.0;
      const double q_norm = gq.narrow(0, h * d, d).abs().sum().item<double>();
      const double o_norm = go.narrow(1, h * d, d).abs().sum().item<double>();
      EXPECT_EQ(off, q_norm == 0.0) << "layer " << l << " head " << h << " q_proj gradient " << q_norm;
      EXPECT_EQ(off, o_norm == 0.0) << "layer " << l << " head " << h << " o_proj gradient " << o_norm;
    }
  }

  // No gate: every head again (the Decoder without a mask).
  model.set_head_gate(torch::Tensor());
  {
    torch::NoGradGuard no_grad;
    torch::Tensor all_heads = decoder_logits(spec, m.lookup(), ids);
    EXPECT_LT((model.forward(ids) - all_heads).abs().max().item<double>(),
              1e-4 * (1 + all_heads.abs().max().item<double>()));
  }
  EXPECT_THROW(model.set_head_gate(torch::ones({spec.n_layer, spec.n_head + 1})), pipeline::ShapeError);
  EXPECT_THROW(model.set_head_gate(torch::full({spec.n_layer, spec.n_head}, 0.5)), pipeline::InputError);
}

// llama: one KV head per query head; qwen2: GQA and q/k/v biases (the kept heads' KV heads and bias rows).
INSTANTIATE_TEST_SUITE_P(Families, TrainableHeadGate, ::testing::Values("llama", "qwen2"));

TEST(Trainable, UpcycledMoeComputesWhatTheDenseModelDid) {
  at::set_num_threads(1);
  tiny::Model dense = tiny::make_model("llama");
  dense.spec.checkpoint_dtype = models::DType::Float32;
  tiny::Model moe_model = tiny::make_model("mixtral");
  models::ModelSpec moe_spec = moe_model.spec;
  // Same dimensions as the dense model; the MoE fields and tensor names from the mixtral spec.
  moe_spec.hidden_size = dense.spec.hidden_size;
  moe_spec.intermediate_size = dense.spec.intermediate_size;
  moe_spec.n_layer = dense.spec.n_layer;
  moe_spec.n_head = dense.spec.n_head;
  moe_spec.n_kv_head = dense.spec.n_kv_head;
  moe_spec.head_dim = dense.spec.head_dim;
  moe_spec.vocab_size = dense.spec.vocab_size;
  moe_spec.rope_theta = dense.spec.rope_theta;
  moe_spec.rope_scaling = dense.spec.rope_scaling;
  moe_spec.sliding_window.reset();
  moe_spec.rms_norm_eps = dense.spec.rms_norm_eps;
  moe_spec.checkpoint_dtype = models::DType::Float32;
  models::TensorMap upcycled = models::upcycle_to_moe(dense.spec, as_tensor_map(dense), moe_spec, 5);
  models::TrainableModel a(dense.spec, as_tensor_map(dense)), b(moe_spec, upcycled);
  torch::Tensor ids = torch::randint(0, dense.spec.vocab_size, {1, 12}, torch::kInt64);
  torch::NoGradGuard no_grad;
  torch::Tensor la = a.forward(ids), lb = b.forward(ids);
  EXPECT_LT((la - lb).abs().max().item<double>(), 1e-4 * (1 + la.abs().max().item<double>()));
  // The router is new (and seeded), everything else copied.
  const std::string router = models::checkpoint_tensor_name(moe_spec, "router", 0);
  EXPECT_TRUE(torch::equal(upcycled.at(router), models::upcycle_to_moe(dense.spec, as_tensor_map(dense), moe_spec, 5).at(router)));
  EXPECT_THROW(models::upcycle_to_moe(moe_spec, upcycled, moe_spec, 5), std::exception);
}

}  // namespace
