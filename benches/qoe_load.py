#!/usr/bin/env python3
"""Traffic of simulated HLS players against an origin, for benches/qoe-beacons.sh.

Usage: qoe_load.py PORT SECONDS BEACONS_PER_S VIEWER_REQS_PER_S BEACON_KIND [STREAM [VIEWERS]]

* BEACONS_PER_S: QoE beacons (POST /live/STREAM/qoe, form body) or, with
  BEACON_KIND=get, GETs of the multivariant playlist at the same rate (what
  any request costs), or with BEACON_KIND=nginx, POSTs to the same path of
  a server that answers 204 and nothing else (nginx: the floor of one
  request on this machine).
* VIEWER_REQS_PER_S: the players' own traffic: alternately a GET of the
  media playlist and of its newest segment (a player of 2 s segments makes
  one of each every 2 s: one request per second per viewer).

Requests go out on keep-alive connections from 64 loopback addresses, paced
on one schedule. Prints one line: requests sent by kind, status counts, and
how late the schedule ended (seconds; over ~1 s the client could not keep
the rate and the figures are not at the rate asked).
"""

import collections
import http.client
import re
import sys
import time

port, seconds = int(sys.argv[1]), float(sys.argv[2])
beacon_rate, viewer_rate = float(sys.argv[3]), float(sys.argv[4])
kind = sys.argv[5]
stream = sys.argv[6] if len(sys.argv) > 6 else "qoe"
addrs = [f"127.0.4.{i + 1}" for i in range(64)]
conns = {}
status = collections.Counter()
sent = collections.Counter()


def request(n, method, path, body=None, headers=None):
    a = addrs[n % len(addrs)]
    c = conns.get(a)
    if c is None:
        c = conns[a] = http.client.HTTPConnection(
            "127.0.0.1", port, source_address=(a, 0), timeout=5
        )
    try:
        c.request(method, path, body, headers or {})
        r = c.getresponse()
        data = r.read()
        status[r.status] += 1
        return data
    except Exception as e:  # a refused or reset request is counted, not fatal
        status[type(e).__name__] += 1
        conns.pop(a, None)
        return b""


newest_segment = None


def viewer_request(n):
    """A player's request: the media playlist, then its newest segment."""
    global newest_segment
    if n % 2 == 0 or newest_segment is None:
        body = request(n, "GET", f"/live/{stream}/mono.m3u8")
        uris = re.findall(rb"^(seg-[^\s]+)$", body, re.M)
        if uris:
            newest_segment = uris[-1].decode()
        sent["playlist"] += 1
    else:
        request(n, "GET", f"/live/{stream}/{newest_segment}")
        sent["segment"] += 1


def beacon(n, viewers):
    v = n % max(viewers, 1)
    if kind == "get":
        request(n, "GET", f"/live/{stream}/index.m3u8")
        sent["get"] += 1
        return
    body = f"sid=v{v}&played_ms=10000&latency_ms=3000"
    if n < viewers:
        body += "&startup_ms=800"
    if n % 50 == 7:
        body += "&stalls=400"
    request(
        n,
        "POST",
        f"/live/{stream}/qoe",
        body,
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    sent["beacon"] += 1


# Both schedules merged: the next due request of either goes first.
# VIEWERS play sessions take turns posting (default: 10 s worth of beacons).
viewers = int(sys.argv[7]) if len(sys.argv) > 7 and int(sys.argv[7]) > 0 else int(beacon_rate * 10)
start = time.monotonic()
nb = nv = 0
while True:
    due_b = start + nb / beacon_rate if beacon_rate > 0 else float("inf")
    due_v = start + nv / viewer_rate if viewer_rate > 0 else float("inf")
    due = min(due_b, due_v)
    if due - start >= seconds:
        break
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
    if due_b <= due_v:
        beacon(nb, viewers)
        nb += 1
    else:
        viewer_request(nv)
        nv += 1
late = time.monotonic() - start - seconds
print(dict(sent), dict(status), f"{late:.2f}")
