// Loads a page in headless Chromium over the DevTools protocol (through --remote-debugging-pipe, so no
// WebSocket library and no npm download), at a desktop and a phone viewport, and fails on any console
// error or warning, CSP violation, uncaught exception, failed or 4xx/5xx sub-request, a stylesheet that
// did not apply, a missing landmark, or horizontal overflow on the phone. Saves full-page screenshots.
// A positive control then injects an inline <style>: the page's CSP must refuse it, and this script
// must see that refusal, or the detector itself is broken and the run fails.
//
//   node scripts/browser-test.mjs <chromium> <url> <out-dir>
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const [, , chrome, url, outDir] = process.argv;
if (!chrome || !url || !outDir) {
  console.error('usage: browser-test.mjs <chromium> <url> <out-dir>');
  process.exit(2);
}
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'palisade-chromium-'));
const proc = spawn(chrome, [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-default-apps',
  '--disable-extensions', '--remote-debugging-pipe', `--user-data-dir=${profile}`, 'about:blank',
], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
let chromeStderr = '';
proc.stdio[2].on('data', (d) => { chromeStderr += d.toString(); });

const toChrome = proc.stdio[3];
const fromChrome = proc.stdio[4];
let nextId = 0;
const pending = new Map();
const waiters = [];
const problems = [];
let controlSeen = false;

function send(method, params = {}, sessionId) {
  const msg = { id: ++nextId, method, params };
  if (sessionId) msg.sessionId = sessionId;
  toChrome.write(JSON.stringify(msg) + '\0');
  return new Promise((resolve, reject) => pending.set(msg.id, { resolve, reject, method }));
}

function waitFor(method, timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${method}`)), timeoutMs);
    waiters.push({ method, resolve: (p) => { clearTimeout(timer); resolve(p); } });
  });
}

function isCsp(text) { return /Content Security Policy|Refused to/i.test(text); }

function onEvent(m) {
  const p = m.params || {};
  const note = (kind, text) => {
    if (controlPhase) { if (isCsp(text)) controlSeen = true; return; }
    problems.push(`${kind}: ${text}`);
  };
  switch (m.method) {
    case 'Runtime.consoleAPICalled':
      if (['error', 'warning', 'assert'].includes(p.type)) {
        note(`console.${p.type}`, (p.args || []).map((a) => a.value ?? a.description).join(' '));
      }
      break;
    case 'Runtime.exceptionThrown':
      note('exception', p.exceptionDetails?.exception?.description || p.exceptionDetails?.text);
      break;
    case 'Log.entryAdded':
      if (['error', 'warning'].includes(p.entry.level)) note(`log.${p.entry.source}.${p.entry.level}`, `${p.entry.text} ${p.entry.url || ''}`);
      break;
    case 'Network.loadingFailed':
      if (!p.canceled) note('request failed', `${p.errorText} ${p.blockedReason || ''}`);
      break;
    case 'Network.responseReceived':
      if (p.response.status >= 400) note('http', `${p.response.status} ${p.response.url}`);
      break;
    default:
  }
  for (let i = waiters.length - 1; i >= 0; i--) {
    if (waiters[i].method === m.method) { waiters[i].resolve(p); waiters.splice(i, 1); }
  }
}

let controlPhase = false;
let buffered = Buffer.alloc(0);
fromChrome.on('data', (chunk) => {
  buffered = Buffer.concat([buffered, chunk]);
  let i;
  while ((i = buffered.indexOf(0)) >= 0) {
    const m = JSON.parse(buffered.subarray(0, i).toString('utf8'));
    buffered = buffered.subarray(i + 1);
    if (m.id && pending.has(m.id)) {
      const { resolve, reject, method } = pending.get(m.id);
      pending.delete(m.id);
      if (m.error) reject(new Error(`${method}: ${m.error.message}`)); else resolve(m.result);
    } else if (m.method) {
      onEvent(m);
    }
  }
});

async function main() {
  const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  const s = (method, params) => send(method, params, sessionId);
  for (const domain of ['Page', 'Runtime', 'Log', 'Network']) await s(`${domain}.enable`);
  await s('Network.setCacheDisabled', { cacheDisabled: true });

  const viewports = [
    { name: 'desktop', width: 1280, height: 900, deviceScaleFactor: 1, mobile: false },
    { name: 'mobile', width: 390, height: 844, deviceScaleFactor: 2, mobile: true },
  ];
  for (const vp of viewports) {
    await s('Emulation.setDeviceMetricsOverride', vp);
    const loaded = waitFor('Page.loadEventFired');
    const nav = await s('Page.navigate', { url });
    if (nav.errorText) throw new Error(`navigation failed: ${nav.errorText}`);
    await loaded;
    await new Promise((r) => setTimeout(r, 300));
    const { result } = await s('Runtime.evaluate', {
      returnByValue: true,
      expression: `JSON.stringify({
        masthead: getComputedStyle(document.querySelector('.masthead')).backgroundColor,
        landmarks: ['header', 'nav', 'main', 'footer'].filter((t) => !document.querySelector(t)),
        h1: document.querySelectorAll('h1').length,
        claims: document.querySelectorAll('.claim').length,
        overflow: document.documentElement.scrollWidth - window.innerWidth,
        lang: document.documentElement.lang,
      })`,
    });
    const info = JSON.parse(result.value);
    if (info.masthead !== 'rgb(16, 33, 63)') problems.push(`${vp.name}: the stylesheet did not apply (masthead ${info.masthead})`);
    if (info.landmarks.length) problems.push(`${vp.name}: missing landmarks ${info.landmarks}`);
    if (info.h1 !== 1) problems.push(`${vp.name}: ${info.h1} h1 elements`);
    if (info.claims < 10) problems.push(`${vp.name}: only ${info.claims} claims rendered`);
    if (info.overflow > 0) problems.push(`${vp.name}: horizontal overflow of ${info.overflow}px`);
    if (!info.lang) problems.push(`${vp.name}: no lang attribute`);
    const { cssContentSize } = await s('Page.getLayoutMetrics');
    const shot = await s('Page.captureScreenshot', {
      format: 'png',
      captureBeyondViewport: true,
      clip: { x: 0, y: 0, width: vp.width, height: Math.ceil(cssContentSize.height), scale: 1 },
    });
    const file = path.join(outDir, vp.name === 'desktop' ? 'trust.png' : 'trust-mobile.png');
    fs.writeFileSync(file, Buffer.from(shot.data, 'base64'));
    console.log(`[browser-test] ${vp.name}: ${info.claims} claims rendered, screenshot ${file}`);
  }

  // Positive control: an inline style must be refused by the page's CSP, and reported.
  controlPhase = true;
  await s('Runtime.evaluate', { expression: "document.head.insertAdjacentHTML('beforeend', '<style>body{outline:1px solid red}</style>')" });
  await new Promise((r) => setTimeout(r, 500));
  controlPhase = false;
  if (!controlSeen) problems.push('positive control: an injected inline style raised no CSP report, so the detector cannot be trusted');
}

const deadline = setTimeout(() => { problems.push('timed out after 60 s'); finish(1); }, 60000);
let finishing = false;
async function finish(code) {
  if (finishing) return;
  finishing = true;
  clearTimeout(deadline);
  // Close the browser properly, then make sure it is gone, then remove its profile (best effort).
  const exited = new Promise((r) => { if (proc.exitCode !== null) r(); else proc.once('exit', r); });
  send('Browser.close').catch(() => {});
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  try { proc.kill('SIGKILL'); } catch { /* already gone */ }
  try { fs.rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 }); } catch { /* temp dir */ }
  if (problems.length) {
    console.error('[browser-test] FAILED:\n  ' + problems.join('\n  '));
    if (code === 0) code = 1;
  } else if (code === 0) {
    console.log('[browser-test] ok: no console errors, no CSP violations, stylesheet applied, positive control seen');
  }
  process.exit(code);
}
proc.on('exit', (code) => {
  if (pending.size && !finishing) { problems.push(`chromium exited (${code}) early: ${chromeStderr.slice(-2000)}`); finish(1); }
});
main().then(() => finish(0), (e) => { problems.push(String(e && e.stack || e)); finish(1); });
