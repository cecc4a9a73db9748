// The request codec: a request payload as a client publishes it, through RequestBody and the
// decoder of one action, as the engine runs them. Input: one byte choosing the action, then the
// payload. Refusing the payload with a ProtocolError is fine; anything else thrown is a bug, and so
// is an accepted request that could not be stored or replied to, and so is a payload RapidJSON
// and nlohmann (the parser before it) disagree on: accepted by one only, or read as another value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "core/codec.hpp"
#include "core/errors.hpp"
#include "core/printable_key.hpp"

using namespace navietakie;

namespace {

constexpr std::size_t kMaxTextBytes = 4096;  // the config default (max_text_bytes)

void check_send_message(const RequestBody& body) {
  const SendMessageRequest request = decode_send_message(body, kMaxTextBytes);
  if (request.text.size() > kMaxTextBytes) std::abort();
  if (request.message_id && !valid_printable_key(*request.message_id)) std::abort();
  // `data` is stored as text and spliced into every reply: it must be a JSON object.
  if (!Json::parse(request.data_json).is_object()) std::abort();
  Message message;
  message.booking_code = "BK123";
  message.message_id = request.message_id.value_or("generated");
  message.type = request.type;
  message.sender = request.sender;
  message.sender_id = request.sender_id;
  message.text = request.text;
  message.data_json = request.data_json;
  if (!Json::accept(json_text(message))) std::abort();  // the broadcast and the reply
}

void check_get_message(const RequestBody& body) {
  const HistoryQuery query = decode_get_message(body);
  if (query.limit < 1 || query.limit > 200) std::abort();
  if (query.before_seq && query.after_seq) std::abort();
}

void check_make_call(const RequestBody& body) {
  const MakeCallRequest request = decode_make_call(body);
  if (request.call_id && !valid_printable_key(*request.call_id)) std::abort();
}

void check_presence(const RequestBody& body) { (void)decode_presence(body); }

void check_signal(const RequestBody& body) {
  const SignalRequest request = decode_signal(body);
  if (!valid_printable_key(request.call_id)) std::abort();
  if (request.sdp && request.sdp->size() > wire::kSignalSdpMaxBytes) std::abort();
  if (request.candidate_json && request.candidate_json->size() > wire::kSignalCandidateMaxBytes) std::abort();
}

// RapidJSON keeps a key given twice twice; nlohmann kept the last value at the first place.
// compact_json writes what nlohmann kept, so the two must read as the same value.
void check_same_as_nlohmann(std::string_view payload, const RequestBody& body) {
  const Json reference = Json::parse(payload.begin(), payload.end(), nullptr, false);
  if (reference.is_discarded()) std::abort();  // RapidJSON accepted what nlohmann refused
  if (Json::parse(compact_json(body.root())) != reference) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);
  std::optional<RequestBody> parsed;
  try {
    parsed.emplace(payload);
  } catch (const ProtocolError&) {
    // Refused: nlohmann refused it too (a number out of range was its exception, not a parse error).
    try {
      if (!Json::parse(payload.begin(), payload.end(), nullptr, false).is_discarded()) std::abort();
    } catch (const Json::exception&) {
    }
    return 0;
  }
  const RequestBody& body = *parsed;
  check_same_as_nlohmann(payload, body);
  try {
    if (!body.is_object()) return 0;  // the engine answers invalid_request before any decoder
    switch (data[0] % 5) {
      case 0: check_send_message(body); break;
      case 1: check_get_message(body); break;
      case 2: check_make_call(body); break;
      case 3: check_presence(body); break;
      default: check_signal(body); break;
    }
  } catch (const ProtocolError&) {
  }
  return 0;
}
