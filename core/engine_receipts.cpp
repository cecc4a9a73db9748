// Read receipts (mark_read, retained events/read) and typing hints (events/typing, QoS 0): the
// Engine's handlers for the two actions of docs/protocol.md "Receipts and typing".
#include "core/codec.hpp"
#include "core/engine.hpp"
#include "core/engine_handled.hpp"

namespace navietakie {
namespace {

RoleRead& horizon_of(ReadReceipts& receipts, Role role) {
  return role == Role::driver ? receipts.driver : receipts.passenger;
}

}  // namespace

std::string Engine::read_receipts_json(const StoreReader& r, const std::string& booking) {
  return json_text(r.read_receipts(booking).value_or(ReadReceipts{booking, {}, {}}));
}

void Engine::handle_mark_read(StoreWriter& w, const Request& request, const RequestBody& body, Handled& h) {
  MarkReadRequest r = decode_mark_read(body);
  // A booking the identity may not act on is refused before its store is read; within its own
  // booking, `seq` is checked first (invalid_request ranks before forbidden).
  const Identity* identity = authenticated(request, h);
  const std::uint64_t last_seq = w.last_seq(h.booking);
  if (r.seq > last_seq) {
    throw ProtocolError(ErrorCode::invalid_request,
                        "'seq' " + std::to_string(r.seq) + " is above the booking's last_seq " + std::to_string(last_seq));
  }
  if (identity) check_own_role(*identity, r.role, "role");
  require_open(w, h);  // booking_closed ranks after invalid_request and forbidden
  ReadReceipts receipts = w.read_receipts(h.booking).value_or(ReadReceipts{h.booking, {}, {}});
  RoleRead& horizon = horizon_of(receipts, r.role);
  h.result = Handled::Result::read;
  // The horizon never moves back, and the same seq again changes nothing (its first `at` stays):
  // the reply says where it is, and no event repeats what subscribers already hold.
  if (r.seq <= horizon.seq) {
    if (h.reply_topic) h.result_json = json_text(receipts);
    return;
  }
  horizon.seq = r.seq;
  horizon.at = clock_();
  w.put_read_receipts(receipts);
  h.result_event = h.events.size();
  h.events.push_back(Publish{topics_.read_events(h.booking), json_text(receipts), true, std::nullopt});
}

void Engine::handle_typing(StoreWriter& w, const Request& request, const RequestBody& body, Handled& h) {
  TypingRequest r = decode_typing(body);
  if (const Identity* identity = authenticated(request, h)) check_own_role(*identity, r.role, "role");
  require_open(w, h);  // before the allowance: a refused hint does not use it up
  const Millis now = clock_();
  h.result = Handled::Result::typing;
  h.relayed = typing_limiter_.allow(h.booking, r.role, now);
  if (!h.relayed) {
    h.typing_dropped = true;  // a hint: no error, only counted
    return;
  }
  JsonWriter event;
  event.begin_object().key("booking_code").string(h.booking).key("role").string(to_string(r.role));
  event.key("typing").boolean(r.typing).key("ts").number(now).end_object();
  // QoS 0 and not retained: a lost or late hint is worth nothing, and a stale one would mislead.
  h.events.push_back(Publish{topics_.typing_events(h.booking), event.str(), false, std::nullopt, 0});
}

}  // namespace navietakie
