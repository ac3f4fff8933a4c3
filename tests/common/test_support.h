// Shared helpers for the test suite: paths, temporary directories, running the rhead binary.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace test_support {

// The one helper for error-message tests: runs `fn`, expects it to throw E, and returns the message
// ("" and a test failure when it throws nothing; the message and a failure when it throws another type).
template <class E, class F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a different exception type: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "did not throw";
  return "";
}

// Expects `text` (an error message, a log) to contain every fragment; names the missing ones.
inline void expect_contains(const std::string& text, std::initializer_list<std::string_view> fragments) {
  for (std::string_view f : fragments) {
    EXPECT_NE(text.find(f), std::string::npos) << "missing \"" << f << "\" in:\n" << text;
  }
}

// Source tree root (where CMakeLists.txt is) and the rhead executable under test.
std::filesystem::path source_dir();
std::filesystem::path rhead_exe();

// The official release's data (../shared/reference/retrieval_head next to the checkout), or nullopt
// when it is absent: callers GTEST_SKIP() with the message from shared_reference_missing_message().
std::optional<std::filesystem::path> shared_reference_dir();
std::string shared_reference_missing_message();

// A fresh, empty directory under the system temp dir, removed when the object dies
// (kept when RHEAD_KEEP_TEST_DIRS=1 is set, for debugging).
class TempDir {
 public:
  explicit TempDir(const std::string& tag);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return m_path; }

 private:
  std::filesystem::path m_path;
};

struct CommandResult {
  int exit_code = -1;   // WEXITSTATUS, or 128 + signal
  std::string output;   // stdout and stderr together
  double seconds = 0.0;
};

// Runs a shell command line (bash -c), capturing output; kills it after timeout_s.
CommandResult run_command(const std::string& command_line, double timeout_s = 300.0);

// "mpiexec -n N <preflags>" prefix for command lines that launch rhead under MPI.
std::string mpiexec_prefix(int n_procs);

// `rhead run ARGS` from `dir` with n_procs ranks under mpiexec (0: a plain process, no mpiexec).
CommandResult run_rhead(const std::filesystem::path& dir, int n_procs, const std::string& args,
                        double timeout_s = 180.0);
// `rhead inspect --digest STORE` (content hash, attributes ignored); throws std::runtime_error with
// rhead's output when it fails.
std::string store_digest(const std::filesystem::path& store);

// Whole file as a string; throws std::runtime_error naming the file when unreadable.
std::string read_text_file(const std::filesystem::path& path);
void write_text_file(const std::filesystem::path& path, const std::string& text);

}  // namespace test_support
