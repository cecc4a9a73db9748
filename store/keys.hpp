// How records are keyed in LMDB: one named database per table, keys ordered bytewise (memcmp).
//
//   messages       booking '\0' be64(seq)      -> Message       (a booking's messages are contiguous,
//                                                                ascending by seq)
//   message_ids    booking '\0' message_id     -> be64(seq)     (idempotency)
//   calls          booking '\0' call_id        -> Call
//   active_calls   booking                     -> call_id       (at most one ringing/connected call)
//   ringing_calls  booking '\0' call_id        -> ""            (same key as calls; put_call keeps it)
//   connections    booking '\0' client_id      -> Connection
//   presence       booking                     -> Presence
//   booking_states booking                     -> BookingState  (closed bookings only)
//   closed_bookings be64(closed_at) booking    -> ""            (the retention purge's order)
//   read_receipts  booking                     -> ReadReceipts  (both parties' read horizons)
//   meta           "schema_version"            -> be64(version)
//
// Booking codes are [A-Za-z0-9_-]{1,64}: they hold no '\0', so `booking '\0'` is a prefix that no
// other booking's keys share ("BK1\0..." sorts before, and apart from, "BK10\0..."). A prefix scan
// must still stop at the first key that does not start with the prefix.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace navietakie::keys {

namespace db {
inline constexpr const char* messages = "messages";
inline constexpr const char* message_ids = "message_ids";
inline constexpr const char* calls = "calls";
inline constexpr const char* active_calls = "active_calls";
inline constexpr const char* ringing_calls = "ringing_calls";
inline constexpr const char* connections = "connections";
inline constexpr const char* booking_states = "booking_states";
inline constexpr const char* closed_bookings = "closed_bookings";
inline constexpr const char* presence = "presence";
inline constexpr const char* read_receipts = "read_receipts";
inline constexpr const char* meta = "meta";
}  // namespace db

inline constexpr std::string_view schema_version = "schema_version";
// The value under it that this build writes and reads (the store and the ctl's inspector agree).
// Bump when the key layout or a record's meaning changes in a way old builds must not read.
// 2: booking_states and closed_bookings (close); a version 1 dir is upgraded in place (the new
// databases start empty), and a version 1 build refuses a version 2 dir, which it would read as
// having no closed bookings.
inline constexpr std::uint64_t kSchemaVersion = 2;

// 8 bytes, most significant first, so that bytewise order is numeric order.
std::string be64(std::uint64_t value);
// Throws StoreError(io) unless `bytes` is exactly 8 bytes.
std::uint64_t from_be64(std::string_view bytes);

// booking '\0': the prefix of every key of the booking in the composite-key databases.
// Throws std::invalid_argument for an empty booking or one holding '\0' (the layout relies on it).
std::string booking_prefix(std::string_view booking);
// The first key after every key of the booking's prefix (booking '\x01'): seek here, step back.
std::string booking_end(std::string_view booking);

std::string message(std::string_view booking, std::uint64_t seq);
std::string message_id(std::string_view booking, std::string_view message_id);
std::string call(std::string_view booking, std::string_view call_id);
std::string ringing_call(std::string_view booking, std::string_view call_id);
std::string connection(std::string_view booking, std::string_view client_id);
std::string booking_state(std::string_view booking);
// be64(closed_at) booking: oldest close first.
std::string closed_booking(std::int64_t closed_at, std::string_view booking);
std::string active_call(std::string_view booking);
std::string presence(std::string_view booking);
std::string read_receipts(std::string_view booking);

// The append path's keys, written over `out` and returned: a buffer reused from key to key
// allocates only when a key outgrows it. Same bytes as message() and message_id().
const std::string& message_into(std::string& out, std::string_view booking, std::uint64_t seq);
const std::string& message_id_into(std::string& out, std::string_view booking, std::string_view message_id);

bool has_prefix(std::string_view key, std::string_view prefix);
// The seq of a messages key that starts with `prefix`; throws StoreError(io) on a malformed key.
std::uint64_t message_seq(std::string_view key, std::string_view prefix);

}  // namespace navietakie::keys
