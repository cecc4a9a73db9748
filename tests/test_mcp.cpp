// navietakie-mcp as an MCP client runs it: a child process spoken to in JSON-RPC 2.0 over its
// stdin and stdout (one message per line), in front of a real broker with the plugin and
// authentication on, the server holding a service token.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/contract.hpp"

extern char** environ;

using namespace navietakie::test;

namespace {

// navietakie-mcp with pipes on stdin and stdout (stderr to a file), stopped when this goes away.
class McpProcess {
 public:
  McpProcess(const std::vector<std::string>& argv, const std::string& stderr_path) : stderr_path_(stderr_path) {
    int to_child[2];
    int from_child[2];
    if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to_child[0], 0);
    posix_spawn_file_actions_adddup2(&actions, from_child[1], 1);
    posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    const int rc = posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(to_child[0]);
    ::close(from_child[1]);
    in_ = to_child[1];
    out_ = from_child[0];
    if (rc != 0) throw std::runtime_error("posix_spawn " + argv[0] + " failed");
  }
  ~McpProcess() {
    if (in_ >= 0) ::close(in_);
    ::close(out_);
    // stdin closed: it exits by itself; SIGKILL after a bound if not.
    for (int i = 0; i < 50 && !exited(); ++i) std::this_thread::sleep_for(100ms);
    if (!exited()) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  McpProcess(const McpProcess&) = delete;
  McpProcess& operator=(const McpProcess&) = delete;

  void send_line(const std::string& line) {
    const std::string framed = line + "\n";
    std::size_t written = 0;
    while (written < framed.size()) {
      const ssize_t n = ::write(in_, framed.data() + written, framed.size() - written);
      if (n <= 0) throw std::runtime_error("writing to navietakie-mcp failed");
      written += static_cast<std::size_t>(n);
    }
  }
  void send(const json& message) { send_line(message.dump()); }

  // The next line it writes, or nullopt after `timeout`.
  std::optional<std::string> read_line(Millis timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const std::size_t newline = buffer_.find('\n');
      if (newline != std::string::npos) {
        std::string line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd fd{out_, POLLIN, 0};
      if (::poll(&fd, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[4096];
      const ssize_t n = ::read(out_, chunk, sizeof chunk);
      if (n <= 0) return std::nullopt;  // it closed stdout
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  // Sends a request and returns its reply (which must carry the same id).
  json call(int id, const std::string& method, const json& params = json::object()) {
    send(json{{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}});
    return reply(id);
  }
  json reply(const json& id) {
    const auto line = read_line(20s);
    if (!line) throw std::runtime_error("no reply to id " + id.dump() + "; stderr:\n" + file_tail(stderr_path_));
    const json parsed = json::parse(*line);
    if (parsed.value("id", json()) != id) throw std::runtime_error("reply to another id: " + *line);
    return parsed;
  }

 private:
  bool exited() { return ::waitpid(pid_, nullptr, WNOHANG) == pid_; }

  std::string stderr_path_;
  pid_t pid_ = -1;
  int in_ = -1;
  int out_ = -1;
  std::string buffer_;
};

json tool_call(McpProcess& mcp, int id, const std::string& name, const json& arguments) {
  const json reply = mcp.call(id, "tools/call", json{{"name", name}, {"arguments", arguments}});
  if (!reply.contains("result")) throw std::runtime_error("tools/call failed: " + reply.dump());
  return reply["result"];
}

}  // namespace

BOOST_AUTO_TEST_SUITE(mcp)

BOOST_AUTO_TEST_CASE(mcp_server_reads_and_posts_into_a_booking, *boost::unit_test::timeout(120)) {
  SystemOptions options = system_options(Host::plugin);
  options.secure = true;
  TestContext ctx(shared_system("mcp", options));
  System& system = ctx.system();
  const std::string token_path = system.dir().file("mcp.token");
  write_file(token_path, system.token(navietakie::Identity{navietakie::Principal::service, "support-mcp", ""}) + "\n");
  McpProcess mcp({NAVIETAKIE_MCP_BIN, "--broker-url", system.broker_uri(), "--token-file", token_path,
                  "--client-id", "support-mcp-1", "--timeout-ms", "10000"},
                 system.dir().file("mcp.stderr"));
  const std::string code = booking("mcp");

  const json init = mcp.call(1, "initialize",
                             json{{"protocolVersion", "2025-06-18"},
                                  {"capabilities", json::object()},
                                  {"clientInfo", {{"name", "test"}, {"version", "1"}}}});
  BOOST_TEST(init["result"]["protocolVersion"] == "2025-06-18");
  BOOST_TEST(init["result"]["serverInfo"]["name"] == "navietakie-mcp");
  BOOST_TEST(init["result"]["capabilities"].contains("tools"));
  // A notification gets no reply: the next line is the ping's.
  mcp.send(json{{"jsonrpc", "2.0"}, {"method", "notifications/initialized"}});
  const json pong = mcp.call(2, "ping");
  BOOST_TEST(pong["result"] == json::object());

  const json listed = mcp.call(3, "tools/list");
  std::set<std::string> names;
  for (const auto& tool : listed["result"]["tools"]) {
    names.insert(tool["name"].get<std::string>());
    BOOST_TEST(tool["inputSchema"]["type"] == "object");
    BOOST_TEST(tool["inputSchema"]["required"].front() == "booking_code");
  }
  BOOST_TEST((names == std::set<std::string>{"send_message", "get_message", "make_call", "presence"}));

  // send_message then get_message shows it; a participant following the booking sees it too.
  auto follower = ctx.client();
  follower->subscribe(event_topic(code, "message"));
  const json sent = tool_call(mcp, 4, "send_message",
                              json{{"booking_code", code}, {"sender", "system"}, {"text", "Your driver is 2 min away"}});
  BOOST_TEST(sent["isError"] == false, sent.dump());
  BOOST_TEST(sent["structuredContent"]["ok"] == true);
  BOOST_TEST(sent["structuredContent"]["message"]["seq"] == 1);
  BOOST_TEST(json::parse(sent["content"][0]["text"].get<std::string>()) == sent["structuredContent"]);
  BOOST_TEST(follower->wait_for(on_topic(event_topic(code, "message")), 10s).has_value());
  const json history = tool_call(mcp, 5, "get_message", json{{"booking_code", code}, {"limit", 10}});
  BOOST_TEST(history["isError"] == false, history.dump());
  BOOST_REQUIRE(history["structuredContent"]["messages"].size() == 1u);
  BOOST_TEST(history["structuredContent"]["messages"][0]["text"] == "Your driver is 2 min away");
  BOOST_TEST(history["structuredContent"]["messages"][0]["sender"] == "system");

  const json call = tool_call(mcp, 6, "make_call", json{{"booking_code", code}, {"action", "start"}, {"by", "driver"}});
  BOOST_TEST(call["structuredContent"]["call"]["state"] == "ringing", call.dump());
  const json presence = tool_call(mcp, 7, "presence", json{{"booking_code", code}});
  BOOST_TEST(presence["isError"] == false, presence.dump());
  BOOST_TEST(presence["structuredContent"]["presence"]["driver"]["online"] == false);

  // Errors: navietakie's refusal is the tool's error (the model reads it); a bad booking code
  // never leaves the server; protocol mistakes are JSON-RPC errors.
  const json refused = tool_call(mcp, 8, "send_message", json{{"booking_code", code}, {"sender", "driver"}});
  BOOST_TEST(refused["isError"] == true);
  BOOST_TEST(refused["structuredContent"]["error"]["code"] == "invalid_request", refused.dump());
  const json bad_code = tool_call(mcp, 9, "get_message", json{{"booking_code", "no/such"}});
  BOOST_TEST(bad_code["isError"] == true);
  BOOST_TEST(mcp.call(10, "tools/call", json{{"name", "drop_tables"}, {"arguments", json::object()}})["error"]["code"] ==
             -32602);
  BOOST_TEST(mcp.call(11, "resources/list")["error"]["code"] == -32601);
  mcp.send_line("{not json");
  BOOST_TEST(mcp.reply(nullptr)["error"]["code"] == -32700);
  BOOST_TEST(mcp.call(12, "ping")["result"] == json::object());  // still serving

  // A client that asks for a version the server does not speak gets the newest it does.
  const json other = mcp.call(13, "initialize", json{{"protocolVersion", "1999-01-01"}});
  BOOST_TEST(other["result"]["protocolVersion"] == "2025-06-18");
}

// Without a reachable navietakie the server still answers: the tool call fails with the reason.
BOOST_AUTO_TEST_CASE(mcp_tool_call_without_a_broker_is_a_tool_error, *boost::unit_test::timeout(60)) {
  TempDir dir("navietakie-mcp");
  McpProcess mcp({NAVIETAKIE_MCP_BIN, "--broker-url", "tcp://127.0.0.1:" + std::to_string(free_port()),
                  "--timeout-ms", "2000"},
                 dir.file("mcp.stderr"));
  const json result = mcp.call(1, "tools/call",
                               json{{"name", "get_message"}, {"arguments", json{{"booking_code", "BK1"}}}})["result"];
  BOOST_TEST(result["isError"] == true);
  BOOST_TEST(result["content"][0]["text"].get<std::string>().find("cannot connect") != std::string::npos,
             result.dump());
}

BOOST_AUTO_TEST_SUITE_END()
