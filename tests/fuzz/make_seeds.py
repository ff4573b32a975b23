#!/usr/bin/env python3
"""Build the fuzz seed corpora from the protocol vectors.

decoder seeds: one split-pattern byte, then a decode vector's bytes.
link seeds:    role byte, max_streams byte, then a session's frames in order.
Vectors above 8 KiB are skipped to keep the corpora small. Run from the
repository root; the output is committed under tests/fuzz/corpus/."""
import json, os, pathlib

root = pathlib.Path(__file__).resolve().parents[2]
vec = root / "protocol" / "vectors"
out = root / "tests" / "fuzz" / "corpus"
for sub in ("decoder", "link"):
    d = out / sub
    d.mkdir(parents=True, exist_ok=True)
    for f in d.iterdir():
        f.unlink()

for path in sorted(vec.glob("[0-9][0-9][0-9]-*.json")):
    v = json.loads(path.read_text())
    if v["kind"] == "decode":
        data = bytes.fromhex(v["hex"])
        if len(data) > 8192:
            continue
        for pattern in (0, 7):
            (out / "decoder" / f"{path.stem}-{pattern}").write_bytes(bytes([pattern]) + data)
    else:
        data = b"".join(bytes.fromhex(s["hex"]) for s in v["steps"])
        if len(data) > 8192:
            continue
        role = 1 if v["role"] == "gateway" else 0
        ms = v.get("max_streams", 4) % 256
        (out / "link" / path.stem).write_bytes(bytes([role, ms]) + data)
print("seeds:", {s: len(os.listdir(out / s)) for s in ("decoder", "link")})
