// A real Mosquitto with the navietakie plugin, on free ports of 127.0.0.1: a TCP listener for the
// mosquitto_* tools and a WebSockets listener that also serves the web app (`http_dir`). Its conf
// comes from the one generator, `navietakie-ctl broker-conf`. It can be stopped and started again
// on the same ports and data dir, as a restarted server would be.

import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { lastResorts, sleep } from './harness.mjs';

export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// The first executable called `name` in PATH or in the usual sbin directories, or null.
export function findProgram(name) {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

export function portAccepts(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export function run(file, args, { timeoutMs = 10000 } = {}) {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      resolve({ code: error ? (error.code ?? error.signal ?? 'error') : 0, stdout, stderr });
    });
  });
}

// Stops a child process by its PID: SIGTERM, a bounded wait for `exited` (a promise settled at its
// exit), then SIGKILL and a last bounded wait.
export async function terminate(child, exited, timeoutMs) {
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {
    // already gone
  }
  if (await Promise.race([exited.then(() => true), sleep(timeoutMs).then(() => false)])) return;
  try {
    process.kill(child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
  await Promise.race([exited, sleep(5000)]);
}

export class Broker {
  // dir: this broker's own temp dir (conf, log, data). ctl: navietakie-ctl, which writes the conf.
  // auth: {secretFile} turns authentication on. pluginOpts: more `key=value` plugin settings (e.g.
  // node_role=edge for a car unit).
  constructor({ name, dir, mosquitto, ctl, plugin, webDir, auth = null, pluginOpts = [] }) {
    Object.assign(this, { name, dir, mosquitto, ctl, plugin, webDir, auth, pluginOpts });
    this.child = null;
    this.confPath = path.join(dir, 'mosquitto.conf');
    this.logPath = path.join(dir, 'mosquitto.log');
    this.stderrPath = path.join(dir, 'mosquitto.stderr');
    this.dataDir = path.join(dir, 'data');
    this.starts = 0;
    this.unexpectedExit = null;
  }

  async configure() {
    this.tcpPort = await freePort();
    this.wsPort = await freePort();
    while (this.wsPort === this.tcpPort) this.wsPort = await freePort();
    fs.mkdirSync(this.dataDir, { recursive: true });
    const args = [
      'broker-conf',
      '--mqtt-port', String(this.tcpPort),
      '--ws-port', String(this.wsPort),
      '--bind', '127.0.0.1',
      '--allow-anonymous', this.auth ? 'false' : 'true',
      '--user', os.userInfo().username,
      '--http-dir', path.resolve(this.webDir),
      '--plugin', path.resolve(this.plugin),
      '--plugin-opt', `data_dir=${this.dataDir}`,
      // Short, so that the missed-call scenario ends within seconds.
      '--plugin-opt', 'call_ring_timeout_s=3',
      ...(this.auth ? ['--plugin-opt', `auth_jwt_secret_file=${this.auth.secretFile}`] : []),
      ...this.pluginOpts.flatMap((opt) => ['--plugin-opt', opt]),
      '--log-file', this.logPath,
      '--log-timestamp-format', '%H:%M:%S',
      '--out', this.confPath,
    ];
    const r = await run(this.ctl, args);
    if (r.code !== 0) throw new Error(`navietakie-ctl broker-conf failed (${r.code}): ${r.stderr.trim()}`);
    return this;
  }

  // A participant's token for this broker (authentication on): navietakie-ctl token, valid an hour.
  async token(sub, role, booking) {
    const r = await run(this.ctl, ['token', '--secret-file', this.auth.secretFile, '--sub', sub, '--role', role, '--booking', booking, '--ttl', '3600']);
    if (r.code !== 0 || !r.stdout.trim()) throw new Error(`navietakie-ctl token failed (${r.code}): ${r.stderr.trim()}`);
    return r.stdout.trim();
  }

  get running() {
    return this.child !== null;
  }

  get httpBase() {
    return `http://127.0.0.1:${this.wsPort}`;
  }

  async start({ timeoutMs = 15000 } = {}) {
    if (this.child) throw new Error(`broker ${this.name} already running`);
    const out = fs.openSync(this.stderrPath, 'a');
    const child = spawn(this.mosquitto, ['-c', this.confPath], { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    this.starts += 1;
    this.child = child;
    child.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        child.exitStatus = signal ?? code;
        if (this.child === child) {
          // Not stopped by us: remember it, so that the scenario that saw it fails saying so.
          this.unexpectedExit = `broker ${this.name} (pid ${child.pid}) exited by itself: ${child.exitStatus}`;
          this.child = null;
        }
        resolve();
      });
      child.once('error', (e) => {
        child.exitStatus = e.message;
        if (this.child === child) this.child = null;
        resolve();
      });
    });
    const killAtExit = () => {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
    };
    child.killAtExit = killAtExit;
    lastResorts.add(killAtExit);

    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.child !== child) {
        throw new Error(`broker ${this.name} did not start (exit ${child.exitStatus}):\n${this.logTail(15)}`);
      }
      if ((await portAccepts(this.tcpPort)) && (await portAccepts(this.wsPort))) return;
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`broker ${this.name}: ports ${this.tcpPort}/${this.wsPort} not accepting within ${timeoutMs} ms:\n${this.logTail(15)}`);
      }
      await sleep(100);
    }
  }

  async stop({ timeoutMs = 10000 } = {}) {
    const child = this.child;
    if (!child) return;
    this.child = null;
    await terminate(child, child.exited, timeoutMs);
    lastResorts.delete(child.killAtExit);
  }

  logText() {
    const read = (p) => {
      try {
        return fs.readFileSync(p, 'utf8');
      } catch {
        return '';
      }
    };
    return `${read(this.logPath)}${read(this.stderrPath)}`;
  }

  logTail(lines = 20) {
    return this.logText().trimEnd().split('\n').slice(-lines).map((l) => `      | ${l}`).join('\n');
  }

  // Copies the log into the artifacts (it is gone with the temp dir otherwise).
  saveLog(artifactsDir) {
    for (const [from, suffix] of [[this.logPath, 'log'], [this.stderrPath, 'stderr']]) {
      try {
        if (fs.statSync(from).size > 0) fs.copyFileSync(from, path.join(artifactsDir, `broker-${this.name}.${suffix}`));
      } catch {
        // nothing logged
      }
    }
  }
}
