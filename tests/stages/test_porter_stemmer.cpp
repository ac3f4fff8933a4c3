// Porter stemmer against NLTK itself: the expected stems are produced at test time by the system
// Python's nltk.stem.porter.PorterStemmer() (default NLTK_EXTENSIONS mode, as rouge_score uses it).
#include <gtest/gtest.h>

#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "stages/niah/porter_stemmer.h"
#include "tests/common/test_support.h"

namespace {

// Words of the needles (docs/PAPER_NOTES.md, "The NIAH grid"), common English, and every suffix rule of every step.
const char* const kWords[] = {
    // needles and answers
    "report", "records", "were", "once", "again", "broken", "cases", "smashed", "greenhouse", "levels", "surface",
    "temperatures", "ocean", "heat", "acidification", "best", "thing", "beijing", "take", "walk", "chaoyang", "park",
    "have", "espresso", "evening", "green", "disliked", "everyone", "because", "mean", "person", "also", "ride",
    "horse", "dive", "car", "francisco", "sandwich", "sandwiches", "dolores", "sunny", "day", "answer", "question",
    "content", "book", "based", "dislikes", "shows", "smashing", "acidified",
    // step 1a
    "caresses", "ponies", "ties", "caress", "cats", "dies", "flies", "lies", "skies", "sky", "news", "gas", "this",
    "bus", "glasses", "princesses", "series", "species", "analysis",
    // step 1b
    "feed", "agreed", "plastered", "bled", "motoring", "sing", "conflated", "troubled", "sized", "hopping", "tanned",
    "falling", "hissing", "fizzed", "failing", "filing", "died", "spied", "tied", "cried", "dying", "lying", "tying",
    "proceed", "exceed", "succeed", "exceeding", "proceeding", "innings", "inning", "outings", "canning", "howe",
    "bleed", "speed", "needed", "hoped", "hopped", "rated", "rating", "controlling", "bowling", "coming", "being",
    "seeing", "eating", "sitting", "walking", "having", "riding", "diving", "stopped", "planned", "ed", "ing", "ding",
    "bing", "hing", "sled", "shed",
    // step 1c
    "happy", "enjoy", "spy", "fly", "try", "say", "boy", "by", "toy", "syzygy", "annoy", "cry", "sly", "yyy",
    // step 2
    "relational", "conditional", "rational", "valenci", "hesitanci", "digitizer", "conformabli", "radicalli",
    "differentli", "vileli", "analogousli", "vietnamization", "predication", "operator", "feudalism", "decisiveness",
    "hopefulness", "callousness", "formaliti", "sensitiviti", "sensibiliti", "hopefully", "gratefully", "geology",
    "theology", "archaeology", "philology", "biology", "logically", "musically", "terrifically", "traditionally",
    "generously", "responsibly", "probably", "possibly", "sensibly", "tragically", "ecology", "analogy", "ology",
    "eli", "bli", "alli", "logi",
    // step 3
    "triplicate", "formative", "formalize", "electriciti", "electrical", "hopeful", "goodness", "authenticate",
    "communicative", "realize", "historical", "painful", "darkness", "kindness",
    // step 4
    "revival", "allowance", "inference", "airliner", "gyroscopic", "adjustable", "defensible", "irritant",
    "replacement", "adjustment", "dependent", "adoption", "homologou", "communism", "activate", "angulariti",
    "homologous", "effective", "bowdlerize", "television", "vision", "nation", "decision", "position", "station",
    "location", "million", "onion",
    // step 5
    "probate", "rate", "cease", "controll", "roll", "generalization", "oscillators", "oscillating", "fully",
    "generous", "generate", "generation", "general",
    // assorted vocabulary
    "running", "runner", "ran", "argument", "arguments", "university", "universal", "universe", "organization",
    "organizing", "organ", "happiness", "unhappiness", "national", "nationality", "nationalism", "international",
    "abilities", "ability", "capability", "reliability", "responsibility", "possibility", "sensitivity", "activity",
    "connection", "connected", "connecting", "connections", "connective", "computer", "computing", "computation",
    "computational", "computed", "retrieval", "retrieve", "retrieved", "retrieving", "attention", "attentive",
    "heads", "header", "heading", "context", "contextual", "factuality", "factual", "mechanistically",
    "mechanism", "mechanical", "explains", "explanation", "explanatory", "long", "longer", "longest", "language",
    "languages", "model", "models", "modeling", "modelling", "needle", "needles", "haystack", "haystacks",
    "copying", "copied", "copies", "paste", "pasted", "pasting", "masking", "masked", "masks", "random", "randomly",
    "sparse", "sparsity", "universality", "intrinsic", "intrinsically", "dynamically", "dynamic", "causal",
    "causality", "hallucination", "hallucinate", "hallucinating", "extraction", "extracting", "extracted",
    "incomplete", "incompletely", "completion", "completely", "important", "importance", "importantly",
    "relevance", "relevant", "irrelevant", "beautiful", "beautifully", "beauty", "agreement", "agreeable",
    "disagreement", "encouragement", "government", "governmental", "establishment", "establishing", "knowledge",
    "knowledgeable", "acknowledgement", "friendship", "friendliness", "friendly", "friends", "quickly", "quick",
    "quickness", "slowly", "slow", "wonderful", "wonderfully", "wondering", "wandered", "wonder", "children",
    "childhood", "childish", "women", "woman", "men", "people", "peoples", "crisis", "crises", "thesis", "theses",
    "analyses", "phenomenon", "phenomena", "criterion", "criteria", "data", "datum", "indices", "index",
    "matrices", "matrix", "vertex", "vertices", "boxes", "foxes", "wolves", "knives", "lives", "leaves", "leaving",
    "believe", "belief", "believing", "receive", "receipt", "received", "deceive", "deception", "perceive",
    "perception", "perceptive", "conceive", "conception", "conceptual", "consider", "considerable", "considerably",
    "consideration", "considering", "considerate", "temperature", "temperate", "temper", "acid", "acidic",
    "acidity", "ocean", "oceanic", "oceanography", "broke", "break", "breaking", "breakable", "smash", "smashes",
    "smasher", "record", "recording", "recorder", "recorded", "level", "levelled", "leveling", "surfaces",
    "surfaced", "surfacing", "espressos", "evenings", "disliking", "dislike", "mr", "mrs", "can", "cannot",
    "riding", "rider", "horses", "horseback", "diving", "diver", "divers", "cars", "carry", "carried", "carrying",
    "carries", "sunnier", "sunniest", "sunshine", "days", "daily", "sitting", "sat", "sits", "eaten", "eats",
    "ate", "and", "the", "is", "a", "in", "on", "of", "to", "xyz", "aaaa", "yyyy", "ssss", "eeee", "ieee", "abc123",
    "2023s", "covid19", "mp3s", "gpt4", "x86", "llama", "llamas", "mistral", "mixtral", "qwen", "yi",
    "transformers", "transformer", "transforming", "tokenizer", "tokenization", "tokenized", "tokens",
    "generatively", "generativity", "relativity", "relatively", "relativism", "deactivation", "reactivation",
    "radically", "criticism", "critically", "criticize", "criticizing", "specifically", "specification",
    "specifying", "specified", "specifies", "identifies", "identified", "identification", "classified",
    "classification", "classifying", "justified", "justification", "modified", "modification", "simplified",
    "simplification", "clarified", "clarification", "verifies", "verifiable", "verification", "notably",
    "remarkably", "inevitably", "comfortably", "unbelievably", "fallibility", "feasibility", "visibility",
    "invisibility", "flexibility", "credibility", "hyperbolically", "ironically", "economically", "dramatically",
    "democratically", "automatically", "alliance", "allied", "ally", "tally", "rally", "sally", "finally",
    "totally", "really", "actually", "usually", "generally", "especially", "naturally", "originally", "virtually",
    "mutually", "globally", "locally", "morally", "formally", "normally", "fatally", "gradually", "individually",
    "manually", "annually", "casually", "visually", "eventually", "intellectually", "sexually", "spiritually",
    "textually", "contextually", "conceptually", "sly", "shyly", "dryly", "coyly", "fulli", "skillfully",
    "dutifully", "beautifulli", "eerily", "happily", "angrily", "busily", "easily", "heavily", "luckily",
    "necessarily", "ordinarily", "temporarily", "voluntarily",
};

}  // namespace

TEST(PorterStemmer, MatchesNltkOnWordList) {
  // Extra words: every base x suffix combination, so each rule of every step is hit from several stems.
  std::vector<std::string> words(std::begin(kWords), std::end(kWords));
  const char* const bases[] = {"form", "relat", "condit", "agre", "hop", "fil", "happ", "sens", "gener", "nat",
                               "organ", "digit", "control", "trip", "valu", "stabl", "feed", "ceas", "tan", "fizz"};
  const char* const suffixes[] = {"",      "s",    "es",     "ies",   "ed",    "ied",  "ing",   "ly",    "ness",
                                  "ation", "ational", "izer", "alli", "entli", "ousli", "fulli", "logi", "bli",
                                  "eli",   "ement", "iviti", "biliti", "icate", "ative", "alize", "ical",  "ful",
                                  "ance",  "ence",  "able",  "ible",  "ism",   "ous",   "ive",   "ize",   "ion",
                                  "ll",    "e",     "y"};
  for (const char* base : bases) {
    for (const char* suffix : suffixes) words.push_back(std::string(base) + suffix);
  }

  test_support::TempDir dir("porter");
  std::ostringstream list;
  for (const auto& w : words) list << w << "\n";
  test_support::write_text_file(dir.path() / "words.txt", list.str());
  test_support::write_text_file(dir.path() / "stem.py",
                                "import sys\n"
                                "from nltk.stem.porter import PorterStemmer\n"
                                "p = PorterStemmer()\n"
                                "for w in open(sys.argv[1]).read().split('\\n'):\n"
                                "    if w: print(w + '\\t' + p.stem(w))\n");
  const auto result = test_support::run_command(
      "/usr/bin/python3 " + (dir.path() / "stem.py").string() + " " + (dir.path() / "words.txt").string(), 60.0);
  if (result.exit_code != 0 && (result.output.find("No module named") != std::string::npos ||
                                result.output.find("No such file") != std::string::npos || result.exit_code == 127)) {
    GTEST_SKIP() << "NLTK is not available to /usr/bin/python3 (install python3-nltk); output: " << result.output;
  }
  ASSERT_EQ(result.exit_code, 0) << result.output;

  std::istringstream lines(result.output);
  std::string line;
  size_t compared = 0;
  size_t mismatches = 0;
  while (std::getline(lines, line)) {
    const size_t tab = line.find('\t');
    ASSERT_NE(tab, std::string::npos) << "unexpected output line: " << line;
    const std::string word = line.substr(0, tab);
    const std::string expected = line.substr(tab + 1);
    const std::string got = stages::porter_stem(word);
    if (got != expected) {
      ++mismatches;
      ADD_FAILURE() << "porter_stem(\"" << word << "\") = \"" << got << "\", NLTK gives \"" << expected << "\"";
    }
    ++compared;
  }
  EXPECT_EQ(compared, words.size());
  EXPECT_EQ(mismatches, 0u);
  std::cout << "[ porter   ] compared " << compared << " words with NLTK, " << mismatches << " mismatches\n";
}

TEST(PorterStemmer, KnownStems) {
  // A few fixed NLTK (NLTK_EXTENSIONS) outputs, so the stemmer is covered without Python too.
  EXPECT_EQ(stages::porter_stem("caresses"), "caress");
  EXPECT_EQ(stages::porter_stem("ponies"), "poni");
  EXPECT_EQ(stages::porter_stem("ties"), "tie");      // NLTK: 4-letter 'ies' -> 'ie'
  EXPECT_EQ(stages::porter_stem("dying"), "die");     // irregular form
  EXPECT_EQ(stages::porter_stem("skies"), "sky");     // irregular form
  EXPECT_EQ(stages::porter_stem("spied"), "spi");     // 'ied' -> 'i'
  EXPECT_EQ(stages::porter_stem("hopping"), "hop");
  EXPECT_EQ(stages::porter_stem("filing"), "file");
  EXPECT_EQ(stages::porter_stem("happy"), "happi");
  EXPECT_EQ(stages::porter_stem("enjoy"), "enjoy");
  EXPECT_EQ(stages::porter_stem("relational"), "relat");
  EXPECT_EQ(stages::porter_stem("generously"), "gener");
  EXPECT_EQ(stages::porter_stem("sunny"), "sunni");
  EXPECT_EQ(stages::porter_stem("by"), "by");         // length <= 2 untouched
  EXPECT_EQ(stages::porter_stem("Running"), "run");   // ASCII upper case lowered
}
