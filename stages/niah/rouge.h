// ROUGE-N exactly as Google's rouge_score package (rouge_scorer.RougeScorer([...], use_stemmer)),
// which the official detection script uses for its success filter (docs/PAPER_NOTES.md, "ROUGE-1 recall"):
//   tokenize: lower-case (Python str.lower), every run of characters outside [a-z0-9] -> one space,
//             split on whitespace, Porter-stem (NLTK_EXTENSIONS) tokens longer than 3 characters,
//             keep tokens matching ^[a-z0-9]+$;
//   score:    clipped n-gram overlap = sum over reference n-grams of min(count_ref, count_hyp);
//             recall = overlap / max(#ref n-grams, 1), precision = overlap / max(#hyp n-grams, 1),
//             F = 2PR / (P + R) (0 when P + R == 0).
// Text is UTF-8. Python lower-cases non-ASCII letters too, but only two code points lower-case into
// [a-z0-9]: U+0130 'İ' -> "i" + U+0307 and U+212A KELVIN SIGN -> "k"; both are mapped here; every other
// non-ASCII character (and any invalid UTF-8 byte) becomes a separator, as in rouge_score.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace stages {

struct RougeScore {
  double precision = 0.0;  // in [0, 1]
  double recall = 0.0;     // in [0, 1]
  double fmeasure = 0.0;   // in [0, 1]
};

// UTF-8 text -> rouge_score tokens (stemmed when use_stemmer, as tokenize.tokenize(text, PorterStemmer())).
std::vector<std::string> rouge_tokenize(std::string_view text, bool use_stemmer = true);

// (reference = target, hypothesis = prediction) -> ROUGE-n P/R/F as RougeScorer(['rouge<n>']).score(target, prediction).
// Throws pipeline::InputError for n < 1.
RougeScore rouge_n(std::string_view reference, std::string_view hypothesis, int n = 1, bool use_stemmer = true);

// Token lists -> ROUGE-n P/R/F (the scoring half of rouge_n, for pre-tokenized text).
RougeScore rouge_n_tokens(const std::vector<std::string>& reference, const std::vector<std::string>& hypothesis,
                          int n = 1);

// (answer span, stripped response) -> NIAH score = ROUGE-1 recall * 100 with stemming, in [0, 100]
// (docs/PAPER_NOTES.md, "ROUGE-1 recall").
double niah_rouge1_recall(std::string_view reference, std::string_view response);

}  // namespace stages
