# One generated translation unit per public header, compiled on its own: a header that forgets an
# include fails here.
function(attn_header_check)
  file(GLOB_RECURSE headers RELATIVE ${PROJECT_SOURCE_DIR}/include CONFIGURE_DEPENDS
       ${PROJECT_SOURCE_DIR}/include/attn/*.hpp)
  set(sources "")
  foreach(h IN LISTS headers)
    string(MAKE_C_IDENTIFIER "${h}" id)
    set(src ${PROJECT_BINARY_DIR}/header_check/${id}.cpp)
    file(CONFIGURE OUTPUT ${src} CONTENT "#include <${h}>\n#include <${h}>\n")
    list(APPEND sources ${src})
  endforeach()
  add_library(attn_header_check OBJECT ${sources})
  target_link_libraries(attn_header_check PRIVATE attn::attn)
  target_compile_options(attn_header_check PRIVATE -O0)
  attn_warnings(attn_header_check)
endfunction()
