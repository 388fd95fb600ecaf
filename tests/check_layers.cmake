# Fails when a header under include/attn/layers/ does not open with its /// block, is not included by
# registry.hpp, has no Registry line (marked '// <stem>'), has no tests/layers/test_<stem>.cpp, or has
# no golden data: files under
# tests/data/<stem>/ (tools/golden/<stem>.py) read by the golden test in its test file
# (for_each_golden<T>("<stem>", ...)), unless its header's /// block says why there are none with a
# line "/// No golden data: <reason>". test_contract.cpp checks the other direction: every registered
# type string has its header.
file(GLOB headers ${SOURCE_DIR}/include/attn/layers/*.hpp)
file(READ ${SOURCE_DIR}/include/attn/registry.hpp registry)
set(problems "")
foreach(h IN LISTS headers)
  get_filename_component(stem ${h} NAME_WE)
  string(FIND "${registry}" "#include \"attn/layers/${stem}.hpp\"" found)
  if(found EQUAL -1)
    list(APPEND problems "include/attn/layers/${stem}.hpp is not included by registry.hpp")
  endif()
  # the Registry line of a type ends with the comment "// <type string>"
  string(REGEX MATCH "// ${stem}\n" line "${registry}")
  if(NOT line)
    list(APPEND problems "include/attn/layers/${stem}.hpp has no line '// ${stem}' in the Registry list")
  endif()
  set(test_file ${SOURCE_DIR}/tests/layers/test_${stem}.cpp)
  if(NOT EXISTS ${test_file})
    list(APPEND problems "include/attn/layers/${stem}.hpp has no tests/layers/test_${stem}.cpp")
  endif()
  file(READ ${h} header)
  string(REGEX MATCH "^/// \\\\file\n/// `${stem}` " docblock "${header}")
  if(NOT docblock)
    list(APPEND problems "include/attn/layers/${stem}.hpp does not open with its /// block "
                         "('/// \\file' then '/// `${stem}` — <summary>')")
  endif()
  string(REGEX MATCH "/// No golden data: [^\n]*[A-Za-z][^\n]*" exempt "${header}")
  file(GLOB data ${SOURCE_DIR}/tests/data/${stem}/*.safetensors)
  if(NOT data AND NOT exempt)
    list(APPEND problems "${stem} has no golden data under tests/data/${stem}/ (tools/golden/${stem}.py) and "
                         "its header no line '/// No golden data: <reason>'")
  endif()
  if(data AND EXISTS ${test_file})
    file(READ ${test_file} test)
    string(FIND "${test}" "for_each_golden<T>(\"${stem}\"" reads)
    if(reads EQUAL -1)
      list(APPEND problems "tests/data/${stem}/ is not read by tests/layers/test_${stem}.cpp "
                           "(for_each_golden<T>(\"${stem}\", ...))")
    endif()
  endif()
endforeach()
if(problems)
  string(REPLACE ";" "\n" problems "${problems}")
  message(FATAL_ERROR "${problems}")
endif()
message(STATUS "all layer headers are registered, tested and have golden data")
