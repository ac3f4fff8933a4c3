// ablate end to end: a tiny random model, retrieval scores imported from a hand-written official
// head_score JSON (heads 0-0 and 1-2 are the "retrieval heads"), masked NIAH over top-K and random heads,
// downstream task items (qa, cot, direct) under the same head selections, mode mean, bad task files, and
// kill -9 + resume. Random weights answer nothing: the machinery is what is tested.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>

#include "models/tokenizer/tokenizer.h"
#include "pipeline/store/hdf5_file.h"
#include "pipeline/store/store_header.h"
#include "stages/ablate/ablate_ops.h"
#include "tests/common/test_support.h"
#include "tests/stages_e2e/kill_rank.h"
#include "tests/stages_e2e/tiny_world.h"

namespace fs = std::filesystem;

namespace {

// layers x heads; 0-0 scores 0.85 and 1-2 scores 0.45 on average, every other head 0.
void write_scores(const fs::path& file, int layers = 2, int heads = 4) {
  std::string json = "{";
  for (int l = 0; l < layers; ++l) {
    for (int h = 0; h < heads; ++h) {
      std::string v = (l == 0 && h == 0) ? "[0.9, 0.8]" : (l == 1 && h == 2) ? "[0.5, 0.4]" : "[0.0, 0.0]";
      json += std::string(json.size() > 1 ? ", " : "") + "\"" + std::to_string(l) + "-" + std::to_string(h) + "\": " + v;
    }
  }
  test_support::write_text_file(file, json + "}");
}

// Task files over the tiny world's words (WordLevel, whitespace-split): qa (3 items), cot (2), direct (2).
struct TaskGold {
  std::string user;                // the spec's user text, built here independently of ablate_ops
  std::vector<std::string> golds;
  stages::AnswerKind answer_kind = stages::AnswerKind::kText;
};
std::map<std::string, std::vector<TaskGold>> write_tasks(const fs::path& dir) {
  test_support::write_text_file(
      dir / "qa.jsonl",
      "{\"context\": \"the cat sat on the mat .\", \"question\": \"where is the cat ?\", \"answers\": [\"on the mat\", "
      "\"the mat\"]}\n"
      "{\"context\": \"the dog ran under the old tree .\", \"question\": \"what ran ?\", \"answers\": [\"the dog\"], "
      "\"prompt\": \"answer from the book .\"}\n"
      "{\"context\": \"a small green house near the river .\", \"question\": \"what is near the river ?\", "
      "\"answers\": [\"a small green house\"]}\n");
  test_support::write_text_file(
      dir / "cot.jsonl",
      "{\"question\": \"what is the secret code ?\", \"answer\": \"blue seven\", \"prompt\": \"the cat sat . "
      "then the answer is cat .\"}\n"
      "{\"question\": \"which river is best ?\", \"answer\": \"7\", \"answer_kind\": \"number\"}\n");
  test_support::write_text_file(
      dir / "direct.jsonl",
      "{\"question\": \"which river is best ?\", \"answer\": \"amber\", \"context\": \"the best river is the amber "
      "river .\"}\n"
      "{\"question\": \"what sat ?\", \"answer\": \"B\", \"answer_kind\": \"choice\", \"context\": \"A cat B dog\"}\n");
  using K = stages::AnswerKind;
  return {{"qa",
           {{"the cat sat on the mat .\nQuestion: where is the cat ?\nAnswer:", {"on the mat", "the mat"}, K::kText},
            {"answer from the book .\nthe dog ran under the old tree .\nQuestion: what ran ?\nAnswer:", {"the dog"},
             K::kText},
            {"a small green house near the river .\nQuestion: what is near the river ?\nAnswer:",
             {"a small green house"}, K::kText}}},
          {"cot",
           {{"the cat sat . then the answer is cat .\nQuestion: what is the secret code ?\nAnswer:", {"blue seven"},
             K::kText},
            {"Question: which river is best ?\nAnswer:", {"7"}, K::kNumber}}},
          {"direct",
           {{"the best river is the amber river .\nQuestion: which river is best ?\nAnswer:", {"amber"}, K::kText},
            {"A cat B dog\nQuestion: what sat ?\nAnswer:", {"B"}, K::kChoice}}}};
}

std::string tasks_job(const fs::path& dir, const std::string& models, const std::string& imports,
                      const std::string& extra) {
  return "[job]\nname = abltask\nstages = score, ablate\nthreads = 1\n" + models + "[score]\nimport = " + imports +
         "\n[ablate]\nhaystack = " + (dir / "haystack").string() + "\nneedles = " + (dir / "needles.jsonl").string() +
         "\nlengths = 64\ndepths = 50\nprompt_mode = fixed\nbuffer_tokens = 16\nmax_new_tokens = 3\n"
         "tracked_heads = 2\n" + extra;
}

std::vector<std::string> rows_of(const pipeline::store::Group& g) { return g.read_texts("rows"); }

}  // namespace

TEST(AblateE2E, TopAndRandomHeadSetsMaskingAndRankCountIndependence) {
  test_support::TempDir dir("ablate");
  test_support::write_world(dir.path());
  write_scores(dir.path() / "tiny.json");
  const std::string job =
      "[job]\nname = abl\nstages = score, ablate\nthreads = 1\n[model.tiny]\npath = " + (dir.path() / "model").string() +
      "\n[score]\nimport = tiny=" + (dir.path() / "tiny.json").string() + "\n[ablate]\nhaystack = " +
      (dir.path() / "haystack").string() + "\nneedles = " + (dir.path() / "needles.jsonl").string() +
      "\nlengths = 64\ndepths = 0, 100\nks = 0, 1, 2, 50\nrandom_seeds = 2\nprompt_mode = fixed\nbuffer_tokens = 16\n"
      "max_new_tokens = 4\ntracked_heads = 2\n";
  test_support::write_text_file(dir.path() / "job.ini", job);
  auto one = test_support::run_rhead(dir.path(), 0, "job.ini --set job.run_dir=" + (dir.path() / "np1").string());
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto two = test_support::run_rhead(dir.path(), 2, "job.ini --set job.run_dir=" + (dir.path() / "np2").string());
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_EQ(test_support::store_digest(dir.path() / "np1" / "ablate.h5"),
            test_support::store_digest(dir.path() / "np2" / "ablate.h5"));
  EXPECT_NE(one.output.find("K = 50 skipped"), std::string::npos) << "K above the head count is clipped";

  pipeline::store::File f = pipeline::store::File::open(dir.path() / "np1" / "ablate.h5");
  auto cells = f.root().open_group("cells");
  // (1 baseline + 2 K x (top + 2 random)) x 2 needles x 1 length x 2 depths
  EXPECT_EQ(cells.children().size(), 28u);
  bool baseline_head00_moves = false;
  for (const auto& id : cells.children()) {
    auto c = cells.open_group(id);
    const std::string sel = c.attr_string("selection");
    const int64_t k = c.attr_int("k");
    auto heads = c.read_int32("masked_heads").data;  // [k, 2]
    ASSERT_EQ(heads.size(), static_cast<size_t>(2 * k)) << id;
    std::set<std::pair<int, int>> masked;
    for (size_t i = 0; i < heads.size(); i += 2) masked.insert({heads[i], heads[i + 1]});
    if (sel == "top") {
      std::set<std::pair<int, int>> expect = {{0, 0}};
      if (k == 2) expect.insert({1, 2});
      EXPECT_EQ(masked, expect) << id;
    }
    if (sel.rfind("rand", 0) == 0) {
      EXPECT_FALSE(masked.count({0, 0}) || masked.count({1, 2})) << id << ": a retrieval head was drawn at random";
    }
    // Tracked heads are the top-2 by score: (0, 0) first. Under the uniform mask its attention row is
    // uniform, so its argmax is the first key (position 0) at every step: the mask reached the model.
    auto top = c.read_int32("top_head_argmax");
    ASSERT_EQ(top.shape.size(), 2u);
    for (size_t step = 0; step < top.shape[0]; ++step) {
      int32_t pos00 = top.data[step * top.shape[1]];
      if (sel == "top") {
        EXPECT_EQ(pos00, 0) << id << " step " << step;
      }
      if (sel == "none" && pos00 != 0) baseline_head00_moves = true;
    }
    std::string type = c.attr_string("error_type");
    EXPECT_TRUE(type == "correct" || type == "incomplete" || type == "wrong_extraction" || type == "hallucination") << type;
  }
  EXPECT_TRUE(baseline_head00_moves) << "unmasked head 0-0 always looked at position 0: the check above proves nothing";

  auto info = test_support::run_command(test_support::rhead_exe().string() + " inspect " +
                                        (dir.path() / "np1" / "ablate.h5").string());
  EXPECT_NE(info.output.find("model tiny: NIAH ROUGE-1 recall, unmasked"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("mode uniform"), std::string::npos) << info.output;
}

TEST(AblateE2E, RerunsWhenItsInputWasRecomputed) {
  test_support::TempDir dir("ablate-stale");
  test_support::write_world(dir.path());
  write_scores(dir.path() / "tiny.json");
  test_support::write_text_file(
      dir.path() / "job.ini",
      "[job]\nname = stale\nstages = score, ablate\nthreads = 1\nrun_dir = " + (dir.path() / "run").string() +
          "\n[model.tiny]\npath = " + (dir.path() / "model").string() + "\n[score]\nimport = tiny=" +
          (dir.path() / "tiny.json").string() + "\n[ablate]\nhaystack = " + (dir.path() / "haystack").string() +
          "\nneedles = " + (dir.path() / "needles.jsonl").string() +
          "\nlengths = 64\ndepths = 50\nks = 0, 1\nrandom_seeds = 1\nprompt_mode = fixed\nbuffer_tokens = 16\n"
          "max_new_tokens = 2\n");
  ASSERT_EQ(test_support::run_rhead(dir.path(), 0, "job.ini").exit_code, 0);
  auto again = test_support::run_rhead(dir.path(), 0, "job.ini");
  EXPECT_NE(again.output.find("stage ablate: store"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("is complete, skipping"), std::string::npos) << again.output;

  // Recompute score alone: its store_id changes, so the next run must redo ablate (and only ablate). The
  // model's score map is the same, so every finished cell is kept.
  const fs::path store = dir.path() / "run" / "ablate.h5";
  const std::string before = test_support::store_digest(store);
  ASSERT_EQ(test_support::run_rhead(dir.path(), 0, "job.ini --stages score --force").exit_code, 0);
  auto stale = test_support::run_rhead(dir.path(), 0, "job.ini");
  ASSERT_EQ(stale.exit_code, 0) << stale.output;
  EXPECT_NE(stale.output.find("input 'score' was recomputed"), std::string::npos) << stale.output;
  EXPECT_NE(stale.output.find("stage score: store"), std::string::npos) << "score itself is current:\n" << stale.output;
  EXPECT_NE(stale.output.find("keeping 6 of 6 cells from the previous store"), std::string::npos) << stale.output;
  {
    pipeline::store::File f = pipeline::store::File::open(store);
    EXPECT_EQ(f.root().attr_int("cells_computed_last_attempt"), 0);
  }
  EXPECT_EQ(test_support::store_digest(store), before);
  auto settled = test_support::run_rhead(dir.path(), 0, "job.ini");
  EXPECT_EQ(settled.output.find("was recomputed"), std::string::npos) << settled.output;

  // Other scores (the retrieval heads swap places): the head sets change, so every cell is recomputed.
  test_support::write_text_file(dir.path() / "tiny.json",
                                "{\"0-0\": [0, 0], \"0-1\": [0.9, 0.8], \"0-2\": [0, 0], \"0-3\": [0, 0], "
                                "\"1-0\": [0, 0], \"1-1\": [0, 0], \"1-2\": [0.5, 0.4], \"1-3\": [0, 0]}");
  ASSERT_EQ(test_support::run_rhead(dir.path(), 0, "job.ini --stages score --force").exit_code, 0);
  auto rescored = test_support::run_rhead(dir.path(), 0, "job.ini");
  ASSERT_EQ(rescored.exit_code, 0) << rescored.output;
  EXPECT_NE(rescored.output.find("6 finished cells in"), std::string::npos) << rescored.output;
  EXPECT_NE(rescored.output.find("were computed from other inputs; discarding them"), std::string::npos)
      << rescored.output;
  pipeline::store::File f = pipeline::store::File::open(store);
  EXPECT_EQ(f.root().attr_int("cells_computed_last_attempt"), 6);
  auto top = f.root().open_group("cells").open_group("tiny.uniform.top.K1.n0.L64.D50").read_int32("masked_heads");
  EXPECT_EQ(top.data, (std::vector<int32_t>{0, 1})) << "the top head of the new scores";
}

TEST(AblateE2E, TasksUnderMaskingAtOneAndTwoRanksBaseAndChat) {
  test_support::TempDir dir("ablate-tasks");
  test_support::write_world(dir.path());
  write_scores(dir.path() / "tiny.json");
  const auto golds = write_tasks(dir.path());
  const std::string model = (dir.path() / "model").string();
  const std::string job = tasks_job(
      dir.path(), "[model.tiny]\npath = " + model + "\n[model.chat]\npath = " + model + "\nchat = true\n",
      "tiny=" + (dir.path() / "tiny.json").string() + ", chat=" + (dir.path() / "tiny.json").string(),
      "ks = 0, 1\nrandom_seeds = 2\ntask_max_new_tokens = 4\ntask_limit = 2\ntasks = qa=qa:qa.jsonl, cot=cot:cot.jsonl\n"
      "tasks = direct=direct:direct.jsonl\n");
  test_support::write_text_file(dir.path() / "job.ini", job);
  auto one = test_support::run_rhead(dir.path(), 0, "job.ini --set job.run_dir=np1");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto two = test_support::run_rhead(dir.path(), 2, "job.ini --set job.run_dir=np2");
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_EQ(test_support::store_digest(dir.path() / "np1" / "ablate.h5"),
            test_support::store_digest(dir.path() / "np2" / "ablate.h5"));

  const auto tok = models::load_tokenizer(model);
  pipeline::store::File store1 = pipeline::store::File::open(dir.path() / "np1" / "ablate.h5");
  pipeline::store::File store2 = pipeline::store::File::open(dir.path() / "np2" / "ablate.h5");
  auto cells = store1.root().open_group("cells");
  auto cells2 = store2.root().open_group("cells");
  // Per model: 4 selections (none, top, rand0, rand1) x (2 NIAH cells + 2 qa + 2 cot + 2 direct items).
  EXPECT_EQ(cells.children().size(), 2u * 4u * 8u);
  // (model, task, row label) -> (sum F1, sum EM, n): the summary must be these means.
  std::map<std::tuple<std::string, std::string, std::string>, std::tuple<double, double, int64_t>> sums;
  int n_task_cells = 0;
  bool recomputed_one = false;
  for (const auto& id : cells.children()) {
    auto c = cells.open_group(id);
    if (!c.has_attr("task")) continue;
    ++n_task_cells;
    const std::string m = c.attr_string("model"), task = c.attr_string("task"), mode = c.attr_string("mode");
    const std::string sel = c.attr_string("selection");
    const int64_t k = c.attr_int("k"), item = c.attr_int("item");
    EXPECT_EQ(id, m + "." + mode + "." + sel + ".K" + std::to_string(k) + ".task." + task + ".i" + std::to_string(item));
    EXPECT_EQ(c.attr_string("task_kind"), task) << id;
    ASSERT_TRUE(item >= 0 && item < 2) << id << ": task_limit = 2";
    const TaskGold& gold = golds.at(task)[static_cast<size_t>(item)];
    EXPECT_EQ(c.read_int32("masked_heads").data.size(), static_cast<size_t>(2 * k)) << id;
    EXPECT_EQ(c.attr_int("seed"), sel.rfind("rand", 0) == 0 ? std::stoll(sel.substr(4)) : -1) << id;
    const double f1 = c.attr_double("f1"), em = c.attr_double("exact_match");
    EXPECT_TRUE(f1 >= 0 && f1 <= 100 && em >= 0 && em <= 100) << id << " f1 " << f1 << " em " << em;
    const auto gen = c.read_int32("generated_ids").data;
    EXPECT_GE(gen.size(), 1u);
    EXPECT_LE(gen.size(), 4u) << "task_max_new_tokens = 4";
    const std::string response = c.read_text("response"), prediction = c.read_text("prediction");
    // The prompt: the spec's user text, tokenized with BOS (base) or inside "[INST] {user} [/INST]" without
    // special tokens (chat, the llama family template).
    const std::vector<int64_t> ids = m == "chat" ? tok->encode("[INST] " + gold.user + " [/INST]", false)
                                                 : tok->encode(gold.user, true);
    EXPECT_EQ(c.attr_int("prompt_tokens"), static_cast<int64_t>(ids.size())) << id;
    // Scores: squad_score on the stored prediction, which is the stored response (qa) or its final answer.
    EXPECT_EQ(prediction, task == "qa" ? response : stages::extract_final_answer(response, gold.answer_kind)) << id;
    const stages::QaScore q = stages::squad_score(prediction, gold.golds);
    EXPECT_DOUBLE_EQ(f1, 100.0 * q.f1) << id;
    EXPECT_DOUBLE_EQ(em, 100.0 * q.exact_match) << id;
    recomputed_one = true;
    // Rank-count independence of what the digest skips (attributes).
    auto c2 = cells2.open_group(id);
    EXPECT_EQ(c2.attr_double("f1"), f1) << id;
    EXPECT_EQ(c2.attr_double("exact_match"), em) << id;
    EXPECT_EQ(c2.read_text("prediction"), prediction) << id;
    auto& acc = sums[{m, task, mode + "/" + sel}];
    std::get<0>(acc) += f1;
    std::get<1>(acc) += em;
    ++std::get<2>(acc);
  }
  EXPECT_TRUE(recomputed_one);
  EXPECT_EQ(n_task_cells, 2 * 4 * 6);

  const std::vector<std::string> rows = {"none/none", "uniform/top", "uniform/rand0", "uniform/rand1"};
  const std::vector<int64_t> ks = {0, 1, 1, 1};
  for (const std::string m : {"tiny", "chat"}) {
    auto g = store1.root().open_group("summary").open_group(m);
    EXPECT_EQ(rows_of(g), rows);
    auto tasks = g.open_group("tasks");
    EXPECT_EQ(tasks.children(), (std::vector<std::string>{"cot", "direct", "qa"}));
    for (const std::string task : {"qa", "cot", "direct"}) {
      auto t = tasks.open_group(task);
      EXPECT_EQ(t.attr_string("kind"), task);
      EXPECT_EQ(rows_of(t), rows);
      EXPECT_EQ(t.read_int64("k").data, ks);
      EXPECT_EQ(t.read_int64("n_items").data, std::vector<int64_t>(4, 2));
      const auto f1s = t.read_double("f1").data, ems = t.read_double("exact_match").data;
      ASSERT_EQ(f1s.size(), 4u);
      for (size_t r = 0; r < rows.size(); ++r) {
        const auto& [sf, se, n] = sums.at({m, task, rows[r]});
        ASSERT_EQ(n, 2) << m << " " << task << " " << rows[r];
        EXPECT_NEAR(f1s[r], sf / 2.0, 1e-9) << m << " " << task << " " << rows[r];
        EXPECT_NEAR(ems[r], se / 2.0, 1e-9) << m << " " << task << " " << rows[r];
      }
    }
  }

  auto info = test_support::run_command(test_support::rhead_exe().string() + " inspect " +
                                        (dir.path() / "np1" / "ablate.h5").string());
  EXPECT_EQ(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("model tiny: NIAH ROUGE-1 recall"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("tasks: F1 / EM in percent"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("uniform/rand*"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("direct       direct  none/none"), std::string::npos) << info.output;

  // A task file edited at the same path (its items in the other order): the store records what it was
  // made from, and every cell reads the task files, so none is kept.
  std::istringstream cot_lines(test_support::read_text_file(dir.path() / "cot.jsonl"));
  std::string reordered;
  for (std::string line; std::getline(cot_lines, line);) {
    if (!line.empty()) reordered = line + "\n" + reordered;
  }
  test_support::write_text_file(dir.path() / "cot.jsonl", reordered);
  auto edited = test_support::run_rhead(dir.path(), 0, "job.ini --set job.run_dir=np1");
  ASSERT_EQ(edited.exit_code, 0) << edited.output;
  EXPECT_NE(edited.output.find("files it reads changed since"), std::string::npos) << edited.output;
  EXPECT_NE(edited.output.find("cot.jsonl)"), std::string::npos) << edited.output;
  EXPECT_EQ(edited.output.find("from the previous store"), std::string::npos) << edited.output;
  pipeline::store::File again = pipeline::store::File::open(dir.path() / "np1" / "ablate.h5");
  EXPECT_EQ(again.root().attr_int("cells_computed_last_attempt"), 2 * 4 * 8);
}

TEST(AblateE2E, MeanModeRowsNextToUniformAndZero) {
  test_support::TempDir dir("ablate-mean");
  test_support::write_world(dir.path());
  write_scores(dir.path() / "tiny.json");
  test_support::write_text_file(
      dir.path() / "job.ini",
      tasks_job(dir.path(), "[model.tiny]\npath = " + (dir.path() / "model").string() + "\n",
                "tiny=" + (dir.path() / "tiny.json").string(),
                "modes = uniform, zero, mean\nks = 0, 2\nrandom_seeds = 1\nmean_tokens = 40\nstop_strings = NEVER\n"));
  const std::string longer = " --set ablate.max_new_tokens=8";
  auto one = test_support::run_rhead(dir.path(), 0, "job.ini --set job.run_dir=np1" + longer);
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto two = test_support::run_rhead(dir.path(), 2, "job.ini --set job.run_dir=np2" + longer);
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_EQ(test_support::store_digest(dir.path() / "np1" / "ablate.h5"),
            test_support::store_digest(dir.path() / "np2" / "ablate.h5"))
      << "the per-head means must be the same on every rank";
  // The selections of one prompt decode together (decode_batch, default 32) or one at a time: the same bits,
  // with every mask mode in one batch.
  auto single = test_support::run_rhead(dir.path(), 0, "job.ini --set job.run_dir=single --set ablate.decode_batch=1" + longer);
  ASSERT_EQ(single.exit_code, 0) << single.output;
  EXPECT_EQ(test_support::store_digest(dir.path() / "single" / "ablate.h5"),
            test_support::store_digest(dir.path() / "np1" / "ablate.h5"));

  pipeline::store::File f = pipeline::store::File::open(dir.path() / "np1" / "ablate.h5");
  auto g = f.root().open_group("summary").open_group("tiny");
  EXPECT_EQ(rows_of(g), (std::vector<std::string>{"none/none", "uniform/top", "uniform/rand0", "zero/top", "zero/rand0",
                                                  "mean/top", "mean/rand0"}));
  EXPECT_EQ(g.read_int64("k").data, (std::vector<int64_t>{0, 2, 2, 2, 2, 2, 2}));
  EXPECT_EQ(g.read_int64("n_cells").data, std::vector<int64_t>(7, 2)) << "2 needles x 1 length x 1 depth";
  EXPECT_FALSE(g.has("tasks"));
  auto cells = f.root().open_group("cells");
  EXPECT_EQ(cells.children().size(), 7u * 2u);
  // The mean vectors reached the model: masking the same two top heads by their mean output and by zero
  // gives different greedy tokens in at least one cell (the world is seeded, so this is deterministic).
  bool mean_differs_from_zero = false;
  for (int n = 0; n < 2; ++n) {
    const std::string tail = ".top.K2.n" + std::to_string(n) + ".L64.D50";
    auto mean = cells.open_group("tiny.mean" + tail);
    EXPECT_EQ(mean.read_int32("masked_heads").data, (std::vector<int32_t>{0, 0, 1, 2}));
    mean_differs_from_zero |= mean.read_int32("generated_ids").data !=
                              cells.open_group("tiny.zero" + tail).read_int32("generated_ids").data;
  }
  EXPECT_TRUE(mean_differs_from_zero);

  auto info = test_support::run_command(test_support::rhead_exe().string() + " inspect " +
                                        (dir.path() / "np1" / "ablate.h5").string());
  EXPECT_NE(info.output.find("mode mean"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("mode uniform"), std::string::npos) << info.output;
}

TEST(AblateE2E, BadTaskEntriesAndFilesStopWithFileLineAndField) {
  test_support::TempDir dir("ablate-badtask");
  test_support::write_world(dir.path());
  write_scores(dir.path() / "tiny.json");
  write_tasks(dir.path());
  test_support::write_text_file(dir.path() / "job.ini",
                                tasks_job(dir.path(), "[model.tiny]\npath = " + (dir.path() / "model").string() + "\n",
                                          "tiny=" + (dir.path() / "tiny.json").string(), "ks = 0\n"));
  const auto run = [&](const std::string& tasks) {
    return test_support::run_rhead(dir.path(), 0, "job.ini --set 'ablate.tasks=" + tasks + "'");
  };
  auto entry = run("qa=mcq:qa.jsonl");
  EXPECT_EQ(entry.exit_code, 1) << entry.output;
  EXPECT_NE(entry.output.find("[ablate] tasks: entry 'qa=mcq:qa.jsonl': unknown kind 'mcq'; expected name=kind:path"),
            std::string::npos) << entry.output;

  auto missing = run("qa=qa:nope.jsonl");
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("task 'qa': cannot open 'nope.jsonl'. Hint: paths are relative to the current directory"),
            std::string::npos) << missing.output;

  test_support::write_text_file(dir.path() / "bad.jsonl",
                                "{\"question\": \"q\", \"answer\": \"a\"}\n{\"question\": \"q\", \"answer\": [\"a\"]}\n");
  auto field = run("c=cot:bad.jsonl");
  EXPECT_EQ(field.exit_code, 1) << field.output;
  EXPECT_NE(field.output.find("[ablate] bad.jsonl:2: field 'answer' has the wrong type; got array [\"a\"], expected a "
                              "string"), std::string::npos) << field.output;

  test_support::write_text_file(dir.path() / "json.jsonl", "{\"question\": \"q\", \"answer\": \"a\"}\n\n{\"question\":\n");
  auto json = run("c=direct:json.jsonl");
  EXPECT_EQ(json.exit_code, 1) << json.output;
  EXPECT_NE(json.output.find("[ablate] json.jsonl:3: not valid JSON"), std::string::npos) << json.output;

  // A qa file given as cot: its first line has no 'answer' but an unknown 'answers'.
  auto kind = run("c=cot:qa.jsonl");
  EXPECT_EQ(kind.exit_code, 1) << kind.output;
  EXPECT_NE(kind.output.find("qa.jsonl:1: unknown field 'answers' for a cot task"), std::string::npos) << kind.output;
}

TEST(AblateE2E, KillAndResumeRecomputesNothingFinished) {
  test_support::TempDir dir("ablate-kill");
  // A larger model, longer contexts and 40 decode steps per cell, so that a rank is still busy when killed.
  test_support::write_world(dir.path(), /*hidden=*/128, /*layers=*/4, /*heads=*/8);
  write_scores(dir.path() / "tiny.json", 4, 8);
  write_tasks(dir.path());
  const fs::path run = dir.path() / "killed";
  const std::string job_file = (dir.path() / "ablkill.ini").string();  // unique: matches only this test's ranks
  test_support::write_text_file(
      job_file, "[job]\nname = ablkill\nstages = score, ablate\nthreads = 1\nprogress_interval_s = 0.05\nrun_dir = " +
                    run.string() + "\n[model.tiny]\npath = " + (dir.path() / "model").string() +
                    "\n[score]\nimport = tiny=" + (dir.path() / "tiny.json").string() + "\n[ablate]\nhaystack = " +
                    (dir.path() / "haystack").string() + "\nneedles = " + (dir.path() / "needles.jsonl").string() +
                    "\nlengths = 300, 500\ndepths = 0, 100\nks = 0, 1\nrandom_seeds = 1\nprompt_mode = fixed\n"
                    "buffer_tokens = 16\nmax_new_tokens = 40\nstop_strings = NEVER\ntask_max_new_tokens = 40\n"
                    "task_stop_strings = NEVER\ntasks = qa=qa:" + (dir.path() / "qa.jsonl").string() + "\ntasks = cot=cot:" +
                    (dir.path() / "cot.jsonl").string() + "\n");
  // 3 selections x (2 needles x 2 lengths x 2 depths + 3 qa + 2 cot items)
  constexpr int64_t kCells = 3 * (8 + 5);
  auto killed = test_support::run_and_kill_one_rank(dir.path(), job_file,
                                                   run / "ablate.shards" / "progress" / "rank1.txt", /*min_cells=*/3);
  ASSERT_EQ(killed.output.find("STILL_RUNNING"), std::string::npos) << "ranks survived the kill:\n" << killed.output;
  ASSERT_FALSE(pipeline::store::is_complete(run / "ablate.h5")) << "the kill came after the stage ended";
  const int64_t finished = test_support::count_finished_cells(run / "ablate.shards");
  ASSERT_GT(finished, 0) << killed.output;
  ASSERT_LT(finished, kCells) << killed.output;

  auto resumed = test_support::run_command("cd " + dir.path().string() + " && " + test_support::mpiexec_prefix(2) + " " +
                                               test_support::rhead_exe().string() + " run " + job_file,
                                           240);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resume: " + std::to_string(finished) + " of " + std::to_string(kCells)),
            std::string::npos)
      << resumed.output;
  pipeline::store::File f = pipeline::store::File::open(run / "ablate.h5");
  EXPECT_EQ(f.root().attr_int("cells_total"), kCells);
  EXPECT_EQ(f.root().attr_int("cells_resumed"), finished);
  EXPECT_EQ(f.root().attr_int("cells_computed_last_attempt"), kCells - finished) << "finished cells were recomputed";

  auto clean = test_support::run_command("cd " + dir.path().string() + " && " + test_support::rhead_exe().string() +
                                             " run " + job_file + " --set job.run_dir=" + (dir.path() / "clean").string(),
                                         240);
  ASSERT_EQ(clean.exit_code, 0) << clean.output;
  EXPECT_EQ(test_support::store_digest(run / "ablate.h5"), test_support::store_digest(dir.path() / "clean" / "ablate.h5"));
  // The digest skips attributes: the task scores must match too.
  pipeline::store::File c = pipeline::store::File::open(dir.path() / "clean" / "ablate.h5");
  for (const std::string task : {"qa", "cot"}) {
    auto a = f.root().open_group("summary").open_group("tiny").open_group("tasks").open_group(task);
    auto b = c.root().open_group("summary").open_group("tiny").open_group("tasks").open_group(task);
    EXPECT_EQ(a.read_double("f1").data, b.read_double("f1").data) << task;
    EXPECT_EQ(a.read_double("exact_match").data, b.read_double("exact_match").data) << task;
  }
}
