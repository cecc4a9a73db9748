// The call's audio in a real browser (ctest test_browser_call, `e2e.mjs --suite call`): Chromium's
// fake microphone (a beeping tone) on loopback, WebRTC signalled over the booking's `signal` topic
// (docs/protocol.md "signal"), the page's audio in web/public/call_media.js.
//
// What the pages receive is read from getStats() through window.navietakieCall.snapshot() (inbound
// RTP bytesReceived, audioLevel, totalAudioEnergy, the selected candidate pair) and from the banner's
// hooks (call-media data-state / data-rx-bytes / data-reason, mute aria-pressed, rejoin).
//
// Needs the server side of issue 14 (the `signal` topic, ice_servers / turn_secret, and coturn's test
// helper tests/support/turn.sh), and web/public/wire.js generated from a core/wire.hpp with `signal`.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { assert, bookingCode, holds, lastResorts, poll, sleep, withTimeout } from './lib/harness.mjs';
import { portAccepts, terminate } from './lib/broker.mjs';

// Runs in the page.
function readMedia() {
  const el = document.querySelector('[data-testid="call-media"]');
  const mute = document.querySelector('[data-testid="mute"]');
  const rejoin = document.querySelector('[data-testid="rejoin"]');
  const shown = (e) => !!e && e.isConnected && !e.hidden && e.checkVisibility();
  return {
    hook: el && el.isConnected ? { state: el.dataset.state, rxBytes: Number(el.dataset.rxBytes), reason: el.dataset.reason ?? null } : null,
    mute: shown(mute) ? mute.getAttribute('aria-pressed') : null,
    rejoin: shown(rejoin),
    requests: window.__e2eMediaRequests,
    media: window.navietakieCall ? window.navietakieCall.snapshot() : null,
  };
}

const describe = (m) => JSON.stringify({ hook: m.hook, mute: m.mute, rejoin: m.rejoin, requests: m.requests, state: m.media?.state, pc: m.media?.connectionState, stats: m.media?.stats, liveTracks: m.media?.liveTracks, openPeers: m.media?.openPeers });

const media = (client) => client.page.evaluate(readMedia);

function untilMedia(client, what, accept, timeoutMs = 20000) {
  return poll(`${client.label}: ${what}`, () => media(client), accept, { timeoutMs, intervalMs: 200, show: describe });
}

// Counts the MQTT frames a page receives on its WebSocket that carry an events/signal topic.
function countSignals(counter) {
  return async (context) => {
    await context.routeWebSocket(/.*/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => server.send(m));
      server.onMessage((m) => {
        if (typeof m !== 'string' && m.includes('/events/signal')) counter.frames += 1;
        ws.send(m);
      });
    });
  };
}

// Audio flows into `client`: bytes received grow (in getStats and in data-rx-bytes), and the
// tone's level is above zero at some point.
// The level that counts as heard: above the one-bit comfort noise (1/32768) a muted sender's
// receiver may still decode, below the fake microphone's tone (128/32768 and up, as measured).
const AUDIBLE = 1 / 1024;

async function assertHearing(ctx, client) {
  const first = await untilMedia(client, 'call-media connected, inbound audio bytes > 0', (m) => m.hook?.state === 'connected' && m.media.stats.bytesReceived > 0);
  const heard = await untilMedia(client, `inbound audioLevel >= ${AUDIBLE} (the fake tone heard)`, (m) => m.media.stats.audioLevel >= AUDIBLE, 10000);
  const later = await untilMedia(client, `data-rx-bytes grown past ${first.hook.rxBytes}`, (m) => m.hook.rxBytes > first.hook.rxBytes && m.media.stats.bytesReceived > first.media.stats.bytesReceived, 10000);
  ctx.log(`${client.label}: audio in: bytesReceived ${first.media.stats.bytesReceived} -> ${later.media.stats.bytesReceived}, data-rx-bytes ${later.hook.rxBytes}, audioLevel ${heard.media.stats.audioLevel.toFixed(4)}, pair ${later.media.stats.localCandidateType}/${later.media.stats.remoteCandidateType}`);
  return later;
}

// Audio energy received by `client` over `ms`: ~0 when the other side is muted.
async function energyOver(client, ms) {
  const a = (await media(client)).media.stats;
  await sleep(ms);
  const b = (await media(client)).media.stats;
  return { energy: b.totalAudioEnergy - a.totalAudioEnergy, bytes: b.bytesReceived - a.bytesReceived, level: b.audioLevel };
}

// Both pages: the call ended, its audio closed (every microphone track stopped, every peer connection closed).
async function assertMediaClosed(clients) {
  for (const c of clients) {
    await c.until('call ended (call-state ended or gone)', (h) => h.call === 'ended' || h.call === null);
    await untilMedia(c, 'call-media gone, tracks stopped, peer connections closed', (m) => m.hook === null && m.media.liveTracks === 0 && m.media.openPeers === 0 && m.media.state === null, 10000);
  }
}

async function callAndAccept({ driver, passenger }) {
  await driver.hook('call').click({ timeout: 5000 });
  await Promise.all([driver.untilCall('ringing'), passenger.untilCall('ringing')]);
  await passenger.hook('accept').click({ timeout: 5000 });
  await Promise.all([driver.untilCall('connected'), passenger.untilCall('connected')]);
}

// ---------------------------------------------------------------- coturn

// The first line `stream` writes.
function firstLineOf(stream) {
  return new Promise((resolve, reject) => {
    let text = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      text += chunk;
      const nl = text.indexOf('\n');
      if (nl >= 0) resolve(text.slice(0, nl));
    });
    stream.once('end', () => reject(new Error(`ended before a line (got "${text.slice(0, 200)}")`)));
  });
}

// coturn on a free port of 127.0.0.1 with TURN REST credentials from a random secret, through the
// test helper tests/support/turn.sh: it prints {pid, port, secret, ice_servers} and runs until
// SIGTERM to its pid (it stops turnserver and removes its temp dir). Its log goes to the artifacts.
async function startTurn(ctx, logPath) {
  const script = fileURLToPath(new URL('../support/turn.sh', import.meta.url));
  assert(fs.existsSync(script), `${script} is missing`);
  const log = fs.openSync(logPath, 'w');
  const child = spawn(script, [], { stdio: ['ignore', 'pipe', log] });
  fs.closeSync(log);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  // SIGTERM, not SIGKILL, even as a last resort: the script passes it on to turnserver.
  const lastResort = () => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGTERM');
  };
  lastResorts.add(lastResort);
  ctx.cleanups.add('turnserver', async () => {
    await terminate(child, exited, 5000);
    lastResorts.delete(lastResort);
  });
  const turn = JSON.parse(await withTimeout(firstLineOf(child.stdout), 10000, 'tests/support/turn.sh: its JSON line'));
  await poll('turnserver accepting on its port', () => portAccepts(turn.port), (ok) => ok || child.exitCode !== null, { timeoutMs: 10000, show: () => fs.readFileSync(logPath, 'utf8').slice(-400) });
  assert(child.exitCode === null, `tests/support/turn.sh exited at start (${child.exitCode}):\n${fs.readFileSync(logPath, 'utf8').slice(-800)}`);
  return turn;
}

// ---------------------------------------------------------------- scenarios

export function callScenarios({ open, openPair, artifact, scenarioBroker, authBroker }) {
  const openMediaPair = (ctx, { broker, passengerMedia = 'granted', tokens = {} } = {}) => openPair(ctx, {
    driver: { media: 'granted', broker, token: tokens.driver },
    passenger: { media: passengerMedia, broker, token: tokens.passenger },
  });

  return [
    {
      name: 'call audio: both hear, mute silences, hang up closes; another booking hears no signal',
      timeoutMs: 90000,
      async run(ctx) {
        const ours = { frames: 0 };
        const theirs = { frames: 0 };
        const driver = await open(ctx, 'driver', { media: 'granted', prepare: countSignals(ours) });
        const passenger = await open(ctx, 'passenger', { media: 'granted' });
        // A page of another booking, with a microphone, on the same broker.
        const other = await open({ ...ctx, code: bookingCode() }, 'passenger', { media: 'granted', label: 'other-booking', prepare: countSignals(theirs) });
        await Promise.all([driver, passenger, other].map((c) => c.untilConnection('connected')));
        for (const c of [driver, passenger]) {
          const m = await media(c);
          assert(m.requests === 0, `${c.label}: getUserMedia asked ${m.requests} times before any call, expected 0`);
        }

        await driver.hook('call').click({ timeout: 5000 });
        await Promise.all([driver.untilCall('ringing'), passenger.untilCall('ringing')]);
        await untilMedia(driver, 'the caller asked for the microphone when placing the call', (m) => m.requests === 1, 5000);
        assert((await media(passenger)).requests === 0, 'passenger: microphone asked for while only ringing');
        await passenger.hook('accept').click({ timeout: 5000 });
        await Promise.all([driver.untilCall('connected'), passenger.untilCall('connected')]);
        await untilMedia(passenger, 'the callee asked for the microphone when accepting', (m) => m.requests === 1, 5000);
        ctx.log('microphone asked for: by the caller on placing, by the callee on accepting');

        await assertHearing(ctx, driver);
        await assertHearing(ctx, passenger);
        for (const c of [driver, passenger]) {
          const m = await media(c);
          assert(m.mute === 'false', `${c.label}: mute aria-pressed=${m.mute}, expected false (shown, not pressed)`);
        }
        await driver.screenshot(artifact('driver-call-audio.png'));
        await passenger.screenshot(artifact('passenger-call-audio.png'));

        // The driver mutes: the passenger's received energy stops growing and its level drops to 0;
        // the driver still hears the passenger.
        await driver.hook('mute').click({ timeout: 5000 });
        await untilMedia(driver, 'mute aria-pressed=true', (m) => m.mute === 'true', 5000);
        await sleep(1500); // what was on the way when muting
        const silent = await energyOver(passenger, 2500);
        // ~0, not 0: the receiver's decoder may still put out comfort noise of one least significant
        // bit (level 1/32768 was seen once); the fake microphone heard is at least 128/32768.
        assert(silent.energy < 1e-4 && silent.level < AUDIBLE, `passenger: with the driver muted, received audio energy ${silent.energy} and level ${silent.level} over 2.5 s, expected ~0`);
        const still = await energyOver(driver, 2500);
        assert(still.energy > 0, `driver: hears nothing from the passenger while muted itself (energy ${still.energy})`);
        ctx.log(`driver muted: passenger receives energy ${silent.energy.toExponential(2)} (level ${silent.level}) over 2.5 s, driver still ${still.energy.toFixed(3)}`);
        await driver.hook('mute').click({ timeout: 5000 });
        await untilMedia(driver, 'mute aria-pressed=false', (m) => m.mute === 'false', 5000);
        await poll('passenger: audio energy grows again after unmute', () => energyOver(passenger, 1000), (e) => e.energy > 0, { timeoutMs: 10000, show: JSON.stringify });

        await passenger.hook('hangup').click({ timeout: 5000 });
        await assertMediaClosed([driver, passenger]);
        ctx.log('hung up: tracks stopped and peer connections closed on both pages');

        assert(ours.frames > 0, `the driver's page received no events/signal frame (counter broken?)`);
        assert(theirs.frames === 0, `the page of another booking received ${theirs.frames} events/signal frames, expected 0`);
        const o = await media(other);
        assert(o.requests === 0 && o.media.state === null, `the page of another booking: ${describe(o)}`);
        ctx.log(`events/signal frames: driver ${ours.frames}, another booking's page ${theirs.frames}`);
      },
    },
    {
      name: 'call audio: microphone refused, the call still works and the caller is told',
      timeoutMs: 60000,
      async run(ctx) {
        const pair = await openMediaPair(ctx, { passengerMedia: 'refused' });
        const { driver, passenger } = pair;
        await callAndAccept(pair);
        const p = await untilMedia(passenger, 'call-media failed, data-reason=microphone', (m) => m.hook?.state === 'failed' && m.hook.reason === 'microphone');
        assert(p.requests === 1, `passenger: getUserMedia asked ${p.requests} times, expected 1`);
        // Told by the callee's bye, whose reason the relay carries: the microphone.
        const d = await untilMedia(driver, 'call-media failed, data-reason=peer_microphone (told by the bye)', (m) => m.hook?.state === 'failed' && m.hook.reason === 'peer_microphone');
        assert(d.media.openPeers === 0, `driver: ${d.media.openPeers} peer connections open after the callee's refusal, expected 0`);
        await passenger.screenshot(artifact('passenger-microphone-refused.png'));
        ctx.log(`refused: passenger "${p.hook.reason}", driver "${d.hook.reason}"`);
        // Signalling goes on: the call stays connected and ends normally.
        await holds('the call stays connected on both pages', async () => [(await driver.hooks()).call, (await passenger.hooks()).call], (s) => s.every((x) => x === 'connected'), { durationMs: 1500 });
        await driver.hook('hangup').click({ timeout: 5000 });
        await assertMediaClosed([driver, passenger]);
      },
    },
    {
      name: 'call audio: the callee reloads mid-call and rejoins',
      timeoutMs: 90000,
      async run(ctx) {
        const pair = await openMediaPair(ctx);
        const { driver, passenger } = pair;
        await callAndAccept(pair);
        await assertHearing(ctx, passenger);
        await passenger.page.reload({ waitUntil: 'load', timeout: 15000 });
        await passenger.untilConnection('connected');
        await passenger.untilCall('connected');
        const m = await untilMedia(passenger, 'after the reload: call-media failed (not_joined), rejoin offered', (x) => x.hook?.state === 'failed' && x.hook.reason === 'not_joined' && x.rejoin);
        assert(m.requests === 0, `passenger: microphone asked for ${m.requests} times on reload before rejoining, expected 0`);
        await passenger.screenshot(artifact('passenger-rejoin.png'));
        await passenger.hook('rejoin').click({ timeout: 5000 });
        await assertHearing(ctx, passenger);
        await assertHearing(ctx, driver);
        const d = await media(driver);
        assert(d.media.openPeers === 1, `driver: ${d.media.openPeers} peer connections open after the rejoin, expected 1 (the old one closed)`);
        ctx.log('rejoined: the passenger offered, the driver answered on a fresh connection');
        await driver.hook('hangup').click({ timeout: 5000 });
        await assertMediaClosed([driver, passenger]);
      },
    },
    {
      name: 'call audio: the other side vanishes (browser closed), the audio is closed',
      timeoutMs: 120000,
      async run(ctx) {
        const pair = await openMediaPair(ctx);
        const { driver, passenger } = pair;
        await callAndAccept(pair);
        await assertHearing(ctx, driver);
        await passenger.close();
        const t0 = Date.now();
        // ICE notices the path is gone (consent freshness: ~30 s in Chromium), or the call ends.
        const m = await untilMedia(driver, 'audio closed: call-media failed (lost) or the call ended; tracks stopped, peer connections closed',
          (x) => (x.hook === null || (x.hook.state === 'failed' && x.hook.reason === 'lost')) && x.media.openPeers === 0 && x.media.liveTracks === 0, 60000);
        ctx.log(`passenger's browser closed: the driver's audio closed after ${((Date.now() - t0) / 1000).toFixed(1)} s (${m.hook ? `call-media ${m.hook.state}/${m.hook.reason}, rejoin ${m.rejoin ? 'offered' : 'not offered'}` : 'call ended'})`);
      },
    },
    {
      name: 'call audio: a declined and a missed call release the caller\'s microphone',
      timeoutMs: 60000,
      async run(ctx) {
        const { driver, passenger } = await openMediaPair(ctx);
        const ringingWithMicrophone = (m) => m.requests >= 1 && m.media.liveTracks === 1;
        const released = (m) => m.media.liveTracks === 0 && m.media.openPeers === 0 && m.media.state === null;
        await driver.hook('call').click({ timeout: 5000 });
        await passenger.untilCall('ringing');
        await untilMedia(driver, 'ringing: the caller\'s microphone track is live', ringingWithMicrophone, 10000);
        await passenger.hook('decline').click({ timeout: 5000 });
        await driver.until('call ended (declined)', (h) => h.call === 'ended' || h.call === null);
        await untilMedia(driver, 'declined: microphone track stopped, nothing open', released, 10000);
        // Again, and nobody answers: the broker ends it as missed after call_ring_timeout_s (3 s).
        await driver.until('call enabled again', (h) => h.controls.call.present && !h.controls.call.disabled);
        await driver.hook('call').click({ timeout: 5000 });
        await passenger.untilCall('ringing');
        await untilMedia(driver, 'ringing again: the microphone track is live', (m) => m.requests === 2 && m.media.liveTracks === 1, 10000);
        await driver.until('call ended (missed)', (h) => h.call === 'ended' || h.call === null, 15000);
        await untilMedia(driver, 'missed: microphone track stopped, nothing open', released, 10000);
        const p = await media(passenger);
        assert(p.requests === 0, `passenger: microphone asked for ${p.requests} times without accepting, expected 0`);
        ctx.log('declined and missed: the caller\'s microphone was released both times; the callee never asked for one');
      },
    },
    {
      name: 'call audio with authentication on (tokens for both parties)',
      timeoutMs: 90000,
      async run(ctx) {
        const auth = await authBroker(ctx);
        const pair = await openMediaPair(ctx, {
          broker: auth,
          tokens: { driver: await auth.token('drv-call', 'driver', ctx.code), passenger: await auth.token('pas-call', 'passenger', ctx.code) },
        });
        await callAndAccept(pair);
        await assertHearing(ctx, pair.driver);
        await assertHearing(ctx, pair.passenger);
        for (const c of [pair.driver, pair.passenger]) {
          const h = await c.hooks();
          assert(!h.error, `${c.label}: error shown during an authenticated call: ${JSON.stringify(h.error)}`);
        }
        await pair.passenger.hook('hangup').click({ timeout: 5000 });
        await assertMediaClosed([pair.driver, pair.passenger]);
      },
    },
    {
      name: 'call audio through coturn, relay-only ICE',
      timeoutMs: 90000,
      async run(ctx) {
        const turn = await startTurn(ctx, artifact('turnserver.log'));
        ctx.log(`turnserver (tests/support/turn.sh pid ${turn.pid}) on 127.0.0.1:${turn.port}, ice_servers ${turn.ice_servers}`);
        // With a turn: URL and its secret the broker hands each party short-lived REST credentials in its
        // make_call reply, and the page goes relay-only (docs/protocol.md, "ICE servers and TURN credentials").
        const broker = await scenarioBroker(ctx, 'turn', { pluginOpts: [`ice_servers=${turn.ice_servers}`, `turn_secret=${turn.secret}`] });
        const pair = await openMediaPair(ctx, { broker });
        await callAndAccept(pair);
        for (const c of [pair.driver, pair.passenger]) {
          const m = await assertHearing(ctx, c);
          assert(m.media.iceTransportPolicy === 'relay', `${c.label}: iceTransportPolicy ${m.media.iceTransportPolicy}, expected relay`);
          const pairType = await untilMedia(c, 'the selected candidate pair is relay on this side', (x) => x.media.stats.localCandidateType === 'relay', 10000);
          ctx.log(`${c.label}: selected pair ${pairType.media.stats.localCandidateType}/${pairType.media.stats.remoteCandidateType}, ICE servers ${pairType.media.iceServers.join(' | ')}`);
        }
        await pair.driver.hook('hangup').click({ timeout: 5000 });
        await assertMediaClosed([pair.driver, pair.passenger]);
      },
    },
  ];
}
