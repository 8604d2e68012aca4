// Plays a live HLS playlist in a <video>: hls.js over Media Source
// Extensions (served from /vendor/hls.min.js), else the browser's own HLS.
// Reports what happens through onState(state) with state one of:
//   'loading', 'playing', 'offline' (404: not live yet; retried),
//   'unreachable' (network error; retried), 'forbidden' (403: private
//   stream, missing or refused token; not retried), 'missing-player'
//   (hls.js asset not installed and no native HLS), 'error'.

const RETRY_MS = 3000;

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
