// End-to-end runs of the real binary on the score and correlate stages:
//   - jobs/published.ini on the seven official head_score files: Figure-3 bins and retrieval-head counts
//     (docs/PAPER_NOTES.md, "Published head scores"), always-on heads, Pearson within family, lossless export;
//   - a hand-built generate.h5 (two shapes, one failed test) scored at np = 1, 2, 3: hand-computed means,
//     identical stores whatever the rank count, shape_mismatch flagged;
//   - bad inputs: missing generate store, missing import file, unknown model in pairs.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "pipeline/store/hdf5_file.h"
#include "pipeline/store/store_header.h"
#include "stages/correlate/correlate_ops.h"
#include "stages/score/head_score_json.h"
#include "tests/common/test_support.h"

namespace fs = std::filesystem;
using pipeline::store::File;
using pipeline::store::Group;
using test_support::run_command;

namespace {

std::string rhead() { return test_support::rhead_exe().string(); }

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

size_t index_of(const std::vector<std::string>& names, const std::string& name) {
  auto it = std::find(names.begin(), names.end(), name);
  EXPECT_NE(it, names.end()) << name;
  return static_cast<size_t>(it - names.begin());
}

// ---- the official files -------------------------------------------------------------------------

struct Published {
  const char* model;
  int64_t layers, heads, tests;
  double bins[4];  // percent, docs/PAPER_NOTES.md, "Published head scores" ("verified exactly against shipped files")
  int64_t retrieval_heads, over_half, always_on;
};

// docs/PAPER_NOTES.md, "Published head scores": bins, heads > 0.1, heads > 0.5, always-on heads.
const Published kPublished[] = {
    {"llama-2-7b-80k", 32, 32, 586, {70.2, 26.6, 2.6, 0.6}, 33, 6, 12},
    {"llama-2-13b-64k", 40, 40, 367, {73.2, 24.8, 1.7, 0.4}, 33, 6, 8},
    {"Mistral-7B-v0.2-hf", 32, 32, 362, {65.0, 30.8, 3.7, 0.5}, 43, 5, 31},
    {"Mixtral-8x7B-v0.1", 32, 32, 390, {57.6, 36.2, 5.5, 0.7}, 63, 7, 40},
    {"Qwen1.5-14B", 40, 40, 390, {53.4, 42.8, 3.2, 0.6}, 61, 10, 0},
    {"Qwen1.5-14B-Chat", 40, 40, 221, {71.1, 24.6, 4.2, 0.1}, 68, 1, 0},
    {"Yi-6B-200K", 32, 32, 567, {49.4, 45.4, 4.5, 0.7}, 53, 7, 0},
};

TEST(E2EScoreStages, PublishedFilesReproduceThePapersNumbers) {
  auto shared = test_support::shared_reference_dir();
  if (!shared) GTEST_SKIP() << test_support::shared_reference_missing_message();
  const fs::path head_score = *shared / "head_score";
  test_support::TempDir dir("e2e-published");
  // The repository's job file, with its repo-relative paths made absolute.
  std::string job = test_support::read_text_file(test_support::source_dir() / "jobs" / "published.ini");
  job = replace_all(job, "../shared/reference/retrieval_head/", shared->string() + "/");
  test_support::write_text_file(dir.path() / "published.ini", job);

  auto r = test_support::run_rhead(dir.path(), 0, "published.ini --set score.export_dir=exported");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::cout << "[ timing   ] rhead run published.ini (score 7 files + correlate): " << r.seconds << " s\n";
  const fs::path run_dir = dir.path() / "runs" / "published";
  ASSERT_TRUE(pipeline::store::is_complete(run_dir / "score.h5"));
  ASSERT_TRUE(pipeline::store::is_complete(run_dir / "correlate.h5"));

  {
    File f = File::open(run_dir / "score.h5");
    Group models = f.root().open_group("models");
    ASSERT_EQ(models.children().size(), 7u);
    for (const auto& p : kPublished) {
      SCOPED_TRACE(p.model);
      Group g = models.open_group(p.model);
      EXPECT_EQ(g.attr_string("source"), "import:" + (head_score / (std::string(p.model) + ".json")).string());
      EXPECT_EQ(g.attr_string("rule"), "official_steps");
      EXPECT_EQ(g.attr_int("n_tests_success"), p.tests);
      auto mean = g.read_double("mean");
      ASSERT_EQ(mean.shape, (std::vector<uint64_t>{uint64_t(p.layers), uint64_t(p.heads)}));
      auto bins = g.read_int64("bins").data;
      ASSERT_EQ(bins.size(), 4u);
      for (size_t b = 0; b < 4; ++b) {
        const double percent = 100.0 * static_cast<double>(bins[b]) / static_cast<double>(p.layers * p.heads);
        EXPECT_NEAR(percent, p.bins[b], 0.05 + 1e-9) << "bin " << b;
      }
      EXPECT_EQ(bins[3], p.over_half);
      EXPECT_EQ(g.shape_of("retrieval_heads")[0], uint64_t(p.retrieval_heads));
      EXPECT_EQ(g.shape_of("always_on_heads")[0], uint64_t(p.always_on));
      EXPECT_EQ(g.shape_of("test_scores"), (std::vector<uint64_t>{uint64_t(p.tests), uint64_t(p.layers),
                                                                  uint64_t(p.heads)}));
      // Score store and export are lossless against the original file.
      const stages::HeadScores original = stages::read_head_score_file(head_score / (std::string(p.model) + ".json"));
      EXPECT_EQ(g.read_double("test_scores").data, original.scores);
      const fs::path exported = dir.path() / "exported" / (std::string(p.model) + ".json");
      const stages::HeadScores back = stages::read_head_score_file(exported);
      EXPECT_EQ(back.n_layer, original.n_layer);
      EXPECT_EQ(back.n_head, original.n_head);
      EXPECT_EQ(back.n_test, original.n_test);
      EXPECT_TRUE(back.scores == original.scores) << "export -> import is not lossless";
      EXPECT_TRUE(test_support::read_text_file(exported) ==
                  test_support::read_text_file(head_score / (std::string(p.model) + ".json")))
          << "export differs byte-wise from the shipped file";
    }
    // README / docs/PAPER_NOTES.md, "Published head scores": the strongest head of llama-2-7b-80k.
    Group llama = models.open_group("llama-2-7b-80k");
    auto ranking = llama.read_int32("ranking").data;
    EXPECT_EQ(ranking[0], 16);
    EXPECT_EQ(ranking[1], 19);
    EXPECT_NEAR(llama.read_double("mean").data[16 * 32 + 19], 0.943, 5e-4);
  }
  {
    File f = File::open(run_dir / "correlate.h5");
    Group root = f.root();
    EXPECT_EQ(root.attr_int("top_k"), 30);
    EXPECT_EQ(root.attr_string("shape_policy"), "common_grid");
    const auto names = root.read_texts("models");
    ASSERT_EQ(names.size(), 7u);
    const auto pearson = root.read_double("pearson").data;
    const auto mismatch = root.read_int32("shape_mismatch").data;
    const auto at = [&](const std::vector<double>& m, const char* a, const char* b) {
      return m[index_of(names, a) * names.size() + index_of(names, b)];
    };
    EXPECT_NEAR(at(pearson, "Mistral-7B-v0.2-hf", "Mixtral-8x7B-v0.1"), 0.964, 5e-4);
    EXPECT_NEAR(at(pearson, "Qwen1.5-14B", "Qwen1.5-14B-Chat"), 0.893, 5e-4);
    EXPECT_NEAR(at(pearson, "llama-2-7b-80k", "llama-2-7b-80k"), 1.0, 1e-12);
    // Same-shape cross-family pairs in [-0.02, 0.0] (docs/PAPER_NOTES.md, "Correlation").
    EXPECT_GE(at(pearson, "llama-2-7b-80k", "Mistral-7B-v0.2-hf"), -0.02 - 5e-4);
    EXPECT_LE(at(pearson, "llama-2-7b-80k", "Mistral-7B-v0.2-hf"), 0.0 + 5e-4);
    EXPECT_EQ(mismatch[index_of(names, "llama-2-7b-80k") * 7 + index_of(names, "Qwen1.5-14B")], 1);
    EXPECT_EQ(mismatch[index_of(names, "llama-2-7b-80k") * 7 + index_of(names, "Mistral-7B-v0.2-hf")], 0);
    Group pairs = root.open_group("pairs");
    Group mm = pairs.open_group("Mistral-7B-v0.2-hf__Mixtral-8x7B-v0.1");
    EXPECT_NEAR(mm.attr_double("pearson"), 0.964, 5e-4);
    EXPECT_EQ(mm.attr_string("label"), "Mistral-7B-v0.2-hf vs Mixtral-8x7B-v0.1");
    EXPECT_EQ(mm.attr_int("shape_mismatch"), 0);
    EXPECT_NEAR(pairs.open_group("Qwen1.5-14B__Qwen1.5-14B-Chat").attr_double("pearson"), 0.893, 5e-4);
    EXPECT_EQ(pairs.open_group("llama-2-7b-80k__Qwen1.5-14B").attr_int("shape_mismatch"), 1);
    EXPECT_LT(std::fabs(pairs.open_group("llama-2-7b-80k__Qwen1.5-14B").attr_double("pearson")), 0.11);
  }
  // inspect prints the per-model summary and the matrix.
  auto si = run_command(rhead() + " inspect " + (run_dir / "score.h5").string());
  ASSERT_EQ(si.exit_code, 0) << si.output;
  EXPECT_NE(si.output.find("model llama-2-7b-80k"), std::string::npos) << si.output;
  EXPECT_NE(si.output.find("retrieval heads (mean > 0.1): 33 (3.2%)"), std::string::npos) << si.output;
  EXPECT_NE(si.output.find("always-on heads (frequency 1): 12"), std::string::npos) << si.output;
  EXPECT_NE(si.output.find("16-19 0.943"), std::string::npos) << si.output;
  auto ci = run_command(rhead() + " inspect " + (run_dir / "correlate.h5").string());
  ASSERT_EQ(ci.exit_code, 0) << ci.output;
  EXPECT_NE(ci.output.find("Mistral-7B-v0.2-hf vs Mixtral-8x7B-v0.1: pearson 0.964"), std::string::npos) << ci.output;
  EXPECT_NE(ci.output.find("Qwen1.5-14B vs Qwen1.5-14B-Chat: pearson 0.893"), std::string::npos) << ci.output;
}

// ---- a hand-built generate store --------------------------------------------------------------

struct SynthCell {
  std::string model;
  int64_t needle, length, depth;
  double recall;
  int64_t prompt_tokens, begin;
  std::vector<int32_t> needle_ids, generated;
  int64_t layers, heads;
  std::vector<std::vector<int32_t>> positions;  // [layer * heads + head][step]
};

std::string cell_id(const SynthCell& c) {
  return c.model + ".n" + std::to_string(c.needle) + ".L" + std::to_string(c.length) + ".D" + std::to_string(c.depth);
}

// Needle answer ids at prompt positions 10..13 of a 20-token prompt; five decode steps that copy them.
SynthCell alpha_cell(int64_t needle, int64_t length, int64_t depth, double recall,
                     std::vector<std::vector<int32_t>> positions) {
  return {"alpha", needle, length, depth, recall, 20, 10, {101, 102, 103, 104}, {101, 102, 103, 104, 13},
          2, 3, std::move(positions)};
}

// beta: 3 layers x 2 heads; answer ids at positions 5..7 of a 12-token prompt; three steps.
SynthCell beta_cell(int64_t depth, std::vector<std::vector<int32_t>> positions) {
  return {"beta", 0, 100, depth, 100.0, 12, 5, {201, 202, 203}, {201, 202, 203}, 3, 2, std::move(positions)};
}

const std::vector<std::vector<int32_t>> kAlphaA = {
    {10, 11, 12, 13, 0},   // (0,0): copies every answer token: 4 x 1/4 = 1
    {10, 10, 10, 10, 0},   // (0,1): only step 0 matches (101): 0.25
    {0, 0, 0, 0, 0},       // (0,2): 0
    {11, 11, 0, 0, 0},     // (1,0): step 1 (102): 0.25
    {12, 12, 12, 12, 12},  // (1,1): step 2 (103): 0.25
    {25, 25, 25, 25, 25},  // (1,2): a generated token's key, never in the span: 0
};
const std::vector<std::vector<int32_t>> kAlphaB = {
    {10, 11, 0, 0, 0},     // 0.5
    {0, 0, 0, 0, 0},       // 0
    {10, 0, 0, 0, 0},      // 0.25
    {11, 11, 0, 0, 0},     // 0.25
    {0, 0, 0, 0, 0},       // 0
    {13, 13, 13, 13, 13},  // step 3 (104): 0.25
};
const std::vector<std::vector<int32_t>> kAlphaFailed = {
    {10, 11, 12, 13, 0}, {10, 11, 12, 13, 0}, {10, 11, 12, 13, 0},
    {10, 11, 12, 13, 0}, {10, 11, 12, 13, 0}, {10, 11, 12, 13, 0},
};
const std::vector<std::vector<int32_t>> kBeta1 = {
    {5, 6, 7}, {0, 0, 0}, {5, 0, 0}, {0, 0, 0}, {7, 7, 7}, {0, 0, 0},  // 1, 0, 1/3, 0, 1/3, 0
};
const std::vector<std::vector<int32_t>> kBeta2 = {
    {5, 6, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {6, 6, 6},  // 2/3, 0, 0, 0, 0, 1/3
};

std::vector<SynthCell> synthetic_cells() {
  std::vector<SynthCell> cells = {
      alpha_cell(0, 1000, 0, 100.0, kAlphaA),       // test order is numeric: L200 before L1000
      alpha_cell(0, 200, 50, 75.0, kAlphaB),
      alpha_cell(1, 100, 0, 40.0, kAlphaFailed),    // failed (recall 40 <= 50): excluded
      beta_cell(0, kBeta1),
      beta_cell(100, kBeta2),
  };
  SynthCell gamma = alpha_cell(0, 100, 0, 60.0, kAlphaA);  // same shape as alpha
  gamma.model = "gamma";
  cells.push_back(gamma);
  return cells;
}

void write_generate_store(const fs::path& path) {
  File f = File::create(path);
  Group root = f.root();
  pipeline::store::StoreHeader header;
  header.stage = "generate";
  header.schema_version = 1;
  header.job_file = "synthetic.ini";
  header.job_text = "[job]\nname = synthetic\n";
  header.world_size = 1;
  header.comm_backend = "self";
  pipeline::store::write_header(root, header);
  Group models = root.create_group("models");
  Group cells = root.create_group("cells");
  for (const auto& c : synthetic_cells()) {
    if (!models.has(c.model)) {
      Group m = models.create_group(c.model);
      m.set_attr("path", "/nowhere/" + c.model);
      m.set_attr("family", "synthetic");
      m.set_attr("n_layer", c.layers);
      m.set_attr("n_head", c.heads);
      m.set_attr("n_kv_head", c.heads);
      m.set_attr("vocab_size", int64_t{300});
    }
    Group g = cells.create_group(cell_id(c));
    g.set_attr("model", c.model);
    g.set_attr("needle_index", c.needle);
    g.set_attr("context_length", c.length);
    g.set_attr("depth_percent", c.depth);
    g.set_attr("prompt_tokens", c.prompt_tokens);
    g.set_attr("needle_begin", c.begin);
    g.set_attr("needle_end", c.begin + static_cast<int64_t>(c.needle_ids.size()));
    g.set_attr("rouge1_recall", c.recall);
    g.set_attr("prompt_mode", "faithful");
    g.write("needle_ids", c.needle_ids, {c.needle_ids.size()}, "span");
    g.write("generated_ids", c.generated, {c.generated.size()}, "step");
    g.write_text("response", "synthetic");
    const size_t steps = c.generated.size();
    std::vector<int32_t> capture(steps * static_cast<size_t>(c.layers * c.heads));
    for (size_t s = 0; s < steps; ++s) {
      for (size_t lh = 0; lh < c.positions.size(); ++lh) capture[s * c.positions.size() + lh] = c.positions[lh][s];
    }
    g.write("capture_argmax", capture, {steps, uint64_t(c.layers), uint64_t(c.heads)}, "step,layer,head");
    g.set_attr("complete", int64_t{1});
  }
  pipeline::store::mark_complete(root);
  f.close();
}

const char* kSyntheticJob =
    "[job]\nname = synthetic\nstages = generate, score, correlate\nthreads = 1\n"
    "[score]\nexport_dir = exported\n"
    "[correlate]\ntop_k = 2\npairs = alpha:beta, alpha:gamma\n";

TEST(E2EScoreStages, SyntheticGenerateStoreIdenticalAtOneTwoThreeRanks) {
  test_support::TempDir dir("e2e-score-synth");
  test_support::write_text_file(dir.path() / "job.ini", kSyntheticJob);
  std::string score_ref, corr_ref;
  for (int np : {0, 1, 2, 3}) {
    SCOPED_TRACE("np=" + std::to_string(np));
    const std::string run = "runs/np" + std::to_string(np);
    fs::create_directories(dir.path() / run);
    write_generate_store(dir.path() / run / "generate.h5");
    // generate is not run (its store is there); score reads it because [job] stages lists it first.
    auto r = test_support::run_rhead(dir.path(), np, "job.ini --stages score,correlate --set job.run_dir=" + run);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string ds = test_support::store_digest(dir.path() / run / "score.h5");
    const std::string dc = test_support::store_digest(dir.path() / run / "correlate.h5");
    if (score_ref.empty()) {
      score_ref = ds;
      corr_ref = dc;
    }
    EXPECT_EQ(ds, score_ref) << "score.h5 differs from the single-process run";
    EXPECT_EQ(dc, corr_ref) << "correlate.h5 differs from the single-process run";
  }

  // A changed key reruns its stage and, through the recomputed input, every stage after it.
  auto dry = test_support::run_rhead(dir.path(), 0,
                                     "job.ini --stages score,correlate --dry-run --set job.run_dir=runs/np3 "
                                     "--set score.export_dir=elsewhere");
  EXPECT_NE(dry.output.find("score.h5 is complete but its settings changed ([score] export_dir: exported -> "
                            "elsewhere): would rerun"),
            std::string::npos) << dry.output;
  EXPECT_NE(dry.output.find("correlate.h5 is complete but would rerun after its input 'score' is rewritten"),
            std::string::npos) << dry.output;
  auto same = test_support::run_rhead(dir.path(), 0, "job.ini --stages score,correlate --set job.run_dir=runs/np3");
  EXPECT_EQ(same.output.find("rerunning"), std::string::npos) << same.output;

  const fs::path run_dir = dir.path() / "runs" / "np3";
  File sf = File::open(run_dir / "score.h5");
  Group models = sf.root().open_group("models");
  ASSERT_EQ(models.children(), (std::vector<std::string>{"alpha", "beta", "gamma"}));

  Group alpha = models.open_group("alpha");
  EXPECT_EQ(alpha.attr_string("source"), "generate");
  EXPECT_EQ(alpha.attr_string("rule"), "official_steps");
  EXPECT_EQ(alpha.attr_int("n_tests_total"), 3);
  EXPECT_EQ(alpha.attr_int("n_tests_success"), 2);  // the recall-40 test is dropped
  EXPECT_EQ(alpha.read_texts("test_cells"), (std::vector<std::string>{"alpha.n0.L200.D50", "alpha.n0.L1000.D0"}));
  auto ts = alpha.read_double("test_scores");
  EXPECT_EQ(ts.shape, (std::vector<uint64_t>{2, 2, 3}));
  EXPECT_EQ(ts.data, (std::vector<double>{0.5, 0.0, 0.25, 0.25, 0.0, 0.25, 1.0, 0.25, 0.0, 0.25, 0.25, 0.0}));
  EXPECT_EQ(alpha.read_double("mean").data, (std::vector<double>{0.75, 0.125, 0.125, 0.25, 0.125, 0.125}));
  EXPECT_EQ(alpha.read_double("frequency").data, (std::vector<double>{1.0, 0.5, 0.5, 1.0, 0.5, 0.5}));
  EXPECT_EQ(alpha.read_int32("ranking").data,
            (std::vector<int32_t>{0, 0, 1, 0, 0, 1, 0, 2, 1, 1, 1, 2}));  // ties by (layer, head)
  EXPECT_EQ(alpha.shape_of("retrieval_heads")[0], 6u);                    // every mean > 0.1
  EXPECT_EQ(alpha.read_int32("always_on_heads").data, (std::vector<int32_t>{0, 0, 1, 0}));
  EXPECT_EQ(alpha.read_int64("bins").data, (std::vector<int64_t>{0, 0, 5, 1}));

  Group beta = models.open_group("beta");
  EXPECT_EQ(beta.attr_int("n_tests_total"), 2);
  EXPECT_EQ(beta.attr_int("n_tests_success"), 2);
  auto bm = beta.read_double("mean");
  EXPECT_EQ(bm.shape, (std::vector<uint64_t>{3, 2}));
  const std::vector<double> beta_mean{5.0 / 6.0, 0.0, 1.0 / 6.0, 0.0, 1.0 / 6.0, 1.0 / 6.0};
  for (size_t i = 0; i < beta_mean.size(); ++i) EXPECT_DOUBLE_EQ(bm.data[i], beta_mean[i]) << "head " << i;
  EXPECT_EQ(beta.read_int32("always_on_heads").data, (std::vector<int32_t>{0, 0}));
  EXPECT_EQ(beta.read_int64("bins").data, (std::vector<int64_t>{2, 0, 3, 1}));

  Group gamma = models.open_group("gamma");
  EXPECT_EQ(gamma.read_double("mean").data, (std::vector<double>{1.0, 0.25, 0.0, 0.25, 0.25, 0.0}));

  // The export is the official format of the same numbers.
  const stages::HeadScores exported = stages::read_head_score_file(dir.path() / "exported" / "alpha.json");
  EXPECT_EQ(exported.n_test, 2);
  EXPECT_EQ(exported.scores, ts.data);

  File cf = File::open(run_dir / "correlate.h5");
  Group croot = cf.root();
  EXPECT_EQ(croot.read_texts("models"), (std::vector<std::string>{"alpha", "beta", "gamma"}));
  EXPECT_EQ(croot.read_int32("shape_mismatch").data, (std::vector<int32_t>{0, 1, 0, 1, 0, 1, 0, 1, 0}));
  const std::vector<double> alpha_mean{0.75, 0.125, 0.125, 0.25, 0.125, 0.125};
  const std::vector<double> gamma_mean{1.0, 0.25, 0.0, 0.25, 0.25, 0.0};
  const auto pearson = croot.read_double("pearson").data;
  EXPECT_EQ(pearson[0 * 3 + 2], stages::pearson(alpha_mean, gamma_mean));
  EXPECT_EQ(pearson[2 * 3 + 0], pearson[0 * 3 + 2]);
  const auto comparison = stages::compare_maps({2, 3, alpha_mean}, {3, 2, beta.read_double("mean").data}, 2);
  EXPECT_EQ(pearson[0 * 3 + 1], comparison.pearson);
  Group ab = croot.open_group("pairs").open_group("alpha__beta");
  EXPECT_EQ(ab.attr_int("shape_mismatch"), 1);
  EXPECT_EQ(ab.attr_string("label"), "alpha vs beta");
  EXPECT_EQ(ab.attr_double("top_k_jaccard"), comparison.top_k_jaccard);
  EXPECT_EQ(croot.open_group("pairs").open_group("alpha__gamma").attr_int("shape_mismatch"), 0);

  auto ci = run_command(rhead() + " inspect " + (run_dir / "correlate.h5").string());
  EXPECT_EQ(ci.exit_code, 0) << ci.output;
  EXPECT_NE(ci.output.find("alpha vs beta: pearson"), std::string::npos) << ci.output;
  EXPECT_NE(ci.output.find("(shapes differ)"), std::string::npos) << ci.output;
  auto si = run_command(rhead() + " inspect " + (run_dir / "score.h5").string());
  EXPECT_EQ(si.exit_code, 0) << si.output;
  EXPECT_NE(si.output.find("tests used: 2 of 3"), std::string::npos) << si.output;
}

TEST(E2EScoreStages, BadInputsGiveOneClearError) {
  test_support::TempDir dir("e2e-score-bad");
  // generate listed before score, but no generate store.
  test_support::write_text_file(dir.path() / "nogen.ini", "[job]\nname = nogen\nstages = generate, score\n");
  auto a = test_support::run_rhead(dir.path(), 2, "nogen.ini --stages score");
  EXPECT_EQ(a.exit_code, 1) << a.output;
  // The runner checks every input of a stage before it runs (Stage::inputs sees [job] stages).
  EXPECT_NE(a.output.find("stage score reads runs/nogen/generate.h5, which is missing or incomplete"),
            std::string::npos)
      << a.output;
  EXPECT_NE(a.output.find("Hint: add 'generate' before 'score'"), std::string::npos) << a.output;

  // An import file that does not exist is named.
  test_support::write_text_file(dir.path() / "noimport.ini",
                                "[job]\nname = noimport\nstages = score\n[score]\nimport = x=missing/nope.json\n");
  auto b = test_support::run_rhead(dir.path(), 0, "noimport.ini");
  EXPECT_EQ(b.exit_code, 1) << b.output;
  EXPECT_NE(b.output.find((dir.path() / "missing" / "nope.json").string() + ": no such file"), std::string::npos)
      << b.output;

  // Nothing to score.
  test_support::write_text_file(dir.path() / "empty.ini", "[job]\nname = empty\nstages = score\n");
  auto c = test_support::run_rhead(dir.path(), 0, "empty.ini");
  EXPECT_EQ(c.exit_code, 1) << c.output;
  EXPECT_NE(c.output.find("score has nothing to score"), std::string::npos) << c.output;

  // A pair naming an unknown model lists the models there are.
  fs::create_directories(dir.path() / "runs" / "pairs");
  write_generate_store(dir.path() / "runs" / "pairs" / "generate.h5");
  test_support::write_text_file(dir.path() / "pairs.ini",
                                "[job]\nname = pairs\nstages = generate, score, correlate\n"
                                "[correlate]\npairs = alpha:delta\n");
  auto d = test_support::run_rhead(dir.path(), 0, "pairs.ini --stages score,correlate");
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_NE(d.output.find("unknown model 'delta' in 'alpha:delta'"), std::string::npos) << d.output;
  EXPECT_NE(d.output.find("alpha, beta, gamma"), std::string::npos) << d.output;

  // A malformed rule is a config error naming the key.
  auto e = test_support::run_rhead(dir.path(), 0, "pairs.ini --stages score --force --set score.rule=paper");
  EXPECT_EQ(e.exit_code, 1) << e.output;
  EXPECT_NE(e.output.find("[score] rule: got 'paper'"), std::string::npos) << e.output;
}

}  // namespace
