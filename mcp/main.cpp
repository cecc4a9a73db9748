// navietakie-mcp: a Model Context Protocol server over stdio for a running navietakie. An MCP
// client (an assistant, a support tool) starts it and speaks JSON-RPC 2.0 on its stdin/stdout, one
// message per line; the tools' requests go to navietakie over MQTT v5 with a service token. Logs
// go to stderr (stdout carries the protocol only).
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
// cxxopts' own argument matcher instead of std::regex (see config/config.cpp).
#define CXXOPTS_NO_REGEX 1
#include <cxxopts.hpp>

#include "mcp/mqtt_link.hpp"
#include "mcp/server.hpp"

namespace {

constexpr const char* kTokenEnv = "NAVIETAKIE_MCP_TOKEN";

std::string random_suffix() {
  std::random_device device;
  std::ostringstream out;
  out << std::hex << device() << device();
  return out.str();
}

std::string read_token_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read --token-file " + path);
  std::ostringstream content;
  content << in.rdbuf();
  std::string token = content.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.empty()) throw std::runtime_error("--token-file " + path + " is empty");
  return token;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace navietakie::mcp;
  cxxopts::Options options(
      "navietakie-mcp",
      "A Model Context Protocol server (stdio) whose tools send_message, get_message, make_call and\n"
      "presence ask a running navietakie over MQTT v5. Register it with an MCP client as a command;\n"
      "see README, \"MCP server\".\n");
  auto add = options.add_options();
  add("broker-url", "navietakie's MQTT broker", cxxopts::value<std::string>()->default_value("tcp://127.0.0.1:1883"),
      "URL");
  add("prefix", "navietakie's topic_prefix", cxxopts::value<std::string>()->default_value("navietakie/v1"), "PREFIX");
  add("token-file", "a service token (navietakie-ctl token --role service) sent as the MQTT password",
      cxxopts::value<std::string>(), "FILE");
  add("token", std::string("the token itself (visible to ps: prefer --token-file or $") + kTokenEnv + ")",
      cxxopts::value<std::string>(), "JWT");
  add("client-id", "MQTT client id (default navietakie-mcp-<random>)", cxxopts::value<std::string>(), "ID");
  add("timeout-ms", "bound on connecting and on each reply", cxxopts::value<int>()->default_value("5000"), "MS");
  add("h,help", "print this help and exit");

  LinkOptions link;
  try {
    const auto parsed = options.parse(argc, argv);
    if (parsed.count("help") > 0) {
      std::cout << options.help();
      return 0;
    }
    if (!parsed.unmatched().empty()) throw std::runtime_error("unexpected argument '" + parsed.unmatched().front() + "'");
    link.broker_url = parsed["broker-url"].as<std::string>();
    link.topic_prefix = parsed["prefix"].as<std::string>();
    link.client_id =
        parsed.count("client-id") > 0 ? parsed["client-id"].as<std::string>() : "navietakie-mcp-" + random_suffix();
    const int timeout_ms = parsed["timeout-ms"].as<int>();
    if (timeout_ms < 1 || timeout_ms > 600000) throw std::runtime_error("--timeout-ms: expected 1 to 600000");
    link.timeout = std::chrono::milliseconds(timeout_ms);
    if (parsed.count("token") > 0 && parsed.count("token-file") > 0) {
      throw std::runtime_error("--token and --token-file exclude each other");
    }
    if (parsed.count("token") > 0) {
      link.token = parsed["token"].as<std::string>();
    } else if (parsed.count("token-file") > 0) {
      link.token = read_token_file(parsed["token-file"].as<std::string>());
    } else if (const char* from_env = std::getenv(kTokenEnv)) {
      link.token = from_env;
    }
  } catch (const std::exception& error) {
    std::cerr << "navietakie-mcp: " << error.what() << "\n";
    return 2;
  }

  MqttLink navietakie(link);
  Server server(navietakie);
  std::cerr << "navietakie-mcp: serving MCP on stdio for " << link.broker_url << " (prefix " << link.topic_prefix
            << ", client id " << link.client_id << ")\n";
  std::string line;
  while (std::getline(std::cin, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (const auto reply = server.handle(line)) {
      std::cout << *reply << '\n' << std::flush;
      if (!std::cout) return 1;  // the client is gone
    }
  }
  return 0;  // stdin closed: the client ended the session
}
