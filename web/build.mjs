// Copies the browser build of mqtt.js into public/vendor/, the directory
// Mosquitto serves (http_dir). No bundler: the page loads it with a classic
// <script> tag, which defines the global `mqtt`.
import { copyFileSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, 'node_modules', 'mqtt', 'dist', 'mqtt.min.js');
const targetDir = join(here, 'public', 'vendor');
const target = join(targetDir, 'mqtt.min.js');

if (!existsSync(source)) {
  console.error(`build: ${source} is missing; run "npm install" in ${here} first`);
  process.exit(1);
}
mkdirSync(targetDir, { recursive: true });
copyFileSync(source, target);
console.log(`build: ${target} (${statSync(target).size} bytes)`);
