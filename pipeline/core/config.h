// Declared, typed INI configuration (job files, model-family files) on Boost.Program_options.
//
// Every key is declared with its type, default and help text. Parsing rejects, naming the file,
// section, key and line: unknown keys (suggesting the nearest declared key), values of the wrong
// type, and missing required keys. Sections are dotted: "[model.base]" + "path = x" is key
// "model.base.path"; a schema key may use "*" for one dotted segment ("model.*.path").
//
// Values:
//   strings   surrounding double quotes are stripped; escapes \n \t \\ \" are decoded
//   bools     true/false, yes/no, on/off, 1/0
//   lists     comma-separated ("a, b, c") and/or the key repeated on several lines;
//             numeric lists also accept linspace(start, stop, num) (ints rounded half-to-even,
//             as numpy's round) and range(start, stop[, step]) (stop excluded)
// Overrides ("section.key=value", from --set) replace the file's value after parsing.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace pipeline {

enum class KeyType { String, Int, Float, Bool, StringList, IntList, FloatList };

const char* key_type_name(KeyType type);

struct KeySpec {
  std::string name;                         // "section.key", maybe with "*" segments
  KeyType type = KeyType::String;
  std::string help;
  std::optional<std::string> default_text;  // nullopt: required
  bool tuning = false;  // changes how fast or how verbosely a stage runs, never what it computes
};

class ConfigSchema {
 public:
  explicit ConfigSchema(std::string file_kind);  // "job file", "family file": used in messages

  ConfigSchema& required(const std::string& key, KeyType type, const std::string& help);
  ConfigSchema& optional(const std::string& key, KeyType type, const std::string& default_text,
                         const std::string& help);

  // Adds a spec as is (no-op when a key of exactly that name is already declared).
  ConfigSchema& add(const KeySpec& spec);
  // Marks a declared key as a tuning knob (KeySpec::tuning): left out of Config::resolved_text, so
  // changing it neither reruns a finished stage nor discards an interrupted one's cells.
  ConfigSchema& tuning(const std::string& key);

  const std::vector<KeySpec>& keys() const { return m_keys; }
  const std::string& file_kind() const { return m_file_kind; }
  // The spec a concrete key matches ("model.base.path" matches "model.*.path"), or nullptr.
  const KeySpec* find(const std::string& key) const;
  // Human-readable listing for --help: one block per section.
  std::string describe() const;

 private:
  std::string m_file_kind;
  std::vector<KeySpec> m_keys;
};

class Config {
 public:
  static Config parse_file(const ConfigSchema& schema, const std::filesystem::path& path,
                           const std::vector<std::string>& overrides = {});
  static Config parse_text(const ConfigSchema& schema, const std::string& text,
                           const std::string& source_name,
                           const std::vector<std::string>& overrides = {});

  // True when the key was set in the file/overrides or has a default.
  bool has(const std::string& key) const;
  bool is_set_explicitly(const std::string& key) const;

  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::vector<std::string> get_strings(const std::string& key) const;
  std::vector<int64_t> get_ints(const std::string& key) const;
  std::vector<double> get_floats(const std::string& key) const;

  // Names of the concrete sections matching a pattern with one "*":
  // section_names("model.*") -> {"base", "chat"} for [model.base] and [model.chat], in file order.
  std::vector<std::string> section_names(const std::string& pattern) const;

  // The value of every key the specs declare (tuning keys excepted), typed and printed canonically:
  // one "section.key = value" line per key, sorted ("*" specs: that key of every matching section in
  // the file). Defaults are included, so "lengths = 64,96", "lengths = 64, 96" and a default of the
  // same value give the same text: what the runner records to tell whether a stage's settings changed
  // since its store was made.
  std::string resolved_text(const std::vector<KeySpec>& specs) const;

  const std::string& source() const { return m_source; }  // file path or source name
  const std::string& text() const { return m_text; }      // full file text (stamped into stores)

 private:
  struct Entry {
    const KeySpec* spec = nullptr;
    std::vector<std::string> raw;  // one element per occurrence (lists may repeat the key)
    int line = 0;                  // first occurrence, 0 for defaults and overrides
    bool explicit_value = false;
  };
  const Entry& entry(const std::string& key, KeyType expected) const;
  std::string where(const std::string& key, const Entry& e) const;

  ConfigSchema m_schema{""};
  std::string m_source;
  std::string m_text;
  std::map<std::string, Entry> m_entries;
  std::vector<std::string> m_order;  // concrete keys in file order
};

// What differs between two Config::resolved_text outputs, for messages, "" when they are equal:
// "[generate] lengths: 64, 96, 128 -> 64, 128; [model.chat] path = zoo/chat (new)" (at most 4 keys
// named, then a count).
std::string settings_difference(const std::string& before, const std::string& now);

// What changed from recorded settings `before` to `now` (the settings of `job`), as settings_difference
// says it, "" when nothing did. A key that `before` lacks and that `job` leaves at its default is no
// change: a key added to rhead after `before` was recorded, at the default that keeps the old behaviour.
std::string settings_change(const std::string& before, const std::string& now, const Config& job);

// Nearest candidate by edit distance, for "did you mean" hints; empty when nothing is close.
std::string nearest_name(const std::string& name, const std::vector<std::string>& candidates);

// numpy.round(numpy.linspace(start, stop, num)) as integers (half-to-even), and the float version.
std::vector<int64_t> linspace_rounded(double start, double stop, int64_t num);
std::vector<double> linspace(double start, double stop, int64_t num);

}  // namespace pipeline
