// The core's entry points in single precision (see core_instances.hpp).
#include "core_instances.hpp"

BPNET_CORE_INSTANCES(, float)
