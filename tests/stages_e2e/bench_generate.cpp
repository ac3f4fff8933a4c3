// bench_generate: the issue-10 benchmark table, one model, one run (not a test).
//   bench_generate [--hidden 512] [--layers 8] [--heads 8] [--lengths 512,1024,2048,4096,8192]
//                  [--sweep 1000,4000] [--cells 20] [--chunk 128] [--call 512] [--dtype f32|bf16] [--no-baseline]
//                  [--python /usr/bin/python3]
// Model: the tiny world's random Llama-family model (tiny_world.h) at the given size (GQA, heads / 2
// KV heads, d_ff 2 x hidden; fp32, or --dtype bf16: stored and computed in bf16 as real checkpoints),
// written to a temp dir; every column below runs on that folder.
// Per context length (--lengths), one bench_decoder child process (so peak RSS is per row):
//   prefill tok/s, achieved GFLOP/s and its % of the matrix-product rate (same dtype) measured first in this
//   run (2048^3 matmul, same threads), decode tok/s without capture, capture overhead (argmax of every
//   head, the paper's capture) vs plain decoding, peak RSS.
// Per sweep length (--sweep): `rhead run` generate + score of --cells cells (2 needles x cells/2 depths
// in one haystack, as a row of the detection grid; 20 = the official 10 depths) at 1 rank x 2 threads,
// the same with reuse_prefix = false, 1 rank x 1 thread and 2 ranks x 1 thread (cells/s from the
// store's stage seconds), then the eager PyTorch baseline
// (analysis/baselines/eager_reference.py, 2 threads) on the 1-rank run's cells with --check: its cells/s,
// pipeline / baseline speed ratio and whether generated ids, argmaxes and mean scores were identical.
// Machine notes: on a shared CPU, read the columns of one run together (same load), not across runs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "pipeline/store/hdf5_file.h"
#include "tests/common/test_support.h"
#include "tests/stages_e2e/tiny_world.h"

namespace fs = std::filesystem;

namespace {

std::vector<int> int_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(std::atoi(item.c_str()));
  }
  return out;
}

double matmul_gflops(int64_t n, torch::ScalarType dtype) {
  auto a = torch::randn({n, n}).to(dtype), b = torch::randn({n, n}).to(dtype);
  torch::matmul(a, b);  // warm up
  const int reps = 5;
  double best = 1e30;
  for (int r = 0; r < 3; ++r) {  // best of 3 (shared CPU)
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) torch::matmul(a, b);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * static_cast<double>(n * n * n) * reps / best / 1e9;
}

int g_call = 512;  // --call: prefill rows per forward call ([generate] prefill_call); --chunk: attention block

struct DecoderRow {
  bool ok = false;
  double t_prefill = 0, gflops = 0, t_plain = 0, t_capture = 0, t_full = 0, rss_base = 0, peak_prefill = 0,
         peak_all = 0;
};

DecoderRow decoder_row(const fs::path& model, int ctx, int chunk, const std::string& dtype_name) {
  DecoderRow r;
  auto out = test_support::run_command(std::string(RHEAD_BENCH_DECODER) + " --threads 2 --call " + std::to_string(g_call) +
                                           " --model " + model.string() + " --one " + std::to_string(ctx) + " " +
                                           std::to_string(chunk) + " " + dtype_name,
                                       3600);
  long long c = 0, chunk_read = 0;
  char dtype[8] = {};
  r.ok = out.exit_code == 0 &&
         std::sscanf(out.output.c_str(), "%lld %lld %7s %lf %lf %lf %lf %lf %lf %lf %lf", &c, &chunk_read, dtype,
                     &r.t_prefill, &r.gflops, &r.t_plain, &r.t_capture, &r.t_full, &r.rss_base, &r.peak_prefill,
                     &r.peak_all) == 11;
  if (!r.ok) std::fprintf(stderr, "bench_decoder failed for ctx %d:\n%s\n", ctx, out.output.c_str());
  return r;
}

struct SweepRow {
  bool ok = false;
  int64_t cells = 0;
  double cps_1 = 0;      // 1 rank x 2 threads (a user's one-rank run on this machine)
  double cps_fresh = 0;  // the same with reuse_prefix = false
  double cps_11 = 0;     // 1 rank x 1 thread
  double cps_2 = 0;      // 2 ranks x 1 thread
  double cps_base = 0;   // the eager baseline, 2 threads
  std::string identical = "-";
};

double run_sweep(const fs::path& dir, int length, int ranks, int threads, int cells, int chunk, bool bf16,
                 fs::path& run, int64_t& n, bool reuse_prefix = true) {
  run = dir / ("L" + std::to_string(length) + "np" + std::to_string(ranks) + "t" + std::to_string(threads) +
               (reuse_prefix ? "" : "fresh"));
  std::string job = "[job]\nname = bench\nstages = generate, score\nthreads = " + std::to_string(threads) +
                    "\nrun_dir = " + run.string() + "\n[model.m]\npath = " + (dir / "model").string() + "\ndtype = " + (bf16 ? "bfloat16" : "float32") +
                    "\n[generate]\nneedles = " + (dir / "needles.jsonl").string() +
                    "\nhaystack = " + (dir / "haystack").string() +
                    "\nhaystack_per_needle = false\nprompt_mode = fixed\nmax_new_tokens = 20\nreuse_prefix = " +
                    (reuse_prefix ? "true" : "false") + "\nprefill_chunk = " + std::to_string(chunk) +
                    "\nprefill_call = " + std::to_string(g_call) + "\nlengths = " +
                    std::to_string(length) + "\ndepths = linspace(0, 100, " + std::to_string((cells + 1) / 2) +
                    ")\n[score]\nsuccess_threshold = 0\n";  // random weights: keep every overlapping test
  fs::path job_file = dir / "bench.ini";
  test_support::write_text_file(job_file, job);
  std::string launcher = ranks == 1 ? "" : test_support::mpiexec_prefix(ranks) + " ";
  auto r = test_support::run_command(launcher + test_support::rhead_exe().string() + " run " + job_file.string(), 7200);
  if (r.exit_code != 0) {
    std::fprintf(stderr, "rhead run failed:\n%s\n", r.output.c_str());
    return -1;
  }
  pipeline::store::File f = pipeline::store::File::open(run / "generate.h5");
  n = f.root().attr_int("cells_total");
  return static_cast<double>(n) / f.root().attr_double("seconds");
}

}  // namespace

int main(int argc, char** argv) {
  int hidden = 512, layers = 8, heads = 8, cells = 20, chunk = 128;
  std::string dtype = "f32";
  std::vector<int> lengths = {512, 1024, 2048, 4096, 8192}, sweep = {1000, 4000};
  bool baseline = true;
  std::string python = "/usr/bin/python3";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_generate: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--hidden") hidden = std::atoi(next().c_str());
    else if (a == "--layers") layers = std::atoi(next().c_str());
    else if (a == "--heads") heads = std::atoi(next().c_str());
    else if (a == "--cells") cells = std::atoi(next().c_str());
    else if (a == "--chunk") chunk = std::atoi(next().c_str());
    else if (a == "--call") g_call = std::atoi(next().c_str());
    else if (a == "--dtype") dtype = next();
    else if (a == "--lengths") lengths = int_list(next());
    else if (a == "--sweep") sweep = int_list(next());
    else if (a == "--python") python = next();
    else if (a == "--no-baseline") baseline = false;
    else {
      std::fprintf(stderr, "bench_generate: unknown argument '%s' (see the header of bench_generate.cpp)\n", a.c_str());
      return 2;
    }
  }
  at::set_num_threads(2);
  test_support::TempDir dir("bench-gen");
  if (dtype != "f32" && dtype != "bf16") {
    std::fprintf(stderr, "bench_generate: --dtype %s, expected f32 or bf16\n", dtype.c_str());
    return 2;
  }
  const bool bf16 = dtype == "bf16";
  // bf16: the checkpoint is stored in bf16 and computed in bf16 (as real checkpoints), by the pipeline and
  // by the baseline alike; the peak is the bf16 matrix-product rate.
  test_support::write_world(dir.path(), hidden, layers, heads, "llama", bf16);
  const double peak = matmul_gflops(2048, bf16 ? torch::kBFloat16 : torch::kFloat32);
  std::printf("model: llama, hidden %d, %d layers, %d heads (%d kv), d_ff %d, %s; 2 threads; prefill calls of %d rows, attention blocks of %d\n",
              hidden, layers, heads, heads / 2, 2 * hidden, dtype.c_str(), g_call, chunk);
  std::printf("matrix-product rate (%s 2048^3, best of 3, this run): %.1f GFLOP/s\n", dtype.c_str(), peak);
  // OpenBLAS picks its kernels by CPU unless this is set (the project machine sets Haswell, AVX2 kernels, on
  // an AVX-512 CPU: docs/BENCHMARKS.md). Every fp32 column depends on it, the baseline's too.
  if (const char* core = std::getenv("OPENBLAS_CORETYPE")) std::printf("OPENBLAS_CORETYPE=%s (environment)\n", core);
  std::printf("decode: 32 greedy steps after the prefill; capture = argmax of every head's row (the paper's)\n");
  std::printf("sweep: `rhead run` generate + score, %d cells per length, 20 decode steps per cell; baseline: "
              "analysis/baselines/eager_reference.py --threads 2 --check on the 1-rank cells\n\n", cells);
  std::printf("%6s | %9s %8s %6s | %8s %8s | %8s %9s | %8s %6s | %8s %8s %6s | %8s %6s %9s\n", "ctx", "prefill/s",
              "GFLOP/s", "%peak", "decode/s", "capture", "peak MiB", "MiB/ktok", "1r2t c/s", "reuse", "1r1t c/s",
              "2r1t c/s", "2r/1r", "base c/s", "ratio", "identical");
  std::fflush(stdout);

  std::vector<int> all = lengths;
  for (int s : sweep) {
    if (std::find(all.begin(), all.end(), s) == all.end()) all.push_back(s);
  }
  std::sort(all.begin(), all.end());
  for (int ctx : all) {
    DecoderRow d;
    if (std::find(lengths.begin(), lengths.end(), ctx) != lengths.end()) d = decoder_row(dir.path() / "model", ctx, chunk, dtype);
    SweepRow s;
    if (std::find(sweep.begin(), sweep.end(), ctx) != sweep.end()) {
      fs::path run1, run2, run11, run_fresh;
      int64_t n1 = 0, n2 = 0, n11 = 0, n_fresh = 0;
      s.cps_1 = run_sweep(dir.path(), ctx, 1, 2, cells, chunk, bf16, run1, n1);
      s.cps_fresh = run_sweep(dir.path(), ctx, 1, 2, cells, chunk, bf16, run_fresh, n_fresh, /*reuse_prefix=*/false);
      s.cps_11 = run_sweep(dir.path(), ctx, 1, 1, cells, chunk, bf16, run11, n11);
      s.cps_2 = run_sweep(dir.path(), ctx, 2, 1, cells, chunk, bf16, run2, n2);
      s.cells = n1;
      s.ok = s.cps_1 > 0 && s.cps_2 > 0 && s.cps_fresh > 0 && s.cps_11 > 0;
      if (s.ok && baseline) {
        const std::string cmd = python + " " + (test_support::source_dir() / "analysis/baselines/eager_reference.py").string() +
                                " " + (run1 / "generate.h5").string() + " --threads 2 --quiet --check " +
                                (run1 / "score.h5").string();
        auto b = test_support::run_command(cmd, 7200);
        double secs = 0;
        long long nb = 0;
        const size_t at = b.output.find("eager_reference: ");
        if (at != std::string::npos && std::sscanf(b.output.c_str() + at, "eager_reference: %lld cells in %lf s", &nb, &secs) == 2 &&
            secs > 0) {
          s.cps_base = static_cast<double>(nb) / secs;
        }
        s.identical = b.exit_code == 0 ? "yes" : (b.exit_code == 1 ? "NO" : "error");
        if (b.exit_code != 0) std::fprintf(stderr, "baseline (exit %d):\n%s\n", b.exit_code, b.output.c_str());
        // The verdict line, with its near-tie and float64-arbitration counts when there were any.
        const size_t verdict = b.output.find("eager_reference: identical");
        if (verdict != std::string::npos) {
          std::fprintf(stderr, "sweep %d: %s\n", ctx,
                       b.output.substr(verdict, b.output.find('\n', verdict) - verdict).c_str());
        }
      }
    }
    char dec[160] = " ", sw[160] = " ";
    if (d.ok) {
      std::snprintf(dec, sizeof dec, "%9.0f %8.1f %5.0f%% | %8.1f %7.1f%% | %8.0f %9.1f", (ctx - 1) / d.t_prefill,
                    d.gflops, 100.0 * d.gflops / peak, 32.0 / d.t_plain, 100.0 * (d.t_capture - d.t_plain) / d.t_plain,
                    d.peak_all, (d.peak_all - d.rss_base) / (ctx / 1024.0));
    } else {
      std::snprintf(dec, sizeof dec, "%9s %8s %6s | %8s %8s | %8s %9s", "-", "-", "-", "-", "-", "-", "-");
    }
    if (s.ok) {
      char base[64];
      if (s.cps_base > 0) {
        std::snprintf(base, sizeof base, "%8.3f %5.1fx %9s", s.cps_base, s.cps_1 / s.cps_base, s.identical.c_str());
      } else {
        std::snprintf(base, sizeof base, "%8s %6s %9s", "-", "-", s.identical.c_str());
      }
      std::snprintf(sw, sizeof sw, "%8.3f %5.2fx | %8.3f %8.3f %5.2fx | %s", s.cps_1, s.cps_1 / s.cps_fresh, s.cps_11,
                    s.cps_2, s.cps_2 / s.cps_11, base);
    } else {
      std::snprintf(sw, sizeof sw, "%8s %6s | %8s %8s %6s | %8s %6s %9s", "-", "-", "-", "-", "-", "-", "-", "-");
    }
    std::printf("%6d | %s | %s\n", ctx, dec, sw);
    std::fflush(stdout);
  }
  std::printf("\nprefill/s: prompt tokens per second (ctx - 1 tokens); GFLOP/s counts matmul FLOPs (projections,\n"
              "MLP, causal attention); capture: decode time with capture vs without; MiB/ktok: peak RSS above the\n"
              "loaded model per 1024 context tokens (flat = memory linear in context); 1r2t: 1 rank x 2 threads;\n"
              "reuse: 1r2t cells/s over the same run with [generate] reuse_prefix = false; 2r/1r: 2 ranks x 1\n"
              "thread over 1 rank x 1 thread (scaling over the 2 cores); ratio: 1r2t cells/s over the baseline's\n"
              "(both 2 threads, both including model load); identical: the baseline's --check (near-ties counted).\n");
  return 0;
}
