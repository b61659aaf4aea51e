# ctest install_embed_folder: runs examples/embed_folder.cpp, as built by the find_package
# project against the installed static layers, on the capi fixture's folder (two PNGs among
# other files), and checks its output with the installed `sparo` command: one [2, E] tensor,
# bitwise equal to what `sparo embed` writes for the same two images.
#   cmake -DEMBED_FOLDER=<program> -DSPARO=<installed sparo> -DFIXTURE=... -DOUT=<dir> -P embed_folder.cmake
file(MAKE_DIRECTORY ${OUT})
execute_process(COMMAND ${EMBED_FOLDER} ${FIXTURE}/model.json ${FIXTURE}/model.safetensors ${FIXTURE}
                        ${OUT}/folder.safetensors
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "embed_folder exited with ${rc}:\n${out}${err}")
endif()
if(NOT err MATCHES "embed_folder: 2/2 images")
  message(FATAL_ERROR "no progress line \"embed_folder: 2/2 images\" on stderr:\n${err}")
endif()
message(STATUS "embed_folder: ${out}")
execute_process(COMMAND ${SPARO} inspect ${OUT}/folder.safetensors
                RESULT_VARIABLE rc OUTPUT_VARIABLE inspect ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT inspect MATCHES "image_embeds  F32  \\[2, ([0-9]+)\\]")
  message(FATAL_ERROR "sparo inspect: expected image_embeds F32 [2, E]:\n${inspect}${err}")
endif()
set(dim ${CMAKE_MATCH_1})
if(NOT inspect MATCHES "img0\\.png\\\\x0aimg1\\.png")
  message(FATAL_ERROR "metadata \"files\" does not list img0.png, img1.png in order:\n${inspect}")
endif()
execute_process(COMMAND ${SPARO} embed --config ${FIXTURE}/model.json --checkpoint ${FIXTURE}/model.safetensors
                        --images ${FIXTURE}/img0.png ${FIXTURE}/img1.png --out ${OUT}/reference.safetensors
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "sparo embed failed (${rc}):\n${out}${err}")
endif()
# Each file ends with its one tensor's data: compare the last 2·E floats.
math(EXPR hex_chars "2 * ${dim} * 4 * 2")
foreach(name folder reference)
  file(READ ${OUT}/${name}.safetensors hex HEX)
  string(LENGTH "${hex}" length)
  math(EXPR start "${length} - ${hex_chars}")
  string(SUBSTRING "${hex}" ${start} ${hex_chars} data_${name})
endforeach()
if(NOT data_folder STREQUAL data_reference)
  message(FATAL_ERROR "embed_folder's embeddings differ from sparo embed's")
endif()
message(STATUS "embed_folder: 2 × ${dim} embeddings, equal to sparo embed's")
