# Runs one command of the attn tool and checks it:
#   cmake -DCMD="prog|arg|arg..." -DRC=<expected exit code> [-DMATCH=<regex on stdout+stderr>]
#         [-DNO_MATCH=<regex that must not match>] [-DWORKDIR=dir] [-DREPORT=1] -P run_cli.cmake
# An error (exit code 1, 3, 4, 5 or 6) must be one line on stderr that begins with "attn <subcommand>: ";
# with REPORT (validate's exit 1: the problems are its report, on stdout) stderr must be empty.
string(REPLACE "|" ";" cmd "${CMD}")
if(NOT WORKDIR)
  set(WORKDIR ${CMAKE_CURRENT_BINARY_DIR})
endif()
file(MAKE_DIRECTORY ${WORKDIR})
execute_process(COMMAND ${cmd} WORKING_DIRECTORY ${WORKDIR} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
message("$ ${cmd}\n${out}${err}[exit ${rc}]")
if(NOT rc STREQUAL RC)
  message(FATAL_ERROR "expected exit code ${RC}, got ${rc}")
endif()
if(DEFINED MATCH AND NOT "${out}${err}" MATCHES "${MATCH}")
  message(FATAL_ERROR "the output does not match: ${MATCH}")
endif()
if(DEFINED NO_MATCH AND "${out}${err}" MATCHES "${NO_MATCH}")
  message(FATAL_ERROR "the output matches what it must not: ${NO_MATCH}")
endif()
if(REPORT)
  if(NOT err STREQUAL "")
    message(FATAL_ERROR "a report goes to stdout, but stderr has:\n${err}")
  endif()
elseif(rc MATCHES "^[13456]$")
  string(REGEX MATCHALL "\n" newlines "${err}")
  list(LENGTH newlines lines)
  if(NOT lines EQUAL 1 OR NOT err MATCHES "^attn [a-z]+: ")
    message(FATAL_ERROR "an error must be one line on stderr beginning with 'attn <subcommand>: ', got:\n${err}")
  endif()
endif()
