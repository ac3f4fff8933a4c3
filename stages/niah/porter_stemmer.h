// Porter stemmer, a C++ port of NLTK's nltk.stem.porter.PorterStemmer in its default mode
// (NLTK_EXTENSIONS, as checked against NLTK 3.8), which is what rouge_score instantiates for
// use_stemmer=True. Faithful to NLTK including its extensions: the irregular-forms table
// (sky/skies, dying, lying, tying, news, innings, outings, cannings, howe, proceed, exceed,
// succeed), words of length <= 2 returned unchanged, 'ies'/'ied' on 4-letter words -> 'ie',
// other 'ied' -> 'i', step-1c "(*c and not c) Y -> I", 2-letter *o, 'alli' applied first and
// re-run through step 2, 'bli' -> 'ble', 'fulli' -> 'ful', and the 'logi' -> 'log' rule.
// Pure function: no state, no IO.
#pragma once

#include <string>
#include <string_view>

namespace stages {

// word -> stem, equal to PorterStemmer().stem(word) for ASCII input. ASCII upper case is lower-cased
// first (NLTK lower-cases with Python str.lower(); non-ASCII bytes are passed through untouched).
std::string porter_stem(std::string_view word);

}  // namespace stages
