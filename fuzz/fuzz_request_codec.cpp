// The request codec: a request payload as a client publishes it, through parse_payload and the
// decoder of one action, as the engine runs them. Input: one byte choosing the action, then the
// payload. Refusing the payload with a ProtocolError is fine; anything else thrown is a bug, and so
// is an accepted request that could not be stored or replied to.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/codec.hpp"
#include "core/errors.hpp"
#include "core/printable_key.hpp"

using namespace navietakie;

namespace {

constexpr std::size_t kMaxTextBytes = 4096;  // the config default (max_text_bytes)

void check_send_message(const Json& body) {
  const SendMessageRequest request = decode_send_message(body, kMaxTextBytes);
  if (request.text.size() > kMaxTextBytes) std::abort();
  if (request.message_id && !valid_printable_key(*request.message_id)) std::abort();
  // `data` is stored as text and parsed again for every reply: it must still be a JSON object.
  if (!parse_payload(request.data_json).is_object()) std::abort();
  Message message;
  message.booking_code = "BK123";
  message.message_id = request.message_id.value_or("generated");
  message.type = request.type;
  message.sender = request.sender;
  message.sender_id = request.sender_id;
  message.text = request.text;
  message.data_json = request.data_json;
  (void)to_json(message).dump();  // the broadcast and the reply; throws on text it cannot write
}

void check_get_message(const Json& body) {
  const HistoryQuery query = decode_get_message(body);
  if (query.limit < 1 || query.limit > 200) std::abort();
  if (query.before_seq && query.after_seq) std::abort();
}

void check_make_call(const Json& body) {
  const MakeCallRequest request = decode_make_call(body);
  if (request.call_id && !valid_printable_key(*request.call_id)) std::abort();
}

void check_presence(const Json& body) { (void)decode_presence(body); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const Json body = parse_payload(payload);
    if (!body.is_object()) return 0;  // the engine answers invalid_request before any decoder
    switch (data[0] % 4) {
      case 0: check_send_message(body); break;
      case 1: check_get_message(body); break;
      case 2: check_make_call(body); break;
      default: check_presence(body); break;
    }
  } catch (const ProtocolError&) {
  }
  return 0;
}
