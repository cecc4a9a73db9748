// What one booking's two clients sent, were told and saw, and the checks on it: every sent message
// confirmed with a seq and seen exactly once by both subscribers under that seq; each subscriber's
// events/message seqs strictly increasing (one host; with several hosts they may arrive in any
// order) and, by the end, gapless; one content per seq wherever it is read (reply, event,
// redelivery, history page, catch-up read); call events in state-machine order with the expected
// end. Pure bookkeeping: no MQTT, no clocks of its own, single-threaded.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "sim/stats.hpp"
#include "sim/wire.hpp"

namespace navietakie::sim {

// The content seen under each seq of one booking (fingerprints), for the most recent seqs.
class SeqTable {
 public:
  enum class Match { recorded, same, different };
  Match note(std::int64_t seq, std::uint64_t fp);
  std::optional<std::uint64_t> get(std::int64_t seq) const;
  // Drops what is older than `seq` once the table holds more than `keep` entries.
  void trim(std::int64_t seq, std::size_t keep);

 private:
  std::int64_t first_ = 1;
  std::deque<std::uint64_t> fps_;  // fps_[i] is seq first_ + i; 0 = not seen
};

enum class CallEventKind { fresh, repeated };

// What the system under test may do to the event streams (see SimOptions).
struct LedgerMode {
  // Several hosts on a shared subscription: events may arrive out of seq order, and a missing seq
  // is read back with after_seq (catch_up_from / catch_up_page).
  bool shared = false;
  // Hosts may die between a commit and its broadcast: a seq only a catch-up read found is counted,
  // not a violation; a resent message may be answered duplicate:true.
  bool faults = false;
};

class BookingLedger {
 public:
  // `client_ids` are the MQTT client ids of the driver and the passenger: message ids are
  // "<client id>-<n>", which is how a message that reappears after it was settled is recognised.
  BookingLedger(std::string code, std::array<std::string, 2> client_ids, RunStats& stats, LedgerMode mode = {});

  const std::string& code() const { return code_; }

  // The booking's last seq before the run (from a history read): older events are not ours to check.
  void set_baseline(Role subscriber, std::int64_t last_seq);

  // The next message id for `sender` ("<client id>-<n>").
  std::string next_message_id(Role sender);
  void message_sent(const std::string& message_id, Role sender, std::uint64_t text_hash, Clock::time_point at);
  // An ok:true send_message reply.
  void message_confirmed(const std::string& message_id, const MessageView& message, bool duplicate,
                         Clock::time_point sent_at, Clock::time_point at);
  // Sent again unchanged (same message_id): a duplicate:true answer is then right.
  void message_resent(const std::string& message_id);
  // An ok:true reply with "queued":true (no seq yet): the events settle it.
  void message_queued(const std::string& message_id);
  // No reply in time (the caller counted the timeout).
  void message_unconfirmed(const std::string& message_id);
  void message_event(Role subscriber, const MessageView& message, Clock::time_point at);

  // With LedgerMode::shared: the after_seq to read from when `subscriber` has waited `wait` for a
  // seq (one skipped, or up to the booking's last_seq once it is known), else nothing.
  std::optional<std::int64_t> catch_up_from(Role subscriber, Clock::time_point now, Clock::duration wait) const;
  // An ok:true reply to {"after_seq":after_seq,"limit":limit}: fills `reader`'s missing seqs.
  void catch_up_page(Role reader, const nlohmann::json& reply, int limit, std::int64_t after_seq, Clock::time_point at);

  // An ok:true get_message reply to {"limit":limit[,"before_seq":before_seq]}; `seen_then` is the
  // reader's highest event seq when it asked (the page's last_seq may not be lower).
  void history_page(Role reader, const nlohmann::json& reply, int limit, std::optional<std::int64_t> before_seq,
                    std::int64_t seen_then);

  // A call this run starts: who calls, and the end reasons that are right for it.
  void expect_call(const std::string& call_id, Role caller, std::vector<std::string> end_reasons);
  void allow_end_reason(const std::string& call_id, const std::string& reason);
  // A call whose request went unanswered: however it ends is right, and its first event seen may be
  // any state (the host that committed the earlier ones may have died before publishing them).
  void allow_any_end(const std::string& call_id);
  CallEventKind call_event(Role subscriber, const CallView& call, std::uint64_t payload_fp);
  bool call_ended_for_both(const std::string& call_id) const;
  void forget_call(const std::string& call_id);

  std::int64_t max_seen(Role subscriber) const { return streams_[index_of(subscriber)].max_seen; }
  std::int64_t baseline(Role subscriber) const { return streams_[index_of(subscriber)].baseline; }
  // Every message sent so far is confirmed and seen by both (those whose reply timed out aside).
  bool settled() const { return open_records_ == 0; }
  // Both subscribers have every seq up to `last_seq`.
  bool caught_up(std::int64_t last_seq) const;

  // The booking's last seq, read after the drain: what every subscriber must reach.
  void note_last_seq(std::int64_t last_seq, Clock::time_point at);
  // End-of-run checks; `last_seq` is the booking's last seq read after the drain, if it was.
  void finish(std::optional<std::int64_t> last_seq);

 private:
  struct SentMessage {
    Role sender = Role::driver;
    std::uint64_t text_hash = 0;
    Clock::time_point sent_at;
    std::int64_t reply_seq = 0;
    bool reply_timed_out = false;
    bool resent = false;
    bool queued = false;  // answered "queued":true: settled by the events alone
    std::array<std::int64_t, 2> seen_seq{0, 0};
  };
  struct Stream {
    std::int64_t baseline = 0;
    std::int64_t max_seen = 0;
    std::map<std::int64_t, Clock::time_point> missing;  // skipped seqs that may still come, and since when
    std::set<std::int64_t> recovered;                   // seqs a catch-up read brought that no event has (yet)
  };
  struct Page {
    std::vector<MessageView> messages;
    bool has_more = false;
    std::int64_t last_seq = 0;
  };
  struct CallWatch {
    Role caller = Role::driver;
    bool ours = false;
    std::vector<std::string> end_reasons;  // empty: any
    // Given up after its request went unanswered (a killed host): the host may have committed a
    // state and died before publishing its event, so the first event seen may be any later state.
    bool abandoned = false;
    std::array<std::string, 2> state;
    std::array<std::uint64_t, 2> fp{0, 0};
  };

  // Whether `message_id` is one of this run's ids, and if so its sender and counter.
  std::optional<std::pair<Role, std::uint64_t>> own_id(const std::string& message_id) const;
  void check_content(const SentMessage& sent, const std::string& message_id, const MessageView& m, const char* where);
  void settle_if_done(std::unordered_map<std::string, SentMessage>::iterator it);
  // A get_message reply's records, each checked against what is known under its seq; nothing if malformed.
  std::optional<Page> read_page(const std::string& who, const nlohmann::json& reply);
  // `subscriber` has `m` now (an event, or a catch-up read when `by_event` is false): its sent record.
  void take_seq(Role subscriber, const MessageView& m, std::uint64_t fp, Clock::time_point at, bool by_event);

  std::string code_;
  std::array<std::string, 2> id_prefix_;  // "<client id>-"
  RunStats& stats_;
  std::array<std::uint64_t, 2> next_n_{1, 1};
  std::unordered_map<std::string, SentMessage> sent_;
  std::size_t open_records_ = 0;  // sent_ entries whose reply has not timed out
  std::array<Stream, 2> streams_;
  LedgerMode mode_;
  std::optional<std::pair<std::int64_t, Clock::time_point>> last_seq_;  // the final read, and when
  SeqTable seqs_;
  std::unordered_map<std::string, CallWatch> calls_;
};

}  // namespace navietakie::sim
