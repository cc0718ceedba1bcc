// What the browser tests share: their environment (set by run.sh), `trm serve` on an
// ephemeral port, and `trm predict`'s answer for a maze, which every solve is checked against.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
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
 * Starts `trm serve` with the tests' app, the app's default model (the committed size-general
 * one, E2E_DEFAULT) and the tests' datasets on an ephemeral port.
 * Resolves with `{ process, base }`, `base` being its URL.
 */
export function startServer() {
  return new Promise((resolve, reject) => {
    const model = env('E2E_DEFAULT');
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
 * What `trm predict ARGS` answers for a maze given as text lines: `{ grid, verdict, halted }`,
 * `grid` row-major with '?' for cells that are no maze cell (padding), as the app draws them,
 * `verdict` trm predict's words on it, `halted` the step where a size-general model halted
 * (null when it did not, and for a reference model).
 */
export function predictRun(args, mazeLines) {
  const file = join(scratch, `maze-${counter++}.txt`);
  writeFileSync(file, mazeLines);
  const rows = mazeLines.split('\n').filter((l) => l.length > 0).length;
  const out = execFileSync(env('TRM_BIN'), [...args, '--inputs', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = out.split('\n');
  const at = lines.findIndex((l) => l.startsWith('maze 0:'));
  assert.ok(at >= 0, `no answer in trm predict's output:\n${out}`);
  const head = lines[at];
  const verdict = head.slice('maze 0: '.length, head.indexOf('; q_halt'));
  const halt = head.match(/halted after step (\d+)/);
  const halted = halt ? Number(halt[1]) : null;
  const next = lines[at + 1];
  if (next.startsWith('[')) {
    const chars = ['?', '#', ' ', 'S', 'G', 'o'];
    return { grid: JSON.parse(next).map((t) => chars[t] ?? '?').join(''), verdict, halted };
  }
  return { grid: lines.slice(at + 1, at + 1 + rows).join(''), verdict, halted };
}

/** `trm predict ARGS`'s answer grid only (see predictRun). */
export function predictWith(args, mazeLines) {
  return predictRun(args, mazeLines).grid;
}

/** The `trm predict` arguments of the model in directory `dir` (model.safetensors, config.toml). */
export function modelArgs(dir, steps) {
  const args = ['predict', '--checkpoint', join(dir, 'model.safetensors'), '--config', join(dir, 'config.toml')];
  if (steps) args.push('--steps', String(steps));
  return args;
}

/** `trm predict` with the tests' reference model (E2E_MODEL), after `steps` ACT steps (default: the config's). */
export function predictFile(mazeLines, steps) {
  return predictWith(modelArgs(env('E2E_MODEL'), steps), mazeLines);
}

/**
 * `trm predict` with the app's default model (E2E_DEFAULT, size-general) capped at `steps`
 * ACT steps: `{ grid, verdict, halted }`.
 */
export function predictDefault(mazeLines, steps) {
  return predictRun(modelArgs(env('E2E_DEFAULT'), steps), mazeLines);
}

/** `halt_max_steps` of the config in directory `dir`. */
export function haltMaxSteps(dir) {
  const m = readFileSync(join(dir, 'config.toml'), 'utf8').match(/^halt_max_steps\s*=\s*(\d+)/m);
  assert.ok(m, `no halt_max_steps in ${dir}/config.toml`);
  return Number(m[1]);
}

/**
 * Checks that `grid` (row-major) is an answer to `maze` (text lines): the same size, every
 * wall, S and G where the maze has them, and only open or path cells elsewhere.
 */
export function assertAnswerKeepsTheMaze(grid, mazeLines) {
  const maze = mazeLines.replaceAll('\n', '');
  assert.equal(grid?.length, maze.length, `the answer has ${grid?.length} cells, the maze ${maze.length}`);
  for (let i = 0; i < maze.length; i++) {
    const [m, a] = [maze[i], grid[i]];
    const ok = m === '#' || m === 'S' || m === 'G' ? a === m : a === ' ' || a === 'o';
    assert.ok(ok, `cell ${i}: the maze has '${m}', the answer '${a}'`);
  }
}

/** A copy of the weights in `dir` whose Q head always says halt (its bias raised by 100), with the same config, in a new directory. */
export function alwaysHaltingCopy(dir) {
  const out = mkdtempSync(join(tmpdir(), 'trm-e2e-halting-'));
  const bytes = readFileSync(join(dir, 'model.safetensors'));
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  const bias = header['q_head.bias'];
  assert.ok(bias && bias.dtype === 'F32', 'no f32 q_head.bias in the weights');
  const at = 8 + n + bias.data_offsets[0];
  bytes.writeFloatLE(bytes.readFloatLE(at) + 100, at);
  writeFileSync(join(out, 'model.safetensors'), bytes);
  writeFileSync(join(out, 'config.toml'), readFileSync(join(dir, 'config.toml')));
  return out;
}

/**
 * The answer `grid` (row-major) to `maze` (text lines) checked against BFS, independently of
 * the app and of trm: 'shortest' (one simple path of 'o' cells from S to G, as short as BFS
 * finds), 'longer' (such a path, longer), or 'invalid'.
 */
export function shortestPathCheck(mazeLines, grid) {
  const rows = mazeLines.split('\n').filter((l) => l.length > 0);
  const [h, w] = [rows.length, rows[0].length];
  const maze = rows.join('');
  if (grid?.length !== maze.length) return 'invalid';
  const near = (i) => [[-1, 0], [1, 0], [0, -1], [0, 1]]
    .map(([dr, dc]) => [Math.floor(i / w) + dr, (i % w) + dc])
    .filter(([r, c]) => r >= 0 && r < h && c >= 0 && c < w)
    .map(([r, c]) => r * w + c);
  for (let i = 0; i < maze.length; i++) {
    if (grid[i] !== maze[i] && !(maze[i] === ' ' && grid[i] === 'o')) return 'invalid';
  }
  const [s, g] = [maze.indexOf('S'), maze.indexOf('G')];
  const onPath = (i) => grid[i] === 'o' || i === s || i === g;
  // Walk from S along the path: every step has exactly one way on, and it ends at G having
  // visited every path cell.
  let [prev, cur, moves] = [-1, s, 0];
  while (cur !== g) {
    const next = near(cur).filter((j) => onPath(j) && j !== prev);
    if (next.length !== 1 || moves > maze.length) return 'invalid';
    [prev, cur, moves] = [cur, next[0], moves + 1];
  }
  if (moves !== [...grid].filter((c) => c === 'o').length + 1) return 'invalid';
  const dist = new Map([[s, 0]]);
  for (const queue = [s]; queue.length;) {
    const i = queue.shift();
    for (const j of near(i)) {
      if (maze[j] !== '#' && !dist.has(j)) { dist.set(j, dist.get(i) + 1); queue.push(j); }
    }
  }
  return moves === dist.get(g) ? 'shortest' : 'longer';
}
