#include "sim/link.hpp"

namespace navietakie::sim {

void Inbox::post(Delivery delivery) {
  bool was_empty = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    was_empty = queue_.empty();
    queue_.push_back(std::move(delivery));
  }
  if (was_empty) ready_.notify_one();
}

void Inbox::take(std::vector<Delivery>& out, Clock::time_point until) {
  out.clear();
  std::unique_lock<std::mutex> lock(mutex_);
  ready_.wait_until(lock, until, [this] { return !queue_.empty() || woken_; });
  woken_ = false;
  out.swap(queue_);
}

void Inbox::wake() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    woken_ = true;
  }
  ready_.notify_one();
}

ClientLink::ClientLink(std::unique_ptr<mqtt::iasync_client> client, Inbox& inbox, std::size_t index)
    : client_(std::move(client)), inbox_(inbox), index_(index), id_(client_->get_client_id()) {
  client_->set_callback(*this);
}

bool ClientLink::publish_request(const std::string& topic, std::string payload, const std::string& response_topic,
                                 const std::string& correlation) {
  mqtt::properties props{{mqtt::property::RESPONSE_TOPIC, response_topic},
                         {mqtt::property::CORRELATION_DATA, correlation}};
  auto message =
      mqtt::message_ptr_builder().topic(topic).payload(std::move(payload)).qos(1).properties(props).finalize();
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  try {
    client_->publish(message, nullptr, *this);
    return true;
  } catch (const mqtt::exception&) {
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
}

void ClientLink::publish_wake(const std::string& topic) {
  try {
    client_->publish(topic, "", 0, 0, false);
  } catch (const mqtt::exception&) {
    // disconnected: nothing to wake
  }
}

std::uint64_t ClientLink::take_publish_failures(std::string& last_reason) {
  std::lock_guard<std::mutex> lock(failure_mutex_);
  const std::uint64_t n = failures_;
  failures_ = 0;
  if (n > 0) last_reason = failure_reason_;
  return n;
}

void ClientLink::message_arrived(mqtt::const_message_ptr message) {
  inbox_.post(Delivery{index_, std::move(message), Clock::now()});
}

void ClientLink::connection_lost(const std::string&) { inbox_.post(Delivery{index_, nullptr, Clock::now()}); }

void ClientLink::on_success(const mqtt::token&) { in_flight_.fetch_sub(1, std::memory_order_relaxed); }

void ClientLink::on_failure(const mqtt::token& token) {
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(failure_mutex_);
  ++failures_;
  failure_reason_ = "return code " + std::to_string(token.get_return_code()) + ", reason code " +
                    std::to_string(static_cast<int>(token.get_reason_code()));
}

}  // namespace navietakie::sim
