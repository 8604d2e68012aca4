// Plays a live HLS playlist in a <video>: hls.js over Media Source
// Extensions (served from /vendor/hls.min.js), else the browser's own HLS.
// Reports what happens through onState(state) with state one of:
//   'loading', 'playing', 'offline' (404: not live yet; retried),
//   'unreachable' (network error; retried), 'forbidden' (403: private
//   stream, missing or refused token; not retried), 'missing-player'
//   (hls.js asset not installed and no native HLS), 'error'.
// Once it plays, it reports the viewer's experience to the origin (QoE
// beacons: startup time, stalls, rendition switches, errors, latency;
// ugc_core::qoe) every BEACON_MS (or what the origin's multivariant
// playlist says: #EXT-X-SESSION-DATA com.ugc.qoe-interval, in seconds) and
// when it stops.

const RETRY_MS = 3000;
const BEACON_MS = 20000;
const INTERVAL_DATA_ID = 'com.ugc.qoe-interval';
// hls.js reports every stall as a non-fatal error too: stalls are counted
// as stalls, not errors.
const STALL_DETAILS = new Set(['bufferStalledError', 'bufferNudgeOnStall', 'bufferSeekOverHole']);

/** The QoE beacon URL of a playlist URL: `qoe` beside it, same query (token). */
export function beaconUrl(url) {
  const u = new URL(url, location.href);
  u.pathname = u.pathname.replace(/[^/]*$/, 'qoe');
  return u.href;
}

function randomSessionId() {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * What one viewer's player experiences, sent to the origin as beacons
 * (form bodies, which sendBeacon posts without a CORS preflight).
 */
class QoeReporter {
  constructor(video, url) {
    this.url = beaconUrl(url);
    this.video = video;
    this.sid = randomSessionId();
    this.loadStart = 0;
    this.startupMs = null;
    this.started = false;
    this.stallStart = 0;
    this.stalls = [];
    this.playedMs = 0;
    this.lastTime = null;
    this.switches = 0;
    this.levelSeen = false;
    this.errors = { network: 0, media: 0, other: 0 };
    this.fatal = 0;
    this.hls = null;
    this.timer = 0;
    this.interval = BEACON_MS;
    this.events = new AbortController();
    const on = (type, f) => video.addEventListener(type, f, { signal: this.events.signal });
    on('playing', () => this.playing());
    on('waiting', () => {
      if (this.started && !this.stallStart) this.stallStart = performance.now();
    });
    on('timeupdate', () => {
      const t = video.currentTime;
      // Seeks and jumps over holes are not playing time.
      if (this.lastTime !== null && t > this.lastTime && t - this.lastTime < 5) {
        this.playedMs += (t - this.lastTime) * 1000;
      }
      this.lastTime = t;
    });
    window.addEventListener('pagehide', () => this.end(), { signal: this.events.signal });
  }

  /** A new attempt to load (the first, or after an error). */
  loading(hls) {
    this.hls = hls;
    this.lastTime = null;
    if (!this.started) this.loadStart = performance.now();
    if (!hls) return;
    const Hls = window.Hls;
    hls.on(Hls.Events.MANIFEST_LOADED, (_e, data) => {
      // The origin's beacon interval (5-300 s), else the default.
      const said = data.sessionData && data.sessionData[INTERVAL_DATA_ID];
      const s = Number(said && said.VALUE);
      if (Number.isFinite(s) && s >= 5 && s <= 300) this.every(s * 1000);
    });
    hls.on(Hls.Events.MANIFEST_PARSED, (_e, data) => {
      // The origin's viewer session id in the variant URIs (vs), when it
      // counts playlist requests: one viewer, counted once by both.
      try {
        const vs = new URL(data.levels[0].url, location.href).searchParams.get('vs');
        if (vs && /^[A-Za-z0-9]{1,64}$/.test(vs)) this.sid = vs;
      } catch {
        // No level URL: keep the random id.
      }
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, () => {
      if (this.levelSeen) this.switches += 1;
      this.levelSeen = true;
    });
    hls.on(Hls.Events.ERROR, (_e, data) => {
      if (STALL_DETAILS.has(data.details)) return;
      const type = data.type === Hls.ErrorTypes.NETWORK_ERROR ? 'network'
        : data.type === Hls.ErrorTypes.MEDIA_ERROR ? 'media' : 'other';
      this.errors[type] += 1;
      if (data.fatal) this.fatal += 1;
    });
  }

  playing() {
    const now = performance.now();
    if (!this.started) {
      this.started = true;
      this.startupMs = now - this.loadStart;
      this.send(false);
      this.timer = setInterval(() => this.send(false), this.interval);
    } else if (this.stallStart) {
      this.stalls.push(now - this.stallStart);
      this.stallStart = 0;
    }
  }

  /** Beacons every `ms` from now on (the running timer too). */
  every(ms) {
    if (ms === this.interval) return;
    this.interval = ms;
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = setInterval(() => this.send(false), ms);
    }
  }

  send(end) {
    if (!this.started) return;
    const clamp = (ms) => Math.min(600000, Math.max(0, Math.round(ms)));
    const p = new URLSearchParams({ sid: this.sid });
    if (this.startupMs !== null) p.set('startup_ms', String(clamp(this.startupMs)));
    if (this.stalls.length) p.set('stalls', this.stalls.slice(0, 32).map(clamp).join(','));
    p.set('played_ms', String(clamp(this.playedMs)));
    if (this.switches) p.set('switches', String(Math.min(this.switches, 10000)));
    for (const [type, n] of Object.entries(this.errors)) {
      if (n) p.set(`err_${type}`, String(Math.min(n, 10000)));
    }
    if (this.fatal) p.set('fatal', String(Math.min(this.fatal, 10000)));
    const latency = this.hls && this.hls.latency;
    if (Number.isFinite(latency) && latency > 0) p.set('latency_ms', String(clamp(latency * 1000)));
    if (end) p.set('end', '1');
    const body = p.toString();
    const queued = navigator.sendBeacon
      && navigator.sendBeacon(this.url, new Blob([body], { type: 'application/x-www-form-urlencoded' }));
    if (!queued) {
      fetch(this.url, {
        method: 'POST', body, keepalive: true,
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      }).catch(() => {});
    }
    this.startupMs = null;
    this.stalls = [];
    this.playedMs = 0;
    this.switches = 0;
    this.errors = { network: 0, media: 0, other: 0 };
    this.fatal = 0;
  }

  /** The player stopped: a last beacon, and no more. */
  end() {
    clearInterval(this.timer);
    if (this.started) this.send(true);
    this.started = false;
    this.events.abort();
  }
}

export function hasPlayer(video) {
  const Hls = window.Hls;
  return Boolean((Hls && Hls.isSupported()) || video.canPlayType('application/vnd.apple.mpegurl'));
}

/** Starts playing `url` in `video`; returns { stop() }. */
export function startPlayer(video, url, onState) {
  let hls = null;
  let timer = 0;
  let stopped = false;
  let last = '';
  const events = new AbortController();
  const qoe = new QoeReporter(video, url);
  const report = (s) => {
    if (s !== last) {
      last = s;
      onState(s);
    }
  };

  const teardown = () => {
    if (hls) {
      hls.destroy();
      hls = null;
    }
    video.removeAttribute('src');
    video.load();
  };
  const retry = (state) => {
    teardown();
    report(state);
    if (!stopped) timer = setTimeout(attempt, RETRY_MS);
  };
  const forbid = () => {
    teardown();
    report('forbidden');
  };

  video.addEventListener('playing', () => report('playing'), { signal: events.signal });

  async function attempt() {
    if (stopped) return;
    if (!hasPlayer(video)) {
      report('missing-player');
      return;
    }
    if (last !== 'offline' && last !== 'unreachable') report('loading');
    // Ask the origin first: a 403 or 404 is a clearer answer than a player error.
    let status = 0;
    try {
      status = (await fetch(url, { cache: 'no-store' })).status;
    } catch {
      status = 0;
    }
    if (stopped) return;
    if (status === 403) return forbid();
    if (status !== 200) return retry(status === 404 ? 'offline' : 'unreachable');

    const Hls = window.Hls;
    if (Hls && Hls.isSupported()) {
      // Catch-up: up to 1.2x speed while playback is behind the target
      // latency (a slow start, a stall), so it does not stay behind for
      // the whole session. tests/browser/play.mjs plays with the same.
      hls = new Hls({ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.2, backBufferLength: 30 });
      qoe.loading(hls);
      hls.on(Hls.Events.ERROR, (_event, data) => {
        const code = data.response && data.response.code;
        if (code === 403) return forbid();
        if (!data.fatal) return;
        if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
          hls.recoverMediaError();
          return;
        }
        retry(code === 404 ? 'offline' : 'unreachable');
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    } else {
      qoe.loading(null);
      video.src = url;
      video.addEventListener('error', () => retry('offline'), { once: true, signal: events.signal });
    }
    video.play().catch(() => {
      // Autoplay refused: the controls are there for a click.
    });
  }

  attempt();
  return {
    stop() {
      stopped = true;
      qoe.end();
      clearTimeout(timer);
      events.abort();
      teardown();
    },
  };
}

/** The origin's playlist URL of a stream, with an optional play token. */
export function playlistUrl(stream, token) {
  const base = `/live/${encodeURIComponent(stream)}/index.m3u8`;
  return token ? `${base}?token=${encodeURIComponent(token)}` : base;
}
