// ablate end to end: a tiny random model, retrieval scores imported from a hand-written official
// head_score JSON (heads 0-0 and 1-2 are the "retrieval heads"), masked NIAH over top-K and random heads.
#include <gtest/gtest.h>

#include <set>

#include "pipeline/store/hdf5_file.h"
#include "tests/common/test_support.h"
#include "tests/stages_e2e/tiny_world.h"

namespace fs = std::filesystem;

namespace {

// 2 layers x 4 heads; 0-0 scores 0.85 and 1-2 scores 0.45 on average, every other head 0.
void write_scores(const fs::path& file) {
  std::string json = "{";
  for (int l = 0; l < 2; ++l) {
    for (int h = 0; h < 4; ++h) {
      std::string v = (l == 0 && h == 0) ? "[0.9, 0.8]" : (l == 1 && h == 2) ? "[0.5, 0.4]" : "[0.0, 0.0]";
      json += std::string(json.size() > 1 ? ", " : "") + "\"" + std::to_string(l) + "-" + std::to_string(h) + "\": " + v;
    }
  }
  test_support::write_text_file(file, json + "}");
}

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

  // Recompute score alone: its store_id changes, so the next run must redo ablate (and only ablate).
  ASSERT_EQ(test_support::run_rhead(dir.path(), 0, "job.ini --stages score --force").exit_code, 0);
  auto stale = test_support::run_rhead(dir.path(), 0, "job.ini");
  ASSERT_EQ(stale.exit_code, 0) << stale.output;
  EXPECT_NE(stale.output.find("input 'score' was recomputed"), std::string::npos) << stale.output;
  EXPECT_NE(stale.output.find("stage score: store"), std::string::npos) << "score itself is current:\n" << stale.output;
  auto settled = test_support::run_rhead(dir.path(), 0, "job.ini");
  EXPECT_EQ(settled.output.find("was recomputed"), std::string::npos) << settled.output;
}
