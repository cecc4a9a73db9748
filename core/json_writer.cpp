#include "core/json_writer.hpp"

#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include <rapidjson/encodings.h>
#include <rapidjson/memorystream.h>
#include <nlohmann/json.hpp>

namespace navietakie {
namespace {

}  // namespace

struct JsonWriter::Slot {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer{buffer};
};

namespace {

// Slots a thread has used and keeps for its next replies, so that writing one allocates only the
// finished text. A few, as a writer may be open while another writes a record to splice.
std::vector<std::unique_ptr<JsonWriter::Slot>>& spare_slots() {
  thread_local std::vector<std::unique_ptr<JsonWriter::Slot>> spare;
  return spare;
}
constexpr std::size_t kSpareSlotsKept = 4;
// A buffer grown past this by a large history page goes back to the heap rather than stay with
// the thread.
constexpr std::size_t kSpareBufferMaxBytes = 256 * 1024;

std::unique_ptr<JsonWriter::Slot> take_slot() {
  auto& spare = spare_slots();
  if (spare.empty()) return std::make_unique<JsonWriter::Slot>();
  auto slot = std::move(spare.back());
  spare.pop_back();
  return slot;
}

// Whether the UTF-8 sequence starting at `text` decodes; on success `length` is its byte count.
bool decode_one(std::string_view text, std::size_t& length) {
  rapidjson::MemoryStream in(text.data(), text.size());
  struct Discard {
    void Put(char) {}
  } out;
  // MemoryStream reads NUL past its end, which is never a continuation byte: a truncated sequence
  // fails.
  if (!rapidjson::UTF8<>::Validate(in, out)) return false;
  length = in.Tell();
  return true;
}

bool valid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    std::size_t length = 0;
    if (!decode_one(text.substr(i), length)) return false;
    i += length;
  }
  return true;
}

// Every byte that does not start a valid sequence becomes U+FFFD.
std::string replace_invalid_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t length = 0;
    if (decode_one(text.substr(i), length)) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

rapidjson::SizeType size_of(std::string_view text) { return static_cast<rapidjson::SizeType>(text.size()); }

}  // namespace

JsonWriter::JsonWriter() : slot_(take_slot()), buffer_(slot_->buffer), writer_(slot_->writer) {
  buffer_.Clear();
  writer_.Reset(buffer_);
}

JsonWriter::~JsonWriter() {
  auto& spare = spare_slots();
  if (spare.size() < kSpareSlotsKept && buffer_.GetSize() <= kSpareBufferMaxBytes) spare.push_back(std::move(slot_));
}

JsonWriter& JsonWriter::begin_object() {
  writer_.StartObject();
  return *this;
}

JsonWriter& JsonWriter::end_object() {
  writer_.EndObject();
  return *this;
}

JsonWriter& JsonWriter::begin_array() {
  writer_.StartArray();
  return *this;
}

JsonWriter& JsonWriter::end_array() {
  writer_.EndArray();
  return *this;
}

JsonWriter& JsonWriter::key(std::string_view name) {
  writer_.Key(name.data(), size_of(name));
  return *this;
}

JsonWriter& JsonWriter::string(std::string_view text) {
  if (valid_utf8(text)) {
    writer_.String(text.data(), size_of(text));
  } else {
    const std::string replaced = replace_invalid_utf8(text);
    writer_.String(replaced.data(), size_of(replaced));
  }
  return *this;
}

JsonWriter& JsonWriter::number(std::uint64_t value) {
  writer_.Uint64(value);
  return *this;
}

JsonWriter& JsonWriter::number(std::int64_t value) {
  writer_.Int64(value);
  return *this;
}

JsonWriter& JsonWriter::number(double value) {
  if (!std::isfinite(value)) return null();
  std::array<char, 64> text{};
  const char* end = nlohmann::detail::to_chars(text.data(), text.data() + text.size(), value);
  writer_.RawValue(text.data(), static_cast<std::size_t>(end - text.data()), rapidjson::kNumberType);
  return *this;
}

JsonWriter& JsonWriter::boolean(bool value) {
  writer_.Bool(value);
  return *this;
}

JsonWriter& JsonWriter::null() {
  writer_.Null();
  return *this;
}

JsonWriter& JsonWriter::raw(std::string_view json) {
  // The writer's RawValue copies byte by byte: let it write the separator only, then copy the
  // text in one go (a message spliced into a reply is most of the reply).
  writer_.RawValue(json.data(), 0, rapidjson::kObjectType);
  std::memcpy(buffer_.Push(json.size()), json.data(), json.size());
  return *this;
}

std::string JsonWriter::str() const { return std::string(buffer_.GetString(), buffer_.GetSize()); }

}  // namespace navietakie
