// Generated from core/wire.hpp by navietakie-wire: do not edit. After changing the tables, run
//   build/core/navietakie-wire > web/public/wire.js
// (tests/test_wire.cpp fails while this file differs from the tables).
// The wire rules of docs/protocol.md for the browser: one global, NavietakieWire, deeply frozen.
// A classic script, not an ES module: Mosquitto's http_dir sends no Content-Type.
(function () {
  'use strict';
  const freeze = (value) => {
    if (value && typeof value === 'object') Object.values(value).forEach(freeze);
    return Object.freeze(value);
  };
  window.NavietakieWire = freeze({
    "default_prefix": "navietakie/v1",
    "topic_levels": {
      "bookings": "bookings",
      "events": "events",
      "errors": "errors",
      "replies": "replies",
      "metrics": "metrics",
      "bridge": "bridge",
      "wake": "wake"
    },
    "actions": [
      "send_message",
      "get_message",
      "make_call",
      "presence",
      "mark_read",
      "typing",
      "close",
      "signal"
    ],
    "events": [
      {
        "name": "message",
        "retained": false
      },
      {
        "name": "call",
        "retained": false
      },
      {
        "name": "presence",
        "retained": true
      },
      {
        "name": "read",
        "retained": true
      },
      {
        "name": "typing",
        "retained": false
      },
      {
        "name": "booking",
        "retained": true
      },
      {
        "name": "signal",
        "retained": false
      }
    ],
    "error_codes": [
      "invalid_json",
      "invalid_request",
      "payload_too_large",
      "invalid_booking_code",
      "forbidden",
      "not_found",
      "invalid_state",
      "busy",
      "booking_closed",
      "rate_limited",
      "unavailable",
      "internal"
    ],
    "error_precedence": [
      [
        "payload_too_large"
      ],
      [
        "invalid_json"
      ],
      [
        "invalid_booking_code"
      ],
      [
        "invalid_request"
      ],
      [
        "forbidden"
      ],
      [
        "booking_closed"
      ],
      [
        "not_found"
      ],
      [
        "invalid_state",
        "busy"
      ]
    ],
    "booking_code": {
      "first": "A-Za-z0-9",
      "rest": "A-Za-z0-9_-",
      "min_length": 1,
      "max_length": 64,
      "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
    },
    "client_key": {
      "first": "!-~",
      "rest": "!-~",
      "min_length": 1,
      "max_length": 128,
      "pattern": "^[!-~][!-~]{0,127}$"
    },
    "limits": {
      "sender_id_max_bytes": 128,
      "data_max_depth": 32,
      "history_limit_min": 1,
      "history_limit_max": 200,
      "history_limit_default": 50,
      "max_text_bytes_default": 4096,
      "max_payload_bytes_default": 65536,
      "call_ring_timeout_s_default": 30,
      "signal_sdp_max_bytes": 16384,
      "signal_candidate_max_bytes": 1024
    },
    "roles": [
      "driver",
      "passenger",
      "system"
    ],
    "parties": [
      "driver",
      "passenger"
    ],
    "message_types": [
      "text",
      "call",
      "system"
    ],
    "call": {
      "states": [
        "ringing",
        "connected",
        "ended"
      ],
      "active_states": [
        "ringing",
        "connected"
      ],
      "end_reasons": [
        "completed",
        "declined",
        "cancelled",
        "missed",
        "booking_closed"
      ],
      "actions": [
        "start",
        "accept",
        "decline",
        "cancel",
        "end",
        "get"
      ],
      "parties": [
        "caller",
        "callee",
        "either",
        "system"
      ],
      "transitions": [
        {
          "from": null,
          "action": "start",
          "by": "caller",
          "to": "ringing",
          "end_reason": null
        },
        {
          "from": "ringing",
          "action": "accept",
          "by": "callee",
          "to": "connected",
          "end_reason": null
        },
        {
          "from": "ringing",
          "action": "decline",
          "by": "callee",
          "to": "ended",
          "end_reason": "declined"
        },
        {
          "from": "ringing",
          "action": "cancel",
          "by": "caller",
          "to": "ended",
          "end_reason": "cancelled"
        },
        {
          "from": "ringing",
          "action": null,
          "by": "system",
          "to": "ended",
          "end_reason": "missed"
        },
        {
          "from": "connected",
          "action": "end",
          "by": "either",
          "to": "ended",
          "end_reason": "completed"
        }
      ]
    },
    "signal_kinds": [
      "offer",
      "answer",
      "candidate",
      "bye"
    ]
  });
})();
