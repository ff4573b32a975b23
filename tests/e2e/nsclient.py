#!/usr/bin/env python3
"""An HTTP client run inside a network namespace for test_multihost.py
(Python stdlib only); prints one JSON object.

    nsclient.py get URL
        {"status": 200, "body": "..."}  or {"error": "..."}
    nsclient.py load SECONDS THREADS URL [URL ...]
        Each thread sends GETs over keep-alive connections, to the URLs in
        turn, for SECONDS. Prints {"ok": {URL: n}, "fail": [[t, URL, what],
        ...], "total": n}: `ok` counts 200 answers with the expected body
        ("Hello, world!\\n"), `fail` lists everything else with the time (s
        from the start) it happened, a status or an exception. (The Go
        example says "Hello from worker N (...)": any body starting with
        "Hello" counts.)
"""

import http.client
import json
import sys
import threading
import time
from urllib.parse import urlsplit

BODY = b"Hello"


def conn_for(url):
    u = urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=10), u.path or "/"


def get(url):
    c, path = conn_for(url)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return {"status": r.status, "body": r.read().decode(errors="replace")}
    except Exception as e:  # noqa: BLE001  (reported, not raised)
        return {"error": repr(e)}
    finally:
        c.close()


def load(seconds, threads, urls):
    start = time.monotonic()
    lock = threading.Lock()
    ok = {u: 0 for u in urls}
    fail = []

    def worker(k):
        conns = {}
        i = k
        while time.monotonic() - start < seconds:
            url = urls[i % len(urls)]
            i += 1
            if url not in conns:
                conns[url] = conn_for(url)
            c, path = conns[url]
            try:
                c.request("GET", path)
                r = c.getresponse()
                body = r.read()
                good = r.status == 200 and body.startswith(BODY)
                what = r.status
                if r.getheader("connection", "").lower() == "close":
                    c.close()
                    del conns[url]
            except Exception as e:  # noqa: BLE001
                good, what = False, type(e).__name__
                c.close()
                del conns[url]
            with lock:
                if good:
                    ok[url] += 1
                else:
                    fail.append([round(time.monotonic() - start, 3), url, what])
            if not good:
                time.sleep(0.01)
        for c, _ in conns.values():
            c.close()

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {"ok": ok, "fail": fail, "total": sum(ok.values()) + len(fail)}


def main():
    if sys.argv[1] == "get":
        out = get(sys.argv[2])
    else:
        out = load(float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
