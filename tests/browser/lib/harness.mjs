// A small scenario runner for the end-to-end test: named scenarios run one after another, each
// with its own booking code and deadline, and print one PASS/FAIL line. Every resource a scenario
// or the run takes is registered as a cleanup; cleanups always run, in reverse order, whether the
// scenario passed, failed, timed out, or the process got SIGINT/SIGTERM or an uncaught error.

import crypto from 'node:crypto';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Rejects with a message naming `what` when `promise` has not settled within `ms`.
export async function withTimeout(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

// Calls `probe` every `intervalMs` until `accept(value)` holds and returns that value. On the
// deadline it throws, naming what was awaited and what was last seen, so that a failure says why.
export async function poll(what, probe, accept, { timeoutMs = 10000, intervalMs = 100, show = (v) => JSON.stringify(v) } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  let lastError = null;
  for (;;) {
    try {
      last = await probe();
      lastError = null;
      if (accept(last)) return last;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) break;
    await sleep(intervalMs);
  }
  const seen = lastError ? `error: ${firstLine(lastError.message)}` : show(last);
  throw new Error(`${what}: not reached within ${timeoutMs} ms (last seen: ${seen})`);
}

// Holds for the whole of `durationMs`: checks `ok` every `intervalMs` and throws at the first
// value that breaks it.
export async function holds(what, probe, ok, { durationMs, intervalMs = 100, show = (v) => JSON.stringify(v) }) {
  const end = Date.now() + durationMs;
  do {
    const v = await probe();
    if (!ok(v)) throw new Error(`${what}: broken (seen: ${show(v)})`);
    await sleep(intervalMs);
  } while (Date.now() < end);
}

export function assert(condition, message) {
  if (!condition) throw new Error(message);
}

export function firstLine(s) {
  return String(s).split('\n')[0];
}

export function bookingCode() {
  return `E2E-${crypto.randomBytes(4).toString('hex')}`;
}

export function randomTag() {
  return crypto.randomBytes(3).toString('hex');
}

// A stack of async cleanups. A scenario takes a mark and unwinds to it when it ends; an abort
// unwinds everything. Each cleanup runs once and is bounded in time.
export class Cleanups {
  #stack = [];

  add(label, fn) {
    const entry = { label, fn };
    this.#stack.push(entry);
    return entry;
  }

  // Runs one registered cleanup now (e.g. a broker stopped on purpose) and forgets it.
  async runNow(entry, log) {
    const i = this.#stack.indexOf(entry);
    if (i >= 0) this.#stack.splice(i, 1);
    await Cleanups.#run(entry, log);
  }

  mark() {
    return this.#stack.length;
  }

  async unwindTo(mark, log) {
    while (this.#stack.length > mark) await Cleanups.#run(this.#stack.pop(), log);
  }

  static async #run({ label, fn }, log) {
    try {
      await withTimeout(Promise.resolve().then(fn), 20000, `cleanup ${label}`);
    } catch (e) {
      log(`cleanup ${label} failed: ${firstLine(e.message)}`);
    }
  }
}

// Synchronous last resorts for `process.on('exit')`: kill processes by PID and remove temp dirs
// even when the async cleanups could not run.
export const lastResorts = new Set();

export class Runner {
  #log;
  #cleanups = new Cleanups();
  #aborting = null; // the abort in progress

  constructor({ log = (line) => console.log(line) } = {}) {
    this.#log = log;
    process.on('exit', () => {
      for (const fn of lastResorts) {
        try {
          fn();
        } catch {
          // Nothing more can be done at exit.
        }
      }
    });
    for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
      process.once(signal, () => this.abort(`got ${signal}`, code));
    }
    process.on('uncaughtException', (e) => this.abort(`uncaught exception: ${e?.stack ?? e}`, 1));
    process.on('unhandledRejection', (e) => this.abort(`unhandled rejection: ${e?.stack ?? e}`, 1));
  }

  get cleanups() {
    return this.#cleanups;
  }

  log(line) {
    this.#log(line);
  }

  // Aborts the whole run, with cleanup, past `ms`: before an outer timeout (ctest's) kills the
  // process with no chance to stop the brokers and browsers.
  watchdog(ms) {
    setTimeout(() => this.abort(`the run exceeded its ${ms / 1000} s budget`, 1), ms).unref();
  }

  // Cleans up everything and exits with `code`. Once started, the normal flow waits for it
  // instead of reporting results or exiting on its own.
  abort(reason, code) {
    if (!this.#aborting) {
      this.#log(`e2e: ABORT ${reason}; cleaning up`);
      this.#aborting = (async () => {
        await withTimeout(this.#cleanups.unwindTo(0, this.#log), 60000, 'cleanup on abort').catch((e) => this.#log(e.message));
        process.exit(code);
      })();
    }
    return this.#aborting;
  }

  // scenarios: [{name, timeoutMs, run(ctx)}]. hooks.beforeEach(ctx) prepares shared state;
  // hooks.afterEach(ctx, error) runs before the scenario's cleanups (pages still open) and returns
  // the error to report (it may turn a pass into a failure, e.g. for an uncaught page error).
  async run(scenarios, hooks = {}) {
    const results = [];
    const started = Date.now();
    for (const [i, scenario] of scenarios.entries()) {
      if (this.#aborting) await this.#aborting; // exits the process
      const number = scenario.number ?? i + 1;
      const label = `${number} ${scenario.name}`;
      const mark = this.#cleanups.mark();
      const ctx = {
        name: scenario.name,
        index: number,
        code: bookingCode(),
        cleanups: this.#cleanups,
        log: (line) => this.#log(`    [${label}] ${line}`),
      };
      const t0 = Date.now();
      this.#log(`---- ${label} (booking ${ctx.code}, timeout ${scenario.timeoutMs / 1000} s)`);
      let error = null;
      const body = (async () => {
        if (hooks.beforeEach) await hooks.beforeEach(ctx);
        await scenario.run(ctx);
      })();
      body.catch(() => {}); // after a timeout the abandoned body rejects once its pages close
      try {
        await withTimeout(body, scenario.timeoutMs, `scenario "${scenario.name}"`);
      } catch (e) {
        error = e;
      }
      if (this.#aborting) await this.#aborting; // exits the process
      if (hooks.afterEach) {
        try {
          error = await withTimeout(hooks.afterEach(ctx, error), 30000, 'after-scenario checks');
        } catch (e) {
          error = error ?? e;
        }
      }
      await this.#cleanups.unwindTo(mark, ctx.log);
      const secs = ((Date.now() - t0) / 1000).toFixed(1);
      if (error) this.#log(`FAIL  ${label} (${secs} s): ${error.message}`);
      else this.#log(`PASS  ${label} (${secs} s)`);
      results.push({ name: label, ok: !error, secs, error });
    }
    const failed = results.filter((r) => !r.ok);
    const total = ((Date.now() - started) / 1000).toFixed(1);
    this.#log('==== summary');
    for (const r of results) this.#log(`${r.ok ? 'PASS' : 'FAIL'}  ${r.name} (${r.secs} s)`);
    this.#log(`e2e: ${results.length - failed.length} passed, ${failed.length} failed in ${total} s`);
    return failed.length === 0;
  }

  // Runs the whole-run cleanups (brokers, temp dirs) at the end.
  async finish() {
    if (this.#aborting) await this.#aborting; // exits the process
    await this.#cleanups.unwindTo(0, this.#log);
  }
}
