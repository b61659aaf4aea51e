# ctest install: `cmake --install` of this build into a fresh PREFIX, then checks that the
# promised files are there and that every installed C++ header includes only installed headers.
#   cmake -DBUILD=<build dir> -DPREFIX=<dir, emptied first> -DLIBDIR=lib -P install.cmake
file(REMOVE_RECURSE ${PREFIX})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD} --prefix ${PREFIX}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc}):\n${out}${err}")
endif()
foreach(f include/sparo/sparo.h include/sparo/engine/tensor.h include/sparo/eval/encode.h
          ${LIBDIR}/libsparo.so ${LIBDIR}/libsparo.so.0 ${LIBDIR}/libsparo.a-absent
          include/sparo/text/tokenizer.h include/sparo/image/image.h
          ${LIBDIR}/libsparo_engine.a ${LIBDIR}/libsparo_text.a ${LIBDIR}/libsparo_image.a ${LIBDIR}/libsparo_models.a ${LIBDIR}/libsparo_training.a ${LIBDIR}/libsparo_eval.a ${LIBDIR}/libsparo_capi.a
          ${LIBDIR}/cmake/sparo/sparoConfig.cmake ${LIBDIR}/cmake/sparo/sparoConfigVersion.cmake
          ${LIBDIR}/cmake/sparo/sparoTargets.cmake ${LIBDIR}/cmake/sparo/sparoCxxTargets.cmake
          ${LIBDIR}/pkgconfig/sparo.pc bin/sparo share/sparo/configs/ViT-B-32.json)
  if(f MATCHES "(.*)-absent$")
    if(EXISTS ${PREFIX}/${CMAKE_MATCH_1})
      message(SEND_ERROR "${CMAKE_MATCH_1} is installed: -lsparo must mean the shared C API")
    endif()
  elseif(NOT EXISTS ${PREFIX}/${f})
    message(SEND_ERROR "not installed: ${f}")
  endif()
endforeach()
# Nothing of the backends' insides: no Vulkan or CPU-kernel header, no Vulkan include.
file(GLOB_RECURSE headers RELATIVE ${PREFIX}/include/sparo ${PREFIX}/include/sparo/*.h)
list(LENGTH headers n)
foreach(h ${headers})
  if(h MATCHES "^engine/(cpu|vulkan|ops)/")
    message(SEND_ERROR "internal header installed: ${h}")
  endif()
  file(STRINGS ${PREFIX}/include/sparo/${h} includes REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]")
  foreach(line ${includes})
    if(line MATCHES "vulkan")
      message(SEND_ERROR "${h} includes Vulkan: ${line}")
    elseif(line MATCHES "\"([a-z_]+/[^\"]+)\"" AND NOT EXISTS ${PREFIX}/include/sparo/${CMAKE_MATCH_1}
           AND NOT EXISTS ${PREFIX}/include/${CMAKE_MATCH_1})
      message(SEND_ERROR "${h} includes ${CMAKE_MATCH_1}, which is not installed")
    endif()
  endforeach()
endforeach()
message(STATUS "installed into ${PREFIX}: ${n} headers, all includes resolve")
