// The console's shell: who is signed in, the hash routes, the header, and
// each page's lifetime (its timers stop and its media hang up when the
// route changes).
//
// Routes: #/signin, #/workspaces, #/sessions, #/sessions/<id>, #/devices,
// #/keys.

import { asApiError, get, post } from './api.js';
import {
  devicesPage, h, keysPage, sessionPage, sessionsPage, signInPage, stopAllMedia, workspacesPage,
} from './pages.js';

// What the server says about the caller: /me, and the wallet's workspaces.
const state = {
  me: null,
  workspaces: [],
  get workspace() {
    return this.workspaces.find((w) => w.id === (this.me && this.me.workspaceId)) || null;
  },
  // Where to go after signing in, when a deep link needed a sign-in first.
  wanted: null,
};

const main = document.getElementById('main');
const banner = document.getElementById('banner');
let current = null;

function showBanner(err) {
  banner.textContent = asApiError(err).describe();
  banner.hidden = false;
}

async function loadMe() {
  try {
    state.me = await get('/me');
  } catch (err) {
    if (err.status === 401) {
      state.me = null;
      state.workspaces = [];
      return;
    }
    throw err;
  }
  state.workspaces = await get('/workspaces');
}

function renderHeader() {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  const signedIn = state.me !== null;
  nav.hidden = !signedIn || !state.me.workspaceId;
  const route = parseRoute().name;
  for (const a of nav.querySelectorAll('a')) {
    a.classList.toggle('active', a.dataset.route === route || (route === 'session' && a.dataset.route === 'sessions'));
  }
  if (!signedIn) {
    who.replaceChildren();
    return;
  }
  const ws = state.workspace;
  const address = state.me.walletAddress || '';
  const parts = [
    h('span', { id: 'current-workspace', title: ws ? ws.id : '' },
      ws ? `${ws.name} (${ws.roles.join(', ')})` : 'no workspace selected'),
    state.workspaces.length > 1 ? h('a', { href: '#/workspaces', id: 'switch-workspace' }, 'switch') : null,
    h('span', { class: 'wallet', title: address }, `${address.slice(0, 6)}…${address.slice(-4)}`),
    h('button', { id: 'sign-out', type: 'button', onclick: signOut }, 'Sign out'),
  ];
  who.replaceChildren(...parts.filter(Boolean));
}

async function signOut() {
  await stopAllMedia();
  try {
    await post('/auth/logout');
  } catch (err) {
    showBanner(err);
  }
  state.me = null;
  state.workspaces = [];
  navigate('#/signin');
}

function parseRoute() {
  const parts = (location.hash || '#/sessions').replace(/^#\/?/, '').split('/');
  if (parts[0] === 'sessions' && parts[1]) return { name: 'session', id: decodeURIComponent(parts[1]) };
  if (['signin', 'workspaces', 'sessions', 'devices', 'keys'].includes(parts[0])) return { name: parts[0] };
  return { name: 'sessions' };
}

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

// The page's context: the shared state, and a lifetime its timers and
// media are bound to.
function makeContext() {
  const timers = [];
  const leaving = [];
  let alive = true;
  return {
    state,
    alive: () => alive,
    mount(node) { main.replaceChildren(node); },
    go: navigate,
    // Runs `fn` now and every `ms`, never two at once, until the page goes.
    every(ms, fn) {
      let busy = false;
      const tick = async () => {
        if (busy || !alive) return;
        busy = true;
        try { await fn(); } catch (err) { showBanner(err); } finally { busy = false; }
      };
      tick();
      timers.push(setInterval(tick, ms));
    },
    onLeave(fn) { leaving.push(fn); },
    // After sign-in or a workspace switch.
    async reload() {
      await loadMe();
      renderHeader();
    },
    leave() {
      alive = false;
      timers.forEach(clearInterval);
      for (const fn of leaving) {
        Promise.resolve().then(fn).catch(() => { /* hanging up on the way out */ });
      }
    },
  };
}

function route() {
  banner.hidden = true;
  if (current) current.leave();
  const r = parseRoute();
  if (!state.me && r.name !== 'signin') {
    state.wanted = location.hash;
    navigate('#/signin');
    return;
  }
  if (state.me && !state.me.workspaceId && !['signin', 'workspaces'].includes(r.name)) {
    state.wanted = location.hash;
    navigate('#/workspaces');
    return;
  }
  current = makeContext();
  renderHeader();
  try {
    switch (r.name) {
      case 'signin': signInPage(current); break;
      case 'workspaces': workspacesPage(current); break;
      case 'session': sessionPage(current, r.id); break;
      case 'devices': devicesPage(current); break;
      case 'keys': keysPage(current); break;
      default: sessionsPage(current);
    }
  } catch (err) {
    showBanner(err);
  }
}

// A closing tab hangs up its WHIP and WHEP resources, so the server frees
// them at once instead of waiting for the media timeout.
window.addEventListener('pagehide', () => { stopAllMedia(true); });
window.addEventListener('hashchange', route);

try {
  await loadMe();
} catch (err) {
  showBanner(err);
}
route();
