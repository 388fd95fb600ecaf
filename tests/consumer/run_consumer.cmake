# Builds and runs tests/consumer against attn, either through add_subdirectory (MODE=subdirectory)
# or through find_package after installing attn into a scratch prefix (MODE=package).
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()
set(common -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=Debug)
if(MODE STREQUAL "package")
  run(${CMAKE_COMMAND} -S ${ATTN_SOURCE_DIR} -B ${WORK_DIR}/attn-build ${common}
      -DATTN_BUILD_TESTS=OFF -DATTN_BUILD_EXAMPLES=OFF -DATTN_BUILD_CLI=OFF -DATTN_HEADER_CHECK=OFF -DATTN_INSTALL=ON)
  run(${CMAKE_COMMAND} --install ${WORK_DIR}/attn-build --prefix ${WORK_DIR}/prefix)
  run(${CMAKE_COMMAND} -S ${ATTN_SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/build ${common}
      -DCONSUME=package -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
else()
  run(${CMAKE_COMMAND} -S ${ATTN_SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/build ${common}
      -DCONSUME=subdirectory -DATTN_DIR=${ATTN_SOURCE_DIR})
endif()
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)
