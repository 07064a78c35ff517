// The storefront: catalogue by category, product pages, the cart (kept in
// localStorage), checkout with a card, accounts, order history and an
// order page that follows the order as it is packed and delivered.
//
// Routes live in the URL fragment (#/p/<id>, #/cart, …), so the server
// serves one page and the back button works.

import {
  ApiError, AuthError, features, gql, orderFields, preauth, productFields,
  session, signIn, signOut, signUp, subscribe, uuid, shortId,
} from './api.js';
import {
  alertBox, announce, busy, clearStaleStatus, confirmButton, field, form, h, money, replace, show,
  statusText, validate, when,
} from './ui.js';

// --------------------------------------------------------------------------
// The cart: [{productId, name, price, category, package, quantity}], as the
// shopper saw each product. Kept in localStorage so it outlives the tab and
// the session (signing in again never empties it).

const CART = 'ecom.cart';
const MAX_QUANTITY = 99;

const cart = {
  lines() {
    try {
      const lines = JSON.parse(localStorage.getItem(CART) || '[]');
      return Array.isArray(lines) ? lines.filter((l) => l && l.productId && Number.isSafeInteger(l.price)) : [];
    } catch {
      return [];
    }
  },
  save(lines) {
    localStorage.setItem(CART, JSON.stringify(lines));
    updateCartCount();
  },
  add(product, quantity) {
    const lines = this.lines();
    const line = lines.find((l) => l.productId === product.productId);
    if (line) line.quantity = Math.min(MAX_QUANTITY, line.quantity + quantity);
    else {
      lines.push({
        productId: product.productId, name: product.name, price: product.price,
        category: product.category || null, package: product.package, quantity,
      });
    }
    this.save(lines);
  },
  setQuantity(productId, quantity) {
    this.save(this.lines().map((l) => (l.productId === productId ? { ...l, quantity } : l)));
  },
  remove(productId) {
    this.save(this.lines().filter((l) => l.productId !== productId));
  },
  clear() { this.save([]); },
  count() { return this.lines().reduce((n, l) => n + l.quantity, 0); },
  subtotal() { return this.lines().reduce((n, l) => n + l.price * l.quantity, 0); },
};

/** The cart's lines as GraphQL ProductInput. */
function productInputs(lines) {
  return lines.map((l) => ({
    productId: l.productId,
    name: l.name,
    price: l.price,
    category: l.category,
    package: {
      width: l.package?.width ?? null, length: l.package?.length ?? null,
      height: l.package?.height ?? null, weight: l.package?.weight ?? null,
    },
    quantity: l.quantity,
  }));
}

function updateCartCount() {
  const el = document.getElementById('cart-count');
  if (el) el.textContent = String(cart.count());
}

// --------------------------------------------------------------------------
// Header: who is signed in.

function renderAccount() {
  const slot = document.getElementById('account');
  if (!slot) return;
  if (session.signedIn()) {
    replace(slot,
      h('span', { class: 'who' }, session.email()),
      h('button', {
        type: 'button', class: 'link',
        onclick: async () => { await signOut(); announce('Signed out. Your cart is kept.'); go('#/'); },
      }, 'Sign out'));
  } else {
    replace(slot, h('a', { href: '#/signin' }, 'Sign in'));
  }
}

// --------------------------------------------------------------------------
// Errors: an expired session asks to sign in again and comes back here.

function rememberReturn(route) {
  sessionStorage.setItem('ecom.returnTo', route || location.hash || '#/');
}

function takeReturn() {
  const to = sessionStorage.getItem('ecom.returnTo') || '#/';
  sessionStorage.removeItem('ecom.returnTo');
  return to.startsWith('#/sign') ? '#/' : to;
}

/** What to show for an error: a sign-in prompt for AuthError, else the message. */
function problem(err) {
  if (err instanceof AuthError) {
    return h('div', { class: 'alert', role: 'alert' },
      h('p', {}, err.message, ' Your cart is kept.'),
      h('p', {}, h('a', { href: '#/signin', onclick: () => rememberReturn() }, 'Sign in again')));
  }
  return alertBox(err instanceof ApiError ? err.message : 'Something went wrong. Try again.');
}

function failed(title, err) {
  show(`${title} · ecom shop`, h('h1', {}, title), problem(err));
}

// --------------------------------------------------------------------------
// Catalogue.

const PLACEHOLDER_COLOURS = 8;

/** A picture stand-in: product pictures live on other hosts, which this page never loads. */
function tile(product) {
  let n = 0;
  for (const c of product.category || product.name) n = (n * 11 + c.charCodeAt(0)) % PLACEHOLDER_COLOURS;
  return h('div', { class: `tile c${n}`, 'aria-hidden': 'true' }, (product.name || '?').slice(0, 1).toUpperCase());
}

function availability(product) {
  if (product.available === undefined || product.available === null) return null;
  if (product.available <= 0) return h('p', { class: 'stock out' }, 'Out of stock');
  if (product.available <= 5) return h('p', { class: 'stock low' }, `Only ${product.available} left`);
  return h('p', { class: 'stock' }, 'In stock');
}

function addButton(product, quantityOf = () => 1) {
  const soldOut = product.available !== undefined && product.available !== null && product.available <= 0;
  return h('button', {
    type: 'button',
    class: 'primary',
    disabled: soldOut,
    'aria-label': `Add ${product.name} to cart`,
    onclick: () => {
      const quantity = quantityOf();
      if (quantity === null) return;
      cart.add(product, quantity);
      announce(`Added ${quantity} × ${product.name} to the cart.`);
    },
  }, 'Add to cart');
}

function card(product) {
  return h('article', { class: 'card' },
    tile(product),
    h('h3', {}, h('a', { href: `#/p/${encodeURIComponent(product.productId)}` }, product.name)),
    h('p', { class: 'price' }, money(product.price)),
    availability(product),
    addButton(product));
}

const CATEGORY_CACHE = 'ecom.categories';
const CATEGORY_PAGES = 10;

/**
 * The categories as `[{name, count}]`: from the `categories` query, or,
 * on a server without it, learnt by walking the first pages of the
 * catalogue (count unknown). Kept for the tab's session.
 */
async function categories() {
  try {
    const cached = JSON.parse(sessionStorage.getItem(CATEGORY_CACHE) || 'null');
    if (Array.isArray(cached) && cached.every((c) => typeof c?.name === 'string')) return cached;
  } catch { /* read again */ }
  let list;
  if ((await features()).categories) {
    list = (await gql('{ categories { name count } }')).categories;
  } else {
    const seen = new Set();
    let token = null;
    for (let page = 0; page < CATEGORY_PAGES; page += 1) {
      const d = await gql('query ($t: String) { getProducts(nextToken: $t) { products { category } nextToken } }', { t: token });
      for (const p of d.getProducts.products) if (p.category) seen.add(p.category);
      token = d.getProducts.nextToken;
      if (!token) break;
    }
    list = [...seen].sort((a, b) => a.localeCompare(b)).map((name) => ({ name, count: null }));
  }
  sessionStorage.setItem(CATEGORY_CACHE, JSON.stringify(list));
  return list;
}

// Page tokens only go forward: keep the ones seen, to go back.
let pager = { key: '', tokens: [null], index: 0 };

async function catalogue(category) {
  const key = category === null ? '*' : `c:${category}`;
  if (pager.key !== key) pager = { key, tokens: [null], index: 0 };
  const f = await features();
  const fields = productFields(f);
  const token = pager.tokens[pager.index];
  const title = category === null ? 'All products' : category;
  let page;
  try {
    if (token) {
      page = (await gql(`query ($t: String) { getProducts(nextToken: $t) { products { ${fields} } nextToken } }`, { t: token })).getProducts;
    } else if (category === null) {
      page = (await gql(`{ getProducts { products { ${fields} } nextToken } }`)).getProducts;
    } else {
      page = (await gql(`query ($c: String!) { getProductsByCategory(category: $c) { products { ${fields} } nextToken } }`, { c: category })).getProductsByCategory;
    }
  } catch (err) {
    failed(title, err);
    return;
  }
  const nav = h('nav', { class: 'categories', 'aria-label': 'Categories' }, h('p', {}, 'Loading categories…'));
  categories().then((list) => {
    replace(nav, h('h2', { class: 'small' }, 'Categories'), h('ul', {},
      h('li', {}, h('a', { href: '#/', 'aria-current': category === null ? 'page' : null }, 'All products')),
      // The count stays outside the link, so the link's name is the category's.
      list.map((c) => h('li', {}, h('a', {
        href: `#/c/${encodeURIComponent(c.name)}`, 'aria-current': c.name === category ? 'page' : null,
      }, c.name), typeof c.count === 'number'
        ? h('span', { class: 'muted' }, ' ', h('span', { 'aria-hidden': 'true' }, `(${c.count})`),
          h('span', { class: 'sr-only' }, `${c.count} product${c.count === 1 ? '' : 's'}`))
        : null))));
  }, () => replace(nav));
  const prev = h('button', {
    type: 'button', disabled: pager.index === 0,
    onclick: () => { pager.index -= 1; route(); },
  }, 'Previous page');
  const next = h('button', {
    type: 'button', disabled: !page.nextToken,
    onclick: () => {
      pager.tokens = pager.tokens.slice(0, pager.index + 1).concat([page.nextToken]);
      pager.index += 1;
      route();
    },
  }, 'Next page');
  // The heading comes first, so focus lands above the categories and the
  // products, and Tab walks them in reading order.
  show(`${title} · ecom shop`,
    h('h1', {}, title),
    h('div', { class: 'with-side' },
      nav,
      h('section', { 'aria-label': 'Products' },
        page.products.length
          ? h('div', { class: 'grid' }, page.products.map(card))
          : h('p', {}, 'No products here yet.'),
        h('nav', { class: 'pager', 'aria-label': 'Pages' }, prev, h('span', {}, `Page ${pager.index + 1}`), next))));
}

async function productPage(productId) {
  const f = await features();
  let product;
  try {
    product = (await gql(`query ($id: ID!) { getProduct(productId: $id) { ${productFields(f)} } }`, { id: productId })).getProduct;
  } catch (err) {
    failed('Product', err);
    return;
  }
  if (!product) {
    show('Not found · ecom shop', h('h1', {}, 'No such product'),
      h('p', {}, 'This product is not in the catalogue (any more). ', h('a', { href: '#/' }, 'Back to the shop')));
    return;
  }
  const max = product.available > 0 ? Math.min(product.available, MAX_QUANTITY) : MAX_QUANTITY;
  const quantity = field('Quantity', {
    type: 'number', min: 1, max, step: 1, value: '1', inputmode: 'numeric', required: true,
    check: (v) => (/^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= max ? '' : `Enter a whole number from 1 to ${max}.`),
  });
  const pkg = product.package || {};
  show(`${product.name} · ecom shop`,
    h('article', { class: 'product' },
      tile(product),
      h('div', {},
        h('h1', {}, product.name),
        h('p', { class: 'price big' }, money(product.price)),
        availability(product),
        product.category ? h('p', {}, 'Category: ', h('a', { href: `#/c/${encodeURIComponent(product.category)}` }, product.category)) : null,
        (product.tags || []).filter(Boolean).length ? h('p', { class: 'tags' }, 'Tags: ', product.tags.filter(Boolean).join(', ')) : null,
        h('p', { class: 'muted' }, `Package: ${pkg.width ?? '?'} × ${pkg.length ?? '?'} × ${pkg.height ?? '?'} mm, ${pkg.weight ?? '?'} g`),
        h('div', { class: 'buy' }, quantity.wrap,
          addButton(product, () => (validate([quantity.input]) ? Number(quantity.input.value) : null))),
        h('p', {}, h('a', { href: '#/cart' }, 'Go to the cart')))));
}

// --------------------------------------------------------------------------
// Cart and checkout.

function cartTable(editable, onchange) {
  const lines = cart.lines();
  const rows = lines.map((l) => {
    const qty = editable
      ? h('input', {
        type: 'number', min: 1, max: MAX_QUANTITY, step: 1, value: String(l.quantity), inputmode: 'numeric',
        'aria-label': `Quantity of ${l.name}`, class: 'qty',
        onchange: (e) => {
          const n = Number(e.target.value);
          if (!Number.isInteger(n) || n < 1 || n > MAX_QUANTITY) {
            e.target.value = String(l.quantity);
            announce(`The quantity must be a whole number from 1 to ${MAX_QUANTITY}.`);
            return;
          }
          cart.setQuantity(l.productId, n);
          onchange();
        },
      })
      : String(l.quantity);
    return h('tr', {},
      h('th', { scope: 'row' }, h('a', { href: `#/p/${encodeURIComponent(l.productId)}` }, l.name)),
      h('td', { class: 'num' }, money(l.price)),
      h('td', { class: 'num' }, qty),
      h('td', { class: 'num' }, money(l.price * l.quantity)),
      editable ? h('td', {}, h('button', {
        type: 'button', class: 'link', 'aria-label': `Remove ${l.name}`,
        onclick: () => { cart.remove(l.productId); announce(`Removed ${l.name}.`); onchange(); },
      }, 'Remove')) : null);
  });
  return h('table', { class: 'lines' },
    h('caption', { class: 'sr-only' }, 'Products in the cart'),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Product'), h('th', { scope: 'col', class: 'num' }, 'Price'),
      h('th', { scope: 'col', class: 'num' }, 'Quantity'), h('th', { scope: 'col', class: 'num' }, 'Total'),
      editable ? h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')) : null)),
    h('tbody', {}, rows),
    h('tfoot', {}, h('tr', {}, h('th', { scope: 'row', colspan: 3 }, 'Subtotal'),
      h('td', { class: 'num' }, money(cart.subtotal())), editable ? h('td') : null)));
}

function cartPage() {
  if (!cart.lines().length) {
    show('Cart · ecom shop', h('h1', {}, 'Your cart'),
      h('p', {}, 'Your cart is empty. ', h('a', { href: '#/' }, 'Browse the shop')));
    return;
  }
  show('Cart · ecom shop', h('h1', {}, 'Your cart'),
    cartTable(true, cartPage),
    h('p', { class: 'actions' }, h('a', { class: 'button primary', href: '#/checkout' }, 'Check out')));
}

const ADDRESS = 'ecom.address';
const ADDRESS_FIELDS = [
  ['name', 'Full name', { required: true, autocomplete: 'name', maxlength: 200 }],
  ['companyName', 'Company', { autocomplete: 'organization', maxlength: 200 }],
  ['streetAddress', 'Street address', { required: true, autocomplete: 'street-address', maxlength: 200 }],
  ['postCode', 'Post code', { autocomplete: 'postal-code', maxlength: 200 }],
  ['city', 'City', { required: true, autocomplete: 'address-level2', maxlength: 200 }],
  ['state', 'State or region', { autocomplete: 'address-level1', maxlength: 200 }],
  ['country', 'Country code', {
    required: true, autocomplete: 'country', maxlength: 2, hint: 'Two letters, e.g. DE, FR, US',
    check: (v) => (/^[A-Za-z]{2}$/.test(v) ? '' : 'Enter the two-letter country code, e.g. DE.'),
  }],
  ['phoneNumber', 'Phone', { required: true, type: 'tel', autocomplete: 'tel', maxlength: 200 }],
];

// A control character in an address is refused by the server; say so first.
const noControl = (label) => (v) => (/[\u0000-\u001f\u007f]/.test(v) ? `${label} has characters that cannot be printed.` : '');

/** A checkout in progress: the quote and, after a failed send, what to resend. */
let checkout = { quoteKey: '', delivery: null, attempt: null };

async function checkoutPage() {
  const lines = cart.lines();
  if (!lines.length) { cartPage(); return; }
  if (!session.signedIn()) {
    rememberReturn('#/checkout');
    show('Check out · ecom shop', h('h1', {}, 'Check out'),
      h('p', {}, 'Sign in to check out; your cart is kept.'),
      h('p', { class: 'actions' }, h('a', { class: 'button primary', href: '#/signin' }, 'Sign in'),
        h('a', { class: 'button', href: '#/signup' }, 'Create an account')));
    return;
  }
  let saved = {};
  try { saved = JSON.parse(sessionStorage.getItem(ADDRESS) || '{}') || {}; } catch { saved = {}; }
  const inputs = {};
  const fields = ADDRESS_FIELDS.map(([key, label, opts]) => {
    const { check, ...rest } = opts;
    const f = field(label, {
      name: key, value: saved[key] || '', ...rest,
      check: (v) => noControl(label)(v) || (check ? check(v) : ''),
    });
    inputs[key] = f.input;
    return f.wrap;
  });
  const cardField = field('Card number', {
    name: 'cardNumber', required: true, autocomplete: 'cc-number', inputmode: 'numeric', maxlength: 23,
    hint: '16 digits',
    check: (v) => (/^\d{16}$/.test(v.replace(/[\s-]/g, '')) ? '' : 'Enter the 16 digits of the card.'),
  });
  const summary = h('div', { class: 'totals', 'aria-live': 'polite' });

  const address = () => {
    const a = {};
    for (const [key] of ADDRESS_FIELDS) {
      const v = inputs[key].value.trim();
      a[key] = key === 'country' ? v.toUpperCase() : v;
    }
    for (const key of ['companyName', 'postCode', 'state']) if (!a[key]) a[key] = null;
    return a;
  };
  const quoteKey = () => JSON.stringify([address(), productInputs(cart.lines())]);
  const renderTotals = () => {
    const fresh = checkout.delivery !== null && checkout.quoteKey === quoteKey();
    replace(summary,
      h('p', {}, 'Subtotal: ', h('strong', {}, money(cart.subtotal()))),
      h('p', {}, 'Delivery: ', h('strong', {}, fresh ? money(checkout.delivery) : 'enter the address, then get the price')),
      fresh ? h('p', { class: 'grand' }, 'Total: ', h('strong', { id: 'order-total' }, money(cart.subtotal() + checkout.delivery))) : null);
    payButton.textContent = fresh ? `Pay ${money(cart.subtotal() + checkout.delivery)} and place the order` : 'Get the delivery price';
  };
  const addressOk = () => validate(Object.values(inputs));

  async function quote() {
    const a = address();
    sessionStorage.setItem(ADDRESS, JSON.stringify(a));
    const d = await gql('query ($i: DeliveryPricingInput!) { getDeliveryPricing(input: $i) { pricing } }',
      { i: { products: productInputs(cart.lines()), address: a } }, { auth: true });
    checkout.delivery = d.getDeliveryPricing.pricing;
    checkout.quoteKey = quoteKey();
    renderTotals();
    announce(`Delivery costs ${money(checkout.delivery)}. Total ${money(cart.subtotal() + checkout.delivery)}.`);
  }

  const payButton = h('button', { type: 'submit', class: 'primary' }, 'Get the delivery price');

  async function pay() {
    if (!addressOk()) return;
    if (checkout.delivery === null || checkout.quoteKey !== quoteKey()) {
      await quote();
      return; // The shopper sees the total before paying.
    }
    if (!validate([cardField.input])) return;
    const request = {
      products: productInputs(cart.lines()),
      address: address(),
      deliveryPrice: checkout.delivery,
    };
    const total = cart.subtotal() + checkout.delivery;
    const requestKey = JSON.stringify([request, total]);
    // After a send whose outcome is unknown, the same request goes again
    // with the same token and Idempotency-Key: at most one order results.
    let attempt = checkout.attempt && checkout.attempt.requestKey === requestKey ? checkout.attempt : null;
    if (!attempt) {
      let paymentToken;
      try {
        paymentToken = await preauth(cardField.input.value.replace(/[\s-]/g, ''), total);
      } catch (err) {
        if (err instanceof ApiError && err.status) throw new ApiError(`The card was not accepted: ${err.message}`);
        throw err;
      }
      attempt = { requestKey, paymentToken, key: uuid() };
      checkout.attempt = attempt;
    }
    let answer;
    try {
      answer = (await gql(`mutation ($o: CreateOrderRequest!) { createOrder(order: $o) { success message errors order { orderId } } }`,
        { o: { ...request, paymentToken: attempt.paymentToken } },
        { auth: true, headers: { 'Idempotency-Key': attempt.key } })).createOrder;
    } catch (err) {
      if (!(err instanceof ApiError) || err.status === 0 || err instanceof AuthError) throw err;
      checkout.attempt = null;
      throw err;
    }
    checkout.attempt = null;
    if (!answer.success) {
      // Reasons name products by id ("Out of stock: <id>"); say their names too.
      const names = cart.lines();
      const reasons = (answer.errors && answer.errors.length ? answer.errors : [answer.message])
        .map((r) => names.reduce((text, l) => text.split(l.productId).join(`${l.productId} (${l.name})`), String(r)));
      const changed = await refreshCart();
      checkoutForm.showError(h('div', { class: 'alert', role: 'alert', tabindex: '-1' },
        h('p', {}, 'The order was not placed:'),
        h('ul', {}, reasons.map((r) => h('li', {}, r))),
        changed ? h('p', {}, 'Your cart now shows the current catalogue. Check it and place the order again.') : null));
      summary.closest('form')?.querySelector('[role=alert]')?.focus();
      checkout.delivery = null;
      if (changed) { replace(linesBox, cartTable(false)); }
      renderTotals();
      return;
    }
    const orderId = answer.order.orderId;
    cart.clear();
    checkout = { quoteKey: '', delivery: null, attempt: null };
    announce('Thank you: your order is placed.');
    go(`#/o/${encodeURIComponent(orderId)}`);
  }

  const linesBox = h('div', {}, cartTable(false));
  const checkoutForm = form({ class: 'checkout', 'aria-labelledby': 'checkout-title' }, [
    h('fieldset', {}, h('legend', {}, 'Delivery address'), h('div', { class: 'cols' }, fields)),
    h('fieldset', {}, h('legend', {}, 'Payment'), cardField.wrap,
      h('p', { class: 'hint' }, 'The amount is reserved on the card now and charged when the order is delivered.')),
    summary,
    h('p', { class: 'actions' }, payButton),
  ], pay, problem);
  for (const input of Object.values(inputs)) input.addEventListener('input', renderTotals);
  renderTotals();
  show('Check out · ecom shop',
    h('h1', { id: 'checkout-title' }, 'Check out'),
    h('h2', {}, 'Your order'), linesBox,
    h('p', {}, h('a', { href: '#/cart' }, 'Change the cart')),
    checkoutForm);
}

/**
 * Brings the cart in line with the catalogue after a refusal (a price or
 * name changed, a product went away). True when something changed.
 */
async function refreshCart() {
  let changed = false;
  const lines = [];
  for (const line of cart.lines()) {
    let p;
    try {
      p = (await gql('query ($id: ID!) { getProduct(productId: $id) { productId name price category package { width length height weight } } }',
        { id: line.productId })).getProduct;
    } catch {
      lines.push(line);
      continue;
    }
    if (!p) { changed = true; continue; }
    const next = { ...line, name: p.name, price: p.price, category: p.category || null, package: p.package };
    if (JSON.stringify(next) !== JSON.stringify(line)) changed = true;
    lines.push(next);
  }
  if (changed) cart.save(lines);
  return changed;
}

// --------------------------------------------------------------------------
// Accounts.

const emailCheck = (v) => (/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v) ? '' : 'Enter an email address like ada@example.com.');

/** The users service's rule: 8 to 256 characters, of at least two kinds. */
export function passwordCheck(v) {
  const kinds = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^A-Za-z0-9]/].filter((r) => r.test(v)).length;
  return v.length >= 8 && v.length <= 256 && kinds >= 2
    ? '' : 'Use 8 or more characters with at least two of: lower case, upper case, digits, symbols.';
}

function signInPage() {
  const email = field('Email', { type: 'email', required: true, autocomplete: 'username', check: emailCheck });
  const password = field('Password', { type: 'password', required: true, autocomplete: 'current-password' });
  show('Sign in · ecom shop', h('h1', {}, 'Sign in'),
    form({ class: 'narrow' }, [email.wrap, password.wrap,
      h('p', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Sign in'))],
    async () => {
      if (!validate([email.input, password.input])) return;
      await signIn(email.input.value.trim(), password.input.value);
      renderAccount();
      announce(`Signed in as ${session.email()}.`);
      go(takeReturn());
    }),
    h('p', {}, 'New here? ', h('a', { href: '#/signup' }, 'Create an account')));
}

function signUpPage() {
  const email = field('Email', { type: 'email', required: true, autocomplete: 'username', check: emailCheck });
  const password = field('Password', {
    type: 'password', required: true, autocomplete: 'new-password', check: passwordCheck,
    hint: 'At least 8 characters, with two of: lower case, upper case, digits, symbols.',
  });
  const again = field('Repeat the password', {
    type: 'password', required: true, autocomplete: 'new-password',
    check: (v) => (v === password.input.value ? '' : 'The two passwords differ.'),
  });
  show('Create an account · ecom shop', h('h1', {}, 'Create an account'),
    form({ class: 'narrow' }, [email.wrap, password.wrap, again.wrap,
      h('p', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create the account'))],
    async () => {
      if (!validate([email.input, password.input, again.input])) return;
      await signUp(email.input.value.trim(), password.input.value);
      renderAccount();
      announce(`Welcome! You are signed in as ${session.email()}.`);
      go(takeReturn());
    }),
    h('p', {}, 'Have an account? ', h('a', { href: '#/signin' }, 'Sign in')));
}

// --------------------------------------------------------------------------
// Orders.

async function ordersPage() {
  if (!session.signedIn()) { rememberReturn('#/orders'); go('#/signin'); return; }
  const list = h('tbody');
  const more = h('button', { type: 'button' }, 'More orders');
  let token = null;
  async function load() {
    const d = (await gql(`query ($t: String) { getOrders(nextToken: $t) { orders { orderId createdDate status total } nextToken } }`,
      { t: token }, { auth: true })).getOrders;
    for (const o of d.orders) {
      list.append(h('tr', {},
        h('th', { scope: 'row' }, h('a', { href: `#/o/${encodeURIComponent(o.orderId)}` }, when(o.createdDate))),
        h('td', {}, statusText(o.status)),
        h('td', { class: 'num' }, money(o.total)),
        h('td', { class: 'mono' }, shortId(o.orderId))));
    }
    token = d.nextToken;
    more.hidden = !token;
    return d.orders.length;
  }
  let count;
  try { count = await load(); } catch (err) { failed('Your orders', err); return; }
  more.addEventListener('click', () => busy(more, () => load().catch((err) => more.after(problem(err)))));
  show('Your orders · ecom shop', h('h1', {}, 'Your orders'),
    count === 0 ? h('p', {}, 'No orders yet. ', h('a', { href: '#/' }, 'Browse the shop')) : h('table', { class: 'lines' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Placed'), h('th', { scope: 'col' }, 'Status'),
        h('th', { scope: 'col', class: 'num' }, 'Total'), h('th', { scope: 'col' }, 'Order'))),
      list),
    h('p', {}, more));
}

const TERMINAL = new Set(['FULFILLED', 'PACKAGING_FAILED', 'DELIVERY_FAILED', 'PAYMENT_FAILED', 'CANCELLED']);
const POLL_MS = 2000;
let polling = null;
/** Ends the open `orderUpdated` subscription, if any. */
let unsubscribe = null;

function stopPolling() {
  if (polling) { clearTimeout(polling); polling = null; }
  if (unsubscribe) { unsubscribe(); unsubscribe = null; }
}

function steps(order) {
  const s = order.status;
  const failedAt = { PACKAGING_FAILED: 1, DELIVERY_FAILED: 2, PAYMENT_FAILED: 2, CANCELLED: 1 }[s];
  const reached = { NEW: 0, PACKAGED: 1, FULFILLED: 3 }[s];
  const names = ['Placed', 'Packed', 'Delivered'];
  return h('ol', { class: 'steps', 'aria-label': 'Progress' }, names.map((name, i) => {
    let state = 'todo';
    let label = name;
    if (failedAt !== undefined) {
      if (i < failedAt) state = 'done';
      else if (i === failedAt) { state = 'failed'; label = statusText(s); }
    } else if (reached !== undefined) {
      if (i < reached) state = 'done';
      else if (i === reached) state = 'current';
    }
    const words = { done: 'done', current: 'current step', failed: 'stopped here', todo: 'to come' }[state];
    return h('li', { class: state, 'aria-current': state === 'current' ? 'step' : null },
      h('span', { class: 'dot', 'aria-hidden': 'true' }), label, h('span', { class: 'sr-only' }, ` (${words})`));
  }));
}

async function orderPage(orderId) {
  stopPolling();
  if (!session.signedIn()) { rememberReturn(); go('#/signin'); return; }
  const f = await features();
  const query = `query ($id: ID!) { getOrder(orderId: $id) { ${orderFields(f)} } }`;
  const here = location.hash;
  let order;
  try {
    order = (await gql(query, { id: orderId }, { auth: true })).getOrder;
  } catch (err) { failed('Order', err); return; }
  if (!order) {
    show('Order · ecom shop', h('h1', {}, 'No such order'),
      h('p', {}, 'There is no order with this number in your account. ', h('a', { href: '#/orders' }, 'Your orders')));
    return;
  }
  const body = h('div', {});
  const cancelBox = h('div', {});
  // Says how the page follows the order (and lets a test tell which way).
  const following = h('p', { class: 'muted', id: 'order-following' });
  const follow = (how) => {
    following.dataset.how = how;
    following.textContent = { live: 'This page updates live as the order moves.',
      polling: 'This page checks for changes every few seconds.', done: '' }[how];
  };
  const render = (o) => {
    const a = o.address;
    replace(body,
      h('p', { class: 'order-status' }, 'Status: ', h('strong', { id: 'order-status' }, statusText(o.status))),
      steps(o),
      f.history && Array.isArray(o.history) && o.history.length
        ? h('ul', { class: 'history', 'aria-label': 'History' }, o.history.map((c) => h('li', {}, `${statusText(c.status)}: ${when(c.at)}`)))
        : null,
      o.trackingId ? h('p', {}, 'Tracking number: ', h('span', { class: 'mono' }, o.trackingId)) : null,
      h('table', { class: 'lines' },
        h('caption', { class: 'sr-only' }, 'Products in the order'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Product'), h('th', { scope: 'col', class: 'num' }, 'Price'),
          h('th', { scope: 'col', class: 'num' }, 'Quantity'), h('th', { scope: 'col', class: 'num' }, 'Total'))),
        h('tbody', {}, o.products.map((p) => h('tr', {},
          h('th', { scope: 'row' }, p.name), h('td', { class: 'num' }, money(p.price)),
          h('td', { class: 'num' }, String(p.quantity ?? 1)), h('td', { class: 'num' }, money(p.price * (p.quantity ?? 1)))))),
        h('tfoot', {},
          h('tr', {}, h('th', { scope: 'row', colspan: 3 }, 'Delivery'), h('td', { class: 'num' }, money(o.deliveryPrice))),
          o.refunded ? h('tr', {}, h('th', { scope: 'row', colspan: 3 }, 'Refunded'), h('td', { class: 'num' }, money(o.refunded))) : null,
          h('tr', { class: 'grand' }, h('th', { scope: 'row', colspan: 3 }, 'Total'), h('td', { class: 'num', id: 'order-total' }, money(o.total))))),
      h('h2', {}, 'Delivery address'),
      h('address', {}, [a.name, a.companyName, a.streetAddress, [a.postCode, a.city].filter(Boolean).join(' '), a.state, a.country, a.phoneNumber]
        .filter(Boolean).map((line) => h('span', { class: 'line' }, line))));
    replace(cancelBox);
    if (f.cancelOrder && o.status === 'NEW') {
      replace(cancelBox, confirmButton('Cancel the order', 'Yes, cancel the order', async () => {
        try {
          await gql('mutation ($id: ID!) { cancelOrder(orderId: $id) { success } }', { id: o.orderId }, { auth: true });
          announce('The order is cancelled.');
          await refresh(true);
        } catch (err) { replace(cancelBox, problem(err)); }
      }));
    }
  };
  let last = '';
  /** Shows `next` when it differs from what is shown (or when forced). */
  const apply = (next, force) => {
    const key = JSON.stringify([next.status, next.total, next.products, next.history, next.trackingId, next.refunded]);
    if (force || key !== last) {
      if (last) announce(`Order status: ${statusText(next.status)}. Total ${money(next.total)}.`);
      last = key;
      order = next;
      render(next);
    }
  };
  async function refresh(force) {
    let next;
    try {
      next = (await gql(query, { id: orderId }, { auth: true })).getOrder;
    } catch (err) {
      if (err instanceof AuthError) { replace(cancelBox, problem(err)); return; }
      next = order; // A failed poll keeps the page as it is and tries again.
    }
    if (location.hash !== here) return;
    if (next) apply(next, force);
    // While the subscription is open it brings the changes; polling is the fallback.
    if (!unsubscribe && !TERMINAL.has(order.status) && location.hash === here) polling = setTimeout(() => refresh(false), POLL_MS);
  }
  /**
   * Follows the order live with `orderUpdated`. When the socket fails or
   * the server ends it early, the page polls instead (a proxy that does
   * not pass WebSockets, a server without the subscription).
   */
  function live() {
    const stop = subscribe(`subscription ($id: ID!) { orderUpdated(orderId: $id) { ${orderFields(f)} } }`, { id: orderId }, {
      onData: (data) => {
        if (location.hash !== here || !data.orderUpdated) return;
        apply(data.orderUpdated, false);
        if (TERMINAL.has(data.orderUpdated.status)) { stopPolling(); follow('done'); }
      },
      onEnd: () => {
        if (unsubscribe !== stop) return;
        unsubscribe = null;
        if (location.hash !== here) return;
        if (TERMINAL.has(order.status)) { follow('done'); return; }
        follow('polling');
        refresh(false);
      },
    });
    unsubscribe = stop;
    follow('live');
  }
  last = JSON.stringify([order.status, order.total, order.products, order.history, order.trackingId, order.refunded]);
  render(order);
  show(`Order ${shortId(order.orderId)} · ecom shop`,
    h('h1', {}, `Order of ${when(order.createdDate)}`),
    h('p', { class: 'muted' }, 'Order number ', h('span', { class: 'mono' }, order.orderId)),
    following, body, cancelBox,
    h('p', {}, h('a', { href: '#/orders' }, 'All your orders')));
  if (TERMINAL.has(order.status)) return;
  if (f.orderUpdated && typeof WebSocket === 'function') live();
  else { follow('polling'); polling = setTimeout(() => refresh(false), POLL_MS); }
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
  stopPolling();
  const hash = location.hash || '#/';
  if (!hash.startsWith('#/')) return; // An in-page anchor (the skip link).
  clearStaleStatus();
  const [path] = hash.slice(2).split('?');
  const parts = path.split('/').map((p) => { try { return decodeURIComponent(p); } catch { return p; } });
  for (const a of document.querySelectorAll('header nav a')) {
    if (a.getAttribute('href') === `#/${parts[0]}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  switch (parts[0]) {
    case '': return catalogue(null);
    case 'c': return catalogue(parts[1] || null);
    case 'p': return productPage(parts[1] || '');
    case 'cart': return cartPage();
    case 'checkout': return checkoutPage();
    case 'signin': return signInPage();
    case 'signup': return signUpPage();
    case 'orders': return ordersPage();
    case 'o': return orderPage(parts[1] || '');
    default:
      show('Not found · ecom shop', h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the shop')));
      return undefined;
  }
}

window.addEventListener('hashchange', route);
window.addEventListener('ecom-session', renderAccount);
window.addEventListener('storage', (e) => { if (e.key === CART) updateCartCount(); });
renderAccount();
updateCartCount();
route();
