"""A Flask application for the WSGI tests."""

import hashlib
import os
import threading
import time

from flask import Flask, Response, abort, jsonify, request

app = Flask(__name__)


@app.route("/")
def hello():
    return "hello flask"


@app.route("/users/<name>")
def user(name):
    return jsonify(user=name, q=request.args.to_dict(), multi=request.headers.getlist("X-Multi"),
                   remote=request.remote_addr)


@app.route("/json", methods=["POST"])
def echo_json():
    return jsonify(got=request.get_json())


@app.route("/form", methods=["POST"])
def form():
    out = dict(request.form)
    for k, f in request.files.items():
        out[k] = {"filename": f.filename, "size": len(f.read())}
    return jsonify(out)


@app.route("/upload", methods=["POST"])
def upload():
    h = hashlib.sha256()
    n = 0
    while True:
        chunk = request.stream.read(65536)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    return jsonify(n=n, sha=h.hexdigest())


@app.route("/stream")
def stream():
    def gen():
        for i in range(50):
            yield f"line {i}\n"
    return Response(gen(), mimetype="text/plain")


@app.route("/sleep")
def sleep():
    time.sleep(float(request.args.get("s", "0.5")))
    return jsonify(thread=threading.get_ident(), pid=os.getpid())


@app.route("/pid")
def pid():
    return str(os.getpid())


@app.route("/missing")
def missing():
    abort(404)


@app.route("/boom")
def boom():
    raise RuntimeError("boom")


PRODUCED = {"n": 0}


@app.route("/many")
def many():
    """`n` chunks of `size` bytes; PRODUCED counts what the generator made."""
    n = int(request.args.get("n", "1000"))
    size = int(request.args.get("size", "100"))
    PRODUCED["n"] = 0

    def gen():
        for i in range(n):
            PRODUCED["n"] += size
            yield bytes([65 + i % 26]) * size
    return Response(gen(), mimetype="application/octet-stream")


@app.route("/produced")
def produced():
    return str(PRODUCED["n"])
