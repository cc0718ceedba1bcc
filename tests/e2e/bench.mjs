// The app's benchmark in headless Chromium, for the README's figures: `trm serve` with the
// committed default model, the page's generated 30x30 hard maze, N ACT steps (default 8) timed
// on WebGPU (SwiftShader here: on the CPU) and in the CPU worker, printed as a Markdown table
// with the load average before and after. Run through run.sh: `bash tests/e2e/run.sh bench.mjs [N]`.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer, stopServer } from './support.mjs';

const steps = Number(process.argv[2] ?? 8);
const uptime = () => execFileSync('uptime', { encoding: 'utf8' }).trim();
const server = await startServer();
const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'trm-bench-')), {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--no-first-run', '--enable-unsafe-webgpu'],
});
try {
  const page = await context.newPage();
  await page.goto(server.base + '/');
  await page.waitForFunction(() => document.querySelector('#model-line')?.textContent.startsWith('default: any maze size'), null, { timeout: 120_000 });
  await page.waitForFunction(() => document.querySelector('#note')?.textContent.startsWith('generated a 30x30 maze'), null, { timeout: 120_000 });
  console.log(`maze: ${await page.locator('#note').innerText()}`);
  await page.locator('#bench-steps').fill(String(steps));
  console.log(`before: ${uptime()}`);
  const start = new Date();
  await page.locator('#bench-run').click();
  await page.waitForSelector('#bench-table[data-running=false]', { timeout: 3_600_000 });
  console.log(`after:  ${uptime()} (started ${start.toISOString()})`);
  // The first cell's small print names what ran (the WebGPU adapter); the rest are figures or a reason.
  const rows = await page.locator('#bench-table tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.cells]
    .map((td) => (td.querySelector('small') ?? td).innerText.replace(/\s+/g, ' ').trim())));
  console.log('\n| backend | set-up ms | first step ms | median ms | min ms | total ms |\n|---|---|---|---|---|---|');
  for (const cells of rows) console.log(`| ${cells.join(' | ')} |`);
} finally {
  await context.close();
  await stopServer(server);
}
