// The stored-record decoder: bytes read back from LMDB (a damaged or foreign database) decoded as
// each record type. A StoreError is the documented refusal; anything else thrown, any read past
// the bytes, and a large allocation for a length the bytes cannot hold are bugs. A record that
// decodes must survive a round trip; written little-endian (first byte 1, as this machine writes
// them) it must encode back to the very same bytes. cereal's portable archive also reads records
// written big-endian (first byte 0); those re-encode little-endian.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "store/serialize.hpp"
#include "store/store.hpp"

using namespace navietakie;

namespace {

template <class Decode>
void check(std::string_view bytes, Decode decode) {
  try {
    const auto record = decode(bytes);
    const std::string again = encode(record);
    if (!(decode(again) == record)) std::abort();
    if (bytes.front() == '\x01' && again != bytes) std::abort();
  } catch (const StoreError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  check(bytes, decode_message);
  check(bytes, decode_call);
  check(bytes, decode_connection);
  check(bytes, decode_presence);
  return 0;
}
