#include "core/engine.hpp"

#include <algorithm>
#include <chrono>
#include <random>

#include "core/calls.hpp"
#include "core/engine_handled.hpp"
#include "core/engine_handled.hpp"
#include "core/log.hpp"
#include "core/payload_limit.hpp"
#include "core/wire.hpp"

namespace navietakie {
namespace {

// Microseconds since `received`, for a request's log line.
std::string latency_us(std::chrono::steady_clock::time_point received) {
  const auto elapsed = std::chrono::steady_clock::now() - received;
  return std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count());
}

// Ids the system makes: 128 random bits in hex.
std::string random_id(std::string_view prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string id(prefix);
  for (int half = 0; half < 2; ++half) {
    std::uint64_t bits = rng();
    for (int i = 0; i < 16; ++i) {
      id += hex[bits & 0xF];
      bits >>= 4;
    }
  }
  return id;
}

void count(std::atomic<std::uint64_t>& counter) { counter.fetch_add(1, std::memory_order_relaxed); }

// A store failure as a client reads it: the store's own message, prefixed once with what it means.
ProtocolError storage_failure(const StoreError& e, ErrorCode code) {
  const char* meaning = e.kind() == StoreError::Kind::full          ? "storage full: "
                        : e.kind() == StoreError::Kind::unavailable ? "storage unavailable: "
                                                                    : "storage error: ";
  return ProtocolError(code, meaning + std::string(e.what()));
}

// The distinct bookings a transaction is about to touch, sorted: every transaction locks them in
// this one order (StoreWriter::lock_bookings), so that two hosts sharing a store never deadlock.
template <class Range, class BookingOf>
std::vector<std::string> sorted_bookings(const Range& items, BookingOf booking_of) {
  std::set<std::string> codes;
  for (const auto& item : items) {
    if (auto code = booking_of(item)) codes.insert(std::move(*code));
  }
  return {codes.begin(), codes.end()};
}

// ---- What an authenticated publisher may ask (docs/protocol.md, Identity) ----
// The checks run after the payload is decoded and before the store is read: `forbidden` comes
// after `invalid_request` and before `not_found` / `invalid_state` / `busy`, and a forbidden request
// reads nothing (not even the original of a resent message_id).

[[noreturn]] void forbid(const std::string& why) { throw ProtocolError(ErrorCode::forbidden, why); }

// The role a participant identity speaks as; nullopt for a service, which may speak as anyone.
std::optional<Role> own_role(const Identity& identity) {
  switch (identity.principal) {
    case Principal::driver: return Role::driver;
    case Principal::passenger: return Role::passenger;
    case Principal::service: return std::nullopt;
  }
  forbid("unknown principal");  // fail closed
}

// A participant sends text as itself; `call` and `system` messages come from services only.
void check_send(const Identity& identity, const SendMessageRequest& r) {
  auto role = own_role(identity);
  if (!role) return;
  if (r.sender != *role) forbid("'sender' contradicts the authenticated role");
  if (r.type != MessageType::text) {
    forbid(std::string("'type' ") + to_string(r.type) + " is reserved for service identities");
  }
  if (r.sender_id && *r.sender_id != identity.subject) forbid("'sender_id' contradicts the authenticated identity");
}

// A participant acts on calls as its own role; which role may take which action is the state
// machine's rule (core/calls.*), applied after this.
void check_call(const Identity& identity, const MakeCallRequest& r) {
  auto role = own_role(identity);
  if (role && r.by && *r.by != *role) forbid("'by' contradicts the authenticated role");
}

// A participant declares only its own role's presence, and only for its own MQTT connection.
void check_presence(const Identity& identity, const PresenceRequest& r, const std::string& publisher) {
  auto role = own_role(identity);
  if (!role) return;
  if (r.role != *role) forbid("'role' contradicts the authenticated role");
  if (r.client_id && *r.client_id != publisher) forbid("'client_id' is not the publisher's MQTT client id");
}

}  // namespace

void check_own_role(const Identity& identity, Role role, const char* field) {
  auto own = own_role(identity);
  if (own && role != *own) forbid(std::string("'") + field + "' contradicts the authenticated role");
}

EngineOptions engine_options(const Settings& settings) {
  EngineOptions options;
  options.topic_prefix = settings.topic_prefix;
  options.call_ring_timeout_ms = Millis{settings.call_ring_timeout_s} * 1000;
  options.max_payload_bytes = settings.max_payload_bytes;
  options.max_text_bytes = settings.max_text_bytes;
  options.batch_max = std::min(settings.batch_max, options.batch_max);
  options.retention_ms = Millis{settings.retention_days} * 24 * 3600 * 1000;
  options.rate_limit_per_s = settings.rate_limit_per_s;
  options.rate_limit_burst = settings.rate_limit_burst;
  // Other bridges share the database: a call one of them started must time out even if it died.
  if (settings.store_backend == StoreBackend::postgres) options.deadline_scan_ms = 1000;
  for (const auto& url : settings.ice_servers) {
    const auto scheme = ice_url_scheme(url);
    (scheme == "turn" || scheme == "turns" ? options.ice.turn_urls : options.ice.stun_urls).push_back(url);
  }
  options.ice.turn_secret = settings.turn_secret;
  options.ice.turn_ttl_s = settings.turn_ttl_s;
  return options;
}

Millis system_clock_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string EngineMetrics::to_json() const {
  Json errors_by_code = Json::object();
  for (std::size_t i = 0; i < error_code_count; ++i) {
    errors_by_code[to_string(static_cast<ErrorCode>(i))] = errors[i].load();
  }
  return Json{{"requests", requests.load()},
              {"batches", batches.load()},
              {"messages_stored", messages_stored.load()},
              {"duplicates", duplicates.load()},
              {"calls_missed", calls_missed.load()},
              {"overloaded", overloaded.load()},
              {"typing_dropped", typing_dropped.load()},
              {"bookings_closed", bookings_closed.load()},
              {"bookings_purged", bookings_purged.load()},
              {"purge_batches", purge_batches.load()},
              {"errors", errors_by_code}}
      .dump();
}

Engine::Engine(Store& store, EngineOptions options, Clock clock)
    : store_(store),
      options_(std::move(options)),
      topics_(options_.topic_prefix),
      clock_(std::move(clock)),
      rate_limiter_(options_.rate_limit_per_s, options_.rate_limit_burst) {}

std::vector<std::string> Engine::request_filters() const {
  std::vector<std::string> filters;
  for (const auto& action : wire::kActions) filters.push_back(topics_.request_filter(action.value));
  return filters;
}

std::vector<Publish> Engine::handle(const std::vector<Request>& batch) {
  return handle_admitted(batch, take_tokens(batch));
}

std::vector<RateLimiter::Verdict> Engine::take_tokens(const std::vector<Request>& batch) {
  std::vector<RateLimiter::Verdict> verdicts(batch.size(), RateLimiter::Verdict::admitted);
  if (!rate_limiter_.enabled()) return verdicts;
  const Millis now = clock_();
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const Request& r = batch[i];
    // A service speaks for many people on one connection (an edge node's uplink carries a whole
    // car, a back-office tool or import many bookings): the operator's own, not limited.
    if (r.identity && r.identity->principal == Principal::service) continue;
    if (r.client_id.empty()) {
      // A host that cannot tell who published (a bridge without trust_identity_property): one
      // bucket for everyone would let one client starve all, so none (docs/protocol.md).
      if (!warned_unknown_client_) {
        warned_unknown_client_ = true;
        log_line(LogLevel::warn, "rate_limit_not_applied",
                 {{"why", "the host does not know the publisher's client id"}, {"topic", r.topic}});
      }
      continue;
    }
    verdicts[i] = rate_limiter_.admit(r.client_id, now);
    if (verdicts[i] == RateLimiter::Verdict::first_refusal) {
      // One line when a client starts being refused; each refusal is counted (errors.rate_limited).
      log_line(LogLevel::warn, "rate_limited", {{"client_id", r.client_id}, {"topic", r.topic}});
    }
  }
  return verdicts;
}

std::vector<Publish> Engine::handle_admitted(const std::vector<Request>& batch,
                                             const std::vector<RateLimiter::Verdict>& verdicts) {
  std::vector<Handled> handled(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) handled[i].rate = verdicts[i];
  const auto admitted = [&](const Request& r) {
    return verdicts[static_cast<std::size_t>(&r - batch.data())] == RateLimiter::Verdict::admitted;
  };
  if (std::none_of(batch.begin(), batch.end(), admitted)) {
    // Every request refused by the rate limit (a flood): answered without a store transaction,
    // so that refusing costs no commit and locks no booking.
    std::vector<Publish> out;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      handle_one(nullptr, batch[i], handled[i]);
      if (!handled[i].ignored) finish(handled[i], out);
    }
    return out;
  }
  const auto bookings = sorted_bookings(batch, [&](const Request& r) -> std::optional<std::string> {
    if (!admitted(r)) return std::nullopt;  // refused before the store: locks nothing
    auto parsed = topics_.parse_request(r.topic);
    if (!parsed || !valid_booking_code(parsed->booking)) return std::nullopt;
    return parsed->booking;
  });
  try {
    store_.write([&](StoreWriter& w) {
      w.lock_bookings(bookings);
      for (std::size_t i = 0; i < batch.size(); ++i) handle_one(&w, batch[i], handled[i]);
    });
  } catch (const StoreError& e) {
    if (batch.size() > 1) {
      // Nothing of the batch is stored. Whatever failed (the commit's pages did not fit, or the
      // disk reported EIO for one request's pages), retry one request per transaction, so that
      // only the requests whose own commit fails get an error: a read, or a request that writes
      // nothing, never fails because of a neighbour.
      log_line(LogLevel::warn, "commit_failed_retrying_singly",
               {{"error", e.what()}, {"requests", std::to_string(batch.size())}});
      metrics_.requests.fetch_sub(batch.size(), std::memory_order_relaxed);  // counted again below
      std::vector<Publish> out;
      for (std::size_t i = 0; i < batch.size(); ++i) {
        auto one = handle_admitted({batch[i]}, {verdicts[i]});
        out.insert(out.end(), std::make_move_iterator(one.begin()), std::make_move_iterator(one.end()));
      }
      return out;
    }
    // Nothing is stored: no success may be reported, no event, timer or connection kept.
    log_line(LogLevel::error, "commit_failed", {{"error", e.what()}, {"requests", std::to_string(batch.size())}});
    for (std::size_t i = 0; i < batch.size(); ++i) {
      Handled& h = handled[i];
      if (!h.topic && !h.ignored) {
        // The transaction failed before this request was handled (a networked store that cannot
        // begin one): check it without the store, so that it gets an answer, and its own error
        // first if it has one.
        metrics_.requests.fetch_sub(1, std::memory_order_relaxed);  // counted again
        handle_one(nullptr, batch[i], h);
        if (h.error && h.error->code() == ErrorCode::unavailable) h.error.reset();  // "overloaded": not so
      }
      if (h.error || h.ignored) continue;
      h.error = storage_failure(e, ErrorCode::unavailable);
      h.discard_effects();
    }
  }
  count(metrics_.batches);
  std::vector<Publish> out;
  for (auto& h : handled) {
    if (h.ignored) continue;
    for (const auto& d : h.disarm) deadlines_.erase(d);
    for (const auto& d : h.arm) deadlines_.insert(d);
    if (h.connection) apply(*h.connection);
    finish(h, out);
  }
  return out;
}

std::vector<Publish> Engine::overloaded(const Request& request) {
  count(metrics_.overloaded);
  Handled h;
  handle_one(nullptr, request, h);
  h.log_quietly = h.error && h.error->code() == ErrorCode::unavailable;  // EngineLoop logs the count
  std::vector<Publish> out;
  if (!h.ignored) finish(h, out);
  return out;
}

void Engine::apply(const ConnectionChange& change) {
  if (change.online) {
    client_connections_[change.client_id].insert({change.booking, change.key});
  } else if (auto found = client_connections_.find(change.client_id); found != client_connections_.end()) {
    found->second.erase({change.booking, change.key});
    if (found->second.empty()) client_connections_.erase(found);
  }
}

void Engine::handle_one(StoreWriter* store, const Request& request, Handled& h) {
  count(metrics_.requests);
  h.topic = &request.topic;
  h.received = request.received != std::chrono::steady_clock::time_point{} ? request.received
                                                                          : std::chrono::steady_clock::now();
  auto parsed = topics_.parse_request(request.topic);
  if (!parsed) {
    h.ignored = true;
    log_line(LogLevel::warn, "ignored", {{"topic", request.topic}, {"why", "not a request topic"}});
    return;
  }
  h.action = to_string(parsed->action);
  // Errors of a request on a valid booking go to that booking's errors topic, whichever error it is.
  if (valid_booking_code(parsed->booking)) h.booking = parsed->booking;
  try {
    // A reply address is checked after the booking code (error precedence), but an unusable one is
    // never used, not even for the errors found before it: they go to the errors topic.
    std::optional<ProtocolError> bad_reply_address;
    if (request.response_topic) {
      bad_reply_address =
          reply_address_problem(topics_, options_, request, *request.response_topic, "response topic");
      if (!bad_reply_address) {
        h.reply_topic = request.response_topic;
        h.correlation_data = request.correlation_data;
      }
    }
    check_payload_size(request.payload.size(), options_.max_payload_bytes);
    const RequestBody body(request.payload);
    const JsonValue* correlation_id = nullptr;
    if (!request.response_topic && body.is_object()) {
      // MQTT 3.1.1 fallback: the reply address travels in the payload.
      if ((correlation_id = body.find("correlation_id"))) h.correlation_id = compact_json(*correlation_id);
      if (const JsonValue* reply_to = body.find("reply_to")) {
        if (!reply_to->IsString()) {
          bad_reply_address = ProtocolError(ErrorCode::invalid_request, "'reply_to' must be a string");
        } else {
          std::string topic(string_of(*reply_to));
          if (!(bad_reply_address = reply_address_problem(topics_, options_, request, topic, "reply_to"))) {
            h.reply_topic = std::move(topic);
          }
        }
      }
    }
    if (h.booking.empty()) {
      throw ProtocolError(ErrorCode::invalid_booking_code,
                          "booking code must be " + wire::describe(wire::kBookingCode));
    }
    // Right after the booking code (whose errors topic carries the refusal when there is no usable
    // reply address): a limited request's fields are not even checked.
    if (h.rate != RateLimiter::Verdict::admitted) {
      h.log_quietly = true;  // take_tokens logged the first refusal; each one is counted
      throw ProtocolError(ErrorCode::rate_limited,
                          "more than " + std::to_string(options_.rate_limit_per_s) +
                              " requests a second (burst " + std::to_string(options_.rate_limit_burst) +
                              ") from this client: slow down and retry");
    }
    if (bad_reply_address) {
      if (bad_reply_address->code() != ErrorCode::forbidden) throw *bad_reply_address;
      h.refused_reply = std::move(bad_reply_address);  // `forbidden` comes after `invalid_request`
    }
    if (!body.is_object()) throw ProtocolError(ErrorCode::invalid_request, "payload must be a JSON object");
    if (correlation_id && !correlation_id->IsString()) {
      throw ProtocolError(ErrorCode::invalid_request, "'correlation_id' must be a string");
    }
    // Checked last, so that the answer to a request is the same whatever the load, but for this.
    if (!store) throw ProtocolError(ErrorCode::unavailable, "overloaded: too many requests waiting, retry later");
    StoreWriter& w = *store;
    w.unit([&] {
      switch (parsed->action) {
        case Action::send_message: handle_send(w, request, body, h); break;
        case Action::get_message: handle_get(w, request, body, h); break;
        case Action::make_call: handle_call(w, request, body, h); break;
        case Action::presence: handle_presence(w, request, body, h); break;
        case Action::mark_read: handle_mark_read(w, request, body, h); break;
        case Action::typing: handle_typing(w, request, body, h); break;
        case Action::close: handle_close(w, request, body, h); break;
        case Action::signal: {
          SignalRequest r = decode_signal(body);
          h.events.push_back(relay_signal(w, r, authenticated(request, h), h));
          h.result = Handled::Result::relayed;
          break;
        }
      }
    });
  } catch (const ProtocolError& e) {
    h.error = e;
  } catch (const StoreError& e) {
    h.error = storage_failure(e, e.kind() == StoreError::Kind::io ? ErrorCode::internal : ErrorCode::unavailable);
  } catch (const std::exception& e) {
    h.error = ProtocolError(ErrorCode::internal, e.what());
  }
  // A failed unit left nothing behind in the store; drop what it prepared too.
  if (h.error) h.discard_effects();
}

const Identity* Engine::authenticated(const Request& request, const Handled& h) const {
  const Identity* identity = nullptr;
  if (request.identity) {
    identity = &*request.identity;
    if (identity->principal != Principal::service && identity->booking != h.booking) {
      forbid("booking not allowed for this identity");
    }
  } else if (options_.require_identity) {
    forbid("not authenticated");
  }
  if (h.refused_reply) throw *h.refused_reply;
  return identity;  // nullptr: open mode
}

std::optional<ProtocolError> reply_address_problem(const Topics& topics, const EngineOptions& options,
                                                   const Request& request, const std::string& topic,
                                                   const std::string& field) {
  // Built only for an answer that needs it: most requests have a usable address.
  const auto name = [&] { return "'" + field + "'"; };
  if (!Topics::valid_topic_name(topic)) {
    return ProtocolError(ErrorCode::invalid_request,
                         name() + " must be a topic name: not empty, no '+' or '#', not starting with '$'");
  }
  if (topics.system_topic(topic)) {
    return ProtocolError(ErrorCode::forbidden,
                         name() + " is a request, event, errors or metrics topic: no reply is published there");
  }
  if (request.identity && options.reply_allowed &&
      !options.reply_allowed(*request.identity, request.client_id, topic)) {
    return ProtocolError(ErrorCode::forbidden,
                         name() + " is not the publisher's to use (a driver or passenger: under " +
                             options.topic_prefix +
                             "/replies/{its own client id}/; a service: a topic its grants let it receive)");
  }
  return std::nullopt;
}

void Engine::handle_send(StoreWriter& w, const Request& request, const RequestBody& body, Handled& h) {
  SendMessageRequest r = decode_send_message(body, options_.max_text_bytes);
  const Identity* identity = authenticated(request, h);
  if (identity) check_send(*identity, r);
  if (r.message_id) {
    if (auto first = w.message_by_id(h.booking, *r.message_id)) {
      h.duplicate = true;
      h.result = Handled::Result::message;
      if (h.reply_topic) h.result_json = json_text(*first);
      return;
    }
  }
  require_open(w, h);  // after the resend check: the original of a message_id is no new write
  Message m;
  m.booking_code = h.booking;
  m.seq = w.last_seq(h.booking) + 1;  // gapless: assigned inside the write txn
  m.message_id = r.message_id ? *r.message_id : random_id("");
  m.type = r.type;
  m.sender = r.sender;
  // With credentials, they say who sent it, not the payload. A service (support tools, telephony
  // imports) may relay for someone and name them; without a name it is the sender itself.
  if (!identity) {
    m.sender_id = r.sender_id;
  } else if (identity->principal == Principal::service && r.sender_id) {
    m.sender_id = r.sender_id;
  } else {
    m.sender_id = identity->subject;
  }
  m.text = std::move(r.text);
  m.data_json = std::move(r.data_json);
  m.ts = clock_();
  w.append_message(m);
  // Written once: the event carries these bytes, and so does the reply.
  std::string json = json_text(m);
  h.stored_message = true;
  h.result = Handled::Result::message;
  h.result_event = h.events.size();
  h.events.push_back(Publish{topics_.message_events(h.booking), std::move(json), false, std::nullopt});
}

void Engine::handle_get(StoreWriter& w, const Request& request, const RequestBody& body, Handled& h) {
  HistoryQuery q = decode_get_message(body);
  authenticated(request, h);  // any identity of the booking may read all of it
  HistoryPage page = w.history(h.booking, q);
  h.result = Handled::Result::messages;
  h.has_more = page.has_more;
  h.last_seq = page.last_seq;
  if (!h.reply_topic) return;  // nobody to answer (a page is only ever a reply)
  h.read_json = read_receipts_json(w, h.booking);
  JsonWriter out;
  out.begin_array();
  for (const auto& m : page.messages) write_json(out, m);
  out.end_array();
  h.result_json = out.str();
}

void Engine::handle_call(StoreWriter& w, const Request& request, const RequestBody& body, Handled& h) {
  MakeCallRequest r = decode_make_call(body);
  if (const Identity* identity = authenticated(request, h)) check_call(*identity, r);
  // The parties' media setup: a party that starts, accepts or looks up (a reloaded page) a call
  // gets the ICE servers with it. Only in the reply, for the reply's one reader.
  if (r.by && h.reply_topic && options_.ice.configured() &&
      (r.action == CallAction::start || r.action == CallAction::accept || r.action == CallAction::get)) {
    JsonWriter ice;
    write_ice(ice, options_.ice, clock_(), h.booking + "." + to_string(*r.by));
    h.ice_json = ice.str();
  }
  if (r.action == CallAction::get) {
    auto call = r.call_id ? w.call(h.booking, *r.call_id) : w.active_call(h.booking);
    if (!call) {
      throw ProtocolError(ErrorCode::not_found, r.call_id ? "no call '" + *r.call_id + "' in this booking"
                                                          : std::string("no active call in this booking"));
    }
    h.result = Handled::Result::call;
    h.result_json = json_text(*call);
    return;
  }
  if (r.action == CallAction::start) {
    if (r.call_id) {
      if (auto existing = w.call(h.booking, *r.call_id)) {  // a retried start
        h.result = Handled::Result::call;
        h.result_json = json_text(*existing);
        return;
      }
    }
    require_open(w, h, r.action);
    if (auto active = w.active_call(h.booking)) {
      throw ProtocolError(ErrorCode::busy, "call '" + active->call_id + "' is already active in this booking",
                          active->call_id);
    }
    Call call =
        start_call(h.booking, r.call_id ? *r.call_id : random_id("c-"), *r.by, clock_(), options_.call_ring_timeout_ms);
    record_call_change(w, call, *r.by, h);
    h.arm.push_back(Deadline{call.ring_deadline, call.booking_code, call.call_id});
    return;
  }
  auto call = w.call(h.booking, *r.call_id);
  if (!call) throw ProtocolError(ErrorCode::not_found, "no call '" + *r.call_id + "' in this booking");
  Call next = apply_call_action(*call, r.action, *r.by, clock_());
  record_call_change(w, next, *r.by, h);
  if (call->state == CallState::ringing)
    h.disarm.push_back(Deadline{call->ring_deadline, call->booking_code, call->call_id});
}

void Engine::record_call_change(StoreWriter& w, const Call& call, Role sender, Handled& h) {
  w.put_call(call);
  std::string call_json = json_text(call);
  Message m;
  m.booking_code = call.booking_code;
  m.seq = w.last_seq(call.booking_code) + 1;
  m.message_id = random_id("");
  m.type = MessageType::call;
  m.sender = sender;
  JsonWriter data;
  data.begin_object().key("call_id").string(call.call_id).key("state").string(to_string(call.state));
  data.key("end_reason");
  if (call.end_reason == EndReason::none) {
    data.null();
  } else {
    data.string(to_string(call.end_reason));
  }
  data.key("from").string(to_string(call.from)).key("to").string(to_string(call.to));
  data.key("duration_ms").number(call.duration_ms()).end_object();
  m.data_json = data.str();
  m.ts = clock_();
  w.append_message(m);
  h.stored_message = true;
  h.result = Handled::Result::call;
  h.result_event = h.events.size();
  h.events.push_back(Publish{topics_.call_events(call.booking_code), std::move(call_json), false, std::nullopt});
  h.events.push_back(Publish{topics_.message_events(call.booking_code), json_text(m), false, std::nullopt});
}

void Engine::handle_presence(StoreWriter& w, const Request& request, const RequestBody& body, Handled& h) {
  PresenceRequest r = decode_presence(body);
  if (const Identity* identity = authenticated(request, h)) check_presence(*identity, r, request.client_id);
  // The bridge cannot see who published; without a client_id the role itself keys the connection.
  std::string key = r.client_id                  ? *r.client_id
                    : !request.client_id.empty() ? request.client_id
                                                 : std::string("role:") + to_string(r.role);
  w.put_connection(Connection{h.booking, key, r.role, r.online, clock_()});
  // A host that sees disconnects (the plugin) reports them by MQTT client id; remembered only
  // once the commit succeeded (handle()).
  if (!request.client_id.empty()) h.connection = ConnectionChange{request.client_id, h.booking, key, r.online};
  Presence presence = refresh_presence(w, h.booking);
  std::string json = json_text(presence);
  h.result = Handled::Result::presence;
  h.result_event = h.events.size();
  h.events.push_back(Publish{topics_.presence_events(h.booking), std::move(json), true, std::nullopt});
}

Presence Engine::refresh_presence(StoreWriter& w, const std::string& booking) {
  Millis now = clock_();
  Presence presence = w.presence(booking).value_or(Presence{booking, {}, {}});
  bool driver_online = false;
  bool passenger_online = false;
  bool driver_seen = false;
  bool passenger_seen = false;
  for (const auto& c : w.connections(booking)) {
    (c.role == Role::driver ? driver_seen : passenger_seen) = true;
    if (c.online) (c.role == Role::driver ? driver_online : passenger_online) = true;
  }
  // A role is online while any of its clients is; `since` moves only when that flips.
  auto update = [now](RolePresence& role, bool seen, bool online) {
    if (seen && (!role.since || role.online != online)) {
      role.online = online;
      role.since = now;
    }
  };
  update(presence.driver, driver_seen, driver_online);
  update(presence.passenger, passenger_seen, passenger_online);
  w.put_presence(presence);
  return presence;
}

std::vector<Publish> Engine::set_offline(const std::set<std::pair<std::string, std::string>>& connections) {
  std::set<std::string> bookings;
  std::vector<Publish> out;
  const auto locked = sorted_bookings(
      connections, [](const std::pair<std::string, std::string>& c) -> std::optional<std::string> { return c.first; });
  try {
    store_.write([&](StoreWriter& w) {
      w.lock_bookings(locked);
      for (const auto& [booking, key] : connections) {
        for (auto c : w.connections(booking)) {
          if (c.client_id != key || !c.online) continue;
          c.online = false;
          c.since = clock_();
          w.put_connection(c);
          bookings.insert(booking);
        }
      }
      for (const auto& booking : bookings) {
        out.push_back(Publish{topics_.presence_events(booking), json_text(refresh_presence(w, booking)), true,
                              std::nullopt});
      }
    });
  } catch (const StoreError& e) {
    log_line(LogLevel::error, "presence_offline_failed", {{"error", e.what()}});
    return {};
  }
  return out;
}

std::vector<Publish> Engine::disconnected(const std::vector<std::string>& client_ids) {
  std::set<std::pair<std::string, std::string>> connections;
  const Millis now = clock_();
  for (const auto& id : client_ids) {
    rate_limiter_.disconnected(id, now);
    auto it = client_connections_.find(id);
    if (it == client_connections_.end()) continue;
    connections.insert(it->second.begin(), it->second.end());
    client_connections_.erase(it);
  }
  if (connections.empty()) return {};
  for (const auto& [booking, key] : connections) {
    log_line(LogLevel::debug, "disconnected", {{"booking", booking}, {"connection", key}});
  }
  return set_offline(connections);
}

void Engine::finish(Handled& h, std::vector<Publish>& out) {
  if (h.error) {
    count(metrics_.errors[static_cast<std::size_t>(h.error->code())]);
    auto level = h.error->code() == ErrorCode::internal || h.error->code() == ErrorCode::unavailable ? LogLevel::error
                                                                                                     : LogLevel::warn;
    if (!h.log_quietly && log_enabled(level))
      log_line(level, "request",
               {{"booking", h.booking},
                {"action", h.action},
                {"outcome", to_string(h.error->code())},
                {"latency_us", latency_us(h.received)},
                {"topic", *h.topic},
                {"error", to_string(h.error->code())},
                {"message", h.error->what()}});
  } else {
    if (h.stored_message) count(metrics_.messages_stored);
    if (h.duplicate) count(metrics_.duplicates);
    if (h.closed_booking) count(metrics_.bookings_closed);
    if (h.typing_dropped) count(metrics_.typing_dropped);
    if (log_enabled(LogLevel::debug)) {
      log_line(LogLevel::debug, "request",
               {{"booking", h.booking}, {"action", h.action}, {"outcome", "ok"}, {"latency_us", latency_us(h.received)}});
    }
  }
  // A success is answered only at a reply address; an error, failing that, on an errors topic.
  if (h.reply_topic || h.error) {
    // Strings from the client (the request topic) are written with invalid UTF-8 replaced.
    JsonWriter reply;
    reply.begin_object().key("ok").boolean(!h.error);
    if (h.error) {
      reply.key("error").begin_object();
      reply.key("code").string(to_string(h.error->code())).key("message").string(h.error->what());
      if (!h.error->call_id().empty()) reply.key("call_id").string(h.error->call_id());
      reply.end_object();
    } else {
      write_result(reply, h);
    }
    if (h.correlation_id) reply.key("correlation_id").raw(*h.correlation_id);
    if (h.reply_topic) {
      reply.end_object();
      out.push_back(Publish{std::move(*h.reply_topic), reply.str(), false, std::move(h.correlation_data)});
    } else {
      reply.key("request_topic").string(*h.topic).end_object();
      out.push_back(Publish{h.booking.empty() ? topics_.global_errors() : topics_.booking_errors(h.booking),
                            reply.str(), false, std::nullopt});
    }
  }
  out.insert(out.end(), std::make_move_iterator(h.events.begin()), std::make_move_iterator(h.events.end()));
}

void Engine::write_result(JsonWriter& reply, const Handled& h) {
  const std::string& result_json = h.result_event ? h.events[*h.result_event].payload : h.result_json;
  switch (h.result) {
    case Handled::Result::none: return;
    case Handled::Result::message:
      reply.key("message").raw(result_json).key("duplicate").boolean(h.duplicate);
      return;
    case Handled::Result::messages:
      reply.key("messages").raw(result_json).key("has_more").boolean(h.has_more);
      reply.key("last_seq").number(h.last_seq);
      if (!h.read_json.empty()) reply.key("read").raw(h.read_json);
      return;
    case Handled::Result::booking: reply.key("booking").raw(result_json); return;
    case Handled::Result::call:
      reply.key("call").raw(result_json);
      if (h.ice_json) reply.key("ice").raw(*h.ice_json);
      return;
    case Handled::Result::relayed: reply.key("relayed").boolean(true); return;
    case Handled::Result::presence: reply.key("presence").raw(result_json); return;
    case Handled::Result::read: reply.key("read").raw(result_json); return;
    case Handled::Result::typing: reply.key("relayed").boolean(h.relayed); return;
  }
}

std::optional<Millis> Engine::next_deadline() const {
  std::optional<Millis> next;
  if (!deadlines_.empty()) next = std::max(deadlines_.begin()->at, expiry_retry_at_);
  // A shared store: other hosts' deadlines are looked for every deadline_scan_ms.
  if (options_.deadline_scan_ms > 0 && (!next || next_deadline_scan_ < *next)) next = next_deadline_scan_;
  return next;
}

void Engine::scan_shared_deadlines(Millis now) {
  if (options_.deadline_scan_ms <= 0 || now < next_deadline_scan_) return;
  next_deadline_scan_ = now + options_.deadline_scan_ms;
  try {
    store_.read([&](const StoreReader& r) {
      for (const auto& call : r.due_ringing_calls(now, options_.batch_max))
        deadlines_.insert(Deadline{call.ring_deadline, call.booking_code, call.call_id});
    });
  } catch (const StoreError& e) {
    log_line(LogLevel::error, "deadline_scan_failed", {{"error", e.what()}});
  }
}

std::vector<Publish> Engine::expire_calls() {
  Millis now = clock_();
  scan_shared_deadlines(now);
  std::vector<Deadline> due;
  for (const auto& d : deadlines_) {
    if (d.at > now || due.size() >= options_.batch_max) break;
    due.push_back(d);
  }
  if (due.empty() || now < expiry_retry_at_) return {};
  std::vector<Handled> handled(due.size());
  const auto bookings = sorted_bookings(due, [](const Deadline& d) -> std::optional<std::string> { return d.booking; });
  try {
    store_.write([&](StoreWriter& w) {
      // Under the bookings' locks, a call another host ended meanwhile reads as not ringing: each
      // deadline ends its call once, whichever host gets there first.
      w.lock_bookings(bookings);
      for (std::size_t i = 0; i < due.size(); ++i) {
        Handled& h = handled[i];
        try {
          w.unit([&] {
            auto call = w.call(due[i].booking, due[i].call_id);
            if (call && call->state == CallState::ringing) record_call_change(w, expire_call(*call), Role::system, h);
          });
        } catch (const StoreError& e) {
          h.error = ProtocolError(ErrorCode::unavailable, e.what());
        }
      }
    });
  } catch (const StoreError& e) {
    log_line(LogLevel::error, "expire_failed", {{"error", e.what()}});
    expiry_retry_at_ = now + options_.store_retry_ms;
    return {};
  }
  std::vector<Publish> out;
  for (std::size_t i = 0; i < due.size(); ++i) {
    if (handled[i].error) {
      log_line(LogLevel::error, "expire_failed", {{"call_id", due[i].call_id}, {"error", handled[i].error->what()}});
      expiry_retry_at_ = now + options_.store_retry_ms;
      continue;
    }
    deadlines_.erase(due[i]);
    if (handled[i].events.empty()) continue;  // no longer ringing
    count(metrics_.calls_missed);
    log_line(LogLevel::info, "call_missed", {{"booking", due[i].booking}, {"call_id", due[i].call_id}});
    out.insert(out.end(), handled[i].events.begin(), handled[i].events.end());
  }
  return out;
}

std::vector<Publish> Engine::start() {
  std::vector<Presence> presence;
  std::vector<ReadReceipts> receipts;
  std::vector<BookingState> closed;
  store_.read([&](const StoreReader& r) {
    for (const auto& call : r.ringing_calls())
      deadlines_.insert(Deadline{call.ring_deadline, call.booking_code, call.call_id});
    presence = r.all_presence();
    closed = r.closed_bookings();
    receipts = r.all_read_receipts();
  });
  std::vector<Publish> out;
  if (options_.offline_at_start) {
    // The host restarted with the broker: nobody is connected any more.
    std::set<std::pair<std::string, std::string>> online;
    store_.read([&](const StoreReader& r) {
      for (const auto& p : presence) {
        for (const auto& c : r.connections(p.booking_code)) {
          if (c.online) online.insert({c.booking_code, c.client_id});
        }
      }
    });
    if (!online.empty()) set_offline(online);
    store_.read([&](const StoreReader& r) { presence = r.all_presence(); });
  }
  for (const auto& p : presence) {
    out.push_back(Publish{topics_.presence_events(p.booking_code), json_text(p), true, std::nullopt});
  }
  // Retained too, like presence: a broker restarted without its retained store still has them.
  for (const auto& r : receipts) {
    out.push_back(Publish{topics_.read_events(r.booking_code), json_text(r), true, std::nullopt});
  }
  for (const auto& b : closed) {
    out.push_back(Publish{topics_.booking_state_events(b.booking_code), json_text(b.booking_code, b), true,
                          std::nullopt});
  }
  next_purge_ = clock_();  // bookings that came of age while the host was down
  // Calls left ringing through a restart are only armed here, not ended: their deadlines have
  // passed, so the engine loop ends them batch_max at a time between request batches. Ending a
  // thousand of them here would delay the first answer by as many store writes.
  log_line(LogLevel::info, "engine_started",
           {{"ringing_calls", std::to_string(deadlines_.size())},
            {"bookings_with_presence", std::to_string(presence.size())},
            {"bookings_with_read_receipts", std::to_string(receipts.size())},
            {"closed_bookings", std::to_string(closed.size())}});
  return out;
}

}  // namespace navietakie
