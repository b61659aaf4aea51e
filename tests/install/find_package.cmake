# ctest install_find_package: configures and builds tests/install/find_package, an app outside
# this tree, against the sparo installed in PREFIX (ctest install) with find_package(sparo
# CONFIG), then runs its zero_shot (the C API through sparo::sparo) on the capi fixture.
#   cmake -DPREFIX=... -DSOURCE=tests/install/find_package -DBINARY=<build dir, emptied>
#         -DFIXTURE=<capi fixture> -DRUN_EXAMPLE=tests/capi/run_example.cmake -DGENERATOR=...
#         -DBUILD_TYPE=... -DC_COMPILER=... -DCXX_COMPILER=... "-DFLAGS=<sanitizer flags or empty>"
#         -P find_package.cmake
file(REMOVE_RECURSE ${BINARY})
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE} -B ${BINARY} -G ${GENERATOR}
                        -DCMAKE_PREFIX_PATH=${PREFIX} -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON
                        -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
                        -DCMAKE_C_COMPILER=${C_COMPILER} -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
                        "-DCMAKE_C_FLAGS=${FLAGS}" "-DCMAKE_CXX_FLAGS=${FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${FLAGS}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the find_package project failed (${rc}):\n${out}${err}")
endif()
if(NOT out MATCHES "sparo 0\\.[0-9]+\\.[0-9]+ from ([^\n]*)\n")
  message(FATAL_ERROR "the project did not report which sparo it found:\n${out}")
endif()
if(NOT CMAKE_MATCH_1 MATCHES "^${PREFIX}/")
  message(FATAL_ERROR "found sparo in ${CMAKE_MATCH_1}, not in ${PREFIX}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BINARY}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the find_package project failed (${rc}):\n${out}${err}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -DEXAMPLE=${BINARY}/zero_shot -DFIXTURE=${FIXTURE} -P ${RUN_EXAMPLE}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "zero_shot built with find_package(sparo) failed")
endif()
