// Topic and ACL matching: the topic names and filters clients publish and subscribe with, the
// service grants of the configuration, and the access decision over them. Input: one byte choosing
// the identity and access, then newline-separated fields: filter, topic, client id, booking,
// grants. Nothing here may throw except parse_grants' documented std::invalid_argument, and the
// answers must agree with each other (see the checks).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "auth/acl.hpp"
#include "core/topics.hpp"

using namespace navietakie;

namespace {

constexpr std::string_view kPrefix = "navietakie/v1";

// The input's fields; missing ones are empty.
std::vector<std::string_view> split_fields(std::string_view text, std::size_t count) {
  std::vector<std::string_view> fields;
  while (fields.size() + 1 < count) {
    const auto newline = text.find('\n');
    if (newline == std::string_view::npos) break;
    fields.push_back(text.substr(0, newline));
    text.remove_prefix(newline + 1);
  }
  fields.push_back(text);
  fields.resize(count);
  return fields;
}

void check_matching(std::string_view filter, std::string_view topic) {
  if (topic_matches(filter, topic) && !valid_topic_filter(filter)) std::abort();
  if (valid_topic_filter(filter) && !filter_covers(filter, filter)) std::abort();
  // Covering means: every topic the inner filter matches, the outer one matches too. The topic
  // field doubles as an inner filter, and the booking events filter as a second outer one.
  const std::string events = std::string(kPrefix) + "/bookings/+/events/#";
  for (std::string_view inner : {topic, std::string_view(events)}) {
    if (filter_covers(filter, inner)) {
      const std::string sample = std::string(kPrefix) + "/bookings/BK1/events/message";
      if (topic_matches(inner, sample) && !topic_matches(filter, sample)) std::abort();
    }
  }
  (void)strip_shared(filter);
}

void check_request_topics(std::string_view topic) {
  const Topics topics{std::string(kPrefix)};
  const auto request = topics.parse_request(topic);
  if (request && topics.request(request->booking, request->action) != topic) std::abort();
  if (request && topics.valid_reply_topic(topic)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t selector = data[0];
  const auto fields = split_fields(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1), 5);
  const std::string_view filter = fields[0], topic = fields[1], client_id = fields[2];

  check_matching(filter, topic);
  check_request_topics(topic);

  AclPolicy policy;
  try {
    policy.service_grants = parse_grants(fields[4], kPrefix);
  } catch (const std::invalid_argument&) {
  }
  for (const Grant& grant : policy.service_grants) {
    if (!valid_topic_filter(grant.filter)) std::abort();
  }
  Identity identity;
  identity.principal = static_cast<Principal>(selector % 3);
  identity.subject = std::string(client_id.empty() ? std::string_view("svc") : client_id);
  identity.booking = std::string(fields[3]);
  const auto access = static_cast<Access>((selector / 3) % 4);
  const bool allowed = acl_allows(policy, identity, client_id, access, access == Access::subscribe ? filter : topic);
  if (allowed && access != Access::unsubscribe && !valid_client_id_for_auth(client_id)) std::abort();
  return 0;
}
