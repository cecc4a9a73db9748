#!/usr/bin/env node
// End-to-end test of the web client (ctest label `browser`): Debian's Chromium, headless, driven by
// playwright-core, against a real Mosquitto with the navietakie plugin that also serves web/public.
//
//   node tests/browser/e2e.mjs --plugin PATH --web DIR --ctl PATH --artifacts DIR [--only 2,3] [--suite call]
//
// --suite chat (the default) runs the scenarios below; --suite call the call audio scenarios of
// tests/browser/call.mjs (ctest test_browser_call), with Chromium's fake microphone.
//
// Every scenario has its own booking code and its own browsers (fresh profiles): a driver on a
// desktop-sized page and a passenger on a phone-sized one. Elements are found only through the
// data-testid hooks of web/README.md. A missing piece (Chromium, the built web app, playwright-core)
// is a failure, not a skip: the test command installs them.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { Runner, assert, holds, lastResorts, randomTag, sleep } from './lib/harness.mjs';
import { Broker, findProgram, run } from './lib/broker.mjs';
import { callScenarios } from './call.mjs';
import { CHROMIUM, DESKTOP, PHONE, describeHooks, duplicateSeqs, isSeq, openClient, openTab, testid } from './lib/pages.mjs';

const log = (line) => console.log(line);
// Below ctest's TIMEOUT (600 s), so that an overrun still cleans up after itself.
const RUN_BUDGET_MS = 560000;

// ---------------------------------------------------------------- arguments and prerequisites

const { values: args } = parseArgs({
  options: {
    plugin: { type: 'string' },
    web: { type: 'string' },
    ctl: { type: 'string' },
    artifacts: { type: 'string' },
    only: { type: 'string' },
    suite: { type: 'string', default: 'chat' },
  },
});

function preflight() {
  const missing = [];
  for (const key of ['plugin', 'web', 'ctl', 'artifacts']) if (!args[key]) missing.push(`--${key} is required`);
  if (missing.length) return { missing };
  const webDir = path.resolve(args.web);
  const exists = (p, what) => {
    if (!fs.existsSync(p)) missing.push(`${what} is missing: ${p}`);
  };
  exists(CHROMIUM, "Chromium (Debian's `chromium` package; scripts/test installs it)");
  exists(path.resolve(args.plugin), 'the plugin');
  exists(path.resolve(args.ctl), 'navietakie-ctl');
  exists(path.join(webDir, 'index.html'), 'the web app');
  exists(path.join(webDir, 'vendor', 'mqtt.min.js'), 'the bundled MQTT client (`npm run build` in web/)');
  const mosquitto = findProgram('mosquitto');
  if (!mosquitto) missing.push('mosquitto is missing (not in PATH nor /usr/sbin)');
  const mosquittoPub = findProgram('mosquitto_pub');
  if (!mosquittoPub) missing.push('mosquitto_pub is missing (package mosquitto-clients)');
  let chromium = null;
  try {
    const require = createRequire(path.join(webDir, '..', 'package.json'));
    ({ chromium } = require('playwright-core'));
  } catch (e) {
    missing.push(`playwright-core cannot be loaded from ${path.join(webDir, '..', 'node_modules')} (\`npm ci\` in web/): ${e.message.split('\n')[0]}`);
  }
  return { missing, webDir, mosquitto, mosquittoPub, chromium };
}

// ---------------------------------------------------------------- the run's shared state

const runner = new Runner({ log });
const env = {}; // filled by main(): webDir, artifacts, root, broker, chromium, mosquitto, ...

function pageUrl(broker, code, role, token) {
  const q = new URLSearchParams({ booking: code, role });
  if (token !== undefined) q.set('token', token);
  return `${broker.httpBase}/?${q}`;
}

// Opens one participant's page and registers it for the scenario's cleanup and checks.
async function open(ctx, role, { broker = env.broker, token, label = role, device, prepare, media } = {}) {
  const client = await openClient({
    chromium: env.chromium,
    profilesDir: env.profilesDir,
    role,
    label,
    device: device ?? (role === 'driver' ? DESKTOP : PHONE),
    url: pageUrl(broker, ctx.code, role, token),
    prepare,
    media,
  });
  ctx.clients.push(client);
  ctx.cleanups.add(`browser ${label}`, () => client.close());
  return client;
}

// The usual pair, both connected.
async function openPair(ctx, options = {}) {
  const driver = await open(ctx, 'driver', options.driver);
  const passenger = await open(ctx, 'passenger', options.passenger);
  await Promise.all([driver.untilConnection('connected'), passenger.untilConnection('connected')]);
  return { driver, passenger };
}

const artifact = (name) => path.join(env.artifacts, name);

// Each seq exactly once on the page (web/README.md: one entry per seq).
async function assertNoDuplicates(client, seqs = []) {
  const h = await client.hooks();
  const dups = duplicateSeqs(h);
  assert(dups.length === 0, `${client.label}: seqs shown more than once: ${dups.join(', ')}`);
  for (const seq of seqs) {
    const n = await client.page.locator(`${testid('message')}[data-seq="${seq}"]`).count();
    assert(n === 1, `${client.label}: [data-testid=message][data-seq="${seq}"] count is ${n}, expected 1`);
  }
}

function entriesWith(h, text) {
  return h.messages.filter((m) => m.text.includes(text));
}

// The other page shows message `seq` (from `sender`, containing `text`) as a confirmed entry.
function untilShown(client, { seq, sender, text, type = 'text' }, timeoutMs = 10000) {
  return client.until(
    `entry data-seq=${seq} data-sender=${sender} data-type=${type} containing "${text}"`,
    (h) => h.messages.some((m) => m.seq === String(seq) && m.sender === sender && m.type === type && m.text.includes(text) && m.pending !== 'true'),
    timeoutMs,
  );
}

const callGone = (h) => h.call === 'ended' || h.call === null;

// The size of the MQTT packet at the start of `buf` (fixed header byte, remaining length in 1 to 4
// bytes of 7 bits), or null while it is incomplete.
function mqttPacketSize(buf) {
  let length = 0;
  let scale = 1;
  for (let i = 1; i < 5; i += 1) {
    if (i >= buf.length) return null;
    length += (buf[i] & 0x7f) * scale;
    if ((buf[i] & 0x80) === 0) return i + 1 + length;
    scale *= 128;
  }
  throw new Error('malformed MQTT remaining length from the broker');
}

// What several bridges on a shared subscription can do to a page's events/message stream
// (docs/protocol.md "Ordering"): the event carrying `hold` is held back until the one carrying
// `releaseAfter` has gone through (out of seq order), the one carrying `drop` never arrives (its
// bridge died between commit and publish). It sits on the page's MQTT WebSocket, splitting the
// broker's frames into packets; everything else passes unchanged.
class EventReorder {
  constructor({ hold, drop, releaseAfter }) {
    Object.assign(this, { hold, drop, releaseAfter });
    this.held = null;
    this.dropped = 0;
    this.released = 0;
  }

  async install(context) {
    await context.routeWebSocket(/.*/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => server.send(m));
      let pending = Buffer.alloc(0);
      server.onMessage((m) => {
        if (typeof m === 'string') {
          ws.send(m);
          return;
        }
        pending = Buffer.concat([pending, m]);
        for (;;) {
          const size = mqttPacketSize(pending);
          if (size === null || size > pending.length) break;
          this.pass(Buffer.from(pending.subarray(0, size)), (p) => ws.send(p));
          pending = pending.subarray(size);
        }
      });
    });
  }

  pass(packet, send) {
    const isEvent = packet[0] >> 4 === 3 && packet.toString('utf8').includes('/events/message');
    const text = isEvent ? packet.toString('utf8') : '';
    if (isEvent && text.includes(this.drop)) {
      this.dropped += 1;
      return;
    }
    if (isEvent && text.includes(this.hold)) {
      this.held = packet;
      return;
    }
    send(packet);
    if (isEvent && text.includes(this.releaseAfter) && this.held) {
      send(this.held);
      this.held = null;
      this.released += 1;
    }
  }
}
const visible = (h, id) => h.controls[id].visible;

// Runs in the page before its scripts: document.visibilityState as the test sets it with
// setBackground, as when the user switches to another tab or app (every headless page is visible).
function backgroundSwitch() {
  let hidden = false;
  Object.defineProperty(document, 'visibilityState', { get: () => (hidden ? 'hidden' : 'visible'), configurable: true });
  Object.defineProperty(document, 'hidden', { get: () => hidden, configurable: true });
  window.__e2eSetBackground = (on) => {
    hidden = on;
    document.dispatchEvent(new Event('visibilitychange'));
  };
}

function setBackground(client, on) {
  return client.page.evaluate((value) => window.__e2eSetBackground(value), on);
}

// A request published as a service would (mosquitto_pub, MQTT 3.1.1, no reply asked for).
async function publishRequest(broker, code, action, body) {
  const pub = await run(env.mosquittoPub, [
    '-h', '127.0.0.1', '-p', String(broker.tcpPort), '-V', 'mqttv311', '-q', '1',
    '-t', `navietakie/v1/bookings/${code}/${action}`,
    '-m', JSON.stringify(body),
  ]);
  assert(pub.code === 0, `mosquitto_pub ${action} failed (${pub.code}): ${pub.stderr.trim()}`);
}

// ---------------------------------------------------------------- scenarios

const scenarios = [
  {
    name: 'connect and presence',
    timeoutMs: 45000,
    async run(ctx) {
      const driver = await open(ctx, 'driver');
      await driver.untilConnection('connected');
      // The passenger of a fresh booking was never seen.
      await driver.untilPresence('offline');
      const passenger = await open(ctx, 'passenger');
      await passenger.untilConnection('connected');
      await passenger.untilPresence('online');
      await driver.untilPresence('online');
      ctx.log('both connected, each sees the other online');
      // Closing the passenger's browser drops its connection: its Will / the broker's DISCONNECT
      // marks it offline, and the driver's page shows that.
      await passenger.close();
      await driver.untilPresence('offline', 10000);
      const h = await driver.hooks();
      assert(h.connection === 'connected', `driver: connection ${h.connection} after the passenger left, expected connected`);
      ctx.log('passenger closed: the driver sees it offline');

      // web/README.md: each tab is its own MQTT client (a fresh client id per page load, not shared
      // through storage), so a second tab of the same browser does not knock the first one off.
      const tab = await openTab(driver, { label: 'driver-tab2', url: driver.page.url() });
      ctx.clients.push(tab);
      ctx.cleanups.add('browser tab driver-tab2', () => tab.close());
      await tab.untilConnection('connected');
      await holds('two tabs of one browser both stay connected', async () => [(await driver.hooks()).connection, (await tab.hooks()).connection], (states) => states.every((s) => s === 'connected'), { durationMs: 2000 });
      const takeovers = env.broker.logText().split('\n').filter((l) => l.includes('already connected, closing old connection'));
      assert(takeovers.length === 0, `the broker saw a client id taken over (tabs sharing a client id?): ${takeovers.join(' | ')}`);
      ctx.log('a second tab of the driver\'s browser connects as its own client');
    },
  },
  {
    name: 'messages both ways',
    timeoutMs: 45000,
    async run(ctx) {
      const { driver, passenger } = await openPair(ctx);
      // A fresh booking: these texts are unique in it (and read well in the README's screenshots).
      const t1 = 'At gate B, silver Skoda';
      await driver.send(t1);
      const m1 = await driver.untilConfirmed(t1);
      assert(m1.sender === 'driver' && m1.type === 'text', `driver: own entry is ${JSON.stringify(m1)}, expected data-sender=driver data-type=text`);
      await untilShown(passenger, { seq: m1.seq, sender: 'driver', text: t1 });
      ctx.log(`driver -> passenger: seq ${m1.seq}`);

      const t2 = 'Coming, 2 minutes';
      await passenger.send(t2);
      const m2 = await passenger.untilConfirmed(t2);
      assert(m2.sender === 'passenger' && m2.type === 'text', `passenger: own entry is ${JSON.stringify(m2)}, expected data-sender=passenger data-type=text`);
      assert(Number(m2.seq) > Number(m1.seq), `passenger's seq ${m2.seq} is not after the driver's ${m1.seq}`);
      await untilShown(driver, { seq: m2.seq, sender: 'passenger', text: t2 });
      ctx.log(`passenger -> driver: seq ${m2.seq}`);

      const t3 = 'Great, see you';
      await driver.send(t3);
      const m3 = await driver.untilConfirmed(t3);
      await untilShown(passenger, { seq: m3.seq, sender: 'driver', text: t3 });

      await sleep(500); // a late duplicate (reply and event both rendered) would show by now
      for (const c of [driver, passenger]) {
        await assertNoDuplicates(c, [m1.seq, m2.seq, m3.seq]);
        for (const t of [t1, t2, t3]) {
          const n = entriesWith(await c.hooks(), t).length;
          assert(n === 1, `${c.label}: ${n} entries contain "${t}", expected 1`);
        }
      }
      await driver.screenshot(artifact('driver-desktop-chat.png'));
      await passenger.screenshot(artifact('passenger-phone-chat.png'));
    },
  },
  {
    name: 'full call: ring, accept, hang up',
    timeoutMs: 45000,
    async run(ctx) {
      const { driver, passenger } = await openPair(ctx);
      await Promise.all([driver.untilPresence('online'), passenger.untilPresence('online')]);
      await driver.send('Calling you now');
      await driver.untilConfirmed('Calling you now');

      await driver.hook('call').click({ timeout: 5000 });
      await Promise.all([driver.untilCall('ringing'), passenger.untilCall('ringing')]);
      await passenger.until(
        'callee while ringing: accept and decline visible, cancel and hangup not',
        (h) => visible(h, 'accept') && visible(h, 'decline') && !visible(h, 'cancel') && !visible(h, 'hangup'),
      );
      await driver.until(
        'caller while ringing: cancel visible, accept/decline/hangup not, call disabled',
        (h) => visible(h, 'cancel') && !visible(h, 'accept') && !visible(h, 'decline') && !visible(h, 'hangup') && h.controls.call.disabled,
      );
      ctx.log('ringing on both pages');

      await passenger.hook('accept').click({ timeout: 5000 });
      await Promise.all([driver.untilCall('connected'), passenger.untilCall('connected')]);
      for (const c of [driver, passenger]) {
        await c.until(
          'connected call: hangup visible, accept/decline/cancel not, call disabled',
          (h) => visible(h, 'hangup') && !visible(h, 'accept') && !visible(h, 'decline') && !visible(h, 'cancel') && h.controls.call.disabled,
        );
      }
      ctx.log('connected on both pages');
      const before = (await driver.hooks()).callText;
      await sleep(1600);
      const after = (await driver.hooks()).callText;
      // A running timer is nice to have, not part of the contract: reported, not asserted.
      ctx.log(`call banner over 1.6 s: "${before}" -> "${after}"${before === after ? ' (no running timer)' : ''}`);
      await driver.screenshot(artifact('driver-desktop-call.png'));
      await passenger.screenshot(artifact('passenger-phone-call.png'));

      await driver.hook('hangup').click({ timeout: 5000 });
      for (const c of [driver, passenger]) {
        await c.until('call ended (call-state ended or gone), hangup hidden', (h) => callGone(h) && !visible(h, 'hangup'));
        await c.until('a call-type timeline entry', (h) => h.messages.some((m) => m.type === 'call' && isSeq(m.seq)));
        await c.until('call enabled again', (h) => h.controls.call.present && !h.controls.call.disabled);
      }
      // Both pages show the same call entries.
      const callSeqs = (h) => h.messages.filter((m) => m.type === 'call').map((m) => m.seq).sort().join(',');
      const want = callSeqs(await driver.hooks());
      await passenger.until(`the driver's call entries (seqs ${want})`, (h) => callSeqs(h) === want);
      await sleep(300);
      await assertNoDuplicates(driver);
      await assertNoDuplicates(passenger);
      const media = await Promise.all([driver, passenger].map((c) => c.page.evaluate(() => window.__e2eMediaRequests)));
      ctx.log(`call entries: seqs ${want}; getUserMedia requests (all denied): driver ${media[0]}, passenger ${media[1]}`);
    },
  },
  {
    name: 'missed call',
    timeoutMs: 45000,
    async run(ctx) {
      const { driver, passenger } = await openPair(ctx);
      await passenger.hook('call').click({ timeout: 5000 });
      const started = Date.now();
      await Promise.all([driver.untilCall('ringing'), passenger.untilCall('ringing')]);
      await passenger.until('caller: cancel visible', (h) => visible(h, 'cancel'));
      await driver.until('callee: accept visible', (h) => visible(h, 'accept'));
      // Nobody answers: the broker ends it as missed after plugin_opt_call_ring_timeout_s 3.
      const missed = (h) => callGone(h) && !visible(h, 'accept') && !visible(h, 'cancel') && h.messages.some((m) => m.type === 'call' && isSeq(m.seq) && /missed/i.test(m.text));
      const budget = 3000 + 7000 - (Date.now() - started);
      await Promise.all([
        driver.until('call ended and a call entry mentioning "Missed"', missed, budget),
        passenger.until('call ended and a call entry mentioning "Missed"', missed, budget),
      ]);
      ctx.log(`missed after ${((Date.now() - started) / 1000).toFixed(1)} s`);
      await assertNoDuplicates(driver);
      await assertNoDuplicates(passenger);
    },
  },
  {
    name: 'a message from mosquitto_pub',
    timeoutMs: 45000,
    async run(ctx) {
      const { driver, passenger } = await openPair(ctx);
      const text = `from the shell ${randomTag()}`;
      await publishRequest(env.broker, ctx.code, 'send_message', { sender: 'driver', text });
      const seqs = [];
      for (const c of [driver, passenger]) {
        const h = await c.until(
          `an entry containing "${text}" with a data-seq, data-sender=driver, data-type=text`,
          (h) => h.messages.some((m) => m.text.includes(text) && isSeq(m.seq) && m.sender === 'driver' && m.type === 'text' && m.pending !== 'true'),
        );
        seqs.push(entriesWith(h, text)[0].seq);
      }
      assert(seqs[0] === seqs[1], `the pages show different seqs for the same message: driver ${seqs[0]}, passenger ${seqs[1]}`);
      await sleep(300);
      await assertNoDuplicates(driver, [seqs[0]]);
      await assertNoDuplicates(passenger, [seqs[0]]);
      ctx.log(`shown on both pages as seq ${seqs[0]}`);
    },
  },
  {
    name: 'events out of seq order and one never broadcast (several bridges)',
    timeoutMs: 45000,
    async run(ctx) {
      // The passenger's page gets seq 3 first, then seq 1, and never the event of seq 2: it must
      // show 1, 2, 3 in seq order, each once, seq 2 read with after_seq (docs/protocol.md "Ordering").
      const tag = randomTag();
      const texts = [`held back [${tag}]`, `never broadcast [${tag}]`, `arrives first [${tag}]`];
      const reorder = new EventReorder({ hold: texts[0], drop: texts[1], releaseAfter: texts[2] });
      const passenger = await open(ctx, 'passenger', { prepare: (context) => reorder.install(context) });
      await passenger.untilConnection('connected');
      // Its first history page is in: what follows reaches it as events only.
      await passenger.page.waitForFunction(() => window.navietakie && window.navietakie.state().historyLoaded, null, { timeout: 10000 });
      for (const text of texts) await publishRequest(env.broker, ctx.code, 'send_message', { sender: 'driver', text });
      const ordered = (h) => {
        const ours = h.messages.filter((m) => m.text.includes(tag) && m.pending !== 'true');
        return ours.length === 3 && ours.every((m, i) => m.seq === String(i + 1) && m.text.includes(texts[i]));
      };
      await passenger.until('seqs 1, 2, 3 in order: held back, never broadcast, arrives first', ordered);
      assert(reorder.dropped === 1, `the event of seq 2 was dropped ${reorder.dropped} times, expected 1`);
      assert(reorder.released === 1, `the event of seq 1 was released after seq 3 ${reorder.released} times, expected 1`);
      await sleep(500);
      await assertNoDuplicates(passenger, [1, 2, 3]);
      ctx.log('seq 3 arrived before seq 1, seq 2 never came as an event: shown 1, 2, 3');
    },
  },
  {
    name: 'reload shows the same history',
    timeoutMs: 45000,
    async run(ctx) {
      const { driver, passenger } = await openPair(ctx);
      const tag = randomTag();
      const texts = [`first [${tag}]`, `second [${tag}]`, `third, from the passenger [${tag}]`];
      await driver.send(texts[0]);
      await driver.untilConfirmed(texts[0]);
      await driver.send(texts[1]);
      await driver.untilConfirmed(texts[1]);
      await passenger.send(texts[2]);
      await passenger.untilConfirmed(texts[2]);
      const h0 = await passenger.until('all three messages confirmed', (h) => texts.every((t) => h.messages.some((m) => m.text.includes(t) && isSeq(m.seq) && m.pending !== 'true')));
      const shown = (h) => h.messages.filter((m) => isSeq(m.seq)).map((m) => ({ seq: m.seq, type: m.type, sender: m.sender, text: m.text }));
      const before = shown(h0);
      const seqList = (list) => list.map((m) => m.seq).sort((a, b) => a - b).join(',');
      ctx.log(`before reload: seqs ${seqList(before)}`);

      await passenger.page.reload({ waitUntil: 'load', timeout: 15000 });
      await passenger.untilConnection('connected');
      const h1 = await passenger.until(`the same seqs after reload (${seqList(before)})`, (h) => seqList(shown(h)) === seqList(before));
      const after = new Map(shown(h1).map((m) => [m.seq, m]));
      for (const b of before) {
        const a = after.get(b.seq);
        assert(a.type === b.type && a.sender === b.sender, `seq ${b.seq} was ${b.type}/${b.sender}, after reload ${a.type}/${a.sender}`);
      }
      for (const t of texts) {
        assert(entriesWith(h1, t).length === 1, `after reload ${entriesWith(h1, t).length} entries contain "${t}", expected 1`);
      }
      await assertNoDuplicates(passenger, before.map((m) => m.seq));
      ctx.log(`after reload: seqs ${seqList(shown(h1))}`);
    },
  },
  {
    name: 'broker restart mid-session',
    timeoutMs: 90000,
    async run(ctx) {
      const broker = env.broker;
      const { driver, passenger } = await openPair(ctx);
      const tag = randomTag();
      const t1 = `before the restart [${tag}]`;
      await driver.send(t1);
      const m1 = await driver.untilConfirmed(t1);
      await untilShown(passenger, { seq: m1.seq, sender: 'driver', text: t1 });

      await broker.stop();
      ctx.log(`broker stopped (ports ${broker.tcpPort}/${broker.wsPort})`);
      await Promise.all([driver, passenger].map((c) => c.until('connection disconnected or connecting', (h) => h.connection === 'disconnected' || h.connection === 'connecting')));

      const t2 = `sent while the broker was down [${tag}]`;
      await driver.send(t2);
      await driver.until(`an entry containing "${t2}" with data-pending=true`, (h) => entriesWith(h, t2).some((m) => m.pending === 'true'), 5000);
      await holds(`driver: "${t2}" stays pending while the broker is down`, () => driver.hooks(), (h) => entriesWith(h, t2).every((m) => m.pending === 'true'), { durationMs: 1000, show: describeHooks });

      await broker.start();
      ctx.log('broker started again on the same ports and data dir');
      const t0 = Date.now();
      await Promise.all([driver.untilConnection('connected', 15000), passenger.untilConnection('connected', 15000)]);
      ctx.log(`both reconnected within ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      const m2 = await driver.untilConfirmed(t2, 15000);
      assert(m2.sender === 'driver' && Number(m2.seq) > Number(m1.seq), `driver: the pending message was confirmed as ${JSON.stringify(m2)}, expected sender driver and a seq after ${m1.seq}`);
      await untilShown(passenger, { seq: m2.seq, sender: 'driver', text: t2 }, 15000);
      ctx.log(`pending message confirmed as seq ${m2.seq}, caught up by the passenger`);
      await Promise.all([driver.untilPresence('online'), passenger.untilPresence('online')]);

      await sleep(500);
      for (const c of [driver, passenger]) {
        await assertNoDuplicates(c, [m1.seq, m2.seq]);
        for (const t of [t1, t2]) {
          const n = entriesWith(await c.hooks(), t).length;
          assert(n === 1, `${c.label}: ${n} entries contain "${t}", expected 1`);
        }
      }
    },
  },
  {
    name: 'authentication: valid and bad token',
    timeoutMs: 60000,
    async run(ctx) {
      const auth = await authBroker(ctx);
      const token = (sub, role) => auth.token(sub, role, ctx.code);
      const { driver, passenger } = await openPair(ctx, {
        driver: { broker: auth, token: await token('drv-e2e', 'driver') },
        passenger: { broker: auth, token: await token('pas-e2e', 'passenger') },
      });
      const text = `authenticated hello [${randomTag()}]`;
      await driver.send(text);
      const m = await driver.untilConfirmed(text);
      await untilShown(passenger, { seq: m.seq, sender: 'driver', text });
      for (const c of [driver, passenger]) {
        const h = await c.hooks();
        assert(!h.error, `${c.label}: error shown with a valid token: ${JSON.stringify(h.error)}`);
      }
      ctx.log(`valid tokens: connected, message seq ${m.seq} confirmed and delivered`);

      const bad = await open(ctx, 'driver', { broker: auth, token: 'garbage', label: 'driver-bad-token' });
      await bad.until('error data-code=not_authorized shown, connection not connected', (h) => h.error?.code === 'not_authorized' && h.connection !== 'connected', 10000);
      await holds('bad token: connection never connected', () => bad.hooks(), (h) => h.connection !== 'connected' && h.error?.code === 'not_authorized', { durationMs: 2000, show: describeHooks });
      const h = await bad.hooks();
      ctx.log(`bad token: connection=${h.connection}, error "${h.error.text}"`);
      await bad.screenshot(artifact('driver-bad-token.png'));
    },
  },
  {
    name: 'edge: queued in the car while the cloud is down, confirmed after',
    timeoutMs: 120000,
    async run(ctx) {
      // Its own cloud, and a car unit linked to it (docs/edge.md): the driver's page on the car, the
      // passenger's on the cloud. Stopping this cloud cuts the link; the shared broker is untouched.
      const cloud = await scenarioBroker(ctx, 'cloud');
      const car = await scenarioBroker(ctx, 'car', { pluginOpts: ['node_role=edge', `upstream_url=tcp://127.0.0.1:${cloud.tcpPort}`] });
      const { driver, passenger } = await openPair(ctx, { driver: { broker: car }, passenger: { broker: cloud } });
      const tag = randomTag();
      const t1 = `From the car [${tag}]`;
      await driver.send(t1);
      const m1 = await driver.untilConfirmed(t1, 15000);
      await untilShown(passenger, { seq: m1.seq, sender: 'driver', text: t1 }, 15000);
      const t2 = `From the phone [${tag}]`;
      await passenger.send(t2);
      const m2 = await passenger.untilConfirmed(t2);
      await untilShown(driver, { seq: m2.seq, sender: 'passenger', text: t2 }, 15000);
      ctx.log(`linked: car -> cloud seq ${m1.seq}, cloud -> car seq ${m2.seq}`);

      await cloud.stop();
      ctx.log('cloud stopped: the link is cut');
      await passenger.until('connection disconnected or connecting', (h) => h.connection === 'disconnected' || h.connection === 'connecting');
      const queuedTexts = [`Stuck in a tunnel [${tag}]`, `Out in 5 minutes [${tag}]`];
      for (const t of queuedTexts) await driver.send(t);
      const queued = (h, t) => entriesWith(h, t).length === 1 && entriesWith(h, t)[0].status === 'queued' && entriesWith(h, t)[0].seq === null;
      await driver.until('both messages shown as queued (data-status=queued, no data-seq)', (h) => queuedTexts.every((t) => queued(h, t)), 15000);
      await holds('the queued messages stay queued while the cloud is down', () => driver.hooks(), (h) => h.connection === 'connected' && queuedTexts.every((t) => queued(h, t)), { durationMs: 1500, show: describeHooks });
      await driver.screenshot(artifact('driver-edge-queued.png'));
      ctx.log('driver (connected to the car): both messages queued');

      // A second driver page, opened while the car is cut off, reads the car's replica.
      const copy = await open(ctx, 'driver', { broker: car, label: 'driver-offline-copy' });
      await copy.untilConnection('connected');
      const h = await copy.until('the offline-copy note, and the linked messages from the replica', (h) => h.offlineCopy !== null && [m1, m2].every((m) => h.messages.some((e) => e.seq === m.seq)), 15000);
      assert(Number(h.offlineCopy.untilSeq) >= Number(m2.seq), `offline copy complete up to ${h.offlineCopy.untilSeq}, expected at least seq ${m2.seq}`);
      await copy.screenshot(artifact('driver-edge-offline-copy.png'));
      ctx.log(`a fresh driver page shows the car's replica: "${h.offlineCopy.text}"`);
      await copy.close();

      await cloud.start();
      ctx.log('cloud started again on the same ports and data dir');
      const confirmed = [];
      for (const t of queuedTexts) confirmed.push(await driver.untilConfirmed(t, 45000));
      assert(confirmed.every((m) => m.status === 'confirmed'), `driver: ${JSON.stringify(confirmed)}, expected data-status=confirmed`);
      assert(Number(confirmed[0].seq) > Number(m2.seq) && Number(confirmed[1].seq) > Number(confirmed[0].seq),
        `driver: queued messages confirmed as seqs ${confirmed.map((m) => m.seq).join(', ')}, expected in order after ${m2.seq}`);
      await passenger.untilConnection('connected', 20000);
      for (const [i, t] of queuedTexts.entries()) await untilShown(passenger, { seq: confirmed[i].seq, sender: 'driver', text: t }, 20000);
      ctx.log(`linked again: queued -> confirmed as seqs ${confirmed.map((m) => m.seq).join(', ')}, shown on the passenger's page`);

      await sleep(500);
      for (const c of [driver, passenger]) {
        await assertNoDuplicates(c, [m1.seq, m2.seq, ...confirmed.map((m) => m.seq)]);
        for (const t of [t1, t2, ...queuedTexts]) {
          const n = entriesWith(await c.hooks(), t).length;
          assert(n === 1, `${c.label}: ${n} entries contain "${t}", expected 1`);
        }
      }
      await driver.screenshot(artifact('driver-edge-confirmed.png'));
      await passenger.screenshot(artifact('passenger-edge-confirmed.png'));
    },
  },
  {
    name: 'read receipts: read only once the other page shows the messages',
    timeoutMs: 90000,
    async run(ctx) {
      const driver = await open(ctx, 'driver');
      const passenger = await open(ctx, 'passenger', { prepare: (context) => context.addInitScript(backgroundSwitch) });
      await Promise.all([driver.untilConnection('connected'), passenger.untilConnection('connected')]);
      const tag = randomTag();
      const readMark = (c, text) => c.until(`"${text}" shown with data-read=true`, (h) => entriesWith(h, text).some((m) => m.read === 'true' && isSeq(m.seq)), 15000);
      const notRead = (c, text, why) => holds(`${c.label}: "${text}" not marked read while ${why}`, () => c.hooks(),
        (h) => entriesWith(h, text).length === 1 && entriesWith(h, text).every((m) => m.read !== 'true'), { durationMs: 1500, show: describeHooks });

      // 1. The passenger's page in the background: the message arrives there but is not seen.
      await setBackground(passenger, true);
      const t1 = `Read me when you look [${tag}]`;
      await driver.send(t1);
      const m1 = await driver.untilConfirmed(t1);
      await untilShown(passenger, { seq: m1.seq, sender: 'driver', text: t1 });
      await notRead(driver, t1, 'the passenger page is in the background');
      await setBackground(passenger, false);
      await readMark(driver, t1);
      ctx.log(`seq ${m1.seq}: read only after the passenger's page came to the foreground`);

      // 2. The passenger scrolled up: a new message below the view is not seen until scrolled to.
      const filler = [];
      for (let i = 1; i <= 16; i += 1) filler.push(`Earlier note ${i} [${tag}]`);
      for (const text of filler) await publishRequest(env.broker, ctx.code, 'send_message', { sender: 'driver', text });
      await passenger.until('all the notes shown', (h) => filler.every((t) => entriesWith(h, t).some((m) => isSeq(m.seq))));
      await readMark(driver, filler[filler.length - 1]);
      await passenger.hook('message').first().scrollIntoViewIfNeeded({ timeout: 5000 });
      const t3 = `Below the fold [${tag}]`;
      await driver.send(t3);
      const m3 = await driver.untilConfirmed(t3);
      await untilShown(passenger, { seq: m3.seq, sender: 'driver', text: t3 });
      const inView = await passenger.page.evaluate((seq) => {
        const el = document.querySelector(`[data-testid="message"][data-seq="${seq}"]`);
        const view = document.querySelector('[data-testid="timeline"]').parentElement.getBoundingClientRect();
        const r = el.getBoundingClientRect();
        return r.bottom > view.top && r.top < view.bottom;
      }, m3.seq);
      assert(!inView, `passenger: seq ${m3.seq} is in view although the passenger scrolled up (the test needs it out of view)`);
      await notRead(driver, t3, 'it is out of view on the passenger page');
      await passenger.hook('message').last().scrollIntoViewIfNeeded({ timeout: 5000 });
      await readMark(driver, t3);
      ctx.log(`seq ${m3.seq}: read only after the passenger scrolled down to it`);

      // 3. The other way round, and marks only on one's own messages.
      const t4 = `Thanks, on my way [${tag}]`;
      await passenger.send(t4);
      await passenger.untilConfirmed(t4);
      await readMark(passenger, t4);
      for (const c of [driver, passenger]) {
        const h = await c.hooks();
        const wrong = h.messages.filter((m) => m.read === 'true' && m.sender !== c.role);
        assert(wrong.length === 0, `${c.label}: data-read on messages of others: ${wrong.map((m) => m.seq).join(', ')}`);
      }

      // 4. The horizon is durable: a reloaded page shows the marks from the retained events/read
      // and the get_message reply's `read`.
      await driver.page.reload({ waitUntil: 'load', timeout: 15000 });
      await driver.untilConnection('connected');
      for (const t of [t1, t3]) await readMark(driver, t);
      await driver.screenshot(artifact('driver-desktop-read.png'));
      ctx.log('after a reload the driver still sees its messages read');
    },
  },
  {
    name: 'typing line',
    timeoutMs: 60000,
    async run(ctx) {
      const { driver, passenger } = await openPair(ctx);
      const tag = randomTag();
      const typingBy = (who) => (h) => h.typing?.role === who && h.typing.text.toLowerCase().includes(`${who} is typing`);
      await driver.hook('composer').pressSequentially('On my w', { delay: 80, timeout: 10000 });
      await passenger.until('typing line data-role=driver, "Driver is typing…"', typingBy('driver'));
      const own = await driver.hooks();
      assert(own.typing === null, `driver: its own typing shown on its own page: ${JSON.stringify(own.typing)}`);
      await passenger.screenshot(artifact('passenger-phone-typing.png'));
      ctx.log('driver types: the passenger sees "Driver is typing…"');

      // The driver stops typing: the line goes (idle "false", or 5 s without an update).
      await passenger.until('typing line gone after the driver stopped typing', (h) => h.typing === null, 15000);
      ctx.log('driver idle: the line cleared');

      // Typing again (on at the end of the text), then sending: the message clears the line.
      await driver.hook('composer').press('End', { timeout: 5000 });
      await driver.hook('composer').pressSequentially(`ay [${tag}]`, { delay: 80, timeout: 10000 });
      await passenger.until('typing line data-role=driver again', typingBy('driver'));
      await driver.hook('send').click({ timeout: 5000 });
      const text = `On my way [${tag}]`;
      const m = await driver.untilConfirmed(text);
      await untilShown(passenger, { seq: m.seq, sender: 'driver', text });
      await passenger.until('typing line gone once the message arrived', (h) => h.typing === null, 3000);
      ctx.log(`driver sent seq ${m.seq}: the typing line cleared`);

      await passenger.hook('composer').pressSequentially('Ok', { delay: 80, timeout: 10000 });
      await driver.until('typing line data-role=passenger', typingBy('passenger'));
      assert((await passenger.hooks()).typing === null, 'passenger: its own typing shown on its own page');
    },
  },
  {
    name: 'a service closes the booking',
    timeoutMs: 60000,
    async run(ctx) {
      const { driver, passenger } = await openPair(ctx);
      await Promise.all([driver.untilPresence('online'), passenger.untilPresence('online')]);
      const tag = randomTag();
      const t1 = `Thanks for the ride [${tag}]`;
      await passenger.send(t1);
      const m1 = await passenger.untilConfirmed(t1);
      await untilShown(driver, { seq: m1.seq, sender: 'passenger', text: t1 });
      // A ringing call is ended by the close.
      await driver.hook('call').click({ timeout: 5000 });
      await Promise.all([driver.untilCall('ringing'), passenger.untilCall('ringing')]);

      await publishRequest(env.broker, ctx.code, 'close', { reason: 'trip completed' });
      const closedView = (h) => h.bookingState?.state === 'closed' && h.controls.composer.disabled && h.controls.send.disabled
        && h.controls.call.disabled && h.messages.some((m) => m.seq === m1.seq && m.text.includes(t1));
      for (const c of [driver, passenger]) {
        const h = await c.until('booking-state data-state=closed, composer, send and call disabled, history still shown', closedView, 15000);
        assert(/closed/i.test(h.bookingState.text), `${c.label}: the closed notice says "${h.bookingState.text}"`);
        await c.until('the ringing call ended by the close', (h) => callGone(h) && !visible(h, 'accept') && !visible(h, 'cancel'), 15000);
      }
      const h = await driver.hooks();
      ctx.log(`closed: "${h.bookingState.text}"`);
      await driver.screenshot(artifact('driver-desktop-closed.png'));
      await passenger.screenshot(artifact('passenger-phone-closed.png'));

      // The retained events/booking: a page opened later shows the booking closed at once.
      await passenger.page.reload({ waitUntil: 'load', timeout: 15000 });
      await passenger.untilConnection('connected');
      await passenger.until('after a reload: still closed, history readable', closedView, 15000);
      await holds('closed stays closed, no error shown', () => passenger.hooks(), (h) => closedView(h) && h.error === null, { durationMs: 1000, show: describeHooks });
      ctx.log('after a reload the passenger still sees the booking closed and its history');
    },
  },
];

// A scenario's own broker (stopped and its log kept at the end of the scenario): authentication
// on with `auth`, more plugin settings with `pluginOpts`.
async function scenarioBroker(ctx, name, { auth = null, pluginOpts = [] } = {}) {
  const dir = fs.mkdtempSync(path.join(env.root, `${name}-`));
  const broker = new Broker({ name, dir, mosquitto: env.mosquitto, ctl: env.ctl, plugin: env.plugin, webDir: env.webDir, auth, pluginOpts });
  await broker.configure();
  ctx.brokers.push(broker);
  ctx.cleanups.add(`broker ${name}`, async () => {
    await broker.stop();
    broker.saveLog(env.artifacts);
  });
  await broker.start();
  return broker;
}

// The authentication scenario's own broker: authentication on, a fresh secret.
async function authBroker(ctx) {
  const dir = fs.mkdtempSync(path.join(env.root, 'auth-'));
  const secretFile = path.join(dir, 'jwt.secret');
  const r = await run(env.ctl, ['secret']);
  assert(r.code === 0 && r.stdout.trim().length >= 32, `navietakie-ctl secret failed (${r.code}): ${r.stderr.trim()}`);
  fs.writeFileSync(secretFile, r.stdout, { mode: 0o600 });
  return scenarioBroker(ctx, 'auth', { auth: { secretFile } });
}

// ---------------------------------------------------------------- per-scenario hooks

const hooks = {
  async beforeEach(ctx) {
    ctx.clients = [];
    ctx.brokers = [env.broker];
    // A scenario that failed half-way through a restart leaves the broker down.
    if (!env.broker.running) {
      env.broker.unexpectedExit = null;
      await env.broker.start();
    }
  },

  async afterEach(ctx, error) {
    const problems = [];
    for (const c of ctx.clients) {
      if (c.pageErrors.length) problems.push(`${c.label}: uncaught exception(s) in the page: ${c.pageErrors.join(' | ')}`);
      if (c.consoleErrors.length) {
        ctx.log(`${c.label}: console errors (reported, not failed on): ${c.consoleErrors.slice(0, 8).join(' | ')}${c.consoleErrors.length > 8 ? ` ... (${c.consoleErrors.length})` : ''}`);
      }
    }
    for (const b of ctx.brokers ?? []) if (b.unexpectedExit) problems.push(b.unexpectedExit);
    if (!error && problems.length) error = new Error(problems.join('; '));
    else if (error && problems.length) error.message += `; also: ${problems.join('; ')}`;
    if (error) {
      for (const c of ctx.clients.filter((c) => !c.closed)) {
        try {
          ctx.log(`${c.label} at failure: ${describeHooks(await c.hooks())}`);
          await c.screenshot(artifact(`FAIL-${ctx.index}-${c.label}.png`));
        } catch (e) {
          ctx.log(`${c.label}: no state at failure (${e.message.split('\n')[0]})`);
        }
      }
      for (const b of ctx.brokers ?? []) ctx.log(`broker ${b.name} log, last lines:\n${b.logTail(15)}`);
    }
    return error;
  },
};

// ---------------------------------------------------------------- main

async function main() {
  runner.watchdog(RUN_BUDGET_MS);
  const pre = preflight();
  if (pre.missing.length) {
    for (const m of pre.missing) log(`e2e: FAIL prerequisite: ${m}`);
    return false;
  }
  Object.assign(env, pre, {
    plugin: path.resolve(args.plugin),
    ctl: path.resolve(args.ctl),
    artifacts: path.resolve(args.artifacts),
  });
  fs.mkdirSync(env.artifacts, { recursive: true });
  for (const f of fs.readdirSync(env.artifacts)) {
    if (/^(FAIL-.*|driver-.*|passenger-.*)\.png$|^broker-.*\.(log|stderr)$/.test(f)) fs.rmSync(path.join(env.artifacts, f), { force: true });
  }

  env.root = fs.mkdtempSync(path.join(os.tmpdir(), 'navietakie-e2e-'));
  const removeRoot = () => fs.rmSync(env.root, { recursive: true, force: true });
  lastResorts.add(removeRoot);
  runner.cleanups.add('temp dir', removeRoot);
  env.profilesDir = path.join(env.root, 'profiles');
  fs.mkdirSync(env.profilesDir);

  const dir = path.join(env.root, 'open');
  fs.mkdirSync(dir);
  env.broker = new Broker({ name: 'open', dir, mosquitto: env.mosquitto, ctl: env.ctl, plugin: env.plugin, webDir: env.webDir });
  await env.broker.configure();
  runner.cleanups.add('broker open', async () => {
    await env.broker.stop();
    env.broker.saveLog(env.artifacts);
  });
  await env.broker.start();
  log(`e2e: broker pid ${env.broker.child.pid}, tcp ${env.broker.tcpPort}, websockets+http ${env.broker.wsPort}; web ${env.webDir}; artifacts ${env.artifacts}`);

  const suites = { chat: scenarios, call: callScenarios({ open, openPair, artifact, scenarioBroker, authBroker }) };
  if (!Object.hasOwn(suites, args.suite)) {
    log(`e2e: FAIL --suite ${args.suite}: no such suite (${Object.keys(suites).join(', ')})`);
    return false;
  }
  let selected = suites[args.suite].map((s, i) => ({ ...s, number: i + 1 }));
  if (args.only) {
    const wanted = args.only.split(',').map((s) => s.trim());
    selected = selected.filter((s) => wanted.includes(String(s.number)) || wanted.some((w) => w && s.name.includes(w)));
  }
  if (selected.length === 0) {
    log(`e2e: FAIL --only ${args.only} selects no scenario`);
    return false;
  }
  return runner.run(selected, hooks);
}

let ok = false;
try {
  ok = await main();
} catch (e) {
  log(`e2e: FAIL ${e.stack ?? e}`);
  ok = false;
} finally {
  await runner.finish();
}
if (ok) log(`e2e: screenshots in ${env.artifacts}`);
process.exit(ok ? 0 : 1);
