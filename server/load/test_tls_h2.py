#!/usr/bin/env python3
"""sluice-load over TLS and HTTP/2.

Two parts:

- Stub servers (Python standard library only): an HTTP/2 server written
  with raw frames (h2c, and h2 over TLS via ALPN) whose answers are chosen
  to exercise the client's accounting (refused and reset streams, GOAWAY,
  a body shorter than its content-length, large bodies against the flow
  control windows), and the HTTP/1.1 stub of test_responses.py behind TLS.
- nginx (nginx-light, see scripts/install-deps), when installed with the
  http2 and ssl modules: the counts sluice-load reports must match nginx's
  access log. Skipped, and said so, when nginx is missing.

The certificate is generated at run time with the openssl command.

    test_tls_h2.py PATH/TO/sluice-load
"""
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_responses  # noqa: E402  (the HTTP/1.1 stub)

EXE = None
CERT = KEY = None

# ---- HTTP/2 stub ----------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
NO_ERROR, INTERNAL_ERROR, REFUSED_STREAM = 0, 2, 7

# HPACK, by hand: ":status: 200" / "404" are static entries 8 / 13;
# content-length is static name 28 (literal without indexing: 0x0f 0x0d).
STATUS_200, STATUS_404 = b"\x88", b"\x8d"


def content_length(n):
    v = str(n).encode()
    return b"\x0f\x0d" + bytes([len(v)]) + v


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        data = conn.recv(n - len(buf))
        if not data:
            return None
        buf += data
    return buf


def h2_serve(conn, mode, stats):
    """One connection: answers each request (HEADERS or DATA with
    END_STREAM) as `mode` says."""
    conn.settimeout(30)
    answered = 0
    try:
        if recv_exact(conn, len(PREFACE)) != PREFACE:
            return
        # large windows, so that request bodies flow without WINDOW_UPDATEs
        conn.sendall(frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 1 << 30)) +
                     frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", (1 << 30) - 65535)))
        while True:
            hdr = recv_exact(conn, 9)
            if hdr is None:
                return
            length = int.from_bytes(hdr[:3], "big")
            ftype, flags = hdr[3], hdr[4]
            sid = int.from_bytes(hdr[5:9], "big") & 0x7FFFFFFF
            payload = recv_exact(conn, length) if length else b""
            if payload is None:
                return
            if ftype == SETTINGS and not flags & ACK:
                conn.sendall(frame(SETTINGS, ACK, 0))
            elif ftype == PING and not flags & ACK:
                conn.sendall(frame(PING, ACK, 0, payload))
            elif ftype == GOAWAY:
                return
            elif ftype in (HEADERS, DATA) and flags & END_STREAM:
                with stats["lock"]:
                    stats["requests"] += 1
                out = b""
                if mode == "ok":
                    out = frame(HEADERS, END_HEADERS, sid, STATUS_200 + content_length(5)) + \
                        frame(DATA, END_STREAM, sid, b"hello")
                elif mode == "slow":
                    time.sleep(0.05)
                    out = frame(HEADERS, END_HEADERS | END_STREAM, sid, STATUS_200)
                elif mode == "404":
                    out = frame(HEADERS, END_HEADERS | END_STREAM, sid, STATUS_404)
                elif mode == "short":
                    # 5 bytes where 100 were announced: a broken response
                    out = frame(HEADERS, END_HEADERS, sid, STATUS_200 + content_length(100)) + \
                        frame(DATA, END_STREAM, sid, b"hello")
                elif mode == "big":
                    # 1 MiB: more than HTTP/2's default 64 KiB windows allow
                    out = frame(HEADERS, END_HEADERS, sid, STATUS_200 + content_length(1 << 20))
                    chunk = b"x" * 16384
                    for i in range(64):
                        out += frame(DATA, END_STREAM if i == 63 else 0, sid, chunk)
                elif mode == "refuse":
                    # every other stream refused: never processed, sent again
                    if (sid // 2) % 2 == 0:
                        out = frame(RST_STREAM, 0, sid, struct.pack(">I", REFUSED_STREAM))
                        with stats["lock"]:
                            stats["refused"] += 1
                    else:
                        out = frame(HEADERS, END_HEADERS | END_STREAM, sid, STATUS_200)
                elif mode == "reset":
                    out = frame(RST_STREAM, 0, sid, struct.pack(">I", INTERNAL_ERROR))
                elif mode == "goaway":
                    # 5 answers per connection, then GOAWAY naming the last
                    # one answered, and close
                    if answered == 5:
                        conn.sendall(frame(GOAWAY, 0, 0, struct.pack(">II", stats["last"].get(conn, 0), NO_ERROR)))
                        time.sleep(0.05)
                        return
                    out = frame(HEADERS, END_HEADERS | END_STREAM, sid, STATUS_200)
                    stats["last"][conn] = sid
                answered += 1
                if out:
                    conn.sendall(out)
    except (OSError, ssl.SSLError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def garbage_serve(conn, mode, stats):
    """A plain HTTP/1.1 server's answer to whatever it is sent."""
    conn.settimeout(10)
    try:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    except OSError:
        pass
    finally:
        conn.close()


def h1_serve(conn, mode, stats):
    test_responses.serve(conn)


class Stub:
    """A threaded server on 127.0.0.1; tls: wrap each connection (ALPN)."""

    def __init__(self, handler, mode=None, tls_alpn=None):
        self.handler, self.mode = handler, mode
        self.stats = {"lock": threading.Lock(), "requests": 0, "refused": 0, "last": {}}
        self.ctx = None
        if tls_alpn:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(CERT, KEY)
            self.ctx.set_alpn_protocols(tls_alpn)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.conn_main, args=(c,), daemon=True).start()

    def conn_main(self, c):
        if self.ctx:
            try:
                c.settimeout(10)
                c = self.ctx.wrap_socket(c, server_side=True)
            except (OSError, ssl.SSLError):
                c.close()
                return
        self.handler(c, self.mode, self.stats)

    def url(self, path="/"):
        return f"{'https' if self.ctx else 'http'}://127.0.0.1:{self.port}{path}"

    def close(self):
        self.lsock.close()


# ---- running sluice-load ----------------------------------------------------


def run(url, *args, n=None, dur=None, timeout=60):
    cmd = [EXE, "--json", "-q", "--timeout", "5s"]
    if n is not None:
        cmd += ["-n", str(n)]
    if dur is not None:
        cmd += ["-d", dur]
    cmd += [*args, url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    try:
        r = json.loads(p.stdout)
    except ValueError:
        raise AssertionError(f"{' '.join(cmd)}: no JSON (exit {p.returncode}): {p.stderr}")
    r["_exit"] = p.returncode
    r["_stderr"] = p.stderr
    return r


class Results:
    def __init__(self):
        self.passed, self.failures, self.skipped = 0, [], 0

    def check(self, name, cond, report, extra=None):
        if cond:
            self.passed += 1
            print(f"ok   {name}")
        else:
            self.failures.append(name)
            keys = ("completed", "status", "errors", "resent", "sent", "connects_in_window", "tls_resumed",
                    "tls_error", "tls_info", "_exit")
            print(f"FAIL {name}: {json.dumps({k: report.get(k) for k in keys})} {extra or ''}")

    def skip(self, name, why):
        self.skipped += 1
        print(f"skip {name}: {why}")


def clean(r, n, status="2xx"):
    return r["completed"] == n and r["status"][status] == n and r["errors"]["total"] == (
        n if status in ("4xx", "5xx") else 0)


# ---- cases against the stubs ---------------------------------------------


def stub_cases(res):
    for tls in (False, True):
        alpn = ["h2"] if tls else None
        sfx = " (TLS)" if tls else " (h2c)"
        s = Stub(h2_serve, "ok", alpn)
        r = run(s.url(), "--h2", "-c", "2", "-m", "10", n=500)
        res.check("h2 streams complete" + sfx, clean(r, 500) and s.stats["requests"] == 500 and
                  r["protocol"] == "h2" and r["streams"] == 10, r)
        r = run(s.url(), "--h2", "-c", "2", "-m", "4", "--body-size", "200k", n=40)
        res.check("h2 request bodies" + sfx, clean(r, 40) and s.stats["requests"] == 540 and
                  r["bytes_written"] >= 40 * 200 * 1024, r)
        r = run(s.url(), "--h2", "-c", "2", "-m", "8", "-R", "400", n=200)
        res.check("h2 open loop" + sfx, clean(r, 200) and r["mode"] == "open" and
                  r["schedule"]["backlog_at_end"] == 0, r)
        r = run(s.url(), "--h2", "-c", "2", "--no-keepalive", n=30)
        res.check("h2 one stream per connection" + sfx, clean(r, 30) and r["connects_in_window"] >= 28, r)
        s.close()

    # open loop against a server that manages 20 req/s on one stream: the
    # requests wait, and their latency counts from when they were due
    s = Stub(h2_serve, "slow")
    r = run(s.url(), "--h2", "-c", "1", "-m", "1", "-R", "100", dur="1s")
    res.check("h2 open loop: latency from the due time (coordinated omission)",
              r["completed"] >= 5 and r["schedule"]["backlog_at_end"] > 0 and
              r["latency"]["p50"] > 3 * r["service"]["p50"] and r["service"]["p50"] >= 40000, r,
              {k: r.get(k) for k in ("latency", "service", "schedule")})
    s.close()

    s = Stub(h2_serve, "404")
    r = run(s.url(), "--h2", "-c", "1", "-m", "4", n=50)
    res.check("h2 404 counted as 4xx", clean(r, 50, "4xx"), r)
    s.close()

    s = Stub(h2_serve, "big")
    r = run(s.url(), "--h2", "-c", "2", "-m", "4", n=24)
    res.check("h2 1 MiB responses (flow-control windows)", clean(r, 24) and r["bytes_read"] >= 24 << 20, r)
    s.close()

    s = Stub(h2_serve, "short")
    r = run(s.url(), "--h2", "-c", "1", "-m", "4", n=20)
    res.check("h2 body shorter than content-length is a parse error",
              r["completed"] == 0 and r["errors"]["parse"] == 20 and r["_exit"] == 1, r)
    s.close()

    s = Stub(h2_serve, "refuse")
    r = run(s.url(), "--h2", "-c", "2", "-m", "6", n=300)
    res.check("h2 refused streams are sent again", clean(r, 300) and r["resent"] == s.stats["refused"] and
              r["resent"] > 0, r)
    s.close()

    s = Stub(h2_serve, "reset")
    r = run(s.url(), "--h2", "-c", "1", "-m", "4", n=40)
    res.check("h2 streams reset by the server are read errors",
              r["completed"] == 0 and r["errors"]["read"] == 40, r)
    s.close()

    s = Stub(h2_serve, "goaway")
    r = run(s.url(), "--h2", "-c", "2", "-m", "4", n=200)
    res.check("h2 GOAWAY: reconnect, unanswered streams sent again",
              clean(r, 200) and r["connects"] >= 40 and r["resent"] > 0, r)
    s.close()

    s = Stub(garbage_serve)
    r = run(s.url(), "--h2", "-c", "1", dur="300ms")
    res.check("h2c to an HTTP/1.1 server is a parse error",
              r["completed"] == 0 and r["errors"]["parse"] >= 1 and r["_exit"] == 1, r)
    # a plain server given an https URL: the handshake fails
    r = run(s.url().replace("http:", "https:"), "-c", "2", dur="500ms")
    res.check("TLS to a plain server: tls errors, clean exit with the report",
              r["completed"] == 0 and r["errors"]["tls"] >= 1 and r["errors"]["total"] == r["errors"]["tls"] and
              r["tls_error"] != "" and r["_exit"] == 1 and "Traceback" not in r["_stderr"], r)
    p = subprocess.run([EXE, "-q", "-c", "1", "-d", "300ms", s.url().replace("http:", "https:")],
                       capture_output=True, text=True, timeout=30)
    res.check("TLS failure in the text report", p.returncode == 1 and " tls " in p.stdout and
              "first failure" in p.stdout, {"_exit": p.returncode}, p.stdout[-400:])
    s.close()

    # usage errors (exit 2)
    for args, why in ((["-m", "4"], "-m N without --h2"), (["--h2", "-p", "4"], "-p with --h2"),
                      (["--verify"], "TLS options on http://"), (["--cacert", "/nonexistent/ca.pem"], "missing CA file")):
        url = "https://127.0.0.1:1/" if "--cacert" in args else "http://127.0.0.1:1/"
        p = subprocess.run([EXE, *args, url], capture_output=True, text=True, timeout=30)
        res.check(f"usage: {why}", p.returncode == 2 and p.stderr.startswith("sluice-load: "),
                  {"_exit": p.returncode}, p.stderr)

    # HTTP/1.1 over TLS against test_responses' stub
    s = Stub(h1_serve, tls_alpn=["http/1.1"])
    r = run(s.url("/cl"), "-c", "2", n=200)
    res.check("https content-length", clean(r, 200) and r["tls"] and "http/1.1" in r["tls_info"], r)
    r = run(s.url("/chunked"), "-c", "2", "-p", "8", n=400)
    res.check("https chunked pipelined", clean(r, 400), r)
    r = run(s.url("/cl"), "-c", "2", "--body-size", "3m", n=6)
    res.check("https 3 MiB request bodies", clean(r, 6) and r["bytes_written"] >= 6 * 3 << 20, r)
    r = run(s.url("/close"), "-c", "2", "-p", "4", n=100)
    res.check("https Connection: close with pipelining resends", r["completed"] == 100 and
              r["errors"]["total"] == 0 and r["resent"] > 0, r)
    r = run(s.url("/truncated"), "-c", "1", n=5)
    res.check("https truncated body is a read error", r["completed"] == 0 and r["errors"]["read"] >= 1, r)
    r = run(s.url("/cl"), "-c", "2", "--no-keepalive", n=40)
    res.check("https no keep-alive: a handshake per request", clean(r, 40) and r["connects_in_window"] >= 38, r)
    r = run(s.url("/cl"), "-c", "2", "-R", "300", n=150)
    res.check("https open loop", clean(r, 150), r)
    r = run(s.url("/cl"), "-c", "1", "--verify", dur="300ms")
    res.check("--verify refuses a self-signed certificate", r["completed"] == 0 and r["errors"]["tls"] >= 1 and
              "verify" in r["tls_error"], r)
    r = run(s.url("/cl"), "-c", "1", "--cacert", CERT, n=20)
    res.check("--cacert trusts it (name checked: 127.0.0.1)", clean(r, 20) and r["tls_verify"], r)
    r = run(s.url("/cl").replace("127.0.0.1", "localhost"), "-c", "1", "--cacert", CERT, n=20)
    res.check("--cacert with a host name (SNI, name checked)", clean(r, 20), r)
    r = run(s.url("/cl"), "--h2", "-c", "1", dur="300ms")
    res.check("--h2 to a TLS server without h2: ALPN failure", r["completed"] == 0 and r["errors"]["tls"] >= 1 and
              "h2" in r["tls_error"], r)
    s.close()


# ---- cases against nginx ---------------------------------------------------

NGINX_CONF = """
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format counted '$server_port $status $body_bytes_sent';
  access_log {d}/access.log counted;
  keepalive_requests 100000;
  ssl_certificate {cert};
  ssl_certificate_key {key};
  ssl_protocols TLSv1.2 TLSv1.3;
  root {d}/www;
  server {{ listen 127.0.0.1:{h2c} http2; location / {{ return 200 "hello\\n"; }} }}
  server {{ listen 127.0.0.1:{h2tls} ssl http2; location / {{ return 200 "hello\\n"; }} }}
  server {{ listen 127.0.0.1:{h1tls} ssl; location /hello {{ return 200 "hello\\n"; }} }}
  server {{ listen 127.0.0.1:{goaway} http2; keepalive_requests 50; location / {{ return 200 "hello\\n"; }} }}
}}
"""


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def nginx_usable():
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not nginx:
        return None, "nginx not found (scripts/install-deps installs nginx-light)"
    v = subprocess.run([nginx, "-V"], capture_output=True, text=True).stderr
    if "http_v2_module" not in v or "http_ssl_module" not in v:
        return None, "nginx lacks http_v2_module or http_ssl_module"
    return nginx, None


def nginx_cases(res, tmp):
    nginx, why = nginx_usable()
    if not nginx:
        res.skip("nginx cases", why)
        return
    d = os.path.join(tmp, "nginx")
    os.makedirs(os.path.join(d, "www"))
    os.chmod(tmp, 0o755)
    os.chmod(d, 0o755)
    os.chmod(os.path.join(d, "www"), 0o755)
    with open(os.path.join(d, "www", "f10k"), "wb") as f:
        f.write(b"0123456789" * 1000)
    os.chmod(os.path.join(d, "www", "f10k"), 0o644)
    h2c, h2tls, h1tls, goaway = free_ports(4)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(d=d, cert=CERT, key=KEY, h2c=h2c, h2tls=h2tls, h1tls=h1tls, goaway=goaway))
    proc = subprocess.Popen([nginx, "-p", d, "-c", conf, "-e", os.path.join(d, "error.log"), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", goaway), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    res.skip("nginx cases", f"nginx did not start: {proc.stderr.read()[-300:]}")
                    return
                time.sleep(0.05)
        log = os.path.join(d, "access.log")

        def logged(port, since):
            """Access log lines for port after line `since`: (count, lines)."""
            time.sleep(0.1)
            with open(log) as f:
                lines = f.read().splitlines()[since:]
            mine = [line.split() for line in lines if line.startswith(f"{port} ")]
            return len(mine), mine

        def mark():
            with open(log) as f:
                return len(f.read().splitlines())

        m = mark()
        r = run(f"http://127.0.0.1:{h2c}/", "--h2", "-c", "4", "-m", "10", n=3000)
        cnt, _ = logged(h2c, m)
        res.check("nginx h2c -m 10: counts match the access log", clean(r, 3000) and cnt == 3000, r, f"log {cnt}")

        m = mark()
        r = run(f"https://127.0.0.1:{h2tls}/", "--h2", "-c", "4", "-m", "10", n=3000)
        cnt, _ = logged(h2tls, m)
        res.check("nginx h2 over TLS -m 10: counts match the access log",
                  clean(r, 3000) and cnt == 3000 and "ALPN h2" in r["tls_info"], r, f"log {cnt}")

        m = mark()
        r = run(f"https://127.0.0.1:{h2tls}/", "--h2", "-c", "2", "-m", "10", "-R", "1000", n=500)
        cnt, _ = logged(h2tls, m)
        res.check("nginx h2 over TLS, open loop -R", clean(r, 500) and cnt == 500 and r["mode"] == "open", r,
                  f"log {cnt}")

        m = mark()
        r = run(f"https://127.0.0.1:{h1tls}/f10k", "-c", "4", n=1000)
        cnt, lines = logged(h1tls, m)
        sizes = {(s, b) for _, s, b in lines}
        res.check("nginx https 10 kB bodies: counts and sizes", clean(r, 1000) and cnt == 1000 and
                  sizes == {("200", "10000")} and r["bytes_read"] >= 1000 * 10000, r, f"log {cnt} {sizes}")

        m = mark()
        r = run(f"https://127.0.0.1:{h1tls}/hello", "-c", "2", "--no-keepalive", n=100)
        cnt, _ = logged(h1tls, m)
        # (the first connections were made before the window)
        res.check("nginx https --no-keepalive: a full handshake per request", clean(r, 100) and cnt == 100 and
                  r["connects_in_window"] >= 98 and r["tls_resumed"] == 0, r, f"log {cnt}")

        r = run(f"https://127.0.0.1:{h1tls}/hello", "-c", "2", "--no-keepalive", "--tls-resume", n=100)
        # only the first connections are full handshakes (TLS 1.3 tickets are
        # single use: each thread keeps a pool of them)
        res.check("nginx https --tls-resume resumes sessions", clean(r, 100) and r["tls_resumed"] >= 97, r)

        m = mark()
        r = run(f"http://127.0.0.1:{goaway}/", "--h2", "-c", "2", "-m", "10", n=1000)
        cnt, _ = logged(goaway, m)
        res.check("nginx h2 GOAWAY every 50 requests: counts match", clean(r, 1000) and cnt == 1000 and
                  r["connects"] >= 20, r, f"log {cnt}")
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    global EXE, CERT, KEY
    EXE = sys.argv[1]
    if not shutil.which("openssl"):
        print("skip: the openssl command is needed to make a test certificate")
        return 77
    with tempfile.TemporaryDirectory(prefix="sload-tls-") as tmp:
        CERT, KEY = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", KEY, "-out", CERT, "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        res = Results()
        stub_cases(res)
        nginx_cases(res, tmp)
    print(f"{res.passed} passed, {len(res.failures)} failed" + (f", {res.skipped} skipped" if res.skipped else ""))
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
