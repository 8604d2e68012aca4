// Browser test of the web panels, run by `make test` (target `browser`).
//
// Starts the built ugc-server (UGC_SERVER_BIN, else
// $CARGO_TARGET_DIR/debug/ugc-server), drives headless Chromium
// (/usr/bin/chromium, through playwright-core; no browser download) through
// the creator panel, publishes with ffmpeg to the key the panel shows (and
// from the panel itself over WHIP with Chromium's fake camera), and
// checks the viewer page plays (video currentTime advances; over HLS, and
// over WebRTC with "Low latency"), that a private
// stream without a token shows the private message, that a token link from
// the panel plays, and that a missing player asset is explained.
// Exits non-zero on the first failure.

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync, createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, homedir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const WEB = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ADMIN = 'browser-test-admin-token-0123456789';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const targetDir = process.env.CARGO_TARGET_DIR || join(homedir(), '.cache/ugc/target');
const SERVER_BIN = process.env.UGC_SERVER_BIN || join(targetDir, 'debug/ugc-server');
const t0 = Date.now();

const children = [];
const tmp = mkdtempSync(join(tmpdir(), 'ugc-browser-'));
let serverLog = join(tmp, 'server.log');

function step(msg) {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${msg}`);
}

function cleanup() {
  for (const c of children) {
    if (c.exitCode === null) c.kill('SIGKILL');
  }
  rmSync(tmp, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

// Ports for the servers under test come from below the kernel's ephemeral
// range (from 32768): one picked by listening on port 0 and released can be
// taken by any outgoing connection (ffmpeg's, the browser's) before the
// server binds it. A counter spread by the process id, each port checked.
let nextPort = (process.pid * 7919) % 20000;
function portFree(p) {
  return new Promise((ok) => {
    const s = createServer();
    s.once('error', () => ok(false));
    s.listen(p, '0.0.0.0', () => s.close(() => ok(true)));
  });
}

/** The first of `n` consecutive free ports (TCP) below the ephemeral range. */
async function freePorts(n) {
  for (let i = 0; i < 20000; i++) {
    const first = 10000 + (nextPort % 20000);
    nextPort += n;
    if (first + n > 30000) continue;
    let p = first;
    while (p < first + n && await portFree(p)) p++;
    if (p === first + n) return first;
  }
  throw new Error(`no ${n} free ports`);
}

const freePort = () => freePorts(1);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, timeoutMs, f) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      last = await f();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(200);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`);
}

function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

async function startServer() {
  if (!existsSync(SERVER_BIN)) {
    throw new Error(`${SERVER_BIN} not found: run cargo build -p ugc-server (or set UGC_SERVER_BIN)`);
  }
  if (!existsSync(join(WEB, 'dist/hls.min.js'))) {
    throw new Error('web/dist/hls.min.js missing: run scripts/build-web.sh');
  }
  const http = await freePort();
  const rtmp = await freePort();
  const log = createWriteStream(serverLog);
  const child = spawn(
    SERVER_BIN,
    ['--data', join(tmp, 'data'), '--http', `127.0.0.1:${http}`, '--rtmp', `127.0.0.1:${rtmp}`,
     '--public-host', '127.0.0.1', '--segment-ms', '1000', '--web', WEB,
     '--whip-udp', '127.0.0.1:0', '--publisher-grace-s', '3', '--qoe-interval-s', '5'],
    { cwd: tmp, env: { ...process.env, UGC_ADMIN_TOKEN: ADMIN, UGC_LOG: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  const base = `http://127.0.0.1:${http}`;
  await until('ugc-server to answer', 15000, async () => {
    if (child.exitCode !== null) throw new Error(`ugc-server exited with ${child.exitCode}`);
    const r = await fetch(`${base}/api/v1/openapi.json`);
    return r.ok;
  });
  return { base, rtmp };
}

function publish(url, seconds = 0) {
  const child = spawn('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-nostdin', '-re',
    '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p', '-g', '25',
    '-c:a', 'aac', '-b:a', '64k', ...(seconds ? ['-t', String(seconds)] : []), '-f', 'flv', url,
  ], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
}

/** Waits until the page's <video> has played `seconds` further than it was. */
async function videoAdvances(page, selector, seconds, timeoutMs) {
  const first = await until(`${selector} to start playing`, timeoutMs, async () => {
    const t = await page.$eval(selector, (v) => v.currentTime);
    return t > 0.2 ? t : 0;
  });
  const later = await until(`${selector} currentTime to advance past ${first + seconds}`, timeoutMs,
    async () => {
      const t = await page.$eval(selector, (v) => v.currentTime);
      return t >= first + seconds ? t : 0;
    });
  return [first, later];
}

async function overlay(page) {
  return page.$eval('#msg', (m) => ({
    hidden: m.hidden,
    state: m.dataset.state || '',
    text: m.textContent.replace(/\s+/g, ' ').trim(),
  }));
}

/** Saves screenshots of the pages into $UGC_SCREENSHOTS (for reviewing the look). */
async function screenshots(context, base, card) {
  const dir = process.env.UGC_SCREENSHOTS;
  const p = await context.newPage();
  await p.setViewportSize({ width: 1200, height: 1000 });
  await p.goto(`${base}/`);
  await p.screenshot({ path: join(dir, 'signin.png') });
  await p.fill('#token', ADMIN);
  await p.click('#signin-form button[type=submit]');
  await p.waitForSelector(`${card} .s-live[data-live=true]`, { timeout: 15000 });
  await p.click(`${card} .s-preview`);
  await p.click(`${card} .failover summary`);
  await sleep(4000);
  await p.screenshot({ path: join(dir, 'panel.png'), fullPage: true });
  await p.goto(`${base}/watch/browser`);
  await p.waitForSelector('#msg[data-state=forbidden]');
  await p.screenshot({ path: join(dir, 'watch-private.png') });
  await p.emulateMedia({ colorScheme: 'dark' });
  await p.goto(`${base}/`);
  await p.waitForSelector(`${card} .s-live[data-live=true]`, { timeout: 15000 });
  await p.screenshot({ path: join(dir, 'panel-dark.png'), fullPage: true });
  await p.close();
  step(`screenshots in ${dir}`);
}

async function main() {
  const { base, rtmp } = await startServer();
  step(`ugc-server up at ${base}`);

  // Non-panel routes still answer as before.
  assert((await fetch(`${base}/api/v1/streams`)).status === 401, 'API without token is 401');
  const unknown = (await fetch(`${base}/live/nope/index.m3u8`)).status;
  assert(unknown === 403 || unknown === 404, `origin answers ${unknown} for an unknown stream`);
  assert((await fetch(`${base}/watch/..%2Fetc`)).status === 404, 'bad stream names are 404');

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
      // "Go live here": the fake camera and microphone, no prompt.
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection'],
  });
  const pageErrors = [];
  const context = await browser.newContext();
  context.on('page', (p) => p.on('pageerror', (e) => pageErrors.push(`${p.url()}: ${e.message}`)));
  const panel = await context.newPage();
  try {
    // ---- creator panel: sign in --------------------------------------------
    await panel.goto(`${base}/`);
    await panel.waitForSelector('#signin:not([hidden])');
    await panel.fill('#token', 'wrong-token');
    await panel.click('#signin-form button[type=submit]');
    await panel.waitForFunction(() => document.getElementById('signin-error').textContent.includes('not accepted'));
    await panel.fill('#token', ADMIN);
    await panel.click('#signin-form button[type=submit]');
    await panel.waitForSelector('#app:not([hidden])');
    step('signed in with the admin token');

    // ---- create a stream through the UI --------------------------------------
    await panel.fill('#new-name', 'browser');
    await panel.fill('#new-title', 'Browser test');
    await panel.click('#create-form button[type=submit]');
    const card = '[data-stream=browser]';
    await panel.waitForSelector(card);
    const key = await panel.$eval(`${card} .s-key`, (i) => i.value);
    const rtmpUrl = await panel.$eval(`${card} .s-rtmp`, (i) => i.value);
    const obsServer = await panel.$eval(`${card} .s-obs-server`, (i) => i.value);
    assert(/^[A-Za-z0-9_-]{16,}$/.test(key), `a key is shown (${key})`);
    assert(obsServer === `rtmp://127.0.0.1:${rtmp}/live`, `OBS server ${obsServer}`);
    assert(rtmpUrl === `${obsServer}/${key}`, `RTMP URL ${rtmpUrl}`);
    const srt = await panel.$eval(`${card} .s-srt`, (i) => i.value);
    const whip = await panel.$eval(`${card} .s-whip`, (i) => i.value);
    assert(srt.startsWith('srt://') && srt.includes(key), `SRT URL ${srt}`);
    assert(whip.endsWith('/whip/browser'), `WHIP URL ${whip}`);
    // A duplicate name is refused with a clear message.
    await panel.fill('#new-name', 'browser');
    await panel.click('#create-form button[type=submit]');
    await panel.waitForFunction(() => document.getElementById('create-error').textContent.includes('already exists'));
    step(`created "browser" in the panel; key ${key.slice(0, 4)}…`);

    // ---- publish to the key the panel shows -----------------------------------
    publish(rtmpUrl);
    await panel.waitForSelector(`${card} .s-live[data-live=true]`, { timeout: 20000 });
    step('panel shows the stream live');
    await panel.click(`${card} .s-preview`);

    // ---- viewer page -----------------------------------------------------------
    const viewer = await context.newPage();
    await viewer.goto(`${base}/watch/browser`);
    const [a, b] = await videoAdvances(viewer, '#video', 2, 30000);
    assert((await overlay(viewer)).hidden, 'no overlay while playing');
    assert((await viewer.textContent('#live')) === 'Live', 'live badge on the watch page');
    step(`watch page plays: currentTime ${a.toFixed(2)} -> ${b.toFixed(2)} s`);
    const [pa, pb] = await videoAdvances(panel, `${card} .s-video`, 1, 20000);
    step(`panel preview plays: currentTime ${pa.toFixed(2)} -> ${pb.toFixed(2)} s`);
    // The watch page and the preview are HLS viewers the card counts.
    await panel.waitForFunction(
      (sel) => /· [1-9]\d* watching$/.test(document.querySelector(sel).textContent),
      `${card} .s-live`,
      { timeout: 20000 },
    );
    step(`panel counts the viewers: "${await panel.textContent(`${card} .s-live`)}"`);

    // ---- the players' QoE beacons (ugc_core::qoe) ---------------------------
    const metric = async (name, stream) => {
      const text = await (await fetch(`${base}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${name}{stream="${stream}"} `));
      return line ? Number(line.split(' ').pop()) : 0;
    };
    await until('QoE beacons with the startup time of both players', 20000, async () =>
      (await metric('ugc_qoe_startup_seconds_count', 'live/browser')) >= 2);
    const startup = await metric('ugc_qoe_startup_seconds_sum', 'live/browser');
    assert(startup > 0 && startup < 40, `startup seconds of two players: ${startup}`);
    // Each player is one viewer, counted from its playlist requests and its
    // beacons alike (its beacons name the origin's vs id); leaving the page
    // sends a last beacon that ends it at once, not 30 s later.
    const watching = await until('both players counted', 20000, async () => {
      const n = await metric('ugc_stream_viewers', 'live/browser');
      return n >= 2 ? n : 0;
    });
    // The players post every 5 s, as the multivariant playlist tells them
    // (--qoe-interval-s 5; without it they would wait 20 s).
    const beacons = await metric('ugc_qoe_beacons_total', 'live/browser');
    const ticked = Date.now();
    await until('the players\' periodic beacons every 5 s', 12000, async () =>
      (await metric('ugc_qoe_beacons_total', 'live/browser')) >= beacons + 2);
    step(`periodic beacons: +2 in ${Date.now() - ticked} ms (interval from the playlist's session data)`);
    await viewer.goto('about:blank');
    const left = Date.now();
    await until('the viewer who left to be counted no more', 8000, async () =>
      (await metric('ugc_stream_viewers', 'live/browser')) === watching - 1);
    step(`QoE beacons: startup of ${await metric('ugc_qoe_startup_seconds_count', 'live/browser')} players `
      + `(${startup.toFixed(2)} s together); viewers ${watching} -> ${watching - 1} `
      + `${Date.now() - left} ms after one left the page`);
    await viewer.close();

    // ---- the card's chart of the last 15 minutes (uPlot) ----------------------
    // Drawn with data: the canvas holds the ingest line's colour (#2a7de1),
    // which an empty chart does not.
    await panel.click(`${card} .health summary`);
    await until('the chart with two samples', 30000, async () =>
      Number(await panel.$eval(`${card} .s-chart`, (b) => b.dataset.samples || 0)) >= 2);
    const inked = () => panel.$eval(`${card} .s-chart canvas`, (cv) => {
      const { data } = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height);
      let n = 0;
      for (let i = 0; i < data.length; i += 4) {
        const near = Math.abs(data[i] - 0x2a) < 40 && Math.abs(data[i + 1] - 0x7d) < 40
          && Math.abs(data[i + 2] - 0xe1) < 40 && data[i + 3] > 200;
        if (near) n += 1;
      }
      return n;
    });
    const line = await until('the ingest line drawn', 10000, async () => ((await inked()) > 50 ? inked() : 0));
    const health = await panel.textContent(`${card} .s-health`);
    assert(/^Now: main, (\d+ kbit|\d+\.\d Mbit)\/s · \d+ watching\. Last /.test(health), `health line: ${health}`);
    if (process.env.UGC_SCREENSHOTS) {
      await panel.locator(`${card} .health`).screenshot({ path: join(process.env.UGC_SCREENSHOTS, 'chart.png') });
    }
    step(`the card charts its last minutes: ${line} pixels of the ingest line; "${health}"`);
    await panel.click(`${card} .health summary`);

    // ---- go live from the browser (WHIP, the fake camera) ---------------------
    await panel.fill('#new-name', 'webcam');
    await panel.click('#create-form button[type=submit]');
    const cam = '[data-stream=webcam]';
    await panel.waitForSelector(cam);
    await panel.click(`${cam} .s-golive`);
    await panel.click(`${cam} .s-golive-start`);
    await panel.waitForFunction(
      (sel) => document.querySelector(sel).textContent.includes('Live from this browser'),
      `${cam} .s-golive-msg`,
      { timeout: 20000 },
    );
    await panel.waitForSelector(`${cam} .s-live[data-live=true]`, { timeout: 20000 });
    step('"Go live here" publishes the camera over WHIP; the card shows it live');
    const camViewer = await context.newPage();
    await camViewer.goto(`${base}/watch/webcam`);
    const [ca, cb] = await videoAdvances(camViewer, '#video', 2, 30000);
    step(`its watch page plays (H.264, the Opus as AAC): currentTime ${ca.toFixed(2)} -> ${cb.toFixed(2)} s`);
    // "Low latency": the same page over WebRTC (WHEP), and back to HLS.
    await camViewer.click('#webrtc');
    await until('the page in WebRTC mode', 5000, async () =>
      (await camViewer.$eval('#video', (v) => v.dataset.mode)) === 'webrtc' && camViewer.url().includes('mode=webrtc'));
    const [wa, wb] = await videoAdvances(camViewer, '#video', 2, 30000);
    assert(await camViewer.$eval('#video', (v) => v.srcObject !== null), 'WebRTC plays a MediaStream');
    assert((await camViewer.textContent('#live')) === 'Live', 'live badge in WebRTC mode');
    step(`"Low latency" plays it over WebRTC (WHEP): currentTime ${wa.toFixed(2)} -> ${wb.toFixed(2)} s`);
    await camViewer.reload();
    assert(await camViewer.isChecked('#webrtc'), 'the mode survives a reload (mode=webrtc)');
    await camViewer.click('#webrtc');
    const [ha, hb] = await videoAdvances(camViewer, '#video', 1, 30000);
    assert((await camViewer.$eval('#video', (v) => v.dataset.mode)) === 'hls', 'back to HLS');
    step(`and back to HLS: currentTime ${ha.toFixed(2)} -> ${hb.toFixed(2)} s`);
    await camViewer.close();
    await panel.click(`${cam} .s-golive-stop`);
    await panel.waitForFunction(
      (sel) => document.querySelector(sel).textContent === 'Stopped.',
      `${cam} .s-golive-msg`,
      { timeout: 10000 },
    );
    await panel.waitForSelector(`${cam} .s-live[data-live=false]`, { timeout: 30000 });
    step('Stop ends the publish (DELETE of the session)');

    // ---- failover settings: saved through the API, back to the server's --
    const stream = async () =>
      (await fetch(`${base}/api/v1/streams/browser`, { headers: { Authorization: `Bearer ${ADMIN}` } })).json();
    await panel.click(`${card} .failover summary`);
    await panel.fill(`${card} .s-fallback`, 'off');
    await panel.fill(`${card} .s-timeout`, '1500');
    await panel.click(`${card} .s-failover-save`);
    await until('the failover settings saved', 10000, async () => {
      const s = await stream();
      return s.fallback === 'off' && s.source_timeout_ms === 1500;
    });
    await panel.fill(`${card} .s-timeout`, '100');
    await panel.click(`${card} .s-failover-save`);
    await panel.waitForFunction(() => /Could not save/.test(document.body.textContent), null, { timeout: 10000 });
    assert((await stream()).source_timeout_ms === 1500, 'a refused timeout leaves the setting');
    await panel.fill(`${card} .s-fallback`, '');
    await panel.fill(`${card} .s-timeout`, '');
    await panel.click(`${card} .s-failover-save`);
    await until("the server's failover settings again", 10000, async () => {
      const s = await stream();
      return s.fallback === null && s.source_timeout_ms === 0;
    });
    step('panel saves the stand-in video and the source timeout, refuses 100 ms');

    // ---- private: no token -> clear message; token link from the panel plays --
    await panel.check(`${card} .s-private-toggle`);
    await panel.waitForSelector(`${card} .s-private:not([hidden])`);
    await panel.waitForSelector(`${card} .s-link:not([hidden])`);
    const noToken = await context.newPage();
    await noToken.goto(`${base}/watch/browser`);
    await noToken.waitForSelector('#msg[data-state=forbidden]', { timeout: 15000 });
    const o = await overlay(noToken);
    assert(!o.hidden && /private/i.test(o.text) && /token/i.test(o.text), `private message: ${o.text}`);
    step(`private stream without token: "${o.text}"`);
    await noToken.goto(`${base}/watch/browser?mode=webrtc`);
    await noToken.waitForSelector('#msg[data-state=forbidden]', { timeout: 15000 });
    assert(/private/i.test((await overlay(noToken)).text), 'private message over WebRTC too');
    step('the same over WebRTC (WHEP 403)');
    await noToken.goto(`${base}/watch/browser?token=v1.tampered.token`);
    await noToken.waitForSelector('#msg[data-state=forbidden]', { timeout: 15000 });
    const bad = await overlay(noToken);
    assert(/refused/i.test(bad.text), `refused-token message: ${bad.text}`);
    step(`private stream with a bad token: "${bad.text}"`);
    await noToken.close();

    await panel.click(`${card} .s-link`);
    const link = await until('a watch link with a token', 10000, () =>
      panel.$eval(`${card} .s-watch`, (i) => (i.value.includes('token=') ? i.value : '')));
    assert(link.startsWith(`${base}/watch/browser?token=`), `watch link ${link}`);
    const withToken = await context.newPage();
    await withToken.goto(link);
    const [c, d] = await videoAdvances(withToken, '#video', 2, 30000);
    step(`private stream with the panel's token link plays: ${c.toFixed(2)} -> ${d.toFixed(2)} s`);
    await withToken.close();

    // ---- a missing player asset is explained -----------------------------------
    // Without hls.js and without native HLS (forced off here), the page says so.
    const noPlayer = await context.newPage();
    await noPlayer.route('**/vendor/hls.min.js', (r) => r.fulfill({ status: 404, body: 'not found' }));
    await noPlayer.addInitScript(() => {
      HTMLMediaElement.prototype.canPlayType = () => '';
    });
    await noPlayer.goto(`${base}/watch/browser`);
    await noPlayer.waitForSelector('#msg[data-state=missing-player]', { timeout: 10000 });
    step(`without hls.js: "${(await overlay(noPlayer)).text}"`);
    await noPlayer.close();
    // Without hls.js but with native HLS (this Chromium has it), it still plays.
    const native = await context.newPage();
    await native.route('**/vendor/hls.min.js', (r) => r.fulfill({ status: 404, body: 'not found' }));
    await native.goto(link);
    const kind = await native.$eval('#video', (v) => v.canPlayType('application/vnd.apple.mpegurl'));
    if (kind !== '') {
      const [e, f] = await videoAdvances(native, '#video', 1, 30000);
      step(`without hls.js, native HLS plays: ${e.toFixed(2)} -> ${f.toFixed(2)} s`);
    }
    await native.close();

    // ---- recordings: an ended event listed, played, downloaded, deleted ------
    const created = await fetch(`${base}/api/v1/streams`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'vod', dvr_hours: 1 }),
    });
    assert(created.status === 201, `create vod answered ${created.status}`);
    publish((await created.json()).publish.rtmp, 8);
    const recordings = async () =>
      (await (await fetch(`${base}/api/v1/streams/vod/recordings`, {
        headers: { Authorization: `Bearer ${ADMIN}` },
      })).json()).recordings;
    await until('an ended recording of "vod"', 40000, async () => {
      const r = await recordings();
      return r.length === 1 && !r[0].recording;
    });
    const vod = '[data-stream=vod]';
    await panel.waitForSelector(vod, { timeout: 10000 });
    await panel.click(`${vod} .recordings summary`);
    await panel.waitForSelector(`${vod} .s-recs tr[data-id]`, { timeout: 10000 });
    const recRow = await panel.$eval(`${vod} .s-recs tr`, (tr) => tr.textContent);
    assert(/This server/.test(recRow) && /0:0[6-9]|0:1[0-1]/.test(recRow), `recording row: ${recRow}`);
    await panel.click(`${vod} .rec-play`);
    const [ra, rb] = await videoAdvances(panel, `${vod} .s-video`, 2, 30000);
    step(`the recordings list plays an ended event: ${ra.toFixed(2)} -> ${rb.toFixed(2)} s ("${recRow}")`);
    const href = await panel.$eval(`${vod} .rec-download`, (a) => a.href);
    const mp4 = await fetch(href);
    const bytes = new Uint8Array(await mp4.arrayBuffer());
    assert(mp4.status === 200 && mp4.headers.get('content-type') === 'video/mp4', `download ${mp4.status}`);
    assert(new TextDecoder().decode(bytes.slice(4, 8)) === 'ftyp', 'the download is an MP4');
    panel.once('dialog', (d) => d.accept());
    await panel.click(`${vod} .rec-delete`);
    await panel.waitForFunction(
      (sel) => /Nothing recorded yet/.test(document.querySelector(sel).textContent),
      `${vod} .s-rec-msg`,
      { timeout: 10000 },
    );
    assert((await recordings()).length === 0, 'deleted through the panel');
    step(`download ${bytes.length} bytes of MP4; Delete removes the recording`);

    // ---- the node registry: the admin sees a node that beats ----------------
    await panel.waitForSelector('#nodes-section:not([hidden]) #nodes-empty:not([hidden])');
    const beat = await fetch(`${base}/api/v1/node/heartbeat`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({
        id: 'transcode-browser', role: 'transcode', url: 'http://127.0.0.1:9',
        capacity: 8, load: { streams: 3, cpu: 0.25, egress_bps: 250000 },
        streams: ['live/a', 'live/b', 'live/c'], priority: 10,
      }),
    });
    assert(beat.status === 200, `heartbeat answered ${beat.status}`);
    const row = '#nodes tr[data-node="transcode-browser"]';
    await panel.waitForSelector(`${row} .n-state[data-state=live]`, { timeout: 5000 });
    const cells = await panel.$eval(row, (tr) => tr.textContent);
    assert(cells.includes('transcode · p10') && cells.includes('3 / 8') && cells.includes('25 %')
      && cells.includes('2.0 Mbit/s'), `node row: ${cells}`);
    // No stream is live on a publishing node: no transcode job to lease.
    const leases = await panel.$eval(`${row} .n-leases`, (td) => td.textContent);
    assert(leases === '0', `leases cell: ${leases}`);
    step('the admin panel lists a registered node, updated live');
    const forget = await fetch(`${base}/api/v1/nodes/transcode-browser`, {
      method: 'DELETE', headers: { Authorization: `Bearer ${ADMIN}` },
    });
    assert(forget.status === 204, `node delete answered ${forget.status}`);

    // ---- the capacity planner (POST /api/v1/plan) -------------------------------
    // Its defaults are the guide's example: the figures the guide's text
    // checks, the guide's 223 Mbit/s explained, sources of the capacities.
    await panel.click('#plan summary');
    await panel.waitForSelector('#plan-result:not([hidden])', { timeout: 10000 });
    const planText = async () => panel.$eval('#plan-result', (t) => t.innerText);
    const guide = await planText();
    for (const want of ['51.9 Mbit/s', '74.2 Mbit/s', 'the guide prints 223 Mbit/s', '200.2 Mbit/s',
      '419.2 Gbit/s', '333.7 GB', '188.6 GB']) {
      assert(guide.includes(want), `planner: ${want} in ${guide}`);
    }
    const sources = await panel.$$eval('#plan-sources li', (li) => li.map((x) => x.textContent));
    assert(sources.length === 3 && sources.every((x) => x.startsWith('benches/')), `sources ${sources}`);
    const origins = async () => Number(/Origin servers\s+(\d+)/.exec(await planText())[1]);
    const before = await origins();
    // A CDN that serves 95 % from its cache: fewer origins, same ladder.
    await panel.fill('#plan-form input[name=cdn_share]', '95');
    await panel.click('#plan-form button[type=submit]');
    await until('the plan with a CDN', 10000, async () => (await origins()) < before);
    const after = await origins();
    await panel.fill('#plan-form input[name=ladder]', '1080p:bad');
    await panel.click('#plan-form button[type=submit]');
    await panel.waitForFunction(() => document.getElementById('plan-error').textContent.includes('Ladder rung'));
    step(`the capacity planner: the guide's example (74.2 Mbit/s of ladder output, 419.2 Gbit/s to viewers), `
      + `${before} origins -> ${after} behind a 95 % CDN; a bad ladder explained`);

    if (process.env.UGC_SCREENSHOTS) {
      await screenshots(context, base, card);
    }
    await clusterPanel(context);

    assert(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
  } catch (e) {
    const shot = join(tmpdir(), 'ugc-browser-failure.png');
    await panel.screenshot({ path: shot, fullPage: true }).catch(() => {});
    console.error(`screenshot of the panel: ${shot}`);
    throw e;
  } finally {
    await browser.close();
  }
  step('browser test passed');
}

/**
 * `make cluster-demo` (scripts/cluster-demo.sh with the role binaries next
 * to SERVER_BIN): the panel of ugc-control previews the stream from the
 * origin node (another port: its page policy names the origin) and links
 * the watch page there, which plays.
 */
async function clusterPanel(context) {
  // The script's ports run from RTMP at base - 6145 to SRT at base + 920.
  const portBase = (await freePorts(6145 + 921)) + 6145;
  const demo = spawn(join(WEB, '../scripts/cluster-demo.sh'), [], {
    env: { ...process.env, UGC_BIN_DIR: dirname(SERVER_BIN), DATA: join(tmp, 'demo'),
      UGC_PORT_BASE: String(portBase) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(demo);
  let out = '';
  demo.stdout.on('data', (d) => { out += d; });
  try {
    await until('the cluster demo to start', 60000, () => out.includes('Ctrl-C stops'));
    const admin = /admin token: ([A-Za-z0-9_-]+)/.exec(out)[1];
    const rtmpUrl = /-f flv (rtmp:\S+)/.exec(out)[1];
    const origin = `http://127.0.0.1:${portBase + 2}`;
    publish(rtmpUrl);
    const page = await context.newPage();
    const fromOrigin = [];
    page.on('request', (r) => { if (r.url().startsWith(`${origin}/live/demo/`)) fromOrigin.push(r.url()); });
    await page.goto(`http://127.0.0.1:${portBase}/`);
    await page.fill('#token', admin);
    await page.click('#signin-form button[type=submit]');
    const card = '[data-stream=demo]';
    await page.waitForSelector(`${card} .s-live[data-live=true]`, { timeout: 30000 });
    await page.click(`${card} .s-preview`);
    const [a, b] = await videoAdvances(page, `${card} .s-video`, 1, 30000);
    assert(fromOrigin.length > 0, 'the preview fetched from the origin');
    step(`cluster demo: the control plane's panel previews from the origin: ${a.toFixed(2)} -> ${b.toFixed(2)} s`);
    const watch = await page.$eval(`${card} .s-watch`, (i) => i.value);
    assert(watch === `${origin}/watch/demo`, `watch link ${watch}`);
    const viewer = await context.newPage();
    await viewer.goto(watch);
    const [c, d] = await videoAdvances(viewer, '#video', 1, 30000);
    step(`cluster demo: the watch page on the origin plays: ${c.toFixed(2)} -> ${d.toFixed(2)} s`);
    await viewer.close();
    await viewersBehindAnEdge(context, origin);
    // The control plane has no Hub here: the chart's samples come from
    // the nodes' beats (the publishing node's ingest, the origin's
    // viewers).
    await page.click(`${card} .health summary`);
    await until('the cluster chart with two samples', 30000, async () =>
      Number(await page.$eval(`${card} .s-chart`, (b) => b.dataset.samples || 0)) >= 2);
    const health = await page.textContent(`${card} .s-health`);
    assert(/^Now: main, (\d+ kbit|\d+\.\d Mbit)\/s · \d+ watching\. /.test(health), `cluster health line: ${health}`);
    step(`cluster demo: the card's chart from the nodes' beats: "${health}"`);
    await page.close();
  } catch (e) {
    for (const node of ['publish', 'transcode', 'origin', 'control']) {
      try {
        const log = readFileSync(join(tmp, `demo/cluster/logs/${node}.log`), 'utf8');
        console.error(`---- cluster demo: ${node} log (tail) ----\n${log.split('\n').slice(-15).join('\n')}`);
      } catch {
        // no log
      }
    }
    throw e;
  } finally {
    demo.kill('SIGTERM');
    await until('the cluster demo to stop', 10000, () => demo.exitCode !== null || demo.signalCode);
  }
}

/**
 * The origin of a cluster counts viewers from the players' QoE beacons
 * (ugc-origin --viewer-count beacons, its default), which pass a CDN edge
 * uncached: the watch page played through an nginx proxy_cache edge
 * (examples/ugc-server/tests/nginx-edge.conf.in) is counted on the origin
 * while it plays and no more when it leaves, while its media comes from
 * the edge's cache.
 */
async function viewersBehindAnEdge(context, origin) {
  const dir = join(tmp, 'edge');
  mkdirSync(dir, { recursive: true });
  const edgePort = await freePort();
  const conf = readFileSync(join(WEB, '../examples/ugc-server/tests/nginx-edge.conf.in'), 'utf8')
    .replaceAll('{{', '\u0000').replaceAll('}}', '\u0001')
    .replaceAll('{dir}', dir).replaceAll('{listen}', `127.0.0.1:${edgePort}`)
    .replaceAll('{origin}', origin.replace('http://', ''))
    .replaceAll('\u0000', '{').replaceAll('\u0001', '}');
  writeFileSync(join(dir, 'nginx.conf'), conf);
  const nginx = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')],
    { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(nginx);
  const edge = `http://127.0.0.1:${edgePort}`;
  const viewers = async () => {
    const text = await (await fetch(`${origin}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('ugc_stream_viewers{stream="live/demo"} '));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  try {
    await until('the nginx edge to answer', 10000, async () => (await fetch(`${edge}/watch/demo`)).ok);
    // The panel's preview still plays from the origin: one viewer.
    const before = await until('the preview counted from its beacons', 20000, async () => viewers());
    const page = await context.newPage();
    const cache = [];
    page.on('response', (r) => {
      if (r.url().startsWith(`${edge}/live/demo/`)) cache.push(r.headers()['x-cache-status'] || '');
    });
    await page.goto(`${edge}/watch/demo`);
    const [a, b] = await videoAdvances(page, '#video', 1, 30000);
    await until('the viewer behind the edge counted', 20000, async () => (await viewers()) === before + 1);
    assert(cache.includes('HIT') || cache.includes('MISS'), `media through the edge's cache: ${cache}`);
    await page.goto('about:blank');
    await until('the viewer who left counted no more', 8000, async () => (await viewers()) === before);
    step(`cluster demo: a watch page behind an nginx edge plays (${a.toFixed(2)} -> ${b.toFixed(2)} s) and is `
      + `counted on the origin from its beacons: ${before} -> ${before + 1} -> ${before} viewers `
      + `(edge cache: ${cache.filter((x) => x === 'HIT').length} hits of ${cache.length})`);
    await page.close();
  } finally {
    nginx.kill('SIGKILL');
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`browser test FAILED: ${e.stack || e}`);
    try {
      const log = readFileSync(serverLog, 'utf8').split('\n').slice(-40).join('\n');
      console.error(`---- ugc-server log (tail) ----\n${log}`);
    } catch {
      // no log
    }
    process.exit(1);
  },
);
