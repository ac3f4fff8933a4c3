# Generic decoder: RoPE, GQA attention with KV cache and chunked prefill, SwiGLU / sparse MoE,
# attention capture (observer), head masking, greedy generation; its trainable twin (toy zoo). Tests: tests/models/.
target_sources(models PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/rope.cpp
  ${CMAKE_CURRENT_LIST_DIR}/attention.cpp
  ${CMAKE_CURRENT_LIST_DIR}/capture.cpp
  ${CMAKE_CURRENT_LIST_DIR}/decoder.cpp
  ${CMAKE_CURRENT_LIST_DIR}/generation.cpp
  ${CMAKE_CURRENT_LIST_DIR}/trainable.cpp)
