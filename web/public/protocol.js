/*
 * navietakie wire protocol for the browser: one MQTT v5 client that follows
 * one booking and sends it requests.
 *
 * It knows topics, request/response and the connection lifecycle; it knows
 * nothing of the page. The page (app.js) gets a BookingConnection and a few
 * callbacks. Defines one global, NavietakieProtocol; needs the globals `mqtt`
 * (vendor/mqtt.min.js) and `NavietakieWire` (wire.js: the wire rules,
 * generated from the server's table, core/wire.hpp).
 *
 * Contract: docs/protocol.md.
 */
(function () {
  'use strict';

  const W = window.NavietakieWire;

  /** The names of one wire table as constants: `names(['a']).a === 'a'`.
   *  A name the table does not have throws, so a rule changed on the server
   *  breaks the page loudly (and its tests) instead of silently. */
  function names(list, what) {
    const table = Object.fromEntries(list.map((name) => [name, name]));
    return new Proxy(Object.freeze(table), {
      get(target, key) {
        if (typeof key !== 'string' || Object.hasOwn(target, key)) return target[key];
        throw new Error(`unknown ${what} (not in the wire table): ${key}`);
      },
    });
  }

  const Action = names(W.actions, 'request action');
  const Event = names(W.events.map((e) => e.name), 'event');
  const ErrorCode = names(W.error_codes, 'error code');
  const CallState = names(W.call.states, 'call state');
  const CallAction = names(W.call.actions, 'call action');
  const EndReason = names(W.call.end_reasons, 'call end reason');
  const MessageType = names(W.message_types, 'message type');
  const Role = names(W.roles, 'role');

  const PREFIX = W.default_prefix;
  const LEVEL = W.topic_levels;
  const REQUEST_TIMEOUT_MS = 10000;
  const RECONNECT_PERIOD_MS = 1000;
  const CONNECT_TIMEOUT_MS = 10000;
  const BOOKING_CODE = new RegExp(W.booking_code.pattern);
  const ROLES = W.parties;

  // CONNACK refusals: MQTT v5 "bad user name or password" / "not authorized",
  // and their MQTT 3.1.1 return codes.
  const REFUSAL_CODES = new Set([134, 135, 4, 5]);

  /** One error type: a protocol error code and a message in words.
   *  Besides the server's codes the client raises `timeout` (no reply in
   *  time), `disconnected` (no connection to send on, or lost before the
   *  reply) and `not_authorized` (the broker refused the credentials). */
  class ProtocolError extends Error {
    constructor(code, message, details) {
      super(message || code);
      this.name = 'ProtocolError';
      this.code = code;
      this.details = details || null;
    }
  }

  /** A protocol error code for an MQTT v5 failure reason code in a PUBACK or SUBACK. */
  function ackErrorCode(reasonCode) {
    switch (reasonCode) {
      case 0x87: return ErrorCode.forbidden;          // not authorized
      case 0x8f: case 0x90: return ErrorCode.invalid_request; // topic filter / name invalid
      case 0x95: return ErrorCode.payload_too_large;  // packet too large
      case 0x96: case 0x97: return ErrorCode.rate_limited; // message rate too high, quota exceeded
      default: return ErrorCode.unavailable;
    }
  }

  function reasonText(err) {
    return String((err && err.message) || 'refused').replace(/^(Subscribe|Publish) error:\s*/i, '');
  }

  function randomHex(bytes) {
    const buf = new Uint8Array(bytes);
    crypto.getRandomValues(buf);
    let out = '';
    for (const b of buf) out += b.toString(16).padStart(2, '0');
    return out;
  }

  const utf8 = new TextDecoder('utf-8');

  function bytesToString(value) {
    if (value == null) return '';
    if (typeof value === 'string') return value;
    try {
      return utf8.decode(value);
    } catch (e) {
      return '';
    }
  }

  /** Parses a payload; undefined when it is not JSON. */
  function parseJson(payload) {
    try {
      return JSON.parse(bytesToString(payload));
    } catch (e) {
      return undefined;
    }
  }

  /** The claims of a JWT, without verifying it (the broker does that);
   *  null when it does not decode. */
  function tokenClaims(token) {
    try {
      const part = String(token).split('.')[1];
      if (!part) return null;
      const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
      const binary = atob(b64);
      const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
      const claims = JSON.parse(utf8.decode(bytes));
      return claims && typeof claims === 'object' ? claims : null;
    } catch (e) {
      return null;
    }
  }

  function isBookingCode(code) {
    return typeof code === 'string' && BOOKING_CODE.test(code);
  }

  function isRole(role) {
    return ROLES.includes(role);
  }

  /** Whether a call is ringing or connected. */
  function isActiveCall(call) {
    return !!call && W.call.active_states.includes(call.state);
  }

  /** The call actions `role` may take on `call` now, from the state
   *  machine's table: who may (caller, callee, either) and from which state. */
  function callActionsFor(call, role) {
    if (!call) return [];
    const may = { caller: call.from === role, callee: call.to === role, either: call.from === role || call.to === role };
    return W.call.transitions
      .filter((t) => t.action !== null && t.from === call.state && may[t.by] === true)
      .map((t) => t.action);
  }

  function bookingTopics(booking, clientId) {
    const base = `${PREFIX}/${LEVEL.bookings}/${booking}`;
    const replies = `${PREFIX}/${LEVEL.replies}/${clientId}`;
    return {
      base,
      request: (action) => `${base}/${Action[action]}`,
      events: `${base}/${LEVEL.events}/#`,
      eventPrefix: `${base}/${LEVEL.events}/`,
      errors: `${base}/${LEVEL.errors}`,
      replies: `${replies}/#`,
      replyPrefix: `${replies}/`,
      replyTo: `${replies}/r`,
    };
  }

  /**
   * Connects to the broker that served the page and follows one booking.
   *
   * handlers (all optional, all called inside try/catch):
   *   onState(state)          'connecting' | 'connected' | 'disconnected';
   *                           'connected' means subscribed and ready for requests
   *   onReady(first)          after each (re)connect once subscribed; first is
   *                           true for the first one of this page load
   *   onEvent(kind, payload)  a parsed events/{kind} publish (message, call, presence)
   *   onServerError(error)    a ProtocolError from the booking's errors topic
   *   onRefused(error)        the broker refused the credentials (not_authorized)
   *                           or the subscriptions (forbidden); no more reconnects
   */
  function connectBooking(options, handlers) {
    const { booking, role, token } = options;
    const clientId = `web-${role}-${randomHex(6)}`;
    const topics = bookingTopics(booking, clientId);
    const pending = new Map(); // correlation id -> { resolve, reject, timer }
    let state = 'connecting';
    let ready = false;
    let readyCount = 0;
    let refused = false;

    function call(name, ...args) {
      const fn = handlers[name];
      if (typeof fn !== 'function') return;
      try {
        fn(...args);
      } catch (e) {
        // A page bug must not break the MQTT client's callbacks.
        setTimeout(() => {
          throw e;
        });
      }
    }

    function setState(next) {
      if (next !== 'connected') ready = false;
      if (state === next) return;
      state = next;
      call('onState', next);
    }

    function failInFlight(code, message) {
      for (const [id, entry] of pending) {
        clearTimeout(entry.timer);
        entry.reject(new ProtocolError(code, message));
        pending.delete(id);
      }
    }

    const mqttOptions = {
      protocolVersion: 5,
      clientId,
      clean: true,
      reconnectPeriod: RECONNECT_PERIOD_MS,
      connectTimeout: CONNECT_TIMEOUT_MS,
      // Subscriptions are made on every connect below, before anything is
      // requested, so that no reply can arrive before its subscription.
      resubscribe: false,
      // The broker records this participant as offline if the connection drops.
      will: {
        topic: topics.request(Action.presence),
        payload: JSON.stringify({ role, online: false }),
        qos: 1,
        retain: false,
      },
    };
    if (token) {
      const claims = tokenClaims(token);
      mqttOptions.username = claims && typeof claims.sub === 'string' && claims.sub ? claims.sub : clientId;
      mqttOptions.password = token;
    }

    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const client = mqtt.connect(`${scheme}://${location.host}`, mqttOptions);

    client.on('connect', () => {
      refused = false;
      const wanted = [topics.events, topics.errors, topics.replies];
      client.subscribe(wanted, { qos: 1 }, (err, granted, suback) => {
        try {
          // A SUBACK with a failure reason code comes as an error carrying the
          // SUBACK; any other error means the connection went away ('close' follows).
          const codes = suback && Array.isArray(suback.granted) ? suback.granted : [];
          const denied = codes.filter((code) => code >= 0x80);
          if ((err && !denied.length) || !client.connected) return;
          if (denied.length) {
            // Credentials for another booking: nothing here would work, so stop.
            refused = true;
            client.end(true);
            setState('disconnected');
            call('onRefused', new ProtocolError(ackErrorCode(denied[0]),
              `The server does not let you follow booking ${booking} (${reasonText(err)}).`));
            return;
          }
          ready = true;
          setState('connected');
          readyCount += 1;
          call('onReady', readyCount === 1);
        } catch (e) {
          // never throw out of an mqtt callback
        }
      });
    });

    client.on('reconnect', () => setState('connecting'));
    client.on('offline', () => setState('disconnected'));
    client.on('end', () => setState('disconnected'));
    client.on('close', () => {
      setState('disconnected');
      failInFlight('disconnected', 'The connection was lost before the server answered.');
    });

    client.on('error', (err) => {
      const code = err && typeof err.code === 'number' ? err.code : null;
      if (code === null || !REFUSAL_CODES.has(code) || refused) return;
      refused = true;
      client.end(true);
      setState('disconnected');
      failInFlight('disconnected', 'The server refused the connection.');
      const reason = String((err && err.message) || 'not authorized').replace(/^Connection refused:\s*/i, '');
      call('onRefused', new ProtocolError('not_authorized', reason));
    });

    client.on('message', (topic, payload, packet) => {
      try {
        if (topic.startsWith(topics.replyPrefix)) {
          onReply(payload, packet);
        } else if (topic.startsWith(topics.eventPrefix)) {
          const kind = topic.slice(topics.eventPrefix.length);
          const body = parseJson(payload);
          if (body && typeof body === 'object' && !Array.isArray(body)) call('onEvent', kind, body);
        } else if (topic === topics.errors) {
          const body = parseJson(payload);
          const error = body && body.error;
          if (error && typeof error.code === 'string') {
            call('onServerError', new ProtocolError(error.code, String(error.message || error.code), body));
          }
        }
      } catch (e) {
        // ignore what cannot be understood
      }
    });

    function onReply(payload, packet) {
      const props = (packet && packet.properties) || {};
      const id = bytesToString(props.correlationData);
      const entry = pending.get(id);
      if (!entry) return; // late, duplicate or not ours
      pending.delete(id);
      clearTimeout(entry.timer);
      const reply = parseJson(payload);
      if (!reply || typeof reply !== 'object') {
        entry.reject(new ProtocolError(ErrorCode.invalid_json, 'The server sent a reply that is not JSON.'));
      } else if (reply.ok === true) {
        entry.resolve(reply);
      } else {
        const error = reply.error || {};
        entry.reject(new ProtocolError(String(error.code || ErrorCode.internal), String(error.message || 'request failed'), error));
      }
    }

    /** Sends one request; resolves with the reply ({"ok":true,...}), rejects
     *  with a ProtocolError. Never queued: without a connection it fails
     *  with `disconnected` at once, so the caller decides whether to retry. */
    function request(kind, body) {
      return new Promise((resolve, reject) => {
        if (!ready || !client.connected) {
          reject(new ProtocolError('disconnected', 'Not connected to the server.'));
          return;
        }
        const id = randomHex(8);
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new ProtocolError('timeout', 'The server did not answer in time.'));
        }, REQUEST_TIMEOUT_MS);
        pending.set(id, { resolve, reject, timer });
        client.publish(
          topics.request(kind),
          JSON.stringify(body),
          // mqtt-packet writes a string as UTF-8 binary data; replies carry it back as bytes.
          { qos: 1, properties: { responseTopic: topics.replyTo, correlationData: id } },
          (err) => {
            if (!err || !pending.has(id)) return;
            pending.delete(id);
            clearTimeout(timer);
            if (typeof err.code === 'number') {
              // The broker refused the publish (PUBACK reason code): no reply will come.
              reject(new ProtocolError(ackErrorCode(err.code), `The server refused the ${kind} request (${reasonText(err)}).`));
            } else {
              reject(new ProtocolError('disconnected', 'The request could not be sent.'));
            }
          },
        );
      });
    }

    return {
      clientId,
      request,
      state: () => state,
      close: () => client.end(true),
    };
  }

  window.NavietakieProtocol = Object.freeze({
    PREFIX,
    Action,
    Event,
    ErrorCode,
    CallState,
    CallAction,
    EndReason,
    MessageType,
    Role,
    ProtocolError,
    callActionsFor,
    connectBooking,
    isActiveCall,
    isBookingCode,
    isRole,
    randomHex,
    tokenClaims,
  });
})();
