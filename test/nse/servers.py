#!/usr/bin/env python3
"""Local services for the socket test scripts (test/nse/socket_*.nse).

Starts, on ephemeral 127.0.0.1 ports:
  tcp       TCP echo (echoes every chunk back)
  udp       UDP echo (echoes every datagram back to its sender)
  banner    TCP: sends "one\ntwo\nthree" (no final newline) and closes
  tls       TLS echo, self-signed certificate CN=nsefleet-test (generated with openssl)
  starttls  TCP: answers the line "STARTTLS" with "OK\r\n", then TLS echo
  closed    a port nothing listens on (connect is refused)
Prints one line "tcp=N,udp=N,banner=N,tls=N,starttls=N,closed=N" (ready to paste into
--script-args), flushes, and serves until --lifetime seconds pass (default 120) or stdin
closes when --stdin is given.
"""
import argparse
import os
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"


def make_cert(d):
    key, crt = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=nsefleet-test/O=nsefleet", "-keyout", key, "-out", crt],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return key, crt


def echo(conn):
    conn.settimeout(30)
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)
    except (OSError, ssl.SSLError):
        return


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def tcp_server(handle):
    class H(socketserver.BaseRequestHandler):
        def handle(self):
            handle(self.request)
    s = Server((HOST, 0), H)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s.server_address[1]


def udp_echo():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))

    def run():
        while True:
            data, peer = s.recvfrom(65536)
            s.sendto(data, peer)
    threading.Thread(target=run, daemon=True).start()
    return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lifetime", type=float, default=120)
    ap.add_argument("--stdin", action="store_true", help="also stop when stdin closes")
    a = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="nse-servers-")
    key, crt = make_cert(tmp.name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)

    def banner(conn):
        conn.sendall(b"one\ntwo\nthree")
        conn.close()

    def tls(conn):
        try:
            conn.settimeout(30)
            echo(ctx.wrap_socket(conn, server_side=True))
        except (OSError, ssl.SSLError):
            pass

    def starttls(conn):
        conn.settimeout(30)
        line = b""
        try:
            while not line.endswith(b"\n") and len(line) < 1024:
                c = conn.recv(1)
                if not c:
                    return
                line += c
            if line.strip() != b"STARTTLS":
                conn.sendall(b"ERR\r\n")
                return
            conn.sendall(b"OK\r\n")
            echo(ctx.wrap_socket(conn, server_side=True))
        except (OSError, ssl.SSLError):
            pass

    closed = socket.socket()
    closed.bind((HOST, 0))  # bound, never listening: connects are refused
    ports = {
        "tcp": tcp_server(echo),
        "udp": udp_echo(),
        "banner": tcp_server(banner),
        "tls": tcp_server(tls),
        "starttls": tcp_server(starttls),
        "closed": closed.getsockname()[1],
    }
    print(",".join(f"{k}={v}" for k, v in ports.items()), flush=True)

    if a.stdin:
        threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    deadline = time.monotonic() + a.lifetime
    while time.monotonic() < deadline:
        time.sleep(0.2)
    tmp.cleanup()


if __name__ == "__main__":
    main()
