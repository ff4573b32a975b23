"""A Flask application served through the WSGI adapter (a pool of threads
in one process; the worker announces max_streams = threads).

    .venv/bin/pip install flask          # see examples/python/README.md
    build/server/sluice -- .venv/bin/python -m sluice.wsgi --threads 8 examples.python.flask_app:app
"""

import hashlib

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.route("/")
def home():
    return "Hello from Flask behind sluice\n"


@app.route("/hello/<name>")
def hello(name):
    return jsonify(hello=name, query=request.args.to_dict())


@app.route("/sha256", methods=["POST"])
def sha256():
    # request.stream reads wsgi.input as the body arrives: credit goes back to
    # the gateway only as this loop consumes it (backpressure).
    h = hashlib.sha256()
    for chunk in iter(lambda: request.stream.read(65536), b""):
        h.update(chunk)
    return jsonify(sha256=h.hexdigest())


@app.route("/lines")
def lines():
    def generate():
        for i in range(1000):
            yield f"line {i}\n"
    return Response(generate(), mimetype="text/plain")
