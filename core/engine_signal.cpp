// `signal`: WebRTC signalling (offer, answer, ICE candidates, bye) relayed on `events/signal`
// between the two parties of a booking's current call (docs/protocol.md, "signal"). Nothing is
// stored: the call record and its state machine stay the authority, and a client ends its media
// when the call ends, whatever signals it did or did not get.
#include "core/engine.hpp"
#include "core/engine_handled.hpp"
#include "core/json_writer.hpp"
#include "core/wire.hpp"

namespace navietakie {

Publish Engine::relay_signal(const StoreReader& store, const SignalRequest& r, const Identity* identity,
                             const Handled& h) const {
  const std::string& booking = h.booking;
  // `by` is a party of the call: decode_signal admits only driver and passenger, and every call is
  // between them. With credentials, a participant signals only as itself (a service may relay for
  // either party).
  if (identity) check_own_role(*identity, r.by, "by");
  // A closed booking refuses it, before the call is looked up (its call has ended anyway).
  require_open(store, h);
  // The current call is the booking's active one; with none active, the one named may still be
  // said goodbye to (a `bye` crossing the `end`), but nothing else.
  const auto active = store.active_call(booking);
  if (active && active->call_id != r.call_id) {
    throw ProtocolError(ErrorCode::not_found, "call '" + r.call_id + "' is not this booking's current call");
  }
  const auto call = active ? active : store.call(booking, r.call_id);
  if (!call) throw ProtocolError(ErrorCode::not_found, "no call '" + r.call_id + "' in this booking");
  if (r.kind != wire::SignalKind::bye && !wire::is_active(call->state)) {
    throw ProtocolError(ErrorCode::invalid_state, std::string("call '") + r.call_id + "' is " + to_string(call->state) +
                                                      ": only a bye may follow");
  }
  JsonWriter event;
  event.begin_object().key("booking_code").string(booking).key("call_id").string(r.call_id);
  event.key("from").string(to_string(r.by)).key("kind").string(wire::name_of(wire::kSignalKinds, r.kind));
  if (r.sdp) event.key("sdp").string(*r.sdp);
  if (r.candidate_json) event.key("candidate").raw(*r.candidate_json);
  if (r.reason) event.key("reason").string(*r.reason);
  event.key("ts").number(clock_());
  event.end_object();
  return Publish{topics_.signal_events(booking), event.str(), false, std::nullopt};
}

}  // namespace navietakie
