// Port of nltk/stem/porter.py (NLTK 3.8, mode NLTK_EXTENSIONS). Function names follow the Python
// methods (_step1a ... _step5b) so the two can be read side by side; rule order matters and is kept.
#include "stages/niah/porter_stemmer.h"

#include <array>
#include <utility>

namespace stages {
namespace {

using Cond = bool (*)(const std::string& stem, const std::string& word);

bool ends_with(const std::string& word, std::string_view suffix) {
  return word.size() >= suffix.size() &&
         std::string_view(word).substr(word.size() - suffix.size()) == suffix;
}

// word[i] is a consonant: not a/e/i/o/u, and 'y' only when at 0 or after a vowel (Porter's definition).
bool is_consonant(const std::string& word, size_t i) {
  const char c = word[i];
  if (c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u') return false;
  if (c != 'y') return true;
  // 'y' is a consonant at the start, otherwise iff the previous letter is a vowel.
  return i == 0 || !is_consonant(word, i - 1);
}

// m in [C](VC){m}[V]: number of vowel->consonant transitions.
int measure(const std::string& stem) {
  int m = 0;
  bool prev_vowel = false;
  for (size_t i = 0; i < stem.size(); ++i) {
    const bool cons = is_consonant(stem, i);
    if (cons && prev_vowel) ++m;
    prev_vowel = !cons;
  }
  return m;
}

bool contains_vowel(const std::string& stem) {
  for (size_t i = 0; i < stem.size(); ++i) {
    if (!is_consonant(stem, i)) return true;
  }
  return false;
}

// *d: ends with a double consonant.
bool ends_double_consonant(const std::string& word) {
  const size_t n = word.size();
  return n >= 2 && word[n - 1] == word[n - 2] && is_consonant(word, n - 1);
}

// *o: ends consonant-vowel-consonant with the last not w/x/y; NLTK also accepts a 2-letter vowel-consonant word.
bool ends_cvc(const std::string& word) {
  const size_t n = word.size();
  if (n >= 3 && is_consonant(word, n - 3) && !is_consonant(word, n - 2) && is_consonant(word, n - 1) &&
      word[n - 1] != 'w' && word[n - 1] != 'x' && word[n - 1] != 'y') {
    return true;
  }
  return n == 2 && !is_consonant(word, 0) && is_consonant(word, 1);
}

std::string drop(const std::string& word, size_t n) { return word.substr(0, word.size() - n); }

bool positive_measure(const std::string& stem, const std::string&) { return measure(stem) > 0; }
bool measure_gt_1(const std::string& stem, const std::string&) { return measure(stem) > 1; }

struct Rule {
  std::string_view suffix;
  std::string_view replacement;
  Cond condition;  // nullptr: unconditional
};

// _apply_rule_list for plain suffix rules: the first rule whose suffix matches decides (applied or not).
template <size_t N>
std::string apply_rules(const std::string& word, const std::array<Rule, N>& rules) {
  for (const Rule& rule : rules) {
    if (!ends_with(word, rule.suffix)) continue;
    std::string stem = drop(word, rule.suffix.size());
    if (rule.condition == nullptr || rule.condition(stem, word)) return stem.append(rule.replacement);
    return word;
  }
  return word;
}

std::string step1a(const std::string& word) {
  if (ends_with(word, "ies") && word.size() == 4) return drop(word, 3) + "ie";
  static const std::array<Rule, 4> rules = {{
      {"sses", "ss", nullptr},
      {"ies", "i", nullptr},
      {"ss", "ss", nullptr},
      {"s", "", nullptr},
  }};
  return apply_rules(word, rules);
}

std::string step1b(const std::string& word) {
  if (ends_with(word, "ied")) return drop(word, 3) + (word.size() == 4 ? "ie" : "i");
  if (ends_with(word, "eed")) {
    const std::string stem = drop(word, 3);
    return measure(stem) > 0 ? stem + "ee" : word;
  }
  std::string stem;
  bool rule_2_or_3 = false;
  for (std::string_view suffix : {std::string_view("ed"), std::string_view("ing")}) {
    if (ends_with(word, suffix)) {
      stem = drop(word, suffix.size());
      if (contains_vowel(stem)) {
        rule_2_or_3 = true;
        break;
      }
    }
  }
  if (!rule_2_or_3) return word;
  // Rule list applied to the intermediate stem: at/bl/iz, then *d, then the unconditional-suffix (m=1 and *o) rule.
  if (ends_with(stem, "at")) return stem + "e";
  if (ends_with(stem, "bl")) return stem + "e";
  if (ends_with(stem, "iz")) return stem + "e";
  if (ends_double_consonant(stem)) {
    const char last = stem.back();
    if (last != 'l' && last != 's' && last != 'z') return drop(stem, 2) + last;
    return stem;
  }
  if (measure(stem) == 1 && ends_cvc(stem)) return stem + "e";
  return stem;
}

std::string step1c(const std::string& word) {
  // NLTK condition: (*c and not c) Y -> I, i.e. the letter before 'y' is a consonant and is not the whole stem.
  if (!ends_with(word, "y")) return word;
  const std::string stem = drop(word, 1);
  if (stem.size() > 1 && is_consonant(stem, stem.size() - 1)) return stem + "i";
  return word;
}

std::string step2(const std::string& word) {
  if (ends_with(word, "alli") && measure(drop(word, 4)) > 0) return step2(drop(word, 4) + "al");
  static const std::array<Rule, 22> rules = {{
      {"ational", "ate", positive_measure},
      {"tional", "tion", positive_measure},
      {"enci", "ence", positive_measure},
      {"anci", "ance", positive_measure},
      {"izer", "ize", positive_measure},
      {"bli", "ble", positive_measure},
      {"alli", "al", positive_measure},
      {"entli", "ent", positive_measure},
      {"eli", "e", positive_measure},
      {"ousli", "ous", positive_measure},
      {"ization", "ize", positive_measure},
      {"ation", "ate", positive_measure},
      {"ator", "ate", positive_measure},
      {"alism", "al", positive_measure},
      {"iveness", "ive", positive_measure},
      {"fulness", "ful", positive_measure},
      {"ousness", "ous", positive_measure},
      {"aliti", "al", positive_measure},
      {"iviti", "ive", positive_measure},
      {"biliti", "ble", positive_measure},
      {"fulli", "ful", positive_measure},
      // 'logi' -> 'log' keeps the 'l' with the stem: the measure is taken on word[:-3].
      {"logi", "log", [](const std::string&, const std::string& w) { return measure(drop(w, 3)) > 0; }},
  }};
  return apply_rules(word, rules);
}

std::string step3(const std::string& word) {
  static const std::array<Rule, 7> rules = {{
      {"icate", "ic", positive_measure},
      {"ative", "", positive_measure},
      {"alize", "al", positive_measure},
      {"iciti", "ic", positive_measure},
      {"ical", "ic", positive_measure},
      {"ful", "", positive_measure},
      {"ness", "", positive_measure},
  }};
  return apply_rules(word, rules);
}

std::string step4(const std::string& word) {
  static const std::array<Rule, 19> rules = {{
      {"al", "", measure_gt_1},
      {"ance", "", measure_gt_1},
      {"ence", "", measure_gt_1},
      {"er", "", measure_gt_1},
      {"ic", "", measure_gt_1},
      {"able", "", measure_gt_1},
      {"ible", "", measure_gt_1},
      {"ant", "", measure_gt_1},
      {"ement", "", measure_gt_1},
      {"ment", "", measure_gt_1},
      {"ent", "", measure_gt_1},
      {"ion", "",
       [](const std::string& s, const std::string&) {
         return measure(s) > 1 && (s.back() == 's' || s.back() == 't');
       }},
      {"ou", "", measure_gt_1},
      {"ism", "", measure_gt_1},
      {"ate", "", measure_gt_1},
      {"iti", "", measure_gt_1},
      {"ous", "", measure_gt_1},
      {"ive", "", measure_gt_1},
      {"ize", "", measure_gt_1},
  }};
  return apply_rules(word, rules);
}

std::string step5a(const std::string& word) {
  // Both rules are tried (unlike _apply_rule_list): (m>1) E -> ; (m=1 and not *o) E -> .
  if (!ends_with(word, "e")) return word;
  const std::string stem = drop(word, 1);
  const int m = measure(stem);
  if (m > 1) return stem;
  if (m == 1 && !ends_cvc(stem)) return stem;
  return word;
}

std::string step5b(const std::string& word) {
  // (m > 1 and *d and *L) -> single letter; NLTK measures word[:-1].
  if (ends_with(word, "ll") && measure(drop(word, 1)) > 1) return drop(word, 1);
  return word;
}

// NLTK's irregular-forms pool: word -> stem, checked before any rule.
const std::string* irregular_form(const std::string& word) {
  static const std::array<std::pair<std::string, std::string>, 16> pool = {{
      {"sky", "sky"},
      {"skies", "sky"},
      {"dying", "die"},
      {"lying", "lie"},
      {"tying", "tie"},
      {"news", "news"},
      {"innings", "inning"},
      {"inning", "inning"},
      {"outings", "outing"},
      {"outing", "outing"},
      {"cannings", "canning"},
      {"canning", "canning"},
      {"howe", "howe"},
      {"proceed", "proceed"},
      {"exceed", "exceed"},
      {"succeed", "succeed"},
  }};
  for (const auto& entry : pool) {
    if (entry.first == word) return &entry.second;
  }
  return nullptr;
}

}  // namespace

std::string porter_stem(std::string_view word) {
  std::string stem(word);
  for (char& c : stem) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  // NLTK looks the *original* word up in the pool; identical here for lower-case input, which is
  // all rouge_score ever passes. For mixed case NLTK checks `word in pool` (case-sensitive) first.
  if (const std::string* irregular = irregular_form(std::string(word))) return *irregular;
  if (word.size() <= 2) return stem;
  stem = step1a(stem);
  stem = step1b(stem);
  stem = step1c(stem);
  stem = step2(stem);
  stem = step3(stem);
  stem = step4(stem);
  stem = step5a(stem);
  stem = step5b(stem);
  return stem;
}

}  // namespace stages
