# Fails when libsparo.so exports a defined symbol other than sparo_*: the C API is the whole
# ABI (docs/LIBRARY.md), and a leaked C++ symbol would become part of it by accident.
#   cmake -DLIBRARY=path/to/libsparo.so -P check_exports.cmake
execute_process(COMMAND nm -D --defined-only ${LIBRARY} OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nm -D ${LIBRARY} failed (${rc})")
endif()
string(REPLACE "\n" ";" lines "${symbols}")
set(api 0)
foreach(line IN LISTS lines)
  if(line MATCHES "^[0-9a-f]+ [A-Za-z] (.+)$")
    set(name "${CMAKE_MATCH_1}")
    if(name MATCHES "^sparo_")
      math(EXPR api "${api} + 1")
    elseif(NOT name MATCHES "^LIBSPARO_")  # the version node itself
      message(SEND_ERROR "libsparo.so exports ${name}")
    endif()
  endif()
endforeach()
if(api LESS 12)
  message(FATAL_ERROR "libsparo.so exports ${api} sparo_* functions, expected the 12 of sparo.h")
endif()
message(STATUS "libsparo.so exports ${api} functions, all sparo_*")
