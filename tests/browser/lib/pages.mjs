// One participant's page in its own headless Chromium with a fresh profile, and the reading of the
// app's data-testid hooks (web/README.md). Tests find elements only through these hooks; the only
// text they look at is the human-readable content of timeline entries.

import fs from 'node:fs';
import path from 'node:path';
import { poll } from './harness.mjs';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// Chromium's fake microphone (a beeping tone), for the call audio scenarios (tests/browser/call.mjs).
// `granted`: the permission prompt answers yes by itself; `refused`: the device exists but no prompt
// is answered, so getUserMedia fails as a refused permission does.
export const MEDIA_FLAGS = {
  granted: ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', '--autoplay-policy=no-user-gesture-required'],
  refused: ['--use-fake-device-for-media-stream', '--autoplay-policy=no-user-gesture-required'],
};

export const DESKTOP = { viewport: { width: 1280, height: 800 } };
export const PHONE = { viewport: { width: 390, height: 780 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

export const testid = (id) => `[data-testid="${id}"]`;

// Runs in the page: the state of every hook, in one round trip. Visible means what Playwright
// means by it: rendered, not visibility:hidden, and a non-empty box.
function readHooks() {
  const one = (id) => document.querySelector(`[data-testid="${id}"]`);
  const visible = (el) => {
    if (!el || !el.isConnected || !el.checkVisibility()) return false;
    if (getComputedStyle(el).visibility !== 'visible') return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  };
  const control = (id) => {
    const el = one(id);
    if (!el) return { present: false, visible: false, disabled: false };
    return {
      present: true,
      visible: visible(el),
      disabled: el.disabled === true || el.getAttribute('aria-disabled') === 'true',
    };
  };
  const banner = one('call-state');
  const offlineCopy = one('offline-copy');
  const error = one('error');
  const typing = one('typing');
  const bookingState = one('booking-state');
  const timeline = one('timeline');
  const entries = timeline ? [...timeline.querySelectorAll('[data-testid="message"]')] : [];
  return {
    connection: one('connection')?.getAttribute('data-state') ?? null,
    presence: one('presence')?.getAttribute('data-state') ?? null,
    call: banner && visible(banner) ? banner.getAttribute('data-state') : null,
    callText: banner && visible(banner) ? banner.innerText.replace(/\s+/g, ' ').trim() : null,
    controls: Object.fromEntries(['call', 'accept', 'decline', 'cancel', 'hangup', 'send', 'composer'].map((id) => [id, control(id)])),
    error: error && visible(error) ? { code: error.getAttribute('data-code'), text: error.innerText.replace(/\s+/g, ' ').trim() } : null,
    timeline: timeline !== null,
    offlineCopy: offlineCopy && visible(offlineCopy) ? { untilSeq: offlineCopy.getAttribute('data-until-seq'), text: offlineCopy.innerText.trim() } : null,
    typing: typing && visible(typing) ? { role: typing.getAttribute('data-role'), text: typing.innerText.trim() } : null,
    bookingState: bookingState && visible(bookingState) ? { state: bookingState.getAttribute('data-state'), text: bookingState.innerText.replace(/\s+/g, ' ').trim() } : null,
    messages: entries.map((e) => ({
      seq: e.getAttribute('data-seq'),
      type: e.getAttribute('data-type'),
      sender: e.getAttribute('data-sender'),
      pending: e.getAttribute('data-pending'),
      status: e.getAttribute('data-status'),
      messageId: e.getAttribute('data-message-id'),
      read: e.getAttribute('data-read'),
      text: e.innerText.replace(/\s+/g, ' ').trim(),
    })),
  };
}

// A compact description of a hooks snapshot for failure messages.
export function describeHooks(h) {
  if (!h) return String(h);
  const ctl = Object.entries(h.controls)
    .map(([id, c]) => `${id}:${!c.present ? 'absent' : `${c.visible ? 'visible' : 'hidden'}${c.disabled ? '+disabled' : ''}`}`)
    .join(' ');
  const msgs = h.messages
    .slice(-8)
    .map((m) => `#${m.seq ?? '-'}/${m.type}/${m.sender}/${m.status}${m.read === 'true' ? '/read' : ''} "${m.text.slice(0, 40)}"`)
    .join('; ');
  return `connection=${h.connection} presence=${h.presence} call-state=${h.call ?? '(none)'} ${ctl} error=${h.error ? h.error.code : '(none)'} typing=${h.typing ? h.typing.role : '(none)'} booking-state=${h.bookingState ? h.bookingState.state : '(none)'} timeline=${h.timeline ? 'yes' : 'MISSING'} messages(${h.messages.length}, last 8): [${msgs}]`;
}

// Seqs shown more than once in a snapshot.
export function duplicateSeqs(h) {
  const seen = new Map();
  for (const m of h.messages) if (m.seq) seen.set(m.seq, (seen.get(m.seq) ?? 0) + 1);
  return [...seen].filter(([, n]) => n > 1).map(([seq, n]) => `${seq} x${n}`);
}

export const isSeq = (s) => typeof s === 'string' && /^[1-9][0-9]*$/.test(s);

export class Client {
  // role: 'driver' | 'passenger'; label: for messages ("driver" / "passenger#2").
  // ownsBrowser: closing this client closes its browser (false for a second tab of a browser).
  constructor({ role, label, context, page, profileDir, ownsBrowser = true }) {
    Object.assign(this, { role, label, context, page, profileDir, ownsBrowser });
    this.pageErrors = [];
    this.consoleErrors = [];
    this.closed = false;
    page.on('pageerror', (e) => this.pageErrors.push(`${e.name}: ${e.message}`));
    page.on('console', (m) => {
      // A failed resource is reported below with its URL instead.
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) this.consoleErrors.push(m.text().slice(0, 300));
    });
    page.on('response', (r) => {
      const url = new URL(r.url());
      if (r.status() >= 400 && url.pathname !== '/favicon.ico') this.consoleErrors.push(`HTTP ${r.status()} for ${url.pathname}`);
    });
  }

  hook(id) {
    return this.page.locator(testid(id));
  }

  hooks() {
    return this.page.evaluate(readHooks);
  }

  // Waits until the hooks satisfy `accept`; the failure message shows what the page showed.
  until(what, accept, timeoutMs = 10000) {
    return poll(`${this.label}: ${what}`, () => this.hooks(), accept, { timeoutMs, show: describeHooks });
  }

  untilConnection(state, timeoutMs = 15000) {
    return this.until(`connection data-state=${state}`, (h) => h.connection === state, timeoutMs);
  }

  untilPresence(state, timeoutMs = 10000) {
    return this.until(`presence data-state=${state}`, (h) => h.presence === state, timeoutMs);
  }

  untilCall(state, timeoutMs = 10000) {
    return this.until(`call-state data-state=${state}`, (h) => h.call === state, timeoutMs);
  }

  // The entry whose text contains `text`, once it is confirmed (data-pending=false, a seq).
  async untilConfirmed(text, timeoutMs = 10000) {
    const h = await this.until(
      `a confirmed message entry containing "${text}" (data-pending=false, data-seq set)`,
      (h) => h.messages.some((m) => m.text.includes(text) && m.pending === 'false' && isSeq(m.seq)),
      timeoutMs,
    );
    return h.messages.find((m) => m.text.includes(text) && m.pending === 'false' && isSeq(m.seq));
  }

  async send(text) {
    await this.hook('composer').fill(text, { timeout: 5000 });
    await this.hook('send').click({ timeout: 5000 });
  }

  async screenshot(file) {
    await this.page.screenshot({ path: file, timeout: 10000 });
  }

  async close() {
    if (this.closed) return;
    this.closed = true;
    if (!this.ownsBrowser) {
      await this.page.close().catch(() => {});
      return;
    }
    await this.context.close().catch(() => {});
    fs.rmSync(this.profileDir, { recursive: true, force: true });
  }
}

// Starts a browser with a fresh profile dir and opens `url` in it.
// `prepare(context)`, if given, runs before the page loads (e.g. to route its WebSocket).
// `media`: 'granted' / 'refused' (MEDIA_FLAGS) gives the page Chromium's fake microphone; without it
// any getUserMedia fails as a denied permission would.
export async function openClient({ chromium, profilesDir, role, label = role, device, url, prepare, media }) {
  const profileDir = fs.mkdtempSync(path.join(profilesDir, `${label.replace(/[^a-z0-9]/gi, '-')}-`));
  let context;
  try {
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: media ? [...CHROMIUM_FLAGS, ...MEDIA_FLAGS[media]] : CHROMIUM_FLAGS,
      // The runner handles signals itself: it must stop the brokers too.
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
      timeout: 30000,
      ...device,
    });
  } catch (e) {
    fs.rmSync(profileDir, { recursive: true, force: true });
    throw e;
  }
  // Without `media` the page gets no microphone or camera, and any attempt to ask for one fails as a
  // denied permission would, so a call's signalling that works here works without them (web/README.md).
  // The attempts are counted either way (the microphone is asked for only when a call is placed or
  // accepted).
  await context.addInitScript((withMedia) => {
    window.__e2eMediaRequests = 0;
    if (navigator.mediaDevices) {
      const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
      navigator.mediaDevices.getUserMedia = async (constraints) => {
        window.__e2eMediaRequests += 1;
        if (withMedia) return real(constraints);
        throw new DOMException('no media in the e2e test', 'NotAllowedError');
      };
    }
  }, !!media);
  const page = context.pages()[0] ?? (await context.newPage());
  const client = new Client({ role, label, context, page, profileDir });
  try {
    if (prepare) await prepare(context);
    await page.goto(url, { waitUntil: 'load', timeout: 15000 });
  } catch (e) {
    await client.close();
    throw new Error(`${label}: loading ${url} failed: ${e.message.split('\n')[0]}`);
  }
  return client;
}

// A second tab in the browser of `client`: same profile, so same storage.
export async function openTab(client, { label, url }) {
  const page = await client.context.newPage();
  const tab = new Client({ role: client.role, label, context: client.context, page, profileDir: client.profileDir, ownsBrowser: false });
  try {
    await page.goto(url, { waitUntil: 'load', timeout: 15000 });
  } catch (e) {
    await tab.close();
    throw new Error(`${label}: loading ${url} failed: ${e.message.split('\n')[0]}`);
  }
  return tab;
}
