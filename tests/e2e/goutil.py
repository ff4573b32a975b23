"""Finding a Go toolchain for the end-to-end tests that build Go programs
(test_go.py, test_kubernetes_manifests.py): where scripts/install-deps --go
looks, new enough for the module's go.mod."""

import os
import re
import shutil
import subprocess

from conftest import ROOT


def _version(text, pattern):
    m = re.search(pattern, text, re.M)
    return (int(m.group(1)), int(m.group(2))) if m else None


def find_go(gomod, what):
    """(go, None) with the first Go (PATH, /usr/local/go, .tools/go) at least
    as new as the `go` line of `gomod` asks, or (None, why not) for a skip
    message; `what` says what cannot be done without it."""
    with open(gomod) as f:
        need = _version(f.read(), r"^go (\d+)\.(\d+)") or (1, 22)
    seen = []
    for go in (shutil.which("go"), "/usr/local/go/bin/go",
               os.path.join(ROOT, ".tools", "go", "bin", "go")):
        if not go or not os.access(go, os.X_OK) or go in seen:
            continue
        try:
            out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, timeout=60,
                                 env=dict(os.environ, GOTOOLCHAIN="local")).stdout.decode()
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        have = _version(out, r"go(\d+)\.(\d+)")
        if have is not None and have >= need:
            return go, None
        seen.append(f"{go} ({out.strip() or 'no version'})")
    rel = os.path.relpath(gomod, ROOT)
    if not seen:
        return None, (f"`go` not found (PATH, /usr/local/go/bin, .tools/go/bin): {what} "
                      "(scripts/install-deps --go installs one)")
    return None, (f"no Go {need[0]}.{need[1]}+ as {rel} needs: {', '.join(seen)}: {what} "
                  "(scripts/install-deps --go installs one)")


EXAMPLES_GO = os.path.join(ROOT, "examples", "go")


def build_examples(go, out, programs):
    """`go build` the programs of examples/go into out; {name: path}, or
    pytest.fail with the compiler's output."""
    import pytest
    env = dict(os.environ, GOFLAGS="-mod=readonly -buildvcs=false", GOTOOLCHAIN="local")
    r = subprocess.run([go, "build", "-o", out + os.sep, *(f"./{p}" for p in programs)],
                       cwd=EXAMPLES_GO, env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=600)
    if r.returncode != 0:
        pytest.fail(f"go build of examples/go failed (exit {r.returncode}):\n"
                    f"{r.stderr.decode(errors='replace')[-4000:]}", pytrace=False)
    return {p: os.path.join(out, p) for p in programs}
