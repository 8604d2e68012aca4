// Publishes over WHIP from headless Chromium (playwright-core, the Debian
// /usr/bin/chromium) with its fake camera and microphone, as a creator's
// browser would, and prints one JSON line with what happened:
//   node whip.mjs --url http://127.0.0.1:8080/whip/<stream> --key <stream key>
//                 [--seconds 20] [--width 640 --height 360] [--chromium PATH]
//                 [--video FILE.y4m --audio FILE.wav] [--codec H264|AV1]
// The page (our own, served by request interception on the server's
// origin, so the POST is same-origin) takes getUserMedia video and audio,
// offers them send-only (H.264 preferred), POSTs the offer with the key as
// bearer, applies the answer, publishes `seconds`, then DELETEs the
// session URL from `Location`. Reported: the POST's status, the session
// URL, the ICE/connection states seen, the outbound RTP counters of both
// tracks and the codecs sent (from getStats), the DELETE's status, and
// errors.
import { chromium } from 'playwright-core';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []),
);
if (!args.url || !args.key) {
  console.error('usage: whip.mjs --url URL --key KEY [--seconds N] [--width W --height H]');
  process.exit(2);
}
const seconds = Number(args.seconds ?? 20);
const width = Number(args.width ?? 640);
const height = Number(args.height ?? 360);
const executablePath = args.chromium ?? process.env.CHROMIUM ?? '/usr/bin/chromium';
// The camera and microphone play these files (looped) instead of
// Chromium's own pattern and beep.
const files = [
  ...(args.video ? [`--use-file-for-fake-video-capture=${args.video}`] : []),
  ...(args.audio ? [`--use-file-for-fake-audio-capture=${args.audio}`] : []),
];

const pageHtml = `<!doctype html><html><body><video id="v" muted autoplay playsinline></video>
<script>
window.report = { states: [], errors: [] };
const t0 = performance.now();
const at = () => ((performance.now() - t0) / 1000).toFixed(1) + 's';
window.publish = async (url, key, width, height, codec) => {
  const r = window.report;
  const media = await navigator.mediaDevices.getUserMedia({
    video: { width, height, frameRate: 30 }, audio: true,
  });
  document.getElementById('v').srcObject = media;
  const pc = new RTCPeerConnection();
  window.pc = pc;
  pc.oniceconnectionstatechange = () => r.states.push('ice:' + pc.iceConnectionState + '@' + at());
  pc.onconnectionstatechange = () => r.states.push('pc:' + pc.connectionState + '@' + at());
  for (const track of media.getTracks()) {
    const t = pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
    if (track.kind === 'video') {
      // Keep the resolution (a creator's choice), let the frame rate give.
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
  r.post = res.status;
  r.location = res.headers.get('Location');
  const answer = await res.text();
  if (res.status !== 201) {
    r.errors.push('POST ' + res.status + ': ' + answer);
    return;
  }
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
};
window.outbound = async () => {
  const out = {};
  const stats = await window.pc.getStats();
  const codecs = {};
  stats.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
  stats.forEach((s) => {
    if (s.type === 'outbound-rtp') {
      out[s.kind] = {
        packets: s.packetsSent, bytes: s.bytesSent, frames: s.framesEncoded,
        nacks: s.nackCount, plis: s.pliCount, codec: codecs[s.codecId],
        width: s.frameWidth, height: s.frameHeight,
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
window.unpublish = async (base) => {
  const r = window.report;
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
    '--allow-loopback-in-peer-connection',
    ...files,
  ],
});
let result = {};
try {
  const page = await browser.newPage();
  const base = new URL(args.url);
  const pageUrl = `${base.origin}/__whip_test_page`;
  await page.route(pageUrl, (route) =>
    route.fulfill({ status: 200, contentType: 'text/html', body: pageHtml }),
  );
  await page.goto(pageUrl);
  await page.evaluate(
    ([u, k, w, h, c]) => window.publish(u, k, w, h, c),
    [args.url, args.key, width, height, args.codec ?? 'H264'],
  );
  const report = await page.evaluate(() => window.report);
  if (report.post === 201) {
    await page.waitForTimeout(seconds * 1000);
    result.outbound = await page.evaluate(() => window.outbound());
    await page.evaluate((b) => window.unpublish(b), base.origin);
  }
  result = { ...(await page.evaluate(() => window.report)), ...result };
} catch (e) {
  result.errors = [...(result.errors ?? []), String(e)];
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
