#include "edge/edge_node.hpp"

#include <algorithm>
#include <random>

#include "core/log.hpp"
#include "core/payload_limit.hpp"
#include "core/store_setup.hpp"

namespace navietakie {
namespace {

// Correlation data upstream: a kind letter, then a number. 'o' outbox entry, 'g' get_message,
// 'k' make_call, 'p' presence, 'c' catch-up.
constexpr char kOutbox = 'o', kGet = 'g', kCall = 'k', kPresence = 'p', kCatchUp = 'c';
constexpr Millis kForwardLostMs = 15000;  // no answer upstream this long: forget it (outbox: re-sent)
constexpr Millis kDrainEveryMs = 5000;    // re-forward outbox entries nobody is waiting for
constexpr Millis kMaxBackoffMs = 5000;

std::string random_message_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string id;
  for (int half = 0; half < 2; ++half) {
    std::uint64_t bits = rng();
    for (int i = 0; i < 16; ++i, bits >>= 4) id += hex[bits & 0xF];
  }
  return id;
}

void count(std::atomic<std::uint64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); }

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::optional<Role> participant_role(const Identity& identity) {
  if (identity.principal == Principal::driver) return Role::driver;
  if (identity.principal == Principal::passenger) return Role::passenger;
  return std::nullopt;
}

}  // namespace

// Where and how a local request is answered (its reply address, or its booking's errors topic).
struct EdgeNode::Envelope {
  std::optional<std::string> reply_topic;
  std::optional<std::string> correlation_data;
  std::optional<Json> correlation_id;  // MQTT 3.1.1 clients: echoed in the payload
  std::string request_topic;
  std::string booking;  // empty: invalid
};

// A request forwarded upstream, waiting for the cloud's reply.
struct EdgeNode::Forward {
  char kind = kOutbox;
  std::optional<Envelope> waiting;  // a local client still waiting for an answer
  Request request;                  // get_message: answered from the replica if the cloud is late
  std::string booking;
  std::string message_id;
  Millis sent_at = 0;
};

std::string EdgeMetrics::to_json() const {
  Json j = {{"forwarded", forwarded.load()},   {"queued", queued.load()},
            {"confirmed", confirmed.load()},   {"rejected", rejected.load()},
            {"replica_answers", replica_answers.load()}, {"replica_stored", replica_stored.load()},
            {"catch_ups", catch_ups.load()},   {"link_ups", link_ups.load()},
            {"link_losses", link_losses.load()}, {"local_errors", local_errors.load()},
            {"bad_upstream", bad_upstream.load()}};
  return j.dump();
}

EdgeNode::EdgeNode(const Settings& settings, Store& replica, EngineOptions engine_options, EngineTransport& wake)
    : settings_(settings),
      topics_(settings.topic_prefix),
      replica_(replica),
      engine_options_(engine_options),
      engine_(replica, std::move(engine_options)),
      wake_(wake),
      edge_store_(settings.data_dir + "/edge", std::size_t{64} << 20, lmdb_options(settings).sync),
      reply_topic_upstream_(topics_.replies(settings.upstream_client_id) + "/edge") {
  // What a restart must not lose: the followed bookings (resubscribed on connect) and the last
  // presence of each (republished retained: the broker keeps no retained messages across restarts).
  for (const auto& booking : edge_store_.bookings()) {
    bookings_.insert(booking);
    replica_.read([&](const StoreReader& r) { tracker_.set_until(booking, r.last_seq(booking)); });
  }
  for (auto& [booking, payload] : edge_store_.all_presence()) {
    presence_seen_[booking] = payload;
    results_.push_back(Publish{topics_.presence_events(booking), payload, true, std::nullopt});
  }
  const std::size_t waiting = edge_store_.outbox().size();
  log_line(LogLevel::info, "edge_node",
           {{"upstream", settings_.upstream_url},
            {"client_id", settings_.upstream_client_id},
            {"bookings", std::to_string(bookings_.size())},
            {"outbox", std::to_string(waiting)}});
  link_ = std::make_unique<UpstreamLink>(settings_, [this] {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      notified_ = true;
    }
    work_.notify_one();
  });
  thread_ = std::thread([this] { run(); });
}

EdgeNode::~EdgeNode() { stop(); }

void EdgeNode::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  work_.notify_one();
  if (thread_.joinable()) thread_.join();
  if (link_) link_->stop();
  log_line(LogLevel::info, "edge_stopping", {{"metrics", metrics_.to_json()}});
}

void EdgeNode::submit(std::vector<Request> requests, std::vector<std::string> disconnected) {
  if (requests.empty() && disconnected.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& r : requests) queue_.push_back(std::move(r));
    for (auto& d : disconnected) disconnected_.push_back(std::move(d));
    notified_ = true;
  }
  work_.notify_one();
}

void EdgeNode::watch_booking(const std::string& booking) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    watch_.push_back(booking);
    notified_ = true;
  }
  work_.notify_one();
}

std::vector<Publish> EdgeNode::take_results() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::exchange(results_, {});
}

void EdgeNode::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    if (stopping_ && queue_.empty()) break;
    // Sleep until work, the next deadline (a waiting forward, a reconnect, a drain), or a second.
    Millis now = system_clock_ms();
    Millis wait = 1000;
    for (const auto& [_, f] : forwards_) {
      if (f.waiting) wait = std::min(wait, std::max<Millis>(0, f.sent_at + kAnswerWithinMs - now));
    }
    // Not up(): that calls into Paho while this thread holds mutex_, which Paho's thread takes in
    // the notify (a lock-order inversion that froze the car under load). A stale answer here only
    // changes how long this thread sleeps.
    if (!link_->reported_up()) wait = std::min(wait, std::max<Millis>(20, next_connect_at_ - now));
    if (!results_.empty()) {
      wake_.wake();  // repeated until the broker thread has taken them (a wake-up can be lost)
      wait = std::min<Millis>(wait, 2);
    }
    if (!notified_) work_.wait_for(lock, std::chrono::milliseconds(wait));
    notified_ = false;
    std::vector<Request> requests = std::exchange(queue_, {});
    std::vector<std::string> disconnected = std::exchange(disconnected_, {});
    std::vector<std::string> watch = std::exchange(watch_, {});
    lock.unlock();
    try {
      step(std::move(requests), std::move(disconnected), std::move(watch));
    } catch (const std::exception& e) {
      log_line(LogLevel::error, "edge_step_failed", {{"error", e.what()}});
    }
    lock.lock();
    results_.insert(results_.end(), std::make_move_iterator(produced_.begin()),
                    std::make_move_iterator(produced_.end()));
    produced_.clear();
    if (!results_.empty()) wake_.wake();
  }
}

void EdgeNode::step(std::vector<Request> requests, std::vector<std::string> disconnected,
                    std::vector<std::string> watch) {
  for (const auto& e : link_->take_events()) on_link_event(e);
  const Millis now = system_clock_ms();
  if (!link_->up()) {
    if (link_->connect_failed()) next_connect_at_ = now + connect_backoff_ms_;
    if (now >= next_connect_at_) {
      link_->connect();
      next_connect_at_ = now + connect_backoff_ms_;
      connect_backoff_ms_ = std::min(connect_backoff_ms_ * 2, kMaxBackoffMs);
    }
  }
  for (const auto& booking : watch) ensure_booking(booking);
  // A local client that left: what it declared online goes offline upstream (its Will may also come).
  for (const auto& client_id : disconnected) {
    auto it = declared_.find(client_id);
    if (it == declared_.end()) continue;
    for (const auto& [booking, role] : it->second) {
      Request r;
      r.topic = topics_.request(booking, Action::presence);
      r.payload = Json{{"role", role}, {"online", false}, {"client_id", client_id}}.dump();
      r.client_id = client_id;
      requests.push_back(std::move(r));
    }
    declared_.erase(it);
  }
  std::vector<OutboxEntry> sends;
  std::vector<Envelope> envelopes;
  for (const auto& r : requests) handle_local(r, sends, envelopes);
  finish_sends(std::move(sends), std::move(envelopes));
  expire_forwards();
  if (link_->up() && now >= next_drain_at_) {
    next_drain_at_ = now + kDrainEveryMs;
    std::set<std::string> in_flight;
    for (const auto& [_, f] : forwards_) {
      if (f.kind == kOutbox) in_flight.insert(f.booking + '\0' + f.message_id);
    }
    for (const auto& entry : edge_store_.outbox()) {
      if (!in_flight.count(entry.booking + '\0' + entry.message_id)) forward_outbox(entry, std::nullopt);
    }
  }
  if (link_->up()) link_->nudge();
}

// ---- the link ----

void EdgeNode::on_link_event(const LinkEvent& e) {
  switch (e.kind) {
    case LinkEvent::Kind::connected: on_connected(); break;
    case LinkEvent::Kind::lost: on_lost(); break;
    case LinkEvent::Kind::message:
      if (e.correlation_data && e.topic.rfind(topics_.replies(settings_.upstream_client_id) + "/", 0) == 0) {
        on_upstream_reply(*e.correlation_data, e.payload);
      } else {
        on_upstream_event(e);
      }
      break;
  }
}

void EdgeNode::on_connected() {
  count(metrics_.link_ups);
  connect_backoff_ms_ = 250;
  log_line(LogLevel::info, "upstream_connected", {{"upstream", settings_.upstream_url}});
  // In this order: the subscriptions (so no event of a catch-up's window is missed), the outbox
  // in arrival order, the latest presence of each local client, then each booking's catch-up.
  std::vector<std::string> filters{topics_.replies(settings_.upstream_client_id) + "/#"};
  for (const auto& b : bookings_) filters.push_back(topics_.booking_events_filter(b));
  link_->subscribe(filters);
  // Answers of the previous connection will not come: nobody may be left waiting for them.
  for (auto& [_, f] : forwards_) answer_without_link(f);
  forwards_.clear();
  for (const auto& entry : edge_store_.outbox()) forward_outbox(entry, std::nullopt);
  next_drain_at_ = system_clock_ms() + kDrainEveryMs;
  for (const auto& [key, payload] : latest_presence_) {
    Request r;
    r.topic = topics_.request(key.first, Action::presence);
    forward(std::string(1, kPresence), r, payload, std::nullopt, key.first, "");
  }
  tracker_.reset_catch_ups();
  for (const auto& b : bookings_) catch_up(b);
}

void EdgeNode::on_lost() {
  count(metrics_.link_losses);
  log_line(LogLevel::warn, "upstream_lost", {{"upstream", settings_.upstream_url}});
  for (auto& [_, f] : forwards_) {
    if (f.waiting) answer_without_link(f);
  }
  forwards_.clear();  // outbox entries stay in the outbox: re-sent on reconnect
  tracker_.reset_catch_ups();
  next_connect_at_ = system_clock_ms() + connect_backoff_ms_;
}

void EdgeNode::forward(const std::string& kind, const Request& request, const std::string& payload,
                       std::optional<Envelope> env, const std::string& booking, const std::string& message_id) {
  const std::string correlation = kind + std::to_string(next_correlation_++);
  if (!link_->publish(request.topic, payload, false, reply_topic_upstream_, correlation)) {
    Forward f{kind[0], std::move(env), request, booking, message_id, system_clock_ms()};
    if (f.waiting) answer_without_link(f);
    return;
  }
  count(metrics_.forwarded);
  forwards_[correlation] = Forward{kind[0], std::move(env), request, booking, message_id, system_clock_ms()};
}

void EdgeNode::forward_outbox(const OutboxEntry& entry, std::optional<Envelope> env) {
  Request r;
  r.topic = topics_.request(entry.booking, Action::send_message);
  forward(std::string(1, kOutbox), r, entry.payload, std::move(env), entry.booking, entry.message_id);
}

// The cloud did not answer in time, or the link is down: the car answers.
void EdgeNode::answer_without_link(Forward& f) {
  if (!f.waiting) return;
  Envelope env = std::move(*f.waiting);
  f.waiting.reset();
  switch (f.kind) {
    case kOutbox: {
      auto entry = edge_store_.outbox_entry(f.booking, f.message_id);
      if (!entry) return;  // confirmed meanwhile: its event went out
      Json message = parse_payload(entry->payload);
      Json record = {{"booking_code", f.booking}, {"message_id", f.message_id}};
      record["type"] = message.value("type", "text");
      record["sender"] = message.value("sender", "driver");
      if (message.contains("sender_id")) record["sender_id"] = message["sender_id"];
      if (message.contains("text")) record["text"] = message["text"];
      record["data"] = message.contains("data") ? message["data"] : Json::object();
      record["ts"] = system_clock_ms();  // the car's clock; the cloud's event carries the cloud's
      count(metrics_.queued);
      reply(env, Json{{"queued", true}, {"message", std::move(record)}, {"duplicate", false}});
      return;
    }
    case kGet: answer_from_replica(f.request); return;
    case kCall: reply_error(env, ErrorCode::unavailable, "no link to the operator"); return;
    case kPresence: {
      Json presence = nullptr;
      if (auto it = presence_seen_.find(f.booking); it != presence_seen_.end()) {
        presence = Json::parse(it->second, nullptr, false);
        if (presence.is_discarded()) presence = nullptr;
      }
      reply(env, Json{{"queued", true}, {"presence", std::move(presence)}});
      return;
    }
    default: return;
  }
}

void EdgeNode::expire_forwards() {
  const Millis now = system_clock_ms();
  for (auto it = forwards_.begin(); it != forwards_.end();) {
    Forward& f = it->second;
    if (f.waiting && now - f.sent_at >= kAnswerWithinMs) answer_without_link(f);
    if (!f.waiting && now - f.sent_at >= kForwardLostMs) {
      if (f.kind == kCatchUp) tracker_.set_catching_up(f.booking, false);
      it = forwards_.erase(it);  // an outbox entry is re-sent by the next drain
    } else {
      ++it;
    }
  }
}

void EdgeNode::on_upstream_reply(const std::string& correlation, const std::string& payload) {
  auto it = forwards_.find(correlation);
  if (it == forwards_.end()) return;  // answered too late for anyone, from before a reconnect
  Forward f = std::move(it->second);
  forwards_.erase(it);
  Json body = Json::parse(payload, nullptr, false);
  if (!body.is_object()) {
    count(metrics_.bad_upstream);
    log_line(LogLevel::warn, "bad_upstream_reply", {{"correlation", correlation}});
    if (f.waiting) answer_without_link(f);
    return;
  }
  const bool ok = body.value("ok", false);
  switch (f.kind) {
    case kOutbox: {
      if (ok) {
        auto m = message_from_json(body.value("message", Json()));
        if (!m) {
          count(metrics_.bad_upstream);
          break;
        }
        receive_message(*m);  // confirms the entry, publishes the local event once
        edge_store_.remove_outbox(f.booking, f.message_id);
      } else {
        const std::string code = body.value("error", Json::object()).value("code", "");
        if (code == to_string(ErrorCode::unavailable) || code == to_string(ErrorCode::internal) ||
            code == to_string(ErrorCode::rate_limited)) {
          // The cloud could not take it now (or not this fast from this car's uplink: docs/edge.md,
          // "Rate limits"): it stays in the outbox, the next drain re-sends it.
          if (f.waiting) answer_without_link(f);
          return;
        }
        // Refused for good (the cloud's rules): it leaves the outbox, and the client hears why.
        count(metrics_.rejected);
        edge_store_.remove_outbox(f.booking, f.message_id);
        log_line(LogLevel::warn, "outbox_rejected",
                 {{"booking", f.booking}, {"message_id", f.message_id}, {"error", code}});
        if (!f.waiting) {
          body["request_topic"] = topics_.request(f.booking, Action::send_message);
          emit(Publish{topics_.booking_errors(f.booking), dump(body), false, std::nullopt});
          return;
        }
      }
      break;
    }
    case kCatchUp: {
      tracker_.set_catching_up(f.booking, false);
      if (!ok) break;
      for (const auto& m : body.value("messages", Json::array())) {
        if (auto parsed = message_from_json(m)) {
          receive_message(*parsed);
        } else {
          count(metrics_.bad_upstream);
        }
      }
      if (body.value("has_more", false)) catch_up(f.booking);
      return;
    }
    default: break;
  }
  if (!f.waiting) return;
  if (!ok) {
    // The cloud's refusal (a make_call or signal the cloud's rules refuse), relayed as the cloud
    // wrote it: reply() would mark it ok.
    send_error(*f.waiting, std::move(body));
    return;
  }
  reply(*f.waiting, [&] {
    body.erase("ok");
    return body;
  }());
}

void EdgeNode::on_upstream_event(const LinkEvent& e) {
  // Only events of followed bookings arrive here; anything else is republished as it came.
  const std::string events = "/events/";
  const auto at = e.topic.rfind(events);
  const std::string leaf = at == std::string::npos ? "" : e.topic.substr(at + events.size());
  if (leaf == "message") {
    Json j = Json::parse(e.payload, nullptr, false);
    auto m = message_from_json(j);
    if (!m || !bookings_.count(m->booking_code)) {
      count(metrics_.bad_upstream);
      return;
    }
    receive_message(*m);
    return;
  }
  if (leaf == "presence") {
    const std::string prefix = topics_.presence_events("");
    Json j = Json::parse(e.payload, nullptr, false);
    const std::string booking = j.is_object() ? j.value("booking_code", "") : "";
    if (booking.empty() || e.topic != topics_.presence_events(booking)) {
      count(metrics_.bad_upstream);
      return;
    }
    if (presence_seen_[booking] != e.payload) {
      presence_seen_[booking] = e.payload;
      try {
        edge_store_.put_presence(booking, e.payload);
      } catch (const StoreError& err) {
        log_line(LogLevel::error, "edge_store_failed", {{"error", err.what()}});
      }
    }
    emit(Publish{e.topic, e.payload, true, std::nullopt});
    return;
  }
  // Read receipts stay retained in the car as in the cloud; typing hints stay at QoS 0.
  if (leaf == "read") return emit(Publish{e.topic, e.payload, true, std::nullopt});
  if (leaf == "typing") return emit(Publish{e.topic, e.payload, false, std::nullopt, 0});
  emit(Publish{e.topic, e.payload, false, std::nullopt});  // calls, and later kinds of event
}

// ---- the replica ----

void EdgeNode::ensure_booking(const std::string& booking) {
  if (!valid_booking_code(booking) || bookings_.count(booking)) return;
  try {
    edge_store_.add_booking(booking);
  } catch (const StoreError& e) {
    log_line(LogLevel::error, "edge_store_failed", {{"error", e.what()}});
    return;  // tried again at the next request
  }
  bookings_.insert(booking);
  replica_.read([&](const StoreReader& r) { tracker_.set_until(booking, r.last_seq(booking)); });
  if (link_->up()) {
    link_->subscribe({topics_.booking_events_filter(booking)});
    catch_up(booking);
  }
}

void EdgeNode::catch_up(const std::string& booking) {
  if (tracker_.catching_up(booking) || !link_->up()) return;
  Request r;
  r.topic = topics_.request(booking, Action::get_message);
  const std::string payload = Json{{"after_seq", tracker_.until(booking)}, {"limit", 200}}.dump();
  tracker_.set_catching_up(booking, true);
  count(metrics_.catch_ups);
  const std::size_t before = forwards_.size();
  forward(std::string(1, kCatchUp), r, payload, std::nullopt, booking, "");
  if (forwards_.size() == before) tracker_.set_catching_up(booking, false);
}

void EdgeNode::receive_message(const Message& m) {
  ReplicaTracker::Outcome outcome = tracker_.receive(m);
  if (!outcome.append.empty()) store_replica(outcome.append);
  if (outcome.gap) catch_up(m.booking_code);
}

void EdgeNode::store_replica(const std::vector<Message>& messages) {
  try {
    replica_.write([&](StoreWriter& w) {
      for (const auto& m : messages) {
        if (w.last_seq(m.booking_code) + 1 != m.seq || w.message_by_id(m.booking_code, m.message_id)) continue;
        w.append_message(m);
      }
    });
  } catch (const StoreError& e) {
    // Not stored: the replica stays where it was, a later catch-up brings them again.
    log_line(LogLevel::error, "replica_store_failed", {{"error", e.what()}});
    tracker_.reset_catch_ups();
    return;
  }
  if (log_enabled(LogLevel::debug)) {
    log_line(LogLevel::debug, "replica_stored",
             {{"booking", messages.back().booking_code}, {"until", std::to_string(messages.back().seq)}});
  }
  for (const auto& m : messages) {
    tracker_.applied(m.booking_code, m.seq);
    count(metrics_.replica_stored);
    emit(Publish{topics_.message_events(m.booking_code), json_text(m), false, std::nullopt});
    // The cloud stored it: a waiting outbox entry of that id is confirmed.
    if (edge_store_.outbox_entry(m.booking_code, m.message_id)) {
      try {
        edge_store_.remove_outbox(m.booking_code, m.message_id);
        count(metrics_.confirmed);
      } catch (const StoreError& e) {
        log_line(LogLevel::error, "edge_store_failed", {{"error", e.what()}});  // re-sent, deduplicated
      }
    }
  }
}

void EdgeNode::answer_from_replica(const Request& request) {
  count(metrics_.replica_answers);
  const auto parsed = topics_.parse_request(request.topic);
  const std::string booking = parsed ? parsed->booking : "";
  std::uint64_t until = 0;
  if (valid_booking_code(booking)) replica_.read([&](const StoreReader& r) { until = r.last_seq(booking); });
  for (auto& p : engine_.handle({request})) {
    Json body = Json::parse(p.payload, nullptr, false);
    if (body.is_object() && body.value("ok", false) && body.contains("messages")) {
      body["replica_until_seq"] = until;
      p.payload = dump(body);
    }
    emit(std::move(p));
  }
}

// ---- local requests ----

void EdgeNode::reply(const Envelope& env, Json result) {
  Json body = {{"ok", true}};
  body.update(result);
  if (env.correlation_id) body["correlation_id"] = *env.correlation_id;
  if (env.reply_topic) emit(Publish{*env.reply_topic, dump(body), false, env.correlation_data});
}

void EdgeNode::reply_error(const Envelope& env, ErrorCode code, const std::string& message) {
  count(metrics_.local_errors);
  log_line(LogLevel::warn, "request",
           {{"topic", env.request_topic}, {"error", to_string(code)}, {"message", message}, {"node", "edge"}});
  send_error(env, Json{{"ok", false}, {"error", {{"code", to_string(code)}, {"message", message}}}});
}

void EdgeNode::send_error(const Envelope& env, Json body) {
  if (env.correlation_id) body["correlation_id"] = *env.correlation_id;
  if (env.reply_topic) {
    emit(Publish{*env.reply_topic, dump(body), false, env.correlation_data});
  } else {
    body["request_topic"] = env.request_topic;
    emit(Publish{env.booking.empty() ? topics_.global_errors() : topics_.booking_errors(env.booking), dump(body),
                 false, std::nullopt});
  }
}

void EdgeNode::emit(Publish p) { produced_.push_back(std::move(p)); }

// The arm64 cross g++ 12 (-O2) reports the payload of `own` (an std::optional<Role>) below as maybe
// used uninitialized, through a path where it is disengaged and never read: GCC's known false
// positive on std::optional (GCC bug 80635), seen once this function grew its v1.1 cases.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
void EdgeNode::handle_local(const Request& request, std::vector<OutboxEntry>& sends,
                            std::vector<Envelope>& envelopes) {
  const auto parsed = topics_.parse_request(request.topic);
  if (!parsed) return;
  Envelope env;
  env.request_topic = request.topic;
  if (valid_booking_code(parsed->booking)) env.booking = parsed->booking;
  // The cloud's engine's rule (core/engine.hpp reply_address_problem): nothing is published at a
  // refused address, and the problem is answered in the cloud's precedence below.
  std::optional<ProtocolError> reply_problem;
  if (request.response_topic) {
    reply_problem =
        reply_address_problem(topics_, engine_options_, request, *request.response_topic, "response topic");
    if (!reply_problem) {
      env.reply_topic = request.response_topic;
      env.correlation_data = request.correlation_data;
    }
  }
  try {
    check_payload_size(request.payload.size(), engine_options_.max_payload_bytes);
    Json body = parse_payload(request.payload);
    if (!request.response_topic && body.is_object()) {
      if (auto it = body.find("correlation_id"); it != body.end()) env.correlation_id = *it;
      if (auto it = body.find("reply_to"); it != body.end()) {
        if (!it->is_string()) {
          reply_problem = ProtocolError(ErrorCode::invalid_request, "'reply_to' must be a string");
        } else if (!(reply_problem = reply_address_problem(topics_, engine_options_, request,
                                                           it->get<std::string>(), "reply_to"))) {
          env.reply_topic = it->get<std::string>();
        }
      }
    }
    if (env.booking.empty()) throw ProtocolError(ErrorCode::invalid_booking_code, "invalid booking code");
    if (!body.is_object()) throw ProtocolError(ErrorCode::invalid_request, "payload must be a JSON object");
    if (reply_problem && reply_problem->code() == ErrorCode::invalid_request) throw *reply_problem;
    // Fields first, as the cloud's precedence says (invalid_request before forbidden).
    switch (parsed->action) {
      case Action::send_message: decode_send_message(body, engine_options_.max_text_bytes); break;
      case Action::close: decode_close(body); break;
      case Action::get_message: decode_get_message(body); break;
      case Action::make_call: decode_make_call(body); break;
      case Action::presence: decode_presence(body); break;
      case Action::mark_read: decode_mark_read(body); break;
      case Action::typing: decode_typing(body); break;
      case Action::signal: decode_signal(body); break;
    }
    if (request.identity && request.identity->principal != Principal::service &&
        request.identity->booking != env.booking) {
      throw ProtocolError(ErrorCode::forbidden, "booking not allowed for this identity");
    }
    if (!request.identity && engine_options_.require_identity) {
      throw ProtocolError(ErrorCode::forbidden, "not authenticated");
    }
    if (reply_problem) throw *reply_problem;
    ensure_booking(env.booking);
    body.erase("reply_to");
    body.erase("correlation_id");
    const std::optional<Role> own = request.identity ? participant_role(*request.identity) : std::nullopt;
    switch (parsed->action) {
      case Action::send_message: {
        SendMessageRequest r = decode_send_message(body, engine_options_.max_text_bytes);
        if (own) {
          if (r.sender != *own) throw ProtocolError(ErrorCode::forbidden, "'sender' contradicts the authenticated role");
          if (r.type != MessageType::text)
            throw ProtocolError(ErrorCode::forbidden, "only text messages from a driver or passenger");
          if (r.sender_id && *r.sender_id != request.identity->subject)
            throw ProtocolError(ErrorCode::forbidden, "'sender_id' contradicts the authenticated identity");
          body["sender_id"] = request.identity->subject;  // the cloud trusts the car's service token
        }
        // The car names the message when the client did not: the outbox, the cloud and a retry
        // all agree on one idempotency key.
        if (!r.message_id) body["message_id"] = random_message_id();
        // Already confirmed (a client's retry after the cloud stored it): the original, as the
        // cloud would answer, also while the link is down.
        std::optional<Message> stored;
        if (r.message_id) replica_.read([&](const StoreReader& rd) { stored = rd.message_by_id(env.booking, *r.message_id); });
        if (stored) {
          reply(env, Json{{"message", to_json(*stored)}, {"duplicate", true}});
          return;
        }
        sends.push_back(OutboxEntry{0, env.booking, body["message_id"].get<std::string>(), dump(body)});
        envelopes.push_back(std::move(env));
        return;
      }
      case Action::get_message: {
        decode_get_message(body);
        if (link_->up()) {
          forward(std::string(1, kGet), request, dump(body), env, env.booking, "");
        } else {
          answer_from_replica(request);
        }
        return;
      }
      case Action::make_call: {
        MakeCallRequest r = decode_make_call(body);
        if (own && r.by && *r.by != *own) throw ProtocolError(ErrorCode::forbidden, "'by' contradicts the authenticated role");
        if (!link_->up()) throw ProtocolError(ErrorCode::unavailable, "no link to the operator");
        forward(std::string(1, kCall), request, dump(body), env, env.booking, "");
        return;
      }
      case Action::presence: handle_presence(request, std::move(env), body); return;
      case Action::mark_read:
      case Action::typing: forward_receipt(request, std::move(env), body, parsed->action); return;
      case Action::close: {
        // The cloud decides (a service closes, the booking's state is the cloud's): forwarded as
        // a call action is, and refused while the link is down.
        if (!link_->up()) throw ProtocolError(ErrorCode::unavailable, "no link to the operator");
        forward(std::string(1, kCall), request, dump(body), env, env.booking, "");
        return;
      }
      case Action::signal: {
        // Signalling needs the other party, who may be anywhere: the cloud relays it (its
        // events/signal comes back down like any event of a followed booking).
        SignalRequest r = decode_signal(body);
        if (own && r.by != *own) throw ProtocolError(ErrorCode::forbidden, "'by' contradicts the authenticated role");
        if (!link_->up()) throw ProtocolError(ErrorCode::unavailable, "no link to the operator");
        forward(std::string(1, kCall), request, dump(body), env, env.booking, "");
        return;
      }
    }
  } catch (const ProtocolError& e) {
    reply_error(env, e.code(), e.what());
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

void EdgeNode::handle_presence(const Request& request, Envelope env, const Json& original) {
  Json body = original;
  PresenceRequest r = decode_presence(body);
  const std::optional<Role> own = request.identity ? participant_role(*request.identity) : std::nullopt;
  if (own && r.role != *own) throw ProtocolError(ErrorCode::forbidden, "'role' contradicts the authenticated role");
  if (own && r.client_id && *r.client_id != request.client_id)
    throw ProtocolError(ErrorCode::forbidden, "'client_id' is not the publisher's MQTT client id");
  const std::string client_id = r.client_id ? *r.client_id : request.client_id;
  if (!client_id.empty()) {
    body["client_id"] = client_id;
    latest_presence_[{env.booking, client_id}] = dump(body);
    const std::pair<std::string, std::string> declared{env.booking, to_string(r.role)};
    if (r.online) {
      declared_[client_id].insert(declared);
    } else if (auto it = declared_.find(client_id); it != declared_.end()) {
      it->second.erase(declared);
    }
  }
  const std::string booking = env.booking;
  forward(std::string(1, kPresence), request, dump(body), std::move(env), booking, "");
}

void EdgeNode::forward_receipt(const Request& request, Envelope env, const Json& body, Action action) {
  // The cloud keeps the horizons and paces the hints: both go upstream as they came.
  const Role role = action == Action::typing ? decode_typing(body).role : decode_mark_read(body).role;
  const std::optional<Role> own = request.identity ? participant_role(*request.identity) : std::nullopt;
  if (own && role != *own) throw ProtocolError(ErrorCode::forbidden, "'role' contradicts the authenticated role");
  if (!link_->up()) {
    // Without the link a hint goes nowhere, which is not an error (typing is a hint); a horizon
    // is the client's to send again.
    if (action == Action::typing) return reply(env, Json{{"relayed", false}});
    throw ProtocolError(ErrorCode::unavailable, "no link to the operator");
  }
  const std::string booking = env.booking;
  forward(std::string(1, kCall), request, dump(body), std::move(env), booking, "");
}

void EdgeNode::finish_sends(std::vector<OutboxEntry> sends, std::vector<Envelope> envelopes) {
  if (sends.empty()) return;
  try {
    sends = edge_store_.add_outbox(std::move(sends));  // durable before any answer
  } catch (const StoreError& e) {
    for (const auto& env : envelopes) {
      reply_error(env, ErrorCode::unavailable,
                  std::string(e.kind() == StoreError::Kind::full ? "storage full: " : "storage error: ") + e.what());
    }
    return;
  }
  for (std::size_t i = 0; i < sends.size(); ++i) {
    // Already in flight (a local retry of a waiting message): this client waits for that answer.
    bool in_flight = false;
    for (auto& [_, f] : forwards_) {
      if (f.kind == kOutbox && f.booking == sends[i].booking && f.message_id == sends[i].message_id) {
        if (!f.waiting) f.waiting = envelopes[i];
        in_flight = true;
      }
    }
    if (!in_flight) forward_outbox(sends[i], envelopes[i]);
  }
}

}  // namespace navietakie
