#include "tests/common/test_support.h"

#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace test_support {

namespace fs = std::filesystem;

fs::path source_dir() { return fs::path(RHEAD_SOURCE_DIR); }
fs::path rhead_exe() { return fs::path(RHEAD_EXE); }

std::optional<fs::path> shared_reference_dir() {
  if (const char* env = std::getenv("RHEAD_SHARED_DIR")) {
    fs::path p = fs::path(env) / "reference" / "retrieval_head";
    if (fs::is_directory(p)) return p;
  }
  fs::path p = source_dir().parent_path() / "shared" / "reference" / "retrieval_head";
  if (fs::is_directory(p)) return p;
  return std::nullopt;
}

std::string shared_reference_missing_message() {
  return "the official release's data is absent: expected ../shared/reference/retrieval_head next to "
         "the checkout (" + (source_dir().parent_path() / "shared").string() +
         ") or $RHEAD_SHARED_DIR/reference/retrieval_head; skipping";
}

TempDir::TempDir(const std::string& tag) {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path candidate = fs::temp_directory_path() / ("rhead-" + tag + "-" + std::to_string(rd()));
    if (fs::create_directory(candidate)) {
      m_path = candidate;
      return;
    }
  }
  throw std::runtime_error("TempDir: could not create a temporary directory for " + tag);
}

TempDir::~TempDir() {
  const char* keep = std::getenv("RHEAD_KEEP_TEST_DIRS");
  if (keep && std::string(keep) == "1") return;
  std::error_code ec;
  fs::remove_all(m_path, ec);
}

CommandResult run_command(const std::string& command_line, double timeout_s) {
  // `timeout` turns a hang into a failure with exit code 124 (or 137 after -k).
  std::ostringstream cmd;
  cmd << "timeout -k 5 " << timeout_s << " bash -c '";
  for (char c : command_line) {
    if (c == '\'') cmd << "'\\''";
    else cmd << c;
  }
  cmd << "' 2>&1";
  CommandResult result;
  auto t0 = std::chrono::steady_clock::now();
  FILE* pipe = popen(cmd.str().c_str(), "r");
  if (!pipe) throw std::runtime_error("run_command: popen failed for: " + command_line);
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) result.output.append(buf.data(), n);
  int status = pclose(pipe);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status)) result.exit_code = 128 + WTERMSIG(status);
  return result;
}

std::string mpiexec_prefix(int n_procs) {
  std::string prefix = std::string(RHEAD_MPIEXEC) + " -n " + std::to_string(n_procs);
  std::string flags = RHEAD_MPIEXEC_PREFLAGS;  // CMake list: ';'-separated
  for (char& c : flags) {
    if (c == ';') c = ' ';
  }
  if (!flags.empty()) prefix += " " + flags;
  return prefix;
}

CommandResult run_rhead(const fs::path& dir, int n_procs, const std::string& args, double timeout_s) {
  std::string launcher = n_procs == 0 ? "" : mpiexec_prefix(n_procs) + " ";
  return run_command("cd " + dir.string() + " && " + launcher + rhead_exe().string() + " run " + args, timeout_s);
}

std::string store_digest(const fs::path& store) {
  CommandResult r = run_command(rhead_exe().string() + " inspect --digest " + store.string());
  if (r.exit_code != 0) throw std::runtime_error("rhead inspect --digest " + store.string() + " failed:\n" + r.output);
  return r.output;
}

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("cannot write " + path.string());
  out << text;
}

}  // namespace test_support
