// The train stage end to end with a tiny recipe (a few optimizer steps per zoo member): every member is
// saved as a Hugging Face folder the loader validates (llama base/long/chat, mixtral moe, qwen2 other),
// long carries the longer context and larger RoPE base, 1 and 2 ranks write identical weights (one thread
// per rank), a rerun skips trained members and a changed recipe retrains only what it changes, and the
// head-sparsity penalty reaches the optimizer; staged heads (start_heads) leave the silenced heads untouched
// until every head joins; head_dim decouples the heads' width from the hidden size, and
// training runs one thread per rank whatever the job's thread count.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <iterator>

#include <nlohmann/json.hpp>

#include "models/checkpoint.h"
#include "models/model_config.h"
#include "tests/common/test_support.h"

namespace {

namespace fs = std::filesystem;
using test_support::run_rhead;
using test_support::TempDir;

std::string job(const std::string& extra = "", int other_steps = 3, int base_steps = 3) {
  return "[job]\nname = zoo\nstages = train\nrun_dir = run\nthreads = 1\nseed = 5\n"
         "[train]\nhidden = 32\nlayers = 2\nheads = 4\nkv_heads = 2\nffn = 64\ncontext = 128\nbatch = 2\n"
         "long_batch = 1\nbase_steps = " + std::to_string(base_steps) +
         "\nlong_steps = 2\nchat_steps = 2\nmoe_steps = 2\nother_steps = " + std::to_string(other_steps) + "\n"
         "eval_every = 2\nqa_items = 3\nreasoning_items = 2\n" + extra;
}

std::string bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

TEST(TrainE2E, ZooFoldersLoadAndOneAndTwoRanksTrainTheSameWeights) {
  TempDir one("train1"), two("train2");
  for (auto* d : {&one, &two}) test_support::write_text_file(d->path() / "job.ini", job());
  auto r1 = run_rhead(one.path(), 0, "job.ini");
  ASSERT_EQ(r1.exit_code, 0) << r1.output;
  auto r2 = run_rhead(two.path(), 2, "job.ini");
  ASSERT_EQ(r2.exit_code, 0) << r2.output;

  const std::map<std::string, std::string> family = {
      {"base", "llama"}, {"long", "llama"}, {"chat", "llama"}, {"moe", "mixtral"}, {"other", "qwen2"}};
  for (const auto& [name, fam] : family) {
    const fs::path dir = one.path() / "run" / "zoo" / name;
    models::ModelFolder folder = models::load_model_folder(dir);  // validates every tensor
    EXPECT_EQ(folder.spec.family, fam) << name;
    EXPECT_EQ(folder.tokenizer_kind, models::TokenizerKind::Json) << name;
    EXPECT_TRUE(fs::exists(dir / "train_meta.json")) << name;
    EXPECT_EQ(bytes(dir / "model.safetensors"), bytes(two.path() / "run" / "zoo" / name / "model.safetensors"))
        << name << ": 1-rank and 2-rank weights differ";
  }
  models::ModelFolder base = models::load_model_folder(one.path() / "run" / "zoo" / "base");
  models::ModelFolder lng = models::load_model_folder(one.path() / "run" / "zoo" / "long");
  EXPECT_EQ(base.spec.max_position_embeddings, 128);
  EXPECT_EQ(lng.spec.max_position_embeddings, 512);
  EXPECT_GT(lng.spec.rope_theta, base.spec.rope_theta);
  for (const char* f : {"needles.jsonl", "ablate_needles.jsonl", "tasks/qa.jsonl", "tasks/reasoning_cot.jsonl",
                        "tasks/reasoning_direct.jsonl", "haystack/essay1.txt", "tokenizer.json"}) {
    EXPECT_TRUE(fs::exists(one.path() / "run" / "zoo" / "world" / f)) << f;
  }
  auto inspect = test_support::run_command("cd " + one.path().string() + " && " + test_support::rhead_exe().string() +
                                           " inspect run/train.h5");
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_NE(inspect.output.find("moe"), std::string::npos) << inspect.output;
  EXPECT_NE(inspect.output.find("qwen2"), std::string::npos) << inspect.output;
}

TEST(TrainE2E, RerunSkipsTrainedMembersAndAChangedRecipeRetrainsOnlyThem) {
  TempDir dir("train_resume");
  test_support::write_text_file(dir.path() / "job.ini", job());
  auto first = run_rhead(dir.path(), 0, "job.ini");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  // A member that trains logs its recipe ("train base: toyzoo-v7 base ..."); one that is skipped does not.
  EXPECT_NE(first.output.find(": toyzoo-v"), std::string::npos) << first.output;
  const fs::path zoo = dir.path() / "run" / "zoo";
  const std::string base_before = bytes(zoo / "base" / "model.safetensors");
  const std::string other_before = bytes(zoo / "other" / "model.safetensors");

  auto again = run_rhead(dir.path(), 0, "job.ini --force");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  for (const char* m : {"base", "long", "chat", "moe", "other"}) {
    EXPECT_NE(again.output.find(std::string("train ") + m + ": "), std::string::npos) << again.output;
  }
  EXPECT_NE(again.output.find("is trained with this recipe, skipping"), std::string::npos) << again.output;
  EXPECT_EQ(again.output.find(": toyzoo-v"), std::string::npos) << "a rerun trained again:\n" << again.output;

  // More steps for other only: other is retrained, base is kept byte for byte.
  test_support::write_text_file(dir.path() / "job.ini", job("", 4));
  auto changed = run_rhead(dir.path(), 0, "job.ini --force");
  ASSERT_EQ(changed.exit_code, 0) << changed.output;
  EXPECT_EQ(bytes(zoo / "base" / "model.safetensors"), base_before);
  EXPECT_NE(bytes(zoo / "other" / "model.safetensors"), other_before);

  // More steps for base: base is retrained, and so are the fine-tunes made from it (their own recipes
  // did not change, their parent did); other, an independent family, is kept.
  const std::string other_now = bytes(zoo / "other" / "model.safetensors");
  std::map<std::string, std::string> tuned_before;
  for (const char* m : {"long", "chat", "moe"}) tuned_before[m] = bytes(zoo / m / "model.safetensors");
  auto rebased = run_rhead(dir.path(), 0, "job.ini --force --set train.base_steps=4");
  ASSERT_EQ(rebased.exit_code, 0) << rebased.output;
  EXPECT_NE(bytes(zoo / "base" / "model.safetensors"), base_before);
  EXPECT_EQ(bytes(zoo / "other" / "model.safetensors"), other_now);
  for (const auto& [m, before] : tuned_before) {
    EXPECT_NE(rebased.output.find("train " + m + ": toyzoo-v"), std::string::npos) << m << " was not retrained:\n"
                                                                                   << rebased.output;
    EXPECT_NE(bytes(zoo / m / "model.safetensors"), before) << m;
  }
}

TEST(TrainE2E, KilledWhileTrainingResumesKeepingFinishedMembersAndTrainsTheSameWeights) {
  // kill -9 while chat trains (base, its parent, is finished): the rerun keeps base, trains chat again from
  // step 0 (a member is saved whole, never half), and the zoo equals an uninterrupted run's byte for byte.
  TempDir killed("train_kill"), whole("train_whole");
  for (auto* d : {&killed, &whole}) test_support::write_text_file(d->path() / "job.ini", job("models = base, chat\n"));
  const std::string long_chat = " --set train.chat_steps=400", args = "job.ini" + long_chat;
  const fs::path zoo = killed.path() / "run" / "zoo";
  // The job file's absolute path tells this run's process apart from other tests' runs; the process name
  // (rhead) tells it apart from the shell running this command line, whose text holds the path too.
  const std::string rhead_pids = "$(for p in $(pgrep -f 'rhead run " + (killed.path() / "job.ini").string() +
                                 "'); do [ \"$(cat /proc/$p/comm 2>/dev/null)\" = rhead ] && echo $p; done)";
  const std::string base_done = (zoo / "base" / "train_meta.json").string();
  auto kill = test_support::run_command(
      "cd " + killed.path().string() + " && (" + test_support::rhead_exe().string() + " run " +
      (killed.path() / "job.ini").string() + long_chat + " > first.log 2>&1 &); for i in $(seq 1 600); do [ -f " +
      base_done + " ] && break; sleep 0.05; done; sleep 0.2; pids=" + rhead_pids +
      "; [ -n \"$pids\" ] && kill -9 $pids && echo killed; for i in $(seq 1 100); do [ -z \"" + rhead_pids +
      "\" ] && break; sleep 0.1; done; cat first.log");
  ASSERT_NE(kill.output.find("killed"), std::string::npos) << kill.output;
  ASSERT_TRUE(fs::exists(zoo / "base" / "train_meta.json")) << kill.output;
  ASSERT_FALSE(fs::exists(zoo / "chat" / "train_meta.json")) << "chat finished before the kill:\n" << kill.output;

  auto resumed = run_rhead(killed.path(), 0, args);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("train base: run/zoo/base is trained with this recipe, skipping"), std::string::npos)
      << resumed.output;
  EXPECT_NE(resumed.output.find("train chat: toyzoo-v"), std::string::npos) << resumed.output;
  auto uninterrupted = run_rhead(whole.path(), 0, args);
  ASSERT_EQ(uninterrupted.exit_code, 0) << uninterrupted.output;
  for (const char* m : {"base", "chat"}) {
    EXPECT_EQ(bytes(zoo / m / "model.safetensors"), bytes(whole.path() / "run" / "zoo" / m / "model.safetensors"))
        << m << ": the resumed zoo differs from an uninterrupted run's";
  }
}

TEST(TrainE2E, TrainingUsesOneThreadWhateverTheJobsThreadCount) {
  // The weights can depend on the thread count (summation order): [train] threads = 2 may train other
  // weights than 1, which is what makes the default of 1 matter: a job with 2 threads per rank still
  // trains the 1-thread zoo, byte for byte. Whether 2 threads change the bits depends on the shapes and
  // the CPU's kernels (measured on one host: batch 8 does, batch 2 and 32 do not; another host: batch 2
  // did), so two batch sizes are tried for the control that shows this test can fail.
  bool threads_changed_the_weights = false;
  for (int batch : {2, 8}) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    TempDir one("train_t1"), job2("train_t2"), train2("train_tt2");
    const std::string set_batch = " --set train.batch=" + std::to_string(batch);
    test_support::write_text_file(one.path() / "job.ini", job("models = base\n"));
    std::string two_threads = job("models = base\n");
    two_threads.replace(two_threads.find("threads = 1"), 11, "threads = 2");
    test_support::write_text_file(job2.path() / "job.ini", two_threads);
    test_support::write_text_file(train2.path() / "job.ini", job("models = base\nthreads = 2\n"));
    for (auto* d : {&one, &job2, &train2}) {
      auto r = run_rhead(d->path(), 0, "job.ini" + set_batch);
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
    const fs::path w = fs::path("run") / "zoo" / "base" / "model.safetensors";
    EXPECT_TRUE(bytes(job2.path() / w) == bytes(one.path() / w)) << "[job] threads = 2 changed the trained weights";
    threads_changed_the_weights |= bytes(train2.path() / w) != bytes(one.path() / w);
  }
  if (!threads_changed_the_weights) {
    GTEST_SKIP() << "on this host 2 training threads gave the 1-thread weights at batch 2 and 8, so the "
                    "control cannot show that the default matters (the equality above still held)";
  }
}

TEST(TrainE2E, HeadSparsityShrinksEveryHeadsOutputProjection) {
  // The group-lasso term reaches the optimizer: with a large weight every head's o_proj block ends
  // smaller than after the same steps without it (same seed, same data).
  TempDir off("train_hs0"), on("train_hs1");
  test_support::write_text_file(off.path() / "job.ini", job("models = base\n"));
  test_support::write_text_file(on.path() / "job.ini", job("models = base\nhead_sparsity = 1\n"));
  ASSERT_EQ(run_rhead(off.path(), 0, "job.ini").exit_code, 0);
  auto r = run_rhead(on.path(), 0, "job.ini");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  models::ModelFolder a = models::load_model_folder(off.path() / "run" / "zoo" / "base");
  models::ModelFolder b = models::load_model_folder(on.path() / "run" / "zoo" / "base");
  const int64_t d = a.spec.head_dim;
  for (int64_t l = 0; l < a.spec.n_layer; ++l) {
    const std::string name = models::checkpoint_tensor_name(a.spec, "o_proj", l);
    auto norms = [&](const models::ModelFolder& f) {  // [n_head]
      return f.tensor(name).to(torch::kFloat32).view({a.spec.hidden_size, a.spec.n_head, d}).pow(2).sum(
          at::IntArrayRef{0, 2}).sqrt();
    };
    EXPECT_TRUE((norms(b) < norms(a)).all().item<bool>()) << name << ": " << norms(a) << " vs " << norms(b);
  }
}

TEST(TrainE2E, StartHeadsTrainOnlyTheChosenHeadsUntilEveryHeadJoins) {
  // Without weight decay a head that never takes part keeps its initial weights exactly, so after 1 and 3
  // steps its q_proj rows are equal, and a head that trains has other rows after 3 steps than after 1.
  // The log names the chosen heads. all_heads_from = 0.5 of 4 steps: every head trains from step 2.
  const std::string staged = "models = base\nweight_decay = 0\nstart_heads = 1\n";
  TempDir one("train_sh1"), three("train_sh3"), joined("train_sh4");
  test_support::write_text_file(one.path() / "job.ini", job(staged + "all_heads_from = 0.9\n", 3, 1));
  test_support::write_text_file(three.path() / "job.ini", job(staged + "all_heads_from = 0.9\n", 3, 3));
  test_support::write_text_file(joined.path() / "job.ini", job(staged + "all_heads_from = 0.5\n", 3, 4));
  auto first = run_rhead(one.path(), 0, "job.ini");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  auto r = run_rhead(three.path(), 0, "job.ini");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = run_rhead(joined.path(), 0, "job.ini");
  ASSERT_EQ(j.exit_code, 0) << j.output;
  EXPECT_NE(j.output.find("every head from step 2"), std::string::npos) << j.output;

  // "heads training from step 0 (layer 0: h; layer 1: h)" -> the chosen head of each layer.
  const std::string tag = "heads training from step 0 (";
  const size_t at = r.output.find(tag);
  ASSERT_NE(at, std::string::npos) << r.output;
  std::vector<int64_t> chosen;
  for (int64_t l = 0; l < 2; ++l) {
    const std::string layer = "layer " + std::to_string(l) + ": ";
    const size_t p = r.output.find(layer, at);
    ASSERT_NE(p, std::string::npos) << r.output;
    chosen.push_back(std::stoll(r.output.substr(p + layer.size())));
  }
  // train_meta.json records the schedule: the chosen heads and the step every head joins (0.9 x 3 -> 3).
  const auto meta = nlohmann::json::parse(bytes(three.path() / "run" / "zoo" / "base" / "train_meta.json"));
  EXPECT_EQ(meta.at("staged_heads").at("every_head_from_step"), 3);
  EXPECT_EQ(meta.at("staged_heads").at("heads_from_step_0"), nlohmann::json({{0, chosen[0]}, {1, chosen[1]}}));
  models::ModelFolder a = models::load_model_folder(one.path() / "run" / "zoo" / "base");
  models::ModelFolder b = models::load_model_folder(three.path() / "run" / "zoo" / "base");
  models::ModelFolder c = models::load_model_folder(joined.path() / "run" / "zoo" / "base");
  const int64_t d = a.spec.head_dim;
  for (int64_t l = 0; l < a.spec.n_layer; ++l) {
    const std::string q = models::checkpoint_tensor_name(a.spec, "q_proj", l);
    for (int64_t h = 0; h < a.spec.n_head; ++h) {
      auto rows = [&](const models::ModelFolder& f) { return f.tensor(q).narrow(0, h * d, d); };
      const bool trains = h == chosen[static_cast<size_t>(l)];
      EXPECT_EQ(torch::equal(rows(a), rows(b)), !trains) << "layer " << l << " head " << h << " (chosen "
                                                          << chosen[static_cast<size_t>(l)] << ")";
      EXPECT_FALSE(torch::equal(rows(a), rows(c))) << "layer " << l << " head " << h << ": did not join";
    }
  }
}

TEST(TrainE2E, LateMixChangesOnlyTheDataFromItsStepOn) {
  // A late mix equal to the mix trains the same weights as none (the switch alone changes nothing); a late
  // mix of reasoning items alone trains other weights, and the recipe string names it (so a changed late
  // mix retrains). Base and other take a late mix, the fine-tunes do not; the mix is 0.4, 0.1, 0.1, 0.4.
  TempDir none("train_late_none"), same("train_late_same"), reasoning("train_late_reasoning");
  test_support::write_text_file(none.path() / "job.ini", job("models = base\n", 3, 4));
  test_support::write_text_file(same.path() / "job.ini",
                                job("models = base\nlate_mix = 0.4, 0.1, 0.1, 0.4\nlate_mix_from = 0.5\n", 3, 4));
  test_support::write_text_file(reasoning.path() / "job.ini",
                                job("models = base\nlate_mix = 0, 0, 1, 0\nlate_mix_from = 0.5\n", 3, 4));
  for (const TempDir* d : {&none, &same, &reasoning}) {
    auto r = run_rhead(d->path(), 0, "job.ini");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    if (d == &reasoning) {
      EXPECT_NE(r.output.find("copy 0, 0, 1, 0) from step 2"), std::string::npos) << r.output;
    }
  }
  const auto meta = nlohmann::json::parse(bytes(reasoning.path() / "run" / "zoo" / "base" / "train_meta.json"));
  EXPECT_NE(meta.at("recipe").get<std::string>().find(" late_mix=0/0/1/0@0.5"), std::string::npos) << meta.dump();
  models::ModelFolder a = models::load_model_folder(none.path() / "run" / "zoo" / "base");
  models::ModelFolder b = models::load_model_folder(same.path() / "run" / "zoo" / "base");
  models::ModelFolder c = models::load_model_folder(reasoning.path() / "run" / "zoo" / "base");
  const std::string q = models::checkpoint_tensor_name(a.spec, "q_proj", 0);
  EXPECT_TRUE(torch::equal(a.tensor(q), b.tensor(q)));
  EXPECT_FALSE(torch::equal(a.tensor(q), c.tensor(q)));
}

TEST(TrainE2E, HeadDimSetsTheAttentionWidthApartFromTheHiddenSize) {
  // hidden 32 with 4 heads would give heads of 8 dimensions; head_dim = 4 makes q/k/v/o 16 wide, in
  // the saved config and tensors, for a dense member and the moe upcycled from it.
  TempDir dir("train_head_dim");
  test_support::write_text_file(dir.path() / "job.ini", job("models = base, moe\nhead_dim = 4\n"));
  auto r = run_rhead(dir.path(), 0, "job.ini");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* m : {"base", "moe"}) {
    models::ModelFolder f = models::load_model_folder(dir.path() / "run" / "zoo" / m);  // validates every shape
    EXPECT_EQ(f.spec.head_dim, 4) << m;
    EXPECT_EQ(f.spec.hidden_size, 32) << m;
    EXPECT_EQ(f.tensor(models::checkpoint_tensor_name(f.spec, "q_proj", 0)).sizes().vec(),
              (std::vector<int64_t>{16, 32})) << m;
    EXPECT_EQ(f.tensor(models::checkpoint_tensor_name(f.spec, "o_proj", 0)).sizes().vec(),
              (std::vector<int64_t>{32, 16})) << m;
  }
}

TEST(TrainE2E, BadRecipesStopBeforeTraining) {
  // [train] lines -> what the error must say. Each run stops at validation, before any training.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"models = long\n", "'long' starts from base"},
      {"experts = 1\n", "[train] dimensions"},
      {"models = base, dragon\n", "unknown member 'dragon'"},
      {"head_sparsity = -0.1\n", "head_sparsity must be >= 0"},
      {"threads = -1\n", "[train] threads: got -1"},
      {"head_dim = 3\n", "need an even head size"},
      {"filler_values = 1.5\n", "filler_values must be in [0, 1], got 1.5"},
      {"adam_eps = 0\n", "need adam_eps > 0 and weight_decay >= 0, got 0 and 0.1"},
      {"init_std = 0\n", "[train] init_std must be > 0, got 0"},
      {"needle_values = 0\n", "[train] needle_values must be in [1, 12], got 0"},
      {"start_heads = 5\n", "need 0 <= start_heads <= heads (4) and all_heads_from in (0, 1); got start_heads 5"},
      {"start_heads = 2\nall_heads_from = 1\n", "all_heads_from in (0, 1); got start_heads 2, all_heads_from 1"},
      {"late_mix = 0.5, 0.5\n", "late_mix needs four shares >= 0 with a positive sum (or none) and late_mix_from "
                                 "in (0, 1); got 2 values"},
      {"late_mix = 0, 0, 1, 0\nlate_mix_from = 1\n", "got 4 values, late_mix_from 1"},
      {"road_facts = maybe\n", "[train] road_facts must be none, fresh, map or start, got 'maybe'"},
      {"road_steps = 3\n", "road_steps must be in [2, 4], and 2 unless road_facts puts the roads in the context; "
                            "got 3 with road_facts 'none'"},
      {"needle_values = 6\n", "curriculum_start 32 is too short for a needle of 6 value words and its question; "
                              "set curriculum_start >= 36"},
  };
  TempDir dir("train_bad");
  for (const auto& [lines, message] : cases) {
    test_support::write_text_file(dir.path() / "job.ini", job(lines));
    auto r = run_rhead(dir.path(), 0, "job.ini");
    EXPECT_NE(r.exit_code, 0) << lines;
    EXPECT_NE(r.output.find(message), std::string::npos) << lines << r.output;
    EXPECT_EQ(r.output.find(": toyzoo-v"), std::string::npos) << lines << "trained before failing:\n" << r.output;
  }
}

}  // namespace

TEST(TrainE2E, RetrainingOneMemberRecomputesOnlyItsGenerateCells) {
  // train then generate on base and other. A changed recipe of other retrains other alone; generate's
  // cells of base read the same weights and world files (their files key), so they are kept, and the
  // store equals a fresh run of the changed job.
  TempDir dir("train_generate");
  auto job_with_generate = [](const std::string& run_dir) {
    std::string text = job();
    text.replace(text.find("stages = train\n"), 15, "stages = train, generate\n");
    text.replace(text.find("run_dir = run\n"), 14, "run_dir = " + run_dir + "\n");
    const std::string zoo = run_dir + "/zoo/";
    return text + "[model.base]\npath = " + zoo + "base\n[model.other]\npath = " + zoo +
           "other\n[generate]\nneedles = " + zoo + "world/needles.jsonl\nhaystack = " + zoo +
           "world/haystack\nhaystack_per_needle = false\n"
           "prompt_mode = fixed\nbuffer_tokens = 16\nlengths = 64\ndepths = 0, 100\nmax_new_tokens = 4\n";
  };
  test_support::write_text_file(dir.path() / "job.ini", job_with_generate("run"));
  test_support::write_text_file(dir.path() / "fresh.ini", job_with_generate("fresh"));
  auto first = run_rhead(dir.path(), 0, "job.ini");
  ASSERT_EQ(first.exit_code, 0) << first.output;

  auto changed = run_rhead(dir.path(), 0, "job.ini --set train.other_steps=4");
  ASSERT_EQ(changed.exit_code, 0) << changed.output;
  EXPECT_NE(changed.output.find("train other: toyzoo-v"), std::string::npos) << changed.output;
  EXPECT_EQ(changed.output.find("train base: toyzoo-v"), std::string::npos) << changed.output;
  EXPECT_NE(changed.output.find("input 'train' was recomputed"), std::string::npos) << changed.output;
  EXPECT_NE(changed.output.find("keeping 6 of 12 cells from the previous store"), std::string::npos) << changed.output;
  EXPECT_NE(changed.output.find("6 finished cells in"), std::string::npos) << changed.output;
  EXPECT_NE(changed.output.find("were computed from files that have changed since; discarding them"),
            std::string::npos)
      << changed.output;

  auto fresh = run_rhead(dir.path(), 0, "fresh.ini --set train.other_steps=4");
  ASSERT_EQ(fresh.exit_code, 0) << fresh.output;
  EXPECT_EQ(test_support::store_digest(dir.path() / "run" / "generate.h5"),
            test_support::store_digest(dir.path() / "fresh" / "generate.h5"));
}
