# ctest install_pkg_config: compiles examples/zero_shot.c as C11 with the flags that
# `pkg-config --cflags --libs sparo` gives for the sparo installed in PREFIX, and runs it on the
# capi fixture (the run-time path comes from `pkg-config --variable=libdir sparo`).
#   cmake -DPREFIX=... -DLIBDIR=lib -DEXAMPLE_SOURCE=examples/zero_shot.c -DBINARY=<dir, emptied>
#         -DFIXTURE=... -DRUN_EXAMPLE=... -DC_COMPILER=... -DSTB_INCLUDE_DIR=... -DSTB_LIBRARY=...
#         "-DFLAGS=<sanitizer flags or empty>" -P pkg_config.cmake
find_program(PKG_CONFIG pkg-config)
if(NOT PKG_CONFIG)
  message(FATAL_ERROR "pkg-config is not installed (scripts/setup.sh installs it)")
endif()
file(REMOVE_RECURSE ${BINARY})
file(MAKE_DIRECTORY ${BINARY})
set(ENV{PKG_CONFIG_PATH} ${PREFIX}/${LIBDIR}/pkgconfig)
set(ENV{PKG_CONFIG_LIBDIR} ${PREFIX}/${LIBDIR}/pkgconfig)  # this sparo.pc, no system one
execute_process(COMMAND ${PKG_CONFIG} --cflags --libs sparo
                RESULT_VARIABLE rc OUTPUT_VARIABLE pc_flags ERROR_VARIABLE err OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --cflags --libs sparo failed (${rc}): ${err}")
endif()
execute_process(COMMAND ${PKG_CONFIG} --variable=libdir sparo
                OUTPUT_VARIABLE libdir OUTPUT_STRIP_TRAILING_WHITESPACE)
execute_process(COMMAND ${PKG_CONFIG} --modversion sparo OUTPUT_VARIABLE version OUTPUT_STRIP_TRAILING_WHITESPACE)
message(STATUS "pkg-config sparo ${version}: ${pc_flags}")
separate_arguments(pc_list UNIX_COMMAND "${pc_flags}")
separate_arguments(flag_list UNIX_COMMAND "${FLAGS}")
set(command ${C_COMPILER} -std=c11 -Wall -Wextra -Werror ${flag_list} ${EXAMPLE_SOURCE} -I${STB_INCLUDE_DIR}
            ${pc_list} ${STB_LIBRARY} -lm -Wl,-rpath,${libdir} -o ${BINARY}/zero_shot)
execute_process(COMMAND ${command} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  list(JOIN command " " shown)
  message(FATAL_ERROR "${shown}\nfailed (${rc}):\n${out}${err}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -DEXAMPLE=${BINARY}/zero_shot -DFIXTURE=${FIXTURE} -P ${RUN_EXAMPLE}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "zero_shot built with pkg-config failed")
endif()
