# lathe's layers, each a static library: support -> formats -> core -> executor -> datasets ->
# passes -> pipeline -> cmd, with the model writers as their own layer above the executor.
#
# A layer's include root (build/layers/<layer>) holds one link, to the layer's own folder; the
# roots of the layers below it come through target_link_libraries. The repository root is on
# no include path, so including a header of a layer above, or of one beside it, fails to build
# ("No such file or directory") instead of being caught by review.
function(lathe_layer_include_root target folder)
  set(root ${CMAKE_BINARY_DIR}/layers/${folder})
  file(MAKE_DIRECTORY ${root})
  file(CREATE_LINK ${CMAKE_SOURCE_DIR}/${folder} ${root}/${folder} SYMBOLIC)
  target_include_directories(${target} PUBLIC ${root})
endfunction()

# For the layer test (tests/layers.cmake): which layers `name` sees, itself included.
function(lathe_record_layer name)
  set(visible ${name})
  foreach(below ${ARGN})
    if(below MATCHES "^lathe_(.*)$")
      get_property(below_visible GLOBAL PROPERTY LATHE_LAYER_${CMAKE_MATCH_1}_VISIBLE)
      list(APPEND visible ${below_visible})
    endif()
  endforeach()
  list(REMOVE_DUPLICATES visible)
  set_property(GLOBAL PROPERTY LATHE_LAYER_${name}_VISIBLE ${visible})
  set_property(GLOBAL APPEND PROPERTY LATHE_LAYERS ${name})
endfunction()

# lathe_layer(NAME <layer> SOURCES ... BELOW <libraries> [PCH])
# The library is lathe_<layer>, built from <layer>/ sources; BELOW names what it may include.
function(lathe_layer)
  cmake_parse_arguments(LAYER "PCH" "NAME" "SOURCES;BELOW" ${ARGN})
  add_library(lathe_${LAYER_NAME} STATIC ${LAYER_SOURCES})
  lathe_layer_include_root(lathe_${LAYER_NAME} ${LAYER_NAME})
  target_link_libraries(lathe_${LAYER_NAME} PUBLIC ${LAYER_BELOW})
  target_compile_options(lathe_${LAYER_NAME} PRIVATE ${LATHE_WARNINGS})
  lathe_record_layer(${LAYER_NAME} ${LAYER_BELOW})
  if(LAYER_PCH)
    target_precompile_headers(lathe_${LAYER_NAME} REUSE_FROM lathe_core)
  endif()
endfunction()
