// End-to-end runs of the real binary on the selftest stage: rank-count independence, kill -9 and
// resume, a failing rank ending the job, reruns after the job file changed, and bad job files.
#include <gtest/gtest.h>

#include <regex>

#include "pipeline/store/hdf5_file.h"
#include "pipeline/store/store_header.h"
#include "tests/common/test_support.h"

namespace fs = std::filesystem;
using test_support::run_command;

namespace {

std::string job_text(int work_ms, const std::string& extra = "") {
  return "[job]\nname = e2e\nstages = selftest\nseed = 99\nthreads = 1\nprogress_interval_s = 0.05\n"
         "[selftest]\ngroups = m0, m1\nneedles = 2\nlengths = linspace(1000, 8000, 4)\n"
         "depths = linspace(0, 100, 10)\nsteps = 5\nlayers = 3\nheads = 4\nwork_ms = " +
         std::to_string(work_ms) + "\n" + extra;
}

constexpr int64_t kCells = 2 * 2 * 4 * 10;

std::string rhead() { return test_support::rhead_exe().string(); }

int64_t count_finished_cells_in_shards(const fs::path& shard_dir) {
  int64_t n = 0;
  for (const auto& e : fs::directory_iterator(shard_dir)) {
    if (e.path().extension() != ".h5") continue;
    pipeline::store::File f = pipeline::store::File::open(e.path());
    auto cells = f.root().open_group("cells");
    for (const auto& id : cells.children()) {
      auto g = cells.open_group(id);
      if (g.has_attr("complete") && g.attr_int("complete") == 1) ++n;
    }
  }
  return n;
}

}  // namespace

TEST(E2ESelftest, IdenticalResultsAtOneTwoThreeRanks) {
  test_support::TempDir dir("e2e-np");
  test_support::write_text_file(dir.path() / "job.ini", job_text(0));
  std::string reference;
  for (int np : {0, 1, 2, 3}) {
    std::string run_dir = "runs/np" + std::to_string(np);
    auto r = test_support::run_rhead(dir.path(), np, "job.ini --set job.run_dir=" + run_dir);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    fs::path store = dir.path() / run_dir / "selftest.h5";
    ASSERT_TRUE(pipeline::store::is_complete(store));
    EXPECT_FALSE(fs::exists(dir.path() / run_dir / "selftest.h5.partial"));
    std::string d = test_support::store_digest(store);
    if (reference.empty()) reference = d;
    EXPECT_EQ(d, reference) << "np=" << np << " differs from the single-process run";
    auto dump = run_command("h5dump -H " + store.string() + " > /dev/null");
    EXPECT_EQ(dump.exit_code, 0) << dump.output;
  }
  // A rerun finds the complete store and skips the stage; --force recomputes it identically.
  auto again = test_support::run_rhead(dir.path(), 2, "job.ini --set job.run_dir=runs/np2");
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_NE(again.output.find("is complete, skipping"), std::string::npos) << again.output;
  auto forced = test_support::run_rhead(dir.path(), 0, "job.ini --force --set job.run_dir=runs/np2");
  EXPECT_EQ(forced.exit_code, 0) << forced.output;
  EXPECT_EQ(test_support::store_digest(dir.path() / "runs/np2/selftest.h5"), reference);
}

TEST(E2ESelftest, KillOneRankThenResumeRecomputesNothingFinished) {
  test_support::TempDir dir("e2e-kill");
  test_support::write_text_file(dir.path() / "job.ini", job_text(30));
  const fs::path run_dir = dir.path() / "runs" / "killed";
  const fs::path progress = run_dir / "selftest.shards" / "progress" / "rank1.txt";

  // Start 2 ranks, wait until rank 1 has finished at least 5 cells, then kill -9 one rank.
  // Processes of this run only: rhead ranks (comm "rhead") and their launcher, found by the unique run dir.
  const std::string procs =
      "procs() { for p in $(pgrep -f '" + dir.path().string() + "/job.ini'); do "
      "c=$(cat /proc/$p/comm 2>/dev/null); case \"$c\" in rhead|mpiexec|mpirun|orterun|prterun) echo $p $c;; esac; "
      "done; }; ";
  std::string script =
      procs + "cd " + dir.path().string() + " && (" + test_support::mpiexec_prefix(2) + " " + rhead() + " run " +
      dir.path().string() + "/job.ini --set job.run_dir=runs/killed > first.log 2>&1 &) ; "
      "for i in $(seq 1 400); do "
      "  if [ -f " + progress.string() + " ] && [ $(cut -d' ' -f1 " + progress.string() + ") -ge 5 ]; then break; fi; "
      "  sleep 0.05; done; "
      "pid=$(procs | awk '$2 == \"rhead\" {print $1}' | tail -n 1); "
      "echo killing rank pid $pid; kill -9 $pid; "
      "for i in $(seq 1 200); do [ -z \"$(procs)\" ] && break; sleep 0.1; done; "
      "[ -n \"$(procs)\" ] && echo STILL_RUNNING && procs; true";
  auto killed = run_command(script, 120);
  ASSERT_EQ(killed.output.find("STILL_RUNNING"), std::string::npos) << "ranks survived the kill:\n" << killed.output;
  ASSERT_FALSE(pipeline::store::is_complete(run_dir / "selftest.h5")) << "the kill came after the stage ended";

  // Every shard left behind is readable by h5dump, and holds some finished cells.
  for (const auto& e : fs::directory_iterator(run_dir / "selftest.shards")) {
    if (e.path().extension() != ".h5") continue;
    auto dump = run_command("h5dump -H " + e.path().string() + " > /dev/null");
    EXPECT_EQ(dump.exit_code, 0) << e.path() << "\n" << dump.output;
  }
  const int64_t finished = count_finished_cells_in_shards(run_dir / "selftest.shards");
  ASSERT_GT(finished, 0);
  ASSERT_LT(finished, kCells);

  auto resumed = test_support::run_rhead(dir.path(), 2, "job.ini --set job.run_dir=runs/killed");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resume: " + std::to_string(finished) + " of " + std::to_string(kCells)),
            std::string::npos)
      << resumed.output;

  pipeline::store::File f = pipeline::store::File::open(run_dir / "selftest.h5");
  auto root = f.root();
  EXPECT_EQ(root.attr_int("cells_total"), kCells);
  EXPECT_EQ(root.attr_int("cells_resumed"), finished);
  EXPECT_EQ(root.attr_int("cells_computed_last_attempt"), kCells - finished) << "finished cells were recomputed";
  EXPECT_EQ(root.open_group("cells").children().size(), static_cast<size_t>(kCells));
  int64_t first_attempt = 0;
  for (const auto& id : root.open_group("cells").children()) {
    first_attempt += root.open_group("cells").open_group(id).attr_int("attempt") == 0 ? 1 : 0;
  }
  EXPECT_EQ(first_attempt, finished) << "each finished cell must come from the first attempt";

  // Final results equal an uninterrupted run.
  auto clean = test_support::run_rhead(dir.path(), 1, "job.ini --set job.run_dir=runs/clean --set selftest.work_ms=0");
  ASSERT_EQ(clean.exit_code, 0) << clean.output;
  EXPECT_EQ(test_support::store_digest(run_dir / "selftest.h5"), test_support::store_digest(dir.path() / "runs/clean/selftest.h5"));
}

TEST(E2ESelftest, OneFailingRankEndsEveryRankWithItsMessage) {
  test_support::TempDir dir("e2e-fail");
  // The failing cell is the cheapest one, dealt last, so the other ranks are already waiting.
  test_support::write_text_file(dir.path() / "job.ini", job_text(5, "fail_on_cell = m1.n0.L1000.D0\n"));
  auto r = test_support::run_rhead(dir.path(), 3, "job.ini", 90);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.exit_code, 124) << "the job hung until the timeout:\n" << r.output;
  EXPECT_LT(r.seconds, 60);
  EXPECT_NE(r.output.find("error: [selftest] cell m1.n0.L1000.D0: failing on purpose"), std::string::npos) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("\\[rank [0-2]/3\\] error"))) << r.output;
}

TEST(E2ESelftest, ChangedSettingsRerunTheStageAndTuningKeysDoNot) {
  test_support::TempDir dir("e2e-settings");
  test_support::write_text_file(dir.path() / "job.ini", job_text(0));
  auto reference = test_support::run_rhead(dir.path(), 0, "job.ini --set selftest.steps=4 --set job.run_dir=runs/ref");
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  const std::string steps4 = test_support::store_digest(dir.path() / "runs/ref/selftest.h5");

  auto first = test_support::run_rhead(dir.path(), 0, "job.ini");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const fs::path store = dir.path() / "runs/e2e/selftest.h5";
  ASSERT_NE(test_support::store_digest(store), steps4) << "steps = 4 must change the cells, or this test shows nothing";
  // A tuning key (work_ms: how slowly, not what) does not make the store stale.
  auto tuned = test_support::run_rhead(dir.path(), 0, "job.ini --set selftest.work_ms=1");
  ASSERT_EQ(tuned.exit_code, 0) << tuned.output;
  EXPECT_NE(tuned.output.find("is complete, skipping"), std::string::npos) << tuned.output;
  // Any other key does: the stage reruns, says why, and gives what a fresh run with that key gives.
  auto changed = test_support::run_rhead(dir.path(), 0, "job.ini --set selftest.steps=4");
  ASSERT_EQ(changed.exit_code, 0) << changed.output;
  EXPECT_NE(changed.output.find("stage selftest: its settings changed since"), std::string::npos) << changed.output;
  EXPECT_NE(changed.output.find("([selftest] steps: 5 -> 4); rerunning selftest"), std::string::npos) << changed.output;
  EXPECT_EQ(test_support::store_digest(store), steps4);
  auto dry = test_support::run_rhead(dir.path(), 0, "job.ini --dry-run");
  EXPECT_NE(dry.output.find("is complete but its settings changed ([selftest] steps: 4 -> 5): would rerun"),
            std::string::npos) << dry.output;
}

TEST(E2ESelftest, AStoreInAnotherLayoutIsRecomputedNotSkipped) {
  test_support::TempDir dir("e2e-layout");
  test_support::write_text_file(dir.path() / "job.ini", job_text(0));
  auto first = test_support::run_rhead(dir.path(), 0, "job.ini");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const fs::path store = dir.path() / "runs/e2e/selftest.h5";
  const std::string digest = test_support::store_digest(store);
  {
    // What an older rhead would have left: the same cells in store layout 0 (this rhead writes 1).
    pipeline::store::File f = pipeline::store::File::open(store, pipeline::store::File::Mode::ReadWrite);
    f.root().set_attr("schema_version", int64_t{0});
  }
  auto dry = test_support::run_rhead(dir.path(), 0, "job.ini --dry-run");
  EXPECT_NE(dry.output.find("is complete but it is in store layout 0 (schema_version) and this rhead writes layout 1: "
                            "would rerun"),
            std::string::npos) << dry.output;
  auto again = test_support::run_rhead(dir.path(), 0, "job.ini");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(again.output.find("is complete, skipping"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("stage selftest: it is in store layout 0"), std::string::npos) << again.output;
  // Every cell recomputed (none kept from the old layout), to the same values, in the current layout.
  EXPECT_NE(again.output.find(std::to_string(kCells) + " finished cells in "), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("were computed in another store layout (schema_version); discarding them"),
            std::string::npos) << again.output;
  pipeline::store::File f = pipeline::store::File::open(store);
  EXPECT_EQ(f.root().attr_int("schema_version"), 1);
  EXPECT_EQ(f.root().attr_int("cells_computed_last_attempt"), kCells);
  EXPECT_EQ(test_support::store_digest(store), digest);
}

TEST(E2ESelftest, ResumeKeepsCellsOfTheSameSettingsAndDiscardsOthers) {
  test_support::TempDir dir("e2e-resume-settings");
  // The failing cell is dealt last, so the run stops with every other cell finished in its shard.
  test_support::write_text_file(dir.path() / "job.ini", job_text(0, "fail_on_cell = m1.n0.L1000.D0\n"));
  auto reference = test_support::run_rhead(dir.path(), 0,
                                           "job.ini --set selftest.fail_on_cell= --set selftest.steps=4 "
                                           "--set job.run_dir=runs/ref");
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  for (const char* run : {"same", "other"}) {
    const std::string run_dir = std::string("runs/") + run;
    auto failed = test_support::run_rhead(dir.path(), 0, "job.ini --set job.run_dir=" + run_dir);
    ASSERT_NE(failed.exit_code, 0) << failed.output;
    const int64_t finished = count_finished_cells_in_shards(dir.path() / run_dir / "selftest.shards");
    ASSERT_GT(finished, 0) << failed.output;

    // fail_on_cell is a tuning key: clearing it resumes; changing steps discards the finished cells.
    const bool same = std::string(run) == "same";
    auto again = test_support::run_rhead(dir.path(), 0, "job.ini --set selftest.fail_on_cell= --set job.run_dir=" +
                                                            run_dir + (same ? "" : " --set selftest.steps=4"));
    ASSERT_EQ(again.exit_code, 0) << again.output;
    const std::string resumed = "resume: " + std::to_string(finished) + " of " + std::to_string(kCells);
    const std::string discarded = "were computed with other settings ([selftest] steps: 5 -> 4); discarding them";
    EXPECT_EQ(again.output.find(resumed) != std::string::npos, same) << again.output;
    EXPECT_EQ(again.output.find(discarded) != std::string::npos, !same) << again.output;
    if (!same) {
      EXPECT_EQ(test_support::store_digest(dir.path() / run_dir / "selftest.h5"),
                test_support::store_digest(dir.path() / "runs/ref/selftest.h5"));
    }
  }
}

TEST(E2ESelftest, BadJobFilesGiveOneClearError) {
  test_support::TempDir dir("e2e-bad");
  test_support::write_text_file(dir.path() / "typo.ini", job_text(0, "lenghts = 5\n"));
  auto r = test_support::run_rhead(dir.path(), 2, "typo.ini");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("unknown key 'lenghts' in section [selftest]"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("did you mean 'selftest.lengths'"), std::string::npos) << r.output;
  // Reported once (rank 0), not once per rank.
  size_t first = r.output.find("unknown key");
  EXPECT_EQ(r.output.find("unknown key", first + 1), std::string::npos) << r.output;

  test_support::write_text_file(dir.path() / "stage.ini", "[job]\nname = x\nstages = selftset\n");
  auto s = test_support::run_rhead(dir.path(), 0, "stage.ini");
  EXPECT_EQ(s.exit_code, 1);
  EXPECT_NE(s.output.find("unknown stage 'selftset'"), std::string::npos) << s.output;
  EXPECT_NE(s.output.find("did you mean 'selftest'"), std::string::npos) << s.output;

  test_support::write_text_file(dir.path() / "value.ini", job_text(0));
  auto v = test_support::run_rhead(dir.path(), 2, "value.ini --set selftest.steps=0");
  EXPECT_EQ(v.exit_code, 1);
  EXPECT_NE(v.output.find("selftest.steps: got 0, expected >= 1"), std::string::npos) << v.output;

  auto missing = test_support::run_rhead(dir.path(), 0, "nope.ini");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("nope.ini: cannot open the job file"), std::string::npos) << missing.output;
}

TEST(E2EFigures, TheRunDirectoryReachesTheReportAsOneArgumentWithoutAShell) {
  // A run directory whose name a shell would split, quote or expand: rhead figures passes it through an
  // argument vector, so the report is written inside it and nothing in the name runs.
  test_support::TempDir dir("figures_argv");
  const fs::path run = dir.path() / "it's a $(touch pwned) `touch pwned2` run";
  fs::create_directories(run);
  auto r = run_command("cd " + dir.path().string() + " && " + test_support::rhead_exe().string() + " figures \"" +
                       std::regex_replace(run.string(), std::regex(R"([$`"\\])"), R"(\$&)") + "\"");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(run / "figures" / "report.md")) << r.output;
  EXPECT_FALSE(fs::exists(dir.path() / "pwned") || fs::exists(dir.path() / "pwned2")) << "the name ran as a command";
}
