// The staff console: what each group may do, through the same public API
// as everyone else. Warehouse staff pack orders, delivery staff deliver
// them, admins manage the catalogue, stock, users and groups, and watch the
// bus.
//
// The token's groups only choose which sections to offer; the API decides
// what anyone may see or change, and its refusals are shown as they come.

import {
  ApiError, AuthError, features, freshToken, gql, rest, session, shortId, signIn, signOut, socketAddress,
} from './api.js';
import {
  alertBox, announce, busy, clearStaleStatus, checkbox, confirmButton, field, form, h, money, parseMoney,
  replace, show, statusText, validate, when,
} from './ui.js';

const GROUPS = ['admin', 'warehouse', 'delivery'];

/** Sections, who sees them, and whether the schema must have a feature. */
const SECTIONS = [
  { path: 'packaging', label: 'Packaging', groups: ['admin', 'warehouse'] },
  { path: 'deliveries', label: 'Deliveries', groups: ['admin', 'warehouse', 'delivery'] },
  { path: 'products', label: 'Products', groups: ['admin'] },
  { path: 'stock', label: 'Stock', groups: ['admin', 'warehouse'], feature: 'setStock' },
  { path: 'users', label: 'Users', groups: ['admin'] },
  { path: 'refunds', label: 'Refunds', groups: ['admin'], feature: 'refundOrder' },
  { path: 'bus', label: 'Event bus', groups: ['admin'] },
];

function mine(f) {
  const groups = session.groups();
  return SECTIONS.filter((s) => s.groups.some((g) => groups.includes(g)) && (!s.feature || f[s.feature]));
}

async function renderNav() {
  const nav = document.getElementById('sections');
  const account = document.getElementById('account');
  if (!session.signedIn()) { replace(nav); replace(account); return; }
  const f = await features();
  replace(nav, h('ul', {}, mine(f).map((s) => h('li', {}, h('a', { href: `#/${s.path}` }, s.label)))));
  replace(account, h('span', { class: 'who' }, session.email()),
    h('button', {
      type: 'button', class: 'link',
      onclick: async () => { await signOut(); announce('Signed out.'); go('#/'); },
    }, 'Sign out'));
  markCurrent();
}

function markCurrent() {
  const first = (location.hash || '#/').slice(2).split('/')[0];
  for (const a of document.querySelectorAll('#sections a')) {
    if (a.getAttribute('href') === `#/${first}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/** An error as the page shows it; an ended session offers to sign in. */
function problem(err) {
  if (err instanceof AuthError) {
    return h('div', { class: 'alert', role: 'alert' }, h('p', {}, err.message),
      h('p', {}, h('a', { href: '#/signin' }, 'Sign in again')));
  }
  if (err instanceof ApiError && (err.code === 'FORBIDDEN' || err.status === 403)) {
    return h('div', { class: 'alert', role: 'alert' },
      h('p', {}, 'Your account may not see this. The server said: ', err.message));
  }
  return alertBox(err instanceof ApiError ? err.message : 'Something went wrong. Try again.');
}

function failed(title, err) {
  show(`${title} · ecom console`, h('h1', {}, title), problem(err));
}

// --------------------------------------------------------------------------
// Sign-in, and the refusal a shopper gets.

function signInPage() {
  const email = field('Email', { type: 'email', required: true, autocomplete: 'username' });
  const password = field('Password', { type: 'password', required: true, autocomplete: 'current-password' });
  show('Sign in · ecom console', h('h1', {}, 'Staff sign-in'),
    form({ class: 'narrow' }, [email.wrap, password.wrap,
      h('p', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Sign in'))],
    async () => {
      if (!validate([email.input, password.input])) return;
      await signIn(email.input.value.trim(), password.input.value);
      announce(`Signed in as ${session.email()}.`);
      await renderNav();
      go('#/');
    }, problem));
}

/**
 * The start page: the first section of the caller's groups. A caller with
 * no staff group is asked by the API itself, and its refusal is shown.
 */
async function home() {
  const f = await features();
  const sections = mine(f);
  if (sections.length) { go(`#/${sections[0].path}`); return; }
  let refusal = null;
  try {
    await gql('{ getNewPackagingRequestIds { packagingRequestIds } }', {}, { auth: true });
  } catch (err) {
    if (err instanceof AuthError) { failed('Staff console', err); return; }
    refusal = err;
  }
  show('No staff access · ecom console', h('h1', {}, 'No staff access'),
    h('div', { class: 'alert', role: 'alert' },
      h('p', {}, `You are signed in as ${session.email()}, which is not a staff account. `,
        'This console is for the admin, warehouse and delivery groups.'),
      refusal ? h('p', {}, 'The server refused: ', refusal.message) : null),
    h('p', {}, h('a', { href: '/' }, 'Go to the shop'), ' or ',
      h('button', { type: 'button', class: 'link', onclick: async () => { await signOut(); go('#/'); } }, 'sign in with another account'), '.'));
}

// --------------------------------------------------------------------------
// A list of ids a page at a time, with "More".

function pagedList(fetchPage, renderItem, empty) {
  const list = h('ul', { class: 'rows' });
  const more = h('button', { type: 'button', hidden: true }, 'More');
  const box = h('div', {}, list, more);
  let token = null;
  let count = 0;
  async function load() {
    const page = await fetchPage(token);
    for (const item of page.items) list.append(h('li', {}, renderItem(item)));
    count += page.items.length;
    token = page.nextToken;
    more.hidden = !token;
    if (count === 0) replace(list, h('li', { class: 'muted' }, empty));
  }
  more.addEventListener('click', () => busy(more, () => load().catch((err) => box.append(problem(err)))));
  return { box, load };
}

function openById(label, base) {
  const id = field(label, { required: true, check: (v) => (v.length <= 128 ? '' : 'That is longer than any order id.') });
  return form({ class: 'inline' }, [id.wrap, h('button', { type: 'submit' }, 'Open')], async () => {
    if (!validate([id.input])) return;
    go(`#/${base}/${encodeURIComponent(id.input.value.trim())}`);
  });
}

// --------------------------------------------------------------------------
// Packaging (warehouse).

async function packagingList() {
  const { box, load } = pagedList(async (t) => {
    const d = (await gql('query ($t: String) { getNewPackagingRequestIds(nextToken: $t) { packagingRequestIds nextToken } }',
      { t }, { auth: true })).getNewPackagingRequestIds;
    return { items: d.packagingRequestIds, nextToken: d.nextToken };
  }, (id) => [h('span', { class: 'mono' }, id), ' ',
    h('a', { class: 'button', href: `#/packaging/${encodeURIComponent(id)}`, 'aria-label': `Open packaging request ${shortId(id)}` }, 'Open')],
  'No new packaging requests.');
  try { await load(); } catch (err) { failed('Packaging requests', err); return; }
  show('Packaging · ecom console', h('h1', {}, 'Packaging requests'),
    h('h2', {}, 'New requests, oldest first'), box,
    h('h2', {}, 'Open any request'), openById('Order id', 'packaging'));
}

/** Names of products by id (the packaging request knows only ids). */
async function productNames(ids) {
  const names = {};
  await Promise.all(ids.map(async (id) => {
    try {
      const p = (await gql('query ($id: ID!) { getProduct(productId: $id) { name } }', { id })).getProduct;
      names[id] = p ? p.name : `Product ${shortId(id)} (no longer in the catalogue)`;
    } catch { names[id] = `Product ${shortId(id)}`; }
  }));
  return names;
}

async function packagingPage(orderId) {
  const query = 'query ($id: String!) { getPackagingRequest(input: {orderId: $id}) { orderId status products { productId quantity } } }';
  let request;
  try {
    request = (await gql(query, { id: orderId }, { auth: true })).getPackagingRequest;
  } catch (err) { failed('Packaging request', err); return; }
  if (!request) {
    show('Packaging · ecom console', h('h1', {}, 'No packaging request'),
      h('p', {}, 'There is no packaging request for this order. ', h('a', { href: '#/packaging' }, 'Back to the list')));
    return;
  }
  const names = await productNames(request.products.map((p) => p.productId));
  const errors = h('div', {});
  const inputs = [];
  const rows = request.products.map((p) => {
    const editable = request.status === 'IN_PROGRESS';
    const input = h('input', {
      type: 'number', min: 0, step: 1, value: String(p.quantity), inputmode: 'numeric', class: 'qty',
      'aria-label': `Quantity of ${names[p.productId]}`, disabled: !editable,
    });
    input.line = p;
    inputs.push(input);
    return h('tr', {}, h('th', { scope: 'row' }, names[p.productId]), h('td', { class: 'num' }, input));
  });
  const act = (label, mutation, done) => {
    const button = h('button', { type: 'button', class: 'primary' }, label);
    button.addEventListener('click', () => busy(button, async () => {
      replace(errors);
      try {
        if (mutation === 'completePackaging' && !(await saveQuantities())) return;
        await gql(`mutation ($id: String!) { ${mutation}(input: {orderId: $id}) { success } }`, { id: orderId }, { auth: true });
        announce(done);
        await packagingPage(orderId);
      } catch (err) { replace(errors, problem(err)); }
    }));
    return button;
  };
  async function saveQuantities() {
    for (const input of inputs) {
      const n = Number(input.value);
      if (!/^\d+$/.test(input.value.trim()) || !Number.isSafeInteger(n)) {
        replace(errors, alertBox(`Enter a whole number of 0 or more for ${names[input.line.productId]}.`));
        input.focus();
        return false;
      }
    }
    let saved = 0;
    for (const input of inputs) {
      const n = Number(input.value);
      if (n === input.line.quantity) continue;
      await gql('mutation ($i: UpdatePackagingProductInput!) { updatePackagingProduct(input: $i) { success } }',
        { i: { orderId, productId: input.line.productId, quantity: n } }, { auth: true });
      input.line.quantity = n;
      saved += 1;
    }
    if (saved) announce(`Saved ${saved} quantit${saved === 1 ? 'y' : 'ies'}.`);
    return true;
  }
  const save = h('button', { type: 'button' }, 'Save quantities');
  save.addEventListener('click', () => busy(save, async () => {
    replace(errors);
    try { await saveQuantities(); } catch (err) { replace(errors, problem(err)); }
  }));
  let actions;
  if (request.status === 'NEW') actions = [act('Start packaging', 'startPackaging', 'Packaging started.')];
  else if (request.status === 'IN_PROGRESS') actions = [save, act('Complete packaging', 'completePackaging', 'Packaging completed.')];
  else actions = [h('p', {}, 'This request is done.')];
  show(`Packaging ${shortId(orderId)} · ecom console`,
    h('h1', {}, `Packaging for order ${shortId(orderId)}`),
    h('p', {}, 'Status: ', h('strong', { id: 'request-status' }, statusText(request.status))),
    request.status === 'IN_PROGRESS' ? h('p', { class: 'hint' }, 'Lower a quantity when fewer can be sent; 0 removes the line. Saved quantities are packed when you complete.') : null,
    h('table', { class: 'lines' }, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Product'), h('th', { scope: 'col', class: 'num' }, 'Quantity'))),
      h('tbody', {}, rows)),
    errors,
    h('p', { class: 'actions' }, actions),
    h('p', {}, h('a', { href: '#/packaging' }, 'Back to the list')));
}

// --------------------------------------------------------------------------
// Deliveries.

/** What this tab knows of deliveries' states (the API gives no status). */
const deliveryState = {};

function addressLine(a) {
  return [a.name, a.streetAddress, a.city, a.country].filter(Boolean).join(', ');
}

async function deliveriesList() {
  const { box, load } = pagedList(async (t) => {
    const d = (await gql('query ($t: String) { getNewDeliveries(nextToken: $t) { deliveries { orderId address { name streetAddress city country } } nextToken } }',
      { t }, { auth: true })).getNewDeliveries;
    for (const x of d.deliveries) deliveryState[x.orderId] = 'NEW';
    return { items: d.deliveries, nextToken: d.nextToken };
  }, (d) => [h('span', { class: 'mono' }, shortId(d.orderId)), ` ${addressLine(d.address)} `,
    h('a', { class: 'button', href: `#/deliveries/${encodeURIComponent(d.orderId)}`, 'aria-label': `Open delivery ${shortId(d.orderId)}` }, 'Open')],
  'No new deliveries.');
  try { await load(); } catch (err) { failed('Deliveries', err); return; }
  show('Deliveries · ecom console', h('h1', {}, 'Deliveries'),
    h('h2', {}, 'Waiting to be started, oldest first'), box,
    h('h2', {}, 'Open any delivery'), openById('Order id', 'deliveries'));
}

async function deliveryPage(orderId) {
  let delivery;
  try {
    delivery = (await gql('query ($id: String!) { getDelivery(input: {orderId: $id}) { orderId address { name companyName streetAddress postCode city state country phoneNumber } } }',
      { id: orderId }, { auth: true })).getDelivery;
  } catch (err) { failed('Delivery', err); return; }
  if (!delivery) {
    show('Delivery · ecom console', h('h1', {}, 'No delivery'),
      h('p', {}, 'There is no delivery for this order. ', h('a', { href: '#/deliveries' }, 'Back to the list')));
    return;
  }
  const state = deliveryState[orderId];
  const errors = h('div', {});
  const act = (label, mutation, next, done, danger) => {
    const run = async () => {
      replace(errors);
      try {
        await gql(`mutation ($id: String!) { ${mutation}(input: {orderId: $id}) { success } }`, { id: orderId }, { auth: true });
        deliveryState[orderId] = next;
        announce(done);
        await deliveryPage(orderId);
      } catch (err) { replace(errors, problem(err)); }
    };
    if (danger) return confirmButton(label, `Yes: ${label.toLowerCase()}`, run);
    const button = h('button', { type: 'button', class: 'primary' }, label);
    button.addEventListener('click', () => busy(button, run));
    return button;
  };
  const start = () => act('Start delivery', 'startDelivery', 'IN_PROGRESS', 'Delivery started.');
  const complete = () => act('Complete delivery', 'completeDelivery', 'COMPLETED', 'Delivery completed.');
  const fail = () => act('Mark as failed', 'failDelivery', 'FAILED', 'Delivery marked as failed.', true);
  let actions;
  if (state === 'NEW') actions = [start()];
  else if (state === 'IN_PROGRESS') actions = [complete(), fail()];
  else if (state === 'COMPLETED' || state === 'FAILED') actions = [h('p', {}, 'This delivery is done.')];
  else actions = [start(), complete(), fail()];
  const a = delivery.address;
  show(`Delivery ${shortId(orderId)} · ecom console`,
    h('h1', {}, `Delivery of order ${shortId(orderId)}`),
    state ? h('p', {}, 'Status: ', h('strong', { id: 'delivery-status' }, statusText(state))) : null,
    h('h2', {}, 'Address'),
    h('address', {}, [a.name, a.companyName, a.streetAddress, [a.postCode, a.city].filter(Boolean).join(' '), a.state, a.country, a.phoneNumber]
      .filter(Boolean).map((line) => h('span', { class: 'line' }, line))),
    errors,
    h('p', { class: 'actions' }, actions),
    h('p', {}, h('a', { href: '#/deliveries' }, 'Back to the list')));
}

// --------------------------------------------------------------------------
// Products (admin), over /products/admin/products.

const PRODUCTS = '/products/admin/products';
const int = (label) => (v) => (/^\d{1,9}$/.test(v) ? '' : `${label} must be a whole number of 0 or more.`);
const url = (v) => (v.split('\n').map((s) => s.trim()).filter(Boolean)
  .every((s) => /^https?:\/\/\S+$/i.test(s)) ? '' : 'Each line must be one web address of a picture (http or https).');

async function productsPage() {
  const f = await features();
  const filter = field('Category', { name: 'category', maxlength: 200, value: sessionStorage.getItem('console.category') || '' });
  const body = h('tbody');
  const more = h('button', { type: 'button', hidden: true }, 'More products');
  const listErrors = h('div');
  let token = null;
  async function load(reset) {
    if (reset) { token = null; replace(body); }
    const q = new URLSearchParams({ limit: '20' });
    const category = filter.input.value.trim();
    if (category) q.set('category', category);
    if (token) q.set('nextToken', token);
    const page = await rest('GET', `${PRODUCTS}?${q}`, undefined, { auth: true });
    for (const p of page.products) {
      body.append(h('tr', {},
        h('th', { scope: 'row' }, p.name),
        h('td', {}, p.category || ''),
        h('td', { class: 'num' }, money(p.price)),
        h('td', {}, h('div', { class: 'row-actions' },
          h('a', { class: 'button', href: `#/products/${encodeURIComponent(p.productId)}`, 'aria-label': `Edit ${p.name}` }, 'Edit'),
          confirmButton('Delete', `Delete ${p.name}`, async () => {
            try {
              await rest('DELETE', `${PRODUCTS}/${encodeURIComponent(p.productId)}`, undefined, { auth: true });
              announce(`Deleted ${p.name}.`);
              await load(true);
            } catch (err) { replace(listErrors, problem(err)); }
          })))));
    }
    if (!body.children.length) body.append(h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No products.')));
    token = page.nextToken;
    more.hidden = !token;
  }
  more.addEventListener('click', () => busy(more, () => load(false).catch((err) => replace(listErrors, problem(err)))));
  try { await load(true); } catch (err) { failed('Products', err); return; }
  const filterForm = form({ class: 'inline' }, [filter.wrap, h('button', { type: 'submit' }, 'Show')], async () => {
    sessionStorage.setItem('console.category', filter.input.value.trim());
    await load(true);
  }, problem);
  show('Products · ecom console', h('h1', {}, 'Products'),
    h('p', { class: 'actions' }, h('a', { class: 'button primary', href: '#/products/new' }, 'New product')),
    filterForm, listErrors,
    h('table', { class: 'lines' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Category'),
        h('th', { scope: 'col', class: 'num' }, 'Price'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
      body),
    h('p', {}, more),
    importSection(f));
}

async function productForm(productId) {
  const f = await features();
  let product = null;
  let stock = null;
  if (productId) {
    try {
      product = await rest('GET', `${PRODUCTS}/${encodeURIComponent(productId)}`, undefined, { auth: true });
      if (f.getStock) {
        stock = (await gql('query ($id: ID!) { getStock(productId: $id) { onHand reserved available } }', { id: productId }, { auth: true })).getStock;
      }
    } catch (err) { failed('Product', err); return; }
  }
  const p = product || { package: {} };
  const name = field('Name', { required: true, maxlength: 200, value: p.name || '' });
  const category = field('Category', { maxlength: 200, value: p.category || '' });
  const price = field('Price (€)', {
    required: true, inputmode: 'decimal', value: product ? money(p.price).replace(/[^0-9.]/g, '') : '',
    hint: 'For example 12.50', check: (v) => (parseMoney(v) === null ? 'Enter a price like 12.50.' : ''),
  });
  const dims = ['width', 'length', 'height'].map((k) => field(`${k[0].toUpperCase()}${k.slice(1)} (mm)`, {
    required: true, inputmode: 'numeric', value: p.package[k] ?? '', check: int(k),
  }));
  const weight = field('Weight (g)', { required: true, inputmode: 'numeric', value: p.package.weight ?? '', check: int('Weight') });
  const tags = field('Tags', { value: (p.tags || []).join(', '), hint: 'Separated by commas' });
  const pictures = field('Picture addresses', { multiline: true, value: (p.pictures || []).join('\n'), hint: 'One per line', check: url });
  const onHand = f.setStock ? field('Units on hand', {
    inputmode: 'numeric', value: stock ? String(stock.onHand) : '', check: int('Units on hand'),
    hint: stock ? `${stock.reserved} held for orders, ${stock.available} available. Empty: stock is not tracked.` : 'Leave empty to sell without counting stock.',
  }) : null;
  const all = [name, category, price, ...dims, weight, tags, pictures, onHand].filter(Boolean).map((x) => x.input);
  const title = product ? `Edit ${product.name}` : 'New product';
  show(`${title} · ecom console`, h('h1', {}, title),
    form({ class: 'product-form' }, [
      h('div', { class: 'cols' }, name.wrap, category.wrap, price.wrap),
      h('fieldset', {}, h('legend', {}, 'Package'), h('div', { class: 'cols' }, dims.map((d) => d.wrap), weight.wrap)),
      tags.wrap, pictures.wrap, onHand ? onHand.wrap : null,
      h('p', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, product ? 'Save' : 'Create the product'),
        h('a', { class: 'button', href: '#/products' }, 'Cancel')),
    ], async () => {
      if (!validate(all)) return;
      const body = {
        name: name.input.value.trim(),
        category: category.input.value.trim() || null,
        price: parseMoney(price.input.value),
        package: {
          width: Number(dims[0].input.value), length: Number(dims[1].input.value),
          height: Number(dims[2].input.value), weight: Number(weight.input.value),
        },
        tags: tags.input.value.split(',').map((t) => t.trim()).filter(Boolean),
        pictures: pictures.input.value.split('\n').map((t) => t.trim()).filter(Boolean),
      };
      const saved = product
        ? await rest('PUT', `${PRODUCTS}/${encodeURIComponent(product.productId)}`, body, { auth: true })
        : await rest('POST', PRODUCTS, body, { auth: true });
      if (onHand && onHand.input.value.trim() !== '' && Number(onHand.input.value) !== stock?.onHand) {
        await gql('mutation ($id: ID!, $n: Int!) { setStock(productId: $id, onHand: $n) { onHand } }',
          { id: saved.productId, n: Number(onHand.input.value) }, { auth: true });
      }
      announce(product ? `Saved ${saved.name}.` : `Created ${saved.name}.`);
      go('#/products');
    }, problem));
}

/**
 * Import of a JSON file (an array of products, as `ecom products import`
 * reads): products with a known id are updated when different, the rest
 * created; a `stock` number sets the stock when the server tracks stock.
 */
function importSection(f) {
  const file = field('JSON file', { type: 'file', accept: '.json,application/json', required: true });
  const report = h('div', { 'aria-live': 'polite' });
  const same = (a, b) => a.name === b.name && a.price === b.price && (a.category || null) === (b.category || null)
    && JSON.stringify(a.package) === JSON.stringify(b.package)
    && JSON.stringify(a.tags || []) === JSON.stringify(b.tags || [])
    && JSON.stringify(a.pictures || []) === JSON.stringify(b.pictures || []);
  return h('section', { 'aria-labelledby': 'import-title' }, h('h2', { id: 'import-title' }, 'Import products'),
    h('p', { class: 'hint' }, 'A JSON array of products, like data/catalogue.json. Products whose id exists are updated.'),
    form({ class: 'inline' }, [file.wrap, h('button', { type: 'submit' }, 'Import')], async () => {
      if (!validate([file.input])) return;
      const chosen = file.input.files[0];
      let items;
      try { items = JSON.parse(await chosen.text()); } catch { throw new ApiError('The file is not valid JSON.'); }
      if (!Array.isArray(items)) throw new ApiError('The file must hold a JSON array of products.');
      const counts = { created: 0, updated: 0, unchanged: 0, refused: 0 };
      const refusals = [];
      for (const [i, item] of items.entries()) {
        try {
          if (!item || typeof item !== 'object') throw new ApiError('not a product object');
          const { stock, ...product } = item;
          let existing = null;
          if (product.productId) {
            try {
              existing = await rest('GET', `${PRODUCTS}/${encodeURIComponent(product.productId)}`, undefined, { auth: true });
            } catch (err) { if (!(err instanceof ApiError) || err.status !== 404) throw err; }
          }
          if (!existing) { await rest('POST', PRODUCTS, product, { auth: true }); counts.created += 1; }
          else if (same(existing, product)) counts.unchanged += 1;
          else { await rest('PUT', `${PRODUCTS}/${encodeURIComponent(product.productId)}`, product, { auth: true }); counts.updated += 1; }
          if (stock !== undefined && f.setStock && product.productId) {
            await gql('mutation ($id: ID!, $n: Int!) { setStock(productId: $id, onHand: $n) { onHand } }',
              { id: product.productId, n: stock }, { auth: true });
          }
        } catch (err) {
          if (err instanceof AuthError) throw err;
          counts.refused += 1;
          refusals.push(`Product ${i + 1}${item && item.name ? ` (${item.name})` : ''}: ${err.message}`);
        }
      }
      const summary = `Created ${counts.created}, updated ${counts.updated}, unchanged ${counts.unchanged}, refused ${counts.refused}.`;
      replace(report, h('p', {}, summary), refusals.length ? h('ul', { class: 'alert' }, refusals.map((r) => h('li', {}, r))) : null);
      sessionStorage.removeItem('ecom.categories');
      announce(summary);
    }, problem),
    report);
}

// --------------------------------------------------------------------------
// Stock (admin, warehouse), when the server tracks stock.

async function stockPage() {
  const f = await features();
  if (!f.setStock) { show('Stock · ecom console', h('h1', {}, 'Stock'), h('p', {}, 'This server does not track stock.')); return; }
  const body = h('tbody');
  const errors = h('div');
  const more = h('button', { type: 'button', hidden: true }, 'More products');
  let token = null;
  async function load() {
    const d = (await gql('query ($t: String) { getProducts(nextToken: $t) { products { productId name } nextToken } }', { t: token })).getProducts;
    for (const p of d.products) {
      const s = (await gql('query ($id: ID!) { getStock(productId: $id) { onHand reserved available } }', { id: p.productId }, { auth: true })).getStock;
      const input = h('input', {
        type: 'number', min: 0, step: 1, class: 'qty', inputmode: 'numeric', value: s ? String(s.onHand) : '',
        'aria-label': `Units of ${p.name} on hand`, placeholder: 'not counted',
      });
      const set = h('button', { type: 'button', 'aria-label': `Set stock of ${p.name}` }, 'Set');
      const cells = h('td', {}, s ? `${s.reserved} held, ${s.available} available` : 'Not counted (unlimited)');
      set.addEventListener('click', () => busy(set, async () => {
        replace(errors);
        if (!/^\d{1,9}$/.test(input.value.trim())) { replace(errors, alertBox(`Enter a whole number of 0 or more for ${p.name}.`)); input.focus(); return; }
        try {
          const n = (await gql('mutation ($id: ID!, $n: Int!) { setStock(productId: $id, onHand: $n) { onHand reserved available } }',
            { id: p.productId, n: Number(input.value) }, { auth: true })).setStock;
          replace(cells, `${n.reserved} held, ${n.available} available`);
          announce(`${p.name}: ${n.onHand} on hand.`);
        } catch (err) { replace(errors, problem(err)); }
      }));
      body.append(h('tr', {}, h('th', { scope: 'row' }, p.name), h('td', { class: 'num' }, input, ' ', set), cells));
    }
    token = d.nextToken;
    more.hidden = !token;
  }
  more.addEventListener('click', () => busy(more, () => load().catch((err) => replace(errors, problem(err)))));
  try { await load(); } catch (err) { failed('Stock', err); return; }
  show('Stock · ecom console', h('h1', {}, 'Stock'), errors,
    h('table', { class: 'lines' }, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Product'),
      h('th', { scope: 'col', class: 'num' }, 'On hand'), h('th', { scope: 'col' }, 'Orders'))), body),
    h('p', {}, more));
}

// --------------------------------------------------------------------------
// Users and groups (admin), over /users/admin/users.

const USERS = '/users/admin/users';
const emailCheck = (v) => (/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v) ? '' : 'Enter an email address like ada@example.com.');
function passwordCheck(v) {
  const kinds = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^A-Za-z0-9]/].filter((r) => r.test(v)).length;
  return v.length >= 8 && v.length <= 256 && kinds >= 2
    ? '' : 'Use 8 or more characters with at least two of: lower case, upper case, digits, symbols.';
}

async function usersPage() {
  const body = h('tbody');
  const errors = h('div');
  const more = h('button', { type: 'button', hidden: true }, 'More users');
  let token = null;
  const row = (u) => {
    const groups = GROUPS.map((g) => {
      const c = checkbox(g, u.groups.includes(g), { 'aria-label': `${g} group for ${u.email}` });
      c.input.addEventListener('change', async () => {
        replace(errors);
        const on = c.input.checked;
        c.input.disabled = true;
        try {
          await rest(on ? 'PUT' : 'DELETE', `${USERS}/${encodeURIComponent(u.userId)}/groups/${g}`, undefined, { auth: true });
          announce(`${u.email} ${on ? 'is now in' : 'is no longer in'} the ${g} group.`);
        } catch (err) { c.input.checked = !on; replace(errors, problem(err)); }
        c.input.disabled = false;
      });
      return c.wrap;
    });
    const password = h('button', { type: 'button' }, 'Set password');
    const passwordBox = h('div', {});
    password.addEventListener('click', () => {
      const pw = field(`New password for ${u.email}`, { type: 'password', required: true, autocomplete: 'new-password', check: passwordCheck });
      replace(passwordBox, form({ class: 'inline' }, [pw.wrap, h('button', { type: 'submit' }, 'Save password')], async () => {
        if (!validate([pw.input])) return;
        await rest('PUT', `${USERS}/${encodeURIComponent(u.userId)}/password`, { password: pw.input.value }, { auth: true });
        replace(passwordBox, h('p', {}, 'Password changed.'));
        announce(`Password of ${u.email} changed.`);
      }, problem));
      pw.input.focus();
    });
    const tr = h('tr', {},
      h('th', { scope: 'row' }, u.email),
      h('td', { class: 'groups' }, groups),
      h('td', {}, h('div', { class: 'row-actions' }, password,
        confirmButton('Delete', `Delete ${u.email}`, async () => {
          try {
            await rest('DELETE', `${USERS}/${encodeURIComponent(u.userId)}`, undefined, { auth: true });
            tr.remove();
            announce(`Deleted ${u.email}.`);
          } catch (err) { replace(errors, problem(err)); }
        }), passwordBox)));
    return tr;
  };
  async function load() {
    const q = new URLSearchParams({ limit: '20' });
    if (token) q.set('nextToken', token);
    const page = await rest('GET', `${USERS}?${q}`, undefined, { auth: true });
    for (const u of page.users) body.append(row(u));
    token = page.nextToken;
    more.hidden = !token;
  }
  more.addEventListener('click', () => busy(more, () => load().catch((err) => replace(errors, problem(err)))));
  try { await load(); } catch (err) { failed('Users', err); return; }
  const email = field('Email', { type: 'email', required: true, autocomplete: 'off', check: emailCheck });
  const pw = field('Password', { type: 'password', required: true, autocomplete: 'new-password', check: passwordCheck });
  const boxes = GROUPS.map((g) => checkbox(g, false));
  show('Users · ecom console', h('h1', {}, 'Users and groups'), errors,
    h('table', { class: 'lines' }, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Email'),
      h('th', { scope: 'col' }, 'Groups'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))), body),
    h('p', {}, more),
    h('h2', {}, 'Add a user'),
    form({ class: 'narrow' }, [email.wrap, pw.wrap,
      h('fieldset', {}, h('legend', {}, 'Groups'), boxes.map((b) => b.wrap)),
      h('p', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add the user'))], async () => {
      if (!validate([email.input, pw.input])) return;
      const groups = GROUPS.filter((_, i) => boxes[i].input.checked);
      await rest('POST', USERS, { email: email.input.value.trim(), password: pw.input.value, groups }, { auth: true });
      announce(`Added ${email.input.value.trim()}.`);
      await usersPage();
    }, problem));
}

// --------------------------------------------------------------------------
// Refunds (admin), when the server has them.

function refundsPage() {
  const order = field('Order id', { required: true, maxlength: 128 });
  const amount = field('Amount (€)', { required: true, inputmode: 'decimal', check: (v) => (parseMoney(v) === null ? 'Enter an amount like 12.50.' : '') });
  show('Refunds · ecom console', h('h1', {}, 'Refund a delivered order'),
    form({ class: 'narrow' }, [order.wrap, amount.wrap,
      h('p', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Refund'))], async () => {
      if (!validate([order.input, amount.input])) return;
      await gql('mutation ($id: ID!, $a: Int!) { refundOrder(orderId: $id, amount: $a) { success } }',
        { id: order.input.value.trim(), a: parseMoney(amount.input.value) }, { auth: true });
      announce(`Refunded ${money(parseMoney(amount.input.value))}.`);
    }, problem));
}

// --------------------------------------------------------------------------
// The bus (admin): rules with their dead letters, redrive and purge, over
// /platform/…; and a live tail of the listener, which takes the ID token as
// a WebSocket subprotocol (a browser cannot send an Authorization header).

const SOURCES = ['ecommerce.users', 'ecommerce.products', 'ecommerce.orders', 'ecommerce.warehouse',
  'ecommerce.delivery', 'ecommerce.payment'];
/** Events the tail keeps on screen; older ones drop off the bottom. */
const TAIL_KEEP = 100;
let tailSocket = null;

function stopTail() {
  if (tailSocket) { tailSocket.onclose = null; tailSocket.close(); tailSocket = null; }
}

function letterRow(l) {
  const e = l.event || {};
  return h('tr', {},
    h('td', {}, h('code', {}, l.rule)),
    h('td', {}, `${e.source || '?'} ${e['detail-type'] || '?'}`, h('br'),
      h('span', { class: 'mono muted', title: e.id || '' }, shortId(e.id))),
    h('td', { class: 'num' }, `${l.attempts} attempt${l.attempts === 1 ? '' : 's'}`),
    h('td', {}, when(l.failedAt)),
    h('td', { class: 'error-text' }, l.lastError),
    h('td', {}, h('details', {}, h('summary', {}, h('span', { class: 'sr-only' }, `Event ${shortId(e.id)}: `), 'Detail'),
      h('pre', { class: 'json' }, JSON.stringify(e.detail, null, 2)))));
}

async function busPage(ruleFilter) {
  const errors = h('div');
  let rules;
  let letters;
  const filter = ruleFilter ? `rule=${encodeURIComponent(ruleFilter)}&` : '';
  try {
    [rules, letters] = await Promise.all([
      rest('GET', '/platform/rules', undefined, { auth: true }),
      rest('GET', `/platform/dead-letters?${filter}limit=100`, undefined, { auth: true }),
    ]);
  } catch (err) { failed('Event bus', err); return; }
  const act = (verb, rule) => async () => {
    try {
      const answer = await rest('POST', `/platform/dead-letters/${verb}`, rule ? { rule } : {}, { auth: true });
      const n = verb === 'redrive' ? answer.redriven : answer.purged;
      announce(`${verb === 'redrive' ? 'Redrove' : 'Purged'} ${n} dead letter${n === 1 ? '' : 's'}${rule ? ` of ${rule}` : ''}.`);
      await busPage(ruleFilter);
    } catch (err) { replace(errors, problem(err)); }
  };
  const redriveButton = (rule, label) => {
    const b = h('button', { type: 'button', 'aria-label': label }, 'Redrive');
    b.addEventListener('click', () => busy(b, act('redrive', rule)));
    return b;
  };
  const rows = rules.rules.map((r) => h('tr', {},
    h('th', { scope: 'row' }, h('code', {}, r.name)),
    h('td', {}, h('code', { class: 'pattern' }, r.pattern)),
    h('td', { class: 'num' }, r.deadLetters
      ? h('a', { href: `#/bus/${encodeURIComponent(r.name)}`, 'aria-label': `${r.deadLetters} dead letters of ${r.name}: show them` }, String(r.deadLetters))
      : '0'),
    h('td', {}, r.deadLetters ? h('div', { class: 'row-actions' }, redriveButton(r.name, `Redrive the dead letters of ${r.name}`),
      confirmButton('Purge', `Purge ${r.deadLetters} of ${r.name}`, act('purge', r.name))) : null)));
  const total = rules.rules.reduce((n, r) => n + r.deadLetters, 0);
  const which = ruleFilter ? `of ${ruleFilter}` : 'of every rule';
  const lettersBox = letters.deadLetters.length === 0
    ? h('p', { id: 'no-dead-letters' }, `No dead letters ${which}.`)
    : h('div', { class: 'scroll' }, h('table', { class: 'lines', id: 'dead-letters' },
      h('caption', { class: 'sr-only' }, `Dead letters ${which}, oldest first`),
      h('thead', {}, h('tr', {}, ['Rule', 'Event', 'Attempts', 'Failed at', 'Last error', 'Event detail']
        .map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, letters.deadLetters.map(letterRow))));
  const allActions = letters.deadLetters.length ? h('p', { class: 'row-actions' },
    redriveButton(ruleFilter || null, `Redrive every dead letter ${which}`),
    confirmButton(ruleFilter ? 'Purge these' : 'Purge all', `Yes, purge every dead letter ${which}`, act('purge', ruleFilter || null))) : null;

  // The live tail.
  const source = h('select', { id: 'tail-source' },
    h('option', { value: '*' }, 'Every source'), SOURCES.map((s) => h('option', { value: s }, s)));
  const tailList = h('ol', { class: 'tail', id: 'tail', 'aria-label': 'Events as they pass, newest first' });
  const tailState = h('span', { class: 'muted', id: 'tail-state' }, 'Stopped.');
  const toggle = h('button', { type: 'button', id: 'tail-toggle', 'aria-pressed': 'false' }, 'Start watching');
  const setState = (on, text) => {
    toggle.textContent = on ? 'Stop watching' : 'Start watching';
    toggle.setAttribute('aria-pressed', on ? 'true' : 'false');
    source.disabled = on;
    tailState.textContent = text;
  };
  toggle.addEventListener('click', async () => {
    if (tailSocket) { stopTail(); setState(false, 'Stopped.'); announce('Stopped watching events.'); return; }
    let token;
    try { token = await freshToken(); } catch (err) { replace(errors, problem(err)); return; }
    const socket = new WebSocket(socketAddress('/platform/listener'), ['ecom.listener', `bearer.${token}`]);
    tailSocket = socket;
    setState(true, 'Connecting…');
    socket.onopen = () => {
      socket.send(JSON.stringify({ action: 'register', serviceName: source.value }));
      setState(true, `Watching ${source.value === '*' ? 'every source' : source.value}.`);
      announce('Watching events as they pass.');
    };
    socket.onmessage = (m) => {
      let e;
      try { e = JSON.parse(m.data); } catch { return; }
      const item = e.message && !e.id
        ? h('li', { class: 'alert' }, e.message)
        : h('li', {}, h('span', { class: 'muted' }, when(e.time)), ' ', h('strong', {}, `${e.source} ${e['detail-type']}`),
          ' ', h('span', { class: 'mono' }, (e.resources || []).map(shortId).join(' ')),
          h('details', {}, h('summary', {}, 'Detail'), h('pre', { class: 'json' }, JSON.stringify(e.detail, null, 2))));
      tailList.prepend(item);
      while (tailList.children.length > TAIL_KEEP) tailList.lastElementChild.remove();
    };
    socket.onclose = () => {
      if (tailSocket !== socket) return;
      tailSocket = null;
      setState(false, 'The connection closed (an ended session, or the server stopped or turned the listener off).');
    };
  });

  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  // Dead letters first: they are what an admin comes here to act on.
  show('Event bus · ecom console', h('h1', {}, 'Event bus'), errors,
    h('p', { class: 'muted' }, `${plural(rules.rules.length, 'rule')}; ${total}${rules.countsComplete ? '' : '+'} dead letter${total === 1 ? '' : 's'}.`),
    h('h2', { id: 'dead-letters-heading' }, ruleFilter ? `Dead letters of ${ruleFilter}` : 'Dead letters'),
    ruleFilter ? h('p', {}, h('a', { href: '#/bus' }, 'Show every rule\'s dead letters')) : null,
    lettersBox,
    letters.more ? h('p', { class: 'muted' }, 'The oldest 100 are shown; there are more.') : null,
    allActions,
    h('h2', {}, 'Live events'),
    h('p', { class: 'muted' }, 'Events as the bus carries them, from now on; nothing is kept.'),
    h('div', { class: 'inline' }, h('label', { for: 'tail-source' }, 'Source'), source, toggle),
    h('p', { role: 'status' }, tailState),
    tailList,
    h('h2', {}, 'Rules'),
    h('div', { class: 'scroll' }, h('table', { class: 'lines', id: 'rules' },
      h('caption', { class: 'sr-only' }, 'Rules, their patterns and dead letters'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Rule'), h('th', { scope: 'col' }, 'Pattern'),
        h('th', { scope: 'col', class: 'num' }, 'Dead letters'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
      h('tbody', {}, rows))));
}

// --------------------------------------------------------------------------
// Routing.

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

let routing = Promise.resolve();

/**
 * Views render in the order of navigation: each waits for the one before,
 * so a slow answer for a page the reader has left never covers a newer page.
 */
function route() {
  routing = routing.then(() => renderRoute()).catch(() => {});
  return routing;
}

async function renderRoute() {
  const hash = location.hash || '#/';
  if (!hash.startsWith('#/')) return;
  clearStaleStatus();
  stopTail();
  const parts = hash.slice(2).split('/').map((p) => { try { return decodeURIComponent(p); } catch { return p; } });
  markCurrent();
  if (!session.signedIn() || parts[0] === 'signin') return signInPage();
  switch (parts[0]) {
    case '': return home();
    case 'packaging': return parts[1] ? packagingPage(parts[1]) : packagingList();
    case 'deliveries': return parts[1] ? deliveryPage(parts[1]) : deliveriesList();
    case 'products': return parts[1] === 'new' ? productForm(null) : parts[1] ? productForm(parts[1]) : productsPage();
    case 'stock': return stockPage();
    case 'users': return usersPage();
    case 'refunds': return refundsPage();
    case 'bus': return busPage(parts[1] || '');
    default:
      show('Not found · ecom console', h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '#/' }, 'Console home')));
      return undefined;
  }
}

window.addEventListener('hashchange', route);
window.addEventListener('ecom-session', () => { renderNav(); });
renderNav();
route();
