// Drives Debian's Chromium with playwright-core for the media tests.
//
//   node webrtc.mjs play    <page-origin> <whep-url> <frames> [screenshot.png]
//   node webrtc.mjs publish <page-origin> <whip-url> <seconds> <vp8|h264> [camera.y4m]
//
// <page-origin> `elsewhere`: the page comes from a server of this script on
// another loopback port, so every WHIP/WHEP request is cross-origin (CORS
// preflights included), as from a third-party player's page.
//
// `play` plays a WHEP URL and prints {framesDecoded, width, height, codec,
// rgb} once <frames> frames are decoded (rgb: the picture shown, base64). `publish` publishes the fake camera (or
// the .y4m file) over WHIP for <seconds>, DELETEs the resource and prints
// {framesSent, codec}. Either prints {error} and exits 1 on failure.
//
// LX_PLAYWRIGHT_CORE: the playwright-core package folder; LX_CHROMIUM: the
// browser binary. `cargo xtask test` sets both.

import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.LX_PLAYWRIGHT_CORE);

const [mode, origin, url, amount, extra, file] = process.argv.slice(2);

const args = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // WebRTC over loopback with plain addresses, as the server's ICE is on 127.0.0.1.
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
];
const camera = mode === 'publish' ? file : undefined;
if (camera) args.push(`--use-file-for-fake-video-capture=${camera}`);

const browser = await chromium.launch({
  executablePath: process.env.LX_CHROMIUM,
  headless: true,
  args,
});
let code = 0;
let pageServer;
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('console', (m) => console.error(`[page] ${m.text()}`));
  if (origin === 'elsewhere') {
    // A page of another origin (a loopback one: still a secure context).
    pageServer = createServer((_, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>a player elsewhere</title>');
    });
    await new Promise((ready) => pageServer.listen(0, '127.0.0.1', ready));
    await page.goto(`http://127.0.0.1:${pageServer.address().port}/`);
  } else {
    // Any page of the server: a secure (loopback) context of that origin.
    await page.goto(`${origin}/api/v1/health`);
  }
  const result = mode === 'play'
    ? await page.evaluate(play, { url, frames: Number(amount) })
    : await page.evaluate(publish, { url, seconds: Number(amount), codec: extra });
  if (mode === 'play' && extra) await page.screenshot({ path: extra });
  result.pageOrigin = await page.evaluate(() => location.origin);
  console.log(JSON.stringify(result));
  if (result.error) code = 1;
} catch (e) {
  console.log(JSON.stringify({ error: String(e) }));
  code = 1;
} finally {
  pageServer?.close();
  await browser.close();
}
process.exit(code);

// --- in the page ---------------------------------------------------------

async function play({ url, frames }) {
  const gathered = (pc) => new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') resolve();
    });
    setTimeout(resolve, 3000);
  });
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', { direction: 'recvonly' });
  const video = document.createElement('video');
  video.muted = true;
  video.autoplay = true;
  document.body.appendChild(video);
  pc.ontrack = (e) => { video.srcObject = e.streams[0] || new MediaStream([e.track]); video.play().catch(() => {}); };
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const resp = await fetch(url, {
    method: 'POST', headers: { 'content-type': 'application/sdp' }, body: pc.localDescription.sdp,
  });
  if (resp.status !== 201) return { error: `WHEP POST answered ${resp.status}: ${await resp.text()}` };
  await pc.setRemoteDescription({ type: 'answer', sdp: await resp.text() });
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    const stats = await pc.getStats();
    let inbound; const codecs = {};
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') inbound = s;
      if (s.type === 'codec') codecs[s.id] = s.mimeType;
    });
    if (inbound && inbound.framesDecoded >= frames && video.videoWidth > 0) {
      // The picture as shown, RGB, base64: the test checks its colours.
      const canvas = document.createElement('canvas');
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(video, 0, 0);
      const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let rgb = '';
      for (let i = 0; i < rgba.length; i += 4) {
        rgb += String.fromCharCode(rgba[i], rgba[i + 1], rgba[i + 2]);
      }
      return {
        framesDecoded: inbound.framesDecoded,
        width: inbound.frameWidth, height: inbound.frameHeight,
        codec: codecs[inbound.codecId] || null,
        rgb: btoa(rgb),
      };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { error: `fewer than ${frames} frames decoded in 20 s (ICE ${pc.iceConnectionState})` };
}

async function publish({ url, seconds, codec }) {
  const gathered = (pc) => new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') resolve();
    });
    setTimeout(resolve, 3000);
  });
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  const pc = new RTCPeerConnection();
  const transceiver = pc.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly', streams: [stream] });
  const wanted = `video/${codec === 'h264' ? 'H264' : 'VP8'}`;
  const codecs = RTCRtpSender.getCapabilities('video').codecs.filter((c) => c.mimeType === wanted);
  if (codecs.length === 0) return { error: `this browser cannot send ${wanted}` };
  transceiver.setCodecPreferences(codecs);
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const resp = await fetch(url, {
    method: 'POST', headers: { 'content-type': 'application/sdp' }, body: pc.localDescription.sdp,
  });
  if (resp.status !== 201) return { error: `WHIP POST answered ${resp.status}: ${await resp.text()}` };
  const resource = new URL(resp.headers.get('location'), url).toString();
  await pc.setRemoteDescription({ type: 'answer', sdp: await resp.text() });
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const stats = await pc.getStats();
  let sent = 0; let used = null; const names = {};
  stats.forEach((s) => { if (s.type === 'codec') names[s.id] = s.mimeType; });
  stats.forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') { sent = s.framesEncoded; used = names[s.codecId] || null; }
  });
  const deleted = await fetch(resource, { method: 'DELETE' });
  pc.close();
  return { framesSent: sent, codec: used, deleted: deleted.status };
}
