// Paho C offers no TCP_NODELAY option. With Nagle's algorithm on, a small publish that follows
// another small write waits for the peer's delayed ACK (~40 ms on Linux): request/response
// latency jumps from under a millisecond to 40-90 ms.
#pragma once

namespace navietakie {

// Sets TCP_NODELAY on every TCP socket this process has open (in a Paho process: its broker
// connections). Returns how many it set. Cheap and non-blocking; call after each (re)connect.
int set_tcp_nodelay_on_open_sockets();

}  // namespace navietakie
