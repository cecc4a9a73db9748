// The default behaviour of the store interface (store/store.hpp), for backends without better.
#include "store/store.hpp"

#include <algorithm>

namespace navietakie {

std::vector<Call> StoreReader::due_ringing_calls(Millis now, std::size_t limit) const {
  std::vector<Call> due;
  for (auto& call : ringing_calls()) {
    if (call.ring_deadline <= now) due.push_back(std::move(call));
  }
  std::sort(due.begin(), due.end(), [](const Call& a, const Call& b) { return a.ring_deadline < b.ring_deadline; });
  if (due.size() > limit) due.resize(limit);
  return due;
}

}  // namespace navietakie
