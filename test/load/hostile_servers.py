#!/usr/bin/env python3
"""Hostile servers for test/load/run_hostile_test.py, each on its own port of 0.0.0.0:

  http PORT    a plain HTTP server whose page has a title (a well-behaved neighbour)
  flood PORT   streams bytes without end
  line PORT    sends one line that never ends
  bomb PORT    sends a small zlib stream that inflates to 1 GiB, then closes
  silent PORT  accepts and never answers
  reset PORT   accepts and resets every connection at once (SO_LINGER 0)

Usage: hostile_servers.py http=80 flood=7001 ...  Prints "ready" when every port listens.
Runs until killed.
"""
import socket
import struct
import sys
import threading
import zlib

TITLE = b"<html><head><title>Hostile Lab Title</title></head><body>ok</body></html>"


def bomb_bytes():
    c = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    parts = [c.compress(chunk) for _ in range(1024)]
    parts.append(c.flush())
    return b"".join(parts)


BOMB = None


def serve(kind, conn):
    try:
        if kind == "http":
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                more = conn.recv(4096)
                if not more:
                    return
                data += more
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n" % len(TITLE) + TITLE)
        elif kind == "flood":
            block = b"A" * 65536
            while True:
                conn.sendall(block)
        elif kind == "line":
            block = b"x" * 65536
            while True:
                conn.sendall(block)
        elif kind == "bomb":
            conn.sendall(BOMB)
        elif kind == "silent":
            conn.settimeout(120)
            while conn.recv(4096):
                pass
    except OSError:
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def listener(kind, port, ready):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(128)  # a stock backlog
    ready.release()
    while True:
        conn, _ = s.accept()
        if kind == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            continue
        threading.Thread(target=serve, args=(kind, conn), daemon=True).start()


def main():
    global BOMB
    specs = [a.split("=", 1) for a in sys.argv[1:]]
    if any(k == "bomb" for k, _ in specs):
        BOMB = bomb_bytes()
    ready = threading.Semaphore(0)
    for kind, port in specs:
        threading.Thread(target=listener, args=(kind, int(port), ready), daemon=True).start()
    for _ in specs:
        ready.acquire()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
