// The booking's end (docs/protocol.md, "close and retention"): the close request, the refusals of
// a closed booking, and the background purge of closed bookings past retention_days.
#include <algorithm>

#include "core/calls.hpp"
#include "core/engine.hpp"
#include "core/engine_handled.hpp"
#include "core/log.hpp"
#include "core/wire.hpp"

namespace navietakie {

void Engine::require_open(const StoreReader& r, const Handled& h, std::optional<CallAction> call_action) const {
  if (!wire::refused_when_closed(h.action, call_action)) return;
  const auto state = r.booking_state(h.booking);
  if (state && state->closed) {
    throw ProtocolError(ErrorCode::booking_closed, "booking " + h.booking + " is closed");
  }
}

void Engine::handle_close(StoreWriter& w, const Request& request, const RequestBody& body, Handled& h) {
  CloseRequest r = decode_close(body);
  const Identity* identity = authenticated(request, h);
  if (identity && identity->principal != Principal::service) {
    throw ProtocolError(ErrorCode::forbidden, "only a service identity closes a booking");
  }
  h.result = Handled::Result::booking;
  std::optional<BookingState> state = w.booking_state(h.booking);
  if (state && state->closed) {  // closing twice: the first close, and no event
    h.result_json = json_text(h.booking, state);
    return;
  }
  const Millis now = clock_();
  if (auto call = w.active_call(h.booking)) {
    record_call_change(w, close_call(*call, now), Role::system, h);
    if (call->state == CallState::ringing) {
      h.disarm.push_back(Deadline{call->ring_deadline, call->booking_code, call->call_id});
    }
  }
  state = BookingState{h.booking, true, now, std::move(r.reason)};
  w.put_booking_state(*state);
  h.closed_booking = true;
  h.result = Handled::Result::booking;  // not the call's, which record_call_change made the result
  h.result_event = h.events.size();
  h.events.push_back(Publish{topics_.booking_state_events(h.booking), json_text(h.booking, state), true, std::nullopt});
}

std::vector<Publish> Engine::purge_closed() {
  if (options_.retention_ms <= 0) return {};
  const Millis now = clock_();
  if (now < next_purge_) return {};
  const std::size_t limit = std::max<std::size_t>(1, options_.purge_batch_keys);
  bool was_closed = false;
  bool finished = false;
  try {
    if (!purging_) {
      std::vector<BookingState> due;
      store_.read([&](const StoreReader& r) { due = r.closed_before(now - options_.retention_ms, 1); });
      if (due.empty()) {
        next_purge_ = now + options_.purge_scan_ms;
        return {};
      }
      purging_ = due.front().booking_code;
      log_line(LogLevel::info, "purge_started",
               {{"booking", *purging_}, {"closed_at", std::to_string(due.front().closed_at)}});
    }
    const std::string& booking = *purging_;
    store_.write([&](StoreWriter& w) {
      w.lock_bookings({booking});
      // Under the booking's lock: another host sharing the store may have purged it already, and
      // the code may since have started afresh; that booking is not this purge's.
      const auto state = w.booking_state(booking);
      was_closed = state && state->closed;
      if (!was_closed) return;
      w.purge_booking(booking, limit);
      // The state goes last: once it is gone, nothing of the booking is left.
      finished = !w.booking_state(booking);
    });
  } catch (const StoreError& e) {
    log_line(LogLevel::error, "purge_failed", {{"booking", purging_.value_or("")}, {"error", e.what()}});
    next_purge_ = now + options_.store_retry_ms;
    return {};
  }
  metrics_.purge_batches.fetch_add(1, std::memory_order_relaxed);
  if (was_closed && !finished) return {};  // more of it: the next turn goes on
  std::string booking = std::move(*purging_);
  purging_.reset();
  if (!was_closed) return {};
  metrics_.bookings_purged.fetch_add(1, std::memory_order_relaxed);
  log_line(LogLevel::info, "booking_purged", {{"booking", booking}});
  // An empty retained payload clears a retained topic (MQTT): every retained event of the booking.
  std::vector<Publish> out;
  for (const auto& rule : wire::kEvents) {
    if (rule.retained) out.push_back(Publish{topics_.event_topic(booking, rule.name), "", true, std::nullopt});
  }
  return out;
}

std::optional<Millis> Engine::next_purge() const {
  if (options_.retention_ms <= 0) return std::nullopt;
  return next_purge_;
}

std::vector<Publish> Engine::background() {
  std::vector<Publish> out = expire_calls();
  std::vector<Publish> purged = purge_closed();
  out.insert(out.end(), std::make_move_iterator(purged.begin()), std::make_move_iterator(purged.end()));
  return out;
}

}  // namespace navietakie
