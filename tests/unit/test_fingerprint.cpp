// pipeline/core/fingerprint.h: content digests and the file fingerprints a rerun compares.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "pipeline/core/fingerprint.h"
#include "tests/common/test_support.h"

namespace fs = std::filesystem;
using pipeline::file_fingerprint;

TEST(Fingerprint, ContentDigestIsFnv1a64) {
  // Published FNV-1a 64-bit test vectors (Fowler, Noll, Vo: isthe.com/chongo/tech/comp/fnv).
  EXPECT_EQ(pipeline::content_digest(""), "cbf29ce484222325");
  EXPECT_EQ(pipeline::content_digest("a"), "af63dc4c8601ec8c");
  EXPECT_EQ(pipeline::content_digest("foobar"), "85944171f73967e8");
}

TEST(Fingerprint, FilesByContent) {
  test_support::TempDir dir("fp");
  const fs::path f = dir.path() / "needles.jsonl";
  test_support::write_text_file(f, "one\n");
  const std::string before = file_fingerprint(f);
  EXPECT_EQ(before, pipeline::content_digest("one\n")) << "streamed in blocks, the same digest as the bytes'";
  test_support::write_text_file(f, "one\n");  // rewritten, same bytes: unchanged
  EXPECT_EQ(file_fingerprint(f), before);
  test_support::write_text_file(f, "two\n");
  EXPECT_NE(file_fingerprint(f), before);
  EXPECT_EQ(file_fingerprint(dir.path() / "absent.jsonl"), "missing");
}

TEST(Fingerprint, FoldersByEveryFileButHiddenOnes) {
  test_support::TempDir dir("fp-dir");
  const fs::path hay = dir.path() / "haystack";
  fs::create_directories(hay / "part1");
  test_support::write_text_file(hay / "part1" / "a.txt", "alpha");
  const std::string before = file_fingerprint(hay);
  EXPECT_NE(before.find("folder of 1 files"), std::string::npos) << before;

  fs::create_directories(hay / ".cache");
  test_support::write_text_file(hay / ".cache" / "x", "ignored");
  test_support::write_text_file(hay / ".hidden.txt", "ignored");
  EXPECT_EQ(file_fingerprint(hay), before) << "hidden files and folders do not count";

  test_support::write_text_file(hay / "part1" / "a.txt", "alphb");  // a file below the top changes
  EXPECT_NE(file_fingerprint(hay), before);
  test_support::write_text_file(hay / "part1" / "a.txt", "alpha");
  EXPECT_EQ(file_fingerprint(hay), before);
  fs::rename(hay / "part1" / "a.txt", hay / "part1" / "b.txt");  // same bytes under another name
  EXPECT_NE(file_fingerprint(hay), before);
  fs::rename(hay / "part1" / "b.txt", hay / "part1" / "a.txt");
  test_support::write_text_file(hay / "b.txt", "beta");  // a file more
  EXPECT_NE(file_fingerprint(hay), before);
}

TEST(Fingerprint, LargeFilesBySizeAndModificationTime) {
  // Model weights: gigabytes, so size and mtime stand for the bytes (a sparse file: no disk used).
  test_support::TempDir dir("fp-big");
  const fs::path w = dir.path() / "model.safetensors";
  { std::ofstream(w, std::ios::binary).put('x'); }
  fs::resize_file(w, pipeline::kContentFingerprintLimit + 1);
  const auto t = fs::last_write_time(w);
  const std::string before = file_fingerprint(w);
  EXPECT_EQ(before.rfind("size " + std::to_string(pipeline::kContentFingerprintLimit + 1) + " mtime ", 0), 0u)
      << before;
  fs::last_write_time(w, t + std::chrono::seconds(1));  // rewritten later
  EXPECT_NE(file_fingerprint(w), before);
  fs::last_write_time(w, t);
  EXPECT_EQ(file_fingerprint(w), before);
  fs::resize_file(w, pipeline::kContentFingerprintLimit + 2);
  fs::last_write_time(w, t);
  EXPECT_NE(file_fingerprint(w), before);
}
