// Request/response load against a running navietakie: send_message with an MQTT v5 response
// topic, `window` requests in flight, each timed from publish to its reply (the reply goes out
// only after the durable commit). Prints throughput and latency percentiles.
// Usage (`bench_rr --help`): bench_rr --url tcp://127.0.0.1:1883 [--count 2000] [--window 1] [--booking BENCH]
//                 [--username U --password TOKEN] [--action send_message --payload JSON]
//                 [--call-rounds]   (each of `count` units is then a call round: start, accept,
//                                    end, in `window` bookings at a time; latency is per round)
//                 [--until-event]   (send_message: a unit ends when its events/message arrives, i.e.
//                                    request -> durable commit -> broadcast delivered)
//                 [--event-confirmed] (send_message without a reply address: a unit ends when its
//                                    events/message arrives, which carries its message_id and seq; the
//                                    raw relay's shape, one publish in and one delivery out, plus
//                                    durability. Refusals come on the booking's errors topic.)
//                 [--raw]           (no navietakie: a unit is a QoS 1 publish to a topic this client
//                                    subscribes to, ending at its delivery: the transport's own cost)
#include <mqtt/async_client.h>

#include "bridge/paho_compat.hpp"
#include "core/calls.hpp"
#include "core/topics.hpp"
#include "core/wire.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

using Clock = std::chrono::steady_clock;

const char* const kUsage =
    "Usage: bench_rr [--url tcp://127.0.0.1:1883] [--count 2000] [--window 1] [--booking BENCH]\n"
    "                [--prefix navietakie/v1] [--username U --password TOKEN]\n"
    "                [--action send_message --payload JSON] [--call-rounds] [--until-event]\n"
    "                [--event-confirmed] [--unit-timeout-ms 10000] [--raw]\n"
    "\n"
    "Request/response load against a running navietakie; prints one JSON line of throughput and\n"
    "latency percentiles. Exit 0 when every unit got an ok reply, 1 otherwise, 2 on bad arguments.\n"
    "\n"
    "  --url URL          the broker (default tcp://127.0.0.1:1883)\n"
    "  --count N          units of work (default 2000)\n"
    "  --window N         units in flight at a time (default 1)\n"
    "  --booking CODE     the booking requests go to (default BENCH)\n"
    "  --prefix PREFIX    the topic prefix (default navietakie/v1)\n"
    "  --username U       MQTT user name (with --password)\n"
    "  --password TOKEN   MQTT password, e.g. a driver token of --booking\n"
    "  --action ACTION    the request topic's action (default send_message)\n"
    "  --payload JSON     the request payload (default a 100-byte driver chat line)\n"
    "  --call-rounds      a unit is a call round (start, accept, end) in one of `window` bookings\n"
    "  --until-event      send_message: a unit ends when its events/message arrives\n"
    "  --event-confirmed  send_message without a reply address (no response topic, no reply_to):\n"
    "                     a unit ends when its events/message arrives; a refusal on the booking's\n"
    "                     errors topic fails the oldest unit in flight\n"
    "  --unit-timeout-ms N  a unit unanswered after N ms fails (default 10000)\n"
    "  --raw              no navietakie: a unit is a QoS 1 publish to a topic this client follows\n"
    "  --help             this text\n";

// Bad arguments: the message goes to stderr, exit 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string url = "tcp://127.0.0.1:1883";
  std::string booking = "BENCH";
  std::string prefix = "navietakie/v1";
  std::size_t count = 2000;
  std::size_t window = 1;
  std::string username;  // with --password: e.g. a driver token of --booking (authentication on)
  std::string password;
  navietakie::Action action = navietakie::Action::send_message;
  std::string payload =
      R"({"sender":"driver","text":"benchmark message of about one hundred bytes, as a chat line would be......"})";
  bool call_rounds = false;
  bool until_event = false;
  bool event_confirmed = false;  // no reply address: the event is the confirmation
  std::size_t unit_timeout_ms = 10000;
  bool raw = false;
  bool help = false;
};

std::size_t count_option(const std::string& flag, const std::string& value) {
  if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos || value.size() > 9) {
    throw UsageError(flag + ": expected a whole number, got '" + value + "'");
  }
  return std::stoul(value);
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h")
      o.help = true;
    else if (flag == "--call-rounds")
      o.call_rounds = true;
    else if (flag == "--until-event")
      o.until_event = true;
    else if (flag == "--event-confirmed")
      o.event_confirmed = true;
    else if (flag == "--raw")
      o.raw = true;
    else {
      std::string* text = flag == "--url"        ? &o.url
                          : flag == "--booking"  ? &o.booking
                          : flag == "--prefix"   ? &o.prefix
                          : flag == "--username" ? &o.username
                          : flag == "--password" ? &o.password
                          : flag == "--payload"  ? &o.payload
                                                 : nullptr;
      std::size_t* number = flag == "--count"             ? &o.count
                            : flag == "--window"          ? &o.window
                            : flag == "--unit-timeout-ms" ? &o.unit_timeout_ms
                                                          : nullptr;
      if (flag == "--action") {
        if (i + 1 >= argc) throw UsageError(flag + " needs a value");
        const auto action = navietakie::wire::parse(navietakie::wire::kActions, argv[++i]);
        if (!action) throw UsageError("--action: not a request action: '" + std::string(argv[i]) + "'");
        o.action = *action;
        continue;
      }
      if (!text && !number) throw UsageError("unknown argument '" + flag + "'");
      if (i + 1 >= argc) throw UsageError(flag + " needs a value");
      const std::string value = argv[++i];
      if (text)
        *text = value;
      else
        *number = count_option(flag, value);
    }
  }
  o.window = std::max<std::size_t>(1, o.window);
  o.unit_timeout_ms = std::max<std::size_t>(1, o.unit_timeout_ms);
  if (o.event_confirmed && (o.call_rounds || o.raw || o.action != navietakie::Action::send_message)) {
    throw UsageError("--event-confirmed measures send_message alone (not with --call-rounds, --raw or --action)");
  }
  return o;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  return v[i];
}

int run(const Options& options) {
  const std::string& url = options.url;
  const std::string& booking = options.booking;
  const std::size_t count = options.count;
  const std::size_t window = options.window;
  const std::string& username = options.username;
  const std::string& password = options.password;
  const std::string& payload = options.payload;
  const bool call_rounds = options.call_rounds;
  const bool event_confirmed = options.event_confirmed;
  // Both are confirmed by the event, matched by the message_id the request carries.
  const bool until_event = options.until_event || event_confirmed;
  const auto unit_timeout = std::chrono::milliseconds(options.unit_timeout_ms);
  const bool raw = options.raw;
  const navietakie::Topics topics(options.prefix);
  const std::string client_id = "bench-rr-" + std::to_string(::getpid());
  const std::string reply_topic = topics.replies(client_id) + "/r";
  const std::string request_topic = topics.request(booking, options.action);
  mqtt::async_client client(url, client_id, mqtt::create_options(MQTTVERSION_5, 100000));
  client.start_consuming();
  auto opts = mqtt::connect_options_builder()
                  .mqtt_version(MQTTVERSION_5)
                  .clean_start(true)
                  .properties({{mqtt::property::RECEIVE_MAXIMUM, 65535}})
                  .finalize();
  if (!password.empty()) {
    opts.set_user_name(username.empty() ? client_id : username);
    opts.set_password(password);
  }
  client.connect(opts)->wait();
  navietakie::set_tcp_nodelay_on_open_sockets();
  client.subscribe(reply_topic, 1)->wait();
  const std::string events_topic = topics.message_events(booking);
  const std::string raw_topic = "bench/raw/" + client_id;
  const std::string errors_topic = topics.booking_errors(booking);
  if (until_event) client.subscribe(events_topic, 1)->wait();
  if (event_confirmed) client.subscribe(errors_topic, 1)->wait();
  if (raw) client.subscribe(raw_topic, 1)->wait();

  // One unit of work in flight: a request (or, with --call-rounds, a call round in its booking).
  struct Unit {
    Clock::time_point started;
    std::string booking;
    std::string call_id;
    int step = 0;  // call rounds: 0 start, 1 accept, 2 end
  };
  std::map<std::string, Unit> in_flight;  // correlation (or message_id, --until-event) -> unit
  std::vector<double> latencies_us;
  latencies_us.reserve(count);
  std::size_t sent = 0;      // units started
  std::size_t requests = 0;  // requests published
  std::size_t failed = 0;
  const std::string id_prefix = "b" + std::to_string(::getpid()) + "-";
  auto publish = [&](const std::string& topic, const std::string& body, Unit unit) {
    std::string corr = std::to_string(requests++);
    mqtt::properties props{{mqtt::property::CORRELATION_DATA, corr}};
    if (!raw && !event_confirmed) props.add({mqtt::property::RESPONSE_TOPIC, reply_topic});
    std::string payload_out = body;
    std::string key = corr;
    if (until_event) {  // the event is matched by the message_id this request carries
      key = id_prefix + corr;
      payload_out = R"({"message_id":")" + key + "\"," + body.substr(1);
    }
    auto msg = mqtt::message_ptr_builder().topic(topic).payload(payload_out).qos(1).properties(props).finalize();
    in_flight[key] = std::move(unit);
    client.publish(msg);
  };
  using navietakie::CallAction;
  const char* steps[] = {to_string(CallAction::start), to_string(CallAction::accept), to_string(CallAction::end)};
  const char* by[] = {"driver", "passenger", "driver"};
  auto call_step = [&](Unit unit) {
    const std::string body = std::string(R"({"action":")") + steps[unit.step] + R"(","by":")" + by[unit.step] +
                             R"(","call_id":")" + unit.call_id + R"("})";
    const std::string topic = topics.request(unit.booking, navietakie::Action::make_call);
    publish(topic, body, std::move(unit));
  };
  auto send_one = [&] {
    Unit unit{Clock::now(), booking, "", 0};
    if (call_rounds) {
      unit.booking = booking + "-C" + std::to_string(sent % window);
      unit.call_id = "r" + std::to_string(::getpid()) + "-" + std::to_string(sent);
      ++sent;
      call_step(std::move(unit));
      return;
    }
    ++sent;
    publish(raw ? raw_topic : request_topic, payload, std::move(unit));
  };
  std::size_t timed_out = 0;
  // A unit that ends without an ok: counted, the first one shown, and the next unit started.
  auto fail = [&](const std::string& why) {
    if (++failed == 1) std::fprintf(stderr, "first error: %s\n", why.c_str());
    if (sent < count) send_one();
  };
  // The unit in flight longest: a booking's requests are answered in order, so a refusal on the
  // errors topic (which carries no correlation) is the oldest unit's.
  auto oldest_in_flight = [&] {
    return std::min_element(in_flight.begin(), in_flight.end(),
                            [](const auto& a, const auto& b) { return a.second.started < b.second.started; });
  };
  // Every wait is bounded: a unit unanswered after the unit timeout fails (nothing hangs the run).
  auto expire_units = [&] {
    const auto now = Clock::now();
    for (auto it = in_flight.begin(); it != in_flight.end();) {
      if (now - it->second.started < unit_timeout) {
        ++it;
        continue;
      }
      it = in_flight.erase(it);
      ++timed_out;
      fail("no answer within " + std::to_string(options.unit_timeout_ms) + " ms");
    }
  };
  auto start = Clock::now();
  while (sent < count && in_flight.size() < window) send_one();
  auto deadline = Clock::now() + std::chrono::seconds(120);
  auto next_expiry_check = Clock::now();
  while (latencies_us.size() + failed < count && Clock::now() < deadline) {
    if (Clock::now() >= next_expiry_check) {
      expire_units();
      next_expiry_check = Clock::now() + std::chrono::milliseconds(50);
    }
    mqtt::const_message_ptr msg;
    navietakie::nudge_send_thread(client, "bench/wake");  // bridge/paho_compat.hpp
    if (!client.try_consume_message_for(&msg, std::chrono::milliseconds(2)) || !msg) continue;
    const auto& props = msg->get_properties();
    std::string key;
    if (event_confirmed && msg->get_topic() == errors_topic) {
      if (in_flight.empty()) continue;
      in_flight.erase(oldest_in_flight());
      fail(msg->to_string());
      continue;
    }
    if (until_event && msg->get_topic() == events_topic) {
      const std::string body = msg->to_string();
      const auto at = body.find(R"("message_id":")");
      if (at == std::string::npos) continue;
      const auto from = at + 14;
      key = body.substr(from, body.find('"', from) - from);
    } else if (props.contains(mqtt::property::CORRELATION_DATA)) {
      key = mqtt::get<mqtt::binary>(props, mqtt::property::CORRELATION_DATA);
      // --until-event: a reply only ends its unit when it is an error.
      if (until_event) {
        if (msg->to_string().rfind(R"({"ok":true)", 0) == 0) continue;
        key = id_prefix + key;
      }
    } else {
      continue;
    }
    auto it = in_flight.find(key);
    if (it == in_flight.end()) continue;
    Unit unit = std::move(it->second);
    in_flight.erase(it);
    const bool ok =
        raw || (until_event && msg->get_topic() == events_topic) || msg->to_string().rfind(R"({"ok":true)", 0) == 0;
    if (call_rounds && ok && unit.step < 2) {
      ++unit.step;
      call_step(std::move(unit));
      continue;
    }
    if (!ok) {
      fail(msg->to_string());
      continue;
    }
    latencies_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - unit.started).count());
    if (sent < count) send_one();
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  client.disconnect()->wait();
  std::printf(
      "{\"window\":%zu,\"count\":%zu,\"replies\":%zu,\"errors\":%zu,\"timeouts\":%zu,\"%s\":%.0f,"
      "\"p50_us\":%.0f,\"p99_us\":%.0f,\"p999_us\":%.0f}\n",
      window, count, latencies_us.size(), failed, timed_out, call_rounds ? "rounds_per_s" : "msgs_per_s",
      static_cast<double>(latencies_us.size()) / secs, percentile(latencies_us, 0.5), percentile(latencies_us, 0.99),
      percentile(latencies_us, 0.999));
  return latencies_us.size() == count && failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options options = parse_options(argc, argv);
    if (options.help) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    navietakie::quiet_paho_trace();  // the load generator's own Paho trace bookkeeping is not what is measured
    return run(options);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "bench_rr: %s (bench_rr --help lists the options)\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_rr: %s\n", e.what());
    return 1;
  }
}
