// Parity of models::Decoder (KV cache, chunked prefill, batching, capture, masking) against the
// deliberately naive reference in naive_reference.cpp, on tiny random models of every family.
#include <gtest/gtest.h>

#include <cstdio>
#include <limits>
#include <random>

#include "models/decoder.h"
#include "models/generation.h"
#include "models/projection.h"
#include "models/row_projection.h"
#include "pipeline/core/error.h"
#include "tests/models/naive_reference.h"
#include "tests/models/tiny_models.h"

namespace {

constexpr double kFp32RelTol = 1e-5;  // max|diff| / max|ref|; fp32 summation-order noise is ~1e-7
constexpr float kNearTie = 1e-5f;     // top-2 probability gap under which argmax may differ
constexpr int64_t kSteps = 8;

struct ThreadSetup {
  ThreadSetup() { at::set_num_threads(2); }
} g_threads;

double rel_err(const torch::Tensor& a, const torch::Tensor& ref) {
  return (a - ref).abs().max().item<double>() / ref.abs().max().item<double>();
}

std::vector<int64_t> random_prompt(int64_t length, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> dist(0, vocab - 1);
  std::vector<int64_t> ids(static_cast<size_t>(length));
  for (auto& id : ids) id = dist(rng);
  return ids;
}

std::vector<std::vector<int64_t>> prompts_for(int64_t vocab, int64_t batch) {
  const std::vector<int64_t> lengths = {17, 9, 13};
  std::vector<std::vector<int64_t>> out;
  for (int64_t b = 0; b < batch; ++b) {
    out.push_back(random_prompt(lengths[static_cast<size_t>(b)], vocab, 100 + static_cast<uint32_t>(b)));
  }
  return out;
}

models::Decoder make_decoder(const tiny::Model& m, int64_t chunk,
                             models::DType dtype = models::DType::Float32) {
  models::DecoderOptions options;
  options.prefill_chunk = chunk;
  options.prefill_call = chunk;  // one attention block per call, as the tests below count reuse in calls
  options.compute_dtype = dtype;
  return models::Decoder(m.spec, m.lookup(), options);
}

// Counts positions where the naive row's top-2 gap is below kNearTie (argmax may legitimately differ).
int64_t near_ties(const torch::Tensor& rows /*[L, H, T]*/) {
  auto top2 = std::get<0>(rows.topk(2, -1));
  return (top2.select(-1, 0) - top2.select(-1, 1) < kNearTie).sum().item<int64_t>();
}

class FamilyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FamilyTest, PrefillLogitsMatchNaiveAcrossChunkSizes) {
  const auto m = tiny::make_model(GetParam());
  const auto prompt = random_prompt(21, m.spec.vocab_size, 7);
  const auto ref = naive::forward(m.spec, m.weights, prompt);
  auto ids = torch::tensor(prompt, torch::kInt64).view({1, -1});
  for (int64_t chunk : {1, 3, 16, 0}) {
    auto dec = make_decoder(m, chunk);
    auto cache = dec.new_cache(1, 4);  // small capacity: exercises growth
    models::ForwardOptions opt;
    opt.all_logits = true;
    auto logits = dec.forward(ids, cache, opt)[0];
    const double err = rel_err(logits, ref.logits);
    std::printf("[%s] prefill chunk=%2lld: max |diff| = %.3g, rel = %.3g\n", GetParam().c_str(),
                static_cast<long long>(chunk), (logits - ref.logits).abs().max().item<double>(), err);
    EXPECT_LT(err, kFp32RelTol) << "chunk " << chunk;
  }
}

TEST_P(FamilyTest, BatchedPaddedPrefillMatchesNaive) {
  const auto m = tiny::make_model(GetParam());
  const auto prompts = prompts_for(m.spec.vocab_size, 3);
  const int64_t T = 17;
  std::vector<int64_t> flat, pad;
  for (const auto& p : prompts) {
    pad.push_back(T - static_cast<int64_t>(p.size()));
    flat.insert(flat.end(), static_cast<size_t>(pad.back()), 0);
    flat.insert(flat.end(), p.begin(), p.end());
  }
  for (int64_t chunk : {1, 3, 16, 0}) {
    auto dec = make_decoder(m, chunk);
    auto cache = dec.new_cache(3, T);
    cache.set_padding(pad);
    models::ForwardOptions opt;
    opt.all_logits = true;
    auto logits = dec.forward(torch::tensor(flat, torch::kInt64).view({3, T}), cache, opt);
    for (size_t b = 0; b < 3; ++b) {
      auto ref = naive::forward(m.spec, m.weights, prompts[b]).logits;
      auto mine = logits[static_cast<int64_t>(b)].narrow(0, pad[b], T - pad[b]);
      EXPECT_LT(rel_err(mine, ref), kFp32RelTol) << "chunk " << chunk << " seq " << b;
    }
  }
}

TEST_P(FamilyTest, GreedyGenerationAndCaptureMatchNaive) {
  const auto m = tiny::make_model(GetParam());
  const auto prompts = prompts_for(m.spec.vocab_size, 3);
  std::vector<naive::Generation> refs;
  int64_t ties = 0;
  for (const auto& p : prompts) {
    refs.push_back(naive::generate(m.spec, m.weights, p, kSteps));
    for (const auto& rows : refs.back().last_rows) ties += near_ties(rows);
  }
  std::printf("[%s] near-ties (top-2 gap < %g) among naive decode rows: %lld\n", GetParam().c_str(),
              static_cast<double>(kNearTie), static_cast<long long>(ties));
  torch::Tensor unbatched_argmax;
  for (int64_t chunk : {1, 3, 16, 0}) {
    auto dec = make_decoder(m, chunk);
    for (int64_t batch : {1, 3}) {
      std::vector<std::vector<int64_t>> in(prompts.begin(), prompts.begin() + batch);
      models::GenerationOptions opt;
      opt.max_new_tokens = kSteps;
      opt.keep_logits = true;
      models::CaptureOptions cap;
      cap.top_k = 3;
      for (int64_t b = 0; b < batch; ++b) cap.spans.push_back({2, 7});
      opt.capture = cap;
      auto res = models::generate_greedy(dec, in, opt);
      double worst = 0;
      for (int64_t b = 0; b < batch; ++b) {
        const auto& ref = refs[static_cast<size_t>(b)];
        EXPECT_EQ(res.tokens[static_cast<size_t>(b)], ref.tokens) << "chunk " << chunk << " batch " << batch;
        for (int64_t s = 0; s < kSteps; ++s) {
          const auto& rows = ref.last_rows[static_cast<size_t>(s)];  // [L, H, T_kv]
          worst = std::max(worst, rel_err(res.logits[b][s], ref.logits[static_cast<size_t>(s)]));
          auto expect_argmax = rows.argmax(-1).to(torch::kInt32);
          auto got = res.capture->argmax()[b][s];
          auto top2 = std::get<0>(rows.topk(2, -1));
          auto tie = (top2.select(-1, 0) - top2.select(-1, 1)) < kNearTie;
          EXPECT_TRUE(((got == expect_argmax) | tie).all().item<bool>())
              << "argmax mismatch chunk " << chunk << " batch " << batch << " seq " << b << " step " << s;
          auto [vals, idx] = rows.topk(3, -1);
          EXPECT_TRUE(torch::allclose(res.capture->top_prob()[b][s], vals, 1e-5, 1e-6));
          auto top_pos = res.capture->top_pos()[b][s].to(torch::kInt64);  // positions -> naive probs
          EXPECT_TRUE(torch::allclose(rows.gather(-1, top_pos), vals, 1e-5, 1e-6));
          auto mass = rows.narrow(-1, 2, 5).sum(-1);
          EXPECT_TRUE(torch::allclose(res.capture->span_mass()[b][s], mass, 1e-5, 1e-6));
        }
      }
      EXPECT_LT(worst, kFp32RelTol);
      std::printf("[%s] generate chunk=%2lld batch=%lld: decode logits max rel err %.3g\n",
                  GetParam().c_str(), static_cast<long long>(chunk), static_cast<long long>(batch), worst);
      auto seq0 = res.capture->argmax()[0];
      if (!unbatched_argmax.defined()) unbatched_argmax = seq0.clone();
      EXPECT_TRUE(torch::equal(seq0, unbatched_argmax)) << "batched capture != unbatched";
    }
  }
}

TEST_P(FamilyTest, DecodeWithCacheEqualsRecompute) {
  const auto m = tiny::make_model(GetParam());
  const auto prompt = prompts_for(m.spec.vocab_size, 1)[0];
  auto dec = make_decoder(m, 4);
  models::GenerationOptions opt;
  opt.max_new_tokens = kSteps;
  opt.keep_logits = true;
  auto res = models::generate_greedy(dec, {prompt}, opt);
  std::vector<int64_t> full = prompt;
  full.insert(full.end(), res.tokens[0].begin(), res.tokens[0].end() - 1);
  auto cache = dec.new_cache(1, 1);
  models::ForwardOptions fo;
  fo.all_logits = true;
  auto logits = dec.forward(torch::tensor(full, torch::kInt64).view({1, -1}), cache, fo)[0];
  auto recomputed = logits.narrow(0, static_cast<int64_t>(prompt.size()) - 1, kSteps);
  const double err = rel_err(res.logits[0], recomputed);
  std::printf("[%s] cached decode vs recompute: rel %.3g\n", GetParam().c_str(), err);
  EXPECT_LT(err, kFp32RelTol);
}

TEST_P(FamilyTest, TokenByTokenWithCacheGrowthEqualsOneCall) {
  const auto m = tiny::make_model(GetParam());
  const auto seq = random_prompt(19, m.spec.vocab_size, 11);
  auto dec = make_decoder(m, 2);
  models::ForwardOptions all;
  all.all_logits = true;
  auto one_cache = dec.new_cache(1, 19);
  auto one_call = dec.forward(torch::tensor(seq, torch::kInt64).view({1, -1}), one_cache, all)[0];
  auto cache = dec.new_cache(1, 1);  // grows (copying) several times
  std::vector<torch::Tensor> rows;
  rows.push_back(dec.forward(torch::tensor(std::vector<int64_t>(seq.begin(), seq.begin() + 5), torch::kInt64).view({1, -1}),
                             cache, all)[0]);
  for (size_t t = 5; t < seq.size(); ++t) {
    rows.push_back(dec.forward(torch::tensor({seq[t]}, torch::kInt64).view({1, 1}), cache)[0]);
  }
  EXPECT_GE(cache.capacity(), 19);
  EXPECT_LT(rel_err(torch::cat(rows), one_call), kFp32RelTol);
  // Truncating back to the 5-token prefix and decoding again reproduces the same rows.
  cache.truncate(5);
  for (size_t t = 5; t < seq.size(); ++t) {
    auto again = dec.forward(torch::tensor({seq[t]}, torch::kInt64).view({1, 1}), cache)[0];
    EXPECT_TRUE(torch::equal(again, rows[t - 4])) << "position " << t;
  }
}

TEST_P(FamilyTest, PrefixCacheReuseIsBitIdenticalToFreshPrefill) {
  // A sequence of prompts sharing prefixes of every kind with their predecessor (none, one token,
  // across and inside chunk boundaries, the whole prompt, a prompt that is a prefix of the last one):
  // generating through one PrefixCache must give exactly, bit for bit, what fresh prefills give.
  const auto m = tiny::make_model(GetParam());
  const auto base = random_prompt(40, m.spec.vocab_size, 21);
  std::vector<std::vector<int64_t>> prompts;
  uint32_t seed = 50;
  for (int64_t shared : {0, 30, 31, 17, 1, 16, 39, 40, 25, 5}) {
    auto p = std::vector<int64_t>(base.begin(), base.begin() + shared);
    auto tail = random_prompt(40 - shared + (shared % 3), m.spec.vocab_size, seed++);
    if (shared < 40) p.insert(p.end(), tail.begin(), tail.end());
    prompts.push_back(p);
  }
  prompts.push_back(std::vector<int64_t>(base.begin(), base.begin() + 12));  // a prefix of the last one
  for (int64_t chunk : {3, 8, 0}) {
    auto dec = make_decoder(m, chunk);
    models::PrefixCache prefix;
    int64_t expect_reused = 0;
    std::vector<int64_t> previous;
    for (size_t i = 0; i < prompts.size(); ++i) {
      models::GenerationOptions opt;
      opt.max_new_tokens = 4;
      opt.keep_logits = true;
      models::CaptureOptions cap;
      cap.top_k = 2;
      cap.spans.push_back({1, 6});
      opt.capture = cap;
      auto fresh = models::generate_greedy(dec, {prompts[i]}, opt);
      opt.prefix_cache = &prefix;
      auto reused = models::generate_greedy(dec, {prompts[i]}, opt);
      const std::string where = "chunk " + std::to_string(chunk) + " prompt " + std::to_string(i);
      EXPECT_EQ(reused.tokens, fresh.tokens) << where;
      EXPECT_TRUE(torch::equal(reused.logits, fresh.logits)) << where;
      EXPECT_TRUE(torch::equal(reused.capture->argmax(), fresh.capture->argmax())) << where;
      EXPECT_TRUE(torch::equal(reused.capture->top_prob(), fresh.capture->top_prob())) << where;
      EXPECT_TRUE(torch::equal(reused.capture->span_mass(), fresh.capture->span_mass())) << where;
      // Whole chunks of the common prefix of the prefill parts (prompt minus its last token) are reused.
      const std::vector<int64_t> prefill(prompts[i].begin(), prompts[i].end() - 1);
      int64_t lcp = 0;
      while (lcp < static_cast<int64_t>(std::min(previous.size(), prefill.size())) &&
             previous[static_cast<size_t>(lcp)] == prefill[static_cast<size_t>(lcp)]) {
        ++lcp;
      }
      // Every prefill call is reused when the previous prefill was the same (prompt 7 repeats prompt 6's).
      const bool same = lcp == static_cast<int64_t>(prefill.size()) && previous.size() == prefill.size();
      expect_reused += same ? lcp : chunk > 0 ? lcp / chunk * chunk : 0;
      previous = prefill;
    }
    EXPECT_EQ(prefix.reused_tokens(), expect_reused) << "chunk " << chunk;
    if (chunk > 0) {
      EXPECT_GT(prefix.reused_tokens(), 100) << "chunk " << chunk;
    }
  }
}

TEST(RowArgmax, FirstMaximumAndFirstNanAsTorchArgmax) {
  // Rows of every length 1..40 (vector body and tail) with ties, +-0, -inf, all -inf and NaNs placed in
  // the body and in the tail; the expected index is torch::argmax's on the same row.
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> level(0, 3);  // few distinct values: many ties
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  int64_t checked = 0;
  for (int64_t n = 1; n <= 40; ++n) {
    for (int variant = 0; variant < 8; ++variant) {
      std::vector<float> row(static_cast<size_t>(n));
      for (auto& x : row) x = static_cast<float>(level(rng)) * 0.25f;
      if (variant == 1) std::fill(row.begin(), row.end(), -inf);
      if (variant == 2) row[static_cast<size_t>(n / 2)] = nan;
      if (variant == 3) row.back() = nan;
      if (variant == 4) {
        row.front() = -0.0f;
        for (size_t i = 1; i < row.size(); ++i) row[i] = i % 2 ? 0.0f : -inf;
      }
      if (variant == 5 && n > 3) row[static_cast<size_t>(n - 2)] = nan, row[1] = nan;
      if (variant == 6) row[static_cast<size_t>(rng() % n)] = inf;
      const auto t = torch::from_blob(row.data(), {n}, torch::kFloat32);
      EXPECT_EQ(models::row_argmax(row.data(), n), t.argmax().item<int64_t>()) << "n " << n << " variant " << variant;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 320);
}

TEST(PrefillPlan, CallsAlignedToSlotZeroWithTheSplitCallRunTwice) {
  using C = models::PrefillCall;
  using Plan = std::vector<C>;
  EXPECT_EQ(models::prefill_plan(0, 20, 8), (Plan{{0, 8, 8}, {8, 16, 16}, {16, 20, 20}}));
  EXPECT_EQ(models::prefill_plan(0, 20, 8, 11), (Plan{{0, 8, 8}, {8, 16, 11}, {11, 16, 16}, {16, 20, 20}}));
  EXPECT_EQ(models::prefill_plan(5, 20, 8), (Plan{{5, 8, 8}, {8, 16, 16}, {16, 20, 20}}));
  EXPECT_EQ(models::prefill_plan(0, 20, 8, 18), (Plan{{0, 8, 8}, {8, 16, 16}, {16, 20, 18}, {18, 20, 20}}));
  EXPECT_EQ(models::prefill_plan(5, 20, 8, 6), (Plan{{5, 8, 6}, {6, 8, 8}, {8, 16, 16}, {16, 20, 20}}));
  EXPECT_EQ(models::prefill_plan(0, 20, 0, 11), (Plan{{0, 20, 11}, {11, 20, 20}}));
  // No split on a call boundary or outside the slots.
  EXPECT_EQ(models::prefill_plan(0, 20, 8, 16), models::prefill_plan(0, 20, 8));
  EXPECT_EQ(models::prefill_plan(0, 20, 8, 0), models::prefill_plan(0, 20, 8));
  EXPECT_EQ(models::prefill_plan(0, 20, 8, 20), models::prefill_plan(0, 20, 8));
  EXPECT_TRUE(models::prefill_plan(7, 7, 8, 3).empty());
}

TEST_P(FamilyTest, PrefixCacheReusesRowsUpToTheSplit) {
  // NIAH-like prompts: 381 tokens of one haystack with a 3-token needle (ids from the other half of the
  // vocabulary, a different first token each) spliced in at `split`, the split passed as the hint.
  // Through one prefix cache every result must be bit for bit the fresh prefill's with the same hint,
  // and the reused slots must be the hand-worked ones (calls of 64 rows per models::prefill_plan, over
  // 32 rows so that the projections run as GEMMs whose rows depend on the height; attention blocks of 16).
  const auto m = tiny::make_model(GetParam());
  const int64_t V = m.spec.vocab_size;
  const auto hay = random_prompt(384, V / 2, 61);
  struct Case {
    int64_t split;     // the needle's position, and the hint
    int needle;
    int64_t reused_dense, reused_moe;  // expected reused slots (dense: split calls; moe: whole calls of
                                       // prefill_chunk rows, as a prompt without a split runs)
  };
  const std::vector<Case> cases = {
      {296, 0, 0, 0},      // cold: [0,64) .. [192,256), {256,320,296}, {296,320,320}, [320,383)
      {280, 1, 280, 272},  // {256,320,280} against {256,320,296}: rows up to 280 (moe: whole calls of 16)
      {280, 2, 280, 272},  // same split, other needle: {256,320,280} again, {280,320,320} not (tokens)
      {160, 3, 160, 160},  // a shallower call
      {192, 4, 128, 160},  // deeper after shallower, on a boundary: {128,192,192} was kept only to 160
      {40, 5, 40, 32},     // inside the first call
      {240, 6, 0, 32},     // deeper again: {0,64,64} was kept only to 40
      {240, 6, 383, 383},  // the same prompt again (ablate's head selections): every call
      {-248, 6, 192, 383}, // the same tokens, hinted at 248: {192,256,248} was kept only to 240 (moe:
                           // no splits, so the same calls as before)
      {352, 7, 192, 240},  // a split in the last, shorter call; reused: the calls before 240's
  };
  const bool dense = GetParam() != "mixtral";
  models::DecoderOptions options;
  options.prefill_call = 64;
  options.prefill_chunk = 16;  // attention in blocks inside each call
  const models::Decoder dec(m.spec, m.lookup(), options);
  EXPECT_EQ(dec.prefill_rows_independent(), dense);
  models::PrefixCache prefix;
  int64_t expect_reused = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const int64_t at = c.split >= 0 ? c.split : cases[i - 1].split;  // < 0: the previous prompt, hint -split
    std::vector<int64_t> p(hay.begin(), hay.begin() + at);
    const auto needle = random_prompt(3, V - V / 2, 70 + static_cast<uint32_t>(c.needle));
    for (size_t j = 0; j < needle.size(); ++j) p.push_back(V / 2 + (j == 0 ? c.needle % (V - V / 2) : needle[j]));
    p.insert(p.end(), hay.begin() + at, hay.end() - 3);
    ASSERT_EQ(p.size(), 384u);
    models::GenerationOptions opt;
    opt.max_new_tokens = 4;
    opt.keep_logits = true;
    opt.capture = models::CaptureOptions{};
    opt.prefill_split = std::abs(c.split);
    auto fresh = models::generate_greedy(dec, {p}, opt);
    opt.prefix_cache = &prefix;
    auto reused = models::generate_greedy(dec, {p}, opt);
    const std::string where = "case " + std::to_string(i) + " split " + std::to_string(c.split);
    EXPECT_EQ(reused.tokens, fresh.tokens) << where;
    EXPECT_TRUE(torch::equal(reused.logits, fresh.logits)) << where;
    EXPECT_TRUE(torch::equal(reused.capture->argmax(), fresh.capture->argmax())) << where;
    expect_reused += dense ? c.reused_dense : c.reused_moe;
    EXPECT_EQ(prefix.reused_tokens(), expect_reused) << where;
  }
}

TEST_P(FamilyTest, Bf16TokensMostlyAgreeWithFp32) {
  const auto m = tiny::make_model(GetParam());
  const auto prompts = prompts_for(m.spec.vocab_size, 3);
  models::GenerationOptions opt;
  opt.max_new_tokens = kSteps;
  opt.capture = models::CaptureOptions{};
  auto f32 = models::generate_greedy(make_decoder(m, 5), prompts, opt);
  auto bf16 = models::generate_greedy(make_decoder(m, 5, models::DType::BFloat16), prompts, opt);
  int64_t same = 0, total = 0, first_diverge = kSteps;
  for (size_t b = 0; b < prompts.size(); ++b) {
    for (size_t s = 0; s < f32.tokens[b].size(); ++s) {
      ++total;
      if (f32.tokens[b][s] == bf16.tokens[b][s]) ++same;
      else first_diverge = std::min<int64_t>(first_diverge, static_cast<int64_t>(s));
    }
  }
  const double argmax_agree =
      (f32.capture->argmax() == bf16.capture->argmax()).to(torch::kFloat32).mean().item<double>();
  std::printf("[%s] bf16 vs fp32: tokens %lld/%lld equal (first divergence at step %lld), "
              "capture argmax agreement %.3f\n", GetParam().c_str(), static_cast<long long>(same),
              static_cast<long long>(total), static_cast<long long>(first_diverge), argmax_agree);
  EXPECT_GT(total, 0);
}

naive::Intervention to_naive(models::HeadMaskMode mode) {
  switch (mode) {
    case models::HeadMaskMode::Uniform: return naive::Intervention::Uniform;
    case models::HeadMaskMode::Zero: return naive::Intervention::Zero;
    case models::HeadMaskMode::Mean: return naive::Intervention::Mean;
  }
  return naive::Intervention::Uniform;
}

TEST_P(FamilyTest, HeadMaskingMatchesHandBuiltNaiveIntervention) {
  const auto m = tiny::make_model(GetParam());
  const auto prompts = prompts_for(m.spec.vocab_size, 3);
  const std::vector<std::pair<int64_t, int64_t>> heads = {{0, 1}, {1, 0}, {1, m.spec.n_head - 1}};
  auto mean = torch::randn({m.spec.n_layer, m.spec.n_head, m.spec.head_dim});
  auto dec = make_decoder(m, 3);
  for (auto mode : {models::HeadMaskMode::Uniform, models::HeadMaskMode::Zero, models::HeadMaskMode::Mean}) {
    for (bool in_prefill : {false, true}) {
      models::HeadMask mask(m.spec, mode, heads, in_prefill, mean);
      models::GenerationOptions opt;
      opt.max_new_tokens = kSteps;
      opt.keep_logits = true;
      opt.mask = &mask;
      opt.capture = models::CaptureOptions{};
      auto res = models::generate_greedy(dec, prompts, opt);
      naive::HeadIntervention iv;
      iv.kind = to_naive(mode);
      iv.heads = {heads.begin(), heads.end()};
      iv.mean = mean;
      double worst = 0;
      for (size_t b = 0; b < prompts.size(); ++b) {
        auto ref = naive::generate(m.spec, m.weights, prompts[b], kSteps, &iv, in_prefill);
        EXPECT_EQ(res.tokens[b], ref.tokens) << models::head_mask_mode_name(mode) << " seq " << b;
        for (int64_t s = 0; s < kSteps; ++s) {
          worst = std::max(worst, rel_err(res.logits[static_cast<int64_t>(b)][s], ref.logits[static_cast<size_t>(s)]));
          if (mode == models::HeadMaskMode::Uniform) {
            for (const auto& [l, h] : heads) {  // uniform row: lowest index wins -> position 0
              EXPECT_EQ(res.capture->argmax()[static_cast<int64_t>(b)][s][l][h].item<int>(),
                        (m.spec.sliding_window && l >= m.spec.sliding_window_first_layer)
                            ? std::max<int64_t>(0, static_cast<int64_t>(prompts[b].size()) + s - *m.spec.sliding_window)
                            : 0);
            }
          }
        }
      }
      std::printf("[%s] mask %-7s in_prefill=%d: logits max rel err vs naive %.3g\n", GetParam().c_str(),
                  models::head_mask_mode_name(mode), in_prefill ? 1 : 0, worst);
      EXPECT_LT(worst, kFp32RelTol);
    }
  }
}

TEST_P(FamilyTest, EmptyMaskIsBitIdenticalAndFullLayerMaskChangesOutput) {
  const auto m = tiny::make_model(GetParam());
  const auto prompts = prompts_for(m.spec.vocab_size, 3);
  auto dec = make_decoder(m, 3);
  models::GenerationOptions opt;
  opt.max_new_tokens = kSteps;
  opt.keep_logits = true;
  auto plain = models::generate_greedy(dec, prompts, opt);
  models::HeadMask none(m.spec, models::HeadMaskMode::Uniform, {}, true);
  opt.mask = &none;
  auto with_none = models::generate_greedy(dec, prompts, opt);
  EXPECT_TRUE(torch::equal(plain.logits, with_none.logits));
  std::vector<std::pair<int64_t, int64_t>> layer0;
  for (int64_t h = 0; h < m.spec.n_head; ++h) layer0.push_back({0, h});
  models::HeadMask all(m.spec, models::HeadMaskMode::Uniform, layer0);
  opt.mask = &all;
  auto masked = models::generate_greedy(dec, prompts, opt);
  const double change = (masked.logits[0][0] - plain.logits[0][0]).abs().max().item<double>();
  std::printf("[%s] masking all heads of layer 0: first-step logits change by up to %.3g\n",
              GetParam().c_str(), change);
  EXPECT_GT(change, 1e-3);
}

TEST_P(FamilyTest, GenerateEachIsBitIdenticalToOneAtATime) {
  // Decoding several prompts together (generate_greedy_each -> Decoder::decode_step) must give every
  // prompt exactly, bit for bit, what generate_greedy gives it alone, through the same prefix cache
  // sequence: tokens, logits, argmaxes, top-k and span mass, with per-prompt caps, stops and masks, and
  // sequences leaving the batch at different steps. This is what lets a rank batch whichever cells it
  // holds while 1-rank and N-rank runs stay bitwise equal.
  const auto m = tiny::make_model(GetParam());
  const auto base = random_prompt(30, m.spec.vocab_size, 31);
  std::vector<std::vector<int64_t>> prompts;
  uint32_t seed = 70;
  for (int64_t shared : {30, 22, 22, 9, 0, 14}) {  // deepest "needle" first, as the generate stage runs them
    auto p = std::vector<int64_t>(base.begin(), base.begin() + shared);
    auto tail = random_prompt(8 + shared % 5, m.spec.vocab_size, seed++);
    p.insert(p.end(), tail.begin(), tail.end());
    prompts.push_back(p);
  }
  models::HeadMask mask(m.spec, models::HeadMaskMode::Zero, {{0, 1}, {1, 0}}, /*in_prefill=*/false);
  auto dec = make_decoder(m, 4);
  ASSERT_TRUE(dec.batch_invariant_decode());
  std::vector<models::GenerationOptions> options(prompts.size());
  for (size_t b = 0; b < prompts.size(); ++b) {
    options[b].max_new_tokens = 3 + static_cast<int64_t>(b % 3) * 2;  // 3, 5, 7 steps
    options[b].keep_logits = true;
    models::CaptureOptions cap;
    cap.top_k = 2;
    cap.spans.push_back({1, 6});
    options[b].capture = cap;
    if (b == 2) options[b].mask = &mask;
    if (b == 1) options[b].stop = [](int64_t, const std::vector<int64_t>& g) { return g.size() == 2; };
  }
  for (size_t batch : {prompts.size(), size_t{4}, size_t{1}}) {
    models::PrefixCache alone_prefix, batched_prefix;
    for (size_t first = 0; first < prompts.size(); first += batch) {
      const size_t end = std::min(prompts.size(), first + batch);
      std::vector<std::vector<int64_t>> some(prompts.begin() + first, prompts.begin() + end);
      std::vector<models::GenerationOptions> some_options(options.begin() + first, options.begin() + end);
      for (auto& o : some_options) o.prefix_cache = &batched_prefix;
      auto together = models::generate_greedy_each(dec, some, some_options);
      ASSERT_EQ(together.size(), some.size());
      for (size_t i = 0; i < some.size(); ++i) {
        models::GenerationOptions o = options[first + i];
        o.prefix_cache = &alone_prefix;
        auto alone = models::generate_greedy(dec, {some[i]}, o);
        const std::string where = "batch " + std::to_string(batch) + " prompt " + std::to_string(first + i);
        EXPECT_EQ(together[i].tokens, alone.tokens) << where;
        EXPECT_EQ(together[i].n_steps, alone.n_steps) << where;
        EXPECT_EQ(together[i].stopped, alone.stopped) << where;
        EXPECT_TRUE(torch::equal(together[i].logits, alone.logits)) << where;
        EXPECT_TRUE(torch::equal(together[i].capture->argmax(), alone.capture->argmax())) << where;
        EXPECT_TRUE(torch::equal(together[i].capture->top_prob(), alone.capture->top_prob())) << where;
        EXPECT_TRUE(torch::equal(together[i].capture->span_mass(), alone.capture->span_mass())) << where;
      }
    }
    EXPECT_EQ(batched_prefix.reused_tokens(), alone_prefix.reused_tokens()) << "batch " << batch;
    EXPECT_GT(batched_prefix.reused_tokens(), 0);
    EXPECT_EQ(batched_prefix.computed_tokens(), alone_prefix.computed_tokens()) << "batch " << batch;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyTest, ::testing::ValuesIn(tiny::family_names()),
                         [](const auto& param_info) { return param_info.param; });

TEST(Decoder, StopPredicateAndStopIdsStopPerSequence) {
  const auto m = tiny::make_model("llama");
  const auto prompts = prompts_for(m.spec.vocab_size, 3);
  auto dec = make_decoder(m, 0);
  models::GenerationOptions opt;
  opt.max_new_tokens = kSteps;
  opt.capture = models::CaptureOptions{};
  auto free_run = models::generate_greedy(dec, prompts, opt);
  // Stop sequence 0 after its 3rd token via the predicate, sequence 1 on its 2nd token's id.
  opt.stop = [](int64_t seq, const std::vector<int64_t>& gen) { return seq == 0 && gen.size() == 3; };
  opt.stop_token_ids = {free_run.tokens[1][1]};
  auto res = models::generate_greedy(dec, prompts, opt);
  EXPECT_EQ(res.n_steps[0], 3);
  EXPECT_TRUE(res.stopped[0]);
  EXPECT_EQ(res.tokens[0], std::vector<int64_t>(free_run.tokens[0].begin(), free_run.tokens[0].begin() + 3));
  EXPECT_LE(res.n_steps[1], 2);
  EXPECT_EQ(res.tokens[1].back(), free_run.tokens[1][1]);
  // The stopping step is captured, the steps after it are -1.
  EXPECT_TRUE(torch::equal(res.capture->argmax()[0].narrow(0, 0, 3), free_run.capture->argmax()[0].narrow(0, 0, 3)));
  EXPECT_TRUE((res.capture->argmax()[0].narrow(0, 3, kSteps - 3) == -1).all().item<bool>());
}

TEST(Decoder, ArgmaxOnBf16RowMatchesCastNaiveRow) {
  const auto m = tiny::make_model("yi");
  const auto prompt = prompts_for(m.spec.vocab_size, 1)[0];
  auto ref = naive::generate(m.spec, m.weights, prompt, kSteps);
  models::GenerationOptions opt;
  opt.max_new_tokens = kSteps;
  models::CaptureOptions cap;
  cap.argmax_on_bf16_row = true;
  opt.capture = cap;
  auto res = models::generate_greedy(make_decoder(m, 0), {prompt}, opt);
  int64_t mismatches = 0;
  for (int64_t s = 0; s < kSteps; ++s) {
    auto expect = ref.last_rows[static_cast<size_t>(s)].to(torch::kBFloat16).argmax(-1).to(torch::kInt32);
    mismatches += (res.capture->argmax()[0][s] != expect).sum().item<int64_t>();
  }
  std::printf("bf16-row argmax mismatches vs naive: %lld (rows within 1 bf16 ulp may flip)\n",
              static_cast<long long>(mismatches));
  EXPECT_LE(mismatches, 2);
}

TEST(Decoder, WrongShapeNamesTensorAndShapes) {
  auto m = tiny::make_model("llama");
  m.weights["model.layers.1.self_attn.k_proj.weight"] = torch::zeros({8, 64});
  try {
    models::Decoder dec(m.spec, m.lookup());
    FAIL() << "expected ShapeError";
  } catch (const pipeline::ShapeError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("model.layers.1.self_attn.k_proj.weight"), std::string::npos) << what;
    EXPECT_NE(what.find("[8, 64]"), std::string::npos) << what;
    EXPECT_NE(what.find("[64, 64]"), std::string::npos) << what;
  }
  auto m2 = tiny::make_model("llama");
  m2.spec.tensor_names.erase("up_proj");
  try {  // the resolver (models/model_config.h) throws a ModelError, an InputError
    models::Decoder dec(m2.spec, m2.lookup());
    FAIL() << "expected an error for the missing logical name";
  } catch (const pipeline::Error& e) {
    EXPECT_NE(std::string(e.what()).find("up_proj"), std::string::npos) << e.what();
  }
  auto m3 = tiny::make_model("llama");
  m3.weights.erase("model.norm.weight");
  EXPECT_THROW(models::Decoder(m3.spec, m3.lookup()), pipeline::InputError);
}

TEST(Projection, FewRowsAndManyRowsMatchAFloat64Product) {
  // models::project runs up to kRowProjectionMaxRows fp32 CPU rows through the batch-invariant kernel
  // (models/row_projection.h) and everything else as torch's linear; both must be the same function up
  // to fp32 rounding, with and without bias, in every shape (K and N off the kernel's 8 / 4 blocking too).
  torch::manual_seed(7);
  for (const auto& [n, k] : std::vector<std::pair<int64_t, int64_t>>{{48, 32}, {45, 37}, {3, 5}, {130, 520}}) {
    auto w = torch::randn({n, k});
    auto b = torch::randn({n});
    for (const std::vector<int64_t>& lead : {std::vector<int64_t>{1, 1}, {1}, {}, {2, 3}, {5, 1}, {33}, {40, 2}}) {
      std::vector<int64_t> shape = lead;
      shape.push_back(k);
      auto x = torch::randn(shape);
      auto ref = torch::matmul(x.to(torch::kFloat64), w.to(torch::kFloat64).t());
      auto y = models::project(x, w);
      std::vector<int64_t> expected = shape;
      expected.back() = n;
      EXPECT_EQ(y.sizes().vec(), expected);
      EXPECT_LT(rel_err(y.to(torch::kFloat64), ref), 1e-6) << n << "x" << k << ", " << x.numel() / k << " rows";
      EXPECT_LT(rel_err(models::project(x, w, b).to(torch::kFloat64), ref + b.to(torch::kFloat64)), 1e-6);
    }
  }
  // A non-contiguous x (a column slice) gives the same bits as its contiguous copy.
  auto w = torch::randn({24, 16});
  auto wide = torch::randn({3, 40});
  EXPECT_TRUE(torch::equal(models::project(wide.narrow(1, 8, 16), w), models::project(wide.narrow(1, 8, 16).contiguous(), w)));
  // bf16 keeps torch's linear (same bits).
  auto xb = torch::randn({1, 1, 16}).to(torch::kBFloat16);
  auto wb = w.to(torch::kBFloat16);
  EXPECT_TRUE(torch::equal(models::project(xb, wb), torch::nn::functional::linear(xb, wb)));
}

TEST(Projection, EveryRowGetsTheSameBitsInAnyBatchAndThreadCount) {
  // The property cross-cell decode batching rests on (models/row_projection.h): row r of a batch equals
  // row r projected alone, bit for bit, for every batch size, position in the batch and thread count.
  // (OpenBLAS's GEMM breaks this from 13 rows on: docs/BENCHMARKS.md, change 8.)
  torch::manual_seed(11);
  const int old_threads = torch::get_num_threads();
  for (const auto& [n, k] : std::vector<std::pair<int64_t, int64_t>>{{1024, 512}, {512, 1024}, {45, 512}, {37, 29}}) {
    auto w = torch::randn({n, k});
    auto b = torch::randn({n});
    auto x = torch::randn({models::kRowProjectionMaxRows + 4, k}) * 3;
    torch::set_num_threads(1);
    std::vector<torch::Tensor> alone;
    for (int64_t r = 0; r < x.size(0); ++r) alone.push_back(models::project(x[r], w, b));
    for (int threads : {1, 2}) {
      torch::set_num_threads(threads);
      for (int64_t m = 1; m <= models::kRowProjectionMaxRows; ++m) {
        for (int64_t first : {int64_t{0}, x.size(0) - m, (x.size(0) - m) / 2}) {
          auto y = models::project(x.narrow(0, first, m), w, b);
          for (int64_t i = 0; i < m; ++i) {
            ASSERT_TRUE(torch::equal(y[i], alone[static_cast<size_t>(first + i)]))
                << n << "x" << k << ": row " << first + i << " in a batch of " << m << " at " << i << ", " << threads
                << " threads";
          }
        }
      }
    }
  }
  torch::set_num_threads(old_threads);
}

TEST(Rope, DynamicNtkMatchesHfFormula) {
  auto spec = tiny::make_spec("llama");
  spec.rope_scaling = models::RopeScaling::Dynamic;
  spec.rope_scaling_factor = 2.0;
  spec.max_position_embeddings = 8;
  models::Rope rope(spec);
  const int64_t d = spec.head_dim;
  auto positions = torch::arange(0, 12, torch::kInt64).view({1, -1});  // seq_len 12 > 8
  auto [cos, sin] = rope.cos_sin(positions, torch::kFloat32);
  const double base = spec.rope_theta * std::pow(2.0 * 12 / 8 - 1.0, static_cast<double>(d) / (d - 2));
  for (int64_t p : {0, 5, 11}) {
    for (int64_t i = 0; i < d / 2; ++i) {
      const double angle = p / std::pow(base, 2.0 * i / d);
      EXPECT_NEAR(cos[0][0][p][i].item<double>(), std::cos(angle), 1e-5);
      EXPECT_NEAR(sin[0][0][p][i + d / 2].item<double>(), std::sin(angle), 1e-5);
    }
  }
  auto short_pos = torch::arange(0, 8, torch::kInt64).view({1, -1});  // no scaling at <= max
  auto [c2, s2] = rope.cos_sin(short_pos, torch::kFloat32);
  EXPECT_NEAR(c2[0][0][7][1].item<double>(), std::cos(7.0 / std::pow(spec.rope_theta, 2.0 / d)), 1e-5);
}

}  // namespace
