"""C2PA manifests (Content Credentials) signed with the user's key and certificate, via ``c2pa-python``.

Optional: nothing here runs unless a signing key and certificate are configured, by
``configure_c2pa(cert, key)`` or the environment (``SIMSWAP_C2PA_CERT`` / ``SIMSWAP_C2PA_KEY``: PEM files; optional
``SIMSWAP_C2PA_ALG`` es256|es384|es512|ps256|ps384|ps512|ed25519, found from the key when not given;
``SIMSWAP_C2PA_TSA_URL``: a time-stamp authority). Once configured, a missing ``c2pa-python`` is a
DependencyError (never a silently unsigned file), and a format C2PA cannot sign (GIF, BMP, MKV, WebM) gets a
warning naming it; the XMP / container label is still written.

The manifest: the ``c2pa.actions.v2`` assertion with ``c2pa.created`` (digitalSourceType: the IPTC
``compositeWithTrainedAlgorithmicMedia`` URI; softwareAgent: this pack and version; description "face replaced")
and ``LABEL_ASSERTION`` with the label's fields (models and their sha256), never the source person's identity.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DependencyError, InputError
from .label import ProvenanceLabel

LABEL_ASSERTION = "com.comfyui-simswap.provenance"
PIP_HINT = "pip install 'c2pa-python>=0.30'"
MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
        ".tif": "image/tiff", ".tiff": "image/tiff", ".mp4": "video/mp4", ".m4v": "video/mp4",
        ".mov": "video/quicktime"}
ALGS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")


@dataclass(frozen=True)
class C2paConfig:
    """A signing identity: certificate chain (PEM, signer first), private key (PEM), algorithm, optional TSA."""

    cert: Path
    key: Path
    alg: str
    tsa_url: str | None = None


_configured: dict[str, C2paConfig | None | bool] = {"config": None, "set": False}


def _key_alg(key_pem: bytes, where: str) -> str:
    """The C2PA algorithm that fits a PEM private key (EC curve size, RSA -> ps256, Ed25519)."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:
        raise DependencyError(f"{where}: set the signing algorithm (SIMSWAP_C2PA_ALG, one of {', '.join(ALGS)}) "
                              "or install 'cryptography' to find it from the key") from None
    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise InputError(f"{where}: not an unencrypted PEM private key ({e})") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        bits = key.curve.key_size
        return {256: "es256", 384: "es384", 521: "es512"}.get(bits) or _bad_key(where, f"EC P-{bits}")
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    return _bad_key(where, type(key).__name__)


def _bad_key(where: str, kind: str) -> str:
    raise InputError(f"{where}: a {kind} key cannot sign C2PA manifests; expected EC P-256/384/521, RSA or Ed25519")


def configure_c2pa(cert: str | os.PathLike | None, key: str | os.PathLike | None = None, *,
                   alg: str | None = None, tsa_url: str | None = None) -> C2paConfig | None:
    """Sign every labelled output of this process with ``key`` and the certificate chain ``cert`` (PEM files);
    ``configure_c2pa(None)`` turns signing off again (the environment is then ignored). Checks the files and the
    algorithm now; DependencyError when c2pa-python is not installed."""
    if cert is None:
        _configured.update(config=None, set=True)
        return None
    if key is None:
        raise InputError("C2PA signing: expected the private key file with the certificate")
    cert_p, key_p = Path(cert), Path(key)
    for what, p in (("certificate", cert_p), ("private key", key_p)):
        if not p.is_file():
            raise InputError(f"C2PA {what} {p}: expected a PEM file")
    require_c2pa()
    if alg is None:
        alg = _key_alg(key_p.read_bytes(), f"C2PA private key {key_p}")
    alg = alg.lower()
    if alg not in ALGS:
        raise InputError(f"C2PA signing algorithm {alg!r}: expected one of {', '.join(ALGS)}")
    config = C2paConfig(cert_p, key_p, alg, tsa_url)
    _configured.update(config=config, set=True)
    return config


@contextmanager
def c2pa_signing(cert: str | os.PathLike | None, key: str | os.PathLike | None = None) -> Iterator[None]:
    """Within: sign with ``cert`` / ``key`` (as ``configure_c2pa``; None: leave the configuration as it is), then
    back to the configuration before."""
    before = dict(_configured)
    if cert is not None or key is not None:
        if cert is None:
            raise InputError("C2PA signing: expected the certificate file with the private key")
        configure_c2pa(cert, key)
    try:
        yield
    finally:
        _configured.update(before)


def c2pa_config() -> C2paConfig | None:
    """The signing configuration: ``configure_c2pa``'s, else the environment's (see the module text), else None."""
    if _configured["set"]:
        config = _configured["config"]
        return config if isinstance(config, C2paConfig) else None
    cert, key = os.environ.get("SIMSWAP_C2PA_CERT"), os.environ.get("SIMSWAP_C2PA_KEY")
    if not cert and not key:
        return None
    if not cert or not key:
        raise InputError("C2PA signing: set both SIMSWAP_C2PA_CERT and SIMSWAP_C2PA_KEY (PEM files), or neither")
    config = configure_c2pa(cert, key, alg=os.environ.get("SIMSWAP_C2PA_ALG") or None,
                            tsa_url=os.environ.get("SIMSWAP_C2PA_TSA_URL") or None)
    _configured.update(set=False)           # the environment is read again next time (it may change)
    return config


def require_c2pa() -> Any:
    """The ``c2pa`` module, or DependencyError with the pip command."""
    try:
        import c2pa
    except ImportError:
        raise DependencyError(f"C2PA signing is configured but c2pa-python is not installed: {PIP_HINT}") from None
    return c2pa


def manifest_definition(label: ProvenanceLabel, title: str, mime: str) -> dict[str, Any]:
    """The manifest JSON handed to ``c2pa.Builder``."""
    agent = {"name": label.generator, "version": label.version}
    return {
        "claim_generator_info": [agent],
        "title": title,
        "format": mime,
        "assertions": [
            {"label": "c2pa.actions.v2",
             "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": label.digital_source_type,
                                   "softwareAgent": agent, "description": label.action}]}},
            {"label": LABEL_ASSERTION, "data": label.as_dict()},
        ],
    }


def signable(path: str | os.PathLike) -> bool:
    """True when C2PA can sign a file with this extension (JPEG, PNG, WebP, TIFF, MP4, MOV)."""
    return Path(path).suffix.lower() in MIME


def sign_in_place(path: Path, label: ProvenanceLabel, *, name: str | None = None,
                  config: C2paConfig | None = None) -> bool:
    """Sign the finished file ``path`` (a temporary file of an atomic write) with a C2PA manifest of ``label``,
    replacing it by the signed copy. ``name``: the final file name (the manifest title and the format, by
    extension). Returns False (with a warning) for a format C2PA cannot sign; True when signed."""
    config = config if config is not None else c2pa_config()
    if config is None:
        return False
    final = Path(name) if name is not None else path
    mime = MIME.get(final.suffix.lower())
    if mime is None:
        warnings.warn(f"{final.name}: C2PA cannot sign {final.suffix or 'this'} files; it carries the XMP / "
                      "metadata label only (no C2PA manifest)", stacklevel=3)
        return False
    c2pa = require_c2pa()
    signed = path.with_name(path.name + ".c2pa" + final.suffix)
    info = c2pa.C2paSignerInfo(config.alg.encode(), config.cert.read_bytes(), config.key.read_bytes(),
                               config.tsa_url.encode() if config.tsa_url else None)
    try:
        with c2pa.Signer.from_info(info) as signer, \
                c2pa.Builder(json.dumps(manifest_definition(label, final.name, mime))) as builder:
            with open(path, "rb") as src, open(signed, "wb") as dst:
                builder.sign(signer, mime, src, dst)
        os.replace(signed, path)
    except c2pa.C2paError as e:
        raise InputError(f"{final.name}: C2PA signing failed with certificate {config.cert} ({e})") from None
    finally:
        signed.unlink(missing_ok=True)
    return True


def read_manifest(path: str | os.PathLike) -> dict[str, Any] | None:
    """The C2PA manifest store of a file as a dict ({"active_manifest": ..., "validation_state": ...}), None when
    the file has none or c2pa-python is not installed (a note says so in ``simswap inspect``)."""
    try:
        import c2pa
    except ImportError:
        return None
    p = Path(path)
    mime = MIME.get(p.suffix.lower())
    if mime is None:
        return None
    try:
        with open(p, "rb") as f, c2pa.Reader(mime, f) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError:
        return None
    active = store.get("active_manifest")
    manifest = store.get("manifests", {}).get(active) if active else None
    return {"active_manifest": manifest, "validation_state": store.get("validation_state"),
            "validation_status": store.get("validation_status", [])}
