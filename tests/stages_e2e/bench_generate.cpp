// bench_generate: detection cells per second of the real `rhead run` (generate stage) on a random
// Llama-family model written to a temp dir, at several context lengths and 1 or 2 MPI ranks.
//   bench_generate [hidden layers heads] [cells_per_length]      defaults: 512 8 8, 10
// Prints one table row per (context length, ranks): cells, stage seconds, cells/s.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "pipeline/store/hdf5_file.h"
#include "tests/common/test_support.h"
#include "tests/stages_e2e/tiny_world.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  const int hidden = argc > 3 ? std::atoi(argv[1]) : 512;
  const int layers = argc > 3 ? std::atoi(argv[2]) : 8;
  const int heads = argc > 3 ? std::atoi(argv[3]) : 8;
  const int cells = argc > 4 ? std::atoi(argv[4]) : (argc == 2 ? std::atoi(argv[1]) : 10);
  test_support::TempDir dir("bench-gen");
  test_support::write_world(dir.path(), hidden, layers, heads);
  std::printf("model: llama, hidden %d, %d layers, %d heads (%d kv), fp32, 20 decode steps per cell\n", hidden, layers,
              heads, heads / 2);
  std::printf("%8s %6s %8s %7s %10s %9s\n", "context", "ranks", "threads", "cells", "seconds", "cells/s");
  for (int length : {1000, 4000}) {
    for (int ranks : {1, 2}) {
      const int threads = 2 / ranks;
      std::string run = (dir.path() / ("L" + std::to_string(length) + "np" + std::to_string(ranks))).string();
      std::string job = "[job]\nname = bench\nstages = generate\nthreads = " + std::to_string(threads) +
                        "\nrun_dir = " + run + "\n[model.m]\npath = " + (dir.path() / "model").string() +
                        "\n[generate]\nneedles = " + (dir.path() / "needles.jsonl").string() +
                        "\nhaystack = " + (dir.path() / "haystack").string() +
                        "\nhaystack_per_needle = false\nprompt_mode = fixed\nmax_new_tokens = 20\nlengths = " +
                        std::to_string(length) + "\ndepths = linspace(0, 100, " + std::to_string((cells + 1) / 2) +
                        ")\n";
      fs::path job_file = dir.path() / "bench.ini";
      test_support::write_text_file(job_file, job);
      std::string launcher = ranks == 1 ? "" : test_support::mpiexec_prefix(ranks) + " ";
      auto r = test_support::run_command(launcher + test_support::rhead_exe().string() + " run " + job_file.string(), 3600);
      if (r.exit_code != 0) {
        std::fprintf(stderr, "rhead run failed:\n%s\n", r.output.c_str());
        return 1;
      }
      pipeline::store::File f = pipeline::store::File::open(fs::path(run) / "generate.h5");
      double seconds = f.root().attr_double("seconds");
      int64_t n = f.root().attr_int("cells_total");
      std::printf("%8d %6d %8d %7lld %10.2f %9.3f\n", length, ranks, threads, static_cast<long long>(n), seconds,
                  n / seconds);
      std::fflush(stdout);
    }
  }
  return 0;
}
