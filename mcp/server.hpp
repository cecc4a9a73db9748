// The Model Context Protocol server of navietakie-mcp, apart from its transport: JSON-RPC 2.0
// messages in (one per line, as MCP's stdio transport frames them), replies out. Its tools,
// send_message, get_message, make_call and presence, are the protocol's requests, answered by a
// running navietakie through `Navietakie` (mcp/mqtt_link.hpp over MQTT v5).
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/topics.hpp"

namespace navietakie::mcp {

using Json = nlohmann::ordered_json;

// navietakie could not be asked (not reachable, no reply in time): the tool call fails with this
// message, the server goes on.
class LinkError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What the tools need of a running navietakie.
class Navietakie {
 public:
  virtual ~Navietakie() = default;
  // Sends `body` as an `action` request for `booking` and returns the reply object as navietakie
  // wrote it ({"ok":true,...} or {"ok":false,"error":{...}}). Throws LinkError.
  virtual Json request(const std::string& booking, Action action, const Json& body) = 0;
  // The booking's retained events/presence object; nullopt when none is retained. Throws LinkError.
  virtual std::optional<Json> retained_presence(const std::string& booking) = 0;
};

// The MCP protocol versions this server speaks, newest first.
inline constexpr const char* kProtocolVersions[] = {"2025-06-18", "2025-03-26", "2024-11-05"};

class Server {
 public:
  explicit Server(Navietakie& navietakie) : navietakie_(navietakie) {}

  // One JSON-RPC message in; the reply to write (one line, no newline in it), or nullopt for a
  // notification or a reply from the client.
  std::optional<std::string> handle(std::string_view line);

 private:
  Json dispatch(const std::string& method, const Json& params);
  Json initialize(const Json& params);
  Json call_tool(const Json& params);

  Navietakie& navietakie_;
};

// The tools/list result: each tool's name, description and JSON input schema.
Json tool_list();

}  // namespace navietakie::mcp
