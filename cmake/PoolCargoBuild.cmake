# Build step of libpool, run by `cmake --build` as `cmake -P` (see CMakeLists.txt).
#
# 1. Builds the crate with cargo (release profile): libpool.so and libpool.a.
# 2. Reads the system libraries that static linking needs from rustc itself
#    (`--print native-static-libs`; cargo replays the note when nothing was rebuilt).
# 3. Writes PoolTargets.cmake and pool.pc with that list, so Pool::pool_static and
#    `pkg-config --static` always carry what this toolchain's libpool.a really needs.
#
# Inputs (-D): CARGO MANIFEST TARGET_DIR GEN_DIR TEMPLATE_DIR CARGO_FLAGS, and the template values
# POOL_VERSION POOL_VERSION_NUMERIC POOL_VERSION_MAJOR POOL_DESCRIPTION POOL_LIBDIR
# POOL_INCLUDEDIR POOL_CONFIG_TO_PREFIX POOL_PC_TO_PREFIX.
cmake_minimum_required(VERSION 3.16)

foreach(v CARGO MANIFEST TARGET_DIR GEN_DIR TEMPLATE_DIR POOL_VERSION POOL_LIBDIR POOL_INCLUDEDIR)
  if(NOT DEFINED ${v} OR "${${v}}" STREQUAL "")
    message(FATAL_ERROR "PoolCargoBuild.cmake: -D${v}=... is required")
  endif()
endforeach()

separate_arguments(extra_flags UNIX_COMMAND "${CARGO_FLAGS}")
set(cargo_cmd "${CARGO}" rustc --release --lib --manifest-path "${MANIFEST}"
    --target-dir "${TARGET_DIR}" ${extra_flags} -- --print native-static-libs)

function(run_cargo out_var)
  set(echo_args "")
  if(NOT CMAKE_VERSION VERSION_LESS 3.18)
    set(echo_args ECHO_OUTPUT_VARIABLE ECHO_ERROR_VARIABLE)
  endif()
  execute_process(COMMAND ${cargo_cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                  ${echo_args})
  if(CMAKE_VERSION VERSION_LESS 3.18)
    message("${out}${err}")
  endif()
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cargo failed (${rc}): ${cargo_cmd}")
  endif()
  set(${out_var} "${out}\n${err}" PARENT_SCOPE)
endfunction()

run_cargo(log)
if(NOT log MATCHES "native-static-libs: ([^\r\n]*)")
  # Nothing rebuilt and no cached note to replay: rebuild the crate itself once to get it.
  execute_process(COMMAND "${CARGO}" clean --release -p pool --manifest-path "${MANIFEST}"
                          --target-dir "${TARGET_DIR}" RESULT_VARIABLE rc)
  run_cargo(log)
  if(NOT log MATCHES "native-static-libs: ([^\r\n]*)")
    message(FATAL_ERROR "rustc did not print native-static-libs")
  endif()
endif()
string(STRIP "${CMAKE_MATCH_1}" POOL_NATIVE_STATIC_LIBS_FLAGS)

# "-lgcc_s -lutil ..." -> "gcc_s;util;..." for INTERFACE_LINK_LIBRARIES (other flags kept as is).
separate_arguments(flags UNIX_COMMAND "${POOL_NATIVE_STATIC_LIBS_FLAGS}")
set(POOL_NATIVE_STATIC_LIBS "")
foreach(f IN LISTS flags)
  if(f MATCHES "^-l(.+)$")
    list(APPEND POOL_NATIVE_STATIC_LIBS "${CMAKE_MATCH_1}")
  else()
    list(APPEND POOL_NATIVE_STATIC_LIBS "${f}")
  endif()
endforeach()

foreach(f libpool.so libpool.a)
  if(NOT EXISTS "${TARGET_DIR}/release/${f}")
    message(FATAL_ERROR "cargo did not produce ${TARGET_DIR}/release/${f}")
  endif()
endforeach()

file(MAKE_DIRECTORY "${GEN_DIR}")
configure_file("${TEMPLATE_DIR}/PoolTargets.cmake.in" "${GEN_DIR}/PoolTargets.cmake" @ONLY)
configure_file("${TEMPLATE_DIR}/pool.pc.in" "${GEN_DIR}/pool.pc" @ONLY)
file(WRITE "${GEN_DIR}/native-static-libs.txt" "${POOL_NATIVE_STATIC_LIBS_FLAGS}\n")
