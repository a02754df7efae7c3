# Helpers for the top-level CMakeLists.txt: read the package metadata from Cargo.toml, the
# single source of the version, so that CMake, the config files and pool.pc never drift.

# pool_read_cargo_package(<toml> <prefix>): sets <prefix>_VERSION (full, e.g. 0.1.0 or
# 0.2.0-rc.1), <prefix>_VERSION_NUMERIC (MAJOR.MINOR.PATCH, for project()), <prefix>_VERSION_MAJOR
# and <prefix>_DESCRIPTION from the [package] table of <toml>.
function(pool_read_cargo_package toml prefix)
  file(STRINGS "${toml}" lines)
  set(section "")
  set(version "")
  set(description "")
  foreach(line IN LISTS lines)
    if(line MATCHES "^[ \t]*\\[([^]]*)\\]")
      set(section "${CMAKE_MATCH_1}")
    elseif(section STREQUAL "package")
      if(line MATCHES "^[ \t]*version[ \t]*=[ \t]*\"([^\"]+)\"")
        set(version "${CMAKE_MATCH_1}")
      elseif(line MATCHES "^[ \t]*description[ \t]*=[ \t]*\"([^\"]*)\"")
        set(description "${CMAKE_MATCH_1}")
      endif()
    endif()
  endforeach()
  if(NOT version MATCHES "^(([0-9]+)\\.[0-9]+\\.[0-9]+)")
    message(FATAL_ERROR "could not read [package] version from ${toml} (got '${version}')")
  endif()
  set(${prefix}_VERSION "${version}" PARENT_SCOPE)
  set(${prefix}_VERSION_NUMERIC "${CMAKE_MATCH_1}" PARENT_SCOPE)
  set(${prefix}_VERSION_MAJOR "${CMAKE_MATCH_2}" PARENT_SCOPE)
  set(${prefix}_DESCRIPTION "${description}" PARENT_SCOPE)
endfunction()

# pool_relative_to_prefix(<var> <dir>): the relative path from <prefix>/<dir> back to <prefix>
# ("../../.." for lib/cmake/Pool), so installed files can find the prefix they were copied to.
function(pool_relative_to_prefix var dir)
  if(IS_ABSOLUTE "${dir}")
    message(FATAL_ERROR "libpool: '${dir}' is absolute; the install tree is relocatable only "
                        "with relative CMAKE_INSTALL_*DIR values")
  endif()
  file(RELATIVE_PATH rel "/pool-prefix/${dir}" "/pool-prefix")
  string(REGEX REPLACE "/$" "" rel "${rel}")
  set(${var} "${rel}" PARENT_SCOPE)
endfunction()
