#!/usr/bin/env python3
"""Server-side LL-HLS / HLS measurements against a running ugc origin.

  ll_hls_probe.py avail  BASE_URL SECONDS PROGRESS    # part availability (LL-HLS)
  ll_hls_probe.py segavail BASE_URL SECONDS PROGRESS  # segment availability (classic)

BASE_URL is the media playlist, e.g. http://127.0.0.1:18080/live/bench/mono.m3u8.

Availability is measured against the publisher's clock, not the server's:
PROGRESS is a file of "<unix time> out_time_us=<us>" lines stamped as ffmpeg
(-re, -progress pipe:1 -stats_period 0.1) reports them, so the frame with
media time t was sent no later than min(stamp - out_time) + t. A part's
media time is the tfdt of its first video fragment (timescale from the init
segment). A blocking reload for the next part returns when the part exists;
`delay - duration` is what the server adds on top of the unavoidable wait
for the part's own frames (goal <= 50 ms).
"""
import struct
import datetime
import json
import re
import statistics
import sys
import time
import urllib.parse
import urllib.request


def pdt_ms(s):
    return datetime.datetime.fromisoformat(s.replace('Z', '+00:00')).timestamp() * 1000


def parse(text):
    """-> dict msn -> {pdt, parts: [dur_ms...]}, hint (msn, part)"""
    segs = {}
    msn = None
    seq = 0
    pending_pdt = None
    pending_parts = []
    hint = None
    for line in text.splitlines():
        if line.startswith('#EXT-X-MEDIA-SEQUENCE:'):
            seq = int(line.split(':')[1])
        elif line.startswith('#EXT-X-SKIP:'):
            seq += int(line.split('=')[1])
        elif line.startswith('#EXT-X-PROGRAM-DATE-TIME:'):
            pending_pdt = pdt_ms(line.split(':', 1)[1])
            pending_parts = []
        elif line.startswith('#EXT-X-PART:'):
            # part-<session>-<msn>.<part>.m4s (no session before #21).
            m = re.search(r'DURATION=([0-9.]+),URI="(part-(?:\d+-)?(\d+)\.(\d+)\.m4s)"', line)
            dur, pm, pi = float(m.group(1)) * 1000, int(m.group(3)), int(m.group(4))
            segs.setdefault(pm, {'pdt': pending_pdt, 'parts': {}, 'uris': {}, 'dur': None})
            segs[pm]['parts'][pi] = dur
            segs[pm]['uris'][pi] = m.group(2)
        elif line.startswith('#EXTINF:'):
            d = float(line.split(':')[1].rstrip(',')) * 1000
            segs.setdefault(seq, {'pdt': pending_pdt, 'parts': {}, 'uris': {}, 'dur': None})
            segs[seq]['dur'] = d
            segs[seq]['pdt'] = pending_pdt
        elif line.startswith('seg-'):
            seq += 1
        elif line.startswith('#EXT-X-PRELOAD-HINT:'):
            m = re.search(r'part-(?:\d+-)?(\d+)\.(\d+)\.m4s', line)
            hint = (int(m.group(1)), int(m.group(2)))
    return segs, hint


def get(url, timeout=15):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float('nan')


def summary(name, xs):
    if not xs:
        return {name: None}
    return {name: {'n': len(xs), 'p50': round(pct(xs, 50), 1), 'p95': round(pct(xs, 95), 1),
                   'max': round(max(xs), 1)}}


def boxes(data, name):
    """Offsets of the payloads of every box `name` at any depth we descend."""
    out = []
    def walk(buf, start, end):
        i = start
        while i + 8 <= end:
            size, typ = struct.unpack('>I4s', buf[i:i + 8])
            if size < 8:
                return
            if typ == name:
                out.append(i + 8)
            if typ in (b'moov', b'trak', b'mdia', b'moof', b'traf'):
                walk(buf, i + 8, i + size)
            i += size
    walk(data, 0, len(data))
    return out


def video_timescale(init):
    off = boxes(init, b'mdhd')[0]
    version = init[off]
    return struct.unpack('>I', init[off + 12:off + 16] if version == 0 else init[off + 20:off + 24])[0]


def first_tfdt(frag):
    off = boxes(frag, b'tfdt')[0]
    if frag[off] == 1:
        return struct.unpack('>Q', frag[off + 4:off + 12])[0]
    return struct.unpack('>I', frag[off + 4:off + 8])[0]


def send_clock(progress):
    """min(stamp - out_time) in ms: frame at media time t left at <= t + this."""
    best = None
    with open(progress) as f:
        for line in f:
            try:
                stamp, kv = line.split()
                us = int(kv.split('=')[1])
            except (ValueError, IndexError):
                continue
            if us <= 0:
                continue
            v = float(stamp) * 1000 - us / 1000
            best = v if best is None else min(best, v)
    return best


def avail(base, seconds, progress):
    end = time.time() + seconds
    prefix = base.rsplit('/', 1)[0]
    text = get(base)
    _, hint = parse(text)
    init_uri = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text).group(1)
    with urllib.request.urlopen(f'{prefix}/{init_uri}') as r:
        ts = video_timescale(r.read())
    got = []
    while time.time() < end and hint:
        m, p = hint
        text = get(f'{base}?_HLS_msn={m}&_HLS_part={p}')
        now = time.time() * 1000
        segs, hint = parse(text)
        seg = segs.get(m)
        if not seg or p not in seg['parts']:
            continue  # the segment closed before that part; ask for the next
        with urllib.request.urlopen(f"{prefix}/{seg['uris'][p]}") as r:
            t_ms = first_tfdt(r.read()) * 1000 / ts
        got.append((now, seg['parts'][p], t_ms))
    offset = send_clock(progress)
    delays, over = [], []
    for now, dur, t_ms in got:
        sent = offset + t_ms
        delays.append(now - sent)
        over.append(now - sent - dur)
    out = {}
    out.update(summary('part_available_after_first_frame_ms', delays))
    out.update(summary('part_available_minus_part_duration_ms', over))
    return out


def segavail(base, seconds, progress):
    end = time.time() + seconds
    prefix = base.rsplit('/', 1)[0]
    seen = set()
    first = True
    got = []
    ts = None
    while time.time() < end:
        text = get(base)
        now = time.time() * 1000
        if ts is None:
            init_uri = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text).group(1)
            with urllib.request.urlopen(f'{prefix}/{init_uri}') as r:
                ts = video_timescale(r.read())
        segs, _ = parse(text)
        for msn, s in segs.items():
            if s['dur'] is None or msn in seen:
                continue
            seen.add(msn)
            if not first:
                with urllib.request.urlopen(f'{prefix}/seg-{msn}.m4s') as r:
                    got.append((now, s['dur'], first_tfdt(r.read()) * 1000 / ts))
        first = False
        time.sleep(0.05)
    offset = send_clock(progress)
    delays, over = [], []
    for now, dur, t_ms in got:
        sent = offset + t_ms
        delays.append(now - sent)
        over.append(now - sent - dur)
    out = {}
    out.update(summary('segment_available_after_first_frame_ms', delays))
    out.update(summary('segment_available_minus_duration_ms', over))
    return out


def main():
    mode, base, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    if mode == 'avail':
        print(json.dumps(avail(base, seconds, sys.argv[4])))
    elif mode == 'segavail':
        print(json.dumps(segavail(base, seconds, sys.argv[4])))
    else:
        sys.exit(f'unknown mode {mode}')


if __name__ == '__main__':
    main()
