#!/usr/bin/env python3
"""sluice-load's HTTP/1.1 response handling against a stub server (stdlib only).

Each case runs sluice-load --json -n N against one path of a small threaded
server that answers in a particular way, and checks the counts: completed
responses, status classes and errors by kind.

    test_responses.py PATH/TO/sluice-load
"""
import json
import socket
import subprocess
import sys
import threading

RESPONSES = {
    # Content-Length
    "/cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    # chunked, with an extension and trailers
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
    # interim responses before the real one
    "/interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    # 304 and 204 carry no body whatever Content-Length says
    "/304": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n",
    "/204": b"HTTP/1.1 204 No Content\r\n\r\n",
    "/404": b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!",
    "/503": b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
}
# Answers then closes: the body ends with the connection / Connection: close.
CLOSING = {
    "/eof": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until the end",
    "/close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    "/http10": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    # errors
    "/garbage": b"SMTP ready\r\n\r\n",
    "/truncated": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
    "/silent-close": b"",
}


def read_request(conn, buf):
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None, b""
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    method, target, _ = lines[0].split(b" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        data = conn.recv(65536)
        if not data:
            return None, b""
        rest += data
    return (method.decode(), target.decode().split("?")[0]), rest[length:]


def serve(conn):
    conn.settimeout(30)
    buf = b""
    try:
        while True:
            req, buf = read_request(conn, buf)
            if req is None:
                return
            method, path = req
            if path in CLOSING:
                if CLOSING[path]:
                    conn.sendall(CLOSING[path])
                return
            resp = RESPONSES.get(path, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            if method == "HEAD":
                # HEAD: the headers of a GET, never a body
                resp = b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n"
            conn.sendall(resp)
    except OSError:
        pass
    finally:
        conn.close()


def main():
    exe = sys.argv[1]
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(128)
    port = lsock.getsockname()[1]

    def accept_loop():
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()

    def run(path, *args, n=50):
        cmd = [exe, "--json", "-q", "-c", "2", "-n", str(n), "--timeout", "2s", *args,
               f"http://127.0.0.1:{port}{path}"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        try:
            return json.loads(p.stdout)
        except ValueError:
            raise AssertionError(f"{' '.join(cmd)}: no JSON (exit {p.returncode}): {p.stderr}")

    failures = []
    passed = 0

    def check(name, cond, report):
        nonlocal passed
        if cond:
            passed += 1
            print(f"ok   {name}")
        else:
            failures.append(name)
            print(f"FAIL {name}: {json.dumps({k: report[k] for k in ('completed', 'status', 'errors', 'resent', 'sent')})}")

    def ok_case(name, path, *args, status="2xx", n=50):
        r = run(path, *args, n=n)
        check(name, r["completed"] == n and r["status"][status] == n and r["errors"]["total"] ==
              (n if status in ("4xx", "5xx") else 0), r)

    ok_case("content-length", "/cl")
    ok_case("content-length pipelined", "/cl", "-p", "8", n=400)
    ok_case("chunked with trailers", "/chunked")
    ok_case("chunked pipelined", "/chunked", "-p", "8", n=400)
    ok_case("1xx ignored", "/interim")
    ok_case("304 without body", "/304", status="3xx")
    ok_case("204", "/204")
    ok_case("HEAD with Content-Length", "/cl", "-m", "HEAD")
    ok_case("HEAD pipelined", "/cl", "-m", "HEAD", "-p", "4", n=200)
    ok_case("404 counted as 4xx", "/404", status="4xx")
    ok_case("503 counted as 5xx", "/503", status="5xx")
    ok_case("body until EOF, reconnect", "/eof")
    ok_case("Connection: close, reconnect", "/close")
    ok_case("HTTP/1.0, reconnect", "/http10")
    ok_case("no keep-alive", "/cl", "--no-keepalive")
    ok_case("POST body", "/cl", "--body-size", "100k")
    ok_case("open loop", "/cl", "-R", "500", n=100)
    r = run("/close", "-p", "4", n=100)
    check("Connection: close with pipelining resends", r["completed"] == 100 and
          r["errors"]["total"] == 0 and r["resent"] > 0, r)
    r = run("/garbage", n=10)
    check("garbage is a parse error", r["completed"] == 0 and r["errors"]["parse"] >= 1, r)
    r = run("/truncated", n=10)
    check("truncated body is a read error", r["completed"] == 0 and r["errors"]["read"] >= 1, r)
    r = run("/silent-close", n=10)
    check("close without answer is a read error", r["completed"] == 0 and r["errors"]["read"] >= 1, r)
    # connection refused: a port nobody listens on
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    p = subprocess.run([exe, "--json", "-q", "-c", "1", "-d", "300ms", f"http://127.0.0.1:{dead}/"],
                       capture_output=True, text=True, timeout=30)
    r = json.loads(p.stdout)
    check("connect errors", r["errors"]["connect"] >= 1 and p.returncode == 1, r)

    lsock.close()
    print(f"{passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
