// The plugin's log lines go into the broker's log (mosquitto_log_printf), so that log_dest and
// log_type of mosquitto.conf apply to them as to the broker's own.
//
// mosquitto_log_printf is not thread-safe in 2.0.11 (src/logging.c: with `log_dest topic` it queues
// a $SYS message into the broker's database, and a log_timestamp_format goes through localtime()),
// so only the broker thread calls it. Lines logged on any other thread (the engine loop's) wait in
// a bounded queue that the broker thread drains at every MOSQ_EVT_TICK and at cleanup.
#pragma once

namespace navietakie {

// Routes core/log into the broker's log; the calling thread is the broker thread.
void route_log_to_broker();
// Broker thread: writes the lines other threads logged since the last call.
void drain_broker_log();
// Broker thread: drains, then logs to stderr again (the plugin is unloading).
void unroute_log_from_broker();

}  // namespace navietakie
