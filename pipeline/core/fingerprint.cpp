#include "pipeline/core/fingerprint.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <vector>

#include "pipeline/core/error.h"
#include "pipeline/core/fnv1a.h"

namespace pipeline {

namespace fs = std::filesystem;

namespace {

std::string hex(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// A regular file's fingerprint (see file_fingerprint), streamed in 1 MiB blocks.
std::string regular_file_fingerprint(const fs::path& file) {
  const std::uintmax_t size = fs::file_size(file);
  if (size > kContentFingerprintLimit) {
    const auto mtime = fs::last_write_time(file).time_since_epoch();
    return "size " + std::to_string(size) + " mtime " +
           std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(mtime).count());
  }
  std::ifstream in(file, std::ios::binary);
  RHEAD_CHECK(in.good(), InputError, "cannot read ", file.string(), " (to fingerprint it)");
  uint64_t h = kFnv1aOffset;
  std::vector<char> block(size_t{1} << 20);
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    h = fnv1a(block.data(), static_cast<size_t>(in.gcount()), h);
  }
  RHEAD_CHECK(in.eof(), InputError, "cannot read ", file.string(), " (to fingerprint it)");
  return hex(h);
}

}  // namespace

std::string content_digest(std::string_view bytes) { return hex(fnv1a(bytes)); }

std::string file_fingerprint(const fs::path& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return "missing";
  if (!fs::is_directory(st)) return regular_file_fingerprint(path);
  // A folder: "name fingerprint" per file, sorted by name, digested to one line.
  std::vector<std::pair<std::string, fs::path>> files;
  for (auto it = fs::recursive_directory_iterator(path); it != fs::recursive_directory_iterator(); ++it) {
    if (it->path().filename().string().rfind('.', 0) == 0) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) files.emplace_back(fs::relative(it->path(), path).generic_string(), it->path());
  }
  std::sort(files.begin(), files.end());
  std::string listing;
  for (const auto& [name, file] : files) listing += name + " " + regular_file_fingerprint(file) + "\n";
  return "folder of " + std::to_string(files.size()) + " files " + content_digest(listing);
}

}  // namespace pipeline
