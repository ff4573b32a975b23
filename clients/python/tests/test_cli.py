"""Worker command line: readable startup errors, before any connection."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import APPS


def run_cli(*args: str, env_socket: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = APPS
    if env_socket:
        env["SLUICE_SOCKET"] = "/nonexistent/sluice.sock"
    else:
        env.pop("SLUICE_SOCKET", None)
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          env=env, cwd=APPS, timeout=30)


@pytest.mark.parametrize("module,path,message", [
    ("sluice", "no_such_module:app", "cannot import module 'no_such_module'"),
    ("sluice.asgi", "native_app:nope", "module 'native_app' has no attribute 'nope'"),
    ("sluice.wsgi", "native_app:TMP", "'native_app:TMP' is not callable (it is a str)"),
    ("sluice", ":app", "bad application path"),
])
def test_startup_errors_are_one_readable_line(module, path, message):
    r = run_cli(module, path)
    assert r.returncode == 2
    assert r.stderr.strip() == f"sluice: error: {message}" or message in r.stderr
    assert "Traceback" not in r.stderr


def test_import_error_inside_app_module_is_reported(tmp_path):
    (tmp_path / "broken_app.py").write_text("import no_such_dependency_xyz\n")
    env = dict(os.environ, SLUICE_SOCKET="/nonexistent", PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "sluice", "broken_app:app"], capture_output=True,
                       text=True, env=env, cwd=str(tmp_path), timeout=30)
    assert r.returncode == 2
    assert "error while importing 'broken_app'" in r.stderr
    assert "no_such_dependency_xyz" in r.stderr


def test_no_socket_is_explained():
    r = run_cli("sluice", "native_app:app", env_socket=False)
    assert r.returncode == 2
    assert "SLUICE_SOCKET" in r.stderr


def test_unreachable_socket_is_an_error_not_a_traceback():
    r = run_cli("sluice", "native_app:app")
    assert r.returncode == 1
    assert r.stderr.startswith("sluice: error:")
    assert "Traceback" not in r.stderr


def test_help_lists_options():
    r = run_cli("sluice", "--help")
    assert r.returncode == 0
    for opt in ("--max-streams", "--loop", "--log-level", "--threads", "--interface"):
        assert opt in r.stdout
    r = run_cli("sluice.asgi", "--help")
    assert "python -m sluice.asgi" in r.stdout and "--interface" not in r.stdout


def test_app_dir_finds_the_module_elsewhere(tmp_path):
    """--app-dir DIR: the module is imported from DIR (uvicorn's flag)."""
    (tmp_path / "elsewhere_app.py").write_text("TMP = 'x'\n")
    env = dict(os.environ, SLUICE_SOCKET="/nonexistent")
    env.pop("PYTHONPATH", None)
    base = [sys.executable, "-m", "sluice.wsgi"]
    r = subprocess.run(base + ["elsewhere_app:TMP"], capture_output=True, text=True, env=env,
                       cwd="/", timeout=30)
    assert r.returncode == 2 and "cannot import module 'elsewhere_app'" in r.stderr, r.stderr
    r = subprocess.run(base + ["--app-dir", str(tmp_path), "elsewhere_app:TMP"], capture_output=True,
                       text=True, env=env, cwd="/", timeout=30)
    # found this time: the error is now about the attribute, not the import
    assert r.returncode == 2 and "'elsewhere_app:TMP' is not callable" in r.stderr, r.stderr
    r = subprocess.run(base + ["--app-dir", str(tmp_path / "nope"), "elsewhere_app:TMP"],
                       capture_output=True, text=True, env=env, cwd="/", timeout=30)
    assert r.returncode == 2 and "is not a directory" in r.stderr, r.stderr


@pytest.mark.parametrize("module,path,extra,message", [
    ("sluice.wsgi", "flask_app:app", ["--websocket"], "--websocket: WSGI applications cannot take WebSockets"),
    ("sluice", "native_app:app", ["--websocket"], "--websocket: the app has no WebSocket handler"),
])
def test_websocket_switch_errors(module, path, extra, message):
    r = run_cli(module, *extra, path)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


LIB = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("args,env,message", [
    (["--socket", "tcp:gw.example"], {}, "bad address 'tcp:gw.example'"),
    (["--socket", "tls:127.0.0.1:7001", "--tls-cert", "/c.pem"], {}, "both SLUICE_TLS_CERT and SLUICE_TLS_KEY"),
    (["--socket", "tls:127.0.0.1:7001"], {"SLUICE_TLS_KEY": "/k.pem"}, "both SLUICE_TLS_CERT and SLUICE_TLS_KEY"),
    (["--socket", "tls:127.0.0.1:7001", "--tls-ca", "/nonexistent/ca.pem"], {}, "TLS settings"),
    (["--socket", "tcp:127.0.0.1:7001"], {"SLUICE_RESOLVE_INTERVAL": "often"}, "SLUICE_RESOLVE_INTERVAL"),
    (["--socket", "tcp:127.0.0.1:7001"], {"SLUICE_PING_INTERVAL": "often"}, "SLUICE_PING_INTERVAL"),
])
def test_remote_mode_configuration_errors_exit_2(args, env, message):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    full_env.update(env, PYTHONPATH=os.pathsep.join([LIB, APPS]))
    r = subprocess.run([sys.executable, "-m", "sluice", *args, "native_app:app"], capture_output=True, text=True,
                       env=full_env, cwd=APPS, timeout=30)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and r.stderr.startswith("sluice: error: ")
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("module", ["sluice", "sluice.wsgi"])
def test_a_bad_sluice_max_streams_is_a_startup_error(module):
    app = "native_app:app" if module == "sluice" else "flask_app:app"
    env = dict(os.environ, SLUICE_SOCKET="/nonexistent", SLUICE_MAX_STREAMS="lots")
    r = subprocess.run([sys.executable, "-m", module, app], capture_output=True, text=True,
                       env=env, cwd=APPS, timeout=30)
    assert r.returncode == 2, r.stderr
    assert "SLUICE_MAX_STREAMS" in r.stderr and "Traceback" not in r.stderr
