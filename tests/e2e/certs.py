"""A throwaway PKI for the remote-worker tests, made with the openssl CLI.

make_pki(directory, ips=(), names=()) writes and returns the paths of:
  ca            the CA gateways' certificates chain to (workers trust it)
  server, server_key
                a gateway certificate from `ca` for localhost, 127.0.0.1,
                gw.sluice.test and the extra names and IP addresses given
  client_ca     the CA worker certificates chain to (the pool's client_ca)
  client, client_key
                a worker certificate from `client_ca`
  rogue_ca, rogue, rogue_key
                a CA nobody trusts, and a certificate from it (a worker or
                gateway that must be refused)
Keys are P-256, valid two days. Skips the calling test when openssl is
missing.
"""

import os
import shutil
import subprocess

import pytest

DAYS = "2"


def _run(args, cwd):
    subprocess.run(["openssl"] + args, cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d, name):
    _run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", DAYS, "-subj",
          f"/CN=sluice test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)


def _leaf(d, name, ca, san, usage):
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\nextendedKeyUsage={usage}\n"
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n")
    _run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}"], d)
    _run(["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
          "-CAcreateserial", "-out", f"{name}.pem", "-days", DAYS, "-extfile", ext], d)


def make_pki(directory, ips=(), names=()):
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI missing")
    d = str(directory)
    os.makedirs(d, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "client_ca")
    _ca(d, "rogue_ca")
    san = ",".join(["DNS:localhost", "DNS:gw.sluice.test"] + [f"DNS:{n}" for n in names]
                   + ["IP:127.0.0.1"] + [f"IP:{ip}" for ip in ips])
    _leaf(d, "server", "ca", san, "serverAuth")
    _leaf(d, "client", "client_ca", "DNS:worker.sluice.test", "clientAuth")
    _leaf(d, "rogue", "rogue_ca", "DNS:localhost,DNS:worker.sluice.test,IP:127.0.0.1",
          "serverAuth,clientAuth")
    p = lambda n: os.path.join(d, n)  # noqa: E731
    return {
        "ca": p("ca.pem"), "server": p("server.pem"), "server_key": p("server.key"),
        "client_ca": p("client_ca.pem"), "client": p("client.pem"), "client_key": p("client.key"),
        "rogue_ca": p("rogue_ca.pem"), "rogue": p("rogue.pem"), "rogue_key": p("rogue.key"),
    }
