// max_packet_size at work (issue 17): mosquitto refuses a packet whose header declares more than
// the generated limit before reading (or reserving room for) it, whoever sends it, and keeps
// serving everyone else. Raw sockets, because a real client library would not send such a header.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "support/contract.hpp"

namespace utf = boost::unit_test;
using namespace navietakie::test;

namespace {

class RawConnection {
 public:
  explicit RawConnection(int port) : fd_(connect_loopback(port)) {}
  ~RawConnection() { ::close(fd_); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  void send(const std::vector<unsigned char>& bytes) {
    BOOST_REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
  }

  // Up to `size` bytes, waiting at most `timeout`; empty when nothing came.
  std::vector<unsigned char> receive(std::size_t size, Millis timeout) {
    std::vector<unsigned char> bytes(size);
    pollfd ready{fd_, POLLIN, 0};
    if (::poll(&ready, 1, static_cast<int>(timeout.count())) <= 0) return {};
    const ssize_t got = ::recv(fd_, bytes.data(), bytes.size(), 0);
    bytes.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
    return bytes;
  }

  // True once the broker has closed the connection (EOF or reset), false after `timeout`.
  bool closed_by_peer(Millis timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd ready{fd_, POLLIN, 0};
      if (::poll(&ready, 1, 100) <= 0) continue;
      unsigned char byte = 0;
      const ssize_t got = ::recv(fd_, &byte, 1, 0);
      if (got == 0 || (got < 0 && errno == ECONNRESET)) return true;
    }
    return false;
  }

 private:
  int fd_;
};

// A packet's fixed header declaring `remaining_length` bytes to follow (none are sent).
std::vector<unsigned char> header(unsigned char type_and_flags, std::size_t remaining_length) {
  std::vector<unsigned char> bytes{type_and_flags};
  do {
    auto digit = static_cast<unsigned char>(remaining_length % 128);
    remaining_length /= 128;
    if (remaining_length > 0) digit = static_cast<unsigned char>(digit | 0x80);
    bytes.push_back(digit);
  } while (remaining_length > 0);
  return bytes;
}

// MQTT 3.1.1 CONNECT, clean session, no credentials.
std::vector<unsigned char> connect_packet(const std::string& client_id) {
  std::vector<unsigned char> body{0, 4,    'M', 'Q', 'T', 'T',
                                  4, 0x02, 0,   60,  0,   static_cast<unsigned char>(client_id.size())};
  body.insert(body.end(), client_id.begin(), client_id.end());
  std::vector<unsigned char> packet = header(0x10, body.size());
  packet.insert(packet.end(), body.begin(), body.end());
  return packet;
}

constexpr std::size_t k256MB = 268435455;

}  // namespace

BOOST_AUTO_TEST_SUITE(packet_limit)

// The case: an unauthenticated CONNECT declaring 256 MB, against the generated default.
BOOST_AUTO_TEST_CASE(a_connect_declaring_256_mb_is_refused_at_its_header, *utf::timeout(60)) {
  TempDir dir("nt-packet-limit");
  Broker broker(dir, test_broker_conf());
  broker.start();
  BOOST_TEST(broker.conf().max_packet_size == 0u);  // derived: 13 MiB
  RawConnection attacker(broker.port());
  attacker.send(header(0x10, k256MB));
  BOOST_TEST(attacker.closed_by_peer(5s));
  BOOST_TEST(broker.wait_log_contains("disconnected due to oversize packet", 2s));
  BOOST_TEST(broker.running());
  ClientOptions options;
  options.client_id = "nt-after-oversize";
  TestClient client(broker.uri(), options);
  BOOST_TEST(client.connected());
}

// A declared size just under the limit is waited for: the limit, not any big number, decides.
BOOST_AUTO_TEST_CASE(a_header_under_the_limit_is_read_on, *utf::timeout(60)) {
  TempDir dir("nt-packet-limit");
  navietakie::MosquittoConf conf = test_broker_conf();
  conf.max_packet_size = 4096;
  Broker broker(dir, conf);
  broker.start();

  RawConnection client(broker.port());
  client.send(connect_packet("nt-raw-limit"));
  const auto connack = client.receive(4, 5s);
  BOOST_REQUIRE(connack.size() == 4u);
  BOOST_TEST(connack[0] == 0x20);
  BOOST_TEST(connack[3] == 0);  // accepted

  // A PUBLISH of 4000 bytes (header included: under 4096) is waited for; one over 4096 is refused.
  RawConnection patient(broker.port());
  patient.send(connect_packet("nt-raw-patient"));
  BOOST_REQUIRE(patient.receive(4, 5s).size() == 4u);
  patient.send(header(0x30, 4000));
  BOOST_TEST(!patient.closed_by_peer(500ms));

  client.send(header(0x30, 5000));
  BOOST_TEST(client.closed_by_peer(5s));
  BOOST_TEST(broker.wait_log_contains("nt-raw-limit disconnected due to oversize packet", 2s));
  BOOST_TEST(broker.running());
}

BOOST_AUTO_TEST_SUITE_END()
