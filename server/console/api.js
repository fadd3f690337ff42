// The API client of the console: same origin, the `lx_session` cookie as
// the credential, and the error envelope {statusCode, code, message, detail}
// turned into an ApiError the pages show as it is.

const BASE = '/api/v1';

export class ApiError extends Error {
  constructor(status, code, message, detail) {
    super(message);
    this.status = status;
    this.code = code;
    this.detail = detail || '';
  }

  // What the page shows: the machine code first, as clients branch on it.
  describe() {
    const detail = this.detail ? ` (${this.detail})` : '';
    return `${this.code}: ${this.message}${detail}`;
  }
}

// An error from anything (a wallet, the network, WebRTC) as an ApiError,
// so every page shows failures the same way.
export function asApiError(err, fallbackCode = 'ERROR') {
  if (err instanceof ApiError) return err;
  const message = (err && (err.message || String(err))) || 'unknown error';
  return new ApiError(0, (err && err.code) || fallbackCode, message, '');
}

async function envelopeError(resp) {
  const text = await resp.text();
  let body = null;
  try { body = JSON.parse(text); } catch { /* not an envelope */ }
  if (body && typeof body.code === 'string') {
    return new ApiError(resp.status, body.code, body.message || resp.statusText, body.detail);
  }
  const snippet = text.trim().slice(0, 200) || resp.statusText;
  return new ApiError(resp.status, `HTTP_${resp.status}`, snippet, '');
}

async function send(method, path, body, accept) {
  const init = { method, credentials: 'same-origin', headers: { accept } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(`${BASE}${path}`, init);
  } catch (err) {
    throw new ApiError(0, 'NETWORK_ERROR', `the server did not answer (${err.message})`, '');
  }
  if (!resp.ok) throw await envelopeError(resp);
  return resp;
}

// A JSON call; resolves to the envelope's `data`.
export async function api(method, path, body) {
  const resp = await send(method, path, body, 'application/json');
  const envelope = await resp.json();
  return envelope.data;
}

export const get = (path) => api('GET', path);
export const post = (path, body = {}) => api('POST', path, body);
export const del = (path) => api('DELETE', path);

// A binary read (the latest frame); resolves to a Blob.
export async function getBlob(path) {
  const resp = await send('GET', path, undefined, 'image/jpeg');
  return resp.blob();
}

export { envelopeError };
