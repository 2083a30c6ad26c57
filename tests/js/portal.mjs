// The portal in a real browser, driven by tests/portal_browser.rs:
//   1. Alice signs in through the dev sign-in form and activates the self-reader rule from
//      My roles (Check, then Activate), keyboard only: Tab, Shift+Tab, Enter and Space;
//   2. bad input through the prod-one form (a duration over the maximum, a scope outside the
//      rule, no justification) comes back with the error next to the field and the input kept;
//   3. Alice requests prod-one, Bob approves it from Approvals and its approval page, Alice
//      deactivates it from My access;
//   4. Dana (admin and auditor) filters the audit trail, exports it as CSV, reads the policy.
// Every page is scanned with axe-core for WCAG 2.0/2.1 A and AA violations (all are reported,
// then the run fails), must apply its stylesheet under its own CSP and keep its fields inside
// their boxes, and is kept as a screenshot. Every control reached by Tab must show its focus
// (an outline of 2px or more, 3:1 against white).
//
//   node tests/js/portal.mjs <scenario.json>
// The scenario: { base, artifacts, results, sub1, sub2, justification, approval }.
// Writes `results` (JSON): { selfId, prodId, scanned: [page names], csv: first two lines }.

import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const axeSource = readFileSync(require.resolve('axe-core'), 'utf8');

const scenario = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const { base } = scenario;
mkdirSync(scenario.artifacts, { recursive: true });
const results = { scanned: [] };
const axeFailures = [];
const cspFailures = [];

const fail = (message) => {
  console.error(`FAIL: ${message}`);
  process.exit(1);
};
const shot = (page, name) => page.screenshot({ path: path.join(scenario.artifacts, `${name}.png`), fullPage: true });
const expectText = async (scope, text, state) => {
  const body = await scope.innerText();
  if (!body.includes(text)) fail(`${state}: expected "${text}" in:\n${body}`);
};
const expectUrl = (page, pathAndQuery, state) => {
  const url = new URL(page.url());
  if (`${url.pathname}${url.search}` !== pathAndQuery) fail(`${state}: at ${url.pathname}${url.search}, not ${pathAndQuery}`);
};

// axe-core, WCAG 2.0 and 2.1, levels A and AA. The pages forbid every script by their CSP
// (`default-src 'none'`), so a <script> tag (page.addScriptTag) is refused; axe's source is
// evaluated through the DevTools protocol instead, which the page's CSP does not govern. The
// CSP thus stays in force (no `bypassCSP`): the scan sees the page as a user does, with the
// stylesheet only when its hash matches.
const scan = async (page, name) => {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] }, resultTypes: ['violations', 'incomplete'] }));
  results.scanned.push(name);
  for (const v of result.violations) {
    for (const node of v.nodes) {
      axeFailures.push(`${name}: ${v.id} (${v.impact}) at ${node.target.join(' ')}: ${v.help}\n    ${node.failureSummary.replace(/\n/g, '\n    ')}`);
    }
  }
  const review = result.incomplete.map((v) => `${v.id} x${v.nodes.length}`).join(', ');
  console.error(`axe ${name}: ${result.violations.length} violation(s), ${result.passes.length} rule(s) passed${review ? `; to review by hand: ${review}` : ''}`);
};
// Every page of a state: its own stylesheet applied (under the CSP), scanned, kept.
const visit = async (page, name) => {
  const styled = await page.evaluate(() => getComputedStyle(document.body).fontFamily.includes('system-ui'));
  if (!styled) fail(`${name}: the page's stylesheet is not applied (its CSP hash?)`);
  // Layout: fields stay inside their box, table captions read as captions.
  const broken = await page.evaluate(() => {
    const found = [];
    for (const el of document.querySelectorAll('main input:not([type=hidden]), main textarea, main select')) {
      const container = el.closest('fieldset, section, main');
      const style = getComputedStyle(container);
      const inner = container.getBoundingClientRect().right - parseFloat(style.borderRightWidth) - parseFloat(style.paddingRight);
      const over = el.getBoundingClientRect().right - inner;
      if (over > 0.5) found.push(`#${el.id} sticks out of its box by ${over.toFixed(1)}px`);
    }
    for (const c of document.querySelectorAll('caption')) {
      if (getComputedStyle(c).display !== 'table-caption') found.push(`caption "${c.textContent}" is shown as ${getComputedStyle(c).display}`);
    }
    return found;
  });
  if (broken.length) fail(`${name}: ${broken.join('; ')}`);
  await scan(page, name);
  await shot(page, name);
};
const newPage = async (browser) => {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  page.on('console', (m) => {
    if (m.text().includes('Content Security Policy')) cspFailures.push(`${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => cspFailures.push(`${page.url()}: ${e.message}`));
  return page;
};
// The same page after a form post and its redirect (post, redirect, get) or its answer.
const submitted = async (page, act) => {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load', timeout: 15000 }), act()]);
};

// Sign in through the dev sign-in form, by mouse: the page `target` sends us there first.
const signIn = async (page, target, person, state) => {
  await page.goto(`${base}${target}`);
  const at = new URL(page.url());
  if (at.pathname !== '/api/portal/sign-in' || at.searchParams.get('returnTo') !== target) fail(`${state}: not sent to sign in: ${page.url()}`);
  await page.getByLabel(person).check();
  if (!(await page.getByLabel('Multi-factor authentication').isChecked())) fail(`${state}: MFA is not ticked by default`);
  await submitted(page, () => page.getByRole('button', { name: 'Sign in', exact: true }).click());
  expectUrl(page, target, state);
};

// Keyboard: where focus is, and that it shows (an outline of at least 2px, 3:1 against white).
const focused = (page) => page.evaluate(() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  const rgb = (style.outlineColor.match(/[\d.]+/g) || []).map(Number);
  const lum = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const l = 0.2126 * lum(rgb[0]) + 0.7152 * lum(rgb[1]) + 0.0722 * lum(rgb[2]);
  return {
    tag: el.tagName.toLowerCase(),
    id: el.id,
    cls: el.className,
    text: (el.innerText || el.value || '').trim().slice(0, 40),
    outline: `${style.outlineStyle} ${style.outlineWidth} ${style.outlineColor}`,
    visible: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2,
    contrast: 1.05 / (l + 0.05),
    form: el.form ? el.form.getAttribute('action') : null,
  };
});
const describe = (f) => `${f.tag}#${f.id}.${f.cls} "${f.text}"`;
const checkFocusVisible = (f, state) => {
  if (!f.visible) fail(`${state}: focus on ${describe(f)} is not visible (outline ${f.outline})`);
  if (f.contrast < 3) fail(`${state}: the focus outline of ${describe(f)} (${f.outline}) has contrast ${f.contrast.toFixed(2)}:1 against white, under 3:1`);
};
// Tab (or Shift+Tab) until `wanted(focus)`, checking that every control on the way shows focus.
const tabTo = async (page, wanted, state, { back = false, max = 200 } = {}) => {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
    const f = await focused(page);
    if (f.tag === 'body') fail(`${state}: Tab left the page before reaching the control`);
    checkFocusVisible(f, state);
    if (wanted(f)) return f;
  }
  return fail(`${state}: not reached in ${max} Tab presses`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
    '--no-first-run', '--disable-component-update', '--disable-sync'],
});
try {
  // 1. Alice, keyboard only: sign in, then Check and Activate the self-reader rule.
  const alice = await newPage(browser);
  await alice.goto(`${base}/api/portal/roles`);
  expectUrl(alice, '/api/portal/sign-in?returnTo=%2Fapi%2Fportal%2Froles', 'sign-in');
  await visit(alice, '01-sign-in');
  await alice.keyboard.press('Tab');
  const skip = await focused(alice);
  if (skip.cls !== 'skip' || skip.text !== 'Skip to content') fail(`sign-in: the first Tab reached ${describe(skip)}, not the skip link`);
  checkFocusVisible(skip, 'sign-in skip link');
  const box = await alice.locator('a.skip').boundingBox();
  if (!box || box.x < 0 || box.y < 0) fail(`sign-in: the focused skip link is off screen: ${JSON.stringify(box)}`);
  await alice.keyboard.press('Enter');
  if ((await focused(alice)).id !== 'main') fail('sign-in: the skip link does not move focus to the content');
  // Alice is the first identity, chosen; MFA is ticked: on to the button.
  const first = await tabTo(alice, (f) => f.tag === 'input', 'sign-in');
  if (first.id !== 'as-0') fail(`sign-in: the first control of the content is ${describe(first)}, not Alice`);
  if (!(await alice.getByLabel('Alice (requester)').isChecked()) || !(await alice.getByLabel('Multi-factor authentication').isChecked())) {
    fail('sign-in: Alice and MFA are not chosen by default');
  }
  await tabTo(alice, (f) => f.tag === 'button' && f.text === 'Sign in', 'sign-in');
  await submitted(alice, () => alice.keyboard.press('Enter'));
  expectUrl(alice, '/api/portal/roles', 'after sign-in');
  await expectText(alice.locator('header'), 'Signed in as Alice', 'roles');
  await visit(alice, '02-roles');

  const section = async (page, rule) => {
    const id = await page.locator(`section.rule:has(input[name="rule"][value="${rule}"])`).getAttribute('id');
    if (!id) fail(`no form for rule ${rule}`);
    return id;
  };
  const self = await section(alice, 'self-reader');
  await alice.keyboard.press('Tab');
  if ((await focused(alice)).cls !== 'skip') fail('roles: the first Tab does not reach the skip link');
  await alice.keyboard.press('Enter');
  const checkButton = (f) => f.tag === 'button' && f.text === 'Check' && f.form === `/api/portal/roles#${self}`;
  const activateButton = (f) => f.tag === 'button' && f.text === 'Activate' && f.form === `/api/portal/roles#${self}`;
  // Focus order within the form: scope, duration, justification, then its buttons.
  const order = [];
  await tabTo(alice, (f) => { if (f.id.startsWith(`${self}-`) && order.at(-1) !== f.id) order.push(f.id); return checkButton(f); }, 'roles: to Check');
  const expectedOrder = ['scope', 'duration', 'justification', 'ticket', 'ticket-number', 'start'].map((f) => `${self}-${f}`);
  if (JSON.stringify(order) !== JSON.stringify(expectedOrder)) fail(`roles: focus order ${order.join(', ')}`);
  await submitted(alice, () => alice.keyboard.press('Space'));
  expectUrl(alice, '/api/portal/roles', 'checked');
  await expectText(alice.locator(`#${self}-check`), 'It would be active at once.', 'checked');
  await visit(alice, '03-roles-checked');
  // Back from the answer, Tab goes on from the rule's section (the page's #fragment).
  const resumed = await tabTo(alice, () => true, 'checked: first Tab', { max: 1 });
  if (resumed.id !== `${self}-scope`) fail(`checked: the first Tab reached ${describe(resumed)}, not the rule's scope`);
  await tabTo(alice, activateButton, 'checked: to Activate', { max: 16 });
  await tabTo(alice, checkButton, 'checked: Shift+Tab back to Check', { back: true, max: 1 });
  await tabTo(alice, activateButton, 'checked: to Activate again', { max: 1 });
  await submitted(alice, () => alice.keyboard.press('Enter'));
  const requested = new URL(alice.url());
  results.selfId = requested.searchParams.get('requested');
  if (requested.pathname !== '/api/portal/access' || !results.selfId) fail(`after Activate at ${alice.url()}`);
  const selfItem = alice.locator(`section.item[aria-labelledby="h-${results.selfId}"]`);
  await expectText(selfItem, `Reader at ${scenario.sub1}`, 'active');
  await expectText(selfItem, 'Status\nActive', 'active');
  await expectText(selfItem, '(in 1 hour)', 'active');
  await visit(alice, '04-access-active');

  // 2. Bad input through the prod-one form: each error next to its field, the input kept.
  await alice.goto(`${base}/api/portal/roles`);
  const prod = await section(alice, 'prod-one');
  const form = alice.locator(`#${prod} form`);
  const fields = ['role', 'scope', 'duration', 'justification', 'ticket', 'start'];
  const badInput = async (values, field, message, shotName) => {
    await alice.fill(`#${prod}-scope`, values.scope);
    await alice.fill(`#${prod}-duration`, values.duration);
    await alice.fill(`#${prod}-justification`, values.justification);
    await submitted(alice, () => form.getByRole('button', { name: 'Activate' }).click());
    const state = `bad ${field}`;
    for (const [name, value] of Object.entries(values)) {
      const kept = await alice.inputValue(`#${prod}-${name}`);
      if (kept !== value) fail(`${state}: ${name} came back as "${kept}", not "${value}"`);
    }
    const input = alice.locator(`#${prod}-${field}`);
    const error = alice.locator(`#${prod}-${field}-error`);
    if ((await error.count()) !== 1) fail(`${state}: no #${prod}-${field}-error`);
    const text = await error.innerText();
    if (text !== `Error: ${message}`) fail(`${state}: error "${text}", not "Error: ${message}"`);
    if ((await input.getAttribute('aria-invalid')) !== 'true') fail(`${state}: the field is not aria-invalid`);
    const described = (await input.getAttribute('aria-describedby')) || '';
    if (!described.split(' ').includes(`${prod}-${field}-error`)) fail(`${state}: aria-describedby "${described}"`);
    const next = await input.evaluate((el) => el.nextElementSibling && el.nextElementSibling.id);
    if (next !== `${prod}-${field}-error`) fail(`${state}: the error is not next to the field (next is #${next})`);
    for (const other of fields.filter((f) => f !== field)) {
      if (await alice.locator(`#${prod}-${other}-error`).count()) fail(`${state}: an error on ${other} too`);
    }
    // The summary names the problem and links to the field.
    const summary = alice.locator(`#${prod}-problems[role="alert"]`);
    await expectText(summary, 'The request was not made.', state);
    if ((await summary.locator(`a[href="#${prod}-${field}"]`).innerText()) !== message) fail(`${state}: the summary does not link to the field`);
    await visit(alice, shotName);
  };
  const justification = 'INC-7: deploy the hotfix';
  await badInput({ scope: scenario.sub2, duration: 'PT9H', justification }, 'duration',
    'duration `PT9H` exceeds the maximum `PT2H` of rule `prod-one`', '05-roles-error-duration');
  await badInput({ scope: scenario.sub1, duration: '1h', justification }, 'scope',
    `this rule does not cover that role at that scope: ask at ${scenario.sub2} or a scope below it`,
    '06-roles-error-scope');
  await badInput({ scope: scenario.sub2, duration: '1h', justification: '' }, 'justification',
    'rule `prod-one` requires a justification', '07-roles-error-justification');
  const untouched = await alice.goto(`${base}/api/portal/access`);
  if (untouched.status() !== 200) fail(`access: ${untouched.status()}`);
  results.itemsAfterBadInput = await alice.locator('section.item').count();

  // 3. The approval path: Alice asks, Bob approves, Alice ends it.
  await alice.goto(`${base}/api/portal/roles`);
  await alice.fill(`#${prod}-justification`, justification);
  await submitted(alice, () => form.getByRole('button', { name: 'Activate' }).click());
  const pendingUrl = new URL(alice.url());
  results.prodId = pendingUrl.searchParams.get('requested');
  if (pendingUrl.pathname !== '/api/portal/access' || !results.prodId) fail(`after the prod-one request at ${alice.url()}`);
  const prodItem = alice.locator(`section.item[aria-labelledby="h-${results.prodId}"]`);
  await expectText(prodItem, `Contributor at ${scenario.sub2}`, 'pending');
  await expectText(prodItem, '1 approval(s), by', 'pending');
  await expectText(prodItem, 'Decided\nnobody yet', 'pending');
  await expectText(alice.locator('main'), 'Waiting for approval', 'pending');
  await visit(alice, '08-access-pending');

  const bob = await newPage(browser);
  await signIn(bob, '/api/portal/approvals', 'Bob (approver)', 'Bob signs in');
  const review = bob.locator(`a[href="/api/approvals/${results.prodId}"]`);
  if ((await review.innerText()).replace(/\s+/g, ' ') !== `Review request ${results.prodId}`) fail('approvals: no Review link');
  const row = bob.locator('tr', { has: review });
  await expectText(row, 'Alice', 'approvals');
  await expectText(row, justification, 'approvals');
  await visit(bob, '09-approvals');
  await submitted(bob, () => review.click());
  expectUrl(bob, `/api/approvals/${results.prodId}`, 'approval page');
  await expectText(bob.locator('main'), 'Access request', 'approval page');
  await visit(bob, '10-approval-page');
  await bob.getByLabel('Your justification (required)').fill(scenario.approval);
  await submitted(bob, () => bob.getByRole('button', { name: 'Approve' }).click());
  await expectText(bob.locator('#outcome'), 'Access is active until', 'approved');
  await visit(bob, '11-approval-approved');
  await bob.goto(`${base}/api/portal/approvals`);
  await expectText(bob.locator('main'), 'Nothing waits for your decision.', 'approvals after');
  await expectText(bob.locator('tr', { has: bob.locator(`a[href="/api/approvals/${results.prodId}"]`) }), 'Active', 'decided');
  await visit(bob, '12-approvals-decided');

  await alice.goto(`${base}/api/portal/access`);
  await expectText(prodItem, 'Status\nActive', 'approved, as Alice');
  await submitted(alice, () => prodItem.getByRole('button', { name: 'Deactivate now' }).click());
  const done = new URL(alice.url());
  if (done.pathname !== '/api/portal/access' || done.searchParams.get('done') !== 'deactivated') fail(`after Deactivate at ${alice.url()}`);
  await expectText(alice.locator('main [role="status"]'), 'Done: access ended.', 'deactivated');
  if (await prodItem.count()) fail('deactivated: still listed as active');
  const recent = alice.locator('table tbody tr');
  if ((await recent.count()) !== 1) fail(`deactivated: ${await recent.count()} rows under Recent`);
  const cells = (await recent.first().locator('td').allInnerTexts()).slice(0, 3);
  if (JSON.stringify(cells) !== JSON.stringify(['Contributor', scenario.sub2, 'Deactivated'])) fail(`Recent: ${cells}`);
  await visit(alice, '13-access-deactivated');

  // 4. Dana: the audit trail, filtered and exported, and the policy.
  const dana = await newPage(browser);
  await signIn(dana, '/api/portal/audit', 'Dana (admin and auditor)', 'Dana signs in');
  await visit(dana, '14-audit');
  await dana.getByLabel('Action').selectOption('Approved');
  await submitted(dana, () => dana.getByRole('button', { name: 'Search' }).click());
  expectUrl(dana, '/api/portal/audit?principalId=&roleDefinitionId=&scope=&action=Approved&since=&until=', 'audit filtered');
  const events = dana.locator('main table tbody tr');
  if ((await events.count()) !== 1) fail(`audit: ${await events.count()} Approved events`);
  const event = await events.first().locator('td').allInnerTexts();
  if (!event[1].startsWith('Approved') || event[3] !== scenario.bob || !event[6].includes(scenario.approval)) fail(`audit row: ${event}`);
  await visit(dana, '15-audit-approved');
  const [download] = await Promise.all([dana.waitForEvent('download'), dana.getByRole('link', { name: 'CSV' }).click()]);
  if (download.suggestedFilename() !== 'elevate-audit.csv') fail(`export named ${download.suggestedFilename()}`);
  const csv = readFileSync(await download.path(), 'utf8').split('\r\n');
  results.csv = csv.slice(0, 2);
  results.csvLines = csv.filter((l) => l).length;
  await submitted(dana, () => dana.getByRole('navigation', { name: 'Portal' }).getByRole('link', { name: 'Policy' }).click());
  expectUrl(dana, '/api/portal/policy', 'policy');
  await expectText(dana.locator('main'), 'prod-one', 'policy');
  await visit(dana, '16-policy');

  // 5. Bob: the access review of prod-one; a blank justification comes back next to its field.
  await bob.goto(`${base}/api/portal/reviews`);
  await expectText(bob.locator('main'), 'quarterly-20261125', 'reviews');
  await visit(bob, '17-reviews');
  await submitted(bob, () => bob.getByRole('link', { name: 'quarterly-20261125' }).click());
  expectUrl(bob, '/api/portal/reviews/quarterly-20261125', 'review campaign');
  await expectText(bob.locator('main'), 'under rule prod-one', 'review campaign');
  await visit(bob, '18-review-campaign');
  await bob.getByLabel('Remove').check();
  await bob.getByLabel('Justification').fill('   ');
  await submitted(bob, () => bob.getByRole('button', { name: 'Record decision' }).click());
  if ((await bob.getByLabel('Justification').getAttribute('aria-invalid')) !== 'true') fail('review error: the field is not marked invalid');
  if (!(await bob.getByLabel('Remove').isChecked())) fail('review error: the decision was not kept');
  await visit(bob, '19-review-error');
  await bob.getByLabel('Justification').fill('Not needed since the migration');
  await submitted(bob, () => bob.getByRole('button', { name: 'Record decision' }).click());
  expectUrl(bob, '/api/portal/reviews/quarterly-20261125?done=0', 'review decided');
  await expectText(bob.locator('main [role="status"]'), 'Your decision on item 0 is recorded.', 'review decided');
  await visit(bob, '20-review-decided');
} finally {
  await browser.close();
}
writeFileSync(scenario.results, JSON.stringify(results, null, 2));
if (cspFailures.length) fail(`the pages broke their CSP or threw:\n${cspFailures.join('\n')}`);
if (axeFailures.length) fail(`axe-core found ${axeFailures.length} WCAG A/AA violation(s):\n${axeFailures.join('\n')}`);
console.log(`portal: all states passed; axe scanned ${results.scanned.length} pages with no violations`);
