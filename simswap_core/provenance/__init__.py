"""Synthetic-media labels on every output (EU AI Act, Article 50): what the label says (``label.py``), the XMP
packet (``xmp.py``), where it goes in images (``images.py``) and video containers (``video.py``), C2PA signing
(``c2pa.py``, optional) and reading any of them back (``reader.py``; ``simswap inspect FILE``).

    from simswap_core import provenance
    label = provenance.make_label(generator="simswap_224.pth", arcface="arcface.pth")
    write_image("out.png", image, label=label)          # labelled (also every swap sink's output by default)
    provenance.read_provenance("out.png").label          # back
    provenance.set_labelling(False)                      # off: the user's legal responsibility (warned)
"""
from __future__ import annotations

from .c2pa import C2paConfig, c2pa_config, c2pa_signing, configure_c2pa
from .label import (
    IPTC_COMPOSITE,
    IPTC_GENERATED,
    OFF_MESSAGE,
    ModelRecord,
    ProvenanceLabel,
    embedded_label,
    labelling,
    labelling_enabled,
    make_label,
    output_label,
    set_labelling,
)
from .reader import ProvenanceReport, read_provenance
from .xmp import parse_xmp, to_xmp

__all__ = ["IPTC_COMPOSITE", "IPTC_GENERATED", "OFF_MESSAGE", "C2paConfig", "ModelRecord", "ProvenanceLabel",
           "ProvenanceReport", "c2pa_config", "c2pa_signing", "configure_c2pa", "embedded_label", "labelling",
           "labelling_enabled", "make_label",
           "output_label", "parse_xmp", "read_provenance", "set_labelling", "to_xmp"]
