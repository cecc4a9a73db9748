// Counts C++ allocations in a benchmark binary: linking alloc_counter.cpp replaces the global
// operator new/delete with ones that count calls and bytes. For benchmarks only, never a host.
#pragma once

#include <cstdint>

namespace navietakie::bench {

struct AllocCount {
  std::uint64_t calls = 0;
  std::uint64_t bytes = 0;
};

// Every operator new since the process started (the array and nothrow forms included: libstdc++
// implements them with the replaced one). Over-aligned allocations are not counted.
AllocCount allocations();

}  // namespace navietakie::bench
