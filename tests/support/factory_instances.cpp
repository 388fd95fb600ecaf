// The one instantiation of the factory's entry points in the test suite (see factory_instances.hpp).
#include "support/factory_instances.hpp"

namespace attn {

ATTN_TEST_FACTORY_INSTANCES(, float)
ATTN_TEST_FACTORY_INSTANCES(, double)

}  // namespace attn
