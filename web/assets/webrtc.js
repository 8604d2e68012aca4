// Plays a live stream over WebRTC (WHEP: POST /whep/<stream>) in a
// <video>, with sub-second delay. Same contract as player.js's
// startPlayer: onState(state) with 'loading', 'playing', 'offline' (404:
// not live yet; retried), 'unreachable' (network error, busy server or the
// connection dropped; retried), 'forbidden' (403; not retried), 'error'.
// The play token goes as a bearer. (WebRTC carries Opus, not AAC: the
// server re-encodes an RTMP stream's AAC, unless --aac-to-opus is off.)

const RETRY_MS = 3000;

/** Starts playing `stream` in `video` over WHEP; returns { stop() }. */
export function startWebRtc(video, stream, token, onState) {
  let pc = null;
  let session = null;
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
    if (session) {
      fetch(session, { method: 'DELETE' }).catch(() => {});
      session = null;
    }
    if (pc) {
      pc.close();
      pc = null;
    }
    video.srcObject = null;
  };
  const retry = (state) => {
    teardown();
    report(state);
    if (!stopped) timer = setTimeout(attempt, RETRY_MS);
  };

  video.addEventListener('playing', () => report('playing'), { signal: events.signal });

  async function attempt() {
    if (stopped) return;
    if (!window.RTCPeerConnection) {
      report('error');
      return;
    }
    if (last !== 'offline' && last !== 'unreachable') report('loading');
    const peer = new RTCPeerConnection();
    pc = peer;
    const media = new MediaStream();
    peer.ontrack = (e) => {
      media.addTrack(e.track);
      video.srcObject = media;
      video.play().catch(() => {
        // Autoplay refused: the controls are there for a click.
      });
    };
    peer.onconnectionstatechange = () => {
      if (pc === peer && ['failed', 'disconnected', 'closed'].includes(peer.connectionState)) {
        retry('unreachable');
      }
    };
    peer.addTransceiver('video', { direction: 'recvonly' });
    peer.addTransceiver('audio', { direction: 'recvonly' });
    await peer.setLocalDescription(await peer.createOffer());
    let res;
    try {
      const headers = { 'Content-Type': 'application/sdp' };
      if (token) headers.Authorization = `Bearer ${token}`;
      res = await fetch(`/whep/${encodeURIComponent(stream)}`, {
        method: 'POST',
        headers,
        body: peer.localDescription.sdp,
      });
    } catch {
      return retry('unreachable');
    }
    if (stopped || pc !== peer) return;
    if (res.status === 403) {
      teardown();
      report('forbidden');
      return;
    }
    if (res.status === 404) return retry('offline');
    if (res.status !== 201) return retry('unreachable');
    session = res.headers.get('Location');
    try {
      await peer.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    } catch {
      teardown();
      report('error');
    }
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
