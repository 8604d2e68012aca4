// The creator panel at /: sign in with an API token, list and create
// streams, copy publish settings, rotate keys, toggle private, preview.
import { api, ApiError, clearToken, saveToken, savedToken } from './api.js';
import { setupPlanner } from './plan.js';
import { playlistUrl, startPlayer } from './player.js';

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 5000;
const NODES_MS = 2000;

const cards = new Map(); // stream name -> { el, stream, player, watchToken }
let refreshTimer = 0;
let nodesTimer = 0;
let toastTimer = 0;

function toast(text) {
  const t = $('toast');
  t.textContent = text;
  t.classList.add('on');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove('on'), 2500);
}

// ---- sign in / out -------------------------------------------------------

function showSignIn(message = '') {
  clearInterval(refreshTimer);
  clearInterval(nodesTimer);
  $('nodes-section').hidden = true;
  for (const c of cards.values()) stopPreview(c);
  cards.clear();
  $('streams').replaceChildren();
  $('app').hidden = true;
  $('signout').hidden = true;
  $('who').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message;
  $('token').focus();
}

async function enter() {
  $('signin').hidden = true;
  $('app').hidden = false;
  $('signout').hidden = false;
  $('who').hidden = false;
  $('who').textContent = 'Signed in';
  await refresh();
  clearInterval(refreshTimer);
  refreshTimer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
  clearInterval(nodesTimer);
  if (await refreshNodes()) {
    nodesTimer = setInterval(() => refreshNodes().catch(() => {}), NODES_MS);
  }
}

// ---- the node registry (admin only) ---------------------------------------

function fmtBps(bps) {
  if (bps >= 1e9) return `${(bps / 1e9).toFixed(1)} Gbit/s`;
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(1)} Mbit/s`;
  if (bps >= 1e3) return `${(bps / 1e3).toFixed(0)} kbit/s`;
  return `${bps} bit/s`;
}

function fmtAge(ms) {
  return ms < 1000 ? 'just now' : ms < 120000 ? `${Math.round(ms / 1000)} s ago` : `${Math.round(ms / 60000)} min ago`;
}

function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

/** Renders `GET /nodes`; false when the token is not the admin's. */
async function refreshNodes() {
  let nodes;
  try {
    nodes = await api('GET', '/nodes');
  } catch (err) {
    if (err.status === 403 || err.status === 401) {
      $('nodes-section').hidden = true;
      return false;
    }
    throw err;
  }
  $('nodes-section').hidden = false;
  $('nodes-empty').hidden = nodes.length > 0;
  const rows = nodes.map((n) => {
    const tr = document.createElement('tr');
    tr.dataset.node = n.id;
    const name = cell(n.id);
    const url = document.createElement('span');
    url.className = 'n-url muted mono';
    url.textContent = n.url;
    name.append(url);
    const state = document.createElement('td');
    const badge = document.createElement('span');
    badge.className = 'badge n-state';
    badge.dataset.state = n.state;
    badge.textContent = n.state;
    state.append(badge);
    const cap = n.capacity ? ` / ${n.capacity}` : '';
    const streams = cell(`${n.load.streams}${cap}`, 'num n-streams');
    // On hover: each stream, marked when it stands by for a backup
    // publisher alone or loops its fallback (its publisher dropped).
    const standby = new Set(n.standby ?? []);
    const fallback = new Set(n.fallback ?? []);
    streams.title = n.streams
      .map((s) => s + (fallback.has(s) ? ' (fallback)' : standby.has(s) ? ' (standby)' : ''))
      .join('\n');
    // Transcoders: their lease priority (a main over its standby) and the
    // transcode leases they hold, with epochs, on hover.
    const transcoder = n.role === 'transcode';
    const role = cell(transcoder ? `${n.role} · p${n.priority ?? 0}` : n.role, 'n-role');
    const held = n.leases ?? [];
    const leases = cell(transcoder ? String(held.length) : '–', 'num n-leases');
    leases.title = held.map((l) => `${l.stream} (epoch ${l.epoch})`).join('\n');
    tr.append(
      name,
      role,
      state,
      streams,
      leases,
      cell(`${Math.round(n.load.cpu * 100)} %`, 'num'),
      cell(fmtBps(n.load.egress_bps * 8), 'num'),
      cell(fmtAge(n.age_ms), 'n-age'),
    );
    return tr;
  });
  $('nodes').replaceChildren(...rows);
  const live = nodes.filter((n) => n.state === 'live').length;
  $('nodes-summary').textContent = nodes.length ? `${live} of ${nodes.length} live` : '';
  return true;
}

$('signin-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const token = $('token').value.trim();
  if (!token) {
    $('signin-error').textContent = 'Enter your API token.';
    return;
  }
  try {
    await api('GET', '/streams', undefined, token);
  } catch (err) {
    $('signin-error').textContent =
      err.status === 401 ? 'That token was not accepted.' : `Sign-in failed: ${err.message}`;
    return;
  }
  saveToken(token, $('remember').checked);
  $('token').value = '';
  $('signin-error').textContent = '';
  await enter();
});

$('signout').addEventListener('click', () => {
  clearToken();
  showSignIn();
});

// ---- API calls with the stored token -------------------------------------

async function call(method, path, body) {
  try {
    return await api(method, path, body);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      clearToken();
      showSignIn('Your session ended: sign in again.');
    }
    throw err;
  }
}

// ---- the stream list -----------------------------------------------------

async function refresh() {
  const { streams } = await call('GET', '/streams');
  const seen = new Set();
  for (const s of streams) {
    seen.add(s.name);
    const c = cards.get(s.name) || addCard(s);
    update(c, s);
  }
  for (const [name, c] of cards) {
    if (!seen.has(name)) removeCard(c);
  }
  // Order as the API lists them.
  const list = $('streams');
  for (const s of streams) list.append(cards.get(s.name).el);
  $('empty').hidden = streams.length > 0;
}

$('refresh').addEventListener('click', () =>
  refresh().then(() => toast('Updated'), (e) => toast(e.message)),
);

/** `rtmp://host:port/live/<key>` -> `rtmp://host:port/live`. */
function obsServer(rtmpUrl) {
  const i = rtmpUrl.lastIndexOf('/');
  return i > 'rtmp://'.length ? rtmpUrl.slice(0, i) : rtmpUrl;
}

/**
 * The viewer page of stream `s` on the server that plays it: the origin of
 * its `play` URL (another node in a cluster), else this one.
 */
function watchUrl(s, token) {
  const play = /^(https?:\/\/.*)\/live\/[^/?#]+\/index\.m3u8(?:[?#].*)?$/.exec(s.play || '');
  const page = `/watch/${encodeURIComponent(s.name)}`;
  const u = new URL(play ? play[1] + page : page, location.href);
  if (token) u.searchParams.set('token', token);
  return u.href;
}

/** The playlist of stream `s` where the API says it plays, with a token. */
function previewUrl(s, token) {
  if (!s.play) return playlistUrl(s.name, token);
  const u = new URL(s.play, location.href);
  if (token) u.searchParams.set('token', token);
  return u.href;
}

function addCard(stream) {
  const el = $('stream-tpl').content.firstElementChild.cloneNode(true);
  const c = { el, stream, player: null, watchToken: '', live: null };
  const q = (sel) => el.querySelector(sel);
  el.dataset.stream = stream.name;

  for (const b of el.querySelectorAll('button.copy')) {
    b.addEventListener('click', () => copy(q(b.dataset.copy).value, b));
  }
  q('.s-show').addEventListener('click', (e) => {
    const shown = e.currentTarget.getAttribute('aria-pressed') === 'true';
    for (const sel of ['.s-key', '.s-rtmp', '.s-srt', '.s-rtmp-backup']) q(sel).type = shown ? 'password' : 'text';
    e.currentTarget.setAttribute('aria-pressed', String(!shown));
    e.currentTarget.textContent = shown ? 'Show' : 'Hide';
  });
  q('.s-private-toggle').addEventListener('change', async (e) => {
    const box = e.currentTarget;
    const want = box.checked;
    box.disabled = true;
    try {
      const s = await call('PATCH', `/streams/${c.stream.name}`, { private: want });
      c.watchToken = '';
      update(c, s);
      toast(want ? `${s.name} is private: share watch links with tokens` : `${s.name} is public`);
      if (c.player) startPreview(c);
    } catch (err) {
      box.checked = !want;
      toast(`Could not change: ${err.message}`);
    } finally {
      box.disabled = false;
    }
  });
  q('.failover-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const save = q('.s-failover-save');
    const fallback = q('.s-fallback').value.trim();
    const timeout = q('.s-timeout').value.trim();
    save.disabled = true;
    try {
      const s = await call('PATCH', `/streams/${c.stream.name}`, {
        fallback: fallback || null,
        source_timeout_ms: timeout ? Number(timeout) : 0,
      });
      update(c, s, true);
      toast(`${s.name}: saved, from the next time the stream drops`);
    } catch (err) {
      toast(`Could not save: ${err.message}`);
    } finally {
      save.disabled = false;
    }
  });
  q('.s-rotate').addEventListener('click', async () => {
    const msg = `Rotate the key of "${c.stream.name}"? The old key stops working at once and a live publisher on it is disconnected.`;
    if (!confirm(msg)) return;
    try {
      const r = await call('POST', `/streams/${c.stream.name}/key`);
      update(c, { ...c.stream, key: r.key, publish: r.publish, live: false });
      toast('New key ready: update it in your encoder');
    } catch (err) {
      toast(`Could not rotate: ${err.message}`);
    }
  });
  q('.s-link').addEventListener('click', async () => {
    try {
      await newWatchToken(c);
      toast('New watch link ready: copy it to share');
    } catch (err) {
      toast(`Could not make a link: ${err.message}`);
    }
  });
  q('.s-delete').addEventListener('click', async () => {
    if (!confirm(`Delete the stream "${c.stream.name}"? This cannot be undone.`)) return;
    try {
      await call('DELETE', `/streams/${c.stream.name}`);
      removeCard(c);
      $('empty').hidden = cards.size > 0;
      toast('Stream deleted');
    } catch (err) {
      toast(`Could not delete: ${err.message}`);
    }
  });
  q('.s-golive').addEventListener('click', (e) => {
    const box = q('.golive');
    box.hidden = !box.hidden;
    e.currentTarget.setAttribute('aria-expanded', String(!box.hidden));
    if (box.hidden) stopBrowserLive(c);
  });
  q('.s-golive-start').addEventListener('click', () => startBrowserLive(c));
  q('.s-golive-stop').addEventListener('click', () => stopBrowserLive(c));
  q('.s-preview').addEventListener('click', () => {
    if (c.player) stopPreview(c);
    else startPreview(c);
  });
  q('.health').addEventListener('toggle', (e) => {
    clearInterval(c.chartTimer);
    if (!e.currentTarget.open) {
      if (c.chart) c.chart.destroy();
      c.chart = null;
      return;
    }
    loadHistory(c).catch(() => {});
    c.chartTimer = setInterval(() => loadHistory(c).catch(() => {}), HISTORY_MS);
  });
  q('.recordings').addEventListener('toggle', (e) => {
    clearInterval(c.recTimer);
    if (!e.currentTarget.open) return;
    loadRecordings(c);
    c.recTimer = setInterval(() => loadRecordings(c), REFRESH_MS);
  });

  cards.set(stream.name, c);
  $('streams').append(el);
  return c;
}

function update(c, s, saved = false) {
  c.stream = s;
  const q = (sel) => c.el.querySelector(sel);
  // The failover fields, unless the creator is editing them.
  const form = q('.failover-form');
  if (saved || !form.contains(document.activeElement)) {
    q('.s-fallback').value = s.fallback || '';
    q('.s-timeout').value = s.source_timeout_ms ? String(s.source_timeout_ms) : '';
  }
  q('.s-name').textContent = s.name;
  q('.s-title').textContent = s.title || '';
  q('.s-title').hidden = !s.title;
  q('.s-private').hidden = !s.private;
  q('.s-private-toggle').checked = Boolean(s.private);
  const liveBadge = q('.s-live');
  liveBadge.dataset.live = String(Boolean(s.live));
  // Which source viewers get, when it is not the main publisher.
  const standIn = s.live && s.source && s.source.active !== 'main' ? s.source.active : '';
  const slate = !s.live && s.source && s.source.active === 'fallback';
  liveBadge.textContent = s.live ? (standIn ? `Live · ${standIn}` : 'Live') : slate ? 'Offline · slate' : 'Offline';
  // HLS viewers, where the server counts them (`null` elsewhere).
  if (s.live && typeof s.viewers === 'number') liveBadge.textContent += ` · ${s.viewers} watching`;
  q('.s-obs-server').value = obsServer(s.publish.rtmp);
  // RTMPS when the server has a certificate: the same key over TLS.
  for (const row of c.el.querySelectorAll('.s-rtmps-row')) row.hidden = !s.publish.rtmps;
  q('.s-obs-server-tls').value = s.publish.rtmps ? obsServer(s.publish.rtmps) : '';
  q('.s-key').value = s.key;
  q('.s-rtmp').value = s.publish.rtmp;
  q('.s-srt').value = s.publish.srt;
  q('.s-whip').value = s.publish.whip;
  q('.s-rtmp-backup').value = s.publish.backup ? s.publish.backup.rtmp : '';
  q('.s-link').hidden = !s.private;
  const watch = s.private
    ? c.watchToken
      ? watchUrl(s, c.watchToken)
      : ''
    : watchUrl(s);
  q('.s-watch').value = watch;
  q('.s-watch').placeholder = s.private ? 'Private: press “New watch link”' : '';
  q('[data-copy=".s-watch"]').disabled = !watch;
  const open = q('.s-open');
  if (watch) open.href = watch;
  else open.removeAttribute('href');
  open.setAttribute('aria-disabled', String(!watch));
}

async function newWatchToken(c) {
  const r = await call('POST', `/streams/${c.stream.name}/play`, {});
  c.watchToken = r.token;
  update(c, c.stream);
  return r.token;
}

function removeCard(c) {
  clearInterval(c.recTimer);
  clearInterval(c.chartTimer);
  if (c.chart) c.chart.destroy();
  stopPreview(c);
  stopBrowserLive(c);
  c.el.remove();
  cards.delete(c.stream.name);
}

// ---- go live from this browser (WHIP) ------------------------------------

/** Publishes the camera (or the screen) and the microphone to the stream's
 * WHIP URL with its key: H.264 preferred, the resolution kept when the
 * network is short (the frame rate gives), the session URL from `Location`
 * kept to end it. */
async function startBrowserLive(c) {
  const q = (sel) => c.el.querySelector(sel);
  const msg = (text) => { q('.s-golive-msg').textContent = text; };
  if (c.live) return;
  const start = q('.s-golive-start');
  start.disabled = true;
  const live = { pc: null, media: null, location: null };
  c.live = live;
  try {
    msg('Asking for the camera and microphone…');
    const audio = await navigator.mediaDevices.getUserMedia({ audio: true }).catch(() => null);
    const video = q('.s-source').value === 'screen'
      ? await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 30 } })
      : await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720, frameRate: 30 } });
    const media = new MediaStream([...video.getVideoTracks(), ...(audio ? audio.getAudioTracks() : [])]);
    live.media = media;
    q('.s-local').srcObject = media;
    const pc = new RTCPeerConnection();
    live.pc = pc;
    for (const track of media.getTracks()) {
      const t = pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
      if (track.kind === 'video') {
        const h264 = RTCRtpSender.getCapabilities('video').codecs.filter((x) => x.mimeType === 'video/H264');
        if (h264.length) t.setCodecPreferences(h264);
        const params = t.sender.getParameters();
        params.degradationPreference = 'maintain-resolution';
        await t.sender.setParameters(params).catch(() => {});
      }
    }
    pc.onconnectionstatechange = () => {
      const state = pc.connectionState;
      if (state === 'connected') msg('Live from this browser.');
      else if (state === 'failed') msg('The connection to the server failed; press Stop and Start again.');
      else if (state === 'disconnected') msg('Connection lost; trying to get it back…');
    };
    await pc.setLocalDescription(await pc.createOffer());
    msg('Connecting…');
    const url = c.stream.publish.whip;
    const r = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${c.stream.key}` },
      body: pc.localDescription.sdp,
    });
    const body = await r.text();
    if (r.status !== 201) throw new Error(`the server answered ${r.status}: ${body.trim()}`);
    const loc = r.headers.get('Location');
    live.location = loc ? new URL(loc, url).href : null;
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
    q('.s-golive-stop').hidden = false;
    start.hidden = true;
  } catch (err) {
    msg(`Could not go live: ${err.message}`);
    await stopBrowserLive(c, false);
  } finally {
    start.disabled = false;
  }
}

/** Ends the browser's publish: DELETE of the session, tracks stopped. */
async function stopBrowserLive(c, say = true) {
  const live = c.live;
  if (!live) return;
  c.live = null;
  const q = (sel) => c.el.querySelector(sel);
  if (live.location) await fetch(live.location, { method: 'DELETE' }).catch(() => {});
  if (live.pc) live.pc.close();
  if (live.media) for (const t of live.media.getTracks()) t.stop();
  q('.s-local').srcObject = null;
  q('.s-golive-stop').hidden = true;
  q('.s-golive-start').hidden = false;
  if (say) q('.s-golive-msg').textContent = 'Stopped.';
}

// ---- preview -------------------------------------------------------------

const PREVIEW_TEXT = {
  loading: 'Loading…',
  offline: 'Not live yet: start publishing and the preview begins here.',
  unreachable: 'Cannot reach the server; retrying…',
  forbidden: 'The origin refused the preview token.',
  'missing-player': 'The player asset (hls.js) is not installed: run scripts/build-web.sh.',
  error: 'Playback failed.',
};

// ---- recordings ----------------------------------------------------------

function fmtBytes(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(n / 1e3))} kB`;
}

function fmtDuration(ms) {
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (x) => String(x).padStart(2, '0');
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

// ---- the last 15 minutes (GET /streams/{name}/history, uPlot) -------------

const HISTORY_MS = 5000;
const BAND = { backup: 'rgba(230, 160, 30, 0.22)', fallback: 'rgba(220, 60, 60, 0.18)', offline: 'rgba(128, 128, 128, 0.15)' };

/** Shades the plot where viewers got the backup, the stand-in or nothing. */
function sourceBands(c) {
  return {
    hooks: {
      drawClear: [(u) => {
        const [ts] = u.data;
        const sources = c.sources || [];
        const { ctx } = u;
        ctx.save();
        for (let i = 0; i < ts.length; i++) {
          const s = sources[i] || 'offline';
          if (s === 'main') continue;
          const x0 = u.valToPos(i > 0 ? ts[i - 1] : ts[i] - HISTORY_MS / 1000, 'x', true);
          const x1 = u.valToPos(ts[i], 'x', true);
          ctx.fillStyle = BAND[s] || BAND.offline;
          ctx.fillRect(Math.min(x0, x1), u.bbox.top, Math.abs(x1 - x0), u.bbox.height);
        }
        ctx.restore();
      }],
    },
  };
}

function chartOptions(c, width) {
  const css = getComputedStyle(document.body);
  const ink = css.getPropertyValue('--muted').trim() || '#667';
  const axis = { stroke: ink, grid: { stroke: 'rgba(128,128,128,0.15)' }, ticks: { stroke: 'rgba(128,128,128,0.3)' } };
  return {
    width,
    height: 200,
    scales: {
      // Up to now: the last 15 minutes, or since the first sample (at
      // least a minute) while the history is younger.
      x: {
        time: true,
        range: (u) => {
          const now = Date.now() / 1000;
          const first = u.data[0].length ? u.data[0][0] : now - 900;
          return [Math.max(now - 900, Math.min(first, now - 60)), now];
        },
      },
      kbps: { range: (_u, _min, max) => [0, Math.max(100, (max || 0) * 1.15)] },
      n: { range: (_u, _min, max) => [0, Math.max(4, Math.ceil((max || 0) * 1.25))] },
    },
    axes: [
      axis,
      { ...axis, scale: 'kbps', label: 'kbit/s', size: 56 },
      { ...axis, scale: 'n', side: 1, label: 'viewers · drops', grid: { show: false }, size: 48 },
    ],
    series: [
      {},
      { label: 'Ingest', scale: 'kbps', stroke: '#2a7de1', width: 2, fill: 'rgba(42, 125, 225, 0.08)',
        value: (_u, v) => (v == null ? '–' : `${Math.round(v)} kbit/s`) },
      { label: 'Viewers', scale: 'n', stroke: '#1a9c5b', width: 2, value: (_u, v) => (v == null ? '–' : String(v)) },
      { label: 'Drops', scale: 'n', stroke: '#d9412b', width: 0, points: { show: true, size: 7, fill: '#d9412b' },
        value: (_u, v) => (v == null ? '0' : String(v)) },
    ],
    plugins: [sourceBands(c)],
  };
}

/** Draws (or updates) the card's chart of its last 15 minutes. */
async function loadHistory(c) {
  const msg = c.el.querySelector('.s-health');
  const box = c.el.querySelector('.s-chart');
  const h = await api('GET', `/streams/${encodeURIComponent(c.stream.name)}/history`);
  if (!window.uPlot) {
    msg.textContent = 'The chart library is not installed: the operator can install it with scripts/build-web.sh.';
    return;
  }
  const s = h.samples;
  c.sources = s.map((x) => x.source || 'offline');
  const data = [
    s.map((x) => x.t / 1000),
    s.map((x) => x.bitrate_bps / 1000),
    s.map((x) => x.viewers),
    s.map((x) => (x.skips ? x.skips : null)),
  ];
  const width = Math.max(280, Math.floor(box.clientWidth));
  if (!c.chart) {
    box.replaceChildren();
    c.chart = new window.uPlot(chartOptions(c, width), data, box);
  } else {
    if (c.chart.width !== width) c.chart.setSize({ width, height: 200 });
    c.chart.setData(data);
  }
  box.dataset.samples = String(s.length);
  if (!s.length) {
    msg.textContent = 'No samples yet: the chart starts when the stream goes live on this server (a sample every 5 s).';
    return;
  }
  const last = s[s.length - 1];
  const every = h.every_ms;
  const on = (src) => s.filter((x) => (x.source || 'offline') === src).length * every;
  const drops = s.reduce((n, x) => n + x.skips, 0);
  const now = last.source ? `${last.source}, ${fmtBps(last.bitrate_bps)}` : 'offline';
  const watching = typeof last.viewers === 'number' ? ` · ${last.viewers} watching` : '';
  msg.textContent = `Now: ${now}${watching}. Last ${fmtDuration(s.length * every)}: `
    + `${drops} drops, ${fmtDuration(on('backup'))} on the backup, ${fmtDuration(on('fallback'))} on the stand-in, `
    + `${fmtDuration(on('offline'))} offline.`;
}

/** `url` with the stream's watch token when it is private. */
async function withToken(c, url) {
  if (!c.stream.private) return url;
  const token = c.watchToken || (await newWatchToken(c));
  const u = new URL(url, location.href);
  u.searchParams.set('token', token);
  return u.href;
}

/** Lists the stream's recorded events with play, download and delete. */
async function loadRecordings(c) {
  const q = (sel) => c.el.querySelector(sel);
  const msg = q('.s-rec-msg');
  let recs;
  try {
    ({ recordings: recs } = await call('GET', `/streams/${c.stream.name}/recordings`));
  } catch (err) {
    msg.textContent = `Cannot list recordings: ${err.message}`;
    return;
  }
  q('.rec-table').hidden = recs.length === 0;
  msg.textContent = recs.length ? '' : 'Nothing recorded yet (the stream records when its DVR depth is above 0).';
  const body = q('.s-recs');
  body.replaceChildren();
  for (const r of recs) {
    const tr = document.createElement('tr');
    tr.dataset.id = String(r.id);
    let stored = { local: 'This server', s3: 'S3', both: 'Server + S3' }[r.stored] || r.stored;
    if (r.recording) stored = 'Recording…';
    else if (r.upload) {
      const pct = r.upload.bytes_total ? Math.floor((100 * r.upload.bytes_done) / r.upload.bytes_total) : 0;
      stored += r.upload.state === 'uploading' ? ` · uploading ${pct}%` : ' · upload queued';
    }
    tr.append(
      cell(new Date(r.start_ms).toLocaleString()),
      cell(fmtDuration(r.duration_ms)),
      cell(fmtBytes(r.bytes)),
      cell(stored, 'rec-stored'),
    );
    const actions = document.createElement('td');
    actions.className = 'rec-actions';
    const play = document.createElement('button');
    play.type = 'button';
    play.className = 'btn small rec-play';
    play.textContent = 'Play';
    play.addEventListener('click', async () => {
      try {
        startPreview(c, await withToken(c, r.play));
      } catch (err) {
        toast(`Cannot play: ${err.message}`);
      }
    });
    const dl = document.createElement('a');
    dl.className = 'btn small ghost rec-download';
    dl.textContent = 'Download';
    dl.href = r.download || '#';
    dl.setAttribute('download', '');
    dl.addEventListener('click', async (e) => {
      // A private stream's download needs a token: add it at click time.
      if (!c.stream.private) return;
      e.preventDefault();
      try {
        location.href = await withToken(c, r.download);
      } catch (err) {
        toast(`Cannot download: ${err.message}`);
      }
    });
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'btn small danger rec-delete';
    del.textContent = 'Delete';
    del.disabled = r.recording;
    del.addEventListener('click', async () => {
      const when = new Date(r.start_ms).toLocaleString();
      if (!confirm(`Delete the recording of ${when}? It is removed from this server and S3.`)) return;
      try {
        await call('DELETE', `/streams/${c.stream.name}/recordings/${r.id}`);
        toast('Recording deleted');
        loadRecordings(c);
      } catch (err) {
        toast(`Could not delete: ${err.message}`);
      }
    });
    actions.append(play, dl, del);
    tr.append(actions);
    body.append(tr);
  }
}

async function startPreview(c, url = null) {
  stopPreview(c);
  const box = c.el.querySelector('.preview');
  const msg = box.querySelector('.player-msg');
  const btn = c.el.querySelector('.s-preview');
  box.hidden = false;
  btn.setAttribute('aria-expanded', 'true');
  btn.textContent = 'Close preview';
  let token = '';
  if (c.stream.private && !url) {
    try {
      token = c.watchToken || (await newWatchToken(c));
    } catch (err) {
      msg.textContent = `No preview token: ${err.message}`;
      return;
    }
  }
  const video = box.querySelector('video');
  c.player = startPlayer(video, url || previewUrl(c.stream, token), (state) => {
    msg.hidden = state === 'playing';
    msg.textContent = PREVIEW_TEXT[state] || '';
  });
}

function stopPreview(c) {
  if (c.player) c.player.stop();
  c.player = null;
  const box = c.el.querySelector('.preview');
  box.hidden = true;
  const btn = c.el.querySelector('.s-preview');
  btn.setAttribute('aria-expanded', 'false');
  btn.textContent = 'Preview';
}

// ---- create --------------------------------------------------------------

$('create-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = $('new-name').value.trim();
  const err = $('create-error');
  if (!/^[a-z0-9_-]{1,64}$/.test(name)) {
    err.textContent = 'Names are 1 to 64 characters of a–z, 0–9, “-” and “_”.';
    $('new-name').focus();
    return;
  }
  const body = { name, private: $('new-private').checked };
  const title = $('new-title').value.trim();
  if (title) body.title = title;
  try {
    const s = await call('POST', '/streams', body);
    err.textContent = '';
    $('create-form').reset();
    update(addCard(s), s);
    $('streams').prepend(cards.get(s.name).el);
    $('empty').hidden = true;
    cards.get(s.name).el.querySelector('.s-name').scrollIntoView({ block: 'nearest' });
    toast(`Created ${s.name}: copy the server and key into OBS`);
  } catch (ex) {
    err.textContent =
      ex.status === 409 ? `A stream named “${name}” already exists.` : `Could not create: ${ex.message}`;
  }
});

// ---- clipboard -----------------------------------------------------------

async function copy(text, button) {
  if (!text) return;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Plain http on a non-localhost address has no clipboard API.
    const ta = document.createElement('textarea');
    ta.value = text;
    ta.setAttribute('readonly', '');
    ta.className = 'offscreen';
    document.body.append(ta);
    ta.select();
    document.execCommand('copy');
    ta.remove();
  }
  const old = button.textContent;
  button.textContent = 'Copied';
  setTimeout(() => (button.textContent = old), 1200);
}

// ---- start ---------------------------------------------------------------

setupPlanner();
if (savedToken()) {
  enter().catch((err) => showSignIn(err.status === 401 ? '' : err.message));
} else {
  showSignIn();
}
