// bpnet core: the whole of it, for the one binding file (cpp/bindings.cpp) and
// the C++ tests. shape.hpp lists the headers and declares the dimension letters.
#pragma once

#include "api.hpp"
#include "optim.hpp"
