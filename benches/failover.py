#!/usr/bin/env python3
"""Failover figures (issue #15), against the built ugc-server.

A stream with a main and a backup ffmpeg publisher (640x360, 1 s GOPs).
KILLS times: kill main, time until the backup is the active source
(`ugc_stream_active_source` on /metrics, polled every 20 ms) and until the
first new segment of the live playlist, then restart main and time its
return (hysteresis 5 s, then its keyframe). Then both publishers are
killed KILLS/2 times: time until the slate is live. Last, the server's CPU
(utime+stime of its process) over SECONDS_CPU s with the stream live and
over SECONDS_CPU s on the slate.

usage: failover.py SERVER_BIN   (env KILLS=10 SECONDS_CPU=20)
"""
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = sys.argv[1]
KILLS = int(os.environ.get("KILLS", "10"))
SECONDS_CPU = int(os.environ.get("SECONDS_CPU", "20"))
ADMIN = "failover-bench-admin-token-0123456789"
HZ = os.sysconf("SC_CLK_TCK")


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get(url, token=None, body=None, method="GET"):
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def publisher(url):
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
         "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
         "-g", "30", "-c:a", "aac", "-f", "flv", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill(p):
    p.send_signal(signal.SIGKILL)
    p.wait()


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def main():
    data = tempfile.mkdtemp(prefix="ugc-failover-")
    http, rtmp, srt = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    env = dict(os.environ, UGC_ADMIN_TOKEN=ADMIN, UGC_LOG="warn")
    server = subprocess.Popen(
        [BIN, "--data", data, "--http", f"127.0.0.1:{http}",
         "--rtmp", f"127.0.0.1:{rtmp}", "--srt", f"127.0.0.1:{srt}",
         "--publisher-grace-s", "120", "--fallback", "slate"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{http}"
    try:
        for _ in range(100):
            if get(f"{base}/api/v1/health")[0] or get(f"{base}/metrics")[0] == 200:
                break
            time.sleep(0.1)
        st, text = get(f"{base}/api/v1/streams", ADMIN, b'{"name": "fo"}', "POST")
        assert st == 201, text
        key = re.search(r'"key"\s*:\s*"([^"]+)"', text).group(1)
        main_url = f"rtmp://127.0.0.1:{rtmp}/live/{key}"
        backup_url = f"rtmp://127.0.0.1:{rtmp}/backup/{key}"

        def active():
            st, text = get(f"{base}/metrics")
            m = re.search(r'^ugc_stream_active_source\{stream="live/fo"\} (\S+)$', text, re.M)
            return float(m.group(1)) if m else None

        def last_msn():
            st, text = get(f"{base}/live/fo/mono.m3u8")
            if st != 200:
                return None
            m = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)
            n = len(re.findall(r"^#EXTINF", text, re.M))
            return int(m.group(1)) + n if m else None

        def wait(pred, limit=30.0):
            t0 = time.monotonic()
            while time.monotonic() - t0 < limit:
                if pred():
                    return time.monotonic() - t0
                time.sleep(0.02)
            raise SystemExit("timed out")

        main_p = publisher(main_url)
        wait(lambda: last_msn() is not None and last_msn() >= 2)
        backup_p = publisher(backup_url)
        time.sleep(3)
        to_backup, to_segment, back = [], [], []
        for _ in range(KILLS):
            seg0 = last_msn()
            kill(main_p)
            t0 = time.monotonic()
            wait(lambda: active() == 1.0)
            to_backup.append(time.monotonic() - t0)
            wait(lambda: (last_msn() or 0) > seg0)
            to_segment.append(time.monotonic() - t0)
            main_p = publisher(main_url)
            back.append(wait(lambda: active() == 0.0))
            time.sleep(1)
        to_slate = []
        for _ in range(max(1, KILLS // 2)):
            kill(main_p)
            kill(backup_p)
            to_slate.append(wait(lambda: active() == 2.0))
            main_p = publisher(main_url)
            backup_p = publisher(backup_url)
            wait(lambda: active() == 0.0)
            time.sleep(1)

        def cpu_s():
            with open(f"/proc/{server.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / HZ

        kill(backup_p)
        time.sleep(2)
        c0 = cpu_s()
        time.sleep(SECONDS_CPU)
        live_cpu = (cpu_s() - c0) / SECONDS_CPU
        kill(main_p)
        wait(lambda: active() == 2.0)
        time.sleep(2)
        c0 = cpu_s()
        time.sleep(SECONDS_CPU)
        slate_cpu = (cpu_s() - c0) / SECONDS_CPU

        def row(name, v):
            print(f"{name:<34} n={len(v):<3} p50={statistics.median(v) * 1000:7.0f} ms"
                  f"  p95={pct(v, 0.95) * 1000:7.0f} ms  max={max(v) * 1000:7.0f} ms")

        row("kill main -> backup live", to_backup)
        row("kill main -> next segment", to_segment)
        row("main back -> main live", back)
        row("kill both -> slate live", to_slate)
        print(f"server CPU, stream live (1 publisher): {live_cpu * 100:5.1f} % of a core")
        print(f"server CPU, stream on the slate:       {slate_cpu * 100:5.1f} % of a core")
        print(f"ratio slate / live: {slate_cpu / live_cpu:.2f}")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        subprocess.run(["rm", "-rf", data])


if __name__ == "__main__":
    main()
