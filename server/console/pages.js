// The console's pages. Each builds its DOM once (no innerHTML: the page's
// CSP allows no inline style or script, and API text is never parsed as
// markup) and refreshes its values on a timer bound to the page's context.

import { asApiError, del, get, getBlob, post } from './api.js';
import { CODECS, WhepPlayer, WhipPublisher, cameras } from './media.js';
import { coveragePlot, pickerPlot } from './plot.js';
import { provider, signIn } from './wallet.js';

// ------------------------------------------------------------------ DOM

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function errorBox(id) {
  return h('div', { class: 'error', role: 'alert', id, hidden: true });
}

function showError(box, err) {
  const e = asApiError(err);
  box.textContent = e.describe();
  box.dataset.code = e.code;
  box.hidden = false;
}

function clearError(box) {
  box.hidden = true;
  box.textContent = '';
  delete box.dataset.code;
}

// A button that runs `action`, disabled meanwhile; a failure lands in `box`.
function button(label, id, box, action, cls = '') {
  const b = h('button', { type: 'button', id, class: cls }, label);
  b.addEventListener('click', async () => {
    b.disabled = true;
    clearError(box);
    try {
      await action();
    } catch (err) {
      showError(box, err);
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

// --------------------------------------------------------------- formats

const shortId = (id) => (id ? id.slice(0, 8) : '—');

function time(text) {
  if (!text) return '—';
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? text : `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

function usdc(micro) {
  if (micro === undefined || micro === null) return '—';
  return `${(Number(micro) / 1e6).toFixed(6)} USDC`;
}

const rate = (micro) => `${micro} µUSDC/s ($${(micro * 60 / 1e6).toFixed(2)}/min)`;
const point = (lat, lng) => `${Number(lat).toFixed(5)}, ${Number(lng).toFixed(5)}`;

function stateBadge(state) {
  return h('span', { class: `state state-${String(state).toLowerCase()}`, 'data-state': state }, state);
}

function sideOf(session, workspaceId) {
  if (session.consumerWorkspaceId === workspaceId) return 'consumer';
  if (session.operatorWorkspaceId === workspaceId) return 'operator';
  if (session.offer && session.offer.workspaceId === workspaceId) return 'offered';
  return null;
}

const TERMINAL = ['ENDED', 'CANCELLED', 'EXPIRED'];
const MEDIA_STATES = ['ASSIGNED', 'LIVE', 'PAUSED'];

// ---------------------------------------------------- media across pages

// The operator keeps publishing while looking at another page of the
// console; the session page finds its publisher here again.
const publishers = new Map();
const players = new Set();
// Location heartbeats of the sessions this page publishes for a workspace
// without devices, by session id.
const heartbeats = new Map();

export async function stopAllMedia(keepalive = false) {
  const all = [...publishers.values(), ...players];
  publishers.clear();
  players.clear();
  for (const beat of heartbeats.values()) beat.stop();
  heartbeats.clear();
  await Promise.all(all.map((m) => m.stop(keepalive)));
}

// A workspace without devices (trust tier 0) is paid only for the seconds
// its location heartbeats prove, from inside the session's geofence: while
// it publishes, the page sends the browser's position every 5 s
// (POST /workspaces/{id}/location, the reference's cadence). Without a
// position (no geolocation, or permission refused) it says so: the media
// still flows, but the meter counts none of its seconds.
class LocationHeartbeat {
  constructor(workspaceId, sessionId, show) {
    this.workspaceId = workspaceId;
    this.sessionId = sessionId;
    this.show = show;
    this.coords = null;
    this.watch = null;
    this.timer = null;
    this.sequence = Date.now();
  }

  start() {
    if (!navigator.geolocation) {
      this.show('This browser gives no location: the meter counts no seconds without location heartbeats.', 'none');
      return;
    }
    this.watch = navigator.geolocation.watchPosition(
      (pos) => {
        const first = !this.coords;
        this.coords = pos.coords;
        if (first) this.send();
      },
      (err) => this.show(`No location (${err.message}): the meter counts no seconds without location heartbeats.`, 'none'),
      { enableHighAccuracy: true, maximumAge: 5000 },
    );
    this.timer = setInterval(() => this.send(), 5000);
  }

  async send() {
    if (!this.coords) return;
    // Sequences only grow: the clock, or one above the last.
    this.sequence = Math.max(this.sequence + 1, Date.now());
    try {
      await post(`/workspaces/${this.workspaceId}/location`, {
        lat: this.coords.latitude,
        lng: this.coords.longitude,
        accuracyMeters: Math.max(0, this.coords.accuracy || 0),
        sequence: this.sequence,
        sessionId: this.sessionId,
      });
      this.show(`Location heartbeat sent (±${Math.round(this.coords.accuracy || 0)} m).`, 'sent');
    } catch (err) {
      this.show(`Location heartbeat refused: ${asApiError(err).describe()}`, 'refused');
    }
  }

  stop() {
    if (this.watch !== null) navigator.geolocation.clearWatch(this.watch);
    if (this.timer !== null) clearInterval(this.timer);
    this.watch = null;
    this.timer = null;
  }
}

function stopHeartbeat(sessionId) {
  const beat = heartbeats.get(sessionId);
  if (beat) beat.stop();
  heartbeats.delete(sessionId);
}

// --------------------------------------------------------------- sign-in

export function signInPage(ctx) {
  const error = errorBox('signin-error');
  const hasWallet = provider() !== null;
  const go = button('Sign in with wallet', 'sign-in', error, async () => {
    const login = await signIn();
    await ctx.reload();
    if (login.workspaces.length === 0) {
      showError(error, {
        code: 'NO_WORKSPACE',
        message: 'this wallet owns no workspace yet: create one with POST /api/v1/workspaces (see docs/server-api.md)',
      });
      return;
    }
    const wanted = ctx.state.wanted && !ctx.state.wanted.startsWith('#/signin') ? ctx.state.wanted : '#/sessions';
    ctx.state.wanted = null;
    ctx.go(login.workspaces.length > 1 ? '#/workspaces' : wanted);
  }, 'primary');
  if (ctx.state.me) {
    ctx.mount(h('section', { class: 'page narrow' },
      h('h1', {}, 'Signed in'),
      h('p', {}, `as ${ctx.state.me.walletAddress}.`),
      h('p', {}, h('a', { href: '#/sessions' }, 'Go to the sessions'))));
    return;
  }
  ctx.mount(h('section', { class: 'page narrow', id: 'signin' },
    h('h1', {}, 'Sign in'),
    h('p', {}, 'Sign in with the wallet that owns your lx workspace. The wallet signs a one-time '
      + 'Sign-In with Ethereum message (EIP-4361); no transaction is sent and nothing is paid.'),
    hasWallet
      ? go
      : h('p', { class: 'error', id: 'no-wallet', role: 'alert' },
        'No browser wallet found. Install an Ethereum wallet extension (any EIP-1193 wallet, such as '
        + 'MetaMask or Rabby) and reload this page. Agents and scripts use an API key instead.'),
    error));
}

// ---------------------------------------------------------- workspaces

export function workspacesPage(ctx) {
  const error = errorBox('workspaces-error');
  const list = h('ul', { class: 'workspaces', id: 'workspace-list' });
  for (const ws of ctx.state.workspaces) {
    const current = ctx.state.me && ws.id === ctx.state.me.workspaceId;
    list.append(h('li', {},
      button(ws.name, `workspace-${ws.slug}`, error, async () => {
        await stopAllMedia();
        await post('/auth/workspace/select', { workspaceId: ws.id });
        await ctx.reload();
        const wanted = ctx.state.wanted || '#/sessions';
        ctx.state.wanted = null;
        ctx.go(wanted);
      }, current ? 'current' : ''),
      h('span', { class: 'muted' }, ` ${ws.slug} · ${ws.roles.join(', ')} · ${ws.availabilityState}`),
      current ? h('span', { class: 'muted' }, ' (current)') : null));
  }
  ctx.mount(h('section', { class: 'page narrow' },
    h('h1', {}, 'Choose a workspace'),
    h('p', {}, 'This wallet owns several workspaces; the console acts for one at a time.'),
    ctx.state.workspaces.length ? list : h('p', {}, 'This wallet owns no workspace.'),
    error));
}

// ------------------------------------------------------------ sessions

function sessionRow(s, workspaceId) {
  const charge = s.meter ? usdc(s.meter.chargedMicroUsdc) : '—';
  return h('tr', { 'data-session': s.id },
    h('td', {}, h('a', { href: `#/sessions/${s.id}`, class: 'session-link' }, shortId(s.id))),
    h('td', {}, stateBadge(s.state)),
    h('td', {}, sideOf(s, workspaceId) || '—'),
    h('td', {}, point(s.lat, s.lng)),
    h('td', { class: 'num' }, s.ratePerSecondMicroUsdc),
    h('td', {}, time(s.createdAt)),
    h('td', {}, time(s.startedAt)),
    h('td', {}, time(s.endedAt)),
    h('td', { class: 'num' }, s.meter ? s.meter.cleanSeconds : '—'),
    h('td', { class: 'num' }, charge));
}

export function sessionsPage(ctx) {
  const error = errorBox('sessions-error');
  const body = h('tbody', {});
  const table = h('table', { id: 'sessions' },
    h('thead', {}, h('tr', {},
      ['Session', 'State', 'Side', 'Point', 'Rate µUSDC/s', 'Created', 'Started', 'Ended', 'Clean s', 'Charge']
        .map((c) => h('th', {}, c)))),
    body);
  const empty = h('p', { class: 'muted', hidden: true }, 'No sessions yet.');
  const offersBody = h('ul', { id: 'offers' });
  const supplier = ctx.state.workspace && ctx.state.workspace.roles.includes('SUPPLIER');
  const offers = h('section', { hidden: !supplier },
    h('h2', {}, 'Offers to this workspace'), offersBody, cancelAllPanel());
  const consumer = ctx.state.workspace && ctx.state.workspace.roles.includes('CONSUMER');
  ctx.mount(h('section', { class: 'page' },
    h('h1', {}, 'Sessions'), error, consumer ? requestPanel(ctx) : null, offers, table, empty));
  const workspaceId = ctx.state.me.workspaceId;
  ctx.every(5000, async () => {
    try {
      const sessions = await get('/sessions?limit=100');
      const open = supplier ? await get('/sessions/offers') : [];
      if (!ctx.alive()) return;
      clearError(error);
      body.replaceChildren(...sessions.map((s) => sessionRow(s, workspaceId)));
      empty.hidden = sessions.length > 0;
      offersBody.replaceChildren(...(open.length ? open.map((o) => h('li', {},
        h('a', { href: `#/sessions/${o.sessionId}` }, shortId(o.sessionId)),
        ` at ${point(o.lat, o.lng)}, ${rate(o.ratePerSecondMicroUsdc)}, up to ${o.maxDurationSeconds} s, `
        + `answer by ${time(o.expiresAt)}`)) : [h('li', { class: 'muted' }, 'none open')]));
    } catch (err) {
      if (ctx.alive()) showError(error, err);
    }
  });
}

// Eyes on a point: pick it on the plot of the suppliers' coverage (or type
// it), then request and dispatch; the session's page follows it.
function requestPanel(ctx) {
  const error = errorBox('request-error');
  const lat = h('input', { id: 'request-lat', type: 'number', step: 'any', min: -90, max: 90, placeholder: 'latitude' });
  const lng = h('input', { id: 'request-lng', type: 'number', step: 'any', min: -180, max: 180, placeholder: 'longitude' });
  const duration = h('input', { id: 'request-duration', type: 'number', min: 1, step: 1, value: '120' });
  const tier = h('select', { id: 'request-tier' },
    h('option', { value: '' }, "the server's default"),
    h('option', { value: '0' }, 'any supplier'),
    h('option', { value: '1' }, 'only a device signing its telemetry'));
  const plotBox = h('div', { id: 'request-plot' });
  let circles = [];
  let picked = null;
  const draw = () => plotBox.replaceChildren(pickerPlot(circles, picked, (p) => {
    picked = p;
    lat.value = String(p.lat);
    lng.value = String(p.lng);
    draw();
  }));
  const typed = () => {
    const p = { lat: Number(lat.value), lng: Number(lng.value) };
    if (lat.value !== '' && lng.value !== '' && Number.isFinite(p.lat) && Number.isFinite(p.lng)) {
      picked = p;
      draw();
    }
  };
  lat.addEventListener('change', typed);
  lng.addEventListener('change', typed);
  const go = button('Request and dispatch', 'request', error, async () => {
    if (lat.value === '' || lng.value === '') throw new Error('pick a point on the plot or type its latitude and longitude');
    const body = { lat: Number(lat.value), lng: Number(lng.value), maxDurationSeconds: Number(duration.value) };
    if (tier.value !== '') body.minTrustTier = Number(tier.value);
    const created = await post('/sessions', body);
    try {
      await post(`/sessions/${created.id}/dispatch`);
    } catch (err) {
      // The session exists, REQUESTED: its page can dispatch it again.
      const e = asApiError(err);
      throw Object.assign(new Error(`session ${shortId(created.id)} was created but not dispatched: ${e.message}`),
        { code: e.code });
    }
    ctx.go(`#/sessions/${created.id}`);
  }, 'primary');
  ctx.every(30000, async () => {
    circles = (await get('/coverage')).circles;
    if (ctx.alive()) draw();
  });
  return h('section', { id: 'request-panel' },
    h('h2', {}, 'Request live video'),
    h('p', { class: 'muted' }, 'Click the plot to pick the point (the circles are where suppliers cover), or type it.'),
    h('div', { class: 'devices' }, plotBox, h('div', { class: 'form' },
      h('label', {}, 'Latitude ', lat), h('label', {}, 'Longitude ', lng),
      h('label', {}, 'Seconds, at most ', duration), h('label', {}, 'Supplier ', tier), go, error)));
}

// A supplier frees itself of every session assigned and not LIVE yet, in
// two clicks.
function cancelAllPanel() {
  const error = errorBox('cancel-all-error');
  const result = h('p', { id: 'cancel-all-result', class: 'muted' });
  const confirm = button('Yes, cancel them all', 'cancel-all-confirm', error, async () => {
    const done = await post('/sessions/cancel-all-assignments');
    result.dataset.count = String(done.count);
    result.textContent = `Cancelled ${done.count} assignment${done.count === 1 ? '' : 's'}; LIVE sessions go on.`;
    confirm.hidden = true;
  }, 'danger');
  confirm.hidden = true;
  const ask = button('Cancel all assignments', 'cancel-all', error, async () => {
    confirm.hidden = false;
  });
  return h('div', { class: 'actions' }, ask, confirm, result, error);
}

// ----------------------------------------------------------------- keys

const SCOPES = ['sessions:read', 'sessions:create', 'sessions:operate', 'pricing:read', 'wallet:read',
  'operators:write', 'webhooks:write'];

export function keysPage(ctx) {
  const workspaceId = ctx.state.me.workspaceId;
  const base = `/workspaces/${workspaceId}/api-keys`;
  const error = errorBox('keys-error');
  const mintError = errorBox('mint-error');
  const label = h('input', { id: 'key-label', value: 'agent', maxlength: 100 });
  const environment = h('select', { id: 'key-environment' },
    h('option', { value: 'LIVE' }, 'LIVE'), h('option', { value: 'TEST' }, 'TEST'));
  const scopes = SCOPES.map((scope) => h('label', { class: 'scope' },
    h('input', { type: 'checkbox', name: 'scope', value: scope,
      checked: ['sessions:read', 'sessions:create', 'pricing:read'].includes(scope) }), ` ${scope}`));
  const secret = h('div', { id: 'key-secret', hidden: true });
  const body = h('tbody', {});
  const table = h('table', { id: 'keys' },
    h('thead', {}, h('tr', {}, ['Label', 'Key', 'Environment', 'Scopes', 'Created', 'Revoked', '']
      .map((c) => h('th', {}, c)))),
    body);

  async function load() {
    const keys = await get(base);
    if (!ctx.alive()) return;
    clearError(error);
    body.replaceChildren(...keys.map((k) => h('tr', { 'data-key': k.id, 'data-revoked': String(Boolean(k.revokedAt)) },
      h('td', {}, k.label),
      h('td', {}, h('code', {}, `${k.prefix}…`)),
      h('td', {}, k.environment),
      h('td', {}, k.scopes.join(', ')),
      h('td', {}, time(k.createdAt)),
      h('td', {}, time(k.revokedAt)),
      h('td', {}, k.revokedAt ? '' : button('Revoke', `revoke-${k.id}`, error, async () => {
        await post(`${base}/${k.id}/revoke`);
        await load();
      }, 'danger')))));
  }

  const mint = button('Mint key', 'mint-key', mintError, async () => {
    const chosen = scopes.map((l) => l.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
    const made = await post(base, { label: label.value.trim(), environment: environment.value, scopes: chosen });
    secret.dataset.keyId = made.id;
    secret.replaceChildren(
      h('p', {}, 'The key, shown this once (only its hash is kept): give it to the agent as LX_API_KEY.'),
      h('code', { id: 'key-secret-value' }, made.secret));
    secret.hidden = false;
    await load();
  }, 'primary');

  ctx.mount(h('section', { class: 'page' },
    h('h1', {}, 'API keys'),
    h('p', { class: 'muted' }, 'Agents, scripts and the lx command line act for this workspace with a key; '
      + 'each holds the scopes it was minted with.'),
    h('section', { id: 'mint' }, h('h2', {}, 'Mint a key'),
      h('div', { class: 'form' }, h('label', {}, 'Label ', label), h('label', {}, 'Environment ', environment)),
      h('div', { class: 'scopes' }, scopes), mint, mintError, secret),
    error, table));
  ctx.every(10000, load);
}

// -------------------------------------------------------------- session

const FIELDS = [
  ['state', 'State'], ['side', 'You are'], ['point', 'Point'], ['geofence', 'Geofence'],
  ['rate', 'Rate'], ['hold', 'Hold'], ['created', 'Created'], ['assigned', 'Assigned'],
  ['started', 'Started (first frame)'], ['ended', 'Ended'], ['expires', 'Expires if not live by'],
  ['clean', 'Clean seconds'], ['failed', 'Failed seconds'], ['charge', 'Charge'],
  ['fee', 'Platform fee'], ['earned', 'Operator earns'], ['windows', 'Failure windows'],
  ['expiry', 'Expiry reason'],
];

function fieldList(id, fields) {
  const values = {};
  const dl = h('dl', { class: 'fields', id });
  for (const [key, label] of fields) {
    values[key] = h('dd', { 'data-field': key }, '—');
    dl.append(h('dt', {}, label), values[key]);
  }
  return { dl, values };
}

function set(dd, value) {
  if (value instanceof Node) dd.replaceChildren(value);
  else dd.textContent = value === undefined || value === null || value === '' ? '—' : String(value);
}

export function sessionPage(ctx, id) {
  const workspaceId = ctx.state.me.workspaceId;
  const loadError = errorBox('session-error');
  const actionError = errorBox('action-error');
  const details = fieldList('session-fields', FIELDS);
  const actions = h('div', { class: 'actions', id: 'session-actions' });

  const settlement = fieldList('settlement-fields', [
    ['state', 'State'], ['to', 'To the operator'], ['fee', 'Fee'], ['tx', 'Transaction'],
    ['block', 'Block'], ['attempts', 'Attempts'], ['error', 'Last error'],
  ]);
  const settlementError = errorBox('settlement-error');
  const settlementPanel = h('section', { id: 'settlement', hidden: true },
    h('h2', {}, 'Settlement'), settlementError, settlement.dl);

  // The consumer's player.
  const video = h('video', { id: 'player', autoplay: true, playsinline: true, controls: true });
  video.muted = true; // autoplay needs it; the feeds have no audio anyway
  const player = new WhepPlayer(video);
  players.add(player);
  const playerStatus = h('p', { id: 'player-status', class: 'muted' }, 'The video plays here once the session is LIVE.');
  const playerError = errorBox('player-error');
  const playerPanel = h('section', { id: 'player-panel', hidden: true },
    h('h2', {}, 'Live video (WHEP)'), video, playerStatus, playerError);
  let playerStarting = false;
  let playerRetryAt = 0;

  // The operator's publisher.
  const publishError = errorBox('publish-error');
  const cameraSelect = h('select', { id: 'camera' }, h('option', { value: '' }, 'default camera'));
  const codecSelect = h('select', { id: 'codec' }, CODECS.map((c) => h('option', { value: c.id }, c.label)));
  const preview = h('video', { id: 'preview', autoplay: true, playsinline: true });
  preview.muted = true;
  const publishStatus = h('p', { id: 'publisher-status', class: 'muted' }, 'Not publishing.');
  const locationStatus = h('p', { id: 'location-status', class: 'muted' });
  const showLocation = (text, state) => {
    locationStatus.textContent = text;
    locationStatus.dataset.state = state;
  };
  let session = null;

  async function fillCameras(allow) {
    const found = await cameras(allow);
    const chosen = cameraSelect.value;
    cameraSelect.replaceChildren(...(found.length
      ? found.map((d, i) => h('option', { value: d.deviceId }, d.label || `camera ${i + 1} (allow the camera to see its name)`))
      : [h('option', { value: '' }, 'no camera found')]));
    if (found.some((d) => d.deviceId === chosen)) cameraSelect.value = chosen;
  }

  // The WHIP URL: the producer token's, after provisioning the media if
  // nobody has started the session yet (start is idempotent).
  async function whipUrl() {
    try {
      return (await get(`/sessions/${id}/producer-token`)).whipUrl;
    } catch (err) {
      if (err.code === 'INVALID_STATE' && session && session.state === 'ASSIGNED') {
        return (await post(`/sessions/${id}/start`)).whipUrl;
      }
      throw err;
    }
  }

  const publishButton = button('Publish', 'publish', publishError, async () => {
    if (publishers.has(id)) return;
    const url = await whipUrl();
    const publisher = new WhipPublisher();
    publishers.set(id, publisher);
    try {
      await publisher.start({ whipUrl: url, deviceId: cameraSelect.value, codec: codecSelect.value });
    } catch (err) {
      publishers.delete(id);
      throw err;
    }
    preview.srcObject = publisher.stream;
    // Served by the workspace itself, not one of its devices: prove where.
    if (session && session.operatorWorkspaceId && !session.operatorId && !heartbeats.has(id)) {
      const beat = new LocationHeartbeat(session.operatorWorkspaceId, id, showLocation);
      heartbeats.set(id, beat);
      beat.start();
    }
    await showPublisher();
  }, 'primary');
  const stopButton = button('Stop publishing', 'stop-publish', publishError, async () => {
    const publisher = publishers.get(id);
    if (!publisher) return;
    publishers.delete(id);
    stopHeartbeat(id);
    await publisher.stop();
    preview.srcObject = null;
    publishStatus.dataset.deleted = String(publisher.deleted);
    publishStatus.textContent = `Stopped; the WHIP resource was deleted (${publisher.deleted}).`;
  });
  const publisherPanel = h('section', { id: 'publisher-panel', hidden: true },
    h('h2', {}, 'Publish this camera (WHIP)'),
    h('div', { class: 'row' },
      h('label', {}, 'Camera ', cameraSelect),
      button('Find cameras', 'find-cameras', publishError, () => fillCameras(true)),
      h('label', {}, 'Codec ', codecSelect),
      publishButton, stopButton),
    preview, publishStatus, locationStatus, publishError);

  // The server's latest decoded frame, for either side.
  const frame = h('img', { id: 'frame', alt: 'the latest frame the server decoded' });
  const frameStatus = h('p', { id: 'frame-status', class: 'muted' }, 'The latest frame appears here once the session is LIVE.');
  const framePanel = h('section', { id: 'frame-panel' }, h('h2', {}, 'Latest frame (/frame)'), frame, frameStatus);
  let frameUrl = null;

  ctx.mount(h('section', { class: 'page' },
    h('p', {}, h('a', { href: '#/sessions' }, '← all sessions')),
    h('h1', {}, 'Session ', h('code', {}, id)),
    loadError, details.dl, actions, actionError, settlementPanel,
    h('div', { class: 'media' }, publisherPanel, playerPanel, framePanel)));

  const existing = publishers.get(id);
  if (existing && existing.stream) preview.srcObject = existing.stream;
  fillCameras(false).catch((err) => showError(publishError, err));

  function act(label, domId, call, cls) {
    return button(label, domId, actionError, async () => {
      await call();
      await refresh();
    }, cls);
  }

  let actionsKey = '';
  function renderActions(s, side) {
    const key = `${s.state}|${side}`;
    if (key === actionsKey) return;
    actionsKey = key;
    const buttons = [];
    if (side === 'consumer') {
      if (s.state === 'REQUESTED' && !s.offer) buttons.push(act('Dispatch', 'dispatch', () => post(`/sessions/${id}/dispatch`)));
      if (s.state === 'LIVE') buttons.push(act('Pause', 'pause', () => post(`/sessions/${id}/pause`)));
      if (s.state === 'PAUSED') buttons.push(act('Resume', 'resume', () => post(`/sessions/${id}/resume`)));
      if (s.state === 'LIVE' || s.state === 'PAUSED') buttons.push(act('End', 'end', () => post(`/sessions/${id}/end`), 'danger'));
      if (s.state === 'REQUESTED' || s.state === 'ASSIGNED') buttons.push(act('Cancel', 'cancel', () => del(`/sessions/${id}`), 'danger'));
    } else if (side === 'offered') {
      buttons.push(act('Accept', 'accept', () => post(`/sessions/${id}/accept`), 'primary'));
    } else if (side === 'operator') {
      if (s.state === 'ASSIGNED') buttons.push(act('Start (provision the media)', 'start', () => post(`/sessions/${id}/start`)));
      if (s.state === 'LIVE' || s.state === 'PAUSED') buttons.push(act('End', 'end', () => post(`/sessions/${id}/end`), 'danger'));
    }
    actions.replaceChildren(...buttons);
  }

  async function showPublisher() {
    const publisher = publishers.get(id);
    if (!publisher) return;
    const stats = await publisher.stats();
    if (!stats) return;
    publishStatus.dataset.state = publisher.state;
    publishStatus.dataset.framesEncoded = String(stats.framesEncoded);
    publishStatus.dataset.codec = stats.codec || '';
    publishStatus.textContent = `Publishing ${stats.codec || publisher.codec} ${stats.width}×${stats.height}: `
      + `${stats.framesEncoded} frames encoded, ${Math.round(stats.bytesSent / 1024)} KiB sent, connection ${publisher.state}.`;
  }

  async function showPlayer() {
    const stats = await player.stats();
    if (!stats) return;
    playerStatus.dataset.framesDecoded = String(stats.framesDecoded);
    playerStatus.dataset.width = String(stats.width);
    playerStatus.dataset.height = String(stats.height);
    playerStatus.dataset.codec = stats.codec || '';
    playerStatus.textContent = `${stats.codec || 'video'} ${stats.width}×${stats.height}: `
      + `${stats.framesDecoded} frames decoded, connection ${player.connectionState}.`;
  }

  async function updatePlayer(s) {
    if (TERMINAL.includes(s.state)) {
      if (player.running) await player.stop();
      playerStatus.textContent = `The session is ${s.state}.`;
      return;
    }
    if (!['LIVE', 'PAUSED'].includes(s.state) || player.running || playerStarting || Date.now() < playerRetryAt) return;
    playerStarting = true;
    try {
      const token = await get(`/sessions/${id}/viewer-token`);
      await player.start(token.whepUrl);
      clearError(playerError);
    } catch (err) {
      showError(playerError, err);
      playerRetryAt = Date.now() + 3000;
    } finally {
      playerStarting = false;
    }
  }

  async function updatePublisher(s) {
    const publisher = publishers.get(id);
    const open = MEDIA_STATES.includes(s.state);
    publishButton.disabled = !open || Boolean(publisher);
    stopButton.disabled = !publisher;
    if (publisher && !open) {
      publishers.delete(id);
      stopHeartbeat(id);
      await publisher.stop();
      preview.srcObject = null;
      publishStatus.dataset.deleted = String(publisher.deleted);
      // The server closes the ingest itself when a session ends, so the
      // DELETE usually finds the resource gone (404); both mean hung up.
      publishStatus.textContent = `The session is ${s.state}: publishing stopped `
        + `(DELETE of the WHIP resource: ${publisher.deleted === 404 ? '404, the server had already closed it' : publisher.deleted}).`;
    } else if (!publisher && !open && s.state !== 'REQUESTED') {
      publishStatus.textContent = `The session is ${s.state}.`;
    }
  }

  let frameFetched = null;
  async function updateFrame(s) {
    if (!['LIVE', 'PAUSED'].includes(s.state)) {
      if (frameFetched) frameStatus.textContent = `The last frame, fetched ${frameFetched} UTC; the session is ${s.state}.`;
      return;
    }
    try {
      const blob = await getBlob(`/sessions/${id}/frame`);
      if (!ctx.alive()) return;
      const next = URL.createObjectURL(blob);
      frame.src = next;
      if (frameUrl) URL.revokeObjectURL(frameUrl);
      frameUrl = next;
      frameStatus.dataset.loaded = 'true';
      frameFetched = new Date().toISOString().slice(11, 19);
      frameStatus.textContent = `Fetched ${frameFetched} UTC (${Math.round(blob.size / 1024)} KiB JPEG).`;
    } catch (err) {
      frameStatus.textContent = asApiError(err).describe();
    }
  }

  async function updateSettlement(s) {
    if (s.state !== 'ENDED') return;
    settlementPanel.hidden = false;
    try {
      const st = await get(`/settlements/${id}`);
      clearError(settlementError);
      set(settlement.values.state, stateBadge(st.state));
      set(settlement.values.to, st.toAmountMicroUsdc !== undefined ? usdc(st.toAmountMicroUsdc) : null);
      set(settlement.values.fee, st.feeAmountMicroUsdc !== undefined ? usdc(st.feeAmountMicroUsdc) : null);
      set(settlement.values.tx, st.txHash);
      set(settlement.values.block, st.blockNumber);
      set(settlement.values.attempts, st.attempts);
      set(settlement.values.error, st.lastError);
    } catch (err) {
      showError(settlementError, err);
    }
  }

  async function refresh() {
    let s;
    try {
      s = await get(`/sessions/${id}`);
    } catch (err) {
      if (ctx.alive()) showError(loadError, err);
      return;
    }
    if (!ctx.alive()) return;
    clearError(loadError);
    session = s;
    const side = sideOf(s, workspaceId);
    const v = details.values;
    set(v.state, stateBadge(s.state));
    set(v.side, side === 'offered' ? 'offered this session (accept it to serve it)' : side);
    set(v.point, point(s.lat, s.lng));
    set(v.geofence, `${s.geofenceRadiusMeters} m`);
    set(v.rate, rate(s.ratePerSecondMicroUsdc));
    set(v.hold, usdc(s.holdMicroUsdc));
    set(v.created, time(s.createdAt));
    set(v.assigned, time(s.assignedAt));
    set(v.started, time(s.startedAt));
    set(v.ended, time(s.endedAt));
    set(v.expires, TERMINAL.includes(s.state) || s.startedAt ? null : time(s.expiresAt));
    // While LIVE the server's meter runs: what ending now would charge.
    const running = ['LIVE', 'PAUSED'].includes(s.state);
    const so = running ? ' so far' : '';
    v.clean.dataset.running = String(running);
    set(v.clean, s.meter ? `${s.meter.cleanSeconds}${so}` : null);
    set(v.failed, s.meter ? `${s.meter.failedSeconds}${so}` : null);
    v.clean.dataset.value = s.meter ? String(s.meter.cleanSeconds) : '';
    v.failed.dataset.value = s.meter ? String(s.meter.failedSeconds) : '';
    const finality = running ? ' (running)' : s.meterFinal ? '' : ' (not final yet)';
    set(v.charge, s.meter ? `${usdc(s.meter.chargedMicroUsdc)}${finality}` : null);
    set(v.fee, s.meter ? usdc(s.meter.feeMicroUsdc) : null);
    set(v.earned, s.meter ? usdc(s.meter.operatorEarnedMicroUsdc) : null);
    set(v.windows, s.windows.length
      ? s.windows.map((w) => `${w.reason} ${time(w.openedAt)} → ${w.closedAt ? time(w.closedAt) : 'open'}`).join('; ')
      : 'none');
    set(v.expiry, s.expiryReason);
    renderActions(s, side);
    playerPanel.hidden = side !== 'consumer';
    publisherPanel.hidden = side !== 'operator';
    if (side === 'consumer') await updatePlayer(s);
    if (side === 'operator') await updatePublisher(s);
    await Promise.all([updateFrame(s), updateSettlement(s)]);
  }

  ctx.every(2000, refresh);
  ctx.every(1000, async () => {
    await showPlayer();
    await showPublisher();
  });
  ctx.onLeave(async () => {
    players.delete(player);
    if (frameUrl) URL.revokeObjectURL(frameUrl);
    await player.stop();
  });
}

// -------------------------------------------------------------- devices

export function devicesPage(ctx) {
  const workspaceId = ctx.state.me.workspaceId;
  const error = errorBox('devices-error');
  const info = fieldList('workspace-fields', [
    ['name', 'Workspace'], ['availability', 'Availability'], ['coverage', 'Coverage'], ['kind', 'Device kind'],
  ]);
  const plot = h('div', { id: 'plot' });
  const body = h('tbody', {});
  const table = h('table', { id: 'devices' },
    h('thead', {}, h('tr', {},
      ['Device', 'Kind', 'Connected', 'Availability', 'Battery', 'Last seen', 'Position', 'Accuracy']
        .map((c) => h('th', {}, c)))),
    body);
  const empty = h('p', { class: 'muted', hidden: true },
    'No enrolled devices: mint an enrollment token (POST /workspaces/{id}/enrollment-tokens) and run lx-agent enroll.');
  ctx.mount(h('section', { class: 'page' },
    h('h1', {}, 'Devices'), error, info.dl, h('div', { class: 'devices' }, plot, h('div', {}, table, empty))));
  ctx.every(3000, async () => {
    try {
      const [ws, devices] = await Promise.all([
        get(`/workspaces/${workspaceId}`),
        get(`/workspaces/${workspaceId}/operators`),
      ]);
      if (!ctx.alive()) return;
      clearError(error);
      const coverage = ws.coverageLat !== null && ws.coverageLat !== undefined
        && ws.coverageLng !== null && ws.coverageRadiusMeters
        ? { lat: ws.coverageLat, lng: ws.coverageLng, radiusMeters: ws.coverageRadiusMeters }
        : null;
      set(info.values.name, `${ws.name} (${ws.slug})`);
      set(info.values.availability, ws.availabilityState);
      set(info.values.coverage, coverage
        ? `${coverage.radiusMeters} m around ${point(coverage.lat, coverage.lng)}` : 'not set');
      set(info.values.kind, ws.deviceKind);
      plot.replaceChildren(coveragePlot(coverage, devices));
      body.replaceChildren(...devices.map((d) => h('tr', { 'data-device': d.name },
        h('td', {}, d.name),
        h('td', {}, d.deviceKind),
        h('td', { 'data-connected': String(d.connected) }, d.connected ? 'yes' : 'no'),
        h('td', {}, d.availabilityState),
        h('td', { class: 'num' }, d.batteryPercent === null || d.batteryPercent === undefined ? '—' : `${d.batteryPercent} %`),
        h('td', {}, time(d.lastSeenAt)),
        h('td', {}, d.position ? point(d.position.lat, d.position.lng) : 'no fix yet'),
        h('td', { class: 'num' }, d.position ? `${d.position.accuracyMeters.toFixed(1)} m` : '—'))));
      empty.hidden = devices.length > 0;
    } catch (err) {
      if (ctx.alive()) showError(error, err);
    }
  });
}
