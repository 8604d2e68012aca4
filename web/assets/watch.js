// The viewer page /watch/<stream>[?token=...]: needs no API, only the origin.
import { playlistUrl, startPlayer } from './player.js';

const $ = (id) => document.getElementById(id);
const stream = decodeURIComponent(location.pathname.replace(/^\/watch\//, '').replace(/\/$/, ''));
const token = new URLSearchParams(location.search).get('token') || '';

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
startPlayer(video, playlistUrl(stream, token), show);
