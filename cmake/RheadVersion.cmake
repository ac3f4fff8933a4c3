# Git revision stamped into every store (falls back to "unknown" outside a git checkout).
execute_process(COMMAND git rev-parse --short=12 HEAD
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR} OUTPUT_VARIABLE RHEAD_GIT_REVISION
  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _rhead_git_rc)
if(NOT _rhead_git_rc EQUAL 0 OR RHEAD_GIT_REVISION STREQUAL "")
  set(RHEAD_GIT_REVISION "unknown")
endif()
configure_file(${CMAKE_SOURCE_DIR}/pipeline/core/version.h.in ${CMAKE_BINARY_DIR}/generated/pipeline/core/version.h @ONLY)
