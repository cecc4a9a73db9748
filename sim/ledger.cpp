#include "sim/ledger.hpp"

#include <algorithm>
#include <charconv>

#include "core/codec.hpp"
#include "core/wire.hpp"

namespace navietakie::sim {
namespace {

// Seqs whose content is remembered, per booking (for redelivery and history checks).
constexpr std::size_t kSeqMemory = 20000;
// A jump larger than this in one subscriber's seqs is reported as such, not expanded into a gap set.
constexpr std::int64_t kMaxGapTracked = 1000000;

std::uint64_t micros(Clock::duration d) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return us < 0 ? 0 : static_cast<std::uint64_t>(us);
}

}  // namespace

SeqTable::Match SeqTable::note(std::int64_t seq, std::uint64_t fp) {
  if (seq < first_ || seq - first_ > static_cast<std::int64_t>(4 * kSeqMemory) + kMaxGapTracked) return Match::recorded;
  const auto i = static_cast<std::size_t>(seq - first_);
  if (i >= fps_.size()) fps_.resize(i + 1, 0);
  if (fps_[i] == 0) {
    fps_[i] = fp == 0 ? 1 : fp;
    return Match::recorded;
  }
  return fps_[i] == (fp == 0 ? 1 : fp) ? Match::same : Match::different;
}

std::optional<std::uint64_t> SeqTable::get(std::int64_t seq) const {
  if (seq < first_) return std::nullopt;
  const auto i = static_cast<std::size_t>(seq - first_);
  if (i >= fps_.size() || fps_[i] == 0) return std::nullopt;
  return fps_[i];
}

void SeqTable::trim(std::int64_t seq, std::size_t keep) {
  while (fps_.size() > keep && first_ < seq) {
    fps_.pop_front();
    ++first_;
  }
}

BookingLedger::BookingLedger(std::string code, std::array<std::string, 2> client_ids, RunStats& stats, LedgerMode mode)
    : code_(std::move(code)), stats_(stats), mode_(mode) {
  for (std::size_t i = 0; i < 2; ++i) id_prefix_[i] = client_ids[i] + "-";
}

void BookingLedger::set_baseline(Role subscriber, std::int64_t last_seq) {
  Stream& s = streams_[index_of(subscriber)];
  s.baseline = last_seq;
  s.max_seen = std::max(s.max_seen, last_seq);
}

std::string BookingLedger::next_message_id(Role sender) {
  return id_prefix_[index_of(sender)] + std::to_string(next_n_[index_of(sender)]);
}

std::optional<std::pair<Role, std::uint64_t>> BookingLedger::own_id(const std::string& message_id) const {
  for (Role role : {Role::driver, Role::passenger}) {
    const std::string& prefix = id_prefix_[index_of(role)];
    if (message_id.size() <= prefix.size() || message_id.compare(0, prefix.size(), prefix) != 0) continue;
    std::uint64_t n = 0;
    const char* begin = message_id.data() + prefix.size();
    const char* end = message_id.data() + message_id.size();
    auto [ptr, ec] = std::from_chars(begin, end, n);
    if (ec == std::errc() && ptr == end) return std::make_pair(role, n);
  }
  return std::nullopt;
}

void BookingLedger::message_sent(const std::string& message_id, Role sender, std::uint64_t text_hash,
                                 Clock::time_point at) {
  if (auto own = own_id(message_id)) {
    auto& next = next_n_[index_of(own->first)];
    next = std::max(next, own->second + 1);
  }
  SentMessage m;
  m.sender = sender;
  m.text_hash = text_hash;
  m.sent_at = at;
  sent_.emplace(message_id, m);
  ++open_records_;
}

void BookingLedger::check_content(const SentMessage& sent, const std::string& message_id, const MessageView& m,
                                  const char* where) {
  if (m.type != "text" || m.sender != to_string(sent.sender) || fnv1a(m.text) != sent.text_hash) {
    stats_.violation("content_mismatch", std::string(where) + ": " + code_ + " message " + message_id + " seq " +
                                             std::to_string(m.seq) + " is not what was sent");
  }
}

void BookingLedger::settle_if_done(std::unordered_map<std::string, SentMessage>::iterator it) {
  const SentMessage& m = it->second;
  const bool replied = m.reply_seq != 0 || m.reply_timed_out || m.queued;
  if (!replied || m.seen_seq[0] == 0 || m.seen_seq[1] == 0) return;
  if (!m.reply_timed_out) --open_records_;
  sent_.erase(it);
}

void BookingLedger::message_confirmed(const std::string& message_id, const MessageView& m, bool duplicate,
                                      Clock::time_point sent_at, Clock::time_point at) {
  stats_.message_confirmed(at);
  stats_.reply_latency.add(micros(at - sent_at));
  auto it = sent_.find(message_id);
  if (it == sent_.end()) {
    stats_.violation("unexpected_reply", code_ + ": a confirmation of " + message_id + ", which is not outstanding");
    return;
  }
  SentMessage& sent = it->second;
  if (m.booking_code != code_ || m.message_id != message_id) {
    stats_.violation("reply_mismatch",
                     code_ + ": the reply to " + message_id + " carries " + m.booking_code + "/" + m.message_id);
  }
  if (duplicate && !sent.resent) {
    stats_.violation("unexpected_duplicate", code_ + ": " + message_id + " was sent once but answered duplicate:true");
  }
  check_content(sent, message_id, m, "reply");
  if (seqs_.note(m.seq, fingerprint(m)) == SeqTable::Match::different) {
    stats_.violation("seq_conflict", code_ + ": seq " + std::to_string(m.seq) + " of the reply to " + message_id +
                                         " differs from what an event carried under it");
  }
  for (std::int64_t seen : sent.seen_seq) {
    if (seen != 0 && seen != m.seq) {
      stats_.violation("seq_mismatch", code_ + ": " + message_id + " confirmed as seq " + std::to_string(m.seq) +
                                           " but broadcast as seq " + std::to_string(seen));
    }
  }
  if (sent.reply_seq != 0) return;  // answered before (the caller only passes fresh replies)
  sent.reply_seq = m.seq;
  settle_if_done(it);
}

void BookingLedger::message_resent(const std::string& message_id) {
  auto it = sent_.find(message_id);
  if (it != sent_.end()) it->second.resent = true;
}

void BookingLedger::message_queued(const std::string& message_id) {
  ++stats_.queued;
  auto it = sent_.find(message_id);
  if (it == sent_.end()) {
    stats_.violation("unexpected_reply", code_ + ": " + message_id + " queued, but it is not outstanding");
    return;
  }
  it->second.queued = true;
  settle_if_done(it);
}

void BookingLedger::message_unconfirmed(const std::string& message_id) {
  auto it = sent_.find(message_id);
  if (it == sent_.end() || it->second.reply_timed_out) return;
  it->second.reply_timed_out = true;
  --open_records_;
  settle_if_done(it);
}

void BookingLedger::message_event(Role subscriber, const MessageView& m, Clock::time_point at) {
  stats_.event_received();
  if (m.booking_code != code_) {
    stats_.violation("wrong_booking", code_ + ": an event of booking " + m.booking_code);
    return;
  }
  Stream& s = streams_[index_of(subscriber)];
  if (m.seq <= s.baseline) return;  // before this run
  const std::uint64_t fp = fingerprint(m);
  if (m.seq > s.max_seen) {
    const std::int64_t gap = m.seq - s.max_seen - 1;
    if (gap > kMaxGapTracked) {
      stats_.violation("seq_jump", code_ + " " + to_string(subscriber) + ": seq " + std::to_string(m.seq) + " after " +
                                       std::to_string(s.max_seen));
    } else {
      for (std::int64_t q = s.max_seen + 1; q < m.seq; ++q) s.missing.emplace(q, at);
    }
    s.max_seen = m.seq;
  } else if (s.missing.erase(m.seq) > 0) {
    // One host publishes in commit order; several hosts on a shared subscription need not.
    if (mode_.shared) {
      ++stats_.faults.reordered;
    } else {
      stats_.violation("seq_out_of_order", code_ + " " + to_string(subscriber) + ": seq " + std::to_string(m.seq) +
                                               " arrived after a higher one");
    }
  } else {
    // This subscriber had this seq already: a QoS 1 redelivery, or the broadcast of a seq a
    // catch-up read brought first, is fine if it is the same message.
    auto known = seqs_.get(m.seq);
    if (known && *known != fp) {
      stats_.violation("seq_conflict", code_ + " " + to_string(subscriber) + ": seq " + std::to_string(m.seq) +
                                           " delivered again with different content (" + m.message_id + ")");
    } else if (s.recovered.erase(m.seq) == 0) {
      ++stats_.redelivered;
    }
    return;
  }
  take_seq(subscriber, m, fp, at, true);
}

void BookingLedger::take_seq(Role subscriber, const MessageView& m, std::uint64_t fp, Clock::time_point at,
                             bool by_event) {
  if (seqs_.note(m.seq, fp) == SeqTable::Match::different) {
    stats_.violation("seq_conflict", code_ + " " + to_string(subscriber) + ": seq " + std::to_string(m.seq) + " (" +
                                         m.message_id + ") differs from what the other party or a reply saw");
  }
  seqs_.trim(std::min(streams_[0].max_seen, streams_[1].max_seen) - static_cast<std::int64_t>(kSeqMemory / 2),
             kSeqMemory);

  auto it = sent_.find(m.message_id);
  if (it != sent_.end()) {
    SentMessage& sent = it->second;
    std::int64_t& seen = sent.seen_seq[index_of(subscriber)];
    if (seen != 0) {
      stats_.violation("duplicate_message", code_ + " " + to_string(subscriber) + ": " + m.message_id +
                                                " stored twice, seq " + std::to_string(seen) + " and " +
                                                std::to_string(m.seq));
      return;
    }
    seen = m.seq;
    check_content(sent, m.message_id, m, by_event ? "event" : "catch-up read");
    if (sent.reply_seq != 0 && sent.reply_seq != m.seq) {
      stats_.violation("seq_mismatch", code_ + ": " + m.message_id + " confirmed as seq " +
                                           std::to_string(sent.reply_seq) + " but broadcast as seq " +
                                           std::to_string(m.seq));
    }
    if (by_event && subscriber != sent.sender) stats_.event_latency.add(micros(at - sent.sent_at));
    settle_if_done(it);
    return;
  }
  if (auto own = own_id(m.message_id)) {
    if (own->second < next_n_[index_of(own->first)]) {
      stats_.violation("duplicate_message", code_ + " " + to_string(subscriber) + ": " + m.message_id +
                                                " stored again, at seq " + std::to_string(m.seq));
    } else {
      stats_.violation("unknown_message", code_ + ": " + m.message_id + " was never sent");
    }
  }
  // Otherwise not ours: call records, or another writer's messages. The seq checks cover them.
}

std::optional<std::int64_t> BookingLedger::catch_up_from(Role subscriber, Clock::time_point now,
                                                         Clock::duration wait) const {
  if (!mode_.shared) return std::nullopt;
  const Stream& s = streams_[index_of(subscriber)];
  for (const auto& [seq, since] : s.missing) {
    if (now - since >= wait) return s.missing.begin()->first - 1;
  }
  if (last_seq_ && s.max_seen < last_seq_->first && now - last_seq_->second >= wait) {
    return std::max(s.max_seen, s.baseline);
  }
  return std::nullopt;
}

void BookingLedger::catch_up_page(Role reader, const nlohmann::json& reply, int limit, std::int64_t after_seq,
                                  Clock::time_point at) {
  const std::string who = code_ + " " + to_string(reader) + " catch-up";
  auto page = read_page(who, reply);
  if (!page) return;
  const auto& messages = page->messages;
  // Seqs are gapless from 1: the page is the `limit` seqs after the cursor, up to last_seq.
  const std::int64_t expected = std::max<std::int64_t>(0, std::min<std::int64_t>(limit, page->last_seq - after_seq));
  if (static_cast<std::int64_t>(messages.size()) != expected ||
      (!messages.empty() && messages.front().seq != after_seq + 1)) {
    stats_.violation("history_count", who + ": " + std::to_string(messages.size()) + " messages after seq " +
                                          std::to_string(after_seq) + ", expected " + std::to_string(expected) +
                                          " (last_seq " + std::to_string(page->last_seq) + ")");
  }
  if (page->has_more != (after_seq + static_cast<std::int64_t>(messages.size()) < page->last_seq)) {
    stats_.violation("history_has_more", who + ": has_more " + (page->has_more ? "true" : "false") + " after seq " +
                                             std::to_string(after_seq));
  }
  Stream& s = streams_[index_of(reader)];
  for (const MessageView& m : messages) {
    if (m.seq <= s.baseline) continue;
    if (m.seq > s.max_seen) {
      for (std::int64_t q = s.max_seen + 1; q < m.seq; ++q) s.missing.emplace(q, at);
      s.max_seen = m.seq;
    } else if (s.missing.erase(m.seq) == 0) {
      continue;  // this subscriber has it (read_page compared the content)
    }
    s.recovered.insert(m.seq);
    take_seq(reader, m, fingerprint(m), at, false);
  }
}

std::optional<BookingLedger::Page> BookingLedger::read_page(const std::string& who, const nlohmann::json& reply) {
  auto messages = reply.find("messages");
  auto has_more = reply.find("has_more");
  auto last_seq_it = reply.find("last_seq");
  if (messages == reply.end() || !messages->is_array() || has_more == reply.end() || !has_more->is_boolean() ||
      last_seq_it == reply.end() || !last_seq_it->is_number_integer()) {
    stats_.violation("history_malformed", who + ": " + reply.dump().substr(0, 200));
    return std::nullopt;
  }
  Page page;
  page.has_more = has_more->get<bool>();
  page.last_seq = last_seq_it->get<std::int64_t>();
  page.messages.reserve(messages->size());
  for (const auto& record : *messages) {
    auto m = read_message(record);
    if (!m) {
      stats_.violation("history_malformed", who + ": a record without its fields");
      return std::nullopt;
    }
    page.messages.push_back(std::move(*m));
  }
  for (std::size_t i = 0; i < page.messages.size(); ++i) {
    const MessageView& m = page.messages[i];
    if (m.booking_code != code_) stats_.violation("wrong_booking", who + ": a history record of " + m.booking_code);
    if (i > 0 && m.seq != page.messages[i - 1].seq + 1) {
      stats_.violation("history_gap", who + ": seq " + std::to_string(page.messages[i - 1].seq) + " then " +
                                          std::to_string(m.seq) + " in one page");
    }
    auto known = seqs_.get(m.seq);
    if (known && *known != fingerprint(m)) {
      stats_.violation("history_mismatch", who + ": seq " + std::to_string(m.seq) + " (" + m.message_id +
                                               ") differs from the event / reply under that seq");
    }
    auto it = sent_.find(m.message_id);
    if (it != sent_.end()) check_content(it->second, m.message_id, m, "history");
  }
  return page;
}

void BookingLedger::history_page(Role reader, const nlohmann::json& reply, int limit,
                                 std::optional<std::int64_t> before_seq, std::int64_t seen_then) {
  const std::string who = code_ + " " + to_string(reader);
  auto read = read_page(who, reply);
  if (!read) return;
  const auto& page = read->messages;
  const std::int64_t last_seq = read->last_seq;
  if (before_seq) {
    for (const MessageView& m : page) {
      if (m.seq >= *before_seq) {
        stats_.violation("history_cursor",
                         who + ": seq " + std::to_string(m.seq) + " in a page before " + std::to_string(*before_seq));
      }
    }
  }
  // Seqs are gapless from 1, so the page is fully determined by last_seq, the cursor and the limit.
  const std::int64_t top = before_seq ? std::min(*before_seq - 1, last_seq) : last_seq;
  const std::int64_t expected_count = std::max<std::int64_t>(0, std::min<std::int64_t>(limit, top));
  if (static_cast<std::int64_t>(page.size()) != expected_count) {
    stats_.violation("history_count", who + ": " + std::to_string(page.size()) + " messages, expected " +
                                          std::to_string(expected_count) + " (last_seq " + std::to_string(last_seq) +
                                          ")");
  } else if (!page.empty()) {
    if (page.back().seq != top) {
      stats_.violation("history_count", who + ": the page ends at seq " + std::to_string(page.back().seq) +
                                            ", expected " + std::to_string(top));
    }
    if (read->has_more != (page.front().seq > 1)) {
      stats_.violation("history_has_more", who + ": has_more " + (read->has_more ? "true" : "false") +
                                               " with the page starting at seq " + std::to_string(page.front().seq));
    }
  }
  if (last_seq < seen_then) {
    stats_.violation("history_stale", who + ": last_seq " + std::to_string(last_seq) + " below seq " +
                                          std::to_string(seen_then) + " already seen");
  }
}

void BookingLedger::expect_call(const std::string& call_id, Role caller, std::vector<std::string> end_reasons) {
  CallWatch& w = calls_[call_id];
  w.caller = caller;
  w.ours = true;
  w.end_reasons = std::move(end_reasons);
}

void BookingLedger::allow_end_reason(const std::string& call_id, const std::string& reason) {
  auto it = calls_.find(call_id);
  if (it != calls_.end() && !it->second.end_reasons.empty()) it->second.end_reasons.push_back(reason);
}

void BookingLedger::allow_any_end(const std::string& call_id) {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return;
  it->second.end_reasons.clear();
  it->second.abandoned = true;
}

CallEventKind BookingLedger::call_event(Role subscriber, const CallView& call, std::uint64_t payload_fp) {
  const std::string who = code_ + " " + to_string(subscriber) + " call " + call.call_id;
  if (call.booking_code != code_) stats_.violation("wrong_booking", who + ": a call event of " + call.booking_code);
  auto [it, fresh_watch] = calls_.try_emplace(call.call_id);
  CallWatch& w = it->second;
  if (fresh_watch) w.caller = call.from == "passenger" ? Role::passenger : Role::driver;
  std::string& state = w.state[index_of(subscriber)];
  std::uint64_t& fp = w.fp[index_of(subscriber)];
  if (call.state == state) {
    if (fp == payload_fp) {
      ++stats_.redelivered;
    } else {
      stats_.violation("call_state", who + ": `" + state + "` announced twice with different content");
    }
    return CallEventKind::repeated;
  }
  // The state machine's own table (core/wire.hpp) says which step is legal; an unknown state never is.
  const auto from = wire::parse(wire::kCallStates, state);
  const auto to = wire::parse(wire::kCallStates, call.state);
  // An abandoned call's earlier events may be lost with the host that committed them; the steps
  // after the first one seen are still checked.
  const bool allowed = to && (state.empty() || from) && (wire::may_follow(from, *to) || (state.empty() && w.abandoned));
  if (!allowed) {
    stats_.violation("call_state",
                     who + ": `" + (state.empty() ? std::string("(none)") : state) + "` -> `" + call.state + "`");
  }
  if (w.ours && call.from != to_string(w.caller)) {
    stats_.violation("call_parties", who + ": from " + call.from + ", but the " + to_string(w.caller) + " called");
  }
  if (call.state == "ended" && w.ours && !w.end_reasons.empty() &&
      std::find(w.end_reasons.begin(), w.end_reasons.end(), call.end_reason) == w.end_reasons.end()) {
    stats_.violation("call_end_reason",
                     who + ": ended as `" + call.end_reason + "`, expected `" + w.end_reasons.front() + "`");
  }
  if (call.state == "ended" && call.end_reason == "missed" && state == "connected") {
    stats_.violation("call_end_reason", who + ": ended as `missed` after it was connected");
  }
  state = call.state;
  fp = payload_fp;
  return CallEventKind::fresh;
}

bool BookingLedger::call_ended_for_both(const std::string& call_id) const {
  auto it = calls_.find(call_id);
  return it != calls_.end() && it->second.state[0] == "ended" && it->second.state[1] == "ended";
}

void BookingLedger::forget_call(const std::string& call_id) { calls_.erase(call_id); }

bool BookingLedger::caught_up(std::int64_t last_seq) const {
  for (const Stream& s : streams_) {
    if (s.max_seen < last_seq || !s.missing.empty()) return false;
  }
  return true;
}

void BookingLedger::note_last_seq(std::int64_t last_seq, Clock::time_point at) { last_seq_.emplace(last_seq, at); }

void BookingLedger::finish(std::optional<std::int64_t> last_seq) {
  for (Role role : {Role::driver, Role::passenger}) {
    const Stream& s = streams_[index_of(role)];
    const std::string who = code_ + " " + to_string(role);
    // Stored (a catch-up read found it) but never broadcast to this subscriber: a host that died
    // between its commit and its publish does that; a running one must not.
    if (mode_.faults) {
      stats_.faults.events_recovered += s.recovered.size();
    } else if (!s.recovered.empty()) {
      stats_.violation(
          "event_not_broadcast",
          who + ": seq " + std::to_string(*s.recovered.begin()) +
              " was stored (read back with after_seq) but never broadcast" +
              (s.recovered.size() > 1 ? ", and " + std::to_string(s.recovered.size() - 1) + " more" : std::string()),
          s.recovered.size());
    }
    if (!s.missing.empty()) {
      stats_.violation(
          "seq_gap",
          who + ": never received seq " + std::to_string(s.missing.begin()->first) +
              (s.missing.size() > 1 ? " and " + std::to_string(s.missing.size() - 1) + " more" : std::string()),
          s.missing.size());
    }
    if (!last_seq) continue;
    if (s.max_seen < *last_seq) {
      stats_.violation("seq_gap",
                       who + ": never received seq " + std::to_string(s.max_seen + 1) + ".." +
                           std::to_string(*last_seq) + " (the booking's last_seq)",
                       static_cast<std::uint64_t>(*last_seq - s.max_seen));
    }
    if (s.max_seen > *last_seq) {
      stats_.violation("seq_beyond_last", who + ": saw seq " + std::to_string(s.max_seen) + " but last_seq is " +
                                              std::to_string(*last_seq));
    }
  }
  for (const auto& [id, m] : sent_) {
    if (m.reply_seq == 0 && m.seen_seq[0] == 0 && m.seen_seq[1] == 0) {
      stats_.violation("message_lost", code_ + ": " + id + " was neither confirmed nor broadcast");
      continue;
    }
    for (Role role : {Role::driver, Role::passenger}) {
      if (m.seen_seq[index_of(role)] == 0) {
        stats_.violation("missing_event", code_ + " " + to_string(role) + ": never received " + id);
      }
    }
  }
  for (const auto& [id, w] : calls_) {
    if (w.state[0] != w.state[1]) {
      stats_.violation("call_event_missing", code_ + " call " + id + ": the driver's last state is `" + w.state[0] +
                                                 "`, the passenger's `" + w.state[1] + "`");
    }
  }
}

}  // namespace navietakie::sim
