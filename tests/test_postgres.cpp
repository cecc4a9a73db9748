// The PostgreSQL test harness (tests/support/postgres.*) on its own: a server comes up on a free
// port, answers SQL, survives a fast shutdown and a SIGKILL with its data.
#include <boost/test/unit_test.hpp>

#include "support/postgres.hpp"

using namespace navietakie::test;

BOOST_AUTO_TEST_SUITE(postgres_harness)

BOOST_AUTO_TEST_CASE(a_server_starts_answers_and_keeps_its_data_through_stop_and_kill) {
  PostgresServer server(PostgresServerOptions{"harness", false});
  BOOST_TEST(server.running());
  BOOST_TEST(server.url().find("127.0.0.1:" + std::to_string(server.port()) + "/harness") != std::string::npos);
  server.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (7)");
  BOOST_TEST(server.psql("SELECT v FROM t") == "7\n");

  server.stop();
  BOOST_TEST(!server.running());
  server.start();
  BOOST_TEST(server.psql("SELECT v FROM t") == "7\n");

  server.kill9();
  BOOST_TEST(!server.running());
  server.start();
  BOOST_TEST(server.psql("SELECT v FROM t") == "7\n");
}

BOOST_AUTO_TEST_SUITE_END()
