"""Provenance test helpers: a C2PA test signing identity made at test time with ``cryptography`` (nothing
committed: a test CA and an end-entity certificate it issued, as the C2PA certificate profile wants; used by
tests/test_provenance*.py and bench/bench_provenance.py), and the fixture that starts each test with labelling on."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def fresh_labelling(monkeypatch):
    """Each test starts with labelling on and no C2PA signer (whatever the environment says). Autouse in the
    modules that import it."""
    monkeypatch.delenv("SIMSWAP_LABEL", raising=False)
    monkeypatch.delenv("SIMSWAP_C2PA_CERT", raising=False)
    monkeypatch.delenv("SIMSWAP_C2PA_KEY", raising=False)
    from simswap_core.provenance import c2pa as c2pa_mod
    from simswap_core.provenance import label as label_mod

    monkeypatch.setattr(label_mod, "_state", {"enabled": None, "warned": False})
    monkeypatch.setattr(c2pa_mod, "_configured", {"config": None, "set": False})


def make_test_signer(folder: Path) -> tuple[Path, Path]:
    """A test CA and a signing certificate it issued (EC P-256, digitalSignature, emailProtection), as the C2PA
    certificate profile wants; returns (chain.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SimSwap tests")])

    def usage(sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=not sign,
                             crl_sign=not sign, encipher_only=False, decipher_only=False)

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    base = x509.CertificateBuilder().not_valid_before(now - dt.timedelta(days=1)) \
        .not_valid_after(now + dt.timedelta(days=30))
    ca = (base.subject_name(name("SimSwap test CA")).issuer_name(name("SimSwap test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (base.subject_name(name("SimSwap test signer")).issuer_name(name("SimSwap test CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (folder / "chain.pem").write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "chain.pem", folder / "key.pem"
