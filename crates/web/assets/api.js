// The public API, as any separately hosted frontend would call it:
// GraphQL on /graphql, sign-up/in/refresh/out on /users/…, card entry on
// /payment-3p/preauth, and the admin REST routes. Relative URLs only.
//
// The session (ID and refresh tokens) lives in sessionStorage: it ends with
// the tab, and another tab signs in on its own. A refused token is renewed
// once with the refresh token; when that fails too the caller gets an
// AuthError and the page asks to sign in again (the cart, in localStorage,
// is untouched).

const KEY = { id: 'ecom.idToken', refresh: 'ecom.refreshToken' };

/** A refusal, with the server's message. */
export class ApiError extends Error {
  constructor(message, { status = 0, code = '', errors = [] } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.errors = errors;
  }
}

/** The session is missing or over: sign in again. */
export class AuthError extends ApiError {}

function store() {
  try { return window.sessionStorage; } catch { return null; }
}

function decodeClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

/** Who is signed in in this tab. Claims are read for display only: the API decides. */
export const session = {
  token() { return store()?.getItem(KEY.id) || ''; },
  refreshToken() { return store()?.getItem(KEY.refresh) || ''; },
  claims() { return decodeClaims(this.token()) || {}; },
  email() { return this.claims().email || ''; },
  groups() { const g = this.claims().groups; return Array.isArray(g) ? g : []; },
  signedIn() { return this.token() !== ''; },
  save(tokens) {
    store()?.setItem(KEY.id, tokens.idToken);
    store()?.setItem(KEY.refresh, tokens.refreshToken);
    window.dispatchEvent(new Event('ecom-session'));
  },
  clear() {
    store()?.removeItem(KEY.id);
    store()?.removeItem(KEY.refresh);
    window.dispatchEvent(new Event('ecom-session'));
  },
};

const OFFLINE = 'The shop cannot be reached. Check the connection and try again.';

/** How long a call may take before the page gives up on it. */
const TIMEOUT_MS = 30000;

async function send(url, init) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  let resp;
  let text;
  try {
    resp = await fetch(url, { credentials: 'same-origin', signal: abort.signal, ...init });
    text = await resp.text();
  } catch {
    throw new ApiError(abort.signal.aborted ? 'The shop did not answer in time. Try again.' : OFFLINE);
  } finally {
    clearTimeout(timer);
  }
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  return { resp, body };
}

/** The server's words for a refusal, never its raw body. */
function messageOf(status, body) {
  if (body && typeof body.message === 'string' && body.message) return body.message;
  if (status === 401) return 'Please sign in.';
  if (status === 403) return 'Your account is not allowed to do this.';
  if (status === 404) return 'Not found.';
  if (status === 429) return 'Too many attempts: wait a moment and try again.';
  if (status >= 500) return 'The shop had a problem. Try again in a moment.';
  return `The request was refused (HTTP ${status}).`;
}

let renewing = null;

/**
 * Renews the ID token with the refresh token (each refresh token works
 * once, so concurrent callers share one renewal). False when it cannot.
 */
export function renew() {
  const refreshToken = session.refreshToken();
  if (!refreshToken) return Promise.resolve(false);
  if (!renewing) {
    renewing = send('/users/refresh', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refreshToken }),
    }).then(({ resp, body }) => {
      if (resp.ok && body && body.idToken) { session.save(body); return true; }
      return false;
    }, () => false).finally(() => { renewing = null; });
  }
  return renewing;
}

function expired() {
  const exp = session.claims().exp;
  return typeof exp === 'number' && exp * 1000 < Date.now() + 5000;
}

const SIGN_IN_AGAIN = 'Your session has ended: please sign in again.';

async function authorised(call) {
  if (!session.signedIn()) throw new AuthError('Please sign in first.', { status: 401 });
  if (expired() && !(await renew())) {
    session.clear();
    throw new AuthError(SIGN_IN_AGAIN, { status: 401 });
  }
  const first = await call(session.token());
  if (!first.unauthenticated) return first;
  if (await renew()) {
    const second = await call(session.token());
    if (!second.unauthenticated) return second;
  }
  session.clear();
  throw new AuthError(SIGN_IN_AGAIN, { status: 401 });
}

/**
 * The ID token, renewed first when it has expired, for what cannot go
 * through `rest` or `gql` (a WebSocket's subprotocol); AuthError when the
 * session is over.
 */
export async function freshToken() {
  if (!session.signedIn()) throw new AuthError('Please sign in first.', { status: 401 });
  if (expired() && !(await renew())) {
    session.clear();
    throw new AuthError(SIGN_IN_AGAIN, { status: 401 });
  }
  return session.token();
}

/** The WebSocket URL of a path on this host (ws: or wss: as the page). */
export function socketAddress(path) {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}${path}`;
}

/**
 * One GraphQL subscription over the `graphql-transport-ws` protocol on
 * /graphql, with the ID token in `connection_init`. `onData(data)` gets each
 * answer; `onEnd(reason)` is called once when it ends for any reason but
 * `stop()`: `{code, message}` for a refusal, `null` when the server
 * completed it, `{message}` when the socket failed. Returns `stop`.
 */
export function subscribe(query, variables, { onData, onEnd }) {
  let socket;
  let ended = false;
  const end = (reason) => {
    if (ended) return;
    ended = true;
    try { socket?.close(); } catch { /* closed already */ }
    onEnd(reason);
  };
  freshToken().then((token) => {
    if (ended) return;
    socket = new WebSocket(socketAddress('/graphql'), 'graphql-transport-ws');
    socket.onopen = () => socket.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: `Bearer ${token}` } }));
    socket.onmessage = (m) => {
      let msg;
      try { msg = JSON.parse(m.data); } catch { return; }
      if (msg.type === 'connection_ack') {
        socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query, variables } }));
      } else if (msg.type === 'ping') {
        socket.send(JSON.stringify({ type: 'pong' }));
      } else if (msg.type === 'next' && msg.payload) {
        const errors = Array.isArray(msg.payload.errors) ? msg.payload.errors : [];
        if (errors.length) end({ code: errors[0]?.extensions?.code || '', message: String(errors[0]?.message || '') });
        else if (msg.payload.data) onData(msg.payload.data);
      } else if (msg.type === 'error') {
        const e = Array.isArray(msg.payload) ? msg.payload[0] : null;
        end({ code: e?.extensions?.code || '', message: String(e?.message || 'refused') });
      } else if (msg.type === 'complete') {
        end(null);
      }
    };
    socket.onerror = () => end({ message: 'the live connection failed' });
    socket.onclose = () => end({ message: 'the live connection closed' });
  }, (err) => end({ code: 'UNAUTHENTICATED', message: err.message }));
  return () => {
    ended = true;
    try { socket?.close(); } catch { /* closed already */ }
  };
}

/**
 * A REST call: the decoded JSON answer (null for 204), or an ApiError
 * with the server's message. `auth` sends the ID token.
 */
export async function rest(method, path, body, { auth = false } = {}) {
  const call = async (token) => {
    const headers = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    const r = await send(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    return { ...r, unauthenticated: !!token && r.resp.status === 401 };
  };
  const { resp, body: answer } = auth ? await authorised(call) : await call('');
  if (!resp.ok) throw new ApiError(messageOf(resp.status, answer), { status: resp.status });
  return answer;
}

/**
 * A GraphQL operation: its `data`, or an ApiError whose message is the
 * errors' messages and whose code is the first error's code.
 */
export async function gql(query, variables = {}, { auth = false, headers = {} } = {}) {
  const call = async (token) => {
    const h = { 'Content-Type': 'application/json', ...headers };
    if (token) h.Authorization = `Bearer ${token}`;
    const r = await send('/graphql', { method: 'POST', headers: h, body: JSON.stringify({ query, variables }) });
    const errors = (r.body && Array.isArray(r.body.errors)) ? r.body.errors : [];
    const unauthenticated = !!token && errors.some((e) => e?.extensions?.code === 'UNAUTHENTICATED');
    return { ...r, errors, unauthenticated };
  };
  const { resp, body, errors } = auth ? await authorised(call) : await call('');
  if (errors.length) {
    const code = errors[0]?.extensions?.code || '';
    const message = errors.map((e) => String(e?.message || '')).filter(Boolean).join(' ') || messageOf(resp.status, null);
    if (code === 'UNAUTHENTICATED') throw new AuthError(message, { status: 401, code });
    throw new ApiError(message, { status: resp.status, code });
  }
  if (!resp.ok || !body || !body.data) throw new ApiError(messageOf(resp.status, body), { status: resp.status });
  return body.data;
}

/** Signs in; the tokens are kept for this tab. */
export async function signIn(email, password) {
  const tokens = await rest('POST', '/users/sign-in', { email, password });
  session.save(tokens);
}

/** Creates an account, then signs in with it. */
export async function signUp(email, password) {
  await rest('POST', '/users/sign-up', { email, password });
  await signIn(email, password);
}

/** Ends the session here and revokes its refresh token (best effort). */
export async function signOut() {
  const refreshToken = session.refreshToken();
  session.clear();
  if (refreshToken) {
    try { await rest('POST', '/users/sign-out', { refreshToken }); } catch { /* gone already */ }
  }
}

/** A pre-authorisation of `amount` cents on a card: the payment token. */
export async function preauth(cardNumber, amount) {
  const answer = await rest('POST', '/payment-3p/preauth', { cardNumber, amount });
  return answer.paymentToken;
}

// ---------------------------------------------------------------------------
// What this server's schema offers beyond the original contract. Features
// land on main at different times (stock, cancellation, refunds, history),
// so the pages ask the schema once and build their queries from the answer:
// everything that depends on a feature is in this section.

let featuresPromise = null;

/**
 * The optional parts of the schema this server has: `{available, getStock,
 * setStock, cancelOrder, refundOrder, history, trackingId, refunded,
 * orderUpdated, categories}`, each true or false (all false when the schema cannot be read).
 */
export function features() {
  if (!featuresPromise) {
    const query = `{
      q: __type(name: "Query") { fields { name } }
      m: __type(name: "Mutation") { fields { name } }
      p: __type(name: "Product") { fields { name } }
      o: __type(name: "Order") { fields { name } }
      s: __type(name: "Subscription") { fields { name } }
    }`;
    featuresPromise = gql(query).then((d) => {
      const names = (t) => new Set((d[t]?.fields || []).map((f) => f.name));
      const q = names('q'); const m = names('m'); const p = names('p'); const o = names('o'); const s = names('s');
      return {
        available: p.has('available'),
        getStock: q.has('getStock'),
        setStock: m.has('setStock'),
        cancelOrder: m.has('cancelOrder'),
        refundOrder: m.has('refundOrder'),
        history: o.has('history'),
        trackingId: o.has('trackingId'),
        refunded: o.has('refunded'),
        orderUpdated: s.has('orderUpdated'),
        categories: q.has('categories'),
      };
    }, () => ({}));
  }
  return featuresPromise;
}

/** The fields of a catalogue product the pages read. */
export function productFields(f) {
  return `productId name price category tags package { width length height weight }${f.available ? ' available' : ''}`;
}

/** The fields of an order the pages read. */
export function orderFields(f) {
  return `orderId createdDate modifiedDate status deliveryPrice total
    products { productId name price quantity package { width length height weight } }
    address { name companyName streetAddress postCode city state country phoneNumber }
    ${f.history ? 'history { status at }' : ''} ${f.trackingId ? 'trackingId' : ''} ${f.refunded ? 'refunded' : ''}`;
}

/** A random UUID (v4), also where `crypto.randomUUID` is missing (plain-HTTP hosts). */
export function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Ten-character form of an id, for lists. */
export function shortId(id) {
  return String(id || '').slice(0, 8);
}
