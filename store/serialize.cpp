#include "store/serialize.hpp"

#include <cereal/archives/portable_binary.hpp>
#include <cereal/cereal.hpp>

#include <cstdint>
#include <istream>
#include <ostream>
#include <stdexcept>
#include <streambuf>

#include "store/store.hpp"

// Declared before any use: cereal writes this number in front of each type's first record.
CEREAL_CLASS_VERSION(navietakie::Message, 1)
CEREAL_CLASS_VERSION(navietakie::Call, 1)
CEREAL_CLASS_VERSION(navietakie::Connection, 1)
CEREAL_CLASS_VERSION(navietakie::RolePresence, 1)
CEREAL_CLASS_VERSION(navietakie::Presence, 1)
CEREAL_CLASS_VERSION(navietakie::BookingState, 1)
CEREAL_CLASS_VERSION(navietakie::RoleRead, 1)
CEREAL_CLASS_VERSION(navietakie::ReadReceipts, 1)

namespace navietakie {
namespace {

// A garbage length must not turn into a huge allocation before the read fails. Stored fields are
// bounded far below this by the protocol limits (64 KiB payloads).
constexpr std::uint64_t kMaxFieldBytes = std::uint64_t{16} << 20;

StoreError corrupt(const std::string& what) { return StoreError(StoreError::Kind::io, "corrupt record: " + what); }

// Reads straight from the bytes (an MDB_val while its txn is open) without copying them first, and
// tells the loading field helpers how many bytes are left, so that a declared length is checked
// against them before anything is allocated for it.
class ViewBuffer : public std::streambuf {
 public:
  explicit ViewBuffer(std::string_view bytes) {
    // The get area is only ever read from; streambuf just has no const flavour.
    char* begin = const_cast<char*>(bytes.data());
    setg(begin, begin, begin + bytes.size());
  }
  std::uint64_t bytes_left() const { return static_cast<std::uint64_t>(egptr() - gptr()); }
};

// The archive decode_record reads with: cereal's portable binary one, knowing its ViewBuffer.
// cereal hands serialize() the base type, so the helpers below cast back to this one (cereal's own
// UserDataAdapter does the same, but is compiled only under CEREAL_FUTURE_EXPERIMENTAL).
class ViewInputArchive : public cereal::PortableBinaryInputArchive {
 public:
  ViewInputArchive(ViewBuffer& buffer, std::istream& in) : cereal::PortableBinaryInputArchive(in), buffer_(buffer) {}
  std::uint64_t bytes_left() const { return buffer_.bytes_left(); }

 private:
  ViewBuffer& buffer_;
};

std::uint64_t bytes_left(cereal::PortableBinaryInputArchive& ar) {
  const auto* view = dynamic_cast<const ViewInputArchive*>(&ar);
  if (view == nullptr) throw std::logic_error("records are decoded only through decode_record");
  return view->bytes_left();
}

// Field helpers: each writes an explicit, fixed format, and checks what it reads back.

template <class Archive>
void string_field(Archive& ar, std::string& s) {
  std::uint64_t size = s.size();
  ar(size);
  if constexpr (Archive::is_loading::value) {
    if (size > kMaxFieldBytes) throw corrupt("string length " + std::to_string(size));
    const std::uint64_t left = bytes_left(ar);
    if (size > left) {
      throw corrupt("string length " + std::to_string(size) + " exceeds the " + std::to_string(left) + " bytes left");
    }
    s.resize(static_cast<std::size_t>(size));
  }
  ar(cereal::binary_data(s.data(), s.size()));
}

// A bool as one byte, 0 or 1 (loading a raw byte into a bool would accept any value).
template <class Archive>
void flag_field(Archive& ar, bool& b) {
  std::uint8_t raw = b ? 1 : 0;
  ar(raw);
  if constexpr (Archive::is_loading::value) {
    if (raw > 1) throw corrupt("flag byte " + std::to_string(raw));
    b = raw == 1;
  }
}

template <class Archive, class Enum>
void enum_field(Archive& ar, Enum& e, Enum last) {
  auto raw = static_cast<std::uint8_t>(e);
  ar(raw);
  if constexpr (Archive::is_loading::value) {
    if (raw > static_cast<std::uint8_t>(last)) throw corrupt("enum value " + std::to_string(raw));
    e = static_cast<Enum>(raw);
  }
}

// std::optional by hand: a presence flag, then the value when present.
template <class Archive>
void optional_field(Archive& ar, std::optional<std::string>& v) {
  bool present = v.has_value();
  flag_field(ar, present);
  if constexpr (Archive::is_loading::value) {
    if (present)
      v.emplace();
    else
      v.reset();
  }
  if (v) string_field(ar, *v);
}

template <class Archive>
void optional_field(Archive& ar, std::optional<Millis>& v) {
  bool present = v.has_value();
  flag_field(ar, present);
  if constexpr (Archive::is_loading::value) {
    if (present)
      v.emplace();
    else
      v.reset();
  }
  if (v) ar(*v);
}

void check_version(const char* type, std::uint32_t version) {
  if (version != 1) throw corrupt(std::string(type) + " version " + std::to_string(version) + " unknown");
}

}  // namespace

// Found by cereal through ADL. Version 1 is the first on-disk format; a later version adds its
// fields under `if (version >= 2)` and keeps reading these.

template <class Archive>
void serialize(Archive& ar, Message& m, std::uint32_t version) {
  check_version("Message", version);
  string_field(ar, m.booking_code);
  ar(m.seq);
  string_field(ar, m.message_id);
  enum_field(ar, m.type, MessageType::system);
  enum_field(ar, m.sender, Role::system);
  optional_field(ar, m.sender_id);
  string_field(ar, m.text);
  string_field(ar, m.data_json);
  ar(m.ts);
}

template <class Archive>
void serialize(Archive& ar, Call& c, std::uint32_t version) {
  check_version("Call", version);
  string_field(ar, c.booking_code);
  string_field(ar, c.call_id);
  enum_field(ar, c.from, Role::system);
  enum_field(ar, c.to, Role::system);
  enum_field(ar, c.state, CallState::ended);
  // booking_closed (5) joined the range with close: an older build reads such a call as corrupt.
  enum_field(ar, c.end_reason, EndReason::booking_closed);
  ar(c.created_at);
  optional_field(ar, c.connected_at);
  optional_field(ar, c.ended_at);
  ar(c.ring_deadline);
}

template <class Archive>
void serialize(Archive& ar, Connection& c, std::uint32_t version) {
  check_version("Connection", version);
  string_field(ar, c.booking_code);
  string_field(ar, c.client_id);
  enum_field(ar, c.role, Role::system);
  flag_field(ar, c.online);
  ar(c.since);
}

template <class Archive>
void serialize(Archive& ar, RolePresence& p, std::uint32_t version) {
  check_version("RolePresence", version);
  flag_field(ar, p.online);
  optional_field(ar, p.since);
}

template <class Archive>
void serialize(Archive& ar, Presence& p, std::uint32_t version) {
  check_version("Presence", version);
  string_field(ar, p.booking_code);
  ar(p.driver, p.passenger);
}

// Read receipts (mark_read), added after the other records: a data dir from before them simply has
// none, so the table is new rather than a new version of an old record.
template <class Archive>
void serialize(Archive& ar, RoleRead& r, std::uint32_t version) {
  check_version("RoleRead", version);
  ar(r.seq);
  optional_field(ar, r.at);
}

template <class Archive>
void serialize(Archive& ar, ReadReceipts& r, std::uint32_t version) {
  check_version("ReadReceipts", version);
  string_field(ar, r.booking_code);
  ar(r.driver, r.passenger);
}

template <class Archive>
void serialize(Archive& ar, BookingState& b, std::uint32_t version) {
  check_version("BookingState", version);
  string_field(ar, b.booking_code);
  flag_field(ar, b.closed);
  ar(b.closed_at);
  optional_field(ar, b.reason);
}

namespace {

// Appends what cereal writes to a std::string the caller owns: no stream buffer of its own to
// grow and then copy out (std::ostringstream), and a reused string keeps its capacity. cereal's
// portable binary archive writes with sputn only, which an empty put area sends to xsputn.
class StringSink : public std::streambuf {
 public:
  explicit StringSink(std::string& out) : out_(out) {}

 protected:
  std::streamsize xsputn(const char* bytes, std::streamsize count) override {
    out_.append(bytes, static_cast<std::size_t>(count));
    return count;
  }
  int_type overflow(int_type c) override {
    if (!traits_type::eq_int_type(c, traits_type::eof())) out_.push_back(traits_type::to_char_type(c));
    return traits_type::not_eof(c);
  }

 private:
  std::string& out_;
};

// Room for a record's fixed fields, version words and length prefixes: one reservation, not a
// string doubling its way up.
constexpr std::size_t kRecordOverhead = 96;

std::size_t size_hint(const Message& m) {
  return kRecordOverhead + m.booking_code.size() + m.message_id.size() + (m.sender_id ? m.sender_id->size() : 0) +
         m.text.size() + m.data_json.size();
}
std::size_t size_hint(const Call& c) { return kRecordOverhead + c.booking_code.size() + c.call_id.size(); }
std::size_t size_hint(const Connection& c) { return kRecordOverhead + c.booking_code.size() + c.client_id.size(); }
std::size_t size_hint(const Presence& p) { return kRecordOverhead + p.booking_code.size(); }
std::size_t size_hint(const BookingState& b) {
  return kRecordOverhead + b.booking_code.size() + (b.reason ? b.reason->size() : 0);
}
std::size_t size_hint(const ReadReceipts& r) { return kRecordOverhead + r.booking_code.size(); }

// A fresh archive per record: cereal writes a type's version before its first record in an
// archive, so one archive reused across records would leave the version out of all but the first.
template <class Record>
void encode_record(const Record& record, std::string& out) {
  out.clear();
  out.reserve(size_hint(record));
  StringSink sink(out);
  std::ostream stream(&sink);
  cereal::PortableBinaryOutputArchive ar(stream);
  ar(record);
}

template <class Record>
std::string encode_record(const Record& record) {
  std::string out;
  encode_record(record, out);
  return out;
}

template <class Record>
Record decode_record(std::string_view bytes, const char* type) {
  ViewBuffer buffer(bytes);
  std::istream in(&buffer);
  Record record;
  try {
    ViewInputArchive ar(buffer, in);
    ar(record);
  } catch (const StoreError&) {
    throw;
  } catch (const std::exception& e) {  // cereal::Exception on truncation, length_error, bad_alloc
    throw corrupt(std::string(type) + ": " + e.what());
  }
  if (buffer.in_avail() != 0) throw corrupt(std::string(type) + ": trailing bytes");
  return record;
}

}  // namespace

std::string encode(const Message& message) { return encode_record(message); }
std::string encode(const Call& call) { return encode_record(call); }
std::string encode(const Connection& connection) { return encode_record(connection); }
std::string encode(const Presence& presence) { return encode_record(presence); }
std::string encode(const ReadReceipts& receipts) { return encode_record(receipts); }
std::string encode(const BookingState& state) { return encode_record(state); }

void encode_into(const Message& message, std::string& out) { encode_record(message, out); }
void encode_into(const Call& call, std::string& out) { encode_record(call, out); }
void encode_into(const Connection& connection, std::string& out) { encode_record(connection, out); }
void encode_into(const Presence& presence, std::string& out) { encode_record(presence, out); }
void encode_into(const ReadReceipts& receipts, std::string& out) { encode_record(receipts, out); }
void encode_into(const BookingState& state, std::string& out) { encode_record(state, out); }

Message decode_message(std::string_view bytes) { return decode_record<Message>(bytes, "Message"); }
Call decode_call(std::string_view bytes) { return decode_record<Call>(bytes, "Call"); }
Connection decode_connection(std::string_view bytes) { return decode_record<Connection>(bytes, "Connection"); }
Presence decode_presence(std::string_view bytes) { return decode_record<Presence>(bytes, "Presence"); }
ReadReceipts decode_read_receipts(std::string_view bytes) {
  return decode_record<ReadReceipts>(bytes, "ReadReceipts");
}
BookingState decode_booking_state(std::string_view bytes) {
  return decode_record<BookingState>(bytes, "BookingState");
}

}  // namespace navietakie
