#include "sim/worker.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "core/codec.hpp"
#include "core/wire.hpp"

namespace navietakie::sim {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr auto kHousekeepingEvery = 20ms;
constexpr auto kWakeEvery = 2ms;
constexpr int kHistoryLimit = 50;
constexpr int kCatchUpLimit = 200;           // the protocol's largest page
constexpr std::size_t kAnsweredMemory = 64;  // replies remembered per client, to recognise redeliveries
constexpr std::size_t kExpiredMemory = 100000;
// A callee answers after this long; a caller talks this long before hanging up.
constexpr double kAnswerDelayMin = 0.2, kAnswerDelayMax = 0.7;
constexpr double kTalkMin = 1.0, kTalkMax = 3.0;
// How long after its ring timeout a missed call must have ended.
constexpr double kMissedSlack = 5.0;

std::uint64_t micros(Clock::duration d) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return us < 0 ? 0 : static_cast<std::uint64_t>(us);
}

std::optional<std::uint64_t> parse_correlation(const mqtt::const_message_ptr& message) {
  const auto& props = message->get_properties();
  if (!props.contains(mqtt::property::CORRELATION_DATA)) return std::nullopt;
  const auto data = mqtt::get<mqtt::binary>(props, mqtt::property::CORRELATION_DATA);
  std::uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(data.data(), data.data() + data.size(), value);
  if (ec != std::errc() || ptr != data.data() + data.size()) return std::nullopt;
  return value;
}

std::string error_text(const json& reply) {
  auto error = reply.find("error");
  if (error == reply.end() || !error->is_object()) return reply.dump().substr(0, 200);
  return error->value("code", std::string("?")) + ": " + error->value("message", std::string());
}

std::string error_code(const json& reply) {
  auto error = reply.find("error");
  if (error == reply.end() || !error->is_object()) return {};
  return error->value("code", std::string());
}

}  // namespace

const char* Worker::request_name(RequestKind kind) {
  switch (kind) {
    case RequestKind::send_message: return to_string(Action::send_message);
    case RequestKind::make_call: return to_string(Action::make_call);
    case RequestKind::presence: return to_string(Action::presence);
    case RequestKind::history:
    case RequestKind::baseline:
    case RequestKind::last_seq:
    case RequestKind::catch_up: return to_string(Action::get_message);
  }
  return "?";
}

bool RunControl::claim_message() {
  if (message_budget == 0) return true;
  if (messages_claimed.fetch_add(1, std::memory_order_relaxed) < message_budget) return true;
  messages_exhausted.store(true, std::memory_order_relaxed);
  return false;
}

Worker::Worker(const SimOptions& options, RunControl& control, std::uint64_t seed)
    : options_(options), control_(control), topics_(options.prefix), rng_(seed), stats_(control.progress) {}

Worker::~Worker() {
  if (thread_.joinable()) thread_.join();
}

void Worker::add_booking(const std::string& code, const ClientFactory& make_client) {
  const std::array<std::string, 2> ids{"sim-" + code + "-d", "sim-" + code + "-p"};
  auto b = std::make_unique<Booking>(code, ids, stats_, LedgerMode{options_.shared, options_.resend_after_s > 0});
  b->send_topic = topics_.request(code, Action::send_message);
  b->get_topic = topics_.request(code, Action::get_message);
  b->call_topic = topics_.request(code, Action::make_call);
  b->presence_topic = topics_.request(code, Action::presence);
  b->message_events = topics_.message_events(code);
  b->call_events = topics_.call_events(code);
  b->presence_events = topics_.presence_events(code);
  b->errors = topics_.booking_errors(code);
  for (Role role : {Role::driver, Role::passenger}) {
    const std::size_t index = participants_.size();
    Participant p;
    p.link = std::make_unique<ClientLink>(make_client(ids[index_of(role)]), inbox_, index);
    p.booking = bookings_.size();
    p.role = role;
    p.reply_topic = topics_.replies(ids[index_of(role)]) + "/r";
    p.wake_topic = options_.prefix + "/sim/" + ids[index_of(role)] + "/wake";
    b->clients[index_of(role)] = index;
    participants_.push_back(std::move(p));
  }
  bookings_.push_back(std::move(b));
}

std::vector<Worker::ParticipantRef> Worker::participants() {
  std::vector<ParticipantRef> refs;
  for (auto& p : participants_) refs.push_back({p.link.get(), bookings_[p.booking]->code, p.role});
  return refs;
}

std::vector<std::string> Worker::subscriptions(const std::string& booking, const std::string& client_id) const {
  return {topics_.booking_events_filter(booking), topics_.booking_errors(booking), topics_.replies(client_id) + "/#"};
}

void Worker::start() {
  thread_ = std::thread([this] { run(); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

// Rounded up, and at least 1 us: a timer armed "now" would fire again in the same pass, forever.
std::chrono::microseconds Worker::seconds(double s) const {
  return std::chrono::microseconds(std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(s * 1e6))));
}

double Worker::uniform(double low, double high) { return std::uniform_real_distribution<double>(low, high)(rng_); }

std::size_t Worker::booking_index(const Booking& b) const { return participants_[b.clients[0]].booking; }

bool Worker::window_open(const Participant& p) const { return !p.lost && p.messages_in_flight < options_.window; }

// ---------------------------------------------------------------------------------------------
// The loop

void Worker::run() {
  std::vector<Delivery> batch;
  auto next_housekeeping = Clock::now();
  enter(Phase::setup, Clock::now());
  while (true) {
    const Phase phase = control_.phase.load(std::memory_order_acquire);
    auto now = Clock::now();
    if (phase != phase_) {
      phase_ = phase;
      idle_.store(false, std::memory_order_release);
      enter(phase, now);
      next_housekeeping = now;
    }
    if (phase_ == Phase::done) break;
    while (!timers_.empty() && timers_.top().at <= now) {
      Timer t = timers_.top();
      timers_.pop();
      fire(t, now);
    }
    if (now >= next_housekeeping) {
      housekeeping(now);
      next_housekeeping = now + kHousekeepingEvery;
    }
    wake_stalled_senders(now);
    auto until = next_housekeeping;
    if (!timers_.empty()) until = std::min(until, timers_.top().at);
    if (!wake_candidates_.empty()) until = std::min(until, now + kWakeEvery);
    inbox_.take(batch, until);
    for (const Delivery& d : batch) handle(d);
  }
  finish();
}

void Worker::enter(Phase phase, Clock::time_point now) {
  switch (phase) {
    case Phase::setup:
      for (auto& p : participants_) {
        const Booking& b = *bookings_[p.booking];
        Pending online;
        online.kind = RequestKind::presence;
        publish(p, b.presence_topic, presence_request(p.role, true, p.link->id()), online);
        Pending baseline;
        baseline.kind = RequestKind::baseline;
        publish(p, b.get_topic, get_message_request(1, std::nullopt), baseline);
      }
      break;
    case Phase::running:
      for (std::size_t i = 0; i < bookings_.size(); ++i) {
        Booking& b = *bookings_[i];
        b.next_sender = (i % 2 == 0) ? Role::driver : Role::passenger;
        b.next_caller = (i % 2 == 0) ? Role::driver : Role::passenger;
        if (options_.rate > 0) {
          // Spread the bookings' first sends over one interval, so they do not all go at once.
          b.refilled = now + seconds(uniform(0, 1.0 / options_.rate));
          b.tokens = 1;
          b.send_timer_armed = true;
          timers_.push({b.refilled, TimerKind::send, i, 0});
        } else {
          try_send(i, now);
        }
        if (options_.calls_per_minute > 0) {
          timers_.push({now + seconds(uniform(0, 60.0 / options_.calls_per_minute)), TimerKind::call_start, i, 0});
        }
      }
      if (options_.history_every_s > 0) {
        for (std::size_t i = 0; i < participants_.size(); ++i) {
          timers_.push({now + seconds(uniform(0, options_.history_every_s)), TimerKind::history, i, 0});
        }
      }
      break;
    case Phase::draining:
      // Wind up calls in progress: hang up a connected call, cancel one left to ring out (its ring
      // timeout may be longer than the drain); answers already scheduled still happen.
      for (auto& bp : bookings_) {
        Booking& b = *bp;
        if (!b.call || b.broken) continue;
        ActiveCall& call = *b.call;
        if (call.step == CallStep::connected) {
          advance_call(b, now);
        } else if (call.outcome == CallOutcome::missed &&
                   (call.step == CallStep::starting || call.step == CallStep::ringing)) {
          b.ledger.allow_end_reason(call.call_id, "cancelled");
          Pending cancel;
          cancel.kind = RequestKind::make_call;
          cancel.id = call.call_id;
          cancel.action = "cancel";
          publish(participant(b, call.caller), b.call_topic, make_call_request("cancel", call.call_id, call.caller),
                  cancel);
          call.step = CallStep::ending;
          call.deadline = now + seconds(options_.reply_timeout_s + 2);
        }
      }
      break;
    case Phase::finalizing:
      for (auto& bp : bookings_) {
        Booking& b = *bp;
        if (b.broken) continue;
        Pending last;
        last.kind = RequestKind::last_seq;
        publish(participant(b, Role::driver), b.get_topic, get_message_request(1, std::nullopt), last);
        for (Role role : {Role::driver, Role::passenger}) {
          Participant& p = participant(b, role);
          Pending offline;
          offline.kind = RequestKind::presence;
          publish(p, b.presence_topic, presence_request(role, false, p.link->id()), offline);
        }
      }
      break;
    case Phase::done: break;
  }
}

// ---------------------------------------------------------------------------------------------
// What arrives

void Worker::handle(const Delivery& d) {
  Participant& p = participants_[d.client];
  Booking& b = *bookings_[p.booking];
  if (!d.message) {
    if (!p.lost) {
      p.lost = true;
      b.broken = true;
      stats_.violation("connection_lost", p.link->id() + " lost its connection");
    }
    return;
  }
  if (b.broken) return;
  const std::string& topic = d.message->get_topic();
  if (topic == p.reply_topic) {
    on_reply(p, d.message, d.at);
  } else if (topic == b.message_events) {
    on_message_event(b, p, d.message, d.at);
  } else if (topic == b.call_events) {
    on_call_event(b, p, d.message, d.at);
  } else if (topic == b.presence_events) {
    // Retained "who is online": informative only (the other party may come and go).
  } else if (topic == b.errors) {
    stats_.violation("error_published",
                     p.link->id() + " got on " + topic + ": " + d.message->to_string().substr(0, 200));
  } else {
    stats_.violation("unexpected_topic", p.link->id() + " got a message on " + topic);
  }
}

void Worker::on_reply(Participant& p, const mqtt::const_message_ptr& message, Clock::time_point at) {
  auto correlation = parse_correlation(message);
  if (!correlation) {
    stats_.violation("reply_malformed", p.link->id() + ": a reply without our correlation data");
    return;
  }
  const std::string payload = message->to_string();
  auto it = p.pending.find(*correlation);
  if (it == p.pending.end()) {
    if (p.expired.erase(*correlation) > 0) {
      ++stats_.late_replies;
    } else if (auto known = p.answered.find(*correlation); known != p.answered.end()) {
      if (known->second == fnv1a(payload)) {
        ++stats_.redelivered;
      } else {
        stats_.violation("duplicate_reply",
                         p.link->id() + ": a second, different reply to request " + std::to_string(*correlation));
      }
    } else if (*correlation < p.next_correlation) {
      stats_.violation("duplicate_reply", p.link->id() + ": another reply to request " + std::to_string(*correlation));
    } else {
      stats_.violation("unexpected_reply", p.link->id() + ": a reply to request " + std::to_string(*correlation) +
                                               ", which was never sent");
    }
    return;
  }
  const Pending request = std::move(it->second);
  p.pending.erase(it);
  p.answered.emplace(*correlation, fnv1a(payload));
  p.answered_order.push_back(*correlation);
  if (p.answered_order.size() > kAnsweredMemory) {
    p.answered.erase(p.answered_order.front());
    p.answered_order.erase(p.answered_order.begin());
  }

  Booking& b = *bookings_[p.booking];
  json reply = json::parse(payload, nullptr, false);
  if (reply.is_discarded() || !reply.is_object() || !reply.contains("ok") || !reply["ok"].is_boolean()) {
    stats_.violation("reply_malformed", p.link->id() + ": " + payload.substr(0, 200));
    request_failed(p, request, at);
    return;
  }
  const bool ok = reply["ok"].get<bool>();
  if (!ok && options_.resend_after_s > 0 && error_code(reply) == "unavailable") {
    ++stats_.faults.unavailable;
    if (retry(p, request, at, true)) return;
  }
  if (request.kind == RequestKind::make_call) {
    on_call_reply(b, p, request, reply);
    return;
  }
  if (!ok) {
    stats_.violation("request_failed", p.link->id() + " " + request_name(request.kind) + ": " + error_text(reply));
    request_failed(p, request, at);
    return;
  }
  switch (request.kind) {
    case RequestKind::send_message: {
      auto record = reply.find("message");
      auto view = record == reply.end() ? std::nullopt : read_message(*record);
      if (!view) {
        stats_.violation("reply_malformed", p.link->id() + ": " + payload.substr(0, 200));
        request_failed(p, request, at);
        return;
      }
      const bool duplicate = reply.value("duplicate", false);
      b.ledger.message_confirmed(request.id, *view, duplicate, request.sent_at, at);
      --p.messages_in_flight;
      try_send(p.booking, at);
      break;
    }
    case RequestKind::history:
      p.history_in_flight = false;
      ++stats_.history_fetches;
      stats_.history_latency.add(micros(at - request.sent_at));
      b.ledger.history_page(p.role, reply, request.limit, request.before_seq, request.seen_then);
      break;
    case RequestKind::baseline:
    case RequestKind::last_seq: {
      auto last = reply.find("last_seq");
      if (last == reply.end() || !last->is_number_integer()) {
        stats_.violation("reply_malformed", p.link->id() + ": " + payload.substr(0, 200));
        request_failed(p, request, at);
        return;
      }
      if (request.kind == RequestKind::baseline) {
        b.ledger.set_baseline(p.role, last->get<std::int64_t>());
      } else {
        b.last_seq = last->get<std::int64_t>();
        b.ledger.note_last_seq(*b.last_seq, at);
      }
      break;
    }
    case RequestKind::catch_up:
      p.catch_up_in_flight = false;
      b.ledger.catch_up_page(p.role, reply, kCatchUpLimit, request.after_seq, at);
      break;
    case RequestKind::presence:
    case RequestKind::make_call: break;
  }
}

// A request that got no (usable) answer: undo what waiting for it held.
void Worker::request_failed(Participant& p, const Pending& request, Clock::time_point now) {
  Booking& b = *bookings_[p.booking];
  switch (request.kind) {
    case RequestKind::send_message:
      b.ledger.message_unconfirmed(request.id);
      --p.messages_in_flight;
      try_send(p.booking, now);
      break;
    case RequestKind::history: p.history_in_flight = false; break;
    case RequestKind::make_call:
      if (b.call && b.call->call_id == request.id) call_over(p.booking);
      break;
    case RequestKind::last_seq: b.last_seq_failed = true; break;
    case RequestKind::catch_up: p.catch_up_in_flight = false; break;
    case RequestKind::baseline:
    case RequestKind::presence: break;
  }
}

void Worker::on_call_reply(Booking& b, Participant& p, const Pending& request, const json& reply) {
  const bool ok = reply["ok"].get<bool>();
  const bool current = b.call && b.call->call_id == request.id;
  if (!ok) {
    const std::string code = error_code(reply);
    if (request.action == "start" && code == "busy") {
      ++stats_.calls.busy;  // another call is active on the booking: not ours to judge
      if (current) {
        b.ledger.forget_call(request.id);
        call_over(p.booking);
      }
      return;
    }
    if (request.action == "cancel" && code == "invalid_state") return;  // the ring timeout came first
    stats_.violation("request_failed", p.link->id() + " make_call " + request.action + ": " + error_text(reply));
    if (current) call_over(p.booking);
    return;
  }
  auto record = reply.find("call");
  auto view = record == reply.end() ? std::nullopt : read_call(*record);
  if (!view || view->call_id != request.id) {
    stats_.violation("reply_malformed",
                     p.link->id() + " make_call " + request.action + ": " + reply.dump().substr(0, 200));
    return;
  }
  // The state the action leads to, from the state machine's table.
  const auto action = parse_call_action(request.action);
  const wire::CallTransition* expected = action ? wire::transition_for(*action) : nullptr;
  if (expected && view->state != to_string(expected->to)) {
    stats_.violation("call_state", b.code + " call " + request.id + ": `" + request.action + "` answered with state `" +
                                       view->state + "`");
  }
  if (request.action == "start") {
    ++stats_.calls.started;
    if (current && b.call->step == CallStep::starting) b.call->step = CallStep::ringing;
  } else if (request.action == "accept") {
    ++stats_.calls.accepted;
  } else if (request.action == "decline") {
    ++stats_.calls.declined;
  } else if (request.action == "end") {
    ++stats_.calls.completed;
  } else if (request.action == "cancel") {
    ++stats_.calls.cancelled;
  }
}

void Worker::on_message_event(Booking& b, Participant& p, const mqtt::const_message_ptr& message,
                              Clock::time_point at) {
  const std::string payload = message->to_string();
  json record = json::parse(payload, nullptr, false);
  auto view = record.is_discarded() ? std::nullopt : read_message(record);
  if (!view) {
    stats_.violation("event_malformed", p.link->id() + " events/message: " + payload.substr(0, 200));
    return;
  }
  b.ledger.message_event(p.role, *view, at);
}

void Worker::on_call_event(Booking& b, Participant& p, const mqtt::const_message_ptr& message, Clock::time_point at) {
  const std::string payload = message->to_string();
  json record = json::parse(payload, nullptr, false);
  auto view = record.is_discarded() ? std::nullopt : read_call(record);
  if (!view) {
    stats_.violation("event_malformed", p.link->id() + " events/call: " + payload.substr(0, 200));
    return;
  }
  if (b.ledger.call_event(p.role, *view, fnv1a(payload)) == CallEventKind::repeated) return;
  if (!b.call || b.call->call_id != view->call_id) return;
  ActiveCall& call = *b.call;
  if (view->state == "ringing" && p.role != call.caller) {
    stats_.ring_latency.add(micros(at - call.started_at));
    if (call.step == CallStep::starting) call.step = CallStep::ringing;
    if (call.outcome != CallOutcome::missed && !call.answer_scheduled) {
      call.answer_scheduled = true;
      timers_.push({at + seconds(uniform(kAnswerDelayMin, kAnswerDelayMax)), TimerKind::call_step, booking_index(b),
                    call.generation});
    }
  } else if (view->state == "connected" && p.role == call.caller) {
    if (call.accept_sent_at) stats_.connect_latency.add(micros(at - *call.accept_sent_at));
    call.step = CallStep::connected;
    if (!call.end_scheduled) {
      call.end_scheduled = true;
      const double talk = phase_ == Phase::running ? uniform(kTalkMin, kTalkMax) : 0.0;
      timers_.push({at + seconds(talk), TimerKind::call_step, booking_index(b), call.generation});
    }
  } else if (view->state == "ended" && b.ledger.call_ended_for_both(call.call_id)) {
    if (view->end_reason == "missed") ++stats_.calls.missed;
    b.ledger.forget_call(call.call_id);
    call_over(booking_index(b));
  }
}

// ---------------------------------------------------------------------------------------------
// What the simulator does

void Worker::fire(const Timer& t, Clock::time_point now) {
  switch (t.kind) {
    case TimerKind::send:
      bookings_[t.target]->send_timer_armed = false;
      try_send(t.target, now);
      break;
    case TimerKind::history: {
      if (phase_ != Phase::running) break;
      Participant& p = participants_[t.target];
      if (!p.lost && !p.history_in_flight && !bookings_[p.booking]->broken) send_history(p);
      timers_.push({now + seconds(options_.history_every_s * uniform(0.9, 1.1)), TimerKind::history, t.target, 0});
      break;
    }
    case TimerKind::call_start:
      if (phase_ != Phase::running) break;
      start_call(t.target, now);
      timers_.push(
          {now + seconds(60.0 / options_.calls_per_minute * uniform(0.8, 1.2)), TimerKind::call_start, t.target, 0});
      break;
    case TimerKind::call_step: {
      Booking& b = *bookings_[t.target];
      if (b.call && b.call->generation == t.generation && !b.broken) advance_call(b, now);
      break;
    }
  }
}

void Worker::try_send(std::size_t booking, Clock::time_point now) {
  Booking& b = *bookings_[booking];
  if (phase_ != Phase::running || b.broken || control_.messages_exhausted.load(std::memory_order_relaxed)) return;
  const bool paced = options_.rate > 0;
  if (paced && now > b.refilled) {
    const double burst = std::max(1.0, options_.rate * 0.5);
    b.tokens = std::min(burst, b.tokens + std::chrono::duration<double>(now - b.refilled).count() * options_.rate);
    b.refilled = now;
  }
  while (true) {
    if (paced && b.tokens < 1) {
      if (!b.send_timer_armed) {
        b.send_timer_armed = true;
        timers_.push({now + seconds((1 - b.tokens) / options_.rate), TimerKind::send, booking, 0});
      }
      return;
    }
    Participant* sender = &participant(b, b.next_sender);
    if (!window_open(*sender)) sender = &participant(b, other(b.next_sender));
    if (!window_open(*sender)) return;  // a reply reopens a window and calls again
    if (!control_.claim_message()) return;
    send_message(b, *sender, now);
    b.next_sender = other(sender->role);
    if (paced) b.tokens -= 1;
  }
}

void Worker::send_message(Booking& b, Participant& p, Clock::time_point now) {
  const std::string id = b.ledger.next_message_id(p.role);
  const std::string text = make_text(id, options_.text_bytes, rng_());
  b.ledger.message_sent(id, p.role, fnv1a(text), now);
  Pending request;
  request.kind = RequestKind::send_message;
  request.id = id;
  ++p.messages_in_flight;
  stats_.message_sent(now);
  publish(p, b.send_topic, send_message_request(id, p.role, text), request);
}

void Worker::send_history(Participant& p) {
  Booking& b = *bookings_[p.booking];
  Pending request;
  request.kind = RequestKind::history;
  request.limit = kHistoryLimit;
  request.seen_then = b.ledger.max_seen(p.role);
  // Every third read scrolls back from a random point of what this run has seen.
  const std::int64_t low = b.ledger.baseline(p.role) + 2;
  if (++p.history_reads % 3 == 0 && request.seen_then >= low) {
    request.before_seq = std::uniform_int_distribution<std::int64_t>(low, request.seen_then)(rng_);
  }
  p.history_in_flight = true;
  publish(p, b.get_topic, get_message_request(request.limit, request.before_seq), request);
}

void Worker::start_call(std::size_t booking, Clock::time_point now) {
  Booking& b = *bookings_[booking];
  if (b.broken || b.call) return;  // one call at a time per booking: this slot is skipped
  const auto& mix = options_.call_mix;
  const auto pick = std::uniform_int_distribution<unsigned>(0, mix.total() - 1)(rng_);
  ActiveCall call;
  call.outcome = pick < mix.accept ? CallOutcome::accept
                                   : (pick < mix.accept + mix.decline ? CallOutcome::decline : CallOutcome::missed);
  call.caller = b.next_caller;
  b.next_caller = other(b.next_caller);
  call.call_id = b.code + "-call-" + std::to_string(++b.calls_made);
  call.generation = b.calls_made;
  call.started_at = now;
  const double span = call.outcome == CallOutcome::missed ? options_.ring_timeout_s + kMissedSlack
                                                          : kAnswerDelayMax + kTalkMax + 3 * options_.reply_timeout_s;
  call.deadline = now + seconds(span);
  const char* end = call.outcome == CallOutcome::accept    ? "completed"
                    : call.outcome == CallOutcome::decline ? "declined"
                                                           : "missed";
  b.ledger.expect_call(call.call_id, call.caller, {end});
  Pending request;
  request.kind = RequestKind::make_call;
  request.id = call.call_id;
  request.action = "start";
  const Role caller = call.caller;
  b.call = std::move(call);
  publish(participant(b, caller), b.call_topic, make_call_request("start", b.call->call_id, caller), request);
}

// The next move of the call in progress: the callee answers, or the caller hangs up.
void Worker::advance_call(Booking& b, Clock::time_point now) {
  ActiveCall& call = *b.call;
  Pending request;
  request.kind = RequestKind::make_call;
  request.id = call.call_id;
  if (call.step == CallStep::connected) {
    request.action = "end";
    call.step = CallStep::ending;
    publish(participant(b, call.caller), b.call_topic, make_call_request("end", call.call_id, call.caller), request);
  } else if ((call.step == CallStep::starting || call.step == CallStep::ringing) &&
             call.outcome != CallOutcome::missed) {
    const Role callee = other(call.caller);
    request.action = call.outcome == CallOutcome::accept ? "accept" : "decline";
    call.step = CallStep::answering;
    if (call.outcome == CallOutcome::accept) call.accept_sent_at = now;
    publish(participant(b, callee), b.call_topic, make_call_request(request.action, call.call_id, callee), request);
  }
}

void Worker::send_catch_up(Participant& p, std::int64_t after_seq) {
  Pending request;
  request.kind = RequestKind::catch_up;
  request.after_seq = after_seq;
  p.catch_up_in_flight = true;
  ++stats_.faults.gap_fetches;
  publish(p, bookings_[p.booking]->get_topic, get_message_after_request(kCatchUpLimit, after_seq), request);
}

// The next call comes at the booking's next slot (TimerKind::call_start).
void Worker::call_over(std::size_t booking) { bookings_[booking]->call.reset(); }

bool Worker::publish(Participant& p, const std::string& topic, std::string payload, Pending request) {
  const auto now = Clock::now();
  if (request.resends == 0) request.sent_at = now;  // a resend's latency counts from the first send
  const bool resendable = options_.resend_after_s > 0 && request.kind != RequestKind::make_call;
  request.deadline = now + seconds(resendable ? options_.resend_after_s : options_.reply_timeout_s);
  if (options_.resend_after_s > 0) {
    request.topic = topic;
    request.payload = payload;
  }
  const std::uint64_t correlation = p.next_correlation++;
  p.pending.emplace(correlation, std::move(request));
  if (!p.link->publish_request(topic, std::move(payload), p.reply_topic, std::to_string(correlation))) {
    // Paho refused it (disconnected): the lost connection is reported; the reply timeout reports the rest.
    return false;
  }
  if (p.link->window_full()) wake_candidates_.push_back(static_cast<std::size_t>(&p - participants_.data()));
  return true;
}

// ---------------------------------------------------------------------------------------------
// Timeouts, the Paho wake-up, the end

void Worker::housekeeping(Clock::time_point now) {
  for (auto& p : participants_) {
    if (bookings_[p.booking]->broken) continue;
    expire(p, now, false);
    std::string reason;
    if (const std::uint64_t refused = p.link->take_publish_failures(reason)) {
      stats_.violation("publish_refused", p.link->id() + ": the broker refused a request (" + reason + ")", refused);
    }
  }
  if (options_.shared && phase_ != Phase::setup) {
    for (auto& p : participants_) {
      if (p.lost || p.catch_up_in_flight || bookings_[p.booking]->broken) continue;
      if (auto from = bookings_[p.booking]->ledger.catch_up_from(p.role, now, seconds(options_.gap_wait_s))) {
        send_catch_up(p, *from);
      }
    }
  }
  for (std::size_t i = 0; i < bookings_.size(); ++i) {
    Booking& b = *bookings_[i];
    if (b.broken || !b.call || now < b.call->deadline) continue;
    const ActiveCall& call = *b.call;
    stats_.violation("call_incomplete", b.code + " call " + call.call_id + " (" +
                                            (call.outcome == CallOutcome::accept    ? "accept"
                                             : call.outcome == CallOutcome::decline ? "decline"
                                                                                    : "missed") +
                                            ") did not end in time");
    call_over(i);
  }
  idle_.store(compute_idle(phase_), std::memory_order_release);
}

// Requests past their deadline (or all of them, at the end) are sent again (--resend-after) or
// count as unanswered.
void Worker::expire(Participant& p, Clock::time_point now, bool everything) {
  std::vector<Pending> due;
  for (auto it = p.pending.begin(); it != p.pending.end();) {
    if (!everything && it->second.deadline > now) {
      ++it;
      continue;
    }
    if (!it->second.held) {
      if (p.expired.size() >= kExpiredMemory) p.expired.clear();
      p.expired.insert(it->first);
    }
    due.push_back(std::move(it->second));
    it = p.pending.erase(it);
  }
  for (Pending& request : due) {
    if (!everything && request.held) {
      request.held = false;  // the `unavailable` wait is over: out it goes (retry counted it)
      std::string topic = request.topic;
      std::string payload = request.payload;
      publish(p, topic, std::move(payload), std::move(request));
      continue;
    }
    if (!everything && retry(p, request, now, false)) continue;
    std::string what = request_name(request.kind);
    if (request.kind == RequestKind::make_call) what += " " + request.action;
    if (!request.id.empty()) what += " " + request.id;
    char limit[32];
    std::snprintf(limit, sizeof limit, "%g", options_.reply_timeout_s);
    stats_.violation("reply_timeout", p.link->id() + ": no reply to " + what +
                                          (everything ? " by the end" : " within ") +
                                          (everything ? std::string() : std::string(limit) + " s"));
    request_failed(p, request, now);
  }
}

bool Worker::retry(Participant& p, Pending request, Clock::time_point now, bool hold) {
  if (options_.resend_after_s <= 0) return false;
  Booking& b = *bookings_[p.booking];
  if (request.kind == RequestKind::make_call) {
    // A call action is not resent (a second start would be `busy`, a second accept `invalid_state`):
    // the call is given up, and however the system ends it is right.
    ++stats_.faults.calls_abandoned;
    b.ledger.allow_any_end(request.id);
    if (b.call && b.call->call_id == request.id) call_over(p.booking);
    return true;
  }
  if (request.resends >= options_.resend_tries) return false;
  ++request.resends;
  ++stats_.faults.resends;
  if (request.kind == RequestKind::send_message) b.ledger.message_resent(request.id);
  if (hold) {
    request.held = true;
    request.deadline = now + seconds(options_.resend_after_s);
    p.pending.emplace(p.next_correlation++, std::move(request));
    return true;
  }
  std::string topic = request.topic;
  std::string payload = request.payload;
  publish(p, topic, std::move(payload), std::move(request));
  return true;
}

bool Worker::compute_idle(Phase phase) const {
  switch (phase) {
    case Phase::setup:
      return std::all_of(participants_.begin(), participants_.end(),
                         [this](const Participant& p) { return p.pending.empty() || bookings_[p.booking]->broken; });
    case Phase::running:
    case Phase::done: return false;
    case Phase::draining:
      for (const auto& b : bookings_) {
        if (b->broken) continue;
        if (b->call || !b->ledger.settled()) return false;
        for (std::size_t c : b->clients) {
          if (!participants_[c].pending.empty()) return false;
        }
      }
      return true;
    case Phase::finalizing:
      for (const auto& b : bookings_) {
        if (b->broken) continue;
        for (std::size_t c : b->clients) {
          if (!participants_[c].pending.empty()) return false;
        }
        if (!b->last_seq_failed && (!b->last_seq || !b->ledger.caught_up(*b->last_seq))) return false;
      }
      return true;
  }
  return false;
}

void Worker::wake_stalled_senders(Clock::time_point now) {
  if (wake_candidates_.empty() || now - last_wake_ < kWakeEvery) return;
  last_wake_ = now;
  std::sort(wake_candidates_.begin(), wake_candidates_.end());
  wake_candidates_.erase(std::unique(wake_candidates_.begin(), wake_candidates_.end()), wake_candidates_.end());
  auto keep = wake_candidates_.begin();
  for (std::size_t i : wake_candidates_) {
    Participant& p = participants_[i];
    if (p.lost || !p.link->unacknowledged()) continue;
    p.link->publish_wake(p.wake_topic);
    *keep++ = i;
  }
  wake_candidates_.erase(keep, wake_candidates_.end());
}

void Worker::finish() {
  const auto now = Clock::now();
  for (auto& p : participants_) {
    if (!bookings_[p.booking]->broken) expire(p, now, true);
  }
  for (auto& bp : bookings_) {
    Booking& b = *bp;
    if (b.broken) continue;
    if (b.call) {
      stats_.violation("call_incomplete", b.code + " call " + b.call->call_id + " still in progress at the end");
      b.call.reset();
    }
    b.ledger.finish(b.last_seq);
  }
}

}  // namespace navietakie::sim
