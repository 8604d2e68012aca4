// Plays an HLS URL with hls.js in headless Chromium (playwright-core, the
// Debian /usr/bin/chromium) and prints one JSON line with what happened:
//   node play.mjs --url http://127.0.0.1:8080/live/x/index.m3u8 [--seconds 20]
//                 [--low-latency 1|0] [--switch HOLD_S] [--chromium /usr/bin/chromium]
// Measures: playback progress, stalls (`waiting` after playback started
// while not seeking, or a second without progress; seeks after the start
// and their waits are counted apart), hls.js's `latency` (distance to the live edge
// it reports), and wall clock minus `playingDate` (PROGRAM-DATE-TIME of the
// frame on screen: arrival at the server -> display) when the playlist has
// dates. `errors` are fatal hls.js errors, non-fatal ones that mean media
// did not parse or append (bufferAppendError, fragParsingError, ...) and
// `<video>` errors; other non-fatal ones (stalls, nudges) are counted in
// `nonfatal`; `notes` has the first few of hls.js's warnings, seeks and
// waits with the buffered ranges then, to diagnose a failed run (with
// HLS_TRACE=FILE in the environment, every line hls.js logs goes to FILE, %p in
// it replaced by the pid so that players side by side keep their own,
// stamped with the time since playback started). The page
// is our own tiny one, with the watch page's hls.js settings, served by
// request interception on the stream's origin.
//
// With `--switch HOLD_S` (a multivariant URL), instead of watching
// `seconds`, it forces `hls.currentLevel` through every level once, lowest
// -> highest -> the others (rotated so that the first is not the level
// playing), waiting (up to 15 s) for LEVEL_SWITCHED to that level and for
// the video's decoded size to be the level's RESOLUTION, then plays it
// HOLD_S seconds; `switches` says per level what it saw.
import { chromium } from 'playwright-core';
import { readFileSync, writeFileSync } from 'node:fs';
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
  console.error('usage: play.mjs --url URL [--seconds N] [--low-latency 1|0] [--switch HOLD_S]');
  process.exit(2);
}
const seconds = Number(args.seconds ?? 20);
const lowLatency = (args['low-latency'] ?? '1') !== '0';
const switchHold = args.switch === undefined ? null : Number(args.switch);
const executablePath = args.chromium ?? process.env.CHROMIUM ?? '/usr/bin/chromium';
const here = dirname(fileURLToPath(import.meta.url));
const hlsJs = readFileSync(join(here, 'node_modules/hls.js/dist/hls.min.js'), 'utf8');

const page_html = `<!doctype html><html><body>
<video id="v" muted playsinline autoplay style="width:320px"></video>
<script>${hlsJs}</script>
<script>
window.report = {
  samples: [], waiting: 0, seeks: 0, seekWaits: 0, errors: [], nonfatal: {}, notes: [], started: null, levelUpdates: 0,
};
const video = document.getElementById('v');
// hls.js's own warnings and errors (a seek to the live edge, a gap it
// jumps) go to the report's notes, the first few only.
const note = (text) => {
  if (window.report.notes.length < 20) {
    const since = window.report.started === null ? 'before start' : ((performance.now() - window.report.started) / 1000).toFixed(2) + ' s';
    window.report.notes.push('[' + since + '] ' + text);
  }
};
const quiet = () => {};
window.trace = [];
const tracing = ${process.env.HLS_TRACE ? 'true' : 'false'};
const traced = (level, a) => {
  const since = window.report.started === null ? 'before start' : ((performance.now() - window.report.started) / 1000).toFixed(2) + ' s';
  window.trace.push('[' + since + '] ' + level + ': ' + a.join(' '));
};
const logger = {
  trace: quiet, debug: tracing && ${process.env.HLS_TRACE_DEBUG ? 'true' : 'false'} ? (...a) => traced('debug', a) : quiet,
  log: tracing ? (...a) => traced('log', a) : quiet,
  info: tracing ? (...a) => traced('info', a) : quiet,
  warn: (...a) => { if (tracing) traced('warn', a); note('warn: ' + a.join(' ')); },
  error: (...a) => { if (tracing) traced('error', a); note('error: ' + a.join(' ')); },
};
// The watch page's settings (web/assets/player.js): low latency, a
// catch-up of up to 1.2x speed when playback is behind the target latency,
// 30 s of back buffer. (This page kept 10 s while the watch page moved to
// 30: from 10 s into playback hls.js 1.7.4 then flushed its back buffer
// at every segment, and a flush that completes while a part is being
// appended drops that segment from its fragment tracker, clearing the
// loaded flags of the segment's earlier parts; where the buffer ends a few
// ms short of the segment's end, as after a failover rebase, hls.js then
// waits on that segment until its parts leave the playlist, a 4-5 s
// freeze. Viewers past 30 s still meet it: an open defect.)
const hls = new Hls({
  lowLatencyMode: ${lowLatency}, maxLiveSyncPlaybackRate: 1.2, enableWorker: true,
  backBufferLength: 30, debug: logger,
});
window.hls = hls;
// Non-fatal errors that still mean media was refused or lost.
const MEDIA_ERRORS = new Set([
  'fragParsingError', 'fragDecryptError', 'remuxAllocError', 'bufferAddCodecError',
  'bufferIncompatibleCodecsError', 'bufferAppendError', 'bufferAppendingError',
  'manifestIncompatibleCodecsError', 'levelSwitchError', 'internalException',
]);
hls.on(Hls.Events.ERROR, (_, d) => {
  if (d.fatal || MEDIA_ERRORS.has(d.details)) {
    window.report.errors.push(d.type + ':' + d.details + (d.fatal ? ':fatal' : ''));
    // Which resource, and how many bytes of it hls.js had: a failed run
    // says what to fetch again.
    const res = d.part ?? d.frag;
    if (res) {
      note(d.details + ' in ' + (res.relurl ?? res.url) + ' (' + (res.stats?.loaded ?? '?') + ' bytes loaded, sn ' +
        d.frag?.sn + (d.part ? ' part ' + d.part.index : '') + ') @' + video.currentTime.toFixed(3));
      // The same URL fetched again: its status and top-level boxes.
      fetch(res.url).then(async (r) => {
        const b = new DataView(await r.arrayBuffer());
        const boxes = [];
        for (let o = 0; o + 8 <= b.byteLength && boxes.length < 12;) {
          const size = b.getUint32(o);
          boxes.push(String.fromCharCode(b.getUint8(o + 4), b.getUint8(o + 5), b.getUint8(o + 6), b.getUint8(o + 7)) + ':' + size);
          if (size < 8) break;
          o += size;
        }
        note('fetched again: ' + r.status + ', ' + b.byteLength + ' bytes: ' + boxes.join(' '));
      }, (e) => note('fetched again: ' + e));
    }
  } else {
    window.report.nonfatal[d.details] = (window.report.nonfatal[d.details] ?? 0) + 1;
    // What hls.js says about it (a hole's position, a stall's buffer), for
    // the diagnosis of a failed run; the first few only.
    const why = d.reason ?? d.error?.message;
    if (why) note(d.details + ' @' + video.currentTime.toFixed(3) + ': ' + why + ' [' + window.bufferedNote() + ']');
    if (d.details === 'bufferStalledError') note('stalled with ' + window.loaderState());
  }
});
// What hls.js's stream controller knows when playback stalls (its internal
// fields, by name: hls.js keeps them in its minified build): which
// fragment it loaded last, where it loads next, and, for that fragment and
// the next, the fragment tracker's state and which of their parts it
// counts as loaded. A stall at a segment boundary with nothing loading is
// decided by these.
window.loaderState = () => {
  try {
    const sc = hls.streamController;
    const details = hls.levels[hls.currentLevel >= 0 ? hls.currentLevel : 0]?.details;
    const prev = sc.fragPrevious;
    const of = (sn) => {
      const frag = details?.fragments.find((f) => f?.sn === sn) ?? (details?.fragmentHint?.sn === sn ? details.fragmentHint : null);
      const parts = (details?.partList ?? []).filter((p) => p.fragment.sn === sn);
      return 'sn ' + sn + (frag ? ' [' + frag.start.toFixed(3) + '-' + frag.end.toFixed(3) + ']' + (frag.relurl ? '' : ' hint') +
        ' ' + sc.fragmentTracker.getState(frag) : ' absent') + ' parts ' + parts.map((p) => p.index + (p.loaded ? '+' : '-')).join('');
    };
    return JSON.stringify({
      state: sc.state, loadingParts: sc.loadingParts, nextLoadPosition: sc.nextLoadPosition,
      fragPrevious: prev ? prev.sn + (prev === details?.fragments.find((f) => f?.sn === prev.sn) ? ' (current object)' : ' (stale object)') : null,
      window: details ? details.startSN + '-' + details.endSN + ' partEnd ' + details.partEnd?.toFixed(3) : null,
      prev: prev ? of(prev.sn) : null, next: prev ? of(prev.sn + 1) : null,
    });
  } catch (e) {
    return 'no loader state: ' + e;
  }
};
video.addEventListener('error', () => {
  window.report.errors.push('video:' + (video.error ? video.error.code + ' ' + video.error.message : '?'));
});
// Forces a level now; resolves once hls.js says it plays it and the decoded
// size is the level's, or after timeoutMs.
window.switchTo = (level, width, height, timeoutMs) => new Promise((resolve) => {
  const t0 = performance.now();
  const alreadyOn = hls.currentLevel === level;
  let switchedMs = alreadyOn ? 0 : null;
  const onSwitched = (_, d) => {
    if (d.level === level && switchedMs === null) switchedMs = performance.now() - t0;
  };
  hls.on(Hls.Events.LEVEL_SWITCHED, onSwitched);
  hls.currentLevel = level;
  const poll = setInterval(() => {
    const matched = video.videoWidth === width && video.videoHeight === height;
    const ms = performance.now() - t0;
    if ((switchedMs !== null && matched) || ms > timeoutMs) {
      clearInterval(poll);
      hls.off(Hls.Events.LEVEL_SWITCHED, onSwitched);
      resolve({
        level, width, height, already_on: alreadyOn, switched_ms: switchedMs, size_matched: matched, ms,
        video_width: video.videoWidth, video_height: video.videoHeight, ct: video.currentTime,
      });
    }
  }, 50);
});
hls.on(Hls.Events.LEVEL_UPDATED, () => { window.report.levelUpdates++; });
video.addEventListener('playing', () => { if (window.report.started === null) window.report.started = performance.now(); });
// The source buffers hls.js creates, to show their ranges at a stall.
window.sourceBuffers = [];
for (const MS of [self.MediaSource, self.ManagedMediaSource]) {
  if (!MS) continue;
  const add = MS.prototype.addSourceBuffer;
  MS.prototype.addSourceBuffer = function (type) {
    const sb = add.call(this, type);
    window.sourceBuffers.push([type, sb]);
    return sb;
  };
}
const ranges = (r) => Array.from({ length: r.length }, (_, i) => r.start(i).toFixed(3) + '-' + r.end(i).toFixed(3)).join(',');
window.bufferedNote = () => window.sourceBuffers
  .map(([type, sb]) => { try { return type.split(';')[0] + ' ' + ranges(sb.buffered); } catch (e) { return type + ' ?'; } })
  .join(' | ');
// A stall is a 'waiting' while not seeking. A seek (hls.js's own seek to
// its start position can come just after the first frame, when its gap
// jump raced it) also waits, for the seek: counted apart.
video.addEventListener('waiting', () => {
  if (window.report.started === null) return;
  if (video.seeking) window.report.seekWaits++;
  else window.report.waiting++;
  note('waiting' + (video.seeking ? ' (seeking)' : '') + ' @' + video.currentTime.toFixed(3) + ': ' + window.bufferedNote());
});
video.addEventListener('seeking', () => {
  if (window.report.started !== null) window.report.seeks++;
  note('seeking to ' + video.currentTime.toFixed(3) + ': ' + window.bufferedNote());
});
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
    // The page is intercepted (below), so Chromium counts it as public; its
    // own origin is exempt, but a balancing origin's redirect to another
    // loopback origin would meet Local Network Access (public -> loopback),
    // which a real deployment (a public page, public origins) never does.
    '--disable-features=LocalNetworkAccessChecks',
  ],
});
let result;
let levels = [];
const switches = [];
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
  const playing = await page
    .waitForFunction(() => window.report.started !== null, null, { timeout: 15000 })
    .then(() => true, () => false);
  if (switchHold === null) {
    await page.waitForTimeout(seconds * 1000);
  } else if (playing) {
    levels = await page.evaluate(() =>
      window.hls.levels.map((l, index) => ({ index, width: l.width, height: l.height, bitrate: l.bitrate })));
    const up = [...levels].sort((a, b) => a.height - b.height || a.bitrate - b.bitrate);
    const order = up.length > 1 ? [up[0], up[up.length - 1], ...up.slice(1, -1)] : up;
    // Every step a real switch: start with a level the player is not on.
    const current = await page.evaluate(() => window.hls.currentLevel);
    if (order.length > 1 && order[0].index === current) order.push(order.shift());
    for (const l of order) {
      const s = await page.evaluate(
        ([i, w, h]) => window.switchTo(i, w, h, 15000), [l.index, l.width, l.height]);
      await page.waitForTimeout(switchHold * 1000);
      const end = await page.evaluate(() => ({
        ct: document.getElementById('v').currentTime,
        w: document.getElementById('v').videoWidth,
        h: document.getElementById('v').videoHeight,
        level: window.hls.currentLevel,
      }));
      const { ct, ...rest } = s;
      switches.push({
        ...rest,
        held_s: switchHold,
        advanced_s: end.ct - ct,
        still_matched: end.level === l.index && end.w === l.width && end.h === l.height,
      });
    }
  }
  result = await page.evaluate(() => window.report);
  result.loaderState = await page.evaluate(() => window.loaderState());
  if (process.env.HLS_TRACE) {
    writeFileSync(process.env.HLS_TRACE.replace("%p", String(process.pid)), (await page.evaluate(() => window.trace)).join('\n') + '\n');
  }
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
let stalls = 0;
let frozen = 0;
let lastMove = samples.length ? samples[0].t : 0;
const endFreeze = (t) => {
  const d = (t - lastMove) / 1000;
  if (d >= 1) {
    stalls += 1;
    frozen += d;
  }
};
for (let i = 1; i < samples.length; i++) {
  if (samples[i].ct > samples[i - 1].ct) {
    endFreeze(samples[i - 1].t);
    lastMove = samples[i].t;
  }
  longestFreeze = Math.max(longestFreeze, (samples[i].t - lastMove) / 1000);
}
if (samples.length) endFreeze(samples[samples.length - 1].t);
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
  seeks_after_start: result.seeks,
  seek_waits: result.seekWaits,
  longest_freeze_s: longestFreeze,
  stalls,
  frozen_s: frozen,
  errors: result.errors,
  nonfatal: result.nonfatal,
  notes: result.notes,
  loader_state_at_end: result.loaderState,
  level_updates: result.levelUpdates,
  latency_p50_s: pct(settled.map((s) => s.latency), 50),
  latency_p95_s: pct(settled.map((s) => s.latency), 95),
  pdt_latency_p50_s: pct(settled.map((s) => s.pdtLatency), 50),
  pdt_latency_p95_s: pct(settled.map((s) => s.pdtLatency), 95),
  ...(switchHold === null ? {} : { levels, switches }),
}));
