// Shared helpers of the test suite, by purpose under tests/support/: seeded inputs, random weights
// and example parameters (random.hpp), comparison with a worst-element report (compare.hpp), log
// capture (log.hpp), SIMD levels (simd.hpp), thread counts (threads.hpp), plain-loop oracles
// (oracle.hpp), scratch file paths unique per process (temp.hpp); golden files (golden.hpp) are included by the tests that read them. This header
// includes attn/attn.hpp and every helper. The factory's entry points are extern here: the suite links
// them from attn::layers (cmake/AttnLayers.cmake).
#pragma once

#include <attn/attn.hpp>
#include <catch2/catch.hpp>

#include "support/compare.hpp"
#include "support/log.hpp"
#include "support/oracle.hpp"
#include "support/random.hpp"
#include "support/simd.hpp"
#include "support/temp.hpp"
#include "support/threads.hpp"
