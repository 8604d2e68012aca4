// Plays an HLS URL with hls.js in headless Chromium (playwright-core, the
// Debian /usr/bin/chromium) and prints one JSON line with what happened:
//   node play.mjs --url http://127.0.0.1:8080/live/x/index.m3u8 [--seconds 20]
//                 [--low-latency 1|0] [--chromium /usr/bin/chromium]
// Measures: playback progress, stalls (`waiting` after playback started, or
// a second without progress), hls.js's `latency` (distance to the live edge
// it reports), and wall clock minus `playingDate` (PROGRAM-DATE-TIME of the
// frame on screen: arrival at the server -> display) when the playlist has
// dates. The page is our own tiny one, served by request interception on
// the stream's origin.
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []),
);
const url = args.url;
if (!url) {
  console.error('usage: play.mjs --url URL [--seconds N] [--low-latency 1|0]');
  process.exit(2);
}
const seconds = Number(args.seconds ?? 20);
const lowLatency = (args['low-latency'] ?? '1') !== '0';
const executablePath = args.chromium ?? process.env.CHROMIUM ?? '/usr/bin/chromium';
const here = dirname(fileURLToPath(import.meta.url));
const hlsJs = readFileSync(join(here, 'node_modules/hls.js/dist/hls.min.js'), 'utf8');

const page_html = `<!doctype html><html><body>
<video id="v" muted playsinline autoplay style="width:320px"></video>
<script>${hlsJs}</script>
<script>
window.report = { samples: [], waiting: 0, errors: [], started: null, levelUpdates: 0 };
const video = document.getElementById('v');
const hls = new Hls({ lowLatencyMode: ${lowLatency}, enableWorker: true, backBufferLength: 10 });
window.hls = hls;
hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) window.report.errors.push(d.type + ':' + d.details); });
hls.on(Hls.Events.LEVEL_UPDATED, () => { window.report.levelUpdates++; });
video.addEventListener('playing', () => { if (window.report.started === null) window.report.started = performance.now(); });
video.addEventListener('waiting', () => { if (window.report.started !== null) window.report.waiting++; });
hls.loadSource(${JSON.stringify(url)});
hls.attachMedia(video);
video.play().catch(() => {});
setInterval(() => {
  const d = hls.playingDate;
  window.report.samples.push({
    t: performance.now(),
    ct: video.currentTime,
    latency: hls.latency,
    pdtLatency: d ? (Date.now() - d.getTime()) / 1000 : null,
    rs: video.readyState,
  });
}, 250);
</script></body></html>`;

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
  ],
});
let result;
try {
  const page = await browser.newPage();
  // The page is intercepted on the stream's own origin, so the player's
  // requests are same-origin loopback (Chromium blocks public -> loopback).
  const pageUrl = new URL('/__ugc_browser_test__.html', url).toString();
  await page.route(pageUrl, (route) =>
    route.fulfill({ status: 200, contentType: 'text/html', body: page_html }),
  );
  await page.goto(pageUrl);
  // Wait (up to 15 s) for playback to start, then watch `seconds`.
  await page.waitForFunction(() => window.report.started !== null, null, { timeout: 15000 })
    .catch(() => {});
  await page.waitForTimeout(seconds * 1000);
  result = await page.evaluate(() => window.report);
} finally {
  // playwright keeps the profile in its own temp dir and removes it.
  await browser.close();
}

const started = result.started;
const samples = result.samples.filter((s) => started !== null && s.t >= started);
const pct = (xs, p) => {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  return v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))];
};
// A stall: a second or more in which currentTime did not move.
let longestFreeze = 0;
let lastMove = samples.length ? samples[0].t : 0;
for (let i = 1; i < samples.length; i++) {
  if (samples[i].ct > samples[i - 1].ct) lastMove = samples[i].t;
  longestFreeze = Math.max(longestFreeze, (samples[i].t - lastMove) / 1000);
}
const watched = samples.length ? (samples[samples.length - 1].t - samples[0].t) / 1000 : 0;
const advanced = samples.length ? samples[samples.length - 1].ct - samples[0].ct : 0;
// Latency samples after a 3 s settling period.
const settled = samples.filter((s) => s.t - started >= 3000);
console.log(JSON.stringify({
  url,
  lowLatency,
  started: started !== null,
  watched_s: watched,
  advanced_s: advanced,
  waiting_events: result.waiting,
  longest_freeze_s: longestFreeze,
  errors: result.errors,
  level_updates: result.levelUpdates,
  latency_p50_s: pct(settled.map((s) => s.latency), 50),
  latency_p95_s: pct(settled.map((s) => s.latency), 95),
  pdt_latency_p50_s: pct(settled.map((s) => s.pdtLatency), 50),
  pdt_latency_p95_s: pct(settled.map((s) => s.pdtLatency), 95),
}));
