// Short, stable fingerprints of bytes and of the files a stage reads, so that a rerun can tell whether
// what a store was made from has changed (pipeline/runner/runner.cpp, cell_driver.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace pipeline {

// Hex FNV-1a (64-bit) of `bytes`: 16 characters, not cryptographic.
std::string content_digest(std::string_view bytes);

// Files up to this size are fingerprinted by their bytes; larger ones (model weights: gigabytes, read
// at every run otherwise) by size and modification time, as make does.
constexpr std::uintmax_t kContentFingerprintLimit = std::uintmax_t{64} << 20;

// One line that changes when `path` changes: for a file, its content digest (or "size <n> mtime <t>"
// above kContentFingerprintLimit); for a folder, a digest of every regular file under it (relative
// name and fingerprint; names starting with '.' skipped); "missing" when there is nothing at `path`.
// Throws InputError when a file cannot be read.
std::string file_fingerprint(const std::filesystem::path& path);

}  // namespace pipeline
