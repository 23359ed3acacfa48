# clipc_dataio: the shard format, the `clipc shards` converter (libarchive reads tar shards) and the
# data loader (pure C).
# Included from data/CMakeLists.txt. The tokenizer (clipc_data) is linked when that target exists;
# without it the loader runs with a NULL tokenizer only.
add_library(clipc_dataio STATIC
  ${CMAKE_CURRENT_LIST_DIR}/shard.c
  ${CMAKE_CURRENT_LIST_DIR}/manifest.c
  ${CMAKE_CURRENT_LIST_DIR}/fsutil.c
  ${CMAKE_CURRENT_LIST_DIR}/image.c
  ${CMAKE_CURRENT_LIST_DIR}/sampler.c
  ${CMAKE_CURRENT_LIST_DIR}/loader.c
  ${CMAKE_CURRENT_LIST_DIR}/sources.c
  ${CMAKE_CURRENT_LIST_DIR}/csv.c
  ${CMAKE_CURRENT_LIST_DIR}/folders.c
  ${CMAKE_CURRENT_LIST_DIR}/idx.c
  ${CMAKE_CURRENT_LIST_DIR}/cifar.c
  ${CMAKE_CURRENT_LIST_DIR}/karpathy.c
  ${CMAKE_CURRENT_LIST_DIR}/pattern.c
  ${CMAKE_CURRENT_LIST_DIR}/webdataset.c
  ${CMAKE_CURRENT_LIST_DIR}/convert.c)
target_include_directories(clipc_dataio PUBLIC ${CMAKE_SOURCE_DIR} ${HDF5_INCLUDE_DIRS})
target_compile_definitions(clipc_dataio PRIVATE
  CLIPC_HAVE_TOKENIZER=$<IF:$<TARGET_EXISTS:clipc_data>,1,0>)
target_link_libraries(clipc_dataio PUBLIC
  clipc_common $<TARGET_NAME_IF_EXISTS:clipc_data>
  ${HDF5_C_LIBRARIES} PkgConfig::WEBP JPEG::JPEG PNG::PNG ZLIB::ZLIB PkgConfig::ARCHIVE cjson Threads::Threads ${MATH_LIB})
target_sources(clipc_dataio PRIVATE ${CMAKE_CURRENT_LIST_DIR}/shots.c)  # few-shot sets (data/shots.h)
