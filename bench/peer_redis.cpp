// The Redis Streams peer of scripts/bench --peers: the same load shape as bench_rr, on a
// redis-server started with appendonly yes, appendfsync always (bench/peers.py).
//   send:    XADD <booking> * message_id <id> body <chat line>, `window` in flight (pipelined on one
//            connection); a second connection of this client follows the booking with XREAD BLOCK.
//            A unit ends when both the XADD reply and the subscriber's delivery have arrived.
//   fill:    XADD of --messages messages over --bookings keys H0.. (pipelined), for history.
//   history: XREVRANGE <booking> + - COUNT 50, `window` in flight (pipelined).
#include <hiredis.h>

#include <atomic>
#include <deque>
#include <memory>
#include <thread>

#include "bench/peer_common.hpp"

namespace {

using peer::Clock;

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
using Connection = std::unique_ptr<redisContext, ContextDeleter>;

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

Connection connect(int port) {
  Connection c(redisConnect("127.0.0.1", port));
  if (!c || c->err) throw std::runtime_error("cannot connect to redis on port " + std::to_string(port));
  return c;
}

Reply next_reply(redisContext* c) {
  void* raw = nullptr;
  if (redisGetReply(c, &raw) != REDIS_OK) throw std::runtime_error(std::string("redis: ") + c->errstr);
  return Reply(static_cast<redisReply*>(raw));
}

void append_xadd(redisContext* c, const std::string& key, const std::string& id) {
  const std::string body = peer::chat_line(id);
  redisAppendCommand(c, "XADD %b * message_id %b body %b", key.data(), key.size(), id.data(), id.size(),
                     body.data(), body.size());
}

bool ok_entry_id(const redisReply* r) { return r && r->type == REDIS_REPLY_STRING; }

// The value of field `name` in a stream entry [id, [field, value, ...]], or "".
std::string field(const redisReply* entry, const char* name) {
  if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) return "";
  const redisReply* fields = entry->element[1];
  for (std::size_t i = 0; fields->type == REDIS_REPLY_ARRAY && i + 1 < fields->elements; i += 2) {
    if (std::string(fields->element[i]->str, fields->element[i]->len) == name)
      return std::string(fields->element[i + 1]->str, fields->element[i + 1]->len);
  }
  return "";
}

int send(const peer::Options& o) {
  Connection publisher = connect(o.port);
  Connection follower = connect(o.port);
  // Follow from the booking's current end, so that nothing sent below is missed.
  Reply last(static_cast<redisReply*>(redisCommand(follower.get(), "XREVRANGE %s + - COUNT 1", o.booking.c_str())));
  std::string after = last && last->type == REDIS_REPLY_ARRAY && last->elements == 1
                          ? std::string(last->element[0]->element[0]->str, last->element[0]->element[0]->len)
                          : "0-0";
  peer::Units units(o.count);
  std::atomic<bool> stopping{false};
  std::thread subscriber([&] {
    while (!stopping) {
      Reply r(static_cast<redisReply*>(redisCommand(follower.get(), "XREAD COUNT 1000 BLOCK 100 STREAMS %s %s",
                                                     o.booking.c_str(), after.c_str())));
      if (!r) return;  // connection lost: the units left in flight count as errors
      if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) continue;  // timed out (nil)
      const redisReply* entries = r->element[0]->element[1];
      for (std::size_t i = 0; i < entries->elements; ++i) {
        units.delivered(field(entries->element[i], "message_id"));
        after.assign(entries->element[i]->element[0]->str, entries->element[i]->element[0]->len);
      }
    }
  });

  const std::string prefix = peer::message_id_prefix();
  std::deque<std::string> awaiting_reply;  // ids in the order their XADD replies come back
  std::size_t sent = 0;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::seconds(120);
  while ((sent < o.count || !awaiting_reply.empty()) && Clock::now() < deadline) {
    if (sent < o.count && units.in_flight() < o.window) {
      const std::string id = prefix + std::to_string(sent++);
      units.started(id);
      append_xadd(publisher.get(), o.booking, id);
      awaiting_reply.push_back(id);
    } else if (!awaiting_reply.empty()) {  // reading a reply flushes the pipelined commands first
      Reply r = next_reply(publisher.get());
      units.acknowledged(awaiting_reply.front(), ok_entry_id(r.get()));
      awaiting_reply.pop_front();
    } else {
      units.wait_for_room(o.window, Clock::now() + std::chrono::milliseconds(10));  // deliveries only
    }
  }
  units.wait_until_done(deadline);
  stopping = true;
  subscriber.join();
  return units.report(o.window, o.count, start);
}

// A fill, not a measurement (as bench_fill writes nosync): the AOF is fsynced once at the end, not
// per event-loop pass; then any AOF rewrite the fill set off is waited for, so that the pages are
// measured on a store at rest.
int fill(const peer::Options& o) {
  Connection c = connect(o.port);
  const auto start = Clock::now();
  Reply(static_cast<redisReply*>(redisCommand(c.get(), "CONFIG SET appendfsync no")));
  constexpr std::size_t kPipeline = 1000;
  std::size_t errors = 0;
  for (std::size_t done = 0; done < o.messages;) {
    const std::size_t n = std::min(kPipeline, o.messages - done);
    for (std::size_t i = 0; i < n; ++i)
      append_xadd(c.get(), peer::fill_booking(done + i, o.bookings), "f" + std::to_string(done + i));
    for (std::size_t i = 0; i < n; ++i) errors += ok_entry_id(next_reply(c.get()).get()) ? 0 : 1;
    done += n;
  }
  Reply(static_cast<redisReply*>(redisCommand(c.get(), "CONFIG SET appendfsync always")));
  for (int i = 0; i < 600; ++i) {  // at most a minute
    Reply info(static_cast<redisReply*>(redisCommand(c.get(), "INFO persistence")));
    if (!info || info->type != REDIS_REPLY_STRING) break;
    const std::string text(info->str, info->len);
    if (text.find("aof_rewrite_in_progress:0") != std::string::npos &&
        text.find("aof_rewrite_scheduled:0") != std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::printf("{\"messages\":%zu,\"bookings\":%zu,\"errors\":%zu,\"fill_s\":%.1f}\n", o.messages, o.bookings, errors,
              std::chrono::duration<double>(Clock::now() - start).count());
  return errors == 0 ? 0 : 1;
}

int history(const peer::Options& o) {
  Connection c = connect(o.port);
  peer::Units units(o.count);
  std::deque<Clock::time_point> awaiting_reply;
  const std::string limit = std::to_string(o.limit);
  std::size_t sent = 0;
  const auto start = Clock::now();
  while (sent < o.count || !awaiting_reply.empty()) {
    if (sent < o.count && awaiting_reply.size() < o.window) {
      redisAppendCommand(c.get(), "XREVRANGE %s + - COUNT %s", o.booking.c_str(), limit.c_str());
      awaiting_reply.push_back(Clock::now());
      ++sent;
      continue;
    }
    Reply r = next_reply(c.get());
    units.finished(awaiting_reply.front(), r->type == REDIS_REPLY_ARRAY && r->elements == o.limit);
    awaiting_reply.pop_front();
  }
  return units.report(o.window, o.count, start);
}

}  // namespace

int main(int argc, char** argv) {
  return peer::main_of("peer_redis", "Redis Streams under the load shape of bench_rr (hiredis).", argc, argv,
                       [](const peer::Options& o) {
                         return o.mode == "fill" ? fill(o) : o.mode == "history" ? history(o) : send(o);
                       });
}
