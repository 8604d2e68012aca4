// The viewer page /watch/<stream>[?token=...][&mode=webrtc]: needs no API,
// only the origin. HLS by default; "Low latency" (mode=webrtc) plays over
// WebRTC (WHEP) instead.
import { playlistUrl, startPlayer } from './player.js';
import { startWebRtc } from './webrtc.js';

const $ = (id) => document.getElementById(id);
const stream = decodeURIComponent(location.pathname.replace(/^\/watch\//, '').replace(/\/$/, ''));
const params = new URLSearchParams(location.search);
const token = params.get('token') || '';

$('stream-name').textContent = stream;
document.title = `${stream} · ugc`;

const video = $('video');
const msg = $('msg');
const live = $('live');

const MESSAGES = {
  loading: ['Loading…', ''],
  offline: ['The stream is offline', 'It will start here as soon as the creator goes live.'],
  unreachable: ['Cannot reach the server', 'Retrying…'],
  'missing-player': [
    'The video player is not installed',
    'This server lacks its player asset (hls.js). The operator can install it with scripts/build-web.sh.',
  ],
  error: ['Playback failed', 'Reload the page to try again.'],
};

function forbiddenMessage() {
  return token
    ? ['This watch link was refused',
       'It has expired, was revoked, or was issued for another viewer. Ask the creator for a new link.']
    : ['This stream is private',
       'You need a watch link with an access token from the creator (…/watch/' + stream + '?token=…).'];
}

function show(state) {
  const playing = state === 'playing';
  live.dataset.live = String(playing);
  live.textContent = playing ? 'Live' : 'Offline';
  document.body.dataset.state = state;
  if (playing) {
    msg.hidden = true;
    return;
  }
  const [title, text] = state === 'forbidden' ? forbiddenMessage() : MESSAGES[state] || MESSAGES.error;
  $('msg-title').textContent = title;
  $('msg-text').textContent = text;
  msg.dataset.state = state;
  msg.hidden = false;
}

// Module scripts run after deferred classic ones, so hls.js (if present) is loaded.
const webrtc = $('webrtc');
webrtc.checked = params.get('mode') === 'webrtc';
let player = null;
function play() {
  if (player) player.stop();
  video.dataset.mode = webrtc.checked ? 'webrtc' : 'hls';
  player = webrtc.checked
    ? startWebRtc(video, stream, token, show)
    : startPlayer(video, playlistUrl(stream, token), show);
}
webrtc.addEventListener('change', () => {
  if (webrtc.checked) params.set('mode', 'webrtc');
  else params.delete('mode');
  const q = params.toString();
  history.replaceState(null, '', location.pathname + (q ? `?${q}` : ''));
  play();
});
play();
