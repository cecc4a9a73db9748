#include "store/keys.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>

#include "store/store.hpp"

namespace navietakie::keys {

std::uint64_t from_be64(std::string_view bytes) {
  if (bytes.size() != 8) {
    throw StoreError(StoreError::Kind::io, "corrupt store: expected 8 bytes, got " + std::to_string(bytes.size()));
  }
  std::uint64_t value = 0;
  for (char c : bytes) value = (value << 8) | static_cast<unsigned char>(c);
  return value;
}

namespace {

void check_booking(std::string_view booking) {
  if (booking.empty() || booking.find('\0') != std::string_view::npos) {
    throw std::invalid_argument("store: booking code must be non-empty and hold no NUL");
  }
}

const std::string& composite_into(std::string& key, std::string_view booking, std::string_view rest) {
  check_booking(booking);
  key.assign(booking);
  key.push_back('\0');
  key.append(rest);
  return key;
}

std::string composite(std::string_view booking, std::string_view rest) {
  std::string key;
  composite_into(key, booking, rest);
  return key;
}

// be64 into a stack array: the key's 8 seq bytes without a string of their own.
std::array<char, 8> be64_bytes(std::uint64_t value) {
  std::array<char, 8> out{};
  for (std::size_t i = 0; i < 8; ++i) {
    out[7 - i] = static_cast<char>(static_cast<unsigned char>(value & 0xffU));
    value >>= 8;
  }
  return out;
}

}  // namespace

std::string booking_prefix(std::string_view booking) {
  check_booking(booking);
  std::string key(booking);
  key.push_back('\0');
  return key;
}

std::string booking_end(std::string_view booking) {
  check_booking(booking);
  std::string key(booking);
  key.push_back('\x01');
  return key;
}

std::string be64(std::uint64_t value) {
  const auto bytes = be64_bytes(value);
  return std::string(bytes.data(), bytes.size());
}

std::string message(std::string_view booking, std::uint64_t seq) {
  std::string key;
  message_into(key, booking, seq);
  return key;
}

const std::string& message_into(std::string& out, std::string_view booking, std::uint64_t seq) {
  const auto bytes = be64_bytes(seq);
  return composite_into(out, booking, std::string_view(bytes.data(), bytes.size()));
}

const std::string& message_id_into(std::string& out, std::string_view booking, std::string_view message_id) {
  return composite_into(out, booking, message_id);
}

std::string message_id(std::string_view booking, std::string_view message_id) { return composite(booking, message_id); }

std::string call(std::string_view booking, std::string_view call_id) { return composite(booking, call_id); }

std::string ringing_call(std::string_view booking, std::string_view call_id) { return call(booking, call_id); }

std::string connection(std::string_view booking, std::string_view client_id) { return composite(booking, client_id); }

std::string active_call(std::string_view booking) {
  check_booking(booking);
  return std::string(booking);
}

std::string presence(std::string_view booking) {
  check_booking(booking);
  return std::string(booking);
}

std::string read_receipts(std::string_view booking) {
  check_booking(booking);
  return std::string(booking);
}

std::string booking_state(std::string_view booking) { return presence(booking); }

std::string closed_booking(std::int64_t closed_at, std::string_view booking) {
  check_booking(booking);
  // Times before the epoch do not occur; clamped so that the unsigned order is the time order.
  std::string key = be64(static_cast<std::uint64_t>(std::max<std::int64_t>(closed_at, 0)));
  key.append(booking);
  return key;
}

bool has_prefix(std::string_view key, std::string_view prefix) {
  return key.size() >= prefix.size() && key.compare(0, prefix.size(), prefix) == 0;
}

std::uint64_t message_seq(std::string_view key, std::string_view prefix) {
  if (!has_prefix(key, prefix)) throw StoreError(StoreError::Kind::io, "corrupt store: message key prefix");
  return from_be64(key.substr(prefix.size()));
}

}  // namespace navietakie::keys
