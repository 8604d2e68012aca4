// Plays a stream over WHEP in headless Chromium (playwright-core, the
// Debian /usr/bin/chromium), as a viewer's browser would, and prints one
// JSON line with what happened:
//   node whep.mjs --url http://127.0.0.1:8080/whep/<stream> [--token T]
//                 [--seconds 10] [--chromium PATH]
//                 [--whip URL --key KEY [--codec H264|AV1]]
// The page (our own, served by request interception on the server's
// origin, so the POSTs are same-origin) offers to receive video and audio,
// POSTs the offer (the play token as bearer, if any), applies the answer,
// plays `seconds`, then DELETEs the session URL. Reported: the POST's
// status, the session URL, the connection states, the inbound RTP counters
// of both tracks and their codecs (getStats), the DELETE's status, errors.
//
// With --whip, the same page first publishes over WHIP a canvas that shows
// the page's clock (32 black or white squares: 24 bits of milliseconds and
// an 8-bit check) with its fake microphone, then plays the stream over WHEP
// and reads the clock off every picture it presents: `latency` has the
// glass-to-glass delay (capture to presentation, one clock) in ms: p50,
// p95, max and the number of pictures read.
//
// With --hls URL (and --whip), it plays that HLS URL with hls.js (the
// watch page's settings: low-latency mode, catch-up to 1.2x) instead of
// WHEP, and reads the clock the same way: the two ways of watching side by
// side (benches/glass-to-glass.sh).
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
if (!args.url && !args.hls) {
  console.error('usage: whep.mjs --url URL [--token T] [--seconds N] [--whip URL --key KEY]');
  process.exit(2);
}
const seconds = Number(args.seconds ?? 10);
const executablePath = args.chromium ?? process.env.CHROMIUM ?? '/usr/bin/chromium';
const here = dirname(fileURLToPath(import.meta.url));
const hlsJs = args.hls ? readFileSync(join(here, 'node_modules/hls.js/dist/hls.min.js'), 'utf8') : '';

const pageHtml = `<!doctype html><html><body>
<canvas id="clock" width="640" height="360"></canvas>
<video id="v" muted autoplay playsinline></video>
<canvas id="read" width="640" height="360"></canvas>
<script>${hlsJs}</script>
<script>
window.report = { states: [], errors: [] };
const t0 = performance.now();
const at = () => ((performance.now() - t0) / 1000).toFixed(1) + 's';
// The clock's squares: 4 rows of 8, 50 px, centres known to the reader.
const square = (i) => [40 + (i % 8) * 70, 30 + Math.floor(i / 8) * 80];
const bitsOf = (ms) => {
  const v = ms & 0xffffff;
  const check = ((v & 0xff) + ((v >> 8) & 0xff) + ((v >> 16) & 0xff)) & 0xff;
  return [v, check];
};
window.publish = async (url, key, codec) => {
  const r = window.report;
  const canvas = document.getElementById('clock');
  const g = canvas.getContext('2d');
  const draw = () => {
    const [v, check] = bitsOf(Math.round(performance.now()));
    g.fillStyle = '#808080';
    g.fillRect(0, 0, 640, 360);
    for (let i = 0; i < 32; i++) {
      const bit = i < 24 ? (v >> i) & 1 : (check >> (i - 24)) & 1;
      g.fillStyle = bit ? '#ffffff' : '#000000';
      const [x, y] = square(i);
      g.fillRect(x, y, 50, 50);
    }
  };
  draw();
  setInterval(draw, 10);
  const video = canvas.captureStream(30).getVideoTracks()[0];
  const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
  const media = new MediaStream([video, ...mic.getAudioTracks()]);
  const pc = new RTCPeerConnection();
  window.publisher = pc;
  for (const track of media.getTracks()) {
    const t = pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
    if (track.kind === 'video') {
      // Keep the resolution: the clock is read off squares placed for
      // 640x360 (under CPU load Chromium otherwise scales down).
      const p = t.sender.getParameters();
      p.degradationPreference = 'maintain-resolution';
      await t.sender.setParameters(p).catch(() => {});
      const chosen = RTCRtpSender.getCapabilities('video').codecs
        .filter((c) => c.mimeType === 'video/' + codec);
      t.setCodecPreferences(chosen);
    }
  }
  await pc.setLocalDescription(await pc.createOffer());
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', Authorization: 'Bearer ' + key },
    body: pc.localDescription.sdp,
  });
  r.whip = res.status;
  const answer = await res.text();
  if (res.status !== 201) {
    r.errors.push('WHIP POST ' + res.status + ': ' + answer);
    return;
  }
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
};
window.latencies = [];
const readClock = () => {
  const v = document.getElementById('v');
  const g = document.getElementById('read').getContext('2d', { willReadFrequently: true });
  const onFrame = () => {
    const now = Math.round(performance.now());
    if (v.videoWidth === 640 && v.videoHeight === 360) {
      g.drawImage(v, 0, 0, 640, 360);
      let value = 0;
      let check = 0;
      for (let i = 0; i < 32; i++) {
        const [x, y] = square(i);
        const px = g.getImageData(x + 15, y + 15, 20, 20).data;
        let sum = 0;
        for (let p = 0; p < px.length; p += 4) sum += px[p];
        const bit = sum / (px.length / 4) > 128 ? 1 : 0;
        if (i < 24) value |= bit << i; else check |= bit << (i - 24);
      }
      if (bitsOf(value)[1] === check) {
        window.latencies.push([now, (((now & 0xffffff) - value) + 0x1000000) % 0x1000000]);
      }
    }
    v.requestVideoFrameCallback(onFrame);
  };
  v.requestVideoFrameCallback(onFrame);
};
window.play = async (url, token, measure) => {
  const r = window.report;
  const pc = new RTCPeerConnection();
  window.pc = pc;
  pc.oniceconnectionstatechange = () => r.states.push('ice:' + pc.iceConnectionState + '@' + at());
  pc.onconnectionstatechange = () => r.states.push('pc:' + pc.connectionState + '@' + at());
  const stream = new MediaStream();
  pc.ontrack = (e) => {
    stream.addTrack(e.track);
    document.getElementById('v').srcObject = stream;
  };
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  await pc.setLocalDescription(await pc.createOffer());
  const headers = { 'Content-Type': 'application/sdp' };
  if (token) headers.Authorization = 'Bearer ' + token;
  const started = performance.now();
  // A stream being published right now is live once its first keyframe
  // is in: until then the answer is 404 (tried for 10 s).
  let res;
  for (let i = 0; i < 50; i++) {
    res = await fetch(url, { method: 'POST', headers, body: pc.localDescription.sdp });
    if (res.status !== 404) break;
    await new Promise((ok) => setTimeout(ok, 200));
  }
  r.post = res.status;
  r.location = res.headers.get('Location');
  const answer = await res.text();
  if (res.status !== 201) {
    r.errors.push('POST ' + res.status + ': ' + answer);
    return;
  }
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  const v = document.getElementById('v');
  v.requestVideoFrameCallback(() => {
    r.firstPictureMs = Math.round(performance.now() - started);
  });
  if (measure) readClock();
};
window.playHls = async (url) => {
  const r = window.report;
  const started = performance.now();
  // Live once the first segment is packaged: until then 404.
  for (let i = 0; i < 100; i++) {
    const res = await fetch(url, { cache: 'no-store' }).catch(() => null);
    if (res && res.status === 200) break;
    await new Promise((ok) => setTimeout(ok, 200));
  }
  const v = document.getElementById('v');
  const hls = new Hls({ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.2, backBufferLength: 30 });
  hls.on(Hls.Events.ERROR, (_e, d) => { if (d.fatal) r.errors.push('hls.js: ' + d.details); });
  hls.loadSource(url);
  hls.attachMedia(v);
  v.play().catch(() => {});
  r.post = 'hls';
  v.requestVideoFrameCallback(() => {
    r.firstPictureMs = Math.round(performance.now() - started);
  });
  readClock();
};
window.inbound = async () => {
  const out = {};
  const stats = await window.pc.getStats();
  const codecs = {};
  stats.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp') {
      out[s.kind] = {
        packets: s.packetsReceived, lost: s.packetsLost, bytes: s.bytesReceived,
        frames: s.framesDecoded, width: s.frameWidth, height: s.frameHeight,
        freezes: s.freezeCount, nacks: s.nackCount, plis: s.pliCount,
        samples: s.totalSamplesReceived, concealed: s.concealedSamples,
        jitterBufferMs: s.jitterBufferEmittedCount
          ? Math.round((1000 * s.jitterBufferDelay) / s.jitterBufferEmittedCount) : undefined,
        codec: codecs[s.codecId],
      };
    }
  });
  // The transport ICE chose: the selected pair's local candidate.
  stats.forEach((t) => {
    if (t.type !== 'transport' || !t.selectedCandidatePairId) return;
    const pair = stats.get(t.selectedCandidatePairId);
    const local = pair && stats.get(pair.localCandidateId);
    if (local) out.transport = { protocol: local.protocol, tcpType: local.tcpType };
  });
  return out;
};
window.stop = async (base) => {
  const r = window.report;
  // The first 3 s of pictures are left out: a player settling (hls.js
  // catching up to its target) is not the delay it keeps.
  const from = window.latencies.length ? window.latencies[0][0] + 3000 : 0;
  const l = window.latencies.filter(([t]) => t >= from).map(([, v]) => v).sort((a, b) => a - b);
  if (l.length) {
    const q = (f) => l[Math.min(l.length - 1, Math.floor(f * l.length))];
    r.latency = { n: l.length, p50: q(0.5), p95: q(0.95), max: l[l.length - 1] };
  }
  if (!r.location) return;
  const res = await fetch(new URL(r.location, base), { method: 'DELETE' });
  r.deleted = res.status;
  window.pc.close();
};
</script></body></html>`;

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
  ],
});
let result = {};
try {
  const page = await browser.newPage();
  const base = new URL(args.url ?? args.hls);
  const pageUrl = `${base.origin}/__whep_test_page`;
  await page.route(pageUrl, (route) =>
    route.fulfill({ status: 200, contentType: 'text/html', body: pageHtml }),
  );
  await page.goto(pageUrl);
  if (args.whip) {
    await page.evaluate(
      ([u, k, c]) => window.publish(u, k, c),
      [args.whip, args.key, args.codec ?? 'H264'],
    );
  }
  if (args.hls) {
    await page.evaluate((u) => window.playHls(u), args.hls);
    await page.waitForTimeout(seconds * 1000);
  } else {
    await page.evaluate(([u, t, m]) => window.play(u, t, m), [args.url, args.token ?? '', !!args.whip]);
  }
  const report = await page.evaluate(() => window.report);
  if (report.post === 201) {
    await page.waitForTimeout(seconds * 1000);
    result.inbound = await page.evaluate(() => window.inbound());
  }
  await page.evaluate((b) => window.stop(b), base.origin);
  result = { ...(await page.evaluate(() => window.report)), ...result };
} catch (e) {
  result.errors = [...(result.errors ?? []), String(e)];
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
