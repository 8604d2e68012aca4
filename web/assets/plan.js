// The panel's capacity planner: the form's inputs to POST /api/v1/plan
// (ugc_core::plan; server counts from what one core did in this project's
// benchmarks, whose sources the answer lists), the answer as a table.
import { api } from './api.js';

const $ = (id) => document.getElementById(id);

function ladder(text) {
  const spec = text.trim();
  if (!spec) return [];
  return spec.split(',').map((r) => {
    const [name, video, audio, extra] = r.trim().split(':');
    const v = Number(video);
    const a = Number(audio);
    if (!name || extra !== undefined || !Number.isFinite(v) || !Number.isFinite(a)) {
      throw new Error(`Ladder rung "${r.trim()}": write name:video_kbps:audio_kbps`);
    }
    return { name, video_kbps: v, audio_kbps: a };
  });
}

function request(form) {
  const f = new FormData(form);
  const n = (k) => Number(f.get(k));
  return {
    streams: n('streams'),
    input_video_kbps: n('input_video_kbps'),
    input_audio_kbps: n('input_audio_kbps'),
    ladder: ladder(String(f.get('ladder'))),
    viewers: n('viewers'),
    cdn_share: n('cdn_share') / 100,
    origins: n('origins'),
    dvr_hours: n('dvr_hours'),
    dvr_streams: n('dvr_streams'),
    cores: n('cores'),
    headroom: n('headroom') / 100,
  };
}

function mbps(x) {
  if (x >= 1e3) return `${(x / 1e3).toLocaleString(undefined, { maximumFractionDigits: 1 })} Gbit/s`;
  return `${x.toLocaleString(undefined, { maximumFractionDigits: 1 })} Mbit/s`;
}

function gb(x) {
  if (x >= 1e3) return `${(x / 1e3).toLocaleString(undefined, { maximumFractionDigits: 2 })} TB`;
  return `${x.toLocaleString(undefined, { maximumFractionDigits: 1 })} GB`;
}

function render(p) {
  const s = p.servers;
  const c = p.capacity;
  const rows = [
    ['Input (publishers to publishing servers)', mbps(p.input_mbps)],
    ['Ladder output', `${mbps(p.ladder_output_mbps)} (${p.ladder_output_note})`],
    ['Between nodes (inputs to transcoders, ladders to every origin)', mbps(p.inter_node_mbps)],
    ['To viewers', mbps(p.viewers_mbps)],
    ['Origin egress (CDN misses and its fill)', mbps(p.origin_egress_mbps)],
    ['DVR per origin, every rung', gb(p.dvr_ladder_gb)],
    ['DVR per origin, top rung only', gb(p.dvr_top_gb)],
    ['Publishing servers', `${s.publish} (${Math.round(c.streams_per_publish_server)} streams each)`],
    ['Transcoding servers', `${s.transcode} (1 standby; ${c.ladders_per_transcode_server.toFixed(1)} ladders each)`],
    ['Origin servers', `${s.origin} (${c.gbps_per_origin.toFixed(1)} Gbit/s each)`],
  ];
  const body = $('plan-result').tBodies[0];
  body.replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = k;
    const td = document.createElement('td');
    td.textContent = v;
    tr.append(th, td);
    return tr;
  }));
  $('plan-result').hidden = false;
  $('plan-note').textContent = `Servers of ${s.cores} cores with ${Math.round(s.headroom * 100)} % kept free, `
    + 'from what one core did in this project\'s benchmarks on a 2-core VM: measure your own hardware with the same scripts.';
  $('plan-sources').replaceChildren(...c.sources.map((t) => {
    const li = document.createElement('li');
    li.textContent = t;
    return li;
  }));
}

async function run(form) {
  $('plan-error').textContent = '';
  try {
    render(await api('POST', '/plan', request(form)));
  } catch (err) {
    $('plan-error').textContent = err.message;
  }
}

export function setupPlanner() {
  const form = $('plan-form');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    run(form);
  });
  $('plan').addEventListener('toggle', (e) => {
    if (e.currentTarget.open && $('plan-result').hidden) run(form);
  });
}
