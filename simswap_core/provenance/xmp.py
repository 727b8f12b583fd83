"""The label as an XMP packet (the form every image format and the video containers carry), and back.

Properties: ``Iptc4xmpExt:DigitalSourceType`` (the IPTC URI, what C2PA / IPTC-aware viewers read),
``xmp:CreatorTool`` (software and version), ``xmp:MetadataDate``, ``dc:description`` (the human-readable line), and
our own namespace ``simswap:`` (``SIMSWAP_NS``) with Generator, Version, Action, Created and Models (an rdf:Seq of
Role / Name / SHA256). Parsed with the standard library's ElementTree (no external entities are resolved).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from .label import ModelRecord, ProvenanceLabel

SIMSWAP_NS = "https://github.com/comfyui-simswap/ComfyUI-SimSwap/ns/provenance/1.0/"
_NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "simswap": SIMSWAP_NS,
}
_BEGIN = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
_END = '<?xpacket end="w"?>'


def _q(prefix: str, name: str) -> str:
    return f"{{{_NS[prefix]}}}{name}"


def to_xmp(label: ProvenanceLabel) -> str:
    """The XMP packet (str, UTF-8 when encoded) of ``label``."""
    e = escape
    models = "".join(
        f'<rdf:li rdf:parseType="Resource"><simswap:Role>{e(m.role)}</simswap:Role><simswap:Name>{e(m.name)}'
        f"</simswap:Name><simswap:SHA256>{e(m.sha256)}</simswap:SHA256></rdf:li>" for m in label.models)
    ns = " ".join(f'xmlns:{k}="{v}"' for k, v in _NS.items() if k not in ("x", "rdf"))
    return (f'{_BEGIN}<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{_NS["rdf"]}">'
            f'<rdf:Description rdf:about="" {ns}>'
            f"<Iptc4xmpExt:DigitalSourceType>{e(label.digital_source_type)}</Iptc4xmpExt:DigitalSourceType>"
            f"<xmp:CreatorTool>{e(label.software())}</xmp:CreatorTool>"
            f"<xmp:MetadataDate>{e(label.created)}</xmp:MetadataDate>"
            f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{e(label.text())}</rdf:li></rdf:Alt>'
            f"</dc:description>"
            f"<simswap:Generator>{e(label.generator)}</simswap:Generator>"
            f"<simswap:Version>{e(label.version)}</simswap:Version>"
            f"<simswap:Action>{e(label.action)}</simswap:Action>"
            f"<simswap:Created>{e(label.created)}</simswap:Created>"
            f"<simswap:Models><rdf:Seq>{models}</rdf:Seq></simswap:Models>"
            f"</rdf:Description></rdf:RDF></x:xmpmeta>{_END}")


def find_xmp(data: bytes | str) -> str | None:
    """The ``<x:xmpmeta>...</x:xmpmeta>`` element inside ``data`` (a packet, a comment, a whole chunk), or None."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    start = text.find("<x:xmpmeta")
    end = text.find("</x:xmpmeta>", start)
    if start < 0 or end < 0:
        return None
    return text[start:end + len("</x:xmpmeta>")]


def parse_xmp(data: bytes | str) -> ProvenanceLabel | None:
    """The label in an XMP packet: None when the packet has no IPTC digital source type (not a label, e.g. an
    XMP packet another program wrote). Other labels' fields left out by other writers get empty values."""
    body = find_xmp(data)
    if body is None:
        return None
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    for desc in root.iter(_q("rdf", "Description")):
        source_type = desc.findtext(_q("Iptc4xmpExt", "DigitalSourceType")) or \
            desc.get(_q("Iptc4xmpExt", "DigitalSourceType"))
        if not source_type:
            continue
        models = tuple(
            ModelRecord(role=li.findtext(_q("simswap", "Role")) or "", name=li.findtext(_q("simswap", "Name")) or "",
                        sha256=li.findtext(_q("simswap", "SHA256")) or "")
            for li in desc.iterfind(f"{_q('simswap', 'Models')}/{_q('rdf', 'Seq')}/{_q('rdf', 'li')}"))
        tool = desc.findtext(_q("xmp", "CreatorTool")) or ""
        return ProvenanceLabel(
            digital_source_type=source_type.strip(),
            generator=desc.findtext(_q("simswap", "Generator")) or tool,
            version=desc.findtext(_q("simswap", "Version")) or "",
            action=desc.findtext(_q("simswap", "Action")) or "",
            models=models,
            created=desc.findtext(_q("simswap", "Created")) or desc.findtext(_q("xmp", "MetadataDate")) or "")
    return None
