// The web app in headless Firefox (Debian's firefox-esr, driven over WebDriver BiDi by
// puppeteer-core): it loads with its default model (the size-general one), edits a maze, and
// solves it on the CPU in the page's worker and on the server with trm predict's answer.
// Firefox here has no WebGPU; the app must say so rather than fail silently. Run through
// run.sh, like app.test.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';
import { env, startServer, stopServer, predictDefault } from './support.mjs';

const FIREFOX = process.env.FIREFOX ?? ['/usr/bin/firefox-esr', '/usr/bin/firefox'].find(existsSync);
const skip = FIREFOX ? false : 'no Firefox (apt-get install firefox-esr)';
const SHOTS = env('E2E_SHOTS');
const SIDE = 7;
const MAZE = ['S      ', '  #### ', '  #    ', '  # ###', '  #    ', '  ###  ', '      G'].join('\n') + '\n';
// The cap on ACT steps (the default model's 256 would take long on WebGPU, were there one).
const STEPS = 16;

let server;
let browser;
let page;

async function shot(name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `firefox-${name}.png`), fullPage: true });
}

async function openDetails() {
  if (!(await page.$eval('details', (d) => d.open))) await page.click('details summary');
}

async function mazeText() {
  await openDetails();
  await page.click('#export');
  return page.$eval('#maze-text', (t) => t.value);
}

/** Solves with a backend; returns { status, grid, steps, halted }. */
async function solve(backend) {
  await page.click(`input[name=backend][value=${backend}]`);
  await page.click('#solve');
  await page.waitForSelector('#status[data-status=done], #status[data-status=failed]', { timeout: 180_000 });
  const status = await page.$eval('#status', (s) => s.textContent);
  const halted = await page.$eval('#status', (s) => s.dataset.halted);
  const grid = await page.$eval('#answer', (a) => a.dataset.grid).catch(() => null);
  const steps = (await page.$$('.qbar')).length;
  return { status, grid, steps, halted };
}

before(async () => {
  if (skip) return;
  server = await startServer();
  browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    userDataDir: mkdtempSync(join(tmpdir(), 'trm-firefox-')),
  });
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 860 });
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(server.base + '/');
  await page.waitForFunction(() => document.querySelector('#model-line')?.textContent.startsWith('default: any maze size'), { timeout: 90_000 });
  // The opening maze is generated in the page; it must not land on the one the tests import.
  await page.waitForFunction(() => document.querySelector('#note')?.textContent.startsWith('generated a 30x30 maze'), { timeout: 90_000 });
});

after(async () => {
  await browser?.close();
  await stopServer(server);
});

test('Firefox: the app loads the default model and a generated 30x30 maze, takes a maze and a click on the board', { skip }, async () => {
  assert.equal(await page.$eval('#size', (s) => s.value), '30');
  await openDetails();
  await page.$eval('#maze-text', (t, v) => { t.value = v; t.dispatchEvent(new Event('input', { bubbles: true })); }, MAZE);
  await page.click('#import');
  assert.equal(await mazeText(), MAZE);
  // A click on cell (0, 3) draws a wall; Ctrl+Z takes it back.
  const box = await (await page.$('#board')).boundingBox();
  const size = Math.min(box.width / SIDE, box.height / SIDE);
  await page.mouse.click(box.x + 3.5 * size, box.y + 0.5 * size);
  assert.equal((await mazeText()).split('\n')[0], 'S  #   ');
  await page.keyboard.down('Control');
  await page.keyboard.press('z');
  await page.keyboard.up('Control');
  assert.equal(await mazeText(), MAZE);
  assert.match(await page.$eval('#facts', (f) => f.textContent), /^solvable: shortest path \d+ moves/);
  await shot('1-maze');
});

test('Firefox: solves on the CPU in the page and on the server with trm predict\'s answer; WebGPU says it is missing', { skip }, async () => {
  await page.$eval('#steps', (t, v) => { t.value = v; t.dispatchEvent(new Event('input', { bubbles: true })); }, String(STEPS));
  const expected = predictDefault(MAZE, STEPS);
  const halted = expected.halted === null ? 'cap' : String(expected.halted);
  const cpu = await solve('cpu');
  assert.match(cpu.status, /^ran on CPU/, cpu.status);
  assert.equal(cpu.grid, expected.grid);
  assert.equal(cpu.halted, halted);
  await shot('2-cpu');
  const srv = await solve('server');
  assert.match(srv.status, /^ran on server/, srv.status);
  assert.equal(srv.grid, expected.grid);
  assert.equal(srv.halted, halted);
  assert.equal(srv.steps, cpu.steps);
  const gpu = await solve('webgpu');
  if (gpu.status.startsWith('ran on WebGPU')) {
    assert.equal(gpu.grid, expected.grid);
  } else {
    assert.match(gpu.status, /WebGPU/, gpu.status);
  }
  await shot('3-webgpu');
});

test('Firefox: the benchmark times the CPU worker, and WebGPU where there is one', { skip }, async () => {
  await page.$eval('#bench-steps', (t) => { t.value = '2'; t.dispatchEvent(new Event('input', { bubbles: true })); });
  await page.click('#bench-run');
  await page.waitForSelector('#bench-table[data-running=false]', { timeout: 180_000 });
  const rows = await page.$$eval('#bench-table tbody tr', (trs) => trs.map((tr) => ({
    backend: tr.dataset.backend, status: tr.dataset.status, text: tr.textContent,
    median: Number(tr.querySelector('td.median')?.dataset.ms),
  })));
  assert.deepEqual(rows.map((r) => r.backend), ['webgpu', 'cpu']);
  const [gpu, cpu] = rows;
  assert.equal(cpu.status, 'timed', cpu.text);
  assert.ok(cpu.median > 0, cpu.text);
  if (gpu.status !== 'timed') assert.match(gpu.text, /skipped: .*WebGPU/, gpu.text);
  await shot('4-bench');
});
