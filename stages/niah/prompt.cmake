# rhead_prompt: needles, haystacks and NIAH prompt construction (no LibTorch). docs/PROMPTS.md has the
# faithful (official quirks) and fixed modes. Unit-tested by tests/prompt/test_prompt_builder.
#   needles.{h,cpp}         needles.jsonl reader, detection (word count) and masked-NIAH (token count) haystacks
#   prompt_builder.{h,cpp}  PromptBuilder: context trimming, needle insertion, template, answer span
add_library(rhead_prompt STATIC
  ${CMAKE_CURRENT_LIST_DIR}/needles.cpp
  ${CMAKE_CURRENT_LIST_DIR}/prompt_builder.cpp)
target_include_directories(rhead_prompt PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rhead_prompt PUBLIC models_tokenizer pipeline_core nlohmann_json::nlohmann_json
  PRIVATE rhead_warnings)
