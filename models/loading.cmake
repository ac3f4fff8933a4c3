# Model loading (included from models/CMakeLists.txt): safetensors reader/writer, config.json and
# family files (models/families/*.ini) -> ModelSpec, model folders (load/save/validate), model-info.
target_sources(models PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/safetensors.cpp
  ${CMAKE_CURRENT_LIST_DIR}/model_config.cpp
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint.cpp
  ${CMAKE_CURRENT_LIST_DIR}/model_info.cpp)
# Where the family files live when $RHEAD_FAMILY_DIR is not set (models::default_family_dir()).
target_compile_definitions(models PRIVATE
  RHEAD_FAMILY_DIR_DEFAULT="${CMAKE_SOURCE_DIR}/models/families")
