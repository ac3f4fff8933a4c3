// The official head_score file format (docs/PAPER_NOTES.md, "Retrieval score"): one line of JSON,
//   {"<layer>-<head>": [per-test score, ...], ...}
// 0-indexed layer and head, one list per head, every list as long as the number of successful tests.
// Import infers L and H from the keys and checks that every key parses, no key repeats, every head of the
// L x H grid is present and all lists have the same length. Export writes what the official script's
// json.dump writes: keys in (layer, head) order, ", " and ": " separators, no trailing newline, 0 as "0"
// (the official counters start as Python int 0) and other values in Python's float repr (shortest
// round-trip digits, exponent form below 1e-4 and from 1e16 on), so import -> export reproduces the
// shipped files byte for byte and export -> import is lossless.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "stages/score/score_ops.h"

namespace stages {

// JSON text -> HeadScores [N, L, H]; `source` (a file name) is named in every error (pipeline::InputError).
HeadScores parse_head_score_json(std::string_view text, std::string_view source);

// HeadScores [N, L, H] -> one-line JSON text in the official format.
std::string format_head_score_json(const HeadScores& scores);

// File -> HeadScores; throws pipeline::InputError naming the file when it cannot be read or parsed.
HeadScores read_head_score_file(const std::filesystem::path& path);

// HeadScores -> file (overwritten); throws pipeline::InputError naming the file on write failure.
void write_head_score_file(const std::filesystem::path& path, const HeadScores& scores);

// double -> Python repr(float) text ("0.1", "1.0", "1e-05", "1.5e+16"); non-finite -> "NaN"/"Infinity"/"-Infinity".
std::string python_float_repr(double value);

}  // namespace stages
