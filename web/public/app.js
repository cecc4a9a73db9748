/*
 * navietakie browser client: the page of one participant (driver or
 * passenger) of one booking. Chat, call signalling and presence.
 *
 * State flows one way: the server's replies and events go into small state
 * holders (timeline, outbox, call, presence, error), and each holder renders
 * its part of the page. The DOM is never read back as state, except for the
 * order of the timeline.
 *
 * Test hooks (data-testid) are a contract: see web/README.md. Protocol names
 * (actions, events, error codes, call states and transitions) come from the
 * wire table through NavietakieProtocol, never restated here.
 */
(function () {
  'use strict';

  const P = window.NavietakieProtocol;
  const W = window.NavietakieWire;
  const { Action, Event, ErrorCode, CallState, CallAction, EndReason, MessageType, Role } = P;

  const HISTORY_PAGE = 50;
  const CATCH_UP_PAGE = 200;
  const ENDED_BANNER_MS = 4000;
  // With several bridges (shared subscriptions) events may arrive out of seq order: a hole
  // below a live seq is given this long to fill before it is read with after_seq.
  const GAP_CHECK_DELAY_MS = 300;
  // A catch-up that failed (e.g. refused while the database restarts) is tried again.
  const CATCH_UP_RETRY_MS = 2000;
  const OTHER_ROLE = { [Role.driver]: Role.passenger, [Role.passenger]: Role.driver };

  // events/booking's `state` of a closed booking (docs/protocol.md "close").
  const BOOKING_CLOSED = 'closed';
  // Read receipts: a mark_read at most this often (a few a second at most, however fast the reader
  // scrolls); an entry counts as seen with this share of it in view (or half the timeline's height,
  // for an entry taller than that).
  const MARK_READ_INTERVAL_MS = 400;
  const SEEN_SHARE = 0.5;
  // Typing: at most one typing request per TYPING_GAP_MS (the server relays 2 a second per role);
  // while the user keeps typing, `true` again every TYPING_REFRESH_MS, because the other page
  // forgets it after TYPING_SHOWN_MS without an update; `false` after TYPING_IDLE_MS without a
  // keystroke, or on send.
  const TYPING_GAP_MS = 1000;
  const TYPING_REFRESH_MS = 3000;
  const TYPING_IDLE_MS = 4000;
  const TYPING_SHOWN_MS = 5000;

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- start-up

  const params = new URLSearchParams(location.search);
  const token = (params.get('token') || '').trim();
  const claims = token ? P.tokenClaims(token) : null;
  // Booking and role come from the address; the token's claims fill a gap.
  const booking = (params.get('booking') || (claims && claims.booking) || '').trim();
  const role = (params.get('role') || (claims && claims.role) || '').trim();

  const problem = setupProblem();
  if (problem !== null) showSetup(problem);
  else startChat();

  /** Why the address cannot open a chat: a sentence, '' when there is
   *  simply nothing yet, null when it can. */
  function setupProblem() {
    if (!params.has('booking') && !params.has('role') && !token) return '';
    if (!P.isBookingCode(booking)) return 'That booking code is not valid: use 1 to 64 letters, digits, "_" or "-".';
    if (!P.isRole(role)) return 'Choose driver or passenger.';
    // The token is checked by the server; its claims only catch an obvious mix-up early.
    if (claims && P.isRole(claims.role) && claims.role !== role) return `This token is for the ${claims.role}, not the ${role}.`;
    if (claims && P.isRole(claims.role) && typeof claims.booking === 'string' && claims.booking !== booking) {
      return `This token is for booking ${claims.booking}, not ${booking}.`;
    }
    return null;
  }

  function showSetup(problem) {
    const form = $('setup-form');
    if (booking) $('setup-booking').value = booking;
    if (P.isRole(role)) form.elements.role.value = role;
    if (token) $('setup-token').value = token;
    const error = $('setup-error');
    error.textContent = problem || '';
    error.hidden = !problem;
    form.addEventListener('submit', () => {
      // An empty token stays out of the address.
      const field = $('setup-token');
      field.value = field.value.trim();
      field.disabled = !field.value;
    });
    document.title = 'navietakie';
    $('chat').hidden = true;
    $('setup').hidden = false;
  }

  // ---------------------------------------------------------------- the chat

  function startChat() {
    const other = OTHER_ROLE[role];
    const dom = {
      chat: $('chat'),
      topbar: document.querySelector('.topbar'),
      presence: $('presence'),
      connection: $('connection'),
      connectionText: $('connection-text'),
      callButton: $('call'),
      callSlot: $('call-slot'),
      errorSlot: $('error-slot'),
      scroller: $('scroller'),
      loadEarlier: $('load-earlier'),
      empty: $('empty'),
      timeline: $('timeline'),
      form: $('composer-form'),
      composer: $('composer'),
      sendButton: $('send'),
      replicaNote: $('replica-note'),
      typingSlot: $('typing-slot'),
      bookingStateSlot: $('booking-state-slot'),
    };

    // ---------------------------------------------------------- formatting

    function capitalize(s) {
      return s ? s[0].toUpperCase() + s.slice(1) : s;
    }

    /** A server timestamp Date can hold (ms since the epoch). */
    function isTime(ms) {
      return typeof ms === 'number' && Math.abs(ms) < 8.64e15;
    }

    function clockTime(ms) {
      return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    }

    function lastSeen(ms) {
      const d = new Date(ms);
      const sameDay = d.toDateString() === new Date().toDateString();
      return sameDay ? clockTime(ms) : `${d.toLocaleDateString([], { day: 'numeric', month: 'short' })}, ${clockTime(ms)}`;
    }

    /** 62000 -> "1:02"; an hour or more -> "1:02:03". */
    function duration(ms) {
      const total = Math.max(0, Math.floor(ms / 1000));
      const h = Math.floor(total / 3600);
      const m = Math.floor((total % 3600) / 60);
      const s = String(total % 60).padStart(2, '0');
      return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
    }

    /** The running call timer: "mm:ss". */
    function timer(ms) {
      const total = Math.max(0, Math.floor(ms / 1000));
      const m = Math.floor(total / 60);
      return `${String(m).padStart(2, '0')}:${String(total % 60).padStart(2, '0')}`;
    }

    // ---------------------------------------------------------- DOM helpers

    /** h('li', {class: 'x', 'data-seq': 3, onclick: fn}, child, 'text') */
    function h(tag, attrs, ...children) {
      const node = document.createElement(tag);
      for (const [name, value] of Object.entries(attrs || {})) {
        if (value === undefined || value === null || value === false) continue;
        if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
        else node.setAttribute(name, value === true ? '' : String(value));
      }
      for (const child of children) {
        if (child !== null && child !== undefined && child !== false) node.append(child);
      }
      return node;
    }

    const ICONS = {
      phone: '<path fill="currentColor" d="M6.6 10.8a15.1 15.1 0 0 0 6.6 6.6l2.2-2.2a1 1 0 0 1 1-.25c1.1.37 2.3.57 3.6.57a1 1 0 0 1 1 1V20a1 1 0 0 1-1 1A17 17 0 0 1 3 4a1 1 0 0 1 1-1h3.5a1 1 0 0 1 1 1c0 1.25.2 2.45.57 3.57a1 1 0 0 1-.25 1z"/>',
      hangup: '<path fill="currentColor" d="M12 9c-1.6 0-3.15.25-4.6.72v3.1a1 1 0 0 1-.56.9 11.5 11.5 0 0 0-2.66 1.85 1 1 0 0 1-1.41-.02L.29 13.08a1 1 0 0 1 0-1.41C3.34 8.78 7.46 7 12 7s8.66 1.78 11.71 4.67a1 1 0 0 1 0 1.41l-2.48 2.48a1 1 0 0 1-1.41.02 11.3 11.3 0 0 0-2.67-1.85 1 1 0 0 1-.56-.9v-3.1A15 15 0 0 0 12 9z"/>',
      clock: '<circle cx="12" cy="12" r="9" fill="none" stroke="currentColor" stroke-width="2"/><path d="M12 7v5l3 2" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round"/>',
      check: '<path d="M5 12.5 10 17l9-10" fill="none" stroke="currentColor" stroke-width="2.4" stroke-linecap="round" stroke-linejoin="round"/>',
      // two ticks: read by the other party
      checks: '<path d="M2 12.5 6.5 17l9-10M10.5 15.5 12 17l9-10" fill="none" stroke="currentColor" stroke-width="2.2" stroke-linecap="round" stroke-linejoin="round"/>',
      lock: '<rect x="5" y="11" width="14" height="10" rx="2" fill="none" stroke="currentColor" stroke-width="2"/><path d="M8 11V8a4 4 0 0 1 8 0v3" fill="none" stroke="currentColor" stroke-width="2"/>',
      car: '<path d="M5 11l1.6-4.2A2 2 0 0 1 8.5 5.5h7a2 2 0 0 1 1.9 1.3L19 11M4 11h16a1 1 0 0 1 1 1v4H3v-4a1 1 0 0 1 1-1zM5 16v2M19 16v2" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"/><circle cx="7.5" cy="13.5" r="1" fill="currentColor"/><circle cx="16.5" cy="13.5" r="1" fill="currentColor"/>',
      person: '<circle cx="12" cy="8" r="4" fill="none" stroke="currentColor" stroke-width="2"/><path d="M4 21c0-4.4 3.6-7 8-7s8 2.6 8 7" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round"/>',
      close: '<path d="M6 6l12 12M18 6 6 18" fill="none" stroke="currentColor" stroke-width="2.2" stroke-linecap="round"/>',
      // an outbox tray: held by the car until the operator has it
      queued: '<path d="M4 13h4l1.5 2.5h5L16 13h4M4 13l2.2-7h11.6L20 13v5a1 1 0 0 1-1 1H5a1 1 0 0 1-1-1z" fill="none" stroke="currentColor" stroke-width="2" stroke-linejoin="round"/>',
      alert: '<circle cx="12" cy="12" r="10" fill="currentColor"/><path d="M12 7v6M12 16.5v.5" stroke="#fff" stroke-width="2.2" stroke-linecap="round"/>',
    };

    function icon(name, size) {
      const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
      svg.setAttribute('viewBox', '0 0 24 24');
      svg.setAttribute('width', String(size || 16));
      svg.setAttribute('height', String(size || 16));
      svg.setAttribute('aria-hidden', 'true');
      svg.innerHTML = ICONS[name]; // constant markup, never data
      return svg;
    }

    // ---------------------------------------------------------- header

    $('booking-code').textContent = booking;
    $('you').append('You are the ', h('strong', {}, role));
    $('avatar').append(icon(other === 'driver' ? 'car' : 'person', 22));
    dom.composer.placeholder = `Message the ${other}`;
    document.title = `${booking} · ${capitalize(role)} · navietakie`;
    dom.chat.hidden = false;

    // ---------------------------------------------------------- server clock

    /** Server time ~ Date.now() + offset. Each live event gives a lower
     *  bound of the offset (it was stamped before it arrived); the largest
     *  bound seen is the best estimate. 0 until there is one. */
    const serverClock = {
      offset: null,
      sample(serverMs) {
        if (!isTime(serverMs)) return;
        const bound = serverMs - Date.now();
        if (this.offset === null || bound > this.offset) this.offset = bound;
      },
      now() {
        return Date.now() + (this.offset || 0);
      },
    };

    // ---------------------------------------------------------- connection

    let connection = 'connecting';
    let refused = false;

    const conn = P.connectBooking(
      { booking, role, token },
      {
        onState: renderConnection,
        onReady,
        onEvent,
        onServerError: showError,
        onRefused,
      },
    );

    // The call's audio (call_media.js): follows the call record, signals through Action.signal.
    const media = window.NavietakieCallMedia.create({
      role,
      signal: (body) => conn.request(Action.signal, body),
      onChange: () => renderCall(),
    });

    function renderConnection(state) {
      connection = state;
      dom.chat.dataset.connection = state;
      dom.connection.dataset.state = state;
      dom.connectionText.textContent = refused
        ? 'Refused'
        : { connecting: 'Connecting…', connected: 'Connected', disconnected: 'Offline' }[state];
      renderCallButton();
    }

    function onReady(first) {
      // Presence first, so the other party sees us as soon as possible.
      conn.request(Action.presence, { role, online: true })
        .then((reply) => {
          media.noteIceServers(reply);
          applyPresence(reply.presence);
        })
        .catch(report);
      syncCall();
      if (!timeline.historyLoaded) loadLatest();
      else catchUp();
      flushOutbox();
      scheduleMarkRead();
      // Focus for typing on a desktop; on a phone that would pop up the keyboard.
      if (first && matchMedia('(pointer: fine)').matches) dom.composer.focus({ preventScroll: true });
    }

    function onEvent(kind, payload) {
      media.noteIceServers(payload);
      if (kind === Event.message) {
        serverClock.sample(payload.ts);
        // Events come from the operator only: a car unit that relays one is linked again.
        showReplica(null);
        // Their message ends their typing, whatever the typing events say.
        if (payload.sender === other) showPeerTyping(false);
        upsertMessage(payload, { live: true });
      } else if (kind === Event.call) {
        applyCall(payload, { live: true });
      } else if (kind === Event.presence) {
        applyPresence(payload);
      } else if (kind === Event.read) {
        applyRead(payload);
      } else if (kind === Event.typing) {
        applyTyping(payload);
      } else if (kind === Event.booking) {
        applyBooking(payload);
      } else if (kind === Event.signal) {
        media.onSignal(payload);
      } // other events: not for this page
    }

    function onRefused(error) {
      refused = true;
      renderConnection('disconnected');
      dom.presence.textContent = `${capitalize(other)} · not connected`;
      dom.composer.disabled = true;
      dom.sendButton.disabled = true;
      dom.empty.replaceChildren('This chat could not be opened. ',
        h('button', { class: 'link-button', type: 'button', onclick: () => showSetup('') }, 'Use another token'));
      dom.empty.hidden = false;
      if (error.code !== 'not_authorized') {
        showError(error);
        return;
      }
      const text = token
        ? `The server refused your token: ${error.message}.`
        : `The server refused the connection: ${error.message}. It needs a token: add &token=… to the address.`;
      showError(new P.ProtocolError('not_authorized', text));
    }

    /** Request failures that the user should see. A lost connection is
     *  shown by the indicator and retried on reconnect, so not here. */
    function report(error) {
      if (error && error.code !== 'disconnected') showError(error);
    }

    // ---------------------------------------------------------- errors

    let lastError = null;

    // Keyed through ErrorCode, so a code the wire table drops fails loudly here.
    const ERROR_TITLES = {
      [ErrorCode.invalid_json]: 'The request could not be read',
      [ErrorCode.invalid_request]: 'The request was not valid',
      [ErrorCode.payload_too_large]: 'The message is too long',
      [ErrorCode.invalid_booking_code]: 'The booking code is not valid',
      [ErrorCode.forbidden]: 'Not allowed',
      [ErrorCode.not_found]: 'Not found',
      [ErrorCode.invalid_state]: 'That is no longer possible',
      [ErrorCode.busy]: 'A call is already in progress',
      [ErrorCode.booking_closed]: 'This booking is closed',
      [ErrorCode.rate_limited]: 'Too many requests, slow down',
      [ErrorCode.unavailable]: 'The service is unavailable right now',
      [ErrorCode.internal]: 'Something went wrong on the server',
      // the client's own codes (see NavietakieProtocol.ProtocolError)
      timeout: 'No answer from the server',
      disconnected: 'Not connected',
    };

    function showError(error) {
      const code = (error && error.code) || ErrorCode.internal;
      if (code === ErrorCode.booking_closed) markClosed();
      lastError = { code, message: String((error && error.message) || code) };
      renderError();
    }

    function renderError() {
      dom.errorSlot.replaceChildren();
      if (!lastError) return;
      const title = ERROR_TITLES[lastError.code];
      const text = h('p', { class: 'error-text' });
      if (title && lastError.code !== 'not_authorized') text.append(h('strong', {}, `${title}: `));
      text.append(lastError.message);
      const dismiss = h('button', { class: 'dismiss', type: 'button', 'aria-label': 'Dismiss', title: 'Dismiss', onclick: () => {
        lastError = null;
        renderError();
      } }, icon('close', 18));
      dom.errorSlot.append(h('div', { class: 'error-banner', role: 'alert', 'data-testid': 'error', 'data-code': lastError.code },
        icon('alert', 18), text, dismiss));
    }

    // ---------------------------------------------------------- presence

    let peerPresence = null; // {online, since} of the other party

    function applyPresence(presence) {
      if (!presence || typeof presence !== 'object') return;
      if (presence.booking_code && presence.booking_code !== booking) return;
      const peer = presence[other];
      if (!peer || typeof peer.online !== 'boolean') return;
      peerPresence = { online: peer.online, since: isTime(peer.since) ? peer.since : null };
      const state = peer.online ? 'online' : 'offline';
      dom.presence.dataset.state = state;
      dom.topbar.dataset.peer = state;
      dom.presence.textContent = peer.online
        ? `${capitalize(other)} online`
        : peerPresence.since
          ? `${capitalize(other)} offline · last seen ${lastSeen(peerPresence.since)}`
          : `${capitalize(other)} offline · not joined yet`;
    }

    // ---------------------------------------------------------- timeline

    const timeline = {
      bySeq: new Map(),      // seq -> <li>, one per confirmed message
      lowestSeq: null,
      highestSeq: null,
      contiguousTop: null,   // every seq from the initial page up to here is shown
      historyLoaded: false,
      hasMoreBefore: false,
      loadingEarlier: false,
    };

    function nearBottom() {
      const s = dom.scroller;
      return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
    }

    function scrollToBottom() {
      dom.scroller.scrollTop = dom.scroller.scrollHeight;
    }

    function renderTimelineChrome() {
      if (refused) return;
      dom.empty.hidden = !timeline.historyLoaded || dom.timeline.childElementCount > 0;
      dom.loadEarlier.hidden = !timeline.hasMoreBefore;
      dom.loadEarlier.disabled = timeline.loadingEarlier;
      dom.loadEarlier.textContent = timeline.loadingEarlier ? 'Loading…' : 'Load earlier messages';
    }

    /** A history reply from a car unit without its link to the operator
     *  carries replica_until_seq (docs/protocol.md "Edge nodes"): the car's
     *  copy, complete up to that seq. null hides the note. */
    function showReplica(untilSeq) {
      const note = dom.replicaNote;
      if (!Number.isInteger(untilSeq)) {
        note.hidden = true;
        note.removeAttribute('data-until-seq');
        return;
      }
      note.dataset.untilSeq = String(untilSeq);
      note.textContent = untilSeq > 0
        ? `Offline copy from the car, complete up to message ${untilSeq}. Newer messages arrive when the car is back online.`
        : 'Offline copy from the car. Messages arrive when the car is back online.';
      note.hidden = false;
    }

    /** Every get_message reply says whether it came from a car's offline copy. */
    async function getMessages(body) {
      const reply = await conn.request(Action.get_message, body);
      showReplica(reply.replica_until_seq);
      applyRead(reply.read);
      return reply;
    }

    function isMessage(m) {
      return m && typeof m === 'object' && Number.isInteger(m.seq) && m.seq > 0 && typeof m.type === 'string';
    }

    /** The one way a stored message reaches the page (history pages, replies
     *  and events/message alike): one element per seq, in seq order. A
     *  pending send with the same message_id becomes that element. */
    function upsertMessage(m, { live } = {}) {
      if (!isMessage(m)) return;
      const outgoing = typeof m.message_id === 'string' ? outbox.get(m.message_id) : undefined;
      if (timeline.bySeq.has(m.seq)) {
        if (outgoing) {
          // Confirmed twice over (a resend): keep the one element there is.
          outbox.delete(m.message_id);
          outgoing.el.remove();
        }
        return;
      }
      const stick = (live || outgoing) && nearBottom();
      let li;
      if (outgoing) {
        outbox.delete(m.message_id);
        li = outgoing.el;
        li.replaceChildren();
        li.removeAttribute('data-failed');
      } else {
        li = h('li', { 'data-testid': 'message' });
      }
      fillMessage(li, m);
      insertBySeq(li, m.seq);
      timeline.bySeq.set(m.seq, li);
      if (seenObserver) seenObserver.observe(li);
      if (timeline.lowestSeq === null || m.seq < timeline.lowestSeq) timeline.lowestSeq = m.seq;
      if (timeline.highestSeq === null || m.seq > timeline.highestSeq) timeline.highestSeq = m.seq;
      advanceContiguous();
      renderTimelineChrome();
      if (stick) scrollToBottom();
      if (live) checkForGap();
    }

    function advanceContiguous() {
      if (timeline.contiguousTop === null) return;
      while (timeline.bySeq.has(timeline.contiguousTop + 1)) timeline.contiguousTop += 1;
    }

    /** Confirmed entries in seq order; pending sends stay after them. */
    function insertBySeq(li, seq) {
      li.remove();
      let before = null;
      for (let node = dom.timeline.lastElementChild; node; node = node.previousElementSibling) {
        if (node.dataset.seq !== undefined && Number(node.dataset.seq) < seq) break;
        before = node;
      }
      dom.timeline.insertBefore(li, before);
    }

    function fillMessage(li, m) {
      const sender = typeof m.sender === 'string' ? m.sender : Role.system;
      li.dataset.seq = String(m.seq);
      li.dataset.type = m.type;
      li.dataset.sender = sender;
      li.dataset.pending = 'false';
      li.dataset.status = 'confirmed';
      li.dataset.messageId = String(m.message_id || '');
      const time = isTime(m.ts) ? h('time', { datetime: new Date(m.ts).toISOString() }, clockTime(m.ts)) : null;

      if (m.type === MessageType.call) {
        const described = describeCallMessage(m);
        li.className = 'entry entry--center';
        li.append(h('span', { class: `pill${described.tone ? ` pill--${described.tone}` : ''}` }, icon('phone', 14), described.text, time));
      } else if (m.type === MessageType.text && P.isRole(sender)) {
        const own = sender === role;
        li.className = `entry ${own ? 'entry--own' : 'entry--other'}`;
        li.append(h('div', { class: 'bubble' },
          h('p', { class: 'bubble-text' }, String(m.text || '')),
          h('span', { class: 'meta' }, time, own ? h('span', { class: 'receipt' }) : null)));
        if (own) renderReadMark(li);
      } else {
        // system messages, and any type this page does not know yet
        li.className = 'entry entry--center';
        li.append(h('span', { class: 'pill' }, String(m.text || m.type), time));
      }
    }

    /** A call-type message in words. data: {call_id, state, end_reason, from, to, duration_ms}. */
    function describeCallMessage(m) {
      const data = m.data && typeof m.data === 'object' ? m.data : {};
      if (data.state === CallState.ringing) {
        return { text: data.from === role ? 'Outgoing call' : `${capitalize(data.from || other)} is calling…` };
      }
      if (data.state === CallState.connected) return { text: 'Call connected', tone: 'connected' };
      if (data.state === CallState.ended) {
        if (data.end_reason === EndReason.booking_closed) return { text: 'Call ended: booking closed' };
        switch (data.end_reason) {
          case EndReason.missed: return { text: 'Missed call', tone: 'missed' };
          case EndReason.declined: return { text: 'Call declined' };
          case EndReason.cancelled: return { text: 'Call cancelled' };
          case EndReason.completed: {
            const ms = typeof data.duration_ms === 'number' ? data.duration_ms : knownCallDuration(data.call_id);
            return { text: ms === null ? 'Call ended' : `Call ${duration(ms)}` };
          }
          default: return { text: 'Call ended' };
        }
      }
      return { text: 'Call' };
    }

    function knownCallDuration(callId) {
      const c = call.current;
      return c && c.call_id === callId && typeof c.duration_ms === 'number' ? c.duration_ms : null;
    }

    /** First page: the newest messages. */
    let loadingLatest = false;

    async function loadLatest() {
      if (loadingLatest) return;
      loadingLatest = true;
      try {
        const reply = await getMessages({ limit: HISTORY_PAGE });
        const messages = Array.isArray(reply.messages) ? reply.messages : [];
        for (const m of messages) upsertMessage(m);
        const top = messages.length ? messages[messages.length - 1].seq : 0;
        timeline.contiguousTop = Number.isInteger(top) ? top : 0;
        advanceContiguous();
        timeline.hasMoreBefore = reply.has_more === true;
        timeline.historyLoaded = true;
        renderTimelineChrome();
        scrollToBottom();
        checkForGap();
      } catch (error) {
        report(error);
        // Lost connection: the next connect loads it. Anything else: try again soon.
        if (error.code !== 'disconnected') setTimeout(() => {
          if (!timeline.historyLoaded && connection === 'connected') loadLatest();
        }, 3000);
      } finally {
        loadingLatest = false;
      }
    }

    /** Everything after what we have, page by page, so a reconnect misses
     *  nothing. One at a time; a request made meanwhile runs once more. */
    let catchingUp = false;
    let catchUpAgain = false;

    async function catchUp() {
      if (!timeline.historyLoaded) return;
      if (catchingUp) {
        catchUpAgain = true;
        return;
      }
      catchingUp = true;
      try {
        do {
          catchUpAgain = false;
          // contiguousTop, not the highest seq: a live event that came in
          // right after the reconnect must not hide the hole before it.
          let after = timeline.contiguousTop;
          for (;;) {
            const reply = await getMessages({ after_seq: after, limit: CATCH_UP_PAGE });
            const messages = Array.isArray(reply.messages) ? reply.messages : [];
            const stick = nearBottom();
            for (const m of messages) upsertMessage(m);
            if (stick) scrollToBottom();
            if (reply.has_more !== true || !messages.length) break;
            after = messages[messages.length - 1].seq;
          }
        } while (catchUpAgain);
      } catch (error) {
        report(error);
        // The hole must not stay for good: look again while connected (a reconnect catches up
        // by itself).
        if (error.code !== 'disconnected') setTimeout(checkForGap, CATCH_UP_RETRY_MS);
      } finally {
        catchingUp = false;
      }
    }

    /** A live event beyond a hole (something missed) triggers a catch-up. */
    let gapTimer = null;

    function checkForGap() {
      if (gapTimer || !timeline.historyLoaded) return;
      gapTimer = setTimeout(() => {
        gapTimer = null;
        if (connection === 'connected' && timeline.highestSeq !== null && timeline.contiguousTop < timeline.highestSeq) catchUp();
      }, GAP_CHECK_DELAY_MS);
    }

    async function loadEarlier() {
      if (timeline.loadingEarlier || !timeline.hasMoreBefore || timeline.lowestSeq === null) return;
      timeline.loadingEarlier = true;
      renderTimelineChrome();
      try {
        const reply = await getMessages({ before_seq: timeline.lowestSeq, limit: HISTORY_PAGE });
        const messages = Array.isArray(reply.messages) ? reply.messages : [];
        // Keep what the reader is looking at in place while the page grows above it.
        const fromBottom = dom.scroller.scrollHeight - dom.scroller.scrollTop;
        for (let i = messages.length - 1; i >= 0; i -= 1) upsertMessage(messages[i]);
        dom.scroller.scrollTop = dom.scroller.scrollHeight - fromBottom;
        timeline.hasMoreBefore = reply.has_more === true;
      } catch (error) {
        report(error);
      } finally {
        timeline.loadingEarlier = false;
        renderTimelineChrome();
      }
    }

    dom.loadEarlier.addEventListener('click', loadEarlier);
    dom.scroller.addEventListener('scroll', () => {
      if (dom.scroller.scrollTop < 40 && timeline.historyLoaded && connection === 'connected') loadEarlier();
    }, { passive: true });

    // ---------------------------------------------------------- outbox

    /** Sends not yet confirmed, by message_id, in the order written. Status:
     *  waiting (for this page's connection), sending, queued (a car unit
     *  without its link to the operator stored it and answered "queued": its
     *  seq comes with the events/message event), failed (error reply or no
     *  answer; the user may retry with the same message_id). */
    const outbox = new Map();

    // The element's data-status per outbox status; confirmed elements say "confirmed".
    const SHOWN_STATUS = { waiting: 'pending', sending: 'pending', queued: 'queued', failed: 'failed' };

    function sendText(text) {
      const id = P.randomHex(16);
      const entry = { id, text, status: 'waiting', error: null, el: h('li', { 'data-testid': 'message' }) };
      outbox.set(id, entry);
      renderOutgoing(entry);
      dom.timeline.append(entry.el);
      renderTimelineChrome();
      scrollToBottom();
      deliver(entry);
    }

    function deliver(entry) {
      if (entry.status === 'sending' || entry.asking) return;
      if (connection !== 'connected') {
        if (entry.status !== 'queued') entry.status = 'waiting';
        renderOutgoing(entry);
        return;
      }
      // A queued message is safe in the car: asking again (same message_id, so
      // never a duplicate) only fetches its seq sooner; it stays shown as queued.
      const queued = entry.status === 'queued';
      if (queued) {
        entry.asking = true;
      } else {
        entry.status = 'sending';
        entry.error = null;
        renderOutgoing(entry);
      }
      conn.request(Action.send_message, { message_id: entry.id, sender: role, text: entry.text })
        .then((reply) => {
          if (isMessage(reply.message)) {
            if (typeof reply.message.ts === 'number') serverClock.sample(reply.message.ts);
            upsertMessage(reply.message);
          } else if (reply.queued === true && outbox.get(entry.id) === entry) {
            entry.status = 'queued';
            renderOutgoing(entry);
          }
        })
        .catch((error) => {
          if (outbox.get(entry.id) !== entry || queued) return; // confirmed meanwhile, or still safe in the car
          if (error.code === 'disconnected') {
            entry.status = 'waiting'; // sent again after the reconnect
          } else {
            entry.status = 'failed';
            entry.error = error;
            showError(error);
          }
          renderOutgoing(entry);
        })
        .finally(() => {
          entry.asking = false;
        });
    }

    function flushOutbox() {
      for (const entry of outbox.values()) {
        if (entry.status === 'waiting' || entry.status === 'queued') deliver(entry);
      }
    }

    function renderOutgoing(entry) {
      const li = entry.el;
      const failed = entry.status === 'failed';
      const queued = entry.status === 'queued';
      li.className = 'entry entry--own';
      li.dataset.type = MessageType.text;
      li.dataset.sender = role;
      li.dataset.pending = 'true';
      li.dataset.status = SHOWN_STATUS[entry.status];
      li.dataset.messageId = entry.id;
      if (failed) li.dataset.failed = 'true';
      else li.removeAttribute('data-failed');
      let meta;
      if (failed) meta = h('span', { class: 'meta' }, 'Not sent');
      else if (queued) meta = h('span', { class: 'meta', title: 'Saved in the car; sent to the operator when the link is back' }, icon('queued', 13), 'Queued');
      else meta = h('span', { class: 'meta' }, h('span', { class: 'visually-hidden' }, 'Sending'), icon('clock', 13));
      li.replaceChildren(h('div', { class: 'bubble' }, h('p', { class: 'bubble-text' }, entry.text), meta));
      if (failed) {
        li.append(h('div', { class: 'failed-note' },
          h('span', {}, entry.error && entry.error.code === 'timeout' ? 'No answer from the server.' : 'The server refused it.'),
          h('button', { class: 'link-button', type: 'button', 'data-testid': 'retry', onclick: () => deliver(entry) }, 'Retry')));
      } else if (queued) {
        li.append(h('div', { class: 'queued-note' }, 'Queued in the car · sent when the link to the operator is back'));
      }
    }

    dom.form.addEventListener('submit', (event) => {
      event.preventDefault();
      const text = dom.composer.value.trim();
      if (!text || closed) return;
      dom.composer.value = '';
      autosize();
      stopTyping();
      sendText(text);
      dom.composer.focus();
    });

    dom.composer.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && !closed) {
        event.preventDefault();
        dom.form.requestSubmit();
      }
    });

    function autosize() {
      dom.composer.style.height = 'auto';
      dom.composer.style.height = `${Math.min(dom.composer.scrollHeight + 2, 140)}px`;
    }
    dom.composer.addEventListener('input', autosize);

    // ---------------------------------------------------------- calls

    // A call's states in the order it goes through them (the wire table's order).
    const CALL_RANK = Object.fromEntries(W.call.states.map((state, i) => [state, i]));

    const call = {
      current: null,          // the call shown in the banner (the Call record)
      endedIds: new Set(),    // calls seen ending: later events about them are stale
      busy: false,            // a call request of ours is in flight
      endedTimer: null,
      tick: null,
    };

    function isActive(c) {
      return P.isActiveCall(c);
    }

    function isCall(c) {
      return c && typeof c === 'object' && typeof c.call_id === 'string' && Object.hasOwn(CALL_RANK, c.state);
    }

    /** Takes a Call record from an event or a reply; ignores stale ones. */
    function applyCall(c, { live } = {}) {
      if (!isCall(c)) return;
      if (c.booking_code && c.booking_code !== booking) return;
      if (call.endedIds.has(c.call_id)) return;
      const current = call.current;
      if (current && current.call_id === c.call_id && CALL_RANK[c.state] < CALL_RANK[current.state]) return;
      // Another call's end while this one is active: not news for the banner.
      if (current && current.call_id !== c.call_id && isActive(current) && c.state === CallState.ended) {
        call.endedIds.add(c.call_id);
        return;
      }
      if (live && c.state === CallState.connected && typeof c.connected_at === 'number') serverClock.sample(c.connected_at);
      clearTimeout(call.endedTimer);
      call.current = c;
      media.follow(c);
      if (c.state === CallState.ended) {
        call.endedIds.add(c.call_id);
        call.endedTimer = setTimeout(() => {
          if (call.current === c) {
            call.current = null;
            renderCall();
          }
        }, ENDED_BANNER_MS);
      }
      renderCall();
    }

    /** On (re)connect: is a call ringing or connected? */
    function syncCall() {
      // With `by`, the reply carries the ICE servers for this party (a reloaded page rejoining).
      conn.request(Action.make_call, { action: CallAction.get, by: role })
        .then((reply) => {
          media.noteIceServers(reply);
          applyCall(reply.call);
        })
        .catch((error) => {
          if (error.code === ErrorCode.not_found) {
            // None active: one we showed ended while we were away.
            if (isActive(call.current)) {
              call.endedIds.add(call.current.call_id);
              call.current = null;
              media.follow(null);
              renderCall();
            }
          } else if (error.code !== ErrorCode.unavailable) {
            // unavailable: a car unit without its link (calls need the operator); trying to call
            // says so, opening the page need not.
            report(error);
          }
        });
    }

    function startCall() {
      if (isActive(call.current) || call.busy) return;
      // A client call_id makes a resent start harmless.
      const callId = `c-${P.randomHex(8)}`;
      media.placing(callId); // the microphone is asked for now, while it rings
      callRequest({ action: CallAction.start, by: role, call_id: callId });
    }

    function actOnCall(action) {
      if (!call.current) return;
      if (action === CallAction.accept) media.accepting(call.current.call_id);
      callRequest({ action, call_id: call.current.call_id, by: role });
    }

    function callRequest(body) {
      call.busy = true;
      renderCall();
      conn.request(Action.make_call, body)
        .then((reply) => {
          call.busy = false;
          media.noteIceServers(reply);
          applyCall(reply.call);
          renderCall();
        })
        .catch((error) => {
          call.busy = false;
          media.follow(call.current); // a refused start or accept: no microphone kept open for it
          report(error);
          renderCall();
          // The call moved on without us (or another one is active): look again.
          if ([ErrorCode.busy, ErrorCode.invalid_state, ErrorCode.not_found].includes(error.code)) syncCall();
        });
    }

    dom.callButton.addEventListener('click', startCall);

    // The call banner's buttons, in display order: [action, data-testid, class, label, icon].
    const CALL_BUTTONS = [
      [CallAction.decline, 'decline', 'btn-decline', 'Decline', 'hangup'],
      [CallAction.accept, 'accept', 'btn-accept', 'Accept', 'phone'],
      [CallAction.cancel, 'cancel', 'btn-cancel', 'Cancel', null],
      [CallAction.end, 'hangup', 'btn-hangup', 'Hang up', 'hangup'],
    ];

    function renderCallButton() {
      dom.callButton.disabled = isActive(call.current) || call.busy || connection !== 'connected' || closed !== null;
      dom.callButton.title = closed ? 'The booking is closed' : isActive(call.current) ? 'A call is in progress' : `Call the ${other}`;
      dom.callButton.setAttribute('aria-label', dom.callButton.title);
    }

    function renderCall() {
      renderCallButton();
      clearInterval(call.tick);
      call.tick = null;
      dom.callSlot.replaceChildren();
      const c = call.current;
      if (!c) return;

      const incoming = c.to === role;
      const peer = capitalize(incoming ? c.from : c.to) || capitalize(other);
      const title = h('p', { class: 'call-title' });
      const sub = h('p', { class: 'call-sub' });
      const actions = h('div', { class: 'call-actions' });
      // The buttons are the actions the state machine lets this party take now, in this order.
      const allowed = P.callActionsFor(c, role);
      for (const [action, testid, cls, label, iconName] of CALL_BUTTONS) {
        if (!allowed.includes(action)) continue;
        actions.append(h('button', { class: `btn ${cls}`, type: 'button', 'data-testid': testid, disabled: call.busy, onclick: () => actOnCall(action) },
          iconName ? icon(iconName, 16) : null, label));
      }

      if (c.state === CallState.ringing) {
        if (incoming) {
          title.textContent = `${peer} is calling…`;
          sub.textContent = 'Incoming call';
        } else {
          title.textContent = `Calling ${peer.toLowerCase()}…`;
          sub.textContent = 'Ringing';
        }
      } else if (c.state === CallState.connected) {
        title.textContent = `On call with ${peer.toLowerCase()}`;
        const clock = h('span', { class: 'call-timer' });
        sub.append(clock);
        const connectedAt = typeof c.connected_at === 'number' ? c.connected_at : serverClock.now();
        const update = () => {
          clock.textContent = timer(serverClock.now() - connectedAt);
        };
        update();
        call.tick = setInterval(update, 1000);
      } else {
        const reasons = {
          [EndReason.completed]: `Call ended · ${duration(c.duration_ms || 0)}`,
          [EndReason.missed]: incoming ? 'Missed call' : 'No answer',
          [EndReason.declined]: 'Call declined',
          [EndReason.cancelled]: 'Call cancelled',
          [EndReason.booking_closed]: 'Call ended: the booking was closed',
        };
        title.textContent = reasons[c.end_reason] || 'Call ended';
        sub.textContent = `with the ${peer.toLowerCase()}`;
      }

      const answering = c.state === CallState.ringing && incoming;
      dom.callSlot.append(h('section', { class: `call-banner${answering ? ' call-banner--answer' : ''}`, role: 'status', 'data-testid': 'call-state', 'data-state': c.state },
        h('div', { class: 'call-icon' }, icon(c.state === CallState.ended ? 'hangup' : 'phone', 18)),
        h('div', { class: 'call-text' }, title, sub),
        actions,
        c.state === CallState.connected ? media.element() : null));
    }

    // ---------------------------------------------------------- read receipts

    /** Read horizons (docs/protocol.md, read receipts): both only grow. The other party's marks
     *  our own messages up to it as read; ours is sent with mark_read when entries are actually
     *  seen: in view in the timeline while the page is visible, never on arrival in the
     *  background. */
    const receipts = {
      peer: 0,           // the other party's horizon, from events/read and get_message replies
      own: 0,            // ours, as the server last said
      asked: 0,          // the highest seq of a mark_read answered (or refused: not asked again)
      inFlight: false,
      lastAt: 0,         // when the last mark_read went out
      timer: null,
      inView: new Set(), // seqs of entries in view now
    };

    const seenObserver = typeof IntersectionObserver === 'function'
      ? new IntersectionObserver(onSeen, { root: dom.scroller, threshold: [0, SEEN_SHARE, 1] })
      : null;

    function onSeen(changes) {
      for (const change of changes) {
        const seq = Number(change.target.dataset.seq);
        if (!Number.isInteger(seq)) continue;
        const shown = change.intersectionRect.height;
        const seen = change.isIntersecting
          && (change.intersectionRatio >= SEEN_SHARE || (change.rootBounds !== null && shown >= change.rootBounds.height * SEEN_SHARE));
        if (seen) receipts.inView.add(seq);
        else receipts.inView.delete(seq);
      }
      scheduleMarkRead();
    }

    /** The seq the reader has seen up to now: the highest entry in view while the page is
     *  visible, but not past a hole in the timeline (0 when nothing counts as seen). */
    function seenUpTo() {
      if (document.visibilityState !== 'visible') return 0;
      let top = 0;
      for (const seq of receipts.inView) if (seq > top && timeline.bySeq.has(seq)) top = seq;
      if (timeline.contiguousTop !== null) top = Math.min(top, timeline.contiguousTop);
      return top;
    }

    function scheduleMarkRead() {
      if (closed || receipts.timer || receipts.inFlight) return;
      if (seenUpTo() <= Math.max(receipts.asked, receipts.own)) return;
      const wait = Math.max(0, receipts.lastAt + MARK_READ_INTERVAL_MS - Date.now());
      receipts.timer = setTimeout(sendMarkRead, wait);
    }

    function sendMarkRead() {
      receipts.timer = null;
      // Looked at again when due: what scrolled past or went into the background meanwhile does not count.
      const seq = seenUpTo();
      if (closed || connection !== 'connected' || seq <= Math.max(receipts.asked, receipts.own)) return;
      receipts.inFlight = true;
      receipts.lastAt = Date.now();
      conn.request(Action.mark_read, { role, seq })
        .then((reply) => {
          receipts.asked = Math.max(receipts.asked, seq);
          applyRead(reply.read);
        })
        .catch((error) => {
          if (error.code === ErrorCode.booking_closed) {
            markClosed();
          } else if (error.code !== 'disconnected' && error.code !== 'timeout') {
            // Refused: not asked again for this seq (a later one is), and said, for it is a bug.
            receipts.asked = Math.max(receipts.asked, seq);
            if (error.code !== ErrorCode.rate_limited) showError(error);
          } // lost or unanswered: asked again when the page is connected (onReady)
        })
        .finally(() => {
          receipts.inFlight = false;
          scheduleMarkRead();
        });
    }

    document.addEventListener('visibilitychange', scheduleMarkRead);

    /** A read object: events/read, or the `read` of a mark_read or get_message reply. */
    function applyRead(read) {
      if (!read || typeof read !== 'object') return;
      if (read.booking_code && read.booking_code !== booking) return;
      const horizon = (party) => (party && Number.isInteger(party.seq) && party.seq > 0 ? party.seq : 0);
      receipts.own = Math.max(receipts.own, horizon(read[role]));
      const peer = horizon(read[other]);
      if (peer <= receipts.peer) return;
      const from = receipts.peer;
      receipts.peer = peer;
      for (const [seq, li] of timeline.bySeq) if (seq > from && seq <= peer) renderReadMark(li);
    }

    /** One of our own text messages: sent (one tick) or read by the other party (two, and
     *  data-read="true"). */
    function renderReadMark(li) {
      const mark = li.querySelector('.receipt');
      if (!mark || li.dataset.sender !== role) return;
      const read = Number(li.dataset.seq) <= receipts.peer;
      if (read) li.dataset.read = 'true';
      else li.removeAttribute('data-read');
      const label = read ? `Read by the ${other}` : 'Sent';
      mark.title = label;
      mark.replaceChildren(icon(read ? 'checks' : 'check', read ? 16 : 14), h('span', { class: 'visually-hidden' }, label));
    }

    // ---------------------------------------------------------- typing

    /** What we tell the other party: `want` is whether the user is typing now, `sent` what the
     *  last typing request said. */
    const typingOut = { want: false, sent: false, lastAt: 0, gapTimer: null, idleTimer: null };

    function flushTyping() {
      if (closed || connection !== 'connected' || typingOut.gapTimer) return;
      const now = Date.now();
      const due = typingOut.want !== typingOut.sent || (typingOut.want && now - typingOut.lastAt >= TYPING_REFRESH_MS);
      if (!due) return;
      const wait = typingOut.lastAt + TYPING_GAP_MS - now;
      if (wait > 0) {
        typingOut.gapTimer = setTimeout(() => {
          typingOut.gapTimer = null;
          flushTyping();
        }, wait);
        return;
      }
      typingOut.sent = typingOut.want;
      typingOut.lastAt = now;
      // A hint: a lost or dropped one is corrected by the next, or forgotten after TYPING_SHOWN_MS.
      conn.request(Action.typing, { role, typing: typingOut.sent }).catch((error) => {
        if (error.code === ErrorCode.booking_closed) markClosed();
      });
    }

    function onComposerInput() {
      clearTimeout(typingOut.idleTimer);
      typingOut.want = dom.composer.value.trim() !== '';
      if (typingOut.want) typingOut.idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
      flushTyping();
    }

    function stopTyping() {
      clearTimeout(typingOut.idleTimer);
      typingOut.want = false;
      flushTyping();
    }

    dom.composer.addEventListener('input', onComposerInput);

    /** The other party's typing line. */
    const peerTyping = { shown: false, timer: null };

    function applyTyping(event) {
      if (!event || typeof event !== 'object') return;
      if (event.booking_code && event.booking_code !== booking) return;
      // Our own typing (this tab's or another of ours) is not news.
      if (event.role !== other || typeof event.typing !== 'boolean') return;
      showPeerTyping(event.typing && !closed);
    }

    function showPeerTyping(on) {
      clearTimeout(peerTyping.timer);
      peerTyping.timer = on ? setTimeout(() => showPeerTyping(false), TYPING_SHOWN_MS) : null;
      if (peerTyping.shown === on) return;
      peerTyping.shown = on;
      dom.typingSlot.replaceChildren();
      if (on) {
        dom.typingSlot.append(h('p', { class: 'typing', 'data-testid': 'typing', 'data-role': other }, `${capitalize(other)} is typing…`));
      }
    }

    // ---------------------------------------------------------- closed booking

    /** {closedAt, reason} once the booking is closed (events/booking, or a booking_closed
     *  refusal): history stays readable, writing and calling are off for good. */
    let closed = null;

    function applyBooking(event) {
      if (!event || typeof event !== 'object') return;
      if (event.booking_code && event.booking_code !== booking) return;
      if (event.state !== BOOKING_CLOSED) return;
      markClosed({ closedAt: isTime(event.closed_at) ? event.closed_at : null, reason: typeof event.reason === 'string' ? event.reason : null });
    }

    function markClosed(details = {}) {
      const before = closed;
      closed = {
        closedAt: (before && before.closedAt) || details.closedAt || null,
        reason: (before && before.reason) || details.reason || null,
      };
      if (before && before.closedAt === closed.closedAt && before.reason === closed.reason) return;
      clearTimeout(receipts.timer);
      receipts.timer = null;
      clearTimeout(typingOut.idleTimer);
      clearTimeout(typingOut.gapTimer);
      typingOut.gapTimer = null;
      showPeerTyping(false);
      dom.composer.disabled = true;
      dom.composer.placeholder = 'This booking is closed';
      dom.sendButton.disabled = true;
      renderCallButton();
      const when = closed.closedAt ? ` at ${lastSeen(closed.closedAt)}` : '';
      const why = closed.reason ? ` (${closed.reason})` : '';
      dom.bookingStateSlot.replaceChildren(h('div', { class: 'closed-notice', role: 'status', 'data-testid': 'booking-state', 'data-state': BOOKING_CLOSED },
        icon('lock', 18),
        h('p', {}, h('strong', {}, `This booking was closed${when}${why}.`), ' The messages stay readable; new messages and calls are off.')));
    }

    // ---------------------------------------------------------- debugging

    Object.defineProperty(window, 'navietakie', {
      value: Object.freeze({
        clientId: conn.clientId,
        booking,
        role,
        state: () => ({
          connection,
          presence: peerPresence ? { ...peerPresence } : null,
          call: call.current ? { ...call.current } : null,
          seqs: [...timeline.bySeq.keys()].sort((a, b) => a - b),
          historyLoaded: timeline.historyLoaded,
          hasMoreBefore: timeline.hasMoreBefore,
          outbox: [...outbox.values()].map((e) => ({ message_id: e.id, status: e.status })),
          replicaUntilSeq: dom.replicaNote.hidden ? null : Number(dom.replicaNote.dataset.untilSeq),
          read: { own: receipts.own, peer: receipts.peer },
          peerTyping: peerTyping.shown,
          closed: closed ? { ...closed } : null,
          error: lastError ? { ...lastError } : null,
        }),
      }),
      enumerable: true,
    });

    renderConnection('connecting');
    renderTimelineChrome();
  }
})();
