#!/usr/bin/env python3
"""Hardening probe (issue #17): N connections send half an HTTP request head
and stop (slowloris). Prints how many the server still holds over time and
how long a control viewer's request takes meanwhile.

usage: http-slowloris.py PID PORT N SECONDS
"""
import os
import socket
import sys
import time

pid, port, n, seconds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])


def fds():
    return len(os.listdir(f"/proc/{pid}/fd"))


def control():
    t = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n")
        while s.recv(65536):
            pass
    return (time.monotonic() - t) * 1000


base = fds()
t0 = time.monotonic()
attackers = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    attackers.append(s)
print(f"{n} attackers connected in {time.monotonic() - t0:.1f} s; server fds {base} -> {fds()}")
while time.monotonic() - t0 < seconds:
    time.sleep(5)
    print(f"  t={time.monotonic() - t0:4.0f} s: server fds {fds()}, control request {control():.0f} ms")
open_ = 0
for s in attackers:
    s.setblocking(False)
    try:
        open_ += s.recv(1) != b""
    except BlockingIOError:
        open_ += 1
    except OSError:
        pass
print(f"after {seconds:.0f} s: {open_} of {n} attacker connections still open")
