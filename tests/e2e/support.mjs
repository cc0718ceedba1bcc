// What the browser tests share: their environment (set by run.sh), `trm serve` on an
// ephemeral port, and `trm predict`'s answer for a maze, which every solve is checked against.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** An environment variable run.sh sets, or an error saying to use run.sh. */
export function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run tests/e2e/run.sh`);
  return value;
}

const scratch = mkdtempSync(join(tmpdir(), 'trm-e2e-support-'));
let counter = 0;

/**
 * Starts `trm serve` with the tests' app, model and datasets on an ephemeral port.
 * Resolves with `{ process, base }`, `base` being its URL.
 */
export function startServer() {
  return new Promise((resolve, reject) => {
    const model = env('E2E_MODEL');
    const child = spawn(env('TRM_BIN'), ['serve', '--addr', '127.0.0.1:0', '--dist', env('E2E_DIST'), '--data', env('E2E_DATA'),
      '--model', join(model, 'model.safetensors'), '--config', join(model, 'config.toml'),
      '--state-dir', mkdtempSync(join(tmpdir(), 'trm-e2e-state-'))],
    { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    const timer = setTimeout(() => reject(new Error(`trm serve did not start:\n${log}`)), 60_000);
    const watch = (chunk) => {
      log += chunk;
      const m = log.match(/listening on (http:\/\/[0-9.:]+)/);
      if (m) { clearTimeout(timer); resolve({ process: child, base: m[1] }); }
    };
    child.stdout.on('data', watch);
    child.stderr.on('data', watch);
    child.on('exit', (code) => reject(new Error(`trm serve exited with ${code}:\n${log}`)));
  });
}

/** Stops a server from `startServer` (SIGTERM: a graceful shutdown). */
export function stopServer(server) {
  return new Promise((resolve) => {
    const child = server?.process;
    if (!child || child.exitCode !== null) return resolve();
    child.on('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/**
 * What `trm predict ARGS` answers, row-major, for a maze given as text lines of `side` cells;
 * cells that are no maze cell (padding) come out as '?', as the app draws them.
 */
export function predictWith(args, mazeLines, side) {
  const file = join(scratch, `maze-${counter++}.txt`);
  writeFileSync(file, mazeLines);
  const out = execFileSync(env('TRM_BIN'), [...args, '--inputs', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = out.split('\n');
  const at = lines.findIndex((l) => l.startsWith('maze 0:'));
  assert.ok(at >= 0, `no answer in trm predict's output:\n${out}`);
  const next = lines[at + 1];
  if (next.startsWith('[')) {
    const chars = ['?', '#', ' ', 'S', 'G', 'o'];
    return JSON.parse(next).map((t) => chars[t] ?? '?').join('');
  }
  return lines.slice(at + 1, at + 1 + side).join('');
}

/** `trm predict` with the tests' model (E2E_MODEL), after `steps` ACT steps (default: the config's). */
export function predictFile(mazeLines, side, steps) {
  const model = env('E2E_MODEL');
  const args = ['predict', '--checkpoint', join(model, 'model.safetensors'), '--config', join(model, 'config.toml')];
  if (steps) args.push('--steps', String(steps));
  return predictWith(args, mazeLines, side);
}
