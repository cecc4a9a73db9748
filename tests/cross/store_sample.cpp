// navietakie-store-sample: writes a fixed sample of every record kind into an LMDB store, or checks
// that a store holds exactly that sample. test_cross runs the amd64 build and the arm64 build (under
// qemu) against the same directory, one writing and the other verifying, in both directions: a
// store moved between the architectures must read back record for record.
//   navietakie-store-sample write DIR
//   navietakie-store-sample verify DIR   (exit 0: every record equal; 1: the differences, listed)
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "store/store.hpp"

namespace navietakie {
namespace {

// The sample: a few bookings with messages of every type, sender and shape (optional fields set
// and not, empty, multi-byte UTF-8, long, JSON data), calls in every state and end reason, and
// connections and presence with and without a `since`. Times beyond 2^32 ms and near the limits of
// int64 show any byte-order or word-size slip.
struct Sample {
  std::vector<Message> messages;
  std::vector<Call> calls;
  std::vector<Connection> connections;
  std::vector<Presence> presence;
};

constexpr Millis kBaseTime = 1764160000123;
constexpr std::uint64_t kMessagesPerBooking = 120;

const std::vector<std::string>& booking_codes() {
  static const std::vector<std::string> codes{"BK-ARM-1", "BK-ARM-2", "bk.edge_3"};
  return codes;
}

Message sample_message(const std::string& booking, std::uint64_t seq) {
  Message m;
  m.booking_code = booking;
  m.seq = seq;
  m.message_id = booking + "-m-" + std::to_string(seq);
  m.type = static_cast<MessageType>(seq % 3);
  m.sender = static_cast<Role>((seq / 3) % 3);
  if (seq % 2 == 0) m.sender_id = "user-" + std::to_string(seq * 7919);
  switch (seq % 5) {
    case 0: m.text = ""; break;
    case 1: m.text = "Đang tới, 2 phút nữa 🚕"; break;
    case 2: m.text = std::string(4096 + seq, static_cast<char>('a' + seq % 26)); break;
    case 3: m.text = std::string("nul\0inside", 10); break;
    default: m.text = "seq " + std::to_string(seq); break;
  }
  m.data_json = seq % 4 == 0 ? R"({"lat":10.762622,"lng":106.660172,"n":)" + std::to_string(seq) + "}" : "{}";
  m.ts = kBaseTime + static_cast<Millis>(seq) * 1009;
  return m;
}

Sample make_sample() {
  Sample sample;
  for (const auto& booking : booking_codes()) {
    for (std::uint64_t seq = 1; seq <= kMessagesPerBooking; ++seq) sample.messages.push_back(sample_message(booking, seq));
  }
  const std::string& first = booking_codes()[0];
  const std::string& second = booking_codes()[1];
  int n = 0;
  for (EndReason reason : {EndReason::completed, EndReason::declined, EndReason::cancelled, EndReason::missed}) {
    Call ended;
    ended.booking_code = first;
    ended.call_id = "call-ended-" + std::to_string(++n);
    ended.from = n % 2 == 0 ? Role::driver : Role::passenger;
    ended.to = n % 2 == 0 ? Role::passenger : Role::driver;
    ended.state = CallState::ended;
    ended.end_reason = reason;
    ended.created_at = kBaseTime + n * 100000;
    if (reason == EndReason::completed) ended.connected_at = ended.created_at + 4000;
    ended.ended_at = ended.created_at + 64000;
    ended.ring_deadline = ended.created_at + 30000;
    sample.calls.push_back(ended);
  }
  Call connected;  // the active call of the first booking
  connected.booking_code = first;
  connected.call_id = "call-live";
  connected.state = CallState::connected;
  connected.created_at = kBaseTime + 900000;
  connected.connected_at = connected.created_at + 2500;
  connected.ring_deadline = connected.created_at + 30000;
  sample.calls.push_back(connected);
  Call ringing;  // the active call of the second booking, also in the ringing index
  ringing.booking_code = second;
  ringing.call_id = "call-ringing";
  ringing.from = Role::passenger;
  ringing.to = Role::driver;
  ringing.created_at = kBaseTime + 950000;
  ringing.ring_deadline = std::numeric_limits<Millis>::max();
  sample.calls.push_back(ringing);

  for (const auto& booking : booking_codes()) {
    sample.connections.push_back(Connection{booking, booking + "-driver-app", Role::driver, true, kBaseTime});
    sample.connections.push_back(Connection{booking, booking + "-rider-web", Role::passenger, false, kBaseTime + 5});
  }
  sample.presence.push_back(Presence{first, RolePresence{true, kBaseTime}, RolePresence{false, std::nullopt}});
  sample.presence.push_back(Presence{second, RolePresence{false, Millis{1}}, RolePresence{true, kBaseTime + 7}});
  return sample;
}

void write_sample(Store& store, const Sample& sample) {
  store.write([&](StoreWriter& writer) {
    for (const auto& message : sample.messages) writer.append_message(message);
    for (const auto& call : sample.calls) writer.put_call(call);
    for (const auto& connection : sample.connections) writer.put_connection(connection);
    for (const auto& presence : sample.presence) writer.put_presence(presence);
  });
}

// Every record of the sample read back through each way the store has of reaching it.
class Verifier {
 public:
  Verifier(const StoreReader& reader, const Sample& sample) : reader_(reader), sample_(sample) {}

  std::vector<std::string> run() {
    check_messages();
    check_calls();
    check_connections_and_presence();
    return differences_;
  }
  std::size_t records_checked() const { return checked_; }

 private:
  void expect(bool equal, const std::string& what) {
    ++checked_;
    if (!equal) differences_.push_back(what);
  }

  void check_messages() {
    std::map<std::string, std::vector<Message>> by_booking;
    for (const auto& message : sample_.messages) {
      by_booking[message.booking_code].push_back(message);
      const auto at_seq = reader_.message(message.booking_code, message.seq);
      expect(at_seq && *at_seq == message, "message " + message.message_id + " by seq");
      const auto by_id = reader_.message_by_id(message.booking_code, message.message_id);
      expect(by_id && *by_id == message, "message " + message.message_id + " by message_id");
    }
    for (const auto& [booking, messages] : by_booking) {
      expect(reader_.last_seq(booking) == messages.back().seq, "last_seq of " + booking);
      // The whole history, page by page forwards, must be the sample in seq order.
      std::vector<Message> history;
      HistoryQuery query;
      query.limit = 37;
      query.after_seq = 0;
      for (int page = 0; page < 100; ++page) {
        const HistoryPage got = reader_.history(booking, query);
        history.insert(history.end(), got.messages.begin(), got.messages.end());
        if (!got.has_more || got.messages.empty()) break;
        query.after_seq = got.messages.back().seq;
      }
      expect(history == messages, "history of " + booking + " (" + std::to_string(history.size()) + " messages)");
    }
    expect(reader_.last_seq("BK-NONE") == 0, "last_seq of an unknown booking");
  }

  void check_calls() {
    std::set<std::string> ringing_expected;
    for (const auto& call : sample_.calls) {
      const auto got = reader_.call(call.booking_code, call.call_id);
      expect(got && *got == call, "call " + call.call_id);
      if (call.active()) {
        const auto active = reader_.active_call(call.booking_code);
        expect(active && *active == call, "active call of " + call.booking_code);
      }
      if (call.state == CallState::ringing) ringing_expected.insert(call.call_id);
    }
    std::set<std::string> ringing_got;
    for (const auto& call : reader_.ringing_calls()) ringing_got.insert(call.call_id);
    expect(ringing_got == ringing_expected, "ringing calls index");
    expect(!reader_.active_call(booking_codes()[2]), "no active call in " + booking_codes()[2]);
  }

  void check_connections_and_presence() {
    for (const auto& booking : booking_codes()) {
      std::vector<Connection> expected;
      for (const auto& connection : sample_.connections) {
        if (connection.booking_code == booking) expected.push_back(connection);
      }
      std::vector<Connection> got = reader_.connections(booking);
      const auto by_client = [](const Connection& a, const Connection& b) { return a.client_id < b.client_id; };
      std::sort(expected.begin(), expected.end(), by_client);
      std::sort(got.begin(), got.end(), by_client);
      expect(got == expected, "connections of " + booking);
    }
    for (const auto& presence : sample_.presence) {
      const auto got = reader_.presence(presence.booking_code);
      expect(got && *got == presence, "presence of " + presence.booking_code);
    }
    expect(reader_.all_presence().size() == sample_.presence.size(), "all_presence count");
  }

  const StoreReader& reader_;
  const Sample& sample_;
  std::vector<std::string> differences_;
  std::size_t checked_ = 0;
};

int run(const std::string& mode, const std::string& dir) {
  const Sample sample = make_sample();
  auto store = open_lmdb_store(LmdbOptions{dir, std::size_t{64} << 20, SyncMode::full});
  if (mode == "write") {
    write_sample(*store, sample);
    std::cout << "wrote " << sample.messages.size() << " messages, " << sample.calls.size() << " calls, "
              << sample.connections.size() << " connections, " << sample.presence.size() << " presence records\n";
    return 0;
  }
  std::vector<std::string> differences;
  std::size_t checked = 0;
  store->read([&](const StoreReader& reader) {
    Verifier verifier(reader, sample);
    differences = verifier.run();
    checked = verifier.records_checked();
  });
  for (const auto& difference : differences) std::cout << "DIFFERENT: " << difference << "\n";
  std::cout << "verified " << checked << " reads, " << differences.size() << " different\n";
  return differences.empty() ? 0 : 1;
}

}  // namespace
}  // namespace navietakie

int main(int argc, char** argv) {
  const std::string mode = argc == 3 ? argv[1] : "";
  if (mode != "write" && mode != "verify") {
    std::cerr << "usage: navietakie-store-sample write|verify DIR\n";
    return 2;
  }
  try {
    return navietakie::run(mode, argv[2]);
  } catch (const std::exception& e) {
    std::cerr << "navietakie-store-sample: " << e.what() << "\n";
    return 1;
  }
}
