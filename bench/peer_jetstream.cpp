// The NATS JetStream peer of scripts/bench --peers: the same load shape as bench_rr, on a
// nats-server 2.9 with JetStream (file storage) started by bench/peers.py. One stream, BOOKINGS,
// holds every booking as a subject bk.<booking>.
//   send:    a JetStream publish to bk.<booking> with a message id (Nats-Msg-Id: the server's
//            dedupe), `window` in flight (asynchronous publish); this client's push consumer on the
//            subject (explicit acks, as MQTT QoS 1) receives it. A unit ends when both the publish
//            ack and the delivery have arrived.
//   fill:    --messages messages over --bookings subjects bk.H0.. (asynchronous publish), for history.
//   history: the newest 50 messages of bk.<booking>, `window` pages in flight (one thread each on
//            the shared connection). JetStream 2.9 has no request for "the last N of a subject" in a
//            stream that holds other subjects too (direct get returns one message: by sequence,
//            last_by_subj or next_by_subj; batched gets came in 2.11), so a page is:
//              1. js_GetLastMsg: the stream sequence L of the subject's newest message;
//              2. an ephemeral pull consumer (memory, no acks) filtered on the subject, starting at
//                 L - span, where span is learnt from the previous page (stream sequences per message
//                 of this subject, plus 20%);
//              3. one fetch of what it holds (no wait), keeping the newest 50; when fewer than 50
//                 came (span too short), or the fetch was full before reaching L (far too long), the
//                 span is corrected and the page retried;
//              4. the consumer deleted (unsubscribe).
#include <nats/nats.h>

#include <atomic>
#include <cmath>
#include <thread>

#include "bench/peer_common.hpp"

namespace {

using peer::Clock;

const char* const kStream = "BOOKINGS";

std::string subject_of(const std::string& booking) { return "bk." + booking; }

void check(natsStatus s, const char* what) {
  if (s != NATS_OK) throw std::runtime_error(std::string(what) + ": " + natsStatus_GetText(s));
}

// The connection and JetStream context of this client; `closure` is handed to the publish-ack
// handler.
struct Client {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;

  Client(int port, jsPubAckHandler on_ack, void* closure) {
    const std::string url = "nats://127.0.0.1:" + std::to_string(port);
    natsOptions* opts = nullptr;
    check(natsOptions_Create(&opts), "options");
    natsOptions_SetURL(opts, url.c_str());
    // Each publish (and each delivery's ack) goes out at once, as Paho's and hiredis' do here: the
    // library's default holds them up to ~1 ms for its flusher to batch (measured: window-1
    // publish -> ack ~950 us with it, ~60 us for a synchronous publish).
    natsOptions_SetSendAsap(opts, true);
    const natsStatus connected = natsConnection_Connect(&nc, opts);
    natsOptions_Destroy(opts);
    check(connected, "connect");
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = closure;
    jo.PublishAsync.MaxPending = 4096;
    jo.PublishAsync.StallWait = 30000;  // ms: a fill waits for room rather than failing on a busy machine
    check(natsConnection_JetStream(&js, nc, &jo), "jetstream context");
    ensure_stream();
  }
  ~Client() {
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // One stream for every booking, file storage (the server's default sync: see bench/peers.py).
  void ensure_stream() {
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = kStream;
    const char* subjects[] = {"bk.>"};
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const natsStatus s = js_AddStream(nullptr, js, &sc, nullptr, &jerr);
    if (s != NATS_OK && jerr != JSStreamNameExistErr) check(s, "add stream");
  }
};

std::string header(natsMsg* msg, const char* key) {
  const char* value = nullptr;
  return natsMsgHeader_Get(msg, key, &value) == NATS_OK && value ? value : "";
}

void on_send_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr*, void* closure) {
  static_cast<peer::Units*>(closure)->acknowledged(header(msg, "Nats-Msg-Id"), pa != nullptr && !pa->Duplicate);
  natsMsg_Destroy(msg);
}

void on_delivery(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  static_cast<peer::Units*>(closure)->delivered(header(msg, "Nats-Msg-Id"));
  natsMsg_Destroy(msg);  // acknowledged by the library when this returns (explicit ack policy)
}

int send(const peer::Options& o) {
  peer::Units units(o.count);
  Client client(o.port, on_send_ack, &units);
  const std::string subject = subject_of(o.booking);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = kStream;
  so.Config.DeliverPolicy = js_DeliverNew;
  natsSubscription* sub = nullptr;
  check(js_Subscribe(&sub, client.js, subject.c_str(), on_delivery, &units, nullptr, &so, nullptr), "subscribe");
  natsSubscription_SetPendingLimits(sub, -1, -1);

  const std::string prefix = peer::message_id_prefix();
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::seconds(120);
  for (std::size_t sent = 0; sent < o.count && units.wait_for_room(o.window, deadline); ++sent) {
    const std::string id = prefix + std::to_string(sent);
    const std::string body = peer::chat_line(id);
    natsMsg* msg = nullptr;
    check(natsMsg_Create(&msg, subject.c_str(), nullptr, body.data(), static_cast<int>(body.size())), "message");
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id.c_str();
    units.started(id);
    if (js_PublishMsgAsync(client.js, &msg, &po) != NATS_OK) units.acknowledged(id, false);
    natsMsg_Destroy(msg);  // no-op when the library took it
  }
  units.wait_until_done(deadline);
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  return units.report(o.window, o.count, start);
}

void on_fill_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
  if (pa == nullptr && closure && (*static_cast<std::atomic<std::size_t>*>(closure))++ == 0)
    std::fprintf(stderr, "fill: %s\n", pae && pae->ErrText ? pae->ErrText : "no publish ack");
  natsMsg_Destroy(msg);
}

int fill(const peer::Options& o) {
  std::atomic<std::size_t> errors{0};
  Client client(o.port, on_fill_ack, &errors);
  const auto start = Clock::now();
  for (std::size_t i = 0; i < o.messages; ++i) {
    const std::string subject = subject_of(peer::fill_booking(i, o.bookings));
    const std::string body = peer::chat_line("f" + std::to_string(i));
    const natsStatus s = js_PublishAsync(client.js, subject.c_str(), body.data(), static_cast<int>(body.size()), nullptr);
    if (s != NATS_OK && errors++ == 0) std::fprintf(stderr, "fill: %s\n", natsStatus_GetText(s));
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 120000;
  const natsStatus completed = js_PublishAsyncComplete(client.js, &po);
  if (completed != NATS_OK && errors++ == 0) std::fprintf(stderr, "fill: %s\n", natsStatus_GetText(completed));
  std::printf("{\"messages\":%zu,\"bookings\":%zu,\"errors\":%zu,\"fill_s\":%.1f}\n", o.messages, o.bookings,
              errors.load(), std::chrono::duration<double>(Clock::now() - start).count());
  return errors == 0 ? 0 : 1;
}

std::uint64_t stream_sequence(natsMsg* msg) {
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) return 0;
  const std::uint64_t seq = meta->Sequence.Stream;
  jsMsgMetaData_Destroy(meta);
  return seq;
}

// One page of the newest `limit` messages of `subject` (see the top of the file). `spacing` is the
// stream sequences per message of this subject, learnt from one page for the next. Returns what
// went wrong, or "" for a full page ending at the subject's newest message.
std::string page(jsCtx* js, const std::string& subject, std::size_t limit, double& spacing) {
  natsMsg* last = nullptr;
  const natsStatus got_last = js_GetLastMsg(&last, js, kStream, subject.c_str(), nullptr, nullptr);
  if (got_last != NATS_OK) return std::string("last message: ") + natsStatus_GetText(got_last);
  const std::uint64_t newest = natsMsg_GetSequence(last);
  natsMsg_Destroy(last);
  constexpr int kFetchAtMost = 2000;
  for (int attempt = 0; attempt < 40; ++attempt) {
    const auto span = static_cast<std::uint64_t>(std::ceil(static_cast<double>(limit) * spacing * 1.2)) + 1;
    const std::uint64_t from = newest >= span ? newest + 1 - span : 1;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = kStream;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = from;
    so.Config.AckPolicy = js_AckNone;
    so.Config.MemoryStorage = true;
    natsSubscription* sub = nullptr;
    const natsStatus created = js_PullSubscribe(&sub, js, subject.c_str(), nullptr, nullptr, &so, nullptr);
    if (created != NATS_OK) return std::string("consumer: ") + natsStatus_GetText(created);
    jsFetchRequest fr;
    jsFetchRequest_Init(&fr);
    fr.Batch = kFetchAtMost;
    fr.NoWait = true;
    fr.Expires = 5'000'000'000;
    natsMsgList list{nullptr, 0};
    const natsStatus fetched = natsSubscription_FetchRequest(&list, sub, &fr);
    const auto count = static_cast<std::size_t>(list.Count);
    const std::uint64_t reached = count > 0 ? stream_sequence(list.Msgs[count - 1]) : 0;
    natsMsgList_Destroy(&list);
    natsSubscription_Unsubscribe(sub);  // deletes the ephemeral consumer
    natsSubscription_Destroy(sub);
    if (fetched != NATS_OK && fetched != NATS_TIMEOUT && count == 0)
      return std::string("fetch: ") + natsStatus_GetText(fetched);
    if (count > 0) spacing = static_cast<double>(newest + 1 - from) / static_cast<double>(count);
    const bool too_long = count == static_cast<std::size_t>(kFetchAtMost) && reached < newest;
    const bool too_short = count < limit && from > 1;
    if (too_short && count == 0) spacing *= 4;
    if (too_long || too_short) continue;
    if (count < limit) return "the subject holds " + std::to_string(count) + " messages";
    if (reached != newest)
      return "the fetch ended at sequence " + std::to_string(reached) + " of " + std::to_string(newest) + " (" +
             natsStatus_GetText(fetched) + ")";
    return "";
  }
  return "no start sequence found in 40 tries";
}

int history(const peer::Options& o) {
  peer::Units units(o.count);
  Client client(o.port, on_fill_ack, nullptr);
  const std::string subject = subject_of(o.booking);
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> failures{0};
  const auto start = Clock::now();
  std::vector<std::thread> pagers;
  for (std::size_t t = 0; t < o.window; ++t) {
    pagers.emplace_back([&] {
      double spacing = 1;
      while (next++ < o.count) {
        const auto started = Clock::now();
        const std::string problem = page(client.js, subject, o.limit, spacing);
        if (!problem.empty() && failures++ == 0) std::fprintf(stderr, "page: %s\n", problem.c_str());
        units.finished(started, problem.empty());
      }
    });
  }
  for (auto& t : pagers) t.join();
  // Every page's consumer must be gone, or the pages would have left the server work behind.
  jsStreamInfo* si = nullptr;
  check(js_GetStreamInfo(&si, client.js, kStream, nullptr, nullptr), "stream info");
  const auto consumers_left = si->State.Consumers;
  jsStreamInfo_Destroy(si);
  const int status = units.report(o.window, o.count, start, ",\"consumers_left\":" + std::to_string(consumers_left));
  return consumers_left == 0 ? status : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const int status = peer::main_of(
      "peer_jetstream", "NATS JetStream (file storage) under the load shape of bench_rr (libnats).", argc, argv,
      [](const peer::Options& o) { return o.mode == "fill" ? fill(o) : o.mode == "history" ? history(o) : send(o); });
  nats_Close();
  return status;
}
