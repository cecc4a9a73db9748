// TLS on the broker's own listeners: a throw-away CA and server certificate made with the openssl
// CLI, mosquitto with the plugin on TCP, MQTT over TLS and WebSockets over TLS (its conf written by
// the generator, config/mosquitto_conf.hpp), and the contract's smoke exchange over mqtts:// and
// wss:// with a client that verifies the server against the CA.
#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/contract.hpp"

#ifndef NAVIETAKIE_PLUGIN_SO
#error "test_tls needs the plugin (NAVIETAKIE_PLUGIN_SO)"
#endif

namespace utf = boost::unit_test;
using namespace navietakie::test;

namespace {

// Certificates of one test, in its temp dir: a CA and a server certificate it signed for
// 127.0.0.1 and localhost (P-256 keys: quick to make).
struct ThrowAwayPki {
  std::string ca_cert;
  std::string server_cert;
  std::string server_key;
};

const char* const kOpensslConf = R"([req]
distinguished_name = dn
prompt = no
[dn]
CN = navietakie-test
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
)";

void openssl(const TempDir& dir, std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), find_executable("openssl"));
  Process process(arguments, ProcessOptions(dir.file("openssl.log")));
  const auto exit_code = process.wait_exit(30s);
  BOOST_REQUIRE_MESSAGE(exit_code && *exit_code == 0, "openssl failed:\n" << process.describe(20));
}

// A self-signed CA in dir/<name>-ca.{crt,key}.
std::string make_ca(const TempDir& dir, const std::string& name) {
  const std::string cert = dir.file(name + "-ca.crt");
  openssl(dir, {"req",
                "-x509",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                dir.file(name + "-ca.key"),
                "-out",
                cert,
                "-days",
                "2",
                "-config",
                dir.file("openssl.cnf"),
                "-extensions",
                "ca_ext",
                "-subj",
                "/CN=" + name + " test CA"});
  return cert;
}

ThrowAwayPki make_pki(const TempDir& dir) {
  write_file(dir.file("openssl.cnf"), kOpensslConf);
  ThrowAwayPki pki;
  pki.ca_cert = make_ca(dir, "navietakie");
  pki.server_key = dir.file("server.key");
  pki.server_cert = dir.file("server.crt");
  openssl(dir, {"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                pki.server_key, "-out", dir.file("server.csr"), "-config", dir.file("openssl.cnf"), "-subj",
                "/CN=127.0.0.1"});
  openssl(dir, {"x509", "-req", "-in", dir.file("server.csr"), "-CA", pki.ca_cert, "-CAkey",
                dir.file("navietakie-ca.key"), "-CAcreateserial", "-out", pki.server_cert, "-days", "2", "-extfile",
                dir.file("openssl.cnf"), "-extensions", "server_ext"});
  return pki;
}

// A port free now and different from those already taken.
int another_free_port(const std::vector<int>& taken) {
  for (int tries = 0; tries < 20; ++tries) {
    const int port = free_port();
    if (std::find(taken.begin(), taken.end(), port) == taken.end()) return port;
  }
  throw std::runtime_error("no free port distinct from the others");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(tls)

BOOST_AUTO_TEST_CASE(smoke_exchange_over_mqtts_and_wss, *utf::timeout(120)) {
  TempDir dir("nt-tls");
  const ThrowAwayPki pki = make_pki(dir);
  navietakie::MosquittoConf conf = test_broker_conf();
  conf.mqtt_port = free_port();
  conf.mqtts_port = another_free_port({conf.mqtt_port});
  conf.wss_port = another_free_port({conf.mqtt_port, conf.mqtts_port});
  conf.certfile = pki.server_cert;
  conf.keyfile = pki.server_key;
  conf.plugin = NAVIETAKIE_PLUGIN_SO;
  conf.plugin_options = {{"data_dir", dir.file("data")}, {"sync", "nosync"}};
  Broker broker(dir, conf);
  broker.start();
  BOOST_REQUIRE_MESSAGE(wait_for_tcp(conf.mqtts_port, 5s) && wait_for_tcp(conf.wss_port, 5s), broker.describe());

  const std::string other_ca = make_ca(dir, "stranger");
  for (const std::string& uri :
       {"mqtts://127.0.0.1:" + std::to_string(conf.mqtts_port), "wss://127.0.0.1:" + std::to_string(conf.wss_port)}) {
    BOOST_TEST_CONTEXT(uri) {
      ClientOptions trusting;
      trusting.trust_store = pki.ca_cert;
      TestClient driver(uri, trusting);
      TestClient passenger(uri, trusting);
      const std::string code = booking("tls");
      passenger.subscribe(events_filter(code));

      const std::string text = "over " + uri.substr(0, uri.find(':'));
      const auto sent = first_reply(driver, request_topic(code, "send_message"), text_message("driver", text).dump());
      BOOST_REQUIRE_MESSAGE(sent, "no reply over " << uri << ":\n" << broker.describe());
      NT_REQUIRE_OK(*sent);
      const std::int64_t seq = (*sent)["message"]["seq"].get<std::int64_t>();

      const auto event = passenger.wait_for(
          on_topic_json(event_topic(code, "message"), [&](const json& m) { return m.at("seq") == seq; }), 5s);
      BOOST_REQUIRE_MESSAGE(event, "no events/message over " << uri);
      BOOST_TEST(event->body().at("text") == text);

      const json page = get_message(passenger, code);
      NT_REQUIRE_OK(page);
      BOOST_TEST(page_seqs(page) == std::vector<std::int64_t>{seq}, boost::test_tools::per_element());
      BOOST_TEST(page["messages"][0]["text"] == text);

      // The client really verifies the server: trusting another CA, it cannot connect.
      ClientOptions distrusting;
      distrusting.trust_store = other_ca;
      distrusting.connect_timeout = 3s;
      BOOST_CHECK_THROW(TestClient(uri, distrusting), std::exception);
    }
  }
  broker.stop();
  BOOST_TEST(broker.exit_code().value_or(-1) == 0);
}

BOOST_AUTO_TEST_SUITE_END()
