// Request/response load against a running navietakie: send_message with an MQTT v5 response
// topic, `window` requests in flight, each timed from publish to its reply (the reply goes out
// only after the durable commit). Prints throughput and latency percentiles.
// Usage: bench_rr --url tcp://127.0.0.1:1883 [--count 2000] [--window 1] [--booking BENCH]
//                 [--username U --password TOKEN]
#include <mqtt/async_client.h>

#include "bridge/tcp_nodelay.hpp"

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
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    std::string value = argv[i + 1];
    if (flag == "--url") url = value;
    else if (flag == "--count") count = std::stoul(value);
    else if (flag == "--window") window = std::max<std::size_t>(1, std::stoul(value));
    else if (flag == "--booking") booking = value;
    else if (flag == "--username") username = value;
    else if (flag == "--password") password = value;
  }
  const std::string client_id = "bench-rr-" + std::to_string(::getpid());
  const std::string reply_topic = "navietakie/v1/replies/" + client_id + "/r";
  const std::string request_topic = "navietakie/v1/bookings/" + booking + "/send_message";
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

  std::map<std::string, Clock::time_point> in_flight;
  std::vector<double> latencies_us;
  latencies_us.reserve(count);
  std::size_t sent = 0;
  std::size_t failed = 0;
  const std::string payload = R"({"sender":"driver","text":"benchmark message of about one hundred bytes, as a chat line would be......"})";
  auto send_one = [&] {
    std::string corr = std::to_string(sent++);
    mqtt::properties props{{mqtt::property::RESPONSE_TOPIC, reply_topic},
                           {mqtt::property::CORRELATION_DATA, corr}};
    auto msg = mqtt::message_ptr_builder().topic(request_topic).payload(payload).qos(1).properties(props).finalize();
    in_flight[corr] = Clock::now();
    client.publish(msg);
  };
  auto start = Clock::now();
  while (sent < count && in_flight.size() < window) send_one();
  auto deadline = Clock::now() + std::chrono::seconds(120);
  while (latencies_us.size() + failed < count && Clock::now() < deadline) {
    mqtt::const_message_ptr msg;
    // Wake Paho's send thread while publishes are queued (see bridge/paho_host.cpp).
    if (!client.get_pending_delivery_tokens().empty()) client.publish("bench/wake", "", 0, 0, false);
    if (!client.try_consume_message_for(&msg, std::chrono::milliseconds(2)) || !msg) continue;
    const auto& props = msg->get_properties();
    if (!props.contains(mqtt::property::CORRELATION_DATA)) continue;
    auto corr = mqtt::get<mqtt::binary>(props, mqtt::property::CORRELATION_DATA);
    auto it = in_flight.find(corr);
    if (it == in_flight.end()) continue;
    latencies_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - it->second).count());
    in_flight.erase(it);
    if (msg->to_string().rfind(R"({"ok":true)", 0) != 0) ++failed;
    if (sent < count) send_one();
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  client.disconnect()->wait();
  std::printf("{\"window\":%zu,\"count\":%zu,\"replies\":%zu,\"errors\":%zu,\"msgs_per_s\":%.0f,"
              "\"p50_us\":%.0f,\"p99_us\":%.0f,\"p999_us\":%.0f}\n",
              window, count, latencies_us.size(), failed, static_cast<double>(latencies_us.size()) / secs,
              percentile(latencies_us, 0.5), percentile(latencies_us, 0.99), percentile(latencies_us, 0.999));
  return latencies_us.size() == count && failed == 0 ? 0 : 1;
}
