#include "pipeline/core/config.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <set>
#include <sstream>

#include <boost/program_options/parsers.hpp>
#include <boost/program_options/options_description.hpp>

#include "pipeline/core/error.h"

namespace pipeline {

namespace po = boost::program_options;

const char* key_type_name(KeyType type) {
  switch (type) {
    case KeyType::String: return "string";
    case KeyType::Int: return "integer";
    case KeyType::Float: return "number";
    case KeyType::Bool: return "boolean (true/false)";
    case KeyType::StringList: return "list of strings";
    case KeyType::IntList: return "list of integers";
    case KeyType::FloatList: return "list of numbers";
  }
  return "?";
}

namespace {

std::vector<std::string> split_dots(const std::string& key) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : key) {
    if (c == '.') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  return parts;
}

bool pattern_matches(const std::string& pattern, const std::string& key) {
  auto p = split_dots(pattern);
  auto k = split_dots(key);
  if (p.size() != k.size()) return false;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] != "*" && p[i] != k[i]) return false;
  }
  return true;
}

// Pattern with its "*" segments replaced by the key's segments (for "did you mean" hints).
std::string instantiate_like(const std::string& pattern, const std::string& key) {
  auto p = split_dots(pattern);
  auto k = split_dots(key);
  std::string out;
  for (size_t i = 0; i < p.size(); ++i) {
    if (i) out += '.';
    out += (p[i] == "*" && i < k.size()) ? k[i] : p[i];
  }
  return out;
}

// For a pattern with one "*" segment ("model.*.path") and a key that matches it only when the "*"
// spans several dot-separated segments ("model.mistral-7b-v0.2.path"), that span ("mistral-7b-v0.2");
// else "". Section names given by the user cannot contain dots (INI sections nest by dots).
std::string dotted_wildcard(const std::string& pattern, const std::string& key) {
  auto p = split_dots(pattern);
  auto k = split_dots(key);
  const auto star = std::find(p.begin(), p.end(), "*");
  if (star == p.end() || std::count(p.begin(), p.end(), "*") != 1 || k.size() <= p.size()) return "";
  const size_t before = static_cast<size_t>(star - p.begin()), after = p.size() - before - 1;
  for (size_t i = 0; i < before; ++i) {
    if (p[i] != k[i]) return "";
  }
  for (size_t i = 0; i < after; ++i) {
    if (p[p.size() - 1 - i] != k[k.size() - 1 - i]) return "";
  }
  std::string name;
  for (size_t i = before; i < k.size() - after; ++i) name += (name.empty() ? "" : ".") + k[i];
  return name;
}

std::string section_of(const std::string& key) {
  auto pos = key.rfind('.');
  return pos == std::string::npos ? std::string() : key.substr(0, pos);
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string decode_string(const std::string& raw) {
  std::string s = trim(raw);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      char n = s[++i];
      switch (n) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case '\\': out += '\\'; break;
        case '"': out += '"'; break;
        default: out += '\\'; out += n; break;
      }
    } else {
      out += s[i];
    }
  }
  return out;
}

// Splits on commas that are not inside parentheses: "linspace(0, 1, 3), 7" -> 2 items.
std::vector<std::string> split_list(const std::string& raw) {
  std::vector<std::string> items;
  std::string cur;
  int depth = 0;
  bool in_quotes = false;
  for (char c : raw) {
    if (c == '"') in_quotes = !in_quotes;
    if (!in_quotes && c == '(') ++depth;
    if (!in_quotes && c == ')') --depth;
    if (c == ',' && depth == 0 && !in_quotes) {
      items.push_back(trim(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!trim(cur).empty() || !items.empty()) items.push_back(trim(cur));
  return items;
}

bool parse_int(const std::string& text, int64_t* out) {
  std::string s = trim(text);
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end != s.c_str() + s.size()) return false;
  *out = v;
  return true;
}

bool parse_float(const std::string& text, double* out) {
  std::string s = trim(text);
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end != s.c_str() + s.size() || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

bool parse_bool(const std::string& text, bool* out) {
  std::string s = trim(text);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "true" || s == "yes" || s == "on" || s == "1") { *out = true; return true; }
  if (s == "false" || s == "no" || s == "off" || s == "0") { *out = false; return true; }
  return false;
}

// "linspace(a, b, n)" / "range(a, b[, s])" -> the call's arguments; false when not such a call.
bool parse_call(const std::string& item, const std::string& fn, std::vector<double>* args) {
  std::string s = trim(item);
  if (s.rfind(fn + "(", 0) != 0 || s.back() != ')') return false;
  std::string inner = s.substr(fn.size() + 1, s.size() - fn.size() - 2);
  args->clear();
  for (const auto& a : split_list(inner)) {
    double v;
    if (!parse_float(a, &v)) return false;
    args->push_back(v);
  }
  return true;
}

// Expands one list item into numbers; returns false with a reason on bad syntax.
bool expand_numeric_item(const std::string& item, bool integers, std::vector<double>* out,
                         std::string* reason) {
  std::vector<double> args;
  if (parse_call(item, "linspace", &args)) {
    if (args.size() != 3 || args[2] < 1 || args[2] != std::floor(args[2])) {
      *reason = "linspace takes (start, stop, num) with an integer num >= 1";
      return false;
    }
    if (integers) {
      for (auto v : linspace_rounded(args[0], args[1], static_cast<int64_t>(args[2]))) out->push_back(double(v));
    } else {
      for (auto v : linspace(args[0], args[1], static_cast<int64_t>(args[2]))) out->push_back(v);
    }
    return true;
  }
  if (parse_call(item, "range", &args)) {
    if (args.size() < 2 || args.size() > 3) {
      *reason = "range takes (start, stop[, step])";
      return false;
    }
    double step = args.size() == 3 ? args[2] : 1.0;
    if (step == 0) {
      *reason = "range step must not be 0";
      return false;
    }
    for (double v = args[0]; step > 0 ? v < args[1] : v > args[1]; v += step) out->push_back(v);
    return true;
  }
  if (integers) {
    int64_t v;
    if (!parse_int(item, &v)) {
      *reason = "'" + item + "' is not an integer";
      return false;
    }
    out->push_back(double(v));
  } else {
    double v;
    if (!parse_float(item, &v)) {
      *reason = "'" + item + "' is not a number";
      return false;
    }
    out->push_back(v);
  }
  return true;
}

// Line number (1-based) of the first "key =" inside "[section]" of an INI text; 0 if not found.
int find_line(const std::string& text, const std::string& full_key) {
  std::string section = section_of(full_key);
  std::string key = full_key.substr(section.empty() ? 0 : section.size() + 1);
  std::istringstream in(text);
  std::string line, current;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[') {
      auto close = t.find(']');
      current = trim(t.substr(1, close == std::string::npos ? std::string::npos : close - 1));
      continue;
    }
    auto eq = t.find('=');
    if (eq != std::string::npos && current == section && trim(t.substr(0, eq)) == key) return n;
  }
  return 0;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::string nearest_name(const std::string& name, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& c : candidates) {
    size_t d = edit_distance(name, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  // Only suggest names that are plausibly a typo: within a third of the length (at least 2 edits),
  // or that share the last dotted segment (right key, wrong section).
  if (best_d == std::string::npos) return "";
  size_t limit = std::max<size_t>(2, name.size() / 3);
  if (best_d <= limit) return best;
  std::string last = name.substr(name.rfind('.') == std::string::npos ? 0 : name.rfind('.') + 1);
  for (const auto& c : candidates) {
    auto pos = c.rfind('.');
    if (pos != std::string::npos && c.substr(pos + 1) == last) return c;
  }
  return "";
}

std::vector<double> linspace(double start, double stop, int64_t num) {
  std::vector<double> out;
  if (num <= 0) return out;
  if (num == 1) return {start};
  // numpy: step = (stop - start) / (num - 1); y = arange(num) * step + start; y[-1] = stop
  double step = (stop - start) / double(num - 1);
  for (int64_t i = 0; i < num; ++i) out.push_back(double(i) * step + start);
  out.back() = stop;
  return out;
}

std::vector<int64_t> linspace_rounded(double start, double stop, int64_t num) {
  std::vector<int64_t> out;
  for (double v : linspace(start, stop, num)) out.push_back(static_cast<int64_t>(std::nearbyint(v)));
  return out;  // nearbyint in the default rounding mode is half-to-even, like numpy.round
}

// ---------------------------------------------------------------------------------------------
ConfigSchema::ConfigSchema(std::string file_kind) : m_file_kind(std::move(file_kind)) {}

ConfigSchema& ConfigSchema::required(const std::string& key, KeyType type, const std::string& help) {
  RHEAD_CHECK(find(key) == nullptr || find(key)->name != key, InternalError,
              "[config] key '", key, "' declared twice in the ", m_file_kind, " schema");
  m_keys.push_back({key, type, help, std::nullopt});
  return *this;
}

ConfigSchema& ConfigSchema::optional(const std::string& key, KeyType type,
                                     const std::string& default_text, const std::string& help) {
  RHEAD_CHECK(find(key) == nullptr || find(key)->name != key, InternalError,
              "[config] key '", key, "' declared twice in the ", m_file_kind, " schema");
  m_keys.push_back({key, type, help, default_text});
  return *this;
}

ConfigSchema& ConfigSchema::add(const KeySpec& spec) {
  for (const auto& k : m_keys) {
    if (k.name == spec.name) return *this;
  }
  m_keys.push_back(spec);
  return *this;
}

ConfigSchema& ConfigSchema::tuning(const std::string& key) {
  for (auto& k : m_keys) {
    if (k.name != key) continue;
    k.tuning = true;
    return *this;
  }
  throw InternalError(str_cat("[config] tuning('", key, "'): no such key is declared (bug: declare it first)"));
}

const KeySpec* ConfigSchema::find(const std::string& key) const {
  for (const auto& k : m_keys) {
    if (k.name == key) return &k;
  }
  for (const auto& k : m_keys) {
    if (pattern_matches(k.name, key)) return &k;
  }
  return nullptr;
}

std::string ConfigSchema::describe() const {
  std::ostringstream out;
  std::string current = "\x01";
  for (const auto& k : m_keys) {
    std::string section = section_of(k.name);
    if (section != current) {
      out << (current == "\x01" ? "" : "\n") << "[" << section << "]\n";
      current = section;
    }
    std::string key = k.name.substr(section.empty() ? 0 : section.size() + 1);
    out << "  " << key << " (" << key_type_name(k.type) << ", "
        << (k.default_text ? "default: " + (k.default_text->empty() ? std::string("\"\"") : *k.default_text)
                           : std::string("required"))
        << (k.tuning ? ", tuning: never changes results" : "") << ")\n      " << k.help << "\n";
  }
  return out.str();
}

// ---------------------------------------------------------------------------------------------
Config Config::parse_file(const ConfigSchema& schema, const std::filesystem::path& path,
                          const std::vector<std::string>& overrides) {
  std::ifstream in(path, std::ios::binary);
  RHEAD_CHECK(in.good(), ConfigError, "[config] ", path.string(), ": cannot open the ",
              schema.file_kind(), ". Hint: check the path (relative paths are relative to the current directory)");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_text(schema, ss.str(), path.string(), overrides);
}

Config Config::parse_text(const ConfigSchema& schema, const std::string& text,
                          const std::string& source_name, const std::vector<std::string>& overrides) {
  Config cfg;
  cfg.m_schema = schema;
  cfg.m_source = source_name;
  cfg.m_text = text;

  std::vector<po::option> options;
  try {
    std::istringstream in(text);
    po::options_description none;
    options = po::parse_config_file<char>(in, none, /*allow_unregistered=*/true).options;
  } catch (const po::error& e) {
    throw ConfigError(str_cat("[config] ", source_name, ": not a valid INI ", schema.file_kind(), ": ",
                              e.what(), ". Hint: every line is '[section]', 'key = value' or a # comment"));
  }

  std::vector<std::string> all_names;
  for (const auto& k : cfg.m_schema.keys()) all_names.push_back(k.name);

  for (const auto& opt : options) {
    const std::string& key = opt.string_key;
    const KeySpec* spec = cfg.m_schema.find(key);
    int line = find_line(text, key);
    std::string at = source_name + (line ? ":" + std::to_string(line) : "");
    if (!spec) {
      for (const auto& n : all_names) {
        const std::string name = dotted_wildcard(n, key);
        if (name.empty()) continue;
        std::string fixed = name;
        std::replace(fixed.begin(), fixed.end(), '.', '_');
        throw ConfigError(str_cat("[config] ", at, ": section name '", name, "' (key '", key,
                                  "') contains a dot; names in [", n.substr(0, n.find('*')),
                                  "<name>] cannot, because INI sections nest by dots. Hint: call it '", fixed,
                                  "' (the path inside the section may contain dots)"));
      }
      std::vector<std::string> candidates;
      for (const auto& n : all_names) candidates.push_back(instantiate_like(n, key));
      std::string hint = nearest_name(key, candidates);
      std::string section = section_of(key);
      throw ConfigError(str_cat("[config] ", at, ": unknown key '",
                                key.substr(section.empty() ? 0 : section.size() + 1), "' in section [",
                                section, "] of the ", schema.file_kind(),
                                hint.empty() ? ". Hint: run 'rhead run --help-keys' to list valid keys"
                                             : ". Hint: did you mean '" + hint + "'?"));
    }
    auto& e = cfg.m_entries[key];
    bool is_list = spec->type == KeyType::StringList || spec->type == KeyType::IntList ||
                   spec->type == KeyType::FloatList;
    RHEAD_CHECK(e.raw.empty() || is_list, ConfigError, "[config] ", at, ": key '", key,
                "' is given more than once; expected a single ", key_type_name(spec->type),
                ". Hint: remove the duplicate line");
    if (e.raw.empty()) {
      cfg.m_order.push_back(key);
      e.line = line;
    }
    e.spec = spec;
    for (const auto& v : opt.value) e.raw.push_back(v);
    e.explicit_value = true;
  }

  for (const auto& ov : overrides) {
    auto eq = ov.find('=');
    RHEAD_CHECK(eq != std::string::npos, ConfigError, "[config] --set '", ov,
                "': expected section.key=value");
    std::string key = trim(ov.substr(0, eq));
    const KeySpec* spec = cfg.m_schema.find(key);
    if (!spec) {
      std::vector<std::string> candidates;
      for (const auto& n : all_names) candidates.push_back(instantiate_like(n, key));
      std::string hint = nearest_name(key, candidates);
      throw ConfigError(str_cat("[config] --set ", key, ": unknown key for the ", schema.file_kind(),
                                hint.empty() ? "" : ". Hint: did you mean '" + hint + "'?"));
    }
    auto& e = cfg.m_entries[key];
    if (e.raw.empty()) cfg.m_order.push_back(key);
    e.spec = spec;
    e.raw = {ov.substr(eq + 1)};
    e.line = 0;
    e.explicit_value = true;
  }

  // Type-check every explicit value now, so errors surface at load time, not at first use.
  for (const auto& [key, e] : cfg.m_entries) {
    switch (e.spec->type) {
      case KeyType::String: cfg.get_string(key); break;
      case KeyType::Int: cfg.get_int(key); break;
      case KeyType::Float: cfg.get_float(key); break;
      case KeyType::Bool: cfg.get_bool(key); break;
      case KeyType::StringList: cfg.get_strings(key); break;
      case KeyType::IntList: cfg.get_ints(key); break;
      case KeyType::FloatList: cfg.get_floats(key); break;
    }
  }

  // Required keys: plain ones must be present; "*" ones in every concrete section that exists.
  std::set<std::string> sections;
  for (const auto& key : cfg.m_order) sections.insert(section_of(key));
  for (const auto& spec : cfg.m_schema.keys()) {
    if (spec.default_text) continue;
    if (spec.name.find('*') == std::string::npos) {
      RHEAD_CHECK(cfg.m_entries.count(spec.name), ConfigError, "[config] ", source_name,
                  ": missing required key '", spec.name.substr(section_of(spec.name).size() + 1),
                  "' in section [", section_of(spec.name), "] (", spec.help, ")");
      continue;
    }
    std::string spec_section = section_of(spec.name);
    for (const auto& s : sections) {
      if (!pattern_matches(spec_section, s)) continue;
      std::string concrete = s + spec.name.substr(spec_section.size());
      RHEAD_CHECK(cfg.m_entries.count(concrete), ConfigError, "[config] ", source_name,
                  ": missing required key '", concrete.substr(s.size() + 1), "' in section [", s,
                  "] (", spec.help, ")");
    }
  }
  return cfg;
}

bool Config::has(const std::string& key) const {
  if (m_entries.count(key)) return true;
  const KeySpec* spec = m_schema.find(key);
  return spec && spec->default_text.has_value();
}

bool Config::is_set_explicitly(const std::string& key) const {
  auto it = m_entries.find(key);
  return it != m_entries.end() && it->second.explicit_value;
}

const Config::Entry& Config::entry(const std::string& key, KeyType expected) const {
  const KeySpec* spec = m_schema.find(key);
  RHEAD_CHECK(spec, InternalError, "[config] ", m_source, ": code asked for undeclared key '", key,
              "' (bug: declare it in the schema)");
  RHEAD_CHECK(spec->type == expected, InternalError, "[config] key '", key, "' is declared as ",
              key_type_name(spec->type), " but read as ", key_type_name(expected), " (bug)");
  auto it = m_entries.find(key);
  if (it != m_entries.end()) return it->second;
  RHEAD_CHECK(spec->default_text, ConfigError, "[config] ", m_source, ": missing required key '", key,
              "' (", spec->help, ")");
  // Cache the default as an entry (logically const: defaults never change).
  auto& self = const_cast<Config&>(*this);
  auto& e = self.m_entries[key];
  e.spec = spec;
  e.raw = {*spec->default_text};
  return e;
}

std::string Config::where(const std::string& key, const Entry& e) const {
  std::string section = section_of(key);
  std::string origin = e.explicit_value ? (e.line ? m_source + ":" + std::to_string(e.line) : m_source)
                                        : m_source + " (default)";
  return str_cat(origin, ": [", section, "] ", key.substr(section.empty() ? 0 : section.size() + 1));
}

std::string Config::get_string(const std::string& key) const {
  const auto& e = entry(key, KeyType::String);
  return decode_string(e.raw.front());
}

int64_t Config::get_int(const std::string& key) const {
  const auto& e = entry(key, KeyType::Int);
  int64_t v;
  RHEAD_CHECK(parse_int(e.raw.front(), &v), ConfigError, "[config] ", where(key, e), ": got '",
              trim(e.raw.front()), "', expected an integer");
  return v;
}

double Config::get_float(const std::string& key) const {
  const auto& e = entry(key, KeyType::Float);
  double v;
  RHEAD_CHECK(parse_float(e.raw.front(), &v), ConfigError, "[config] ", where(key, e), ": got '",
              trim(e.raw.front()), "', expected a number");
  return v;
}

bool Config::get_bool(const std::string& key) const {
  const auto& e = entry(key, KeyType::Bool);
  bool v;
  RHEAD_CHECK(parse_bool(e.raw.front(), &v), ConfigError, "[config] ", where(key, e), ": got '",
              trim(e.raw.front()), "', expected true or false");
  return v;
}

std::vector<std::string> Config::get_strings(const std::string& key) const {
  const auto& e = entry(key, KeyType::StringList);
  std::vector<std::string> out;
  for (const auto& raw : e.raw) {
    for (const auto& item : split_list(raw)) out.push_back(decode_string(item));
  }
  return out;
}

std::vector<int64_t> Config::get_ints(const std::string& key) const {
  const auto& e = entry(key, KeyType::IntList);
  std::vector<int64_t> out;
  for (const auto& raw : e.raw) {
    for (const auto& item : split_list(raw)) {
      std::vector<double> values;
      std::string reason;
      RHEAD_CHECK(expand_numeric_item(item, true, &values, &reason), ConfigError, "[config] ",
                  where(key, e), ": ", reason, "; expected a list of integers like '1, 2, 3' or "
                  "'linspace(1000, 50000, 20)'");
      for (double v : values) out.push_back(static_cast<int64_t>(v));
    }
  }
  return out;
}

std::vector<double> Config::get_floats(const std::string& key) const {
  const auto& e = entry(key, KeyType::FloatList);
  std::vector<double> out;
  for (const auto& raw : e.raw) {
    for (const auto& item : split_list(raw)) {
      std::string reason;
      RHEAD_CHECK(expand_numeric_item(item, false, &out, &reason), ConfigError, "[config] ",
                  where(key, e), ": ", reason, "; expected a list of numbers like '0.5, 1' or "
                  "'linspace(0, 100, 10)'");
    }
  }
  return out;
}

std::vector<std::string> Config::section_names(const std::string& pattern) const {
  std::vector<std::string> out;
  auto star = pattern.find('*');
  RHEAD_CHECK(star != std::string::npos, InternalError, "section_names: pattern '", pattern, "' has no '*'");
  for (const auto& key : m_order) {
    std::string section = section_of(key);
    if (!pattern_matches(pattern, section)) continue;
    std::string name = split_dots(section)[split_dots(pattern.substr(0, star)).size() - 1];
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
  }
  return out;
}

std::string Config::resolved_text(const std::vector<KeySpec>& specs) const {
  auto number = [](double v) {
    std::ostringstream o;
    o << std::setprecision(17) << v;
    return o.str();
  };
  auto value_text = [&](const std::string& key, KeyType type) -> std::string {
    std::string out;
    auto list = [&out](const std::string& item) { out += (out.empty() ? "" : ", ") + item; };
    switch (type) {
      case KeyType::String: return get_string(key);
      case KeyType::Int: return std::to_string(get_int(key));
      case KeyType::Float: return number(get_float(key));
      case KeyType::Bool: return get_bool(key) ? "true" : "false";
      case KeyType::StringList: for (const auto& v : get_strings(key)) list(v); return out;
      case KeyType::IntList: for (auto v : get_ints(key)) list(std::to_string(v)); return out;
      case KeyType::FloatList: for (auto v : get_floats(key)) list(number(v)); return out;
    }
    return out;
  };
  std::map<std::string, std::string> lines;  // sorted by key
  for (const auto& spec : specs) {
    if (spec.tuning) continue;
    if (spec.name.find('*') == std::string::npos) {
      if (has(spec.name)) lines[spec.name] = value_text(spec.name, spec.type);
      continue;
    }
    const std::string spec_section = section_of(spec.name);
    for (const auto& key : m_order) {
      const std::string section = section_of(key);
      if (!pattern_matches(spec_section, section)) continue;
      const std::string concrete = section + spec.name.substr(spec_section.size());
      if (has(concrete)) lines[concrete] = value_text(concrete, spec.type);
    }
  }
  std::string out;
  for (const auto& [key, value] : lines) {
    out += key + " = ";
    for (char ch : value) {  // one line per key: escape newlines (and so backslashes)
      if (ch == '\n') {
        out += "\\n";
      } else if (ch == '\\') {
        out += "\\\\";
      } else {
        out += ch;
      }
    }
    out += "\n";
  }
  return out;
}

namespace {

// "key = value" lines of a settings text (Config::resolved_text), by key.
std::map<std::string, std::string> parse_settings(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    auto eq = line.find(" = ");
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 3);
  }
  return out;
}

}  // namespace

std::string settings_difference(const std::string& before, const std::string& now) {
  const auto a = parse_settings(before), b = parse_settings(now);
  std::set<std::string> keys;
  for (const auto& [k, v] : a) keys.insert(k);
  for (const auto& [k, v] : b) keys.insert(k);
  std::vector<std::string> changes;
  for (const auto& key : keys) {
    auto ia = a.find(key), ib = b.find(key);
    if (ia != a.end() && ib != b.end() && ia->second == ib->second) continue;
    const std::string section = section_of(key);
    const std::string name = "[" + section + "] " + key.substr(section.size() + 1);
    if (ia == a.end()) {
      changes.push_back(name + " = " + ib->second + " (new)");
    } else if (ib == b.end()) {
      changes.push_back(name + " (gone; was " + ia->second + ")");
    } else {
      changes.push_back(name + ": " + ia->second + " -> " + ib->second);
    }
  }
  std::string out;
  for (size_t i = 0; i < changes.size() && i < 4; ++i) out += (i ? "; " : "") + changes[i];
  if (changes.size() > 4) out += str_cat("; and ", changes.size() - 4, " more");
  return out;
}

std::string settings_change(const std::string& before, const std::string& now, const Config& job) {
  const auto old_keys = parse_settings(before);
  std::string comparable;  // `now` without the keys added since and left at their defaults
  std::istringstream in(now);
  for (std::string line; std::getline(in, line);) {
    const std::string key = line.substr(0, line.find(" = "));
    if (!old_keys.count(key) && job.has(key) && !job.is_set_explicitly(key)) continue;
    comparable += line + "\n";
  }
  return settings_difference(before, comparable);
}

}  // namespace pipeline
