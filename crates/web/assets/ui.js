// DOM helpers shared by the storefront and the console.
//
// Pages are built with `h()`, which only ever sets text (never HTML), so
// what the server or a user wrote cannot become markup. Status changes go
// to one polite live region; errors are alerts next to what failed.

/** Builds an element: `h('button', {class: 'x', onclick: f}, 'Text', child)`. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'for') {
      el.htmlFor = value;
    } else if (key === 'value') {
      el.value = value;
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const CURRENCY = '€';

/**
 * Formats an amount in cents, with integer arithmetic only (money is never
 * a float here): 123456 → "€1,234.56".
 */
export function money(cents) {
  const n = Number(cents);
  if (!Number.isSafeInteger(n)) return '—';
  const sign = n < 0 ? '−' : '';
  const abs = Math.abs(n);
  const whole = Math.floor(abs / 100).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${sign}${CURRENCY}${whole}.${String(abs % 100).padStart(2, '0')}`;
}

/**
 * Parses an amount typed by a person ("12", "12.5", "12.50") into cents,
 * exactly; null when it is not one.
 */
export function parseMoney(text) {
  const m = /^\s*(\d{1,9})(?:[.,](\d{1,2}))?\s*$/.exec(text);
  if (!m) return null;
  return Number(m[1]) * 100 + Number((m[2] || '0').padEnd(2, '0'));
}

/** A date-time as the reader's locale writes it. */
export function when(rfc3339) {
  const d = new Date(rfc3339);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString();
}

let announcedAt = 0;

/** Says `text` in the page's live region (screen readers announce it). */
export function announce(text) {
  const region = document.getElementById('status');
  if (!region) return;
  announcedAt = Date.now();
  region.textContent = '';
  // A fresh node after a tick: the same text twice is announced twice.
  setTimeout(() => { region.textContent = text; }, 30);
}

/**
 * Clears the live region when moving to another view, unless what it says
 * was just announced by the step that moved there ("Signed in", "Order
 * placed"): old news should not sit above a new page.
 */
export function clearStaleStatus() {
  const region = document.getElementById('status');
  if (region && Date.now() - announcedAt > 800) region.textContent = '';
}

/** An alert paragraph for an error message. */
export function alertBox(text) {
  return h('p', { class: 'alert', role: 'alert' }, text);
}

/**
 * Shows a view in `main`, sets the title and moves focus to its heading,
 * so keyboard and screen-reader users land on the new content.
 */
export function show(title, ...children) {
  const main = document.getElementById('main');
  replace(main, ...children);
  document.title = title;
  const heading = main.querySelector('h1');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: true });
  }
  window.scrollTo(0, 0);
}

let fieldCount = 0;

/**
 * A labelled input with room for its error: `{ wrap, input }`. `options`
 * are attributes of the input (type, required, autocomplete, …) plus
 * `hint` (help text) and `check(value)` returning an error message or ''.
 */
export function field(label, options = {}) {
  const { hint, check, multiline, ...attrs } = options;
  const id = `f${++fieldCount}`;
  const error = h('span', { class: 'field-error', id: `${id}-error` });
  const hintEl = hint ? h('span', { class: 'hint', id: `${id}-hint` }, hint) : null;
  const input = h(multiline ? 'textarea' : 'input', {
    id,
    name: attrs.name || id,
    'aria-describedby': [hintEl ? `${id}-hint` : '', `${id}-error`].join(' ').trim(),
    ...attrs,
  });
  input.check = () => {
    const value = input.value.trim();
    let message = '';
    if (attrs.required && value === '') message = `${label} is required.`;
    else if (check && value !== '') message = check(value) || '';
    error.textContent = message;
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
    return message === '';
  };
  input.addEventListener('change', () => { if (input.hasAttribute('aria-invalid')) input.check(); });
  const wrap = h('div', { class: 'field' },
    h('label', { for: id }, label, attrs.required ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null),
    input, hintEl, error);
  return { wrap, input };
}

/** A checkbox with its label. */
export function checkbox(label, checked, attrs = {}) {
  const id = `f${++fieldCount}`;
  const input = h('input', { type: 'checkbox', id, checked: !!checked, ...attrs });
  return { wrap: h('div', { class: 'check' }, input, h('label', { for: id }, label)), input };
}

/**
 * Checks every input (each shows its own error); focuses the first that
 * fails. True when all pass.
 */
export function validate(inputs) {
  let first = null;
  for (const input of inputs) {
    if (!input.check() && !first) first = input;
  }
  if (first) first.focus();
  return first === null;
}

/**
 * Runs `work` with `button` disabled and marked busy, so a second click
 * cannot send the request twice.
 */
export async function busy(button, work) {
  if (button.disabled) return undefined;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

/**
 * A form whose submit runs `onsubmit(event)` with its submit button busy;
 * a thrown error is shown in the form's alert area (the form itself keeps
 * what was typed).
 */
export function form(attrs, children, onsubmit, renderError) {
  const errors = h('div', { class: 'form-errors' });
  const el = h('form', { novalidate: true, ...attrs }, errors, children);
  el.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = el.querySelector('button[type=submit]') || el;
    await busy(button, async () => {
      replace(errors);
      try {
        await onsubmit(event);
      } catch (err) {
        replace(errors, renderError ? renderError(err) : alertBox(err.message));
        const alert = errors.querySelector('[role=alert]');
        if (alert) { alert.setAttribute('tabindex', '-1'); alert.focus(); }
      }
    });
  });
  el.showError = (node) => replace(errors, node);
  return el;
}

/** A two-step delete: the first press asks, the second does it. */
export function confirmButton(label, confirmLabel, action) {
  const box = h('span', { class: 'confirm' });
  const start = h('button', { type: 'button', class: 'danger', onclick: ask }, label);
  function ask() {
    const yes = h('button', { type: 'button', class: 'danger' }, confirmLabel);
    const no = h('button', { type: 'button', onclick: () => { replace(box, start); start.focus(); } }, 'Keep');
    yes.addEventListener('click', () => busy(yes, action));
    replace(box, yes, no);
    yes.focus();
  }
  replace(box, start);
  return box;
}

/** The order statuses in words. */
export const STATUS = {
  NEW: 'Placed',
  PACKAGED: 'Packed',
  PACKAGING_FAILED: 'Could not be packed',
  FULFILLED: 'Delivered',
  DELIVERY_FAILED: 'Delivery failed',
  PAYMENT_FAILED: 'Payment failed',
  CANCELLED: 'Cancelled',
  IN_PROGRESS: 'In progress',
  COMPLETED: 'Completed',
};

/** A status in words (unknown statuses in their own words, lower-cased). */
export function statusText(status) {
  return STATUS[status] || String(status || '').toLowerCase().replace(/_/g, ' ');
}
