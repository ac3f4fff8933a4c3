#include "stages/niah/needles.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "models/tokenizer/tokenizer.h"
#include "pipeline/core/error.h"

namespace stages {
namespace {

namespace fs = std::filesystem;
using pipeline::InputError;
using pipeline::str_cat;

bool is_blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

// Python str.isspace() for one code point.
bool is_python_space(uint32_t cp) {
  if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F)) return true;
  if (cp < 0x80) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Next code point of s at i (advances i). An invalid byte is returned as itself, one byte long, so it
// counts as a word character.
uint32_t next_code_point(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  int len = b0 < 0x80 ? 1 : (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xE ? 3 : (b0 >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || i + static_cast<size_t>(len) > s.size()) {
    ++i;
    return b0;
  }
  uint32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1Fu) : len == 3 ? (b0 & 0x0Fu) : (b0 & 0x07u);
  for (int k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
    if ((b >> 6) != 0x2) {
      ++i;
      return b0;
    }
    cp = (cp << 6) | (b & 0x3Fu);
  }
  i += static_cast<size_t>(len);
  return cp;
}

std::string get_string_key(const nlohmann::json& obj, const char* key, const fs::path& path, int line) {
  const auto& v = obj.at(key);
  RHEAD_CHECK(v.is_string(), InputError, "[needles] ", path.string(), ":", line, ": key '", key,
              "' has the wrong type; got ", v.dump(), ", expected a string");
  std::string s = v.get<std::string>();
  RHEAD_CHECK(!s.empty(), InputError, "[needles] ", path.string(), ":", line, ": key '", key,
              "' is empty; expected non-empty text");
  return s;
}

}  // namespace

Needle masked_niah_needle() {
  return Needle{"\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\n",
                "What is the best thing to do in San Francisco?",
                "eat a sandwich and sit in Dolores Park on a sunny day"};
}

std::vector<Needle> read_needles_jsonl(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  RHEAD_CHECK(in.good(), InputError, "[needles] ", path.string(),
              ": cannot open file. Hint: check the path (official: haystack_for_detect/needles.jsonl)");
  std::vector<Needle> needles;
  std::string text;
  int line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (is_blank(text)) continue;
    nlohmann::json obj;
    try {
      obj = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      throw InputError(str_cat("[needles] ", path.string(), ":", line, ": not valid JSON (", e.what(),
                               "). Hint: one JSON object per line"));
    }
    RHEAD_CHECK(obj.is_object(), InputError, "[needles] ", path.string(), ":", line,
                ": expected a JSON object; got ", obj.type_name());
    for (const auto& item : obj.items()) {
      const std::string& k = item.key();
      RHEAD_CHECK(k == "needle" || k == "question" || k == "real_needle" || k == "answer", InputError,
                  "[needles] ", path.string(), ":", line, ": unknown key '", k,
                  "'; expected needle, question, real_needle (or its alias answer)");
    }
    for (const char* key : {"needle", "question"}) {
      RHEAD_CHECK(obj.contains(key), InputError, "[needles] ", path.string(), ":", line, ": key '", key,
                  "' is missing");
    }
    RHEAD_CHECK(obj.contains("real_needle") || obj.contains("answer"), InputError, "[needles] ",
                path.string(), ":", line, ": key 'real_needle' (or its alias 'answer') is missing");
    Needle n;
    n.needle = get_string_key(obj, "needle", path, line);
    n.question = get_string_key(obj, "question", path, line);
    if (obj.contains("real_needle")) {
      n.real_needle = get_string_key(obj, "real_needle", path, line);
      if (obj.contains("answer")) {
        const std::string alias = get_string_key(obj, "answer", path, line);
        RHEAD_CHECK(alias == n.real_needle, InputError, "[needles] ", path.string(), ":", line,
                    ": keys 'real_needle' and 'answer' disagree; got \"", n.real_needle, "\" and \"", alias,
                    "\". Hint: give only one of them");
      }
    } else {
      n.real_needle = get_string_key(obj, "answer", path, line);
    }
    needles.push_back(std::move(n));
  }
  RHEAD_CHECK(!needles.empty(), InputError, "[needles] ", path.string(),
              ": no needle found; expected one JSON object per line");
  return needles;
}

std::vector<fs::path> haystack_files(const fs::path& dir) {
  RHEAD_CHECK(fs::is_directory(dir), InputError, "[haystack] ", dir.string(),
              ": not a directory. Hint: official folders are haystack_for_detect/part{1,2,3} and PaulGrahamEssays");
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".txt" && !fs::is_directory(entry.path())) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
  RHEAD_CHECK(!files.empty(), InputError, "[haystack] ", dir.string(), ": no *.txt file found");
  return files;
}

std::string read_haystack_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  RHEAD_CHECK(in.good(), InputError, "[haystack] ", path.string(), ": cannot open file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string raw = buffer.str();
  if (raw.find('\r') == std::string::npos) return raw;
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
    } else {
      out.push_back(raw[i]);
    }
  }
  return out;
}

int64_t count_python_words(std::string_view utf8) {
  int64_t words = 0;
  bool in_word = false;
  size_t i = 0;
  while (i < utf8.size()) {
    const bool space = is_python_space(next_code_point(utf8, i));
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return words;
}

std::string read_detection_haystack(const fs::path& dir, int64_t min_words) {
  const auto files = haystack_files(dir);
  std::vector<std::string> texts;
  for (const auto& f : files) texts.push_back(read_haystack_file(f));
  std::string context;
  int64_t words = count_python_words(context);
  while (words < min_words) {
    for (const auto& t : texts) context += t;
    const int64_t now = count_python_words(context);
    RHEAD_CHECK(now > words, InputError, "[haystack] ", dir.string(),
                ": the *.txt files contain no words; cannot reach ", min_words, " words");
    words = now;
  }
  return context;
}

std::string read_token_haystack(const fs::path& dir, const models::Tokenizer& tokenizer, int64_t min_tokens) {
  const auto files = haystack_files(dir);
  std::vector<std::string> texts;
  for (const auto& f : files) texts.push_back(read_haystack_file(f));
  std::string context;
  auto n_tokens = static_cast<int64_t>(tokenizer.encode(context, true).size());
  while (n_tokens < min_tokens) {
    for (const auto& t : texts) context += t;
    const auto now = static_cast<int64_t>(tokenizer.encode(context, true).size());
    RHEAD_CHECK(now > n_tokens, InputError, "[haystack] ", dir.string(),
                ": the *.txt files give no tokens; cannot reach ", min_tokens, " tokens");
    n_tokens = now;
  }
  return context;
}

}  // namespace stages
