#include "stages/train/train_stage.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "models/checkpoint.h"
#include "models/cpu_compute.h"
#include "models/model_config.h"
#include "models/trainable.h"
#include "pipeline/core/error.h"
#include "pipeline/core/fnv1a.h"
#include "pipeline/core/logging.h"
#include "pipeline/runner/runner.h"
#include "stages/train/toy_world.h"

namespace stages {

namespace fs = std::filesystem;
using pipeline::fnv1a;
using pipeline::ConfigError;
using pipeline::KeyType;

int64_t training_length(int64_t step, int64_t steps, int64_t shortest, int64_t context, bool continued,
                        double full_share, SplitMix64& rng) {
  // Length curriculum: short sequences first, rising linearly to the full context half-way through
  // (multiples of 16; the batch keeps the tokens per step constant). From scratch it starts at
  // curriculum_start: at initialisation a head spreads its attention over the whole prefix, so the
  // gradient towards the one right position scales like 1 / length and recall forms far sooner over
  // short distances (measured: no recall after 1500 steps at 128 tokens, recall by ~800 steps from 32).
  // Continued pretraining at a longer context (long) starts at the parent's context, so the learned
  // heads are stretched rather than swamped by 4x longer distractor spans.
  if (shortest >= context) return context;
  if (step < steps / 2) {
    const int64_t length = shortest + (context - shortest) * step / std::max<int64_t>(1, steps / 2);
    return std::max<int64_t>(shortest, length / 16 * 16);
  }
  // After its ramp, continued pretraining spends 1 - full_share of its steps at a length drawn from
  // [parent context, context]: long keeps its skill at the parent's lengths, where the ablation grid tests
  // every member (measured: with every step at 512, masking 5 random heads kept 71 % of long's NIAH at
  // 96-128 tokens; with half the steps drawn, 91 %; docs/ZOO.md step 5).
  if (continued && static_cast<double>(rng.next() >> 11) * 0x1.0p-53 >= full_share) {
    return shortest + static_cast<int64_t>(rng.uniform_below(static_cast<uint64_t>((context - shortest) / 16 + 1))) * 16;
  }
  return context;
}

namespace {

const std::vector<std::string> kZoo = {"base", "long", "chat", "moe", "other"};

constexpr double kDefaultAdamEps = 1e-8;  // AdamW's epsilon in torch and in the v7 recipe ("1e-8" below)
constexpr double kDefaultInitStd = 0.02;  // fresh weights' standard deviation in the v7 recipe ("0.02" below)

struct TrainSettings {
  fs::path out;  // zoo folder: <out>/<model>, <out>/world
  std::vector<std::string> models;
  int64_t hidden = 0, layers = 0, heads = 0, kv_heads = 0, ffn = 0;
  int64_t head_dim = 0;  // 0: hidden / heads
  int64_t threads = 1;   // compute threads per rank while training (0: the job's)
  int64_t context = 0, long_factor = 0, batch = 0, long_batch = 0, eval_every = 0, n_expert = 0;
  double rope_theta = 0, long_rope_theta = 0, lr = 0, finetune_lr = 0, answer_weight = 0;
  double weight_decay = 0, head_sparsity = 0;
  double filler_values = 0;  // chance that a filler adjective is a value word (ToyWorld)
  int64_t needle_values = ToyWorld::kDefaultNeedleValueWords;  // words of every needle's value (ToyWorld)
  double adam_eps = kDefaultAdamEps;  // larger values damp the updates of parameters with small gradients
  double init_std = kDefaultInitStd;  // N(0, init_std) fresh matrices (models::TrainableModel)
  int64_t start_heads = 0;     // from scratch: heads per layer that train from step 0 (0: every head)
  double all_heads_from = 0;   // ... and the share of the steps after which every head trains
  std::string road_facts = "none";  // what of a reasoning item is in its context: none, start, fresh, map (ToyWorld)
  int64_t road_steps = 2;           // roads a reasoning question follows (ToyWorld)
  std::vector<double> mix;  // niah, qa, reasoning, copy
  std::vector<double> late_mix;  // from scratch, after late_mix_from x steps: the mix then (empty: none)
  double late_mix_from = 0;
  std::map<std::string, int64_t> steps;
  std::string other_family;
  int64_t qa_items = 0, reasoning_items = 0, qa_context_words = 0, curriculum_start = 0;
  double long_full_share = 0;  // long after its ramp: share of steps at the full context
  uint64_t seed = 0;

  // Dimensions per attention head: head_dim, or hidden / heads when it is 0 (0 when that does not divide).
  int64_t head_size() const {
    if (head_dim > 0) return head_dim;
    return heads > 0 && hidden % heads == 0 ? hidden / heads : 0;
  }
};

TrainSettings read_settings(const pipeline::Config& c, const fs::path& run_dir) {
  TrainSettings s;
  std::string out = c.get_string("train.out");
  s.out = out.empty() ? run_dir / "zoo" : fs::path(out);
  s.models = c.get_strings("train.models");
  s.hidden = c.get_int("train.hidden");
  s.layers = c.get_int("train.layers");
  s.heads = c.get_int("train.heads");
  s.kv_heads = c.get_int("train.kv_heads");
  s.head_dim = c.get_int("train.head_dim");
  s.threads = c.get_int("train.threads");
  s.ffn = c.get_int("train.ffn");
  s.context = c.get_int("train.context");
  s.long_factor = c.get_int("train.long_factor");
  s.batch = c.get_int("train.batch");
  s.long_batch = c.get_int("train.long_batch");
  s.eval_every = c.get_int("train.eval_every");
  s.n_expert = c.get_int("train.experts");
  s.rope_theta = c.get_float("train.rope_theta");
  s.long_rope_theta = c.get_float("train.long_rope_theta");
  s.lr = c.get_float("train.lr");
  s.finetune_lr = c.get_float("train.finetune_lr");
  s.answer_weight = c.get_float("train.answer_weight");
  s.weight_decay = c.get_float("train.weight_decay");
  s.head_sparsity = c.get_float("train.head_sparsity");
  s.adam_eps = c.get_float("train.adam_eps");
  s.init_std = c.get_float("train.init_std");
  s.start_heads = c.get_int("train.start_heads");
  s.all_heads_from = c.get_float("train.all_heads_from");
  s.road_facts = c.get_string("train.road_facts");
  s.road_steps = c.get_int("train.road_steps");
  s.filler_values = c.get_float("train.filler_values");
  s.needle_values = c.get_int("train.needle_values");
  s.mix = c.get_floats("train.mix");
  s.late_mix = c.get_floats("train.late_mix");
  s.late_mix_from = c.get_float("train.late_mix_from");
  for (const auto& m : kZoo) s.steps[m] = c.get_int("train." + m + "_steps");
  s.other_family = c.get_string("train.other_family");
  s.qa_items = c.get_int("train.qa_items");
  s.reasoning_items = c.get_int("train.reasoning_items");
  s.qa_context_words = c.get_int("train.qa_context_words");
  s.curriculum_start = c.get_int("train.curriculum_start");
  s.long_full_share = c.get_float("train.long_full_share");
  s.seed = static_cast<uint64_t>(c.get_int("job.seed"));
  return s;
}

uint64_t name_seed(uint64_t seed, const std::string& name) { return seed ^ fnv1a(name); }

// [train] mix or late_mix (four shares, checked by validate) -> a copy of `mix` with those shares.
TrainingMix with_shares(TrainingMix mix, const std::vector<double>& shares) {
  mix.niah = shares.at(0);
  mix.qa = shares.at(1);
  mix.reasoning = shares.at(2);
  mix.copy = shares.at(3);
  return mix;
}

// Four shares >= 0 with a positive sum: what mix and late_mix take.
bool valid_shares(const std::vector<double>& shares) {
  return shares.size() == 4 && std::all_of(shares.begin(), shares.end(), [](double v) { return v >= 0; }) &&
         shares[0] + shares[1] + shares[2] + shares[3] > 0;
}

// [train] road_facts (checked by validate) -> the world's setting.
ToyWorld::RoadFacts road_facts(const std::string& name) {
  if (name == "fresh") return ToyWorld::RoadFacts::kFresh;
  if (name == "map") return ToyWorld::RoadFacts::kMap;
  if (name == "start") return ToyWorld::RoadFacts::kStart;
  return ToyWorld::RoadFacts::kNone;
}

// One model's recipe: where it starts, its architecture, data and schedule.
struct Recipe {
  std::string name;
  std::string parent;      // "" = from scratch
  std::string family;      // llama, mixtral, qwen2
  int64_t context = 0;     // training sequence length = max_position_embeddings
  double rope_theta = 0;
  int64_t batch = 0;
  int64_t steps = 0;
  double lr = 0;
  uint64_t init_seed = 0;  // fresh weights / router
  TrainingMix mix;
  TrainingMix late_mix;        // the mix from late_mix_step on
  int64_t late_mix_step = -1;  // -1: the same mix throughout

  std::string describe(const TrainSettings& s) const {
    std::ostringstream o;
    o << "toyzoo-v8 " << name << " parent=" << parent << " family=" << family << " ctx=" << context
      << " theta=" << rope_theta << " batch=" << batch << " steps=" << steps << " lr=" << lr << " seed=" << init_seed
      << " mix=" << mix.niah << "/" << mix.qa << "/" << mix.reasoning << "/" << mix.copy << "/" << mix.chat << "/" << mix.answer_weight
      << " dims=" << s.hidden << "x" << s.layers << "x" << s.heads << "/" << s.kv_heads << "x" << s.ffn
      << " experts=" << s.n_expert << " curriculum=" << s.curriculum_start << " wd=" << s.weight_decay << " world=" << s.seed
      << " long_full=" << s.long_full_share;
    // Keys added after v7 appear only when set (v8 sets head_dim and start_heads), so a recipe string
    // names every setting its weights depend on.
    if (s.head_dim > 0) o << " head_dim=" << s.head_dim;
    if (s.threads != 1) o << " threads=" << s.threads;  // the weights depend on it (summation order)
    if (s.head_sparsity > 0) o << " head_sparsity=" << s.head_sparsity;
    if (s.adam_eps != kDefaultAdamEps) o << " adam_eps=" << s.adam_eps;
    if (s.filler_values > 0) o << " filler_values=" << s.filler_values;
    if (s.init_std != kDefaultInitStd) o << " init_std=" << s.init_std;
    if (s.needle_values != ToyWorld::kDefaultNeedleValueWords) o << " needle_values=" << s.needle_values;
    if (s.start_heads > 0) o << " start_heads=" << s.start_heads << "@" << s.all_heads_from;
    if (s.road_facts != "none") o << " road_facts=" << s.road_facts;
    if (s.road_steps != 2) o << " road_steps=" << s.road_steps;
    if (!s.late_mix.empty()) {
      o << " late_mix=" << s.late_mix[0] << "/" << s.late_mix[1] << "/" << s.late_mix[2] << "/" << s.late_mix[3] << "@"
        << s.late_mix_from;
    }
    return o.str();
  }
};

Recipe recipe_for(const std::string& name, const TrainSettings& s) {
  Recipe r;
  r.name = name;
  r.family = "llama";
  r.context = s.context;
  r.rope_theta = s.rope_theta;
  r.batch = s.batch;
  r.steps = s.steps.at(name);
  r.lr = s.lr;
  r.init_seed = name_seed(s.seed, name);
  r.mix.answer_weight = static_cast<float>(s.answer_weight);
  r.mix = with_shares(r.mix, s.mix);
  if (name == "other") r.family = s.other_family;
  if (name == "long" || name == "chat" || name == "moe") {
    r.parent = "base";
    r.lr = s.finetune_lr;
  }
  if (name == "long") {
    r.context = s.context * s.long_factor;
    r.rope_theta = s.long_rope_theta;
    r.batch = s.long_batch;
  }
  if (name == "chat") r.mix.chat = true;
  if (!s.late_mix.empty() && r.parent.empty()) {
    r.late_mix = with_shares(r.mix, s.late_mix);
    r.late_mix_step = static_cast<int64_t>(std::llround(s.late_mix_from * static_cast<double>(r.steps)));
  }
  if (name == "moe") r.family = "mixtral";
  return r;
}

models::ModelSpec spec_for(const Recipe& r, const TrainSettings& s, int64_t vocab_size) {
  nlohmann::json cfg = {{"hidden_size", s.hidden},
                        {"intermediate_size", s.ffn},
                        {"num_hidden_layers", s.layers},
                        {"num_attention_heads", s.heads},
                        {"num_key_value_heads", s.kv_heads},
                        {"rms_norm_eps", 1e-5},
                        {"rope_theta", r.rope_theta},
                        {"max_position_embeddings", r.context},
                        {"vocab_size", vocab_size},
                        {"tie_word_embeddings", false},
                        {"bos_token_id", 1},
                        {"eos_token_id", 2},
                        {"torch_dtype", "float32"}};
  if (s.head_dim > 0) cfg["head_dim"] = s.head_dim;  // q/k/v width n_head * head_dim, decoupled from hidden
  if (r.family == "llama") {
    cfg["architectures"] = {"LlamaForCausalLM"};
    cfg["model_type"] = "llama";
  } else if (r.family == "mixtral") {
    cfg["architectures"] = {"MixtralForCausalLM"};
    cfg["model_type"] = "mixtral";
    cfg["num_local_experts"] = s.n_expert;
    cfg["num_experts_per_tok"] = 2;
    cfg["sliding_window"] = nullptr;
  } else if (r.family == "qwen2") {
    cfg["architectures"] = {"Qwen2ForCausalLM"};
    cfg["model_type"] = "qwen2";
    cfg["use_sliding_window"] = false;
  }
  return models::model_spec_from_config(cfg, models::load_family(r.family), "toy zoo '" + r.name + "'");
}

// Teacher-forced accuracy on answer tokens (weight == answer weight) of a fixed held-out batch.
double answer_accuracy(const models::TrainableModel& model, const torch::Tensor& ids, const torch::Tensor& is_answer) {
  torch::NoGradGuard no_grad;
  auto logits = model.forward(ids.narrow(1, 0, ids.size(1) - 1));
  auto hit = (logits.argmax(-1) == ids.narrow(1, 1, ids.size(1) - 1)) & is_answer;
  return hit.sum().item<double>() / std::max(1.0, is_answer.sum().item<double>());
}

struct Batch {
  torch::Tensor ids;      // [B, T] int64
  torch::Tensor weights;  // [B, T-1] fp32: weight of predicting ids[:, 1:]
};

Batch make_batch(const ToyWorld& world, SplitMix64& rng, int64_t batch, int64_t length, const TrainingMix& mix) {
  std::vector<int64_t> ids;
  std::vector<float> weights;
  for (int64_t b = 0; b < batch; ++b) {
    TrainingSequence seq = world.sample(rng, length, mix);
    ids.insert(ids.end(), seq.ids.begin(), seq.ids.end());
    weights.insert(weights.end(), seq.weights.begin() + 1, seq.weights.end());
  }
  Batch out;
  out.ids = torch::tensor(ids, torch::kInt64).view({batch, length});
  out.weights = torch::tensor(weights, torch::kFloat32).view({batch, length - 1});
  return out;
}

struct TrainLog {
  std::vector<double> loss;                       // per step
  std::vector<std::pair<int64_t, double>> accuracy;  // (step, held-out answer-token accuracy)
  double seconds = 0;
  int64_t parameters = 0;
};

// What a member's weights follow from: its recipe and, for a fine-tune, its parent's lineage (a chat
// trained from an older base is stale when base is retrained). Its hash marks a member as trained.
std::string lineage(const std::string& name, const TrainSettings& s) {
  const Recipe r = recipe_for(name, s);
  return r.describe(s) + (r.parent.empty() ? "" : "\nfrom " + lineage(r.parent, s));
}

// A member's starting weights: fresh (from scratch) or its parent's, upcycled into experts for moe.
std::unique_ptr<models::TrainableModel> initial_model(const Recipe& r, const TrainSettings& s,
                                                      const models::ModelSpec& spec, const fs::path& zoo) {
  if (r.parent.empty()) return std::make_unique<models::TrainableModel>(spec, r.init_seed, s.init_std);
  models::ModelFolder parent = models::load_model_folder(zoo / r.parent);
  models::TensorMap tensors;
  for (const auto& n : parent.names()) tensors[n] = parent.tensor(n).clone();
  if (spec.mlp == models::MlpKind::SparseMoe) tensors = models::upcycle_to_moe(parent.spec, tensors, spec, r.init_seed);
  return std::make_unique<models::TrainableModel>(spec, tensors);
}

// Staged heads (start_heads): a seeded choice of start_heads heads per layer trains alone until
// all_heads_from x steps, then every head joins (the silenced ones with their initial weights, shrunk by
// weight decay). The idea (docs/ZOO.md): the copy circuit forms in however many heads are there when
// recall forms, so fewer heads at that moment give fewer retrieval heads.
struct StagedHeads {
  int64_t every_head_from = 0;  // the step every head joins; 0: no stage (every head from step 0)
  torch::Tensor gate;           // [layers, heads]: 1 for the heads that train from step 0
  nlohmann::json chosen = nlohmann::json::array();  // [[layer, head], ...] for train_meta.json
  std::string description;      // "layer 0: 3 9; layer 1: ..." for the log
};

// Only members trained from scratch; a stage that would end at step 0 is no stage at all.
StagedHeads staged_heads(const Recipe& r, const TrainSettings& s) {
  StagedHeads staged;
  staged.every_head_from = static_cast<int64_t>(std::llround(s.all_heads_from * static_cast<double>(r.steps)));
  if (s.start_heads == 0 || s.start_heads >= s.heads || !r.parent.empty()) staged.every_head_from = 0;
  if (staged.every_head_from == 0) return staged;
  SplitMix64 pick(r.init_seed ^ 0x6865616473ull);
  staged.gate = torch::zeros({s.layers, s.heads});
  for (int64_t l = 0; l < s.layers; ++l) {
    std::vector<int64_t> order(static_cast<size_t>(s.heads));
    for (int64_t h = 0; h < s.heads; ++h) order[static_cast<size_t>(h)] = h;
    for (int64_t i = s.heads - 1; i > 0; --i) {  // Fisher-Yates with the job's own generator
      std::swap(order[static_cast<size_t>(i)], order[pick.uniform_below(static_cast<uint64_t>(i + 1))]);
    }
    std::sort(order.begin(), order.begin() + s.start_heads);
    staged.description += (l ? "; layer " : "layer ") + std::to_string(l) + ":";
    for (int64_t i = 0; i < s.start_heads; ++i) {
      staged.gate[l][order[static_cast<size_t>(i)]] = 1.0;
      staged.chosen.push_back({l, order[static_cast<size_t>(i)]});
      staged.description += " " + std::to_string(order[static_cast<size_t>(i)]);
    }
  }
  return staged;
}

// Linear warm-up, cosine decay to 10 %.
double learning_rate(const Recipe& r, int64_t step, int64_t warmup) {
  if (step < warmup) return r.lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  // M_PI * (step - warmup) first, then the division: the rounding the recipe was trained with.
  const double angle =
      M_PI * static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, r.steps - warmup));
  return r.lr * (0.1 + 0.45 * (1 + std::cos(angle)));
}

// One line of progress: step, loss, the latest held-out accuracy, rate and ETA.
void log_progress(const Recipe& r, const std::string& rank_tag, int64_t step, const TrainLog& log, double seconds) {
  const double rate = static_cast<double>(step + 1) / seconds;
  std::ostringstream acc;
  if (!log.accuracy.empty()) {
    acc << ", held-out NIAH answer accuracy " << std::fixed << std::setprecision(3) << log.accuracy.back().second
        << " (step " << log.accuracy.back().first << ")";
  }
  pipeline::log::info("train ", r.name, rank_tag, ": step ", step + 1, "/", r.steps, ", loss ", std::fixed,
                      std::setprecision(3), log.loss.back(), acc.str(), ", ", std::setprecision(2), rate,
                      " steps/s, ETA ", std::setprecision(0), static_cast<double>(r.steps - step - 1) / rate, " s");
}

// Saves a trained member atomically (<name>.partial, then rename) as a Hugging Face folder with the
// world's tokenizer; train_meta.json, written last, is the completion marker.
void save_member(const Recipe& r, const TrainSettings& s, const ToyWorld& world, const fs::path& zoo,
                 const models::ModelSpec& spec, const models::TrainableModel& model, const TrainLog& log,
                 const StagedHeads& staged) {
  const fs::path dir = zoo / r.name, tmp = zoo / (r.name + ".partial");
  fs::remove_all(tmp);
  models::save_model_folder(tmp, spec, model.tensors());
  world.write_tokenizer(tmp);
  nlohmann::json meta = {{"recipe", r.describe(s)},
                         {"recipe_hash", std::to_string(fnv1a(lineage(r.name, s)))},
                         {"job_seed", s.seed},
                         {"host", models::compute_host_description()},  // the weights depend on it
                         {"seconds", log.seconds},
                         {"parameters", log.parameters},
                         {"loss", log.loss}};
  for (const auto& [st, a] : log.accuracy) meta["accuracy"].push_back({st, a});
  if (staged.every_head_from > 0) {
    meta["staged_heads"] = {{"heads_from_step_0", staged.chosen}, {"every_head_from_step", staged.every_head_from}};
  }
  std::ofstream(tmp / "train_meta.json") << meta.dump(1) << "\n";
  fs::remove_all(dir);
  fs::rename(tmp, dir);
}

TrainLog train_model(const Recipe& r, const TrainSettings& s, const ToyWorld& world, const fs::path& zoo,
                     const std::string& rank_tag) {
  const models::ModelSpec spec = spec_for(r, s, static_cast<int64_t>(world.vocab().size()));
  std::unique_ptr<models::TrainableModel> model = initial_model(r, s, spec, zoo);
  TrainLog log;
  log.parameters = model->parameter_count();
  auto params = model->parameters();
  torch::optim::AdamW opt(
      params, torch::optim::AdamWOptions(r.lr).betas({0.9, 0.95}).eps(s.adam_eps).weight_decay(s.weight_decay));

  // Held out: needle-in-a-haystack samples only (the ability the zoo exists for), at full context.
  SplitMix64 val_rng(r.init_seed ^ 0x76616cull);
  TrainingMix val_mix = r.mix;
  val_mix.niah = 1.0;
  val_mix.qa = val_mix.reasoning = val_mix.copy = 0.0;
  Batch val = make_batch(world, val_rng, 16, r.context, val_mix);
  torch::Tensor val_answer = val.weights == static_cast<float>(r.mix.answer_weight);

  const StagedHeads staged = staged_heads(r, s);
  if (staged.every_head_from > 0) {
    model->set_head_gate(staged.gate);
    pipeline::log::info("train ", r.name, rank_tag, ": heads training from step 0 (", staged.description,
                        "); every head from step ", staged.every_head_from);
  }

  SplitMix64 rng(r.init_seed ^ 0x747261696eull);
  const int64_t warmup = std::min<int64_t>(50, r.steps / 10 + 1);
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  double last_report = 0;
  for (int64_t step = 0; step < r.steps; ++step) {
    if (staged.every_head_from > 0 && step == staged.every_head_from) model->set_head_gate(torch::Tensor());
    if (step == r.late_mix_step) {
      const TrainingMix& m = r.late_mix;
      pipeline::log::info("train ", r.name, rank_tag, ": the late mix (niah, qa, reasoning, copy ", m.niah, ", ", m.qa,
                          ", ", m.reasoning, ", ", m.copy, ") from step ", step);
    }
    const double lr = learning_rate(r, step, warmup);
    for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    const int64_t shortest = std::min<int64_t>(r.parent.empty() ? s.curriculum_start : s.context, r.context);
    const int64_t length = training_length(step, r.steps, shortest, r.context, !r.parent.empty(), s.long_full_share, rng);
    const TrainingMix& mix = r.late_mix_step >= 0 && step >= r.late_mix_step ? r.late_mix : r.mix;
    Batch b = make_batch(world, rng, r.batch * r.context / length, length, mix);
    auto logits = model->forward(b.ids.narrow(1, 0, length - 1));  // [B, T-1, V]
    auto nll = torch::nn::functional::cross_entropy(
        logits.reshape({-1, logits.size(-1)}), b.ids.narrow(1, 1, length - 1).reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    auto w = b.weights.reshape({-1});
    auto loss = (nll * w).sum() / w.sum();  // the task loss, what the log records
    auto objective = s.head_sparsity > 0 ? loss + s.head_sparsity * model->head_output_norms().sum() : loss;
    opt.zero_grad();
    objective.backward();
    torch::nn::utils::clip_grad_norm_(params, 1.0);
    opt.step();
    log.loss.push_back(loss.item<double>());
    const bool last = step + 1 == r.steps;
    if ((s.eval_every > 0 && (step + 1) % s.eval_every == 0) || last) {
      log.accuracy.emplace_back(step + 1, answer_accuracy(*model, val.ids, val_answer));
    }
    if (elapsed() - last_report > 10.0 || last) {
      last_report = elapsed();
      log_progress(r, rank_tag, step, log, last_report);
    }
  }
  log.seconds = elapsed();
  save_member(r, s, world, zoo, spec, *model, log, staged);
  return log;
}

// True when `dir` holds the member trained with this lineage (the hash in its train_meta.json).
bool is_trained(const fs::path& dir, const std::string& lineage_text) {
  std::ifstream f(dir / "train_meta.json");
  if (!f) return false;
  try {
    nlohmann::json meta = nlohmann::json::parse(f);
    return meta.value("recipe_hash", "") == std::to_string(fnv1a(lineage_text));
  } catch (const std::exception&) {
    return false;  // damaged marker: retrain
  }
}

}  // namespace

void TrainStage::declare(pipeline::ConfigSchema& schema) const {
  schema.optional("train.out", KeyType::String, "", "zoo folder (empty: <run_dir>/zoo); models in <out>/<name>")
      .optional("train.models", KeyType::StringList, "base, long, chat, moe, other",
                "zoo members to train (long, chat and moe need base)")
      .optional("train.hidden", KeyType::Int, "64", "hidden size")
      .optional("train.layers", KeyType::Int, "4", "decoder layers")
      .optional("train.heads", KeyType::Int, "16", "query heads per layer")
      .optional("train.kv_heads", KeyType::Int, "16", "key/value heads per layer (GQA)")
      .optional("train.head_dim", KeyType::Int, "8", "dimensions per attention head (0: hidden / heads)")
      .optional("train.threads", KeyType::Int, "1",
                "compute threads per rank while training (0: the job's threads). The trained weights depend on "
                "it (summation order), so the default 1 trains the same zoo from the same seed whatever the "
                "core count; more threads train faster but another zoo")
      .optional("train.ffn", KeyType::Int, "128", "SwiGLU intermediate size (per expert for moe)")
      .optional("train.experts", KeyType::Int, "4", "experts of the upcycled moe (2 used per token)")
      .optional("train.context", KeyType::Int, "128", "training context of base, chat, moe and other")
      .optional("train.long_factor", KeyType::Int, "4", "long: context multiplier for continued pretraining")
      .optional("train.rope_theta", KeyType::Float, "10000", "RoPE base of the short-context models")
      .optional("train.long_rope_theta", KeyType::Float, "40000", "RoPE base of long")
      .optional("train.batch", KeyType::Int, "32", "sequences per step")
      .optional("train.long_batch", KeyType::Int, "4", "sequences per step for long")
      .optional("train.lr", KeyType::Float, "3e-3", "peak learning rate from scratch (AdamW, cosine)")
      .optional("train.finetune_lr", KeyType::Float, "5e-4", "peak learning rate of long, chat and moe")
      .optional("train.answer_weight", KeyType::Float, "10", "loss weight of answer tokens")
      .optional("train.weight_decay", KeyType::Float, "0.1", "AdamW weight decay")
      .optional("train.filler_values", KeyType::Float, "0",
                "chance that a filler adjective is a value word (needle words then also occur in the haystack)")
      .optional("train.needle_values", KeyType::Int, "3",
                "words of every needle's value, in training and in the evaluation needles (the answer span "
                "that detection scores)")
      .optional("train.adam_eps", KeyType::Float, "1e-8", "AdamW epsilon (the denominator's floor)")
      .optional("train.init_std", KeyType::Float, "0.02",
                "standard deviation of fresh weight matrices (output projections: / sqrt(2 layers))")
      .optional("train.head_sparsity", KeyType::Float, "0",
                "group-lasso weight on each attention head's output-projection norm, every member (0: off; "
                "docs/ZOO.md: it does not make retrieval heads reliably sparser)")
      .optional("train.start_heads", KeyType::Int, "2",
                "base and other: heads per layer (a seeded choice) that train from the first step; the others "
                "join at all_heads_from (0: every head from the start)")
      .optional("train.all_heads_from", KeyType::Float, "0.9",
                "share of a from-scratch member's steps after which every head trains (with start_heads)")
      .optional("train.road_facts", KeyType::String, "none",
                "roads in the context of reasoning items, \"road <a> <b> .\" among filler, which a chain of "
                "thought then quotes: none (the question asks about the memorised map), fresh (a random map "
                "per item), map (roads of the memorised map) or start (only the trip's start, a home fact "
                "\"the home called <key> <t> .\"; the chain quotes it and walks the memorised map)")
      .optional("train.road_steps", KeyType::Int, "2",
                "with road_facts: the roads a reasoning question follows (2 to 4; \"after three steps ?\")")
      .optional("train.mix", KeyType::FloatList, "0.4, 0.1, 0.1, 0.4",
                "shares of needle-in-a-haystack, extractive-QA, reasoning and copy-drill training sequences")
      .optional("train.late_mix", KeyType::FloatList, "",
                "base and other: the mix (four shares, as mix) from late_mix_from on, e.g. more reasoning once "
                "recall has formed (empty: mix throughout)")
      .optional("train.late_mix_from", KeyType::Float, "0.6", "share of a from-scratch member's steps before late_mix")
      .optional("train.long_full_share", KeyType::Float, "0.5",
                "long, after its ramp: share of steps at the full context (the others draw a length from "
                "[context, long context])")
      .optional("train.curriculum_start", KeyType::Int, "32",
                "first sequence length of models trained from scratch (rising to context half-way)")
      .optional("train.base_steps", KeyType::Int, "1600", "optimizer steps of base")
      .optional("train.long_steps", KeyType::Int, "100", "optimizer steps of long")
      .optional("train.chat_steps", KeyType::Int, "300", "optimizer steps of chat")
      .optional("train.moe_steps", KeyType::Int, "150", "optimizer steps of moe")
      .optional("train.other_steps", KeyType::Int, "1600", "optimizer steps of other")
      .optional("train.other_family", KeyType::String, "qwen2", "family of other: llama or qwen2")
      .optional("train.eval_every", KeyType::Int, "100", "steps between held-out answer-accuracy checks")
      .optional("train.qa_items", KeyType::Int, "40", "items of the generated extractive-QA task file")
      .optional("train.reasoning_items", KeyType::Int, "16", "items of each generated reasoning task file")
      .optional("train.qa_context_words", KeyType::Int, "120", "filler words around the facts of a QA item");
}

void TrainStage::plan(const pipeline::Config& job, std::ostream& out) const {
  const TrainSettings s = read_settings(job, pipeline::run_dir_of(job));
  out << "  zoo " << s.out.string() << ": dims " << s.hidden << " x " << s.layers << " layers x " << s.heads
      << " heads of " << s.head_size() << "\n";
  for (const auto& m : s.models) {
    const Recipe r = recipe_for(m, s);
    out << "  " << m << ": " << r.family << (r.parent.empty() ? "" : " from " + r.parent) << ", context " << r.context
        << ", " << r.steps << " steps"
        << (is_trained(s.out / m, lineage(m, s)) ? " (trained with this recipe: skip)" : "") << "\n";
  }
}

void TrainStage::validate(const pipeline::StageContext& ctx) const {
  const auto& c = ctx.config;
  TrainSettings s = read_settings(c, ctx.run_dir);
  for (const auto& m : s.models) {
    RHEAD_CHECK(std::find(kZoo.begin(), kZoo.end(), m) != kZoo.end(), ConfigError, "[config] ", c.source(),
                ": [train] models: unknown member '", m, "'; expected some of base, long, chat, moe, other");
    const bool needs_base = m == "long" || m == "chat" || m == "moe";
    RHEAD_CHECK(!needs_base || std::find(s.models.begin(), s.models.end(), "base") != s.models.end() ||
                    fs::exists(s.out / "base" / "train_meta.json"),
                ConfigError, "[config] ", c.source(), ": [train] models: '", m,
                "' starts from base; add base to the list");
  }
  RHEAD_CHECK(s.hidden > 0 && s.layers > 0 && s.heads > 0 && s.kv_heads > 0 && s.heads % s.kv_heads == 0 &&
                  s.head_dim >= 0 && s.head_size() > 0 && s.head_size() % 2 == 0 && s.ffn > 0 && s.n_expert >= 2,
              ConfigError, "[config] ", c.source(),
              ": [train] dimensions: need an even head size (head_dim, or hidden / heads when head_dim = 0), "
              "heads % kv_heads == 0, ffn > 0, experts >= 2; got hidden ",
              s.hidden, ", heads ", s.heads, ", kv_heads ", s.kv_heads, ", head_dim ", s.head_dim, ", ffn ", s.ffn,
              ", experts ", s.n_expert);
  RHEAD_CHECK(s.context >= 96 && s.long_factor >= 1 && s.batch >= 1 && s.long_batch >= 1, ConfigError, "[config] ",
              c.source(), ": [train] need context >= 96, long_factor >= 1, batch >= 1, long_batch >= 1");
  for (const auto& [m, n] : s.steps) {
    RHEAD_CHECK(n >= 1, ConfigError, "[config] ", c.source(), ": [train] ", m, "_steps must be >= 1, got ", n);
  }
  RHEAD_CHECK(valid_shares(s.mix), ConfigError, "[config] ", c.source(),
              ": [train] mix: expected four shares >= 0 (niah, qa, reasoning, copy) with a positive sum, got ",
              s.mix.size(), " values");
  RHEAD_CHECK(s.road_facts == "none" || s.road_facts == "fresh" || s.road_facts == "map" || s.road_facts == "start",
              ConfigError, "[config] ", c.source(), ": [train] road_facts must be none, fresh, map or start, got '",
              s.road_facts, "'");
  RHEAD_CHECK(s.road_steps >= 2 && s.road_steps <= ToyWorld::kMaxRoadSteps &&
                  (s.road_steps == 2 || s.road_facts == "fresh" || s.road_facts == "map"),
              ConfigError, "[config] ", c.source(), ": [train] road_steps must be in [2, ", ToyWorld::kMaxRoadSteps,
              "], and 2 unless road_facts puts the roads in the context; got ", s.road_steps, " with road_facts '",
              s.road_facts, "'");
  RHEAD_CHECK(s.late_mix.empty() || (valid_shares(s.late_mix) && s.late_mix_from > 0 && s.late_mix_from < 1),
              ConfigError, "[config] ", c.source(), ": [train] late_mix needs four shares >= 0 with a positive sum "
              "(or none) and late_mix_from in (0, 1); got ", s.late_mix.size(), " values, late_mix_from ",
              s.late_mix_from);
  RHEAD_CHECK(s.long_full_share >= 0 && s.long_full_share <= 1, ConfigError, "[config] ", c.source(),
              ": [train] long_full_share must be in [0, 1], got ", s.long_full_share);
  RHEAD_CHECK(s.head_sparsity >= 0, ConfigError, "[config] ", c.source(),
              ": [train] head_sparsity must be >= 0 (0: off), got ", s.head_sparsity);
  RHEAD_CHECK(s.filler_values >= 0 && s.filler_values <= 1, ConfigError, "[config] ", c.source(),
              ": [train] filler_values must be in [0, 1], got ", s.filler_values);
  RHEAD_CHECK(s.needle_values >= 1 && s.needle_values <= ToyWorld::kMaxNeedleValueWords, ConfigError, "[config] ",
              c.source(), ": [train] needle_values must be in [1, ", ToyWorld::kMaxNeedleValueWords, "], got ",
              s.needle_values);
  RHEAD_CHECK(s.adam_eps > 0 && s.weight_decay >= 0, ConfigError, "[config] ", c.source(),
              ": [train] need adam_eps > 0 and weight_decay >= 0, got ", s.adam_eps, " and ", s.weight_decay);
  RHEAD_CHECK(s.init_std > 0, ConfigError, "[config] ", c.source(), ": [train] init_std must be > 0, got ",
              s.init_std);
  RHEAD_CHECK(s.start_heads >= 0 && s.start_heads <= s.heads && s.all_heads_from > 0 && s.all_heads_from < 1,
              ConfigError, "[config] ", c.source(), ": [train] need 0 <= start_heads <= heads (", s.heads,
              ") and all_heads_from in (0, 1); got start_heads ", s.start_heads, ", all_heads_from ",
              s.all_heads_from);
  RHEAD_CHECK(s.threads >= 0, ConfigError, "[config] ", c.source(), ": [train] threads: got ", s.threads,
              ", expected >= 0 (0: the job's threads)");
  RHEAD_CHECK(s.curriculum_start >= 32, ConfigError, "[config] ", c.source(),
              ": [train] curriculum_start must be >= 32 (room for a needle and its question), got ", s.curriculum_start);
  if (s.needle_values >= 1 && s.needle_values <= ToyWorld::kMaxNeedleValueWords) {
    const int64_t shortest = ToyWorld(s.seed, 0, static_cast<int>(s.needle_values)).min_niah_length(false);
    RHEAD_CHECK(s.curriculum_start >= shortest, ConfigError, "[config] ", c.source(), ": [train] curriculum_start ",
                s.curriculum_start, " is too short for a needle of ", s.needle_values,
                " value words and its question; set curriculum_start >= ", shortest, " or fewer needle_values");
  }
  RHEAD_CHECK(s.other_family == "llama" || s.other_family == "qwen2", ConfigError, "[config] ", c.source(),
              ": [train] other_family: got '", s.other_family, "', expected llama or qwen2");
}

void TrainStage::run(pipeline::StageContext& ctx) {
  const TrainSettings s = read_settings(ctx.config, ctx.run_dir);
  // IEEE subnormals (models/cpu_compute.h); one thread per rank unless [train] threads says otherwise, as
  // the weights depend on the thread count and the zoo should not depend on the machine's core count.
  const int threads = s.threads > 0 ? static_cast<int>(s.threads) : ctx.threads;
  models::configure_cpu_compute(threads, /*flush_subnormals=*/false);
  if (threads != ctx.threads) {
    pipeline::log::info("train: ", threads, " compute thread(s) per rank ([train] threads; the job's: ", ctx.threads, ")");
  }
  const ToyWorld world(s.seed, s.filler_values, static_cast<int>(s.needle_values), road_facts(s.road_facts),
                       static_cast<int>(s.road_steps));
  if (ctx.comm.rank() == 0) {
    fs::create_directories(s.out);
    world.write_files(s.out / "world", s.qa_items, s.reasoning_items, s.qa_context_words);
    world.write_tokenizer(s.out / "world");
  }
  ctx.comm.barrier();

  // Two phases (the second starts from base); inside a phase, models are dealt largest-first to the least
  // loaded rank. Cost = tokens x sqrt(context / 128), x 1.5 for moe: measured on 2 cores (toyzoo-v7, one
  // thread per rank), a token of long (512, half its steps at shorter drawn lengths) costs ~2.1x one of
  // chat and a moe token 1.5x (long 100 steps 23 s, chat 300 steps 66 s, moe 150 steps 49 s), so chat
  // goes alone and moe + long share a rank (toyzoo-v8: chat 134 s against long + moe 49 + 90 s).
  const std::string rank_tag = ctx.comm.size() > 1 ? " [rank " + std::to_string(ctx.comm.rank()) + "]" : "";
  for (const auto& phase : std::vector<std::vector<std::string>>{{"base", "other"}, {"long", "moe", "chat"}}) {
    std::vector<std::pair<double, std::string>> todo;  // (cost, member)
    for (const auto& m : phase) {
      if (std::find(s.models.begin(), s.models.end(), m) == s.models.end()) continue;
      const Recipe r = recipe_for(m, s);
      const double cost = static_cast<double>(r.steps * r.batch * r.context) *
                          std::sqrt(static_cast<double>(r.context) / 128.0) * (r.family == "mixtral" ? 1.5 : 1.0);
      todo.emplace_back(cost, m);
    }
    std::stable_sort(todo.begin(), todo.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<double> load(static_cast<size_t>(ctx.comm.size()), 0.0);
    for (const auto& [cost, m] : todo) {
      const size_t owner = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
      load[owner] += cost;
      if (static_cast<int>(owner) != ctx.comm.rank()) continue;
      const Recipe r = recipe_for(m, s);
      if (is_trained(s.out / r.name, lineage(r.name, s))) {
        pipeline::log::info("train ", r.name, ": ", (s.out / r.name).string(), " is trained with this recipe, skipping");
        continue;
      }
      pipeline::log::info("train ", r.name, rank_tag, ": ", r.describe(s));
      train_model(r, s, world, s.out, rank_tag);
    }
    ctx.comm.barrier();
  }

  if (ctx.comm.rank() != 0) return;
  pipeline::store::Group root = ctx.output->root();
  root.set_attr("zoo", fs::absolute(s.out).string());
  root.set_attr("world", fs::absolute(s.out / "world").string());
  root.set_attr("vocab_size", static_cast<int64_t>(world.vocab().size()));
  pipeline::store::Group models_group = root.create_group("models");
  for (const auto& m : s.models) {
    std::ifstream f(s.out / m / "train_meta.json");
    nlohmann::json meta = nlohmann::json::parse(f);
    const Recipe r = recipe_for(m, s);
    pipeline::store::Group g = models_group.create_group(m);
    g.set_attr("path", fs::absolute(s.out / m).string());
    g.set_attr("recipe", meta.at("recipe").get<std::string>());
    g.set_attr("family", r.family);
    g.set_attr("parent", r.parent);
    g.set_attr("context", r.context);
    g.set_attr("parameters", meta.at("parameters").get<int64_t>());
    g.set_attr("seconds", meta.at("seconds").get<double>());
    std::vector<double> loss = meta.at("loss").get<std::vector<double>>();
    g.write("loss", loss, {loss.size()}, "step");
    std::vector<int64_t> acc_step;
    std::vector<double> acc;
    for (const auto& p : meta["accuracy"]) {
      acc_step.push_back(p.at(0).get<int64_t>());
      acc.push_back(p.at(1).get<double>());
    }
    g.write("accuracy_step", acc_step, {acc_step.size()}, "check");
    g.write("answer_accuracy", acc, {acc.size()}, "check");
  }
}

void TrainStage::inspect(const pipeline::store::Group& root, std::ostream& out) const {
  out << "toy zoo: " << root.attr_string("zoo") << " (world files: " << root.attr_string("world") << ")\n";
  out << std::left << std::setw(8) << "model" << std::setw(9) << "family" << std::setw(8) << "parent" << std::right
      << std::setw(8) << "context" << std::setw(11) << "parameters" << std::setw(8) << "steps" << std::setw(11)
      << "final loss" << std::setw(12) << "answer acc" << std::setw(10) << "seconds" << "\n";
  pipeline::store::Group models_group = root.open_group("models");
  for (const auto& m : models_group.children()) {
    pipeline::store::Group g = models_group.open_group(m);
    auto loss = g.read_double("loss");
    auto acc = g.read_double("answer_accuracy");
    out << std::left << std::setw(8) << m << std::setw(9) << g.attr_string("family") << std::setw(8)
        << (g.attr_string("parent").empty() ? "-" : g.attr_string("parent")) << std::right << std::setw(8)
        << g.attr_int("context") << std::setw(11) << g.attr_int("parameters") << std::setw(8) << loss.data.size()
        << std::setw(11) << std::fixed << std::setprecision(3) << (loss.data.empty() ? 0.0 : loss.data.back())
        << std::setw(12) << (acc.data.empty() ? 0.0 : acc.data.back()) << std::setw(10) << std::setprecision(1)
        << g.attr_double("seconds") << "\n";
  }
}

}  // namespace stages
