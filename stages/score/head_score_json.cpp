#include "stages/score/head_score_json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <vector>

#include "pipeline/core/error.h"

namespace stages {
namespace {

using pipeline::InputError;
using pipeline::str_cat;

constexpr int64_t kMaxIndex = 1 << 20;  // no model has a million layers or heads; guards L*H overflow

// "<layer>-<head>" with canonical non-negative decimals (no sign, no leading zeros) -> id, or false.
bool parse_key(const std::string& key, int64_t& layer, int64_t& head) {
  const size_t dash = key.find('-');
  if (dash == std::string::npos) return false;
  const auto parse_index = [](std::string_view digits, int64_t& out) {
    if (digits.empty() || digits.size() > 7) return false;
    if (digits.size() > 1 && digits[0] == '0') return false;
    out = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return false;
      out = out * 10 + (c - '0');
    }
    return out < kMaxIndex;
  };
  const std::string_view view(key);
  return parse_index(view.substr(0, dash), layer) && parse_index(view.substr(dash + 1), head);
}

}  // namespace

std::string python_float_repr(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  if (value == 0.0) return std::signbit(value) ? "-0.0" : "0.0";
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  const std::string sci(buf, result.ptr);  // e.g. "-1.0344827586206896e-01": shortest round-trip digits
  const size_t e_pos = sci.find('e');
  std::string digits;
  bool negative = false;
  for (size_t i = 0; i < e_pos; ++i) {
    if (sci[i] == '-') negative = true;
    else if (sci[i] != '.') digits.push_back(sci[i]);
  }
  const int exponent = std::stoi(sci.substr(e_pos + 1));
  const int decpt = exponent + 1;  // value = 0.<digits> * 10^decpt
  const auto n_digits = static_cast<int>(digits.size());
  std::string out = negative ? "-" : "";
  if (decpt <= -4 || decpt > 16) {  // Python's repr switches to exponent form here
    out += digits.substr(0, 1);
    if (n_digits > 1) out += "." + digits.substr(1);
    const int x = decpt - 1;
    out += x < 0 ? "e-" : "e+";
    const int ax = x < 0 ? -x : x;
    if (ax < 10) out += "0";
    out += std::to_string(ax);
  } else if (decpt <= 0) {
    out += "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
  } else if (decpt < n_digits) {
    out += digits.substr(0, static_cast<size_t>(decpt)) + "." + digits.substr(static_cast<size_t>(decpt));
  } else {
    out += digits + std::string(static_cast<size_t>(decpt - n_digits), '0') + ".0";
  }
  return out;
}

HeadScores parse_head_score_json(std::string_view text, std::string_view source) {
  using nlohmann::json;
  std::set<std::string> seen;
  std::string duplicate;
  const json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json root;
  try {
    root = json::parse(text.begin(), text.end(), on_event);
  } catch (const json::exception& e) {
    throw InputError(str_cat("[head_score] ", source, ": not valid JSON (", e.what(),
                             "). Hint: expected the official one-line {\"<layer>-<head>\": [scores...]} file"));
  }
  RHEAD_CHECK(root.is_object(), InputError, "[head_score] ", source, ": top level is a JSON ", root.type_name(),
              ", expected an object {\"<layer>-<head>\": [scores...]}");
  RHEAD_CHECK(duplicate.empty(), InputError, "[head_score] ", source, ": key '", duplicate,
              "' appears more than once, expected each head once");
  RHEAD_CHECK(!root.empty(), InputError, "[head_score] ", source,
              ": got an empty object {}, expected one list per head. Hint: the detection run had no successful "
              "test (ROUGE-1 recall > 50); official issue #6");

  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_test = -1;
  std::string first_key;
  for (const auto& [key, list] : root.items()) {
    int64_t layer = 0;
    int64_t head = 0;
    RHEAD_CHECK(parse_key(key, layer, head), InputError, "[head_score] ", source, ": key '", key,
                "' does not parse, expected \"<layer>-<head>\" with 0-based decimal indices such as \"12-3\"");
    RHEAD_CHECK(list.is_array(), InputError, "[head_score] ", source, ": key '", key, "' holds a JSON ",
                list.type_name(), ", expected a list of per-test scores");
    const auto length = static_cast<int64_t>(list.size());
    if (n_test < 0) {
      n_test = length;
      first_key = key;
    }
    RHEAD_CHECK(length == n_test, InputError, "[head_score] ", source, ": key '", key, "' has ", length,
                " scores, expected ", n_test, " like key '", first_key, "' (one score per successful test)");
    n_layer = std::max(n_layer, layer + 1);
    n_head = std::max(n_head, head + 1);
  }
  const auto n_keys = static_cast<int64_t>(root.size());
  if (n_keys != n_layer * n_head) {
    std::string missing;
    for (int64_t l = 0; l < n_layer && missing.empty(); ++l) {
      for (int64_t h = 0; h < n_head && missing.empty(); ++h) {
        const std::string key = str_cat(l, "-", h);
        if (!root.contains(key)) missing = key;
      }
    }
    throw InputError(str_cat("[head_score] ", source, ": key '", missing, "' is missing; got ", n_keys,
                             " heads, expected ", n_layer, " x ", n_head, " = ", n_layer * n_head,
                             " (layers and heads inferred from the largest indices)"));
  }

  HeadScores scores = make_head_scores(n_layer, n_head);
  scores.n_test = n_test;
  scores.scores.assign(static_cast<size_t>(n_test * n_layer * n_head), 0.0);
  for (const auto& [key, list] : root.items()) {
    int64_t layer = 0;
    int64_t head = 0;
    parse_key(key, layer, head);
    for (int64_t t = 0; t < n_test; ++t) {
      const json& v = list[static_cast<size_t>(t)];
      RHEAD_CHECK(v.is_number(), InputError, "[head_score] ", source, ": key '", key, "' entry ", t, " is a JSON ",
                  v.type_name(), ", expected a number");
      const double d = v.get<double>();
      RHEAD_CHECK(std::isfinite(d) && d >= 0.0, InputError, "[head_score] ", source, ": key '", key, "' entry ", t,
                  ": got ", d, ", expected a finite score >= 0");
      scores.scores[static_cast<size_t>((t * n_layer + layer) * n_head + head)] = d;
    }
  }
  return scores;
}

std::string format_head_score_json(const HeadScores& scores) {
  const int64_t n_cell = scores.n_layer * scores.n_head;
  RHEAD_CHECK(static_cast<int64_t>(scores.scores.size()) == scores.n_test * n_cell, pipeline::ShapeError,
              "[head_score] export: ", scores.scores.size(), " values, expected tests x layers x heads = ",
              scores.n_test, " x ", scores.n_layer, " x ", scores.n_head);
  std::string out = "{";
  for (int64_t l = 0; l < scores.n_layer; ++l) {
    for (int64_t h = 0; h < scores.n_head; ++h) {
      if (l != 0 || h != 0) out += ", ";
      out += str_cat("\"", l, "-", h, "\": [");
      for (int64_t t = 0; t < scores.n_test; ++t) {
        if (t != 0) out += ", ";
        const double v = scores.at(t, l, h);
        // A head that never fired keeps the official int counter 0; every other value is a Python float.
        out += (v == 0.0 && !std::signbit(v)) ? std::string("0") : python_float_repr(v);
      }
      out += "]";
    }
  }
  out += "}";
  return out;
}

HeadScores read_head_score_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  RHEAD_CHECK(in.good(), InputError, "[head_score] ", path.string(),
              ": cannot open for reading. Hint: check the path (official files are head_score/<model>.json)");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_head_score_json(text.str(), path.string());
}

void write_head_score_file(const std::filesystem::path& path, const HeadScores& scores) {
  const std::string text = format_head_score_json(scores);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  RHEAD_CHECK(out.good(), InputError, "[head_score] ", path.string(), ": cannot open for writing");
  out << text;
  out.flush();
  RHEAD_CHECK(out.good(), InputError, "[head_score] ", path.string(), ": write failed (disk full?)");
}

}  // namespace stages
