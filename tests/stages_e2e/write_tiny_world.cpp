// write_tiny_world: the tiny needle-in-a-haystack world of tiny_world.h as a command, for tests outside
// C++ (tests/analysis/test_eager_reference.py) and the bench.
//   write_tiny_world DIR [FAMILY [DTYPE [HIDDEN LAYERS HEADS]]]
//   FAMILY: llama (default), qwen2, mixtral; DTYPE: float32 (default) or bfloat16 (stored weights)
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "tests/stages_e2e/tiny_world.h"

int main(int argc, char** argv) {
  if (argc < 2 || argc == 5 || argc == 6 || argc > 7) {
    std::fprintf(stderr, "usage: %s DIR [llama|qwen2|mixtral [float32|bfloat16 [HIDDEN LAYERS HEADS]]]\n", argv[0]);
    return 2;
  }
  const std::string family = argc > 2 ? argv[2] : "llama";
  const std::string dtype = argc > 3 ? argv[3] : "float32";
  if (dtype != "float32" && dtype != "bfloat16") {
    std::fprintf(stderr, "write_tiny_world: dtype '%s', expected float32 or bfloat16\n", dtype.c_str());
    return 2;
  }
  const int hidden = argc > 6 ? std::atoi(argv[4]) : 32;
  const int layers = argc > 6 ? std::atoi(argv[5]) : 2;
  const int heads = argc > 6 ? std::atoi(argv[6]) : 4;
  try {
    test_support::write_world(argv[1], hidden, layers, heads, family, dtype == "bfloat16");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "write_tiny_world: %s\n", e.what());
    return 1;
  }
  return 0;
}
