// Request/response load against a running navietakie: send_message with an MQTT v5 response
// topic, `window` requests in flight, each timed from publish to its reply (the reply goes out
// only after the durable commit). Prints throughput and latency percentiles.
// Usage: bench_rr --url tcp://127.0.0.1:1883 [--count 2000] [--window 1] [--booking BENCH]
//                 [--username U --password TOKEN] [--action send_message --payload JSON]
//                 [--call-rounds]   (each of `count` units is then a call round: start, accept,
//                                    end, in `window` bookings at a time; latency is per round)
//                 [--until-event]   (send_message: a unit ends when its events/message arrives, i.e.
//                                    request -> durable commit -> broadcast delivered)
//                 [--raw]           (no navietakie: a unit is a QoS 1 publish to a topic this client
//                                    subscribes to, ending at its delivery: the transport's own cost)
#include <mqtt/async_client.h>

#include "bridge/paho_compat.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

using Clock = std::chrono::steady_clock;

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  std::string url = "tcp://127.0.0.1:1883";
  std::string booking = "BENCH";
  std::size_t count = 2000;
  std::size_t window = 1;
  std::string username;  // with --password: e.g. a driver token of --booking (authentication on)
  std::string password;
  std::string action = "send_message";
  std::string payload = R"({"sender":"driver","text":"benchmark message of about one hundred bytes, as a chat line would be......"})";
  bool call_rounds = false;
  bool until_event = false;
  bool raw = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    std::string value = argv[i + 1];
    if (flag == "--url") url = value;
    else if (flag == "--count") count = std::stoul(value);
    else if (flag == "--window") window = std::max<std::size_t>(1, std::stoul(value));
    else if (flag == "--booking") booking = value;
    else if (flag == "--username") username = value;
    else if (flag == "--password") password = value;
    else if (flag == "--action") action = value;
    else if (flag == "--payload") payload = value;
  }
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--call-rounds") call_rounds = true;
    if (flag == "--until-event") until_event = true;
    if (flag == "--raw") raw = true;
  }
  const std::string client_id = "bench-rr-" + std::to_string(::getpid());
  const std::string reply_topic = "navietakie/v1/replies/" + client_id + "/r";
  const std::string request_topic = "navietakie/v1/bookings/" + booking + "/" + action;
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
  const std::string events_topic = "navietakie/v1/bookings/" + booking + "/events/message";
  const std::string raw_topic = "bench/raw/" + client_id;
  if (until_event) client.subscribe(events_topic, 1)->wait();
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
  std::size_t sent = 0;       // units started
  std::size_t requests = 0;   // requests published
  std::size_t failed = 0;
  const std::string id_prefix = "b" + std::to_string(::getpid()) + "-";
  auto publish = [&](const std::string& topic, const std::string& body, Unit unit) {
    std::string corr = std::to_string(requests++);
    mqtt::properties props{{mqtt::property::CORRELATION_DATA, corr}};
    if (!raw) props.add({mqtt::property::RESPONSE_TOPIC, reply_topic});
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
  const char* steps[] = {"start", "accept", "end"};
  const char* by[] = {"driver", "passenger", "driver"};
  auto call_step = [&](Unit unit) {
    const std::string body = std::string(R"({"action":")") + steps[unit.step] + R"(","by":")" + by[unit.step] +
                             R"(","call_id":")" + unit.call_id + R"("})";
    const std::string topic = "navietakie/v1/bookings/" + unit.booking + "/make_call";
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
  auto start = Clock::now();
  while (sent < count && in_flight.size() < window) send_one();
  auto deadline = Clock::now() + std::chrono::seconds(120);
  while (latencies_us.size() + failed < count && Clock::now() < deadline) {
    mqtt::const_message_ptr msg;
    navietakie::nudge_send_thread(client, "bench/wake");  // bridge/paho_compat.hpp
    if (!client.try_consume_message_for(&msg, std::chrono::milliseconds(2)) || !msg) continue;
    const auto& props = msg->get_properties();
    std::string key;
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
    const bool ok = raw || (until_event && msg->get_topic() == events_topic) ||
                    msg->to_string().rfind(R"({"ok":true)", 0) == 0;
    if (call_rounds && ok && unit.step < 2) {
      ++unit.step;
      call_step(std::move(unit));
      continue;
    }
    if (ok) latencies_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - unit.started).count());
    else if (++failed == 1) std::fprintf(stderr, "first error: %s\n", msg->to_string().c_str());
    if (sent < count) send_one();
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  client.disconnect()->wait();
  std::printf("{\"window\":%zu,\"count\":%zu,\"replies\":%zu,\"errors\":%zu,\"%s\":%.0f,"
              "\"p50_us\":%.0f,\"p99_us\":%.0f,\"p999_us\":%.0f}\n",
              window, count, latencies_us.size(), failed, call_rounds ? "rounds_per_s" : "msgs_per_s",
              static_cast<double>(latencies_us.size()) / secs,
              percentile(latencies_us, 0.5), percentile(latencies_us, 0.99), percentile(latencies_us, 0.999));
  return latencies_us.size() == count && failed == 0 ? 0 : 1;
}
