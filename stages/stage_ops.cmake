# rhead_stage_ops: the stages' pure numerics (no LibTorch, no MPI, no HDF5; IO only in the head_score
# JSON import/export). Unit-tested by tests/stages/test_stage_ops against hand-computed cases, NLTK, and the
# official head_score files.
#   niah/       rouge (rouge_score ROUGE-N), porter_stemmer (NLTK PorterStemmer, NLTK_EXTENSIONS)
#   score/      score_ops (retrieval-score rule, aggregation, bins, ranking), head_score_json (official format)
#   correlate/  correlate_ops (Pearson, Spearman, top-K overlap, shape policies)
#   ablate/     ablate_ops (head selection, SQuAD F1/EM, CoT answer extraction, NIAH error types)
#   common/     splitmix64 (the seeded random stream of ablate and train)
add_library(rhead_stage_ops STATIC
  ${CMAKE_CURRENT_LIST_DIR}/niah/porter_stemmer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/niah/rouge.cpp
  ${CMAKE_CURRENT_LIST_DIR}/score/score_ops.cpp
  ${CMAKE_CURRENT_LIST_DIR}/score/head_score_json.cpp
  ${CMAKE_CURRENT_LIST_DIR}/correlate/correlate_ops.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ablate/ablate_ops.cpp
  ${CMAKE_CURRENT_LIST_DIR}/common/splitmix64.cpp)
target_include_directories(rhead_stage_ops PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rhead_stage_ops PUBLIC pipeline_core nlohmann_json::nlohmann_json PRIVATE rhead_warnings)
