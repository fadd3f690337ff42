// Drives the web console in Debian's Chromium with playwright-core, for
// tests/integration/console.rs.
//
//   node console.mjs '<json config>'
//
// config: {origin, sessionId, signer, operator: {address, workspace},
// consumer: {address}, codec, camera (a .y4m clip), shots (a folder),
// geolocation? (the operator's browser position, {latitude, longitude,
// accuracy}: granted to its pages), devices? (false: the supplier has none,
// the devices phase is skipped)}.
//
// Each browser context gets an injected EIP-1193 wallet (`window.ethereum`)
// for one address; its personal_sign calls a function exposed from Node,
// which asks the test's loopback signer (it holds the real keys) to sign.
// Nothing else about the console is faked: the page signs in over SIWE,
// publishes Chromium's fake camera (the clip) over WHIP and plays over WHEP.
//
// stdout: one JSON line per phase — publishing, played, devices, then (after
// a `continue` line on stdin, once the test has checked /frame: the operator
// stops publishing, the consumer ends the session) ended and done; or
// {error} and exit 1.

import { createInterface } from 'node:readline';

import {
  launch, pageErrors, say, shootFailures, shot as shotIn, sleep, until, untilState, walletContext as contextFor, watch,
} from './console_lib.mjs';

const config = JSON.parse(process.argv[2]);
const { origin, sessionId, signer, codec, camera, shots } = config;
const shot = (page, file) => shotIn(page, shots, file);
const walletContext = (browser, name, address, geolocation) => contextFor(browser, signer, name, address, geolocation);

const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const browser = await launch([
  // WebRTC over loopback with plain addresses, as the server's ICE is on 127.0.0.1.
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  `--use-file-for-fake-video-capture=${camera}`,
  '--autoplay-policy=no-user-gesture-required',
]);

let code = 0;
try {
  // ---- a browser without a wallet is told so.
  const walletless = await browser.newContext();
  const bare = await walletless.newPage();
  watch(bare, 'no-wallet');
  await bare.goto(`${origin}/console/`);
  const noWallet = await bare.locator('#no-wallet').textContent();
  if (!noWallet.includes('No browser wallet found')) throw new Error(`no-wallet page says: ${noWallet}`);
  await shot(bare, '0-no-wallet.png');
  await walletless.close();

  // ---- the operator: sign in, pick the workspace, open the session, publish.
  const operatorContext = await walletContext(browser, 'operator', config.operator.address, config.geolocation);
  const operator = await operatorContext.newPage();
  await operator.goto(`${origin}/console/`);
  await operator.locator('#sign-in').waitFor();
  await shot(operator, '1-signin.png');
  await operator.click('#sign-in');
  await operator.locator('#workspace-list').waitFor();
  await shot(operator, '2-workspaces.png');
  await operator.click(`#workspace-${config.operator.workspace}`);
  const row = operator.locator(`#sessions tr[data-session="${sessionId}"]`);
  await row.waitFor();
  const listedState = await row.locator('[data-state]').getAttribute('data-state');
  await shot(operator, '3-sessions-operator.png');
  await row.locator('a.session-link').click();
  await operator.locator('#publisher-panel:not([hidden])').waitFor();
  await untilState(operator, 'ASSIGNED');
  await operator.click('#find-cameras');
  const cameraId = await until(operator, 'a named camera', () => {
    const option = [...document.querySelectorAll('#camera option')].find((o) => o.value);
    return option ? option.value : null;
  });
  await operator.selectOption('#camera', cameraId);
  await operator.selectOption('#codec', codec);
  await shot(operator, '4-session-operator-assigned.png');
  await operator.click('#publish');
  const encoded = await until(operator, 'frames encoded', () => {
    const s = document.getElementById('publisher-status');
    return Number(s.dataset.framesEncoded || 0) > 0 ? s.dataset : null;
  });
  // A workspace serving its own session proves where it is: with a
  // position granted, the page's first location heartbeat goes out.
  const location = config.geolocation
    ? await until(operator, 'a location heartbeat', () => {
      const s = document.getElementById('location-status');
      return s.dataset.state === 'sent' ? s.dataset.state : null;
    })
    : await operator.evaluate(() => document.getElementById('location-status').dataset.state || null);
  say({ phase: 'publishing', listed: listedState === 'ASSIGNED', codec: encoded.codec, location });
  await untilState(operator, 'LIVE');
  await shot(operator, '5-session-operator-live.png');

  // ---- the consumer: a deep link to the session, sign in, watch.
  const consumerContext = await walletContext(browser, 'consumer', config.consumer.address);
  const consumer = await consumerContext.newPage();
  await consumer.goto(`${origin}/console/#/sessions/${sessionId}`);
  await consumer.locator('#sign-in').waitFor();
  await consumer.click('#sign-in');
  await consumer.locator('#player-panel:not([hidden])').waitFor();
  await until(consumer, '30 decoded frames', () => {
    const s = document.getElementById('player-status');
    const v = document.getElementById('player');
    return Number(s.dataset.framesDecoded || 0) > 30 && v.videoWidth > 0;
  }, undefined, 40000);
  const frameShown = await until(consumer, 'the /frame image', () => {
    const img = document.getElementById('frame');
    return img.complete && img.naturalWidth === 640 && img.naturalHeight === 480;
  });
  const played = await consumer.evaluate(() => {
    const s = document.getElementById('player-status').dataset;
    const video = document.getElementById('player');
    // The picture as shown, RGB, base64: the test checks its colours.
    const canvas = document.createElement('canvas');
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(video, 0, 0);
    const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let rgb = '';
    for (let i = 0; i < rgba.length; i += 4) rgb += String.fromCharCode(rgba[i], rgba[i + 1], rgba[i + 2]);
    return {
      framesDecoded: Number(s.framesDecoded), width: Number(s.width), height: Number(s.height),
      codec: s.codec, videoWidth: video.videoWidth, videoHeight: video.videoHeight, rgb: btoa(rgb),
    };
  });
  await shot(consumer, '6-session-consumer-live.png');
  say({ phase: 'played', frameShown, ...played });

  // ---- the operator's devices, in a second tab (the first keeps publishing).
  if (config.devices === false) {
    say({ phase: 'devices', skipped: true });
  } else {
    const devicesTab = await operatorContext.newPage();
    await devicesTab.goto(`${origin}/console/#/devices`);
    const dot = await until(devicesTab, 'the device on the plot', () => {
      const g = document.querySelector('#plot .plot-device');
      const centre = document.querySelector('#plot .plot-centre');
      const coverage = document.querySelector('#plot .plot-coverage');
      if (!g || !centre || !coverage) return null;
      const d = g.querySelector('.plot-dot');
      return {
        device: g.dataset.device,
        connected: g.dataset.connected,
        coverageRadiusMeters: coverage.dataset.radiusMeters,
        // East and north on screen, in view-box units.
        dotOffset: [Number(d.getAttribute('cx')) - Number(centre.getAttribute('cx')),
          Number(centre.getAttribute('cy')) - Number(d.getAttribute('cy'))],
      };
    });
    await until(devicesTab, 'the devices table', () => document.querySelector('#devices tr[data-device]') !== null);
    await shot(devicesTab, '7-devices.png');
    say({ phase: 'devices', ...dot });
  }

  // ---- once the test has checked /frame: the operator stops publishing
  // (its DELETE hangs up the WHIP resource) and the consumer ends the session.
  const next = await Promise.race([stdin.next(), sleep(120000).then(() => null)]);
  if (!next || next.done) throw new Error('no `continue` from the test on stdin');
  await operator.click('#stop-publish');
  const deleted = await until(operator, 'the publisher to hang up', () => {
    const s = document.getElementById('publisher-status');
    return s.dataset.deleted || null;
  });
  await consumer.click('#end');
  await untilState(consumer, 'ENDED');
  const settlementState = await until(consumer, 'the settlement', () => {
    const badge = document.querySelector('#settlement-fields [data-field=state] [data-state]');
    return badge ? badge.dataset.state : null;
  });
  await shot(consumer, '8-session-consumer-ended.png');
  await untilState(operator, 'ENDED');
  await shot(operator, '9-session-operator-ended.png');
  say({ phase: 'ended', deleted, settlementState });
  say({ phase: 'done', pageErrors });
} catch (e) {
  await shootFailures(shots);
  say({ error: String(e && e.stack ? e.stack : e), pageErrors });
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
