# ctest layer_check_fails_on_upward_include: cmake/check_layers.cmake on a small tree in WORK,
# once clean (must pass) and once with upward or sideways includes (models/ including eval/,
# the neutral text/ including models/, image/ including text/; each must fail naming the file
# and line), so that the check guarding every build cannot silently stop checking.
#   cmake -DCHECK=cmake/check_layers.cmake -DWORK=<dir, emptied> -P check_layers_test.cmake
file(REMOVE_RECURSE ${WORK})
file(WRITE ${WORK}/engine/tensor.h "#pragma once\n")
file(WRITE ${WORK}/models/clip.cpp "#include <vector>\n#include \"engine/tensor.h\"\n")
file(WRITE ${WORK}/eval/encode.h "#include \"models/clip.h\"\n")
file(WRITE ${WORK}/cli/main.cpp "#include \"eval/encode.h\"\n")
file(WRITE ${WORK}/text/tokenizer.h "#include \"engine/tensor.h\"\n")
file(WRITE ${WORK}/image/image.h "#include \"engine/tensor.h\"\n")
file(WRITE ${WORK}/training/clip_task.cpp "#include \"text/tokenizer.h\"\n#include \"image/image.h\"\n")
execute_process(COMMAND ${CMAKE_COMMAND} -DROOT=${WORK} -P ${CHECK} RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the check fails on a tree without upward includes:\n${err}")
endif()
file(APPEND ${WORK}/models/clip.cpp "\n#include \"eval/encode.h\"\n")
file(WRITE ${WORK}/engine/op.cpp "#include \"../training/x.h\"\n")
file(APPEND ${WORK}/text/tokenizer.h "#include \"models/clip.h\"\n")
file(APPEND ${WORK}/image/image.h "#include \"text/tokenizer.h\"\n")
execute_process(COMMAND ${CMAKE_COMMAND} -DROOT=${WORK} -P ${CHECK} RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "the check passes models/clip.cpp including eval/encode.h")
endif()
foreach(expected "models/clip.cpp:4: includes \"eval/encode.h\"" "engine/op.cpp:1: includes \"../training/x.h\""
                 "text/tokenizer.h:2: includes \"models/clip.h\"" "image/image.h:2: includes \"text/tokenizer.h\"")
  string(FIND "${err}" "${expected}" found)
  if(found EQUAL -1)
    message(FATAL_ERROR "the check's message lacks \"${expected}\":\n${err}")
  endif()
endforeach()
message(STATUS "the layer check fails as it should:\n${err}")
