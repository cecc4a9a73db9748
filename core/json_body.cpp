#include "core/json_body.hpp"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include "core/errors.hpp"
#include "core/json_writer.hpp"

namespace navietakie {
namespace {

// Strict JSON: no comments, NaN or trailing commas (not enabled); UTF-8 checked; numbers parsed
// to the nearest double as strtod does (nlohmann's lexer used it); an explicit stack instead of
// recursion, so that deep nesting in a payload cannot exhaust the thread's.
constexpr unsigned kParseFlags =
    rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag | rapidjson::kParseFullPrecisionFlag;

[[noreturn]] void not_json_at(std::size_t byte) {
  // Never the offending bytes themselves: they may not be UTF-8, and the message goes out as JSON.
  throw ProtocolError(ErrorCode::invalid_json,
                      "payload is not valid JSON in UTF-8 (error at byte " + std::to_string(byte) + ")");
}

// RapidJSON 1.1.0 accepts an escaped low surrogate without its high one (`"\udc00"`) and stores
// it as the three bytes ED B0 80, which are not UTF-8; nlohmann refused the payload. Raw bytes
// like those fail the encoding check, so in a parsed string they can only come from such escapes.
bool has_encoded_surrogate(const char* text, std::size_t length) {
  for (std::size_t i = 0; i + 1 < length; ++i) {
    if (static_cast<unsigned char>(text[i]) == 0xED && static_cast<unsigned char>(text[i + 1]) >= 0xA0) return true;
  }
  return false;
}

// Whether the text has an escape of a low surrogate at all (rare): only then is it looked for
// string by string.
bool may_escape_low_surrogate(std::string_view text) {
  for (std::size_t i = text.find("\\u"); i != std::string_view::npos; i = text.find("\\u", i + 2)) {
    if (i + 3 < text.size() && (text[i + 2] == 'd' || text[i + 2] == 'D') &&
        std::string_view("cdefCDEF").find(text[i + 3]) != std::string_view::npos)
      return true;
  }
  return false;
}

struct SurrogateCheck : rapidjson::BaseReaderHandler<rapidjson::UTF8<>, SurrogateCheck> {
  bool String(const char* text, rapidjson::SizeType length, bool) { return !has_encoded_surrogate(text, length); }
};

void refuse_lone_low_surrogates(std::string_view text, std::size_t offset) {
  if (!may_escape_low_surrogate(text)) return;
  rapidjson::MemoryStream in(text.data(), text.size());
  rapidjson::Reader reader;
  SurrogateCheck check;
  if (!reader.Parse<kParseFlags>(in, check)) not_json_at(offset + reader.GetErrorOffset() + 1);
}

// Where a number can start outside strings, the number's length if its digits before the
// exponent are all zeros and it has an exponent; else 0.
std::size_t zero_with_exponent(std::string_view text, std::size_t at) {
  std::size_t i = at;
  if (i < text.size() && text[i] == '-') ++i;
  const std::size_t digits = i;
  while (i < text.size() && (text[i] == '0' || text[i] == '.')) ++i;
  if (i == digits || i >= text.size() || (text[i] != 'e' && text[i] != 'E')) return 0;
  return i - at;
}

// Calls zero(i) for the index of each 'e'/'E' of a number outside strings whose significand is 0.
template <class Zero>
void for_each_exponent_on_zero(std::string_view text, Zero zero) {
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      const std::size_t length = zero_with_exponent(text, i);
      if (length > 0) zero(i + length);
      // Skip the rest of the number (or of whatever bad token this is).
      while (i + 1 < text.size() && std::string_view("0123456789.eE+-").find(text[i + 1]) != std::string_view::npos) ++i;
    }
  }
}

bool has_exponent_on_zero(std::string_view text) {
  // Most payloads have no "0e", "0E", ".e" or ".E" at all: found by memchr (string_view::find)
  // then, without looking at strings.
  const auto after_zero = [&](char e) {
    for (std::size_t i = text.find(e); i != std::string_view::npos; i = text.find(e, i + 1)) {
      if (i > 0 && (text[i - 1] == '0' || text[i - 1] == '.')) return true;
    }
    return false;
  };
  if (!after_zero('e') && !after_zero('E')) return false;
  bool found = false;
  for_each_exponent_on_zero(text, [&](std::size_t) { found = true; });
  return found;
}

void zero_exponents_of_zeros(std::string& text) {
  for_each_exponent_on_zero(text, [&](std::size_t e) {
    std::size_t i = e + 1;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) text[i] = '0';
  });
}

std::string_view name_of(const JsonValue::Member& member) { return string_of(member.name); }

bool has_equal_names(const JsonValue& object) {
  const auto begin = object.MemberBegin();
  const auto end = object.MemberEnd();
  if (object.MemberCount() <= 32) {
    for (auto i = begin; i != end; ++i) {
      for (auto j = begin; j != i; ++j) {
        if (name_of(*i) == name_of(*j)) return true;
      }
    }
    return false;
  }
  std::unordered_set<std::string_view> seen;
  seen.reserve(object.MemberCount());
  for (auto i = begin; i != end; ++i) {
    if (!seen.insert(name_of(*i)).second) return true;
  }
  return false;
}

// The members of an object as nlohmann's parser kept them: each name once, where it first
// appeared, with the value it last had.
template <class Visit>
void for_each_member(const JsonValue& object, Visit visit) {
  if (!has_equal_names(object)) {
    for (auto i = object.MemberBegin(); i != object.MemberEnd(); ++i) visit(i->name, i->value);
    return;
  }
  std::unordered_map<std::string_view, const JsonValue*> last;
  for (auto i = object.MemberBegin(); i != object.MemberEnd(); ++i) last[name_of(*i)] = &i->value;
  for (auto i = object.MemberBegin(); i != object.MemberEnd(); ++i) {
    auto found = last.find(name_of(*i));
    if (!found->second) continue;  // written at its first place already
    visit(i->name, *found->second);
    found->second = nullptr;
  }
}

}  // namespace

RequestBody::RequestBody(std::string_view payload, Parse)
    : values_pool_(values_buffer_, sizeof values_buffer_),
      stack_pool_(stack_buffer_, sizeof stack_buffer_),
      // Half the stack buffer to begin with: the pool's own header takes some of it.
      document_(&values_pool_, sizeof stack_buffer_ / 2, &stack_pool_) {
  std::string_view text = payload;
  std::size_t offset = 0;
  // A UTF-8 byte order mark is skipped, as nlohmann's lexer skipped it.
  if (text.substr(0, 3) == "\xEF\xBB\xBF") {
    text.remove_prefix(3);
    offset = 3;
  }
  // A NUL byte outside a string ends the text for both parsers (nlohmann read it as the end of
  // input, RapidJSON's stream reads it as the end): what follows is not looked at.
  // A plain MemoryStream, not Parse(text, length): that one's stream also skips a partial BOM.
  rapidjson::MemoryStream in(text.data(), text.size());
  std::string zeroed;
  if (has_exponent_on_zero(text)) {
    // RapidJSON 1.1.0 reads a zero with an exponent (`0e99`) through __builtin_clzll(0) into
    // garbage (6.5e296), and refuses `0e999`; both are 0 to strtod and so were to nlohmann.
    // Parsed from a copy whose zeros' exponents are 0 (same length: the same error offsets).
    zeroed.assign(text);
    zero_exponents_of_zeros(zeroed);
    rapidjson::MemoryStream copy(zeroed.data(), zeroed.size());
    document_.ParseStream<kParseFlags, rapidjson::UTF8<>>(copy);
  } else {
    document_.ParseStream<kParseFlags, rapidjson::UTF8<>>(in);
  }
  if (document_.HasParseError() && document_.GetParseError() == rapidjson::kParseErrorNumberTooBig) {
    throw ProtocolError(ErrorCode::invalid_json, "payload is not valid JSON (a number is out of range)");
  }
  if (document_.HasParseError()) not_json_at(offset + document_.GetErrorOffset() + 1);
  refuse_lone_low_surrogates(zeroed.empty() ? text : std::string_view(zeroed), offset);
}

const JsonValue* RequestBody::find(std::string_view name) const {
  if (!document_.IsObject()) return nullptr;
  const JsonValue* found = nullptr;
  for (auto i = document_.MemberBegin(); i != document_.MemberEnd(); ++i) {
    if (name_of(*i) == name) found = &i->value;
  }
  return found;
}

std::string_view string_of(const JsonValue& value) { return {value.GetString(), value.GetStringLength()}; }

int depth(const JsonValue& value, int limit) {
  if (limit < 0 || !(value.IsObject() || value.IsArray())) return 0;
  int deepest = 0;
  if (value.IsArray()) {
    for (const auto& child : value.GetArray()) {
      deepest = std::max(deepest, depth(child, limit - 1));
      if (deepest >= limit) break;
    }
  } else {
    for_each_member(value, [&](const JsonValue&, const JsonValue& child) {
      if (deepest < limit) deepest = std::max(deepest, depth(child, limit - 1));
    });
  }
  return deepest + 1;
}

void write_value(JsonWriter& out, const JsonValue& value) {
  switch (value.GetType()) {
    case rapidjson::kNullType: out.null(); return;
    case rapidjson::kFalseType:
    case rapidjson::kTrueType: out.boolean(value.GetBool()); return;
    case rapidjson::kStringType: out.string(string_of(value)); return;
    case rapidjson::kNumberType:
      if (value.IsUint64()) {
        out.number(value.GetUint64());
      } else if (value.IsInt64()) {
        out.number(value.GetInt64());
      } else {
        out.number(value.GetDouble());
      }
      return;
    case rapidjson::kArrayType:
      out.begin_array();
      for (const auto& element : value.GetArray()) write_value(out, element);
      out.end_array();
      return;
    case rapidjson::kObjectType:
      out.begin_object();
      for_each_member(value, [&](const JsonValue& name, const JsonValue& member) {
        out.key(string_of(name));
        write_value(out, member);
      });
      out.end_object();
      return;
  }
}

std::string compact_json(const JsonValue& value) {
  JsonWriter out;
  write_value(out, value);
  return out.str();
}

}  // namespace navietakie
