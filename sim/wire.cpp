#include "sim/wire.hpp"

namespace navietakie::sim {
namespace {

using nlohmann::json;

bool read_string(const json& record, const char* key, std::string& out) {
  auto it = record.find(key);
  if (it == record.end() || !it->is_string()) return false;
  out = it->get<std::string>();
  return true;
}

bool read_int(const json& record, const char* key, std::int64_t& out) {
  auto it = record.find(key);
  if (it == record.end() || !it->is_number_integer()) return false;
  out = it->get<std::int64_t>();
  return true;
}

std::uint64_t mix(std::uint64_t h, std::string_view bytes) {
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  h ^= 0xff;  // field separator: ("ab","c") and ("a","bc") differ
  h *= 0x100000001b3ULL;
  return h;
}

}  // namespace

const char* to_string(Role role) { return role == Role::driver ? "driver" : "passenger"; }

std::optional<MessageView> read_message(const json& record) {
  if (!record.is_object()) return std::nullopt;
  MessageView m;
  if (!read_string(record, "booking_code", m.booking_code) || !read_int(record, "seq", m.seq) ||
      !read_string(record, "message_id", m.message_id) || !read_string(record, "type", m.type) ||
      !read_string(record, "sender", m.sender) || !read_int(record, "ts", m.ts)) {
    return std::nullopt;
  }
  if (record.contains("text") && !read_string(record, "text", m.text)) return std::nullopt;
  return m;
}

std::uint64_t fingerprint(const MessageView& m) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  h = mix(h, m.booking_code);
  h = mix(h, std::to_string(m.seq));
  h = mix(h, m.message_id);
  h = mix(h, m.type);
  h = mix(h, m.sender);
  h = mix(h, m.text);
  h = mix(h, std::to_string(m.ts));
  return h;
}

std::optional<CallView> read_call(const json& record) {
  if (!record.is_object()) return std::nullopt;
  CallView c;
  if (!read_string(record, "booking_code", c.booking_code) || !read_string(record, "call_id", c.call_id) ||
      !read_string(record, "from", c.from) || !read_string(record, "to", c.to) ||
      !read_string(record, "state", c.state)) {
    return std::nullopt;
  }
  auto reason = record.find("end_reason");
  if (reason != record.end() && !reason->is_null()) {
    if (!reason->is_string()) return std::nullopt;
    c.end_reason = reason->get<std::string>();
  }
  return c;
}

std::uint64_t fnv1a(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string make_text(std::string_view message_id, std::size_t bytes, std::uint64_t salt) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz .,!?0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  std::string text;
  text.reserve(bytes);
  text.append(message_id.substr(0, bytes));
  if (text.size() < bytes) text.push_back(' ');
  std::uint64_t x = salt | 1;
  while (text.size() < bytes) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    text.push_back(kAlphabet[x % (sizeof kAlphabet - 1)]);
  }
  return text;
}

std::string send_message_request(std::string_view message_id, Role sender, std::string_view text) {
  std::string p;
  p.reserve(message_id.size() + text.size() + 64);
  p.append(R"({"message_id":")").append(message_id);
  p.append(R"(","sender":")").append(to_string(sender));
  p.append(R"(","text":")").append(text).append("\"}");
  return p;
}

std::string get_message_request(int limit, std::optional<std::int64_t> before_seq) {
  std::string p = R"({"limit":)" + std::to_string(limit);
  if (before_seq) p += R"(,"before_seq":)" + std::to_string(*before_seq);
  return p + "}";
}

std::string get_message_after_request(int limit, std::int64_t after_seq) {
  return R"({"limit":)" + std::to_string(limit) + R"(,"after_seq":)" + std::to_string(after_seq) + "}";
}

std::string make_call_request(std::string_view action, std::string_view call_id, Role by) {
  std::string p = R"({"action":")";
  p.append(action).append(R"(","call_id":")").append(call_id);
  p.append(R"(","by":")").append(to_string(by)).append("\"}");
  return p;
}

std::string presence_request(Role role, bool online, std::string_view client_id) {
  std::string p = R"({"role":")";
  p.append(to_string(role)).append(R"(","online":)").append(online ? "true" : "false");
  p.append(R"(,"client_id":")").append(client_id).append("\"}");
  return p;
}

}  // namespace navietakie::sim
