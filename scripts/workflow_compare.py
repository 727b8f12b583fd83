"""How scripts/frontend_check.py judges a workflow: the frontend's ``graphToPrompt`` compared with the API copy
(values normalised: numbers by value, NaN equal), and a prompt validated against ``/object_info``."""
from __future__ import annotations

import json
import math


def norm(v):
    if isinstance(v, list) and len(v) == 2 and isinstance(v[0], (str, int)) and isinstance(v[1], int) \
            and not isinstance(v[1], bool):
        return ("link", str(v[0]), v[1])
    return v


def same_value(a, b) -> bool:
    a, b = norm(a), norm(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def compare_prompts(got: dict, want: dict) -> tuple[list[str], list[str]]:
    """(mismatches, notes) between graphToPrompt's output and the API copy."""
    bad, notes = [], []
    for nid in sorted(set(got) | set(want), key=lambda k: (len(k), k)):
        g, w = got.get(nid), want.get(nid)
        if g is None:
            assert w is not None  # nid is a key of got or of want
            bad.append(f"node {nid} ({w.get('class_type')}) is in the API copy, not in graphToPrompt's output")
            continue
        if w is None:
            bad.append(f"node {nid} ({g.get('class_type')}) is in graphToPrompt's output, not in the API copy")
            continue
        if g.get("class_type") != w.get("class_type"):
            bad.append(f"node {nid}: class_type {g.get('class_type')} (frontend) != {w.get('class_type')} (API copy)")
            continue
        gi, wi = g.get("inputs", {}), w.get("inputs", {})
        for k in sorted(set(gi) | set(wi)):
            if k not in gi:
                bad.append(f"node {nid} ({g['class_type']}): input {k!r} = {json.dumps(wi[k])} only in the API copy")
            elif k not in wi:
                bad.append(f"node {nid} ({g['class_type']}): input {k!r} = {json.dumps(gi[k])} missing from the "
                           f"API copy")
            elif not same_value(gi[k], wi[k]):
                bad.append(f"node {nid} ({g['class_type']}): input {k!r}: frontend {json.dumps(gi[k])} != "
                           f"API copy {json.dumps(wi[k])}")
        gt, wt = (g.get("_meta") or {}).get("title"), (w.get("_meta") or {}).get("title")
        if wt is not None and gt != wt:
            notes.append(f"node {nid}: _meta.title {gt!r} (frontend) != {wt!r} (API copy)")
    return bad, notes


def validate_prompt(prompt: dict, info: dict) -> list[str]:
    """A static version of ComfyUI's validate_inputs: classes exist, required inputs, combos, ranges, link types."""
    bad = []
    for nid, node in prompt.items():
        ct = node.get("class_type")
        d = info.get(ct)
        if d is None:
            bad.append(f"node {nid}: unknown class_type {ct}")
            continue
        req, opt = d["input"].get("required", {}), d["input"].get("optional", {})
        inputs = node.get("inputs", {})
        for name, spec in {**req, **opt}.items():
            if name not in inputs:
                if name in req:
                    bad.append(f"node {nid} ({ct}): required input {name!r} missing")
                continue
            v = inputs[name]
            t = spec[0]
            o = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if isinstance(v, list) and len(v) == 2 and isinstance(v[1], int):
                src = prompt.get(str(v[0]))
                if src is None:
                    bad.append(f"node {nid} ({ct}): input {name!r} links to missing node {v[0]}")
                    continue
                souts = info.get(src.get("class_type"), {}).get("output", [])
                if v[1] >= len(souts):
                    bad.append(f"node {nid} ({ct}): input {name!r} links to output {v[1]} of node {v[0]}, which "
                               f"has {len(souts)}")
                elif not isinstance(t, list) and t != "*" and souts[v[1]] != "*" and \
                        not set(str(t).split(",")) & set(str(souts[v[1]]).split(",")):
                    bad.append(f"node {nid} ({ct}): input {name!r} ({t}) linked to a {souts[v[1]]} output")
                continue
            if isinstance(t, list) or t == "COMBO":
                choices = t if isinstance(t, list) else o.get("options", [])
                if v not in choices:
                    bad.append(f"node {nid} ({ct}): {name!r} = {v!r} is not one of {choices[:10]}")
            elif t in ("INT", "FLOAT"):
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    bad.append(f"node {nid} ({ct}): {name!r} = {v!r} is not a number")
                elif ("min" in o and v < o["min"]) or ("max" in o and v > o["max"]):
                    bad.append(f"node {nid} ({ct}): {name!r} = {v} outside [{o.get('min')}, {o.get('max')}]")
            elif t == "BOOLEAN" and not isinstance(v, bool):
                bad.append(f"node {nid} ({ct}): {name!r} = {v!r} is not a boolean")
            elif t == "STRING" and not isinstance(v, str):
                bad.append(f"node {nid} ({ct}): {name!r} = {v!r} is not a string")
        for name in inputs:
            if name not in req and name not in opt and name not in d["input"].get("hidden", {}):
                bad.append(f"node {nid} ({ct}): input {name!r} is not an input of {ct}")
    return bad
