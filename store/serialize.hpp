// The on-disk encoding of stored records: cereal's portable binary archive (little-endian, with a
// byte recording the endianness), each record type versioned with CEREAL_CLASS_VERSION.
// Changing a field means a new class version whose serialize() still reads the old ones.
#pragma once

#include <string>
#include <string_view>

#include "store/records.hpp"

namespace navietakie {

std::string encode(const Message& message);
std::string encode(const Call& call);
std::string encode(const Connection& connection);
std::string encode(const Presence& presence);
std::string encode(const BookingState& state);
std::string encode(const ReadReceipts& receipts);

// The same bytes, written over `out`. Its capacity is kept: a buffer reused from record to record
// (the LMDB store keeps one for its write transactions) allocates only when a record outgrows it.
void encode_into(const Message& message, std::string& out);
void encode_into(const Call& call, std::string& out);
void encode_into(const Connection& connection, std::string& out);
void encode_into(const BookingState& state, std::string& out);
void encode_into(const Presence& presence, std::string& out);
void encode_into(const ReadReceipts& receipts, std::string& out);

// Each throws StoreError(io) on bytes that are not a whole, valid record of its type
// (truncated, trailing bytes, unknown version, out-of-range enum); it never reads past `bytes`.
Message decode_message(std::string_view bytes);
Call decode_call(std::string_view bytes);
BookingState decode_booking_state(std::string_view bytes);
Connection decode_connection(std::string_view bytes);
Presence decode_presence(std::string_view bytes);
ReadReceipts decode_read_receipts(std::string_view bytes);

}  // namespace navietakie
