// Work-arounds for Paho MQTT C 1.3 / C++ 1.2, in one place.
#pragma once

#include <chrono>
#include <mqtt/async_client.h>
#include <string>

namespace navietakie {

// Paho C offers no TCP_NODELAY option. With Nagle's algorithm on, a small publish that follows
// another small write waits for the peer's delayed ACK (~40 ms on Linux): request/response
// latency jumps from under a millisecond to 40-90 ms.
// Sets TCP_NODELAY on every TCP socket this process has open (in a Paho process: its broker
// connections). Returns how many it set. Cheap and non-blocking; call after each (re)connect.
int set_tcp_nodelay_on_open_sockets();

// Paho C 1.3 as Debian builds it (without PAHO_HIGH_PERFORMANCE) keeps an in-memory trace of every
// internal function entry and exit, and formats every protocol trace line with vsnprintf, each under
// one process-wide mutex that all of Paho's threads share: several of those per packet. Raising the
// trace level to errors skips both (error lines are still traced). Left as it is when
// MQTT_C_CLIENT_TRACE asks for a trace. Process-wide; call once, before or after creating clients.
void quiet_paho_trace();

// Paho C 1.3 wakes its send thread only when a command is queued, not when a PUBACK frees a slot
// of the broker's receive window: publishes queued behind a full window wait up to 1 s. While any
// are pending, a tiny QoS 0 publish (on a topic nobody reads) every few ms wakes it.
constexpr std::chrono::milliseconds kSendNudgeEvery{2};
// Nudges the send thread if any publish of `client` is pending; returns whether any is (then call
// again within kSendNudgeEvery). Never throws (disconnected: nothing to wake).
bool nudge_send_thread(mqtt::async_client& client, const std::string& nudge_topic);
// Nudges until no publish of `client` is pending, at most `timeout`. Returns whether none is.
bool wait_for_pending_publishes(mqtt::async_client& client, const std::string& nudge_topic,
                                std::chrono::milliseconds timeout);

}  // namespace navietakie
