// The approver's path in a real browser, driven by tests/browser.rs:
//   1. the Teams card Elevate posted is valid against the Adaptive Card schema, and renders in
//      Chromium with Microsoft's `adaptivecards` renderer;
//   2. the approver clicks its "Review and decide" action, signs in (dev identity), reads the
//      request, gives a justification and approves;
//   3. every other page state is visited: requester, not an approver, already decided, timed out.
// A screenshot of each state is kept in the artefact directory.
//
//   node tests/js/browser.mjs <scenario.json>
// The scenario: { card, artifacts, tokens: {approver, requester, outsider, otherApprover},
//                 timedOutUrl, justification }.

import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const Ajv = require('ajv');
const { adaptiveCardSchema } = require('adaptivecards-designer/lib/adaptive-card-schema.js');

const scenario = JSON.parse(readFileSync(process.argv[2], 'utf8'));
mkdirSync(scenario.artifacts, { recursive: true });
const shot = (page, name) => page.screenshot({ path: path.join(scenario.artifacts, `${name}.png`), fullPage: true });
const fail = (message) => {
  console.error(`FAIL: ${message}`);
  process.exit(1);
};
// WCAG 2 contrast of every element that holds text against its effective background: >= 4.5.
const checkContrast = async (page, state) => {
  const low = await page.evaluate(() => {
    const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = rgb(getComputedStyle(e).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    const found = [];
    for (const el of document.querySelectorAll('body *')) {
      const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
      if (!own) continue;
      const [a, b] = [lum(rgb(getComputedStyle(el).color).slice(0, 3)), lum(background(el))];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      if (ratio < 4.5) found.push(`${el.tagName} "${el.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
    }
    return found;
  });
  if (low.length) fail(`${state}: contrast below 4.5:1: ${low.join('; ')}`);
};
// The sign-in page lives at the very URL it returns to: wait for its form to be gone.
const signedIn = async (page, url) => {
  await page.waitForFunction(() => !document.querySelector('#token'), null, { timeout: 15000 });
  if (page.url() !== url) fail(`after sign-in at ${page.url()}, not ${url}`);
};
const expectText = async (page, text, state) => {
  const body = await page.locator('body').innerText();
  if (!body.includes(text)) fail(`${state}: expected "${text}" in:\n${body}`);
};

// 1. The card against the official schema (draft-06).
const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
ajv.addMetaSchema(require('ajv/dist/refs/json-schema-draft-06.json'));
// The published schema names itself with draft-04's `id`; draft-06 (which it declares) says `$id`.
const { id: schemaId, ...schemaBody } = adaptiveCardSchema;
const validate = ajv.compile({ $id: schemaId, ...schemaBody });
const card = scenario.card;
if (!validate(card)) fail(`the card does not match the Adaptive Card schema: ${JSON.stringify(validate.errors, null, 1)}`);
// What a Workflows webhook accepts: 1.4, and only Action.OpenUrl (no Action.Submit).
if (card.version !== '1.4') fail(`card version ${card.version}`);
for (const a of card.actions) if (a.type !== 'Action.OpenUrl') fail(`action type ${a.type}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
    '--no-first-run', '--disable-component-update', '--disable-sync'],
});
const results = {};
try {
  // 2a. Render the card as Teams would, and follow its first action.
  const cardPage = await (await browser.newContext()).newPage();
  await cardPage.setContent('<!doctype html><html><body style="font-family:Segoe UI,sans-serif;width:480px;padding:12px"><div id="card"></div></body></html>');
  await cardPage.addScriptTag({ path: require.resolve('adaptivecards/dist/adaptivecards.min.js') });
  const rendered = await cardPage.evaluate((json) => {
    const ac = new AdaptiveCards.AdaptiveCard();
    const errors = [];
    const context = new AdaptiveCards.SerializationContext();
    ac.parse(json, context);
    for (let i = 0; i < context.eventCount; i++) errors.push(context.getEventAt(i).message);
    for (const e of ac.validateProperties().validationEvents) errors.push(e.message);
    window.openedUrl = null;
    ac.onExecuteAction = (action) => { window.openedUrl = action.url; };
    const element = ac.render();
    document.getElementById('card').appendChild(element);
    return { errors, text: element.innerText };
  }, card);
  if (rendered.errors.length) fail(`the renderer reports: ${rendered.errors.join('; ')}`);
  if (!rendered.text.includes('Approval needed')) fail(`rendered card text: ${rendered.text}`);
  await shot(cardPage, '1-teams-card');
  // The renderer's action buttons are buttons with the action's title as text.
  await cardPage.locator('button', { hasText: 'Review and decide' }).click();
  const link = await cardPage.evaluate(() => window.openedUrl);
  if (!link) fail('the card action opened no URL');
  results.link = link;

  // 2b. The approver follows the link: sign-in first (dev identity), then the request.
  const approver = await (await browser.newContext()).newPage();
  const first = await approver.goto(link);
  if (first.status() !== 401) fail(`unauthenticated page status ${first.status()}`);
  await shot(approver, '2-sign-in');
  await approver.getByLabel('Dev token').fill(scenario.tokens.approver);
  await approver.getByRole('button', { name: 'Sign in' }).click();
  await signedIn(approver, link);
  await expectText(approver, 'Access request', 'pending');
  await expectText(approver, 'Decide by', 'pending');
  await expectText(approver, 'min left', 'pending');
  await expectText(approver, scenario.requesterId, 'pending');
  await checkContrast(approver, 'pending');
  await shot(approver, '3-pending');
  // 3. The other states; the requester while it is still pending.
  const visit = async (token, url, expected, name) => {
    const page = await (await browser.newContext()).newPage();
    await page.goto(url);
    await page.getByLabel('Dev token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await signedIn(page, url);
    await expectText(page, expected, name);
    if (await page.locator('form[action^="/api/approvals/"]').count()) fail(`${name}: a decision form is offered`);
    await shot(page, name);
  };
  await visit(scenario.tokens.requester, link, 'You requested this access', '5-requester');
  await expectText(approver, 'Alice Example', 'pending');

  // Keyboard only: the justification is reachable and labelled, then Approve.
  const justification = approver.getByLabel('Your justification (required)');
  await justification.focus();
  await approver.keyboard.type(scenario.justification);
  await approver.keyboard.press('Tab');
  const focused = await approver.evaluate(() => document.activeElement && document.activeElement.textContent);
  if (focused !== 'Approve') fail(`Tab from the justification reached "${focused}", not Approve`);
  // The form posts, and the answer redirects back to the same URL: wait for the outcome itself.
  await approver.keyboard.press('Enter');
  await approver.locator('#outcome').waitFor({ timeout: 15000 });
  await expectText(approver, 'Access is active until', 'approved');
  await checkContrast(approver, 'approved');
  await shot(approver, '4-approved');

  await visit(scenario.tokens.outsider, link, 'You are not an approver', '6-not-an-approver');
  await visit(scenario.tokens.otherApprover, link, 'Approved by', '7-already-decided');
  await visit(scenario.tokens.approver, scenario.timedOutUrl, 'Timed out at', '8-timed-out');
  results.ok = true;
} finally {
  await browser.close();
}
writeFileSync(path.join(scenario.artifacts, 'results.json'), JSON.stringify(results, null, 2));
console.log('browser: all page states passed');
