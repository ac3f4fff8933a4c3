# Generic decoder: RoPE, GQA attention with KV cache and chunked prefill, SwiGLU / sparse MoE,
# attention capture (observer), head masking, per-head mean outputs, greedy generation; its trainable
# twin (toy zoo); the projections (few fp32 rows through the batch-invariant row kernels) and the CPU
# compute setup (threads, heap policy, subnormals).
# Tests: tests/models/.
target_sources(models PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/rope.cpp
  ${CMAKE_CURRENT_LIST_DIR}/attention.cpp
  ${CMAKE_CURRENT_LIST_DIR}/capture.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cpu_compute.cpp
  ${CMAKE_CURRENT_LIST_DIR}/decoder.cpp
  ${CMAKE_CURRENT_LIST_DIR}/generation.cpp
  ${CMAKE_CURRENT_LIST_DIR}/head_outputs.cpp
  ${CMAKE_CURRENT_LIST_DIR}/projection.cpp
  ${CMAKE_CURRENT_LIST_DIR}/row_projection.cpp
  ${CMAKE_CURRENT_LIST_DIR}/trainable.cpp)
# cpu_compute.cpp and row_projection.cpp open OpenMP regions themselves (the pool OpenBLAS-openmp and
# LibTorch share; models/cpu_compute.h): those files get the OpenMP flags (and no precompiled header,
# which was built without them); the runtime is linked (LibTorch links it already).
find_package(OpenMP REQUIRED COMPONENTS CXX)
separate_arguments(rhead_openmp_flags UNIX_COMMAND "${OpenMP_CXX_FLAGS}")
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/cpu_compute.cpp ${CMAKE_CURRENT_LIST_DIR}/row_projection.cpp PROPERTIES
  COMPILE_OPTIONS "${rhead_openmp_flags}" SKIP_PRECOMPILE_HEADERS ON)
target_link_libraries(models PRIVATE ${OpenMP_CXX_LIBRARIES})
