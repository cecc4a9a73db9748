// The on-disk record encoding: round trips, the version-1 bytes pinned, garbage refused.
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "store/keys.hpp"
#include "store/serialize.hpp"
#include "store/store.hpp"

using namespace navietakie;

namespace {

std::string from_hex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

std::string to_hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0x0fU]);
  }
  return out;
}

bool is_io_error(const StoreError& e) { return e.kind() == StoreError::Kind::io; }

Message sample_message() {
  Message m;
  m.booking_code = "BK1";
  m.seq = 7;
  m.message_id = "m-1";
  m.type = MessageType::text;
  m.sender = Role::passenger;
  m.sender_id = "p-9";
  m.text = "hi";
  m.data_json = "{}";
  m.ts = 1764160000123;
  return m;
}

Call sample_call() {
  Call c;
  c.booking_code = "BK1";
  c.call_id = "c-1";
  c.from = Role::driver;
  c.to = Role::passenger;
  c.state = CallState::ended;
  c.end_reason = EndReason::completed;
  c.created_at = 1764160000000;
  c.connected_at = 1764160004000;
  c.ended_at = 1764160064000;
  c.ring_deadline = 1764160030000;
  return c;
}

Connection sample_connection() {
  Connection c;
  c.booking_code = "BK1";
  c.client_id = "cl-1";
  c.role = Role::passenger;
  c.online = true;
  c.since = 1764160000000;
  return c;
}

Presence sample_presence() {
  Presence p;
  p.booking_code = "BK1";
  p.driver = RolePresence{true, Millis{1764160000000}};
  p.passenger = RolePresence{false, std::nullopt};
  return p;
}

// Version-1 bytes as written by the first release (computed independently of the encoder:
// endianness byte 01, each type's u32 class version before its first record, u64 string lengths,
// enums as u8, optionals as a 0/1 byte then the value, little-endian integers).
// If one of these changes, the on-disk format changed: add a class version instead.
const std::string kMessageV1 =
    "01010000000300000000000000424b31070000000000000003000000000000006d2d3100010103000000000000"
    "00702d390200000000000000686902000000000000007b7d7b5021c09a010000";
const std::string kCallV1 =
    "01010000000300000000000000424b310300000000000000632d3100010201005021c09a01000001a05f21c09a"
    "01000001004a22c09a01000030c521c09a010000";
const std::string kConnectionV1 = "01010000000300000000000000424b310400000000000000636c2d310101005021c09a010000";
const std::string kPresenceV1 = "01010000000300000000000000424b31010000000101005021c09a0100000000";

}  // namespace

BOOST_AUTO_TEST_SUITE(serialize)

BOOST_AUTO_TEST_CASE(message_round_trip_with_and_without_optionals) {
  Message m = sample_message();
  BOOST_TEST((decode_message(encode(m)) == m));
  m.sender_id.reset();
  m.text.clear();
  m.data_json = R"({"call_id":"c-1","state":"ended"})";
  m.type = MessageType::call;
  m.sender = Role::system;
  BOOST_TEST((decode_message(encode(m)) == m));
  BOOST_TEST((decode_message(encode(Message{})) == Message{}));
}

BOOST_AUTO_TEST_CASE(call_round_trip_with_and_without_optionals) {
  Call c = sample_call();
  BOOST_TEST((decode_call(encode(c)) == c));
  c.connected_at.reset();
  c.ended_at.reset();
  c.state = CallState::ringing;
  c.end_reason = EndReason::none;
  BOOST_TEST((decode_call(encode(c)) == c));
  c.ended_at = 5;  // ended without connecting (declined)
  BOOST_TEST((decode_call(encode(c)) == c));
}

BOOST_AUTO_TEST_CASE(connection_and_presence_round_trip) {
  BOOST_TEST((decode_connection(encode(sample_connection())) == sample_connection()));
  BOOST_TEST((decode_connection(encode(Connection{})) == Connection{}));
  Presence p = sample_presence();
  BOOST_TEST((decode_presence(encode(p)) == p));
  p.passenger.since = 42;
  p.driver = RolePresence{};
  BOOST_TEST((decode_presence(encode(p)) == p));
}

BOOST_AUTO_TEST_CASE(version_1_bytes_are_stable) {
  BOOST_TEST(to_hex(encode(sample_message())) == kMessageV1);
  BOOST_TEST(to_hex(encode(sample_call())) == kCallV1);
  BOOST_TEST(to_hex(encode(sample_connection())) == kConnectionV1);
  BOOST_TEST(to_hex(encode(sample_presence())) == kPresenceV1);
}

// The LMDB store encodes into one buffer reused from record to record: whatever it held before
// (a longer record, another type), the bytes are those of encode(), version words included.
BOOST_AUTO_TEST_CASE(a_reused_buffer_holds_the_same_bytes) {
  std::string buffer;
  Message long_one = sample_message();
  long_one.text = std::string(1000, 'z');
  encode_into(long_one, buffer);
  BOOST_TEST((decode_message(buffer) == long_one));
  encode_into(sample_message(), buffer);
  BOOST_TEST(to_hex(buffer) == kMessageV1);
  encode_into(sample_presence(), buffer);
  BOOST_TEST(to_hex(buffer) == kPresenceV1);
  encode_into(sample_call(), buffer);
  BOOST_TEST(to_hex(buffer) == kCallV1);
  encode_into(sample_connection(), buffer);
  BOOST_TEST(to_hex(buffer) == kConnectionV1);
  encode_into(sample_message(), buffer);
  BOOST_TEST(to_hex(buffer) == kMessageV1);
}

// The append path's keys, built in reused buffers, are the keys every reader looks up.
BOOST_AUTO_TEST_CASE(keys_built_in_a_buffer_match) {
  std::string key = "a previous, longer key left in the buffer";
  BOOST_TEST((keys::message_into(key, "BK1", 0x0102030405060708ULL) == keys::message("BK1", 0x0102030405060708ULL)));
  BOOST_TEST(key == std::string("BK1\0\x01\x02\x03\x04\x05\x06\x07\x08", 12));
  BOOST_TEST((keys::message_id_into(key, "BK10", "m-1") == keys::message_id("BK10", "m-1")));
  BOOST_TEST(key == std::string("BK10\0m-1", 8));
  BOOST_CHECK_THROW(keys::message_id_into(key, "", "m-1"), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(version_1_bytes_still_decode) {
  BOOST_TEST((decode_message(from_hex(kMessageV1)) == sample_message()));
  BOOST_TEST((decode_call(from_hex(kCallV1)) == sample_call()));
  BOOST_TEST((decode_connection(from_hex(kConnectionV1)) == sample_connection()));
  BOOST_TEST((decode_presence(from_hex(kPresenceV1)) == sample_presence()));
}

BOOST_AUTO_TEST_CASE(every_truncation_is_refused) {
  const std::string bytes = encode(sample_message());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    BOOST_CHECK_EXCEPTION(decode_message(bytes.substr(0, n)), StoreError, is_io_error);
  }
  const std::string call = encode(sample_call());
  for (std::size_t n = 0; n < call.size(); ++n) {
    BOOST_CHECK_EXCEPTION(decode_call(call.substr(0, n)), StoreError, is_io_error);
  }
}

BOOST_AUTO_TEST_CASE(garbage_is_refused) {
  BOOST_CHECK_EXCEPTION(decode_message(std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 13)),
                        StoreError, is_io_error);
  BOOST_CHECK_EXCEPTION(decode_presence("not a record at all"), StoreError, is_io_error);
  BOOST_CHECK_EXCEPTION(decode_message(encode(sample_message()) + "x"), StoreError, is_io_error);  // trailing

  // A Call decoded as a Message: structure does not fit.
  BOOST_CHECK_EXCEPTION(decode_message(encode(sample_call())), StoreError, is_io_error);

  std::string bytes = from_hex(kMessageV1);
  std::string bad = bytes;
  bad[1] = '\x02';  // class version 2 does not exist
  BOOST_CHECK_EXCEPTION(decode_message(bad), StoreError, is_io_error);
  bad = bytes;
  bad[5 + 8 + 3 + 8 + 8 + 3] = '\x09';  // message type out of range
  BOOST_CHECK_EXCEPTION(decode_message(bad), StoreError, is_io_error);
  bad = bytes;
  bad[5 + 8 + 3 + 8 + 8 + 3 + 2] = '\x07';  // sender_id presence flag neither 0 nor 1
  BOOST_CHECK_EXCEPTION(decode_message(bad), StoreError, is_io_error);
  bad = bytes;
  bad[5 + 7] = '\x7f';  // booking_code length ~ 2^62: refused, not allocated
  BOOST_CHECK_EXCEPTION(decode_message(bad), StoreError, is_io_error);
  bad = bytes;
  bad[5 + 3] = '\x01';  // booking_code length 16 MiB + 3: refused before allocating
  BOOST_CHECK_EXCEPTION(decode_message(bad), StoreError, is_io_error);
}

// A length under the 16 MiB cap but beyond the bytes that follow it is refused by comparing the
// two, before anything is allocated for it (the error says so), not by a failed read afterwards.
BOOST_AUTO_TEST_CASE(a_declared_length_beyond_the_bytes_left_is_refused_before_allocating) {
  const auto names_bytes_left = [](const StoreError& e) {
    return is_io_error(e) && std::string(e.what()).find("bytes left") != std::string::npos;
  };
  std::string bad = from_hex(kMessageV1);
  bad[5 + 2] = '\x10';  // booking_code length 1 MiB + 3, in a record of 80 bytes
  BOOST_CHECK_EXCEPTION(decode_message(bad), StoreError, names_bytes_left);
  std::string call = from_hex(kCallV1);
  call[5 + 8 + 3 + 1] = '\x7f';  // call_id length 0x7f03: far more than is left
  BOOST_CHECK_EXCEPTION(decode_call(call), StoreError, names_bytes_left);
}

// Read receipts, the record added by issue 13: round trip, stable version-1 bytes, refusals.
BOOST_AUTO_TEST_CASE(read_receipts_round_trip_and_version_1_bytes) {
  ReadReceipts r{"BK1", RoleRead{12, Millis{1764160000000}}, RoleRead{}};
  BOOST_TEST((decode_read_receipts(encode(r)) == r));
  BOOST_TEST((decode_read_receipts(encode(ReadReceipts{})) == ReadReceipts{}));
  const std::string v1 = to_hex(encode(r));
  BOOST_TEST((decode_read_receipts(from_hex(v1)) == r));
  std::string buffer = encode(sample_message());  // a reused, longer buffer
  encode_into(r, buffer);
  BOOST_TEST(to_hex(buffer) == v1);
  const std::string bytes = encode(r);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    BOOST_CHECK_EXCEPTION(decode_read_receipts(bytes.substr(0, n)), StoreError, is_io_error);
  }
  BOOST_CHECK_EXCEPTION(decode_read_receipts(bytes + "x"), StoreError, is_io_error);
  BOOST_CHECK_EXCEPTION(decode_read_receipts(encode(sample_presence())), StoreError, is_io_error);
}

BOOST_AUTO_TEST_SUITE_END()
