/*
 * navietakie call audio: one WebRTC peer connection per connected call,
 * signalled over the booking's `signal` request topic and `events/signal`
 * (docs/protocol.md "signal"). The call record (make_call, events/call)
 * stays the authority on whether a call exists; this module only carries
 * the audio of the call the page shows.
 *
 * Rules (web/README.md, "Call audio"):
 * - The microphone is asked for only when this page places or accepts a
 *   call, or rejoins one; a refusal leaves the call working as signalling
 *   and tells the other side with a `bye` whose reason is `microphone`.
 * - The caller offers once the call is connected; the callee answers. A
 *   page that rejoins a connected call (after a reload, or after the audio
 *   was lost) offers, and the other side answers with a fresh connection.
 * - ICE servers are those the server hands out (`ice_servers` in a reply or
 *   an event); with a TURN server among them, ICE is relay-only so neither
 *   party learns the other's address.
 *
 * Defines one global, NavietakieCallMedia, with create(); the page keeps
 * one instance. window.navietakieCall (snapshot, for tests and debugging)
 * is defined by create().
 */
(function () {
  'use strict';

  const STATS_PERIOD_MS = 1000;
  const MEDIA_CONSTRAINTS = { audio: { echoCancellation: true, noiseSuppression: true }, video: false };
  // A bye's reason when this side's microphone was refused.
  const BYE_MICROPHONE = 'microphone';

  // Why call-media says `failed` (its data-reason).
  const Reason = Object.freeze({
    microphone: 'microphone',           // this page's microphone was refused or is missing
    peerMicrophone: 'peer_microphone',  // the other side's was
    peerLeft: 'peer_left',              // the other side closed its audio (bye)
    lost: 'lost',                       // ICE failed: the audio path is gone
    notJoined: 'not_joined',            // the call is connected, but not on this page (e.g. reloaded)
    unsupported: 'unsupported',         // no WebRTC or no mediaDevices (e.g. not a secure context)
  });

  /** A signalled candidate as an RTCIceCandidateInit: sent as the object
   *  RTCIceCandidate.toJSON() gives; its JSON text or a bare `candidate:` line
   *  (the first m-line) are taken too. */
  function candidateInit(value) {
    if (value && typeof value === 'object') return value;
    if (typeof value !== 'string' || !value) return null;
    if (value.startsWith('{')) {
      try {
        const init = JSON.parse(value);
        return init && typeof init.candidate === 'string' ? init : null;
      } catch (e) {
        return null;
      }
    }
    return { candidate: value, sdpMLineIndex: 0 };
  }

  /** RTCIceServer objects from what the server handed out; null when `value` has none. */
  function iceServersFrom(value) {
    const list = value && Array.isArray(value.ice_servers) ? value.ice_servers : null;
    if (!list) return null;
    const servers = [];
    for (const s of list) {
      if (!s || typeof s !== 'object') continue;
      const urls = Array.isArray(s.urls) ? s.urls.filter((u) => typeof u === 'string') : typeof s.urls === 'string' ? [s.urls] : [];
      if (!urls.length) continue;
      const server = { urls };
      if (typeof s.username === 'string') server.username = s.username;
      if (typeof s.credential === 'string') server.credential = s.credential;
      servers.push(server);
    }
    return servers;
  }

  const isTurn = (url) => /^turns?:/i.test(url);

  /**
   * options:
   *   role                 this page's party
   *   signal(body)         sends one `signal` request ({call_id, by, kind, ...}); a Promise
   *   onChange()           the media state changed: re-render the banner
   */
  function create({ role, signal, onChange }) {
    const supported = typeof RTCPeerConnection === 'function' && !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);

    let iceServers = [];
    let icePolicy = null;           // the server's explicit choice, if it made one

    // The call whose audio this is, and its audio.
    let callId = null;
    let isCaller = false;
    let connected = false;          // the call record says connected
    let micRequest = null;          // Promise<MediaStream|null> once asked for this call
    let stream = null;
    let pc = null;
    let offered = false;            // the caller's first offer went out
    let pendingCandidates = [];     // before the remote description
    let state = null;               // null | 'connecting' | 'connected' | 'failed'
    let reason = null;              // data-reason while failed
    let muted = false;
    let statsTimer = null;
    let stats = emptyStats();
    // Everything ever opened, to show that it was closed (tests; a leak shows here).
    const allStreams = [];
    const allPcs = [];

    const dom = buildElement();

    function emptyStats() {
      return { bytesReceived: 0, audioLevel: 0, totalAudioEnergy: 0, packetsReceived: 0, bytesSent: 0, localCandidateType: null, remoteCandidateType: null };
    }

    // ------------------------------------------------------------ the banner's part

    function buildElement() {
      const root = document.createElement('div');
      root.className = 'call-media';
      root.setAttribute('data-testid', 'call-media');
      const text = document.createElement('span');
      text.className = 'call-media-text';
      const mute = document.createElement('button');
      mute.type = 'button';
      mute.className = 'btn btn-mute';
      mute.setAttribute('data-testid', 'mute');
      mute.addEventListener('click', toggleMute);
      const rejoin = document.createElement('button');
      rejoin.type = 'button';
      rejoin.className = 'btn btn-rejoin';
      rejoin.setAttribute('data-testid', 'rejoin');
      rejoin.textContent = 'Rejoin audio';
      rejoin.addEventListener('click', () => join());
      const audio = document.createElement('audio');
      audio.autoplay = true;
      root.append(text, mute, rejoin, audio);
      return { root, text, mute, rejoin, audio };
    }

    const FAILED_TEXT = {
      [Reason.microphone]: 'Microphone blocked: allow it in the browser to talk. The call goes on without audio.',
      [Reason.peerMicrophone]: 'The other side has no microphone: no audio in this call.',
      [Reason.peerLeft]: 'The other side\'s audio is off (no microphone, or it left).',
      [Reason.lost]: 'Audio lost.',
      [Reason.notJoined]: 'Audio is not on in this page.',
      [Reason.unsupported]: 'This browser cannot carry the call\'s audio.',
    };

    function render() {
      const { root, text, mute, rejoin } = dom;
      root.dataset.state = state || 'connecting';
      root.dataset.rxBytes = String(stats.bytesReceived);
      if (state === 'failed') root.dataset.reason = reason;
      else delete root.dataset.reason;
      text.textContent = state === 'connected' ? 'Audio connected' : state === 'failed' ? FAILED_TEXT[reason] || 'No audio.' : 'Connecting audio…';
      const live = !!stream && state !== 'failed';
      mute.hidden = !live;
      mute.setAttribute('aria-pressed', String(muted));
      mute.textContent = muted ? 'Unmute' : 'Mute';
      rejoin.hidden = !(state === 'failed' && connected && reason !== Reason.peerMicrophone && reason !== Reason.unsupported);
    }

    function setState(next, why) {
      const changed = state !== next || reason !== (why || null);
      state = next;
      reason = next === 'failed' ? why : null;
      render();
      if (changed) notify();
    }

    function notify() {
      try {
        if (onChange) onChange();
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }

    // ------------------------------------------------------------ microphone

    /** Asks for the microphone once per call (again on a rejoin after a refusal). */
    function askMicrophone() {
      if (micRequest) return micRequest;
      if (!supported) {
        micRequest = Promise.resolve(null);
        return micRequest;
      }
      const forCall = callId;
      micRequest = navigator.mediaDevices.getUserMedia(MEDIA_CONSTRAINTS).then(
        (s) => {
          allStreams.push(s);
          if (callId !== forCall) {
            // The call ended while the browser asked.
            stopStream(s);
            return null;
          }
          stream = s;
          for (const t of s.getAudioTracks()) t.enabled = !muted;
          render();
          return s;
        },
        () => null,
      );
      return micRequest;
    }

    function stopStream(s) {
      if (s) for (const t of s.getTracks()) t.stop();
    }

    function toggleMute() {
      muted = !muted;
      if (stream) for (const t of stream.getAudioTracks()) t.enabled = !muted;
      render();
      notify();
    }

    // ------------------------------------------------------------ peer connection

    function rtcConfig() {
      const relay = icePolicy ? icePolicy === 'relay' : iceServers.some((s) => s.urls.some(isTurn));
      return { iceServers, iceTransportPolicy: relay ? 'relay' : 'all', bundlePolicy: 'max-bundle' };
    }

    function send(kind, extra) {
      if (!callId) return Promise.resolve();
      const body = { call_id: callId, by: role, kind, ...extra };
      return new Promise((resolve) => resolve(signal(body))).catch(() => {
        // The call moved on (invalid_state / not_found) or the connection dropped: the call
        // record tells the page what happened; the audio follows it.
      });
    }

    /** A fresh peer connection with this page's microphone on it. */
    function openPeer() {
      closePeer();
      const peer = new RTCPeerConnection(rtcConfig());
      allPcs.push(peer);
      pc = peer;
      if (stream) for (const t of stream.getAudioTracks()) peer.addTrack(t, stream);
      else peer.addTransceiver('audio', { direction: 'recvonly' });
      peer.onicecandidate = (e) => {
        if (pc !== peer || !e.candidate || !e.candidate.candidate) return;
        send('candidate', { candidate: e.candidate.toJSON() });
      };
      peer.ontrack = (e) => {
        if (pc !== peer) return;
        dom.audio.srcObject = e.streams[0] || new MediaStream([e.track]);
        dom.audio.play().catch(() => {});
      };
      peer.onconnectionstatechange = () => {
        if (pc !== peer) return;
        const s = peer.connectionState;
        if (s === 'connected') setState('connected');
        else if (s === 'failed') {
          // The audio path is gone (the other side vanished, or the network): close it all;
          // rejoining asks for the microphone again (no prompt once permission was given).
          closePeer();
          stopStream(stream);
          stream = null;
          micRequest = null;
          setState('failed', Reason.lost);
        } else if (s !== 'closed' && state !== 'failed') setState('connecting');
      };
      startStats();
      setState('connecting');
      return peer;
    }

    function closePeer() {
      stopStats();
      if (pc) {
        const old = pc;
        pc = null;
        old.onicecandidate = old.ontrack = old.onconnectionstatechange = null;
        old.close();
      }
      dom.audio.srcObject = null;
    }

    async function offer() {
      // The other side's candidates for an older offer are of no use to this one.
      pendingCandidates = [];
      await describeLocal(openPeer(), 'offer');
    }

    async function answer(sdp) {
      const peer = openPeer();
      await peer.setRemoteDescription({ type: 'offer', sdp });
      await flushCandidates(peer);
      await describeLocal(peer, 'answer');
    }

    /** Creates this side's offer or answer (setLocalDescription's implicit one) and signals it. */
    async function describeLocal(peer, kind) {
      if (pc !== peer) return;
      await peer.setLocalDescription();
      if (pc !== peer) return;
      await send(kind, { sdp: peer.localDescription.sdp });
    }

    async function flushCandidates(peer) {
      const queued = pendingCandidates;
      pendingCandidates = [];
      for (const c of queued) await peer.addIceCandidate(c).catch(() => {});
    }

    // ------------------------------------------------------------ stats

    function startStats() {
      stopStats();
      stats = emptyStats();
      statsTimer = setInterval(readStats, STATS_PERIOD_MS);
    }

    function stopStats() {
      clearInterval(statsTimer);
      statsTimer = null;
    }

    async function readStats() {
      const peer = pc;
      if (!peer) return;
      let report;
      try {
        report = await peer.getStats();
      } catch (e) {
        return;
      }
      if (pc !== peer) return;
      const next = emptyStats();
      let pairId = null;
      report.forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'audio') {
          next.bytesReceived += r.bytesReceived || 0;
          next.packetsReceived += r.packetsReceived || 0;
          next.audioLevel = Math.max(next.audioLevel, r.audioLevel || 0);
          next.totalAudioEnergy += r.totalAudioEnergy || 0;
        } else if (r.type === 'outbound-rtp' && r.kind === 'audio') {
          next.bytesSent += r.bytesSent || 0;
        } else if (r.type === 'transport' && r.selectedCandidatePairId) {
          pairId = r.selectedCandidatePairId;
        }
      });
      const pair = pairId && report.get(pairId);
      if (pair) {
        const local = report.get(pair.localCandidateId);
        const remote = report.get(pair.remoteCandidateId);
        next.localCandidateType = local ? local.candidateType : null;
        next.remoteCandidateType = remote ? remote.candidateType : null;
      }
      stats = next;
      dom.root.dataset.rxBytes = String(stats.bytesReceived);
    }

    // ------------------------------------------------------------ joining

    /** This page joins the connected call's audio: microphone, then offer. */
    async function join() {
      if (!connected || !callId) return;
      if (state === 'failed' && reason === Reason.microphone) micRequest = null; // ask again
      setState('connecting');
      const s = await askMicrophone();
      if (!connected) return;
      if (!s) {
        failMicrophone();
        return;
      }
      await offer().catch(() => setState('failed', Reason.lost));
    }

    function failMicrophone() {
      closePeer();
      setState('failed', supported ? Reason.microphone : Reason.unsupported);
      send('bye', { reason: BYE_MICROPHONE });
    }

    /** The call record, as the page shows it (null when none). */
    function follow(call) {
      const active = call && (call.state === 'ringing' || call.state === 'connected');
      if (!active) {
        reset();
        return;
      }
      if (call.call_id !== callId) {
        // Not the call this page placed or accepted: no microphone for it yet.
        reset();
        callId = call.call_id;
      }
      isCaller = call.from === role;
      if (call.state !== 'connected' || connected) return;
      connected = true;
      if (!micRequest) {
        // Connected, but not placed or accepted on this page: offer to rejoin.
        setState('failed', Reason.notJoined);
        return;
      }
      setState('connecting');
      micRequest.then((s) => {
        if (!connected || call.call_id !== callId) return;
        if (!s) failMicrophone();
        // (failed: the callee's bye, microphone refused, came first)
        else if (isCaller && !offered && !pc && state !== 'failed') {
          offered = true;
          offer().catch(() => setState('failed', Reason.lost));
        }
      });
    }

    /** This page places call `id` (before the server has it) or accepts it. */
    function placing(id) {
      if (callId !== id) reset();
      callId = id;
      askMicrophone();
    }

    function onSignal(payload) {
      if (!payload || payload.from === role || !callId || payload.call_id !== callId) return;
      const kind = payload.kind;
      if (kind === 'bye') {
        closePeer();
        // Our own refused microphone stays the news: it is the one this page can do something about.
        if (!(state === 'failed' && reason === Reason.microphone)) {
          setState('failed', payload.reason === BYE_MICROPHONE ? Reason.peerMicrophone : Reason.peerLeft);
        }
        return;
      }
      if (kind === 'offer' && typeof payload.sdp === 'string') {
        // Both offered at once (two rejoins): the driver's offer wins.
        if (pc && pc.signalingState === 'have-local-offer' && role === 'driver') return;
        const sdp = payload.sdp;
        // A new offer starts over: the candidates that follow it wait for the new connection
        // (the old one would swallow them while the answer waits for the microphone).
        closePeer();
        pendingCandidates = [];
        (micRequest || Promise.resolve(null)).then((s) => {
          // Without a microphone of ours (not joined here, or refused) there is nothing to answer
          // with: the other side is told by our bye, or this page offers when it joins.
          if (!s || payload.call_id !== callId) return;
          answer(sdp).catch(() => setState('failed', Reason.lost));
        });
      } else if (kind === 'answer' && typeof payload.sdp === 'string') {
        if (!pc || pc.signalingState !== 'have-local-offer') return;
        const peer = pc;
        peer.setRemoteDescription({ type: 'answer', sdp: payload.sdp })
          .then(() => flushCandidates(peer))
          .catch(() => setState('failed', Reason.lost));
      } else if (kind === 'candidate') {
        const init = candidateInit(payload.candidate);
        if (!init) return;
        if (pc && pc.remoteDescription) pc.addIceCandidate(init).catch(() => {});
        else if (micRequest) pendingCandidates.push(init); // a page not in the audio keeps none
      }
    }

    /** Ends this page's audio: tracks stopped, connection closed. */
    function reset() {
      closePeer();
      pendingCandidates = [];
      stopStream(stream);
      stream = null;
      micRequest = null;
      callId = null;
      connected = false;
      offered = false;
      muted = false;
      stats = emptyStats();
      const changed = state !== null;
      state = null;
      reason = null;
      render();
      if (changed) notify();
    }

    /** Takes the ICE servers from a reply or an event that has them: the make_call reply's
     *  `ice` ({ice_servers, ice_transport_policy}), or such fields at its top level. */
    function noteIceServers(value) {
      const ice = value && value.ice && typeof value.ice === 'object' ? value.ice : value;
      const servers = iceServersFrom(ice);
      if (servers) iceServers = servers;
      if (ice && (ice.ice_transport_policy === 'relay' || ice.ice_transport_policy === 'all')) icePolicy = ice.ice_transport_policy;
    }

    window.addEventListener('pagehide', reset);

    function snapshot() {
      return {
        callId,
        state,
        reason,
        muted,
        connectionState: pc ? pc.connectionState : null,
        iceTransportPolicy: pc ? pc.getConfiguration().iceTransportPolicy : rtcConfig().iceTransportPolicy,
        iceServers: iceServers.map((s) => s.urls.join(' ')),
        stats: { ...stats },
        liveTracks: allStreams.reduce((n, s) => n + s.getTracks().filter((t) => t.readyState === 'live').length, 0),
        openPeers: allPcs.filter((p) => p.connectionState !== 'closed').length,
      };
    }

    Object.defineProperty(window, 'navietakieCall', { value: Object.freeze({ snapshot }), enumerable: true });
    render();

    return Object.freeze({
      /** The banner's audio part while the call is connected (one element, moved on re-render). */
      element: () => (state ? dom.root : null),
      follow,
      placing,
      accepting: placing,
      onSignal,
      noteIceServers,
      reset,
      snapshot,
    });
  }

  window.NavietakieCallMedia = Object.freeze({ create, iceServersFrom, candidateInit });
})();
