# Runs examples/zero_shot.c's program on the capi fixture (two images) and checks that it
# succeeds and prints exactly one "FILE: LABEL (PROBABILITY)" line per image.
#   cmake -DEXAMPLE=path/to/example_zero_shot -DFIXTURE=dir -P run_example.cmake
execute_process(COMMAND ${EXAMPLE} ${FIXTURE}/model.json ${FIXTURE}/model.safetensors ${FIXTURE}/merges.txt
                        "shirt,sneaker,bag" ${FIXTURE}/img0.png ${FIXTURE}/img1.png
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "example_zero_shot exited with ${rc}:\n${out}${err}")
endif()
string(REGEX MATCHALL "[^\n]+\n" lines "${out}")
list(LENGTH lines n)
if(NOT n EQUAL 2)
  message(FATAL_ERROR "expected 2 lines, one per image, got ${n}:\n${out}")
endif()
set(i 0)
foreach(line IN LISTS lines)
  if(NOT line MATCHES "^[^\n]*/img${i}\\.png: (shirt|sneaker|bag) \\([01]\\.[0-9][0-9][0-9]\\)\n$")
    message(FATAL_ERROR "line ${i} is not \"FILE: LABEL (P)\": ${line}")
  endif()
  math(EXPR i "${i} + 1")
endforeach()
message(STATUS "example_zero_shot:\n${out}")
