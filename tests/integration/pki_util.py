"""A small test PKI made with the openssl CLI: two CAs and server
certificates signed by them, for the frontend's check of its backends'
certificates (proxy_tls_ca)."""

import subprocess


def _openssl(*args, cwd):
    subprocess.run(("openssl",) + args, cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d, certs):
    """In directory d: CAs "ca" and "otherca" (EC P-256, 2 days), and for
    each (name, ca, subjectAltName) of certs a server certificate signed
    by that CA. Returns {ca name: CA file, cert name: (cert file, key file)}."""
    out = {}
    for ca in ("ca", "otherca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
                 "-subj", "/CN=petrel test %s" % ca,
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
        out[ca] = str(d / (ca + ".pem"))
    for name, ca, san in certs:
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
                 "-subj", "/CN=%s" % name, cwd=d)
        (d / (name + ".ext")).write_text("subjectAltName=%s\nextendedKeyUsage=serverAuth\n" % san)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                 "-CAcreateserial", "-days", "2", "-extfile", name + ".ext",
                 "-out", name + ".pem", cwd=d)
        out[name] = (str(d / (name + ".pem")), str(d / (name + ".key")))
    return out


def server_cert_opts(pki, name):
    """petrel options that serve certificate `name` (and no SNI directory)."""
    cert, key = pki[name]
    return ("tls_cert=" + cert, "tls_key=" + key, "tls_sni_dir=")
