// What the console's page scripts share (console.mjs, console_actions.mjs):
// Chromium launched the way this machine needs it, a browser context with
// an injected EIP-1193 wallet whose personal_sign asks the test's loopback
// signer (it holds the real keys), and waiting on the page.

import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.LX_PLAYWRIGHT_CORE);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const say = (value) => console.log(JSON.stringify(value));

// Script errors in the pages and CSP refusals: the tests want none.
export const pageErrors = [];
export const pages = {};

async function signature(signer, address, message) {
  const resp = await fetch(signer, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ address, message }),
  });
  if (!resp.ok) throw new Error(`signer answered ${resp.status}: ${await resp.text()}`);
  return (await resp.json()).signature;
}

// The page side of the wallet: enough of EIP-1193 for a SIWE sign-in.
function injectWallet({ address }) {
  const fail = (code, message) => Object.assign(new Error(message), { code });
  window.ethereum = {
    isLxTestWallet: true,
    async request({ method, params }) {
      switch (method) {
        case 'eth_requestAccounts':
        case 'eth_accounts':
          return [address];
        case 'personal_sign': {
          const [message, from] = params;
          if (String(from).toLowerCase() !== address.toLowerCase()) throw fail(4100, 'unknown account');
          return window.lxWalletSign(from, message);
        }
        default:
          throw fail(4200, `unsupported method ${method}`);
      }
    },
  };
}

export async function walletContext(browser, signer, name, address, geolocation) {
  const located = geolocation ? { geolocation, permissions: ['geolocation'] } : {};
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, ...located });
  await context.exposeFunction('lxWalletSign', (from, message) => signature(signer, from, message));
  await context.addInitScript(injectWallet, { address });
  context.on('page', (page) => watch(page, name));
  return context;
}

export function watch(page, name) {
  pages[name] = pages[name] || page;
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on('console', (m) => {
    const text = m.text();
    console.error(`[${name}] ${text}`);
    if (text.includes('Content Security Policy')) pageErrors.push(`${name}: ${text}`);
  });
}

export async function shot(page, shots, file) {
  await page.screenshot({ path: join(shots, file), fullPage: true });
}

export async function shootFailures(shots) {
  for (const [name, page] of Object.entries(pages)) {
    await page.screenshot({ path: join(shots, `failure-${name}.png`), fullPage: true }).catch(() => {});
  }
}

// Polls `fn` in the page until it returns something truthy.
export async function until(page, what, fn, arg, ms = 30000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const value = await page.evaluate(fn, arg);
    if (value) return value;
    await sleep(200);
  }
  const shown = await page.evaluate(() => [...document.querySelectorAll('.error:not([hidden])')]
    .map((e) => `${e.id || 'error'}: ${e.textContent}`));
  throw new Error(`timed out after ${ms} ms waiting for ${what}; errors on the page: ${JSON.stringify(shown)}`);
}

export async function untilState(page, state, ms = 30000) {
  await until(page, `the page to show ${state}`, (want) => {
    const badge = document.querySelector('#session-fields [data-field=state] [data-state]');
    return badge && badge.dataset.state === want;
  }, state, ms);
}

// Debian's Chromium, headless, as this machine needs it; `extra` adds flags.
export function launch(extra = []) {
  return chromium.launch({
    executablePath: process.env.LX_CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...extra,
    ],
  });
}
