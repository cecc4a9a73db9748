// A request payload parsed by RapidJSON: strict JSON in UTF-8, validated as nlohmann's parser
// validated it before (the same payloads accepted and refused, the same values kept), without a
// heap allocation per value.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>

#include "core/json_rapidjson.hpp"

namespace navietakie {

class JsonWriter;

// A parse arena on the stack: small requests allocate nothing, larger ones take heap chunks.
using JsonPool = rapidjson::MemoryPoolAllocator<rapidjson::CrtAllocator>;
using JsonDocument = rapidjson::GenericDocument<rapidjson::UTF8<>, JsonPool, JsonPool>;
using JsonValue = JsonDocument::ValueType;

class RequestBody {
 public:
  // Throws ProtocolError(invalid_json) if the payload is not one JSON value in UTF-8. (A template
  // only so that a braced list, an nlohmann object in the tests, never converts to a payload.)
  template <class Text, std::enable_if_t<std::is_convertible_v<const Text&, std::string_view>, int> = 0>
  explicit RequestBody(const Text& payload) : RequestBody(std::string_view(payload), Parse{}) {}
  RequestBody(const RequestBody&) = delete;
  RequestBody& operator=(const RequestBody&) = delete;

  const JsonValue& root() const { return document_; }
  bool is_object() const { return document_.IsObject(); }
  // A member of the root object (nullptr if absent or the root is not an object). Of equal names
  // the last counts, as with nlohmann.
  const JsonValue* find(std::string_view name) const;

 private:
  struct Parse {};
  RequestBody(std::string_view payload, Parse);

  alignas(std::max_align_t) char values_buffer_[4096];
  alignas(std::max_align_t) char stack_buffer_[1024];
  JsonPool values_pool_;
  JsonPool stack_pool_;
  JsonDocument document_;
};

std::string_view string_of(const JsonValue& value);

// Nesting depth of a value (a scalar: 0), counting no deeper than `limit` + 1.
int depth(const JsonValue& value, int limit);

// Writes a value as nlohmann dumped what it parsed: of equal names in an object the first one's
// place and the last one's value, doubles in nlohmann's shortest form.
void write_value(JsonWriter& out, const JsonValue& value);
// The same as compact text.
std::string compact_json(const JsonValue& value);

}  // namespace navietakie
