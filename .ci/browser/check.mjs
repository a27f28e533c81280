// Render report pages in headless Chromium and fail on what a reader would
// see broken: an image that does not load, a link to a missing file, a
// console error. Screenshots go to $SCREENSHOTS (default: a temp folder).
//
//   node .ci/browser/check.mjs reports/index.html reports/shattered/index.html
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import url from 'node:url';
import { chromium } from 'playwright-core';

const pages = process.argv.slice(2);
if (pages.length === 0) {
  console.error('usage: check.mjs PAGE.html…');
  process.exit(2);
}
const shots = process.env.SCREENSHOTS || fs.mkdtempSync(path.join(os.tmpdir(), 'gradscope-shots-'));
fs.mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const problems = [];
for (const [n, p] of pages.entries()) {
  const file = path.resolve(p);
  if (!fs.existsSync(file)) {
    problems.push(`${p}: no such page`);
    continue;
  }
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`script error: ${e}`));
  page.on('requestfailed', (r) => errors.push(`failed to load ${r.url()}`));
  await page.goto(url.pathToFileURL(file).href, { waitUntil: 'load' });
  // Images load lazily: scroll the whole page once.
  await page.evaluate(async () => {
    for (let y = 0; y < document.body.scrollHeight; y += 400) {
      window.scrollTo(0, y);
      await new Promise((r) => setTimeout(r, 25));
    }
  });
  await page.waitForLoadState('networkidle');
  await page.waitForFunction(() => [...document.images].every((i) => i.complete), null, { timeout: 15000 }).catch(() => {});
  const broken = await page.evaluate(() => [...document.images].filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.getAttribute('src')));
  for (const b of broken) errors.push(`broken image ${b}`);
  const links = await page.evaluate(() => [...document.querySelectorAll('a[href]')].map((a) => a.href));
  for (const l of links.filter((h) => h.startsWith('file:'))) {
    const target = url.fileURLToPath(l.split('#')[0]);
    if (!fs.existsSync(target)) errors.push(`link to missing ${target}`);
  }
  const images = await page.evaluate(() => document.images.length);
  const shot = path.join(shots, `${String(n).padStart(2, '0')}-${path.basename(path.dirname(file))}.png`);
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`${errors.length ? 'FAIL' : 'ok  '} ${p}: ${images} images, ${links.length} links → ${shot}`);
  for (const e of errors) problems.push(`${p}: ${e}`);
  await page.close();
}
await browser.close();
if (problems.length) {
  for (const p of problems) console.error(p);
  process.exit(1);
}
