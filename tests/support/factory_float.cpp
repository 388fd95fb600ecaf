// The one instantiation of the factory's entry points for float in the test suite (see
// factory_instances.hpp); double has its own file so that the two compile in parallel.
#include "support/factory_instances.hpp"

namespace attn {
ATTN_TEST_FACTORY_INSTANCES(, float)
}  // namespace attn
