// The console doing a consumer's and an operator's work without the CLI,
// in Debian's Chromium driven by playwright-core, for
// tests/integration/console.rs:
//
//   node console_actions.mjs '<json config>'
//
// config: {origin, signer, shots, consumer: {address}, supplier: {address}}.
//
// The consumer mints an API key and revokes it, picks a point on the plot
// of the suppliers' coverage, requests a session there and watches its
// running meter while it is LIVE; the supplier cancels all its assignments.
// stdout: one JSON line per phase (minted, revoked, requested, metering,
// cancelled, done); after each of the first four the script waits for a
// `continue` line on stdin, once the test has checked the server.

import { createInterface } from 'node:readline';

import {
  launch, pageErrors, say, shootFailures, shot as shotIn, sleep, until, untilState, walletContext,
} from './console_lib.mjs';

const config = JSON.parse(process.argv[2]);
const { origin, signer, shots } = config;
const shot = (page, file) => shotIn(page, shots, file);
const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function proceed() {
  const next = await Promise.race([stdin.next(), sleep(120000).then(() => null)]);
  if (!next || next.done) throw new Error('no `continue` from the test on stdin');
}

async function signedIn(browser, name, address) {
  const context = await walletContext(browser, signer, name, address);
  const page = await context.newPage();
  await page.goto(`${origin}/console/`);
  await page.locator('#sign-in').waitFor();
  await page.click('#sign-in');
  await page.locator('#sessions').waitFor();
  return page;
}

const browser = await launch();
let code = 0;
try {
  const consumer = await signedIn(browser, 'consumer', config.consumer.address);

  // ---- an API key for an agent, shown once, then revoked.
  await consumer.goto(`${origin}/console/#/keys`);
  await consumer.locator('#mint-key').waitFor();
  await consumer.fill('#key-label', 'browser-agent');
  await consumer.click('#mint-key');
  const minted = await until(consumer, 'the new key', () => {
    const box = document.getElementById('key-secret');
    const value = document.getElementById('key-secret-value');
    return !box.hidden && value ? { keyId: box.dataset.keyId, secret: value.textContent } : null;
  });
  await until(consumer, 'the key in the list', (id) => document.querySelector(`#keys tr[data-key="${id}"]`), minted.keyId);
  await shot(consumer, '1-key-minted.png');
  say({ phase: 'minted', ...minted });
  await proceed();
  await consumer.click(`#revoke-${minted.keyId}`);
  await until(consumer, 'the key revoked', (id) => {
    const row = document.querySelector(`#keys tr[data-key="${id}"]`);
    return row && row.dataset.revoked === 'true';
  }, minted.keyId);
  await shot(consumer, '2-key-revoked.png');
  say({ phase: 'revoked', keyId: minted.keyId });
  await proceed();

  // ---- eyes on a point picked on the plot.
  await consumer.goto(`${origin}/console/#/sessions`);
  const circle = consumer.locator('#request-plot circle.plot-coverage').first();
  await circle.waitFor();
  const box = await circle.boundingBox();
  const covered = { lat: Number(await circle.getAttribute('data-lat')), lng: Number(await circle.getAttribute('data-lng')) };
  // A little north-east of the circle's centre, well inside it.
  await consumer.mouse.click(box.x + box.width * 0.55, box.y + box.height * 0.45);
  const picked = await until(consumer, 'the picked point', () => {
    const lat = document.getElementById('request-lat').value;
    const lng = document.getElementById('request-lng').value;
    return lat && lng && document.querySelector('#request-plot .plot-picked') ? { lat: Number(lat), lng: Number(lng) } : null;
  });
  await consumer.fill('#request-duration', '300');
  await shot(consumer, '3-point-picked.png');
  await consumer.click('#request');
  const sessionId = await until(consumer, 'the new session page', () => {
    const m = location.hash.match(/^#\/sessions\/([0-9a-f-]{36})$/);
    return m ? m[1] : null;
  });
  await untilState(consumer, 'ASSIGNED');
  say({ phase: 'requested', sessionId, picked, covered });
  await proceed();

  // ---- LIVE: the meter runs on the page.
  await untilState(consumer, 'LIVE');
  const metering = await until(consumer, 'three clean seconds on the running meter', () => {
    const clean = document.querySelector('#session-fields [data-field=clean]');
    const failed = document.querySelector('#session-fields [data-field=failed]');
    const charge = document.querySelector('#session-fields [data-field=charge]');
    return clean.dataset.running === 'true' && Number(clean.dataset.value) >= 3
      ? {
        clean: Number(clean.dataset.value), failed: Number(failed.dataset.value),
        cleanText: clean.textContent, chargeText: charge.textContent,
      }
      : null;
  }, undefined, 40000);
  await shot(consumer, '4-running-meter.png');
  say({ phase: 'metering', ...metering });
  await proceed();

  // ---- the supplier frees itself of what it was assigned.
  const supplier = await signedIn(browser, 'supplier', config.supplier.address);
  await supplier.click('#cancel-all');
  await supplier.locator('#cancel-all-confirm:not([hidden])').waitFor();
  await supplier.click('#cancel-all-confirm');
  const cancelled = await until(supplier, 'the cancellation', () => {
    const r = document.getElementById('cancel-all-result');
    return r.dataset.count !== undefined ? { count: Number(r.dataset.count), text: r.textContent } : null;
  });
  await shot(supplier, '5-cancelled-all.png');
  say({ phase: 'cancelled', ...cancelled });
  say({ phase: 'done', pageErrors });
} catch (e) {
  await shootFailures(shots);
  say({ error: String(e && e.stack ? e.stack : e), pageErrors });
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
