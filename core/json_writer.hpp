// Replies, events and records written straight to JSON text: a rapidjson::Writer into a buffer the
// thread reuses, instead of an nlohmann DOM built and dumped per message (the handler's largest
// cost was allocating that DOM).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/json_rapidjson.hpp"

namespace navietakie {

class JsonWriter {
 public:
  JsonWriter();
  ~JsonWriter();
  JsonWriter(const JsonWriter&) = delete;
  JsonWriter& operator=(const JsonWriter&) = delete;

  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  // A key the code names (ASCII).
  JsonWriter& key(std::string_view name);
  // Text from anywhere: requests are validated, but records come from stores older versions wrote
  // too, and a client's topic is only as valid as its broker checked. Invalid UTF-8 is written as
  // U+FFFD, as nlohmann's dump(error_handler_t::replace) did, so that a reply is always JSON.
  JsonWriter& string(std::string_view text);
  JsonWriter& number(std::uint64_t value);
  JsonWriter& number(std::int64_t value);
  // As nlohmann writes a double (shortest round trip, "1.0", "1e+20"), so that `data` reads as
  // it did before; not finite: null.
  JsonWriter& number(double value);
  JsonWriter& boolean(bool value);
  JsonWriter& null();
  JsonWriter& null_or(const std::optional<std::int64_t>& value) { return value ? number(*value) : null(); }
  // JSON text that is already valid and compact (a stored `data`, a record rendered once): spliced.
  JsonWriter& raw(std::string_view json);

  std::string str() const;

  // A buffer and a writer (whose nesting stack is allocated on first use), kept by the thread.
  struct Slot;

 private:
  std::unique_ptr<Slot> slot_;  // from the thread's spares, returned to them on destruction
  rapidjson::StringBuffer& buffer_;
  rapidjson::Writer<rapidjson::StringBuffer>& writer_;
};

}  // namespace navietakie
