// Needles and haystacks for the NIAH tests (docs/PROMPTS.md; docs/PAPER_NOTES.md, "The NIAH grid").
//   needles.jsonl   one {"needle", "question", "real_needle"} object per line (official format)
//   detection       concatenate *.txt until the whitespace-split word count reaches the longest context
//   masked NIAH     concatenate *.txt until the token count reaches the longest context
// No LibTorch. Errors are pipeline::InputError naming the file (and line).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace models {
class Tokenizer;
}

namespace stages {

struct Needle {
  std::string needle;       // the sentence inserted into the haystack
  std::string question;     // the retrieval question put after the context
  std::string real_needle;  // the answer span the scorer looks for in the prompt (official "real_needle")
};

// The masked-NIAH needle of needle_in_haystack_with_mask.py (San Francisco, with its surrounding
// newlines) and the answer span that script scores.
Needle masked_niah_needle();

// Reads a needles.jsonl file: one JSON object per non-blank line with the string keys "needle",
// "question" and "real_needle" ("answer" is accepted as an alias of "real_needle"; giving both with
// different values is an error). Unknown keys, empty values, non-string values, invalid JSON and a file
// without any needle are errors naming the file and the 1-based line.
std::vector<Needle> read_needles_jsonl(const std::filesystem::path& path);

// The *.txt files of a haystack folder in name order (the official code uses glob order, which is
// the file-system order; we sort so that runs are reproducible). Throws when there is none.
std::vector<std::filesystem::path> haystack_files(const std::filesystem::path& dir);

// Reads one haystack file as Python's open(f, 'r').read() does: universal newlines ("\r\n" and "\r"
// become "\n"). Throws when unreadable.
std::string read_haystack_file(const std::filesystem::path& path);

// Number of words of Python's str.split() (runs of Unicode whitespace, str.isspace()).
int64_t count_python_words(std::string_view utf8);

// Detection haystack (retrieval_head_detection.py read_context_files): whole passes over the folder's
// *.txt files are appended while count_python_words(text) < min_words. The official min_words is the
// largest context length of the grid (e.g. 50000), not the length of the current test.
std::string read_detection_haystack(const std::filesystem::path& dir, int64_t min_words);

// Masked-NIAH haystack (needle_in_haystack_with_mask.py read_context_files): whole passes are
// appended while tokenizer.encode(text, add_special_tokens=true).size() < min_tokens.
std::string read_token_haystack(const std::filesystem::path& dir, const models::Tokenizer& tokenizer,
                                int64_t min_tokens);

}  // namespace stages
