"""The programs in examples/python run under the gateway as documented."""

from __future__ import annotations

import json
import os

import pytest

from conftest import ROOT


@pytest.fixture
def from_root(monkeypatch):
    # the examples are imported as examples.python.X, from the repository root
    monkeypatch.setenv("PYTHONPATH", ROOT)


def test_hello_and_echo(gateway, from_root):
    gw = gateway(["sluice", "examples.python.hello:app"])
    assert gw.get("/") == (200, gw.get("/")[1], b"Hello, world!\n")
    assert gw.get("/ada?x=1")[2] == b"Hello, ada! (you sent GET, query 'x=1')\n"
    gw = gateway(["sluice", "--loop", "trio", "examples.python.echo:app"])
    data = os.urandom(1 << 20)
    status, _, body = gw.request("POST", "/", body=data)
    assert status == 200 and body == data
    assert gw.get("/")[0] == 405


def test_starlette_example(gateway, from_root):
    pytest.importorskip("starlette")
    gw = gateway(["sluice.asgi", "examples.python.starlette_app:app"])
    assert gw.get("/")[2] == b"Hello from Starlette behind sluice\n"
    assert json.loads(gw.get("/hello/bob?a=b")[2]) == {"hello": "bob", "query": {"a": "b"}}
    assert json.loads(gw.request("POST", "/upload", body=b"x" * 100000)[2]) == {"received": 100000}


def test_flask_example(gateway, from_root):
    pytest.importorskip("flask")
    gw = gateway(["sluice.wsgi", "examples.python.flask_app:app"])
    assert gw.get("/")[2] == b"Hello from Flask behind sluice\n"
    assert gw.get("/lines")[2].count(b"\n") == 1000
    import hashlib
    data = os.urandom(300000)
    assert json.loads(gw.request("POST", "/sha256", body=data)[2]) == {"sha256": hashlib.sha256(data).hexdigest()}
