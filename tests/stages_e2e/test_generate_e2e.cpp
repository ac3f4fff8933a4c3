// The generate stage on a tiny random model that the test writes as a Hugging Face folder.
// A random model does not retrieve anything; these tests check the machinery: prompt, capture and
// store shapes, rank-count independence, and kill-and-resume.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <set>
#include <sstream>

#include "models/checkpoint.h"
#include "models/model_config.h"
#include "models/tokenizer/tokenizer.h"
#include "pipeline/store/hdf5_file.h"
#include "pipeline/store/store_header.h"
#include "tests/common/test_support.h"
#include "tests/stages_e2e/kill_rank.h"
#include "tests/stages_e2e/tiny_world.h"

namespace fs = std::filesystem;
using test_support::run_command;

namespace {

std::string job(const fs::path& dir, const std::string& run_dir, const std::string& lengths,
                int max_new_tokens = 6) {
  return "[job]\nname = gen\nstages = generate\nthreads = 1\nprogress_interval_s = 0.05\nrun_dir = " + run_dir +
         "\n[model.tiny]\npath = " + (dir / "model").string() +
         "\n[generate]\nneedles = " + (dir / "needles.jsonl").string() + "\nhaystack = " + (dir / "haystack").string() +
         "\nhaystack_per_needle = false\nprompt_mode = fixed\nbuffer_tokens = 16\nmax_new_tokens = " +
         std::to_string(max_new_tokens) + "\n"
         "lengths = " + lengths + "\ndepths = linspace(0, 100, 5)\n";
}

std::string rhead() { return test_support::rhead_exe().string(); }

}  // namespace

TEST(GenerateE2E, StoreShapesAndRankCountIndependence) {
  test_support::TempDir dir("gen");
  test_support::write_world(dir.path());
  test_support::write_text_file(dir.path() / "job.ini", job(dir.path(), (dir.path() / "np1").string(), "64, 96"));
  auto one = run_command("cd " + dir.path().string() + " && " + rhead() + " run job.ini", 240);
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto two = run_command("cd " + dir.path().string() + " && " + test_support::mpiexec_prefix(2) + " " + rhead() +
                             " run job.ini --set job.run_dir=" + (dir.path() / "np2").string(),
                         240);
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_EQ(test_support::store_digest(dir.path() / "np1" / "generate.h5"), test_support::store_digest(dir.path() / "np2" / "generate.h5"));
  EXPECT_FALSE(fs::exists(dir.path() / "np1" / "generate.shards")) << "shards are removed once merged";
  // Cells decoded together (decode_batch, default 32: a rank's 10 cells of one length in one batch
  // at np 1, fewer at np 2) or one at a time, or in batches of 3: the same bits.
  for (const char* batch : {"1", "3"}) {
    auto other = run_command("cd " + dir.path().string() + " && " + rhead() + " run job.ini --set generate.decode_batch=" +
                                 batch + " --set job.run_dir=" + (dir.path() / ("batch" + std::string(batch))).string(),
                             240);
    ASSERT_EQ(other.exit_code, 0) << other.output;
    EXPECT_EQ(test_support::store_digest(dir.path() / ("batch" + std::string(batch)) / "generate.h5"),
              test_support::store_digest(dir.path() / "np1" / "generate.h5"))
        << "decode_batch = " << batch;
  }

  pipeline::store::File f = pipeline::store::File::open(dir.path() / "np1" / "generate.h5");
  auto root = f.root();
  pipeline::store::require_readable(root, "generate", 2);
  EXPECT_EQ(root.attr_int("schema_version"), 2);
  auto model = root.open_group("models").open_group("tiny");
  EXPECT_EQ(model.attr_int("n_layer"), 2);
  EXPECT_EQ(model.attr_int("n_head"), 4);
  auto cells = root.open_group("cells");
  ASSERT_EQ(cells.children().size(), 2u * 2u * 5u);  // needles x lengths x depths
  for (const auto& id : cells.children()) {
    auto c = cells.open_group(id);
    auto gen = c.read_int32("generated_ids");
    auto cap = c.read_int32("capture_argmax");
    ASSERT_EQ(cap.shape.size(), 3u) << id;
    EXPECT_EQ(cap.shape[0], gen.shape[0]) << id << ": one capture row per generated token";
    EXPECT_EQ(cap.shape[1], 2u);
    EXPECT_EQ(cap.shape[2], 4u);
    EXPECT_LE(gen.shape[0], 6u);
    const int64_t T = c.attr_int("prompt_tokens");
    EXPECT_LE(T, c.attr_int("context_length"));
    for (size_t s = 0; s < cap.shape[0]; ++s) {
      for (size_t k = 0; k < 8; ++k) {
        int32_t pos = cap.data[s * 8 + k];
        EXPECT_GE(pos, 0);
        EXPECT_LE(pos, T - 1 + static_cast<int64_t>(s)) << id << ": a step only sees the prompt and earlier steps";
      }
    }
    const int64_t b = c.attr_int("needle_begin"), e = c.attr_int("needle_end");
    ASSERT_GE(b, 0) << id << ": fixed mode always knows the answer span";
    EXPECT_EQ(c.read_int32("needle_ids").data.size(), static_cast<size_t>(e - b));
    auto prompt = c.read_int32("prompt_ids");
    ASSERT_EQ(prompt.shape.size(), 1u) << id;
    ASSERT_EQ(static_cast<int64_t>(prompt.shape[0]), T) << id << ": prompt_ids holds the whole prompt";
    auto needle = c.read_int32("needle_ids");
    for (int64_t j = b; j < e; ++j) EXPECT_EQ(prompt.data[j], needle.data[j - b]) << id << " position " << j;
    EXPECT_GE(c.attr_double("rouge1_recall"), 0.0);
    EXPECT_LE(c.attr_double("rouge1_recall"), 100.0);
    auto mass = c.read_float("capture_span_mass");
    for (float m : mass.data) {
      EXPECT_GE(m, 0.0f);
      EXPECT_LE(m, 1.0f + 1e-5f);
    }
  }
  auto info = run_command(rhead() + " inspect " + (dir.path() / "np1" / "generate.h5").string());
  EXPECT_NE(info.output.find("model tiny: 20 cells, mean ROUGE-1 recall"), std::string::npos) << info.output;
}

TEST(GenerateE2E, KillAndResumeRecomputesNothingFinished) {
  test_support::TempDir dir("gen-kill");
  // A larger model and 40 decode steps per cell, so that a rank is still busy when it is killed.
  test_support::write_world(dir.path(), /*hidden=*/128, /*layers=*/4, /*heads=*/8);
  const fs::path run = dir.path() / "killed";
  test_support::write_text_file(dir.path() / "genkill.ini",
                                job(dir.path(), run.string(), "linspace(400, 1000, 6)", 40));  // 60 cells
  const fs::path progress = run / "generate.shards" / "progress" / "rank1.txt";
  const std::string job_file = (dir.path() / "genkill.ini").string();  // unique: matches only this test's ranks
  auto killed = test_support::run_and_kill_one_rank(dir.path(), job_file, progress, /*min_cells=*/2);
  ASSERT_FALSE(pipeline::store::is_complete(run / "generate.h5")) << "the kill came after the stage ended";
  const int64_t finished = test_support::count_finished_cells(run / "generate.shards");
  ASSERT_GT(finished, 0) << killed.output;

  auto resumed = run_command("cd " + dir.path().string() + " && " + test_support::mpiexec_prefix(2) + " " + rhead() +
                                 " run " + job_file,
                             240);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  pipeline::store::File f = pipeline::store::File::open(run / "generate.h5");
  EXPECT_EQ(f.root().attr_int("cells_resumed"), finished);
  EXPECT_EQ(f.root().attr_int("cells_computed_last_attempt"), 60 - finished);

  auto clean = run_command("cd " + dir.path().string() + " && " + rhead() + " run " + job_file + " --set job.run_dir=" +
                               (dir.path() / "clean").string(),
                           240);
  ASSERT_EQ(clean.exit_code, 0) << clean.output;
  EXPECT_EQ(test_support::store_digest(run / "generate.h5"), test_support::store_digest(dir.path() / "clean" / "generate.h5"));
}

TEST(GenerateE2E, AddingOrEditingAModelRecomputesOnlyThatModelsCells) {
  // A finished one-model run, then the job file gains a second model (the same weights under another
  // name), then that model's section changes, then a key of [generate] changes. Each rerun must keep
  // exactly the cells whose model and [generate] keys did not change, and end equal to a fresh run.
  test_support::TempDir dir("gen-add");
  test_support::write_world(dir.path());
  const std::string base_job = job(dir.path(), (dir.path() / "run").string(), "64, 96");  // 20 cells a model
  const std::string twin = "[model.twin]\npath = " + (dir.path() / "model").string() + "\n";
  // [model.twin] goes before [generate]: job() ends in the [generate] section.
  auto with_twin = [&](const std::string& twin_section) {
    std::string text = base_job;
    text.insert(text.find("[generate]"), twin_section);
    return text;
  };
  auto run_job = [&](const std::string& text, const std::string& name, int ranks) {
    test_support::write_text_file(dir.path() / name, text);
    const std::string launcher = ranks > 1 ? test_support::mpiexec_prefix(ranks) + " " : "";
    return run_command("cd " + dir.path().string() + " && " + launcher + rhead() + " run " + name, 240);
  };
  auto fresh_digest = [&](const std::string& text, const std::string& name) {
    std::string fresh = text;
    const std::string key = "run_dir = " + (dir.path() / "run").string();
    fresh.replace(fresh.find(key), key.size(), "run_dir = " + (dir.path() / ("fresh_" + name)).string());
    auto r = run_job(fresh, "fresh_" + name + ".ini", 1);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return test_support::store_digest(dir.path() / ("fresh_" + name) / "generate.h5");
  };
  const fs::path store = dir.path() / "run" / "generate.h5";
  auto counts = [&] {
    pipeline::store::File f = pipeline::store::File::open(store);
    return std::make_pair(f.root().attr_int("cells_resumed"), f.root().attr_int("cells_computed_last_attempt"));
  };

  auto first = run_job(base_job, "one.ini", 1);
  ASSERT_EQ(first.exit_code, 0) << first.output;

  // A second model: its 20 cells are computed, tiny's 20 are kept (at 2 ranks: the driver shares only
  // the cells left to do). The dry run says so first.
  test_support::write_text_file(dir.path() / "two.ini", with_twin(twin));
  auto dry = run_command("cd " + dir.path().string() + " && " + rhead() + " run two.ini --dry-run", 60);
  EXPECT_NE(dry.output.find("cells of tiny would be kept where their inputs are unchanged; twin would be computed"),
            std::string::npos)
      << dry.output;
  auto added = run_job(with_twin(twin), "two.ini", 2);
  ASSERT_EQ(added.exit_code, 0) << added.output;
  EXPECT_NE(added.output.find("its settings changed since"), std::string::npos) << added.output;
  EXPECT_NE(added.output.find("keeping 20 of 40 cells from the previous store"), std::string::npos) << added.output;
  EXPECT_EQ(counts(), std::make_pair(int64_t{20}, int64_t{20}));
  EXPECT_EQ(test_support::store_digest(store), fresh_digest(with_twin(twin), "two"));
  EXPECT_FALSE(fs::exists(dir.path() / "run" / "generate.shards")) << "the set-aside store is removed once merged";

  // A key of twin's section changes (family spelled out: the same model, but other settings): only
  // twin's cells are recomputed.
  const std::string twin_llama = twin + "family = llama\n";
  auto edited = run_job(with_twin(twin_llama), "edited.ini", 1);
  ASSERT_EQ(edited.exit_code, 0) << edited.output;
  EXPECT_NE(edited.output.find("20 finished cells in"), std::string::npos) << edited.output;
  EXPECT_NE(edited.output.find("were computed with other settings ([model.twin] family: auto -> llama); "
                               "discarding them"),
            std::string::npos)
      << edited.output;
  EXPECT_EQ(counts(), std::make_pair(int64_t{20}, int64_t{20}));

  // A [generate] key changes: every cell depends on it, none is kept.
  std::string shorter = with_twin(twin_llama);
  shorter.replace(shorter.find("max_new_tokens = 6"), 18, "max_new_tokens = 5");
  auto changed = run_job(shorter, "shorter.ini", 1);
  ASSERT_EQ(changed.exit_code, 0) << changed.output;
  EXPECT_NE(changed.output.find("40 finished cells in"), std::string::npos) << changed.output;
  EXPECT_EQ(changed.output.find("from the previous store"), std::string::npos) << changed.output;
  EXPECT_EQ(counts(), std::make_pair(int64_t{0}, int64_t{40}));
  EXPECT_EQ(test_support::store_digest(store), fresh_digest(shorter, "shorter"));

  // Removing a model keeps the other's cells and drops the removed model's.
  auto removed = run_job(base_job.substr(0, base_job.find("max_new_tokens = 6")) + "max_new_tokens = 5" +
                             base_job.substr(base_job.find("max_new_tokens = 6") + 18),
                         "removed.ini", 1);
  ASSERT_EQ(removed.exit_code, 0) << removed.output;
  EXPECT_EQ(counts(), std::make_pair(int64_t{20}, int64_t{0}));
  pipeline::store::File f = pipeline::store::File::open(store);
  EXPECT_EQ(f.root().open_group("cells").children().size(), 20u);
}

TEST(GenerateE2E, ChangedFilesAtTheSamePathsRecomputeTheCellsThatReadThem) {
  // The job names files (needles, haystack, model folders) by path; the store records a fingerprint of
  // each. Replacing one model's weights at the same path recomputes that model's cells alone, an edited
  // needles file every cell, and a file rewritten with the same bytes, or a new family file, nothing.
  test_support::TempDir dir("gen-files");
  test_support::write_world(dir.path());
  fs::copy(dir.path() / "model", dir.path() / "model2", fs::copy_options::recursive);
  std::string text = job(dir.path(), (dir.path() / "run").string(), "64, 96");  // 20 cells a model
  text.insert(text.find("[generate]"), "[model.twin]\npath = " + (dir.path() / "model2").string() + "\n");
  test_support::write_text_file(dir.path() / "job.ini", text);
  // A private copy of the family files (RHEAD_FAMILY_DIR), so that the test can add one.
  const fs::path families = dir.path() / "families";
  fs::copy(test_support::source_dir() / "models" / "families", families);
  const std::string rhead_cmd = "cd " + dir.path().string() + " && RHEAD_FAMILY_DIR=" + families.string() + " " + rhead();
  auto run = [&] { return run_command(rhead_cmd + " run job.ini", 240); };
  const fs::path store = dir.path() / "run" / "generate.h5";
  auto counts = [&] {
    pipeline::store::File f = pipeline::store::File::open(store);
    return std::make_pair(f.root().attr_int("cells_resumed"), f.root().attr_int("cells_computed_last_attempt"));
  };
  auto fresh_digest = [&](const std::string& name) {
    auto r = run_command(rhead_cmd + " run job.ini --set job.run_dir=" + (dir.path() / name).string(), 240);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return test_support::store_digest(dir.path() / name / "generate.h5");
  };
  auto first = run();
  ASSERT_EQ(first.exit_code, 0) << first.output;

  // The same bytes written again: nothing to do.
  const std::string needles = test_support::read_text_file(dir.path() / "needles.jsonl");
  test_support::write_text_file(dir.path() / "needles.jsonl", needles);
  // A new family (the way users add one): no model resolves to it, nothing to do.
  std::string family = test_support::read_text_file(families / "llama.ini");
  family.replace(family.find("name = llama"), 12, "name = newfam");
  family.replace(family.find("model_types = llama"), 19, "model_types = newfam");
  family.replace(family.find("architectures = LlamaForCausalLM"), 32, "architectures = NewFamForCausalLM");
  test_support::write_text_file(families / "newfam.ini", family);
  auto same = run();
  ASSERT_EQ(same.exit_code, 0) << same.output;
  EXPECT_NE(same.output.find("is complete, skipping"), std::string::npos) << same.output;

  // twin's folder gets other weights (the same model stored as bfloat16): twin's 20 cells are computed,
  // tiny's kept; the dry run names the changed files first.
  test_support::write_world(dir.path() / "bf16", 32, 2, 4, "llama", /*bf16=*/true);
  for (const char* file : {"config.json", "model.safetensors"}) {
    fs::copy_file(dir.path() / "bf16" / "model" / file, dir.path() / "model2" / file,
                  fs::copy_options::overwrite_existing);
  }
  auto dry = run_command(rhead_cmd + " run job.ini --dry-run", 60);
  EXPECT_NE(dry.output.find("is complete but files it reads changed (" + (dir.path() / "model2").string()),
            std::string::npos)
      << dry.output;
  auto replaced = run();
  ASSERT_EQ(replaced.exit_code, 0) << replaced.output;
  EXPECT_NE(replaced.output.find("files it reads changed since"), std::string::npos) << replaced.output;
  EXPECT_NE(replaced.output.find("model2/model.safetensors"), std::string::npos) << replaced.output;
  EXPECT_NE(replaced.output.find("20 finished cells in"), std::string::npos) << replaced.output;
  EXPECT_NE(replaced.output.find("were computed from files that have changed since; discarding them"),
            std::string::npos)
      << replaced.output;
  EXPECT_EQ(counts(), std::make_pair(int64_t{20}, int64_t{20}));
  EXPECT_EQ(test_support::store_digest(store), fresh_digest("fresh_replaced"));

  // An edited family file: both models resolve to it, so every cell is recomputed.
  test_support::write_text_file(families / "llama.ini",
                                test_support::read_text_file(families / "llama.ini") + "# edited\n");
  auto edited_family = run();
  ASSERT_EQ(edited_family.exit_code, 0) << edited_family.output;
  EXPECT_NE(edited_family.output.find("llama.ini)"), std::string::npos) << edited_family.output;
  EXPECT_EQ(counts(), std::make_pair(int64_t{0}, int64_t{40}));

  // An edited needles file (its first needle dropped): every cell reads it, none is kept.
  test_support::write_text_file(dir.path() / "needles.jsonl", needles.substr(needles.find('\n') + 1));
  auto edited = run();
  ASSERT_EQ(edited.exit_code, 0) << edited.output;
  EXPECT_NE(edited.output.find("needles.jsonl)"), std::string::npos) << edited.output;
  EXPECT_EQ(edited.output.find("from the previous store"), std::string::npos) << edited.output;
  pipeline::store::File f = pipeline::store::File::open(store);
  EXPECT_EQ(f.root().open_group("cells").children().size(), 20u) << "one needle left: 10 cells a model";
  EXPECT_EQ(f.root().attr_int("cells_computed_last_attempt"), 20);
}
