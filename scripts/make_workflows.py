"""Build the example workflows of the pack, in both formats, from ONE description (this file).

    workflows/<name>.json      UI format (what ComfyUI's frontend loads; listed in its template browser)
    workflows/api/<name>.json  API format (what POST /prompt takes; executed by tests/test_comfyui_workflows.py)
    workflows/<name>.svg       the Templates-menu thumbnail: a drawing of the graph (node boxes, titles, links; no
                               photos), shown by web/simswap_templates.js

The widget order, socket lists and output types of every node come from a ComfyUI ``/object_info``, so the
UI files carry ``widgets_values`` in the order the frontend expects. Usage:

    .venv/bin/python scripts/make_workflows.py                 # start a test ComfyUI (tests/comfy_harness.py), write
    .venv/bin/python scripts/make_workflows.py --check         # same, but only compare with the committed files
    .venv/bin/python scripts/make_workflows.py --object-info object_info.json   # use a saved /object_info

Model and image names are the official file names (latest_net_G.pth, arcface_checkpoint.tar, 79999_iter.pth)
and two photos the tests copy into the input folder (astronaut.png from scikit-image, t1.jpg from insightface):
a user opening a template picks their own files in the combo boxes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_DIR = REPO / "workflows"
API_DIR = WORKFLOW_DIR / "api"

#: node types that exist only in the frontend (dropped from the API format, like graphToPrompt does)
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}

#: the browser window the saved views (extra.ds) are made for, and its part not covered by the frontend's chrome:
#: (left, top, right, bottom) margins in px = side bar (about 50 px) and top menu/tab bar (about 50 px) plus air
VIEW = (1600, 1000)
VIEW_FREE = (90, 90, 30, 40)

GENERATOR_224 = "latest_net_G.pth"
ARCFACE = "arcface_checkpoint.tar"
DETECTOR = "yunet (offline default)"
SOURCE_PHOTO = "astronaut.png"
GROUP_PHOTO = "t1.jpg"


# ------------------------------------------------------------------------------------------ object_info helpers
def input_specs(info: dict) -> list[tuple[str, object, dict, bool]]:
    """(name, type, options, optional) of a node's visible inputs, in the frontend's order."""
    out = []
    order = info.get("input_order") or {}
    for section, optional in (("required", False), ("optional", True)):
        entries = (info.get("input") or {}).get(section) or {}
        for name in order.get(section) or list(entries):
            spec = entries[name]
            typ = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            out.append((name, typ, opts, optional))
    return out


def is_widget(typ, opts: dict) -> bool:
    if isinstance(typ, list):
        return True
    return typ in WIDGET_TYPES and not opts.get("forceInput")


def combo_options(typ, opts: dict) -> list | None:
    if isinstance(typ, list):
        return typ
    if typ == "COMBO":
        return list(opts.get("options") or [])
    return None


def widget_names(info: dict) -> list[str]:
    return [n for n, t, o, _ in input_specs(info) if is_widget(t, o)]


def socket_inputs(info: dict) -> list[tuple[str, object, bool]]:
    return [(n, t, opt) for n, t, o, opt in input_specs(info) if not is_widget(t, o)]


def extra_widget_values(name: str, typ, opts: dict) -> list:
    """Values the frontend stores after a widget for its companion widget (upload button, seed control)."""
    if opts.get("image_upload") or opts.get("video_upload"):  # the frontend's upload button (IMAGEUPLOAD widget)
        return ["image"]
    if opts.get("control_after_generate") or (typ == "INT" and name in ("seed", "noise_seed")):
        return ["fixed"]
    return []


# ------------------------------------------------------------------------------------------ the builder
class Node:
    def __init__(self, wf: Workflow, node_id: int, type_: str, widgets: dict, links: dict, col: float,
                 row: float, title: str | None, text: str | None, size: tuple[int, int] | None):
        self.wf, self.id, self.type, self.widgets, self.links = wf, node_id, type_, widgets, links
        self.col, self.row, self.title, self.text, self.size = col, row, title, text, size

    def __getitem__(self, slot: int) -> tuple[Node, int]:
        return (self, slot)


class Workflow:
    """A workflow description: nodes with widget values by name and links by input name."""

    def __init__(self, name: str, title: str, description: str = ""):
        self.name, self.title, self.description = name, title, description
        self.nodes: list[Node] = []

    def add(self, type_: str, *, col: float, row: float, title: str | None = None, size=None,
            **kwargs) -> Node:
        widgets = {k: v for k, v in kwargs.items() if not (isinstance(v, tuple) and isinstance(v[0], Node))}
        links = {k: v for k, v in kwargs.items() if k not in widgets}
        node = Node(self, len(self.nodes) + 1, type_, widgets, links, col, row, title, None, size)
        self.nodes.append(node)
        return node

    def note(self, text: str, *, col: float, row: float, size=(420, 220), title: str = "Note") -> Node:
        node = Node(self, len(self.nodes) + 1, "Note", {}, {}, col, row, title, text, size)
        self.nodes.append(node)
        return node

    # -------------------------------------------------------------------- checks + formats
    def _info(self, object_info: dict, node: Node) -> dict:
        if node.type not in object_info:
            raise KeyError(f"{self.name}: node type {node.type!r} is not in /object_info")
        return object_info[node.type]

    def widget_values(self, object_info: dict, node: Node) -> dict:
        """Every widget of the node by name: the given value, else the node's default (combos need a value)."""
        info = self._info(object_info, node)
        specs = {n: (t, o) for n, t, o, _ in input_specs(info)}
        unknown = set(node.widgets) - set(widget_names(info))
        if unknown:
            raise KeyError(f"{self.name}: {node.type} has no widget(s) {sorted(unknown)}")
        values = {}
        for name in widget_names(info):
            typ, opts = specs[name]
            if name in node.widgets:
                values[name] = node.widgets[name]
            elif "default" in opts:
                values[name] = opts["default"]
            elif choices := combo_options(typ, opts):  # the frontend's choice for a combo without a default
                values[name] = choices[0]
            else:
                raise KeyError(f"{self.name}: {node.type}.{name} has no default; give a value")
        for name in node.links:
            if name not in specs or is_widget(*specs[name]):
                raise KeyError(f"{self.name}: {node.type} has no socket input {name!r}")
        return values

    def _order(self) -> list[Node]:
        """Topological order (sources first), stable by id."""
        done, out = set(), []
        pending = [n for n in self.nodes]
        while pending:
            for n in pending:
                if all(src.id in done for src, _ in n.links.values()):
                    out.append(n)
                    done.add(n.id)
                    pending.remove(n)
                    break
            else:
                raise ValueError(f"{self.name}: the graph has a cycle")
        return out

    def node_size(self, object_info: dict, node: Node) -> list[int]:
        """The node's size in the UI file: the given one, else at least what the frontend's ``computeSize`` gives
        (LiteGraph 1.32: 20 px per socket row, 20 + 4 px per widget, 14 px padding; the frontend enlarges a node
        to that on load, never shrinks it), so the layout below knows the real extent of every node."""
        if node.size:
            return list(node.size)
        if node.type == "LoadImage":  # room for the photo's preview under the widgets
            return [340, 380]
        info = self._info(object_info, node)
        specs = {n: (t, o) for n, t, o, _ in input_specs(info)}
        rows = max(len(socket_inputs(info)), len(info["output"]), 1)
        widgets = 0
        for name in widget_names(info):
            typ, opts = specs[name]
            widgets += 104 if typ == "STRING" and opts.get("multiline") else 24
            widgets += 24 * len(extra_widget_values(name, typ, opts))  # upload button / seed control
        return [340, 20 * rows + widgets + 8 + 6 + 12]

    def to_api(self, object_info: dict) -> dict:
        prompt = {}
        for node in self.nodes:
            if node.type in FRONTEND_ONLY:
                continue
            info = self._info(object_info, node)
            inputs = dict(self.widget_values(object_info, node))
            for name, _t, _opt in socket_inputs(info):
                if name in node.links:
                    src, slot = node.links[name]
                    inputs[name] = [str(src.id), slot]
            prompt[str(node.id)] = {"class_type": node.type, "inputs": inputs,
                                    "_meta": {"title": node.title or info.get("display_name") or node.type}}
        return prompt

    def to_ui(self, object_info: dict) -> dict:
        links, link_id = [], 0
        out_links: dict[tuple[int, int], list[int]] = {}
        in_links: dict[tuple[int, str], int] = {}
        for node in self.nodes:
            if node.type in FRONTEND_ONLY:
                continue
            info = self._info(object_info, node)
            sockets = [n for n, _t, _o in socket_inputs(info)]
            for name, (src, slot) in sorted(node.links.items(), key=lambda kv: sockets.index(kv[0])):
                link_id += 1
                typ = self._info(object_info, src)["output"][slot]
                links.append([link_id, src.id, slot, node.id, sockets.index(name), typ])
                out_links.setdefault((src.id, slot), []).append(link_id)
                in_links[(node.id, name)] = link_id
        order = {n.id: i for i, n in enumerate(self._order())}
        sizes = {n.id: self.node_size(object_info, n) for n in self.nodes}
        positions = layout(self.nodes, sizes)
        nodes = []
        for node in self.nodes:
            pos = positions[node.id]
            if node.type in FRONTEND_ONLY:
                nodes.append({"id": node.id, "type": node.type, "pos": pos, "size": sizes[node.id],
                              "flags": {}, "order": order[node.id], "mode": 0, "inputs": [], "outputs": [],
                              "title": node.title, "properties": {"text": ""},
                              "widgets_values": [node.text], "color": "#432", "bgcolor": "#653"})
                continue
            info = self._info(object_info, node)
            values = self.widget_values(object_info, node)
            specs = {n: (t, o) for n, t, o, _ in input_specs(info)}
            wv = []
            for name in widget_names(info):
                wv.append(values[name])
                wv.extend(extra_widget_values(name, *specs[name]))
            inputs = []
            for name, typ, optional in socket_inputs(info):
                socket = {"name": name, "type": typ, "link": in_links.get((node.id, name))}
                if optional:
                    socket["shape"] = 7
                inputs.append(socket)
            outputs = []
            for slot, (typ, oname) in enumerate(zip(info["output"], info["output_name"])):
                outputs.append({"name": oname, "type": typ, "links": out_links.get((node.id, slot), []),
                                "slot_index": slot})
            properties: dict = {"Node name for S&R": node.type}
            models = model_metadata(wv)
            if models:
                properties["models"] = models
            item = {"id": node.id, "type": node.type, "pos": pos, "size": sizes[node.id], "flags": {},
                    "order": order[node.id], "mode": 0, "inputs": inputs, "outputs": outputs,
                    "properties": properties, "widgets_values": wv}
            if node.title:
                item["title"] = node.title
            nodes.append(item)
        return {"last_node_id": max(n.id for n in self.nodes), "last_link_id": link_id, "nodes": nodes,
                "links": links, "groups": [], "config": {},
                "extra": {"ds": fit_view(nodes), "simswap_workflow": self.name,
                          "title": self.title},
                "version": 0.4}


TITLE_H = 30  # LiteGraph draws the title bar above a node's pos
COL_W, ROW_H, GAP = 460, 150, 40  # grid of the descriptions; GAP: free space between a node and the next title


def layout(nodes: list[Node], sizes: dict[int, list[int]]) -> dict[int, list[int]]:
    """Positions from the grid (col, row) of the descriptions, moved down where a node would touch one above it:
    nodes are placed top to bottom and each goes below every placed node whose columns it shares (title bars
    included, GAP apart), so no node sits on or under another whatever the sizes."""
    placed: list[tuple[int, int, int, int]] = []  # x0, y0 (title top), x1, y1
    out = {}
    for node in sorted(nodes, key=lambda n: (n.row, n.col, n.id)):
        w, h = sizes[node.id]
        x = round(40 + node.col * COL_W)
        y = round(40 + node.row * ROW_H)
        for x0, _y0, x1, y1 in placed:
            if x < x1 + GAP // 2 and x0 < x + w + GAP // 2:
                y = max(y, y1 + GAP + TITLE_H)
        placed.append((x, y - TITLE_H, x + w, y + h))
        out[node.id] = [x, y]
    return out


#: ComfyUI's folder_paths.supported_pt_extensions: the only files /experiment/models lists (0.3.75 filters by this
#: global set, not by the folder's own extensions), i.e. the only ones the frontend can see as present. An entry for
#: another file (arcface_checkpoint.tar, an .onnx detector) would be reported missing even when installed.
LISTED_EXTENSIONS = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}


def model_metadata(widget_values: list) -> list[dict]:
    """The frontend's missing-models entries (``properties.models``: name, url, directory) for every widget value
    that names a file of the model catalogue: a workflow opened without that file lists it with its folder and
    official source (frontend 1.32 reads them when the value is still selected in the node)."""
    sys.path.insert(0, str(REPO))
    from simswap_core.models.catalogue import CATALOGUE

    by_file = {m.filename: m for m in CATALOGUE.values()}
    out = []
    for v in widget_values:
        entry = by_file.get(v) if isinstance(v, str) else None
        if entry is None or Path(entry.filename).suffix.lower() not in LISTED_EXTENSIONS:
            continue
        directory, _, sub = entry.subfolder.partition("/")
        out.append({"name": f"{sub}/{entry.filename}" if sub else entry.filename, "url": entry.urls[0],
                    "directory": directory})
    return out


def fit_view(nodes: list[dict], width: int = VIEW[0], height: int = VIEW[1]) -> dict:
    """The saved canvas view (``extra.ds``) that shows every node, title bars included, in the free part of a
    ``width`` x ``height`` browser window: right of the frontend's side bar, below its top bar (``VIEW_FREE``).
    Scale at most 0.8."""
    left, top, right, bottom = VIEW_FREE
    x0 = min(n["pos"][0] for n in nodes)
    y0 = min(n["pos"][1] for n in nodes) - TITLE_H
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes)
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes)
    free_w, free_h = width - left - right, height - top - bottom
    scale = round(min(0.8, free_w / max(x1 - x0, 1), free_h / max(y1 - y0, 1)) * 0.995, 3)
    # centred in the free area
    ox = (left + (free_w - (x1 - x0) * scale) / 2) / scale - x0
    oy = (top + (free_h - (y1 - y0) * scale) / 2) / scale - y0
    return {"scale": scale, "offset": [round(ox, 1), round(oy, 1)]}


# ------------------------------------------------------------------------------------------ the workflows
SEEDED_NOTE = ("Model files go into ComfyUI/models/simswap (generator: latest_net_G.pth = official 224 'people' "
               "model, or 550000_net_G.pth = 512 beta; ArcFace: arcface_checkpoint.tar; optional BiSeNet "
               "79999_iter.pth). The detector 'yunet (offline default)' needs no file; insightface SCRFD packs go "
               "into models/insightface. `python install.py --download` in the pack folder fetches them. "
               "Licences: SimSwap weights CC BY-NC 4.0 and insightface packs: non-commercial use only. "
               "Pick your own photos in the Load Image nodes.")


# Swapped images are saved with the synthetic-media label (nodes/provenance.py); masks go to core Save Image.
SAVE_LABELLED = "SimSwapSaveImageLabelled"


def _loaders(wf: Workflow, row: float = 0.0, col: float = 0.0):
    gen = wf.add("SimSwapGeneratorLoader", col=col, row=row, generator_name=GENERATOR_224, variant="auto",
                 crop_size="auto")
    arc = wf.add("SimSwapArcFaceLoader", col=col, row=row + 1.2, arcface_name=ARCFACE)
    det = wf.add("SimSwapDetectorLoader", col=col, row=row + 2.1, detector=DETECTOR, threshold=0.5, det_size=640)
    return gen, arc, det


def basic_image_swap() -> Workflow:
    wf = Workflow("01_basic_image_swap", "SimSwap: basic image swap",
                  "Swap the face of one photo onto every face of another, with the swap mask as a preview.")
    wf.note("Basic face swap.\n\n1. Load Image (source): a photo of the person to swap IN.\n2. Load Image "
            "(target): the photo whose faces are replaced.\n3. Run. The mask output shows where pixels "
            "changed.\n\n" + SEEDED_NOTE, col=0, row=-2, size=(740, 250))
    gen, arc, det = _loaders(wf, row=0)
    src = wf.add("LoadImage", col=0, row=3.4, title="Load Image (source face)", image=SOURCE_PHOTO)
    tgt = wf.add("LoadImage", col=1, row=3.4, title="Load Image (target)", image=GROUP_PHOTO)
    ident = wf.add("SimSwapExtractIdentity", col=1, row=0, source_images=src[0], generator=gen[0],
                   arcface=arc[0], detector=det[0], face="largest", face_index="0", order="left-right",
                   combine="mean", if_no_face="error")
    swap = wf.add("SimSwapSwap", col=2, row=0, images=tgt[0], identity=ident[0], generator=gen[0],
                  detector=det[0], faces="all", face_index="0", order="left-right", mask="box", if_no_face="keep")
    wf.add(SAVE_LABELLED, col=3, row=0, size=(420, 400), images=swap[0], filename_prefix="simswap/basic",
           format="png", quality=95, generator=gen[0], detector=det[0])
    m = wf.add("MaskToImage", col=3, row=3, mask=swap[1])
    wf.add("PreviewImage", col=3, row=4, size=(420, 360), title="Preview swap mask", images=m[0])
    return wf


def pick_faces_with_preview() -> Workflow:
    wf = Workflow("02_pick_faces_with_preview", "SimSwap: pick faces with the preview",
                  "Detect Faces numbers the faces of a group photo; swap only the ones you list.")
    wf.note("Swap only some faces of a group photo.\n\n1. Run once: 'SimSwap Detect Faces' shows every face "
            "with its number (numbered left to right here).\n2. Type the numbers you want into face_index of "
            "'SimSwap Face Swap' (e.g. 0,2) with faces = index and the SAME order, and run again. Swap takes the "
            "faces Detect Faces found (detected_faces), so nothing is detected twice.\n\nThe other "
            "modes: all, largest, best (detection score) and reference (the face matching a reference "
            "identity).\n\n" + SEEDED_NOTE, col=0, row=-2.2, size=(740, 280))
    gen, arc, det = _loaders(wf, row=0)
    src = wf.add("LoadImage", col=0, row=3.4, title="Load Image (source face)", image=SOURCE_PHOTO)
    tgt = wf.add("LoadImage", col=1, row=3.4, title="Load Image (group photo)", image=GROUP_PHOTO)
    faces = wf.add("SimSwapDetectFaces", col=2, row=3.4, images=tgt[0], detector=det[0], order="left-right")
    wf.add("PreviewImage", col=3, row=3.4, size=(420, 360), title="Preview numbered faces", images=faces[1])
    ident = wf.add("SimSwapExtractIdentity", col=1, row=0, source_images=src[0], generator=gen[0],
                   arcface=arc[0], detector=det[0], face="largest", face_index="0", order="left-right",
                   combine="mean", if_no_face="error")
    swap = wf.add("SimSwapSwap", col=2, row=0, images=tgt[0], identity=ident[0], generator=gen[0],
                  detector=det[0], faces="index", face_index="0,2", order="left-right", mask="ellipse",
                  if_no_face="keep",
                  detected_faces=faces[0])
    wf.add(SAVE_LABELLED, col=3, row=0, size=(420, 400), images=swap[0], filename_prefix="simswap/picked",
           format="png", quality=95, generator=gen[0], detector=det[0])
    m = wf.add("MaskToImage", col=4, row=0, mask=swap[1])
    wf.add("PreviewImage", col=4, row=1, size=(420, 360), title="Preview swap mask", images=m[0])
    return wf


def identity_from_several_photos() -> Workflow:
    wf = Workflow("03_identity_from_several_photos", "SimSwap: identity from several photos",
                  "Build one identity from several photos of a person, save it and swap with it.")
    wf.note("Build one identity from several photos of the same person and save it.\n\n'Batch Images' joins "
            "photos (of any size) into one batch; add more with further 'Batch Images' nodes. 'combine' = "
            "mean, median (robust to an odd photo) or weighted (by detection score). 'SimSwap Save Identity' "
            "writes models/simswap/identities/<name>.safetensors; later workflows load it with 'SimSwap Load "
            "Identity' (refresh the page first) instead of extracting again.\n\n" + SEEDED_NOTE,
            col=0, row=-2.2, size=(740, 280))
    gen, arc, det = _loaders(wf, row=0)
    p1 = wf.add("LoadImage", col=0, row=3.4, title="Load Image (photo 1)", image=SOURCE_PHOTO)
    p2 = wf.add("LoadImage", col=0, row=5.8, title="Load Image (photo 2)", image=SOURCE_PHOTO)
    flip = wf.add("ImageFlip", col=1, row=5.8, image=p2[0], flip_method="y-axis: horizontally")
    batch = wf.add("ImageBatch", col=1, row=3.4, image1=p1[0], image2=flip[0])
    ident = wf.add("SimSwapExtractIdentity", col=1, row=0, source_images=batch[0], generator=gen[0],
                   arcface=arc[0], detector=det[0], face="largest", face_index="0", order="left-right",
                   combine="median", if_no_face="error")
    saved = wf.add("SimSwapSaveIdentity", col=2, row=0, identity=ident[0], name="my_identity",
                   if_exists="overwrite")
    tgt = wf.add("LoadImage", col=2, row=3.4, title="Load Image (target)", image=SOURCE_PHOTO)
    swap = wf.add("SimSwapSwap", col=3, row=0, images=tgt[0], identity=saved[0], generator=gen[0],
                  detector=det[0], faces="largest", face_index="0", order="left-right", mask="box",
                  if_no_face="keep")
    wf.add(SAVE_LABELLED, col=4, row=0, size=(420, 400), images=swap[0], filename_prefix="simswap/identity",
           format="png", quality=95, generator=gen[0], detector=det[0])
    return wf


def swap_restore_paste() -> Workflow:
    wf = Workflow("04_swap_restore_paste", "SimSwap: restore the swapped faces",
                  "Hand the swapped face crops to a restoration node and paste them back without detecting again.")
    wf.note("Restore (or upscale) only the swapped faces, without detecting them again.\n\n'SimSwap Split Face "
            "Crops' gives the swapped faces as aligned crops plus their alignment. Put your face restorer "
            "between them and 'SimSwap Paste Faces': 'SimSwap Restore Faces' with 'SimSwap Load Face Restorer' "
            "(GFPGAN / CodeFormer / GPEN from models/facerestore_models), or a node of a restoration pack, goes "
            "where 'Image Sharpen' stands here (Sharpen is only a core stand-in, so this runs without a model). "
            "The simplest way is the Face Swap node's own restore_model input. "
            "Crops of another size (a 2x restorer) are resized back. 'SimSwap Face Mask' makes a soft "
            "landmark ellipse per face so the restored face blends in.\n\n" + SEEDED_NOTE,
            col=0, row=-2.2, size=(740, 280))
    gen, arc, det = _loaders(wf, row=0)
    src = wf.add("LoadImage", col=0, row=3.4, title="Load Image (source face)", image=SOURCE_PHOTO)
    tgt = wf.add("LoadImage", col=1, row=3.4, title="Load Image (target)", image=GROUP_PHOTO)
    ident = wf.add("SimSwapExtractIdentity", col=1, row=0, source_images=src[0], generator=gen[0],
                   arcface=arc[0], detector=det[0], face="largest", face_index="0", order="left-right",
                   combine="mean", if_no_face="error")
    swap = wf.add("SimSwapSwap", col=2, row=0, images=tgt[0], identity=ident[0], generator=gen[0],
                  detector=det[0], faces="largest", face_index="0", order="left-right", mask="box",
                  if_no_face="keep")
    split = wf.add("SimSwapSplitFaceCrops", col=3, row=0, face_crops=swap[2])
    restore = wf.add("ImageSharpen", col=3, row=1.5, title="Face restorer goes here (stand-in: Image Sharpen)",
                     image=split[0], sharpen_radius=2, sigma=1.0, alpha=1.0)
    fmask = wf.add("SimSwapFaceMask", col=3, row=3, face_crops=swap[2], mask="ellipse", mask_grow=0.0,
                   mask_feather="auto")
    paste = wf.add("SimSwapPasteFaces", col=4, row=0, images=swap[0], crops=restore[0], alignment=split[1],
                   crop_masks=fmask[1], paste_mode="default", color_match=False, feather=0.12, erode=0.04)
    wf.add(SAVE_LABELLED, col=5, row=0, size=(420, 400), images=paste[0], filename_prefix="simswap/restored",
           format="png", quality=95, generator=gen[0], detector=det[0])
    wf.add("PreviewImage", col=4, row=3, size=(300, 300), title="Preview restored crops", images=restore[0])
    return wf


def video_frames_batch() -> Workflow:
    wf = Workflow("05_video_frames_batch", "SimSwap: a batch of video frames",
                  "Swap every frame of a video (an image batch), frame count and order kept, faces steadied.")
    wf.note("Swap every frame of a video (an IMAGE batch; frame count and order are kept, frames without a "
            "face are returned unchanged with if_no_face = keep).\n\nWith ComfyUI-VideoHelperSuite, replace "
            "the frame source by 'Load Video (Upload)' (VHS_LoadVideo; use frame_load_cap / skip_first_frames "
            "for long videos) and 'Save Image' by 'Video Combine' (VHS_VideoCombine). Here core nodes build a "
            "4-frame 'video': 3 copies of a photo and one empty frame. In 'SimSwap Swap Options': batch_size = "
            "frames per batch (and faces per generator call on a GPU); temporal_smoothing = 0.5 steadies each "
            "tracked face's landmarks from frame to frame (no jitter; set it to 0 for a batch of unrelated "
            "photos). The progress bar advances frame by frame and Cancel stops it.\n\n"
            + SEEDED_NOTE, col=0, row=-2.4, size=(740, 300))
    gen, arc, det = _loaders(wf, row=0)
    src = wf.add("LoadImage", col=0, row=3.4, title="Load Image (source face)", image=SOURCE_PHOTO)
    frame = wf.add("LoadImage", col=1, row=3.4, title="Load Image (frame)", image=SOURCE_PHOTO)
    rep = wf.add("RepeatImageBatch", col=2, row=3.4, image=frame[0], amount=3)
    empty = wf.add("EmptyImage", col=2, row=4.6, width=512, height=512, batch_size=1, color=8421504)
    frames = wf.add("ImageBatch", col=3, row=3.4, title="Frames (stand-in for Load Video)", image1=rep[0],
                    image2=empty[0])
    ident = wf.add("SimSwapExtractIdentity", col=1, row=0, source_images=src[0], generator=gen[0],
                   arcface=arc[0], detector=det[0], face="largest", face_index="0", order="left-right",
                   combine="mean", if_no_face="error")
    swap = wf.add("SimSwapSwap", col=3, row=0, images=frames[0], identity=ident[0], generator=gen[0],
                  detector=det[0], faces="all", face_index="0", order="left-right", mask="ellipse",
                  if_no_face="keep")
    wf.add(SAVE_LABELLED, col=4, row=0, size=(420, 400), images=swap[0], filename_prefix="simswap/frames",
           format="png", quality=95, generator=gen[0], detector=det[0])
    m = wf.add("MaskToImage", col=4, row=3, mask=swap[1])
    wf.add("SaveImage", col=5, row=0, size=(420, 400), title="Save masks", images=m[0],
           filename_prefix="simswap/frames_mask")
    # added last so the older nodes keep their ids (saved copies of this workflow are compared by node id)
    opts = wf.add("SimSwapSwapOptions", col=2, row=0, title="Swap Options (video)", batch_size=2,
                  temporal_smoothing=0.5)
    swap.links["options"] = opts[0]
    return wf


QUICK_SWAP = "SimSwapQuickSwap"


def quick_face_swap(object_info: dict) -> Workflow:
    """The one-node swap (B's SimSwap Quick Face Swap): its two IMAGE inputs are found by name in /object_info
    (the one naming "source" gets the source photo), every widget keeps the node's default."""
    wf = Workflow("06_quick_face_swap", "SimSwap: quick face swap, one node",
                  "One node: a source photo and a target photo in, the swapped image and its mask out.")
    wf.note("The quickest swap: one node does everything.\n\n1. Load Image (source face): the person to swap "
            "IN.\n2. Load Image (target): the photo whose faces are replaced.\n3. Run. The models are picked "
            "in the node itself; the full set of SimSwap nodes (see the other templates) gives more control.\n\n"
            + SEEDED_NOTE, col=0, row=-2, size=(740, 250))
    info = object_info.get(QUICK_SWAP)
    if info is None:
        raise KeyError(f"{wf.name}: node type {QUICK_SWAP!r} is not in /object_info")
    images = [n for n, t, _opt in socket_inputs(info) if t == "IMAGE"]
    source = next((n for n in images if "source" in n), images[0] if images else "source_image")
    target = next((n for n in images if n != source), "target_image")
    src = wf.add("LoadImage", col=0, row=0, title="Load Image (source face)", image=SOURCE_PHOTO)
    tgt = wf.add("LoadImage", col=0, row=2.8, title="Load Image (target)", image=GROUP_PHOTO)
    widgets = set(widget_names(info))
    models = {k: v for k, v in (("generator", GENERATOR_224), ("arcface", ARCFACE), ("detector", DETECTOR))
              if k in widgets}  # the files of the other templates (the node's own defaults may differ)
    inputs: dict = {source: src[0], target: tgt[0], **models}
    quick = wf.add(QUICK_SWAP, col=1, row=0, **inputs)
    wf.add(SAVE_LABELLED, col=2, row=0, size=(420, 400), images=quick[0], filename_prefix="simswap/quick",
           format="png", quality=95)
    m = wf.add("MaskToImage", col=2, row=3, mask=quick[1])
    wf.add("PreviewImage", col=2, row=4, size=(420, 360), title="Preview swap mask", images=m[0])
    return wf


VIDEO_CLIP = "two_people.mp4"  # the synthetic clip tests/comfy_harness.py puts into the input folder


def video_two_people() -> Workflow:
    wf = Workflow("07_video_two_people", "SimSwap: two people in a video",
                  "Two identities onto the two people of a video, streamed from file to file with tracked, "
                  "steadied faces and the audio kept.")
    wf.note("Swap two different people in a whole video, file to file (core Load Video and Save Video; memory "
            "does not grow with the length of the clip).\n\n1. Load Video: your clip (upload it with the "
            "node's button).\n2. The two Load Image nodes: a photo of each person to swap IN.\n3. The two "
            "'SimSwap Map Identity' nodes say which face gets which identity: here face 0 and face 1 numbered "
            "left to right (as 'SimSwap Detect Faces' shows them), or by a reference photo of the person to "
            "replace, or by track id. Chain more of them for more people; faces not mapped are left alone.\n"
            "4. Run. Faces are tracked: a face the detector misses for up to track_gap frames keeps its swap, "
            "landmarks, mask and colour are steadied per track (temporal_smoothing, blend_smoothing), a shot cut "
            "starts new tracks. The node says how many faces each identity got and in which frames nothing was "
            "swapped. The progress bar counts frames; Cancel leaves no file.\n\n" + SEEDED_NOTE,
            col=0, row=-2.6, size=(740, 340))
    gen, arc, det = _loaders(wf, row=0)
    src_a = wf.add("LoadImage", col=0, row=3.4, title="Load Image (identity for face 0)", image=SOURCE_PHOTO)
    src_b = wf.add("LoadImage", col=0, row=6.2, title="Load Image (identity for face 1)", image=GROUP_PHOTO)
    id_a = wf.add("SimSwapExtractIdentity", col=1, row=0, title="Extract Identity (face 0)", source_images=src_a[0],
                  generator=gen[0], arcface=arc[0], detector=det[0], face="largest", face_index="0",
                  order="left-right", combine="mean", if_no_face="error")
    id_b = wf.add("SimSwapExtractIdentity", col=1, row=2.4, title="Extract Identity (face 1)", source_images=src_b[0],
                  generator=gen[0], arcface=arc[0], detector=det[0], face="largest", face_index="0",
                  order="left-right", combine="mean", if_no_face="error")
    map_a = wf.add("SimSwapMapIdentity", col=2, row=0, title="Map Identity (face 0)", identity=id_a[0],
                   target="face index", face_index=0, order="left-right")
    map_b = wf.add("SimSwapMapIdentity", col=2, row=2.4, title="Map Identity (face 1)", identity=id_b[0],
                   identity_map=map_a[0], target="face index", face_index=1, order="left-right")
    clip = wf.add("LoadVideo", col=1, row=5.2, size=(340, 420), file=VIDEO_CLIP)
    swap = wf.add("SimSwapSwapVideo", col=3, row=0, video=clip[0], identity_map=map_b[0], generator=gen[0],
                  detector=det[0], faces="all", face_index="0", order="left-right", mask="box", if_no_face="keep")
    wf.add("SaveVideo", col=4, row=0, size=(420, 480), video=swap[0], filename_prefix="simswap/video")
    return wf


WORKFLOWS = [basic_image_swap, pick_faces_with_preview, identity_from_several_photos, swap_restore_paste,
             video_frames_batch, quick_face_swap, video_two_people]
#: where scripts/make_workflows.py writes the Templates-menu titles, descriptions and order (web/simswap_templates.js)
TEMPLATES_INFO = REPO / "web" / "simswap_templates.json"


def make(factory, object_info: dict) -> Workflow:
    import inspect

    return factory(object_info) if inspect.signature(factory).parameters else factory()


def build_all(object_info: dict) -> dict[str, tuple[dict, dict]]:
    """name -> (UI workflow, API prompt)."""
    out = {}
    for factory in WORKFLOWS:
        wf = make(factory, object_info)
        out[wf.name] = (wf.to_ui(object_info), wf.to_api(object_info))
    return out


def templates_info(object_info: dict) -> dict:
    """What web/simswap_templates.js shows in the Templates menu: the order and each template's title and
    description (frontend 1.32 turns "-" and "_" of a description into spaces, so none are used)."""
    wfs = [make(f, object_info) for f in WORKFLOWS]
    return {"_comment": "written by scripts/make_workflows.py; read by web/simswap_templates.js",
            "order": [wf.name for wf in wfs],
            "templates": {wf.name: {"title": f"{wf.name[:2]} · {wf.title.removeprefix('SimSwap: ')[:1].upper()}"
                                             f"{wf.title.removeprefix('SimSwap: ')[1:]}",
                                    "description": wf.description} for wf in wfs}}


def svg_thumbnail(ui: dict, object_info: dict, size: int = 512) -> str:
    """The Templates-menu thumbnail of a UI workflow: its nodes (boxes with their titles), links and the title of
    the workflow, drawn as a square SVG. Text only (no photo, no binary), made from the same layout the
    frontend shows."""
    from xml.sax.saxutils import escape

    nodes = {n["id"]: n for n in ui["nodes"]}
    x0 = min(n["pos"][0] for n in nodes.values())
    y0 = min(n["pos"][1] - TITLE_H for n in nodes.values())
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes.values())
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes.values())
    margin, head = 16, 56
    scale = min((size - 2 * margin) / (x1 - x0), (size - head - margin) / (y1 - y0))
    ox = (size - (x1 - x0) * scale) / 2 - x0 * scale
    oy = head + (size - head - margin - (y1 - y0) * scale) / 2 - y0 * scale

    def pt(x: float, y: float) -> str:
        return f"{ox + x * scale:.1f},{oy + y * scale:.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 {size} {size}">',
             f'<rect width="{size}" height="{size}" fill="#202020"/>',
             f'<text x="{size / 2:.0f}" y="34" fill="#e8e8e8" font-family="sans-serif" font-size="20" '
             f'text-anchor="middle">{escape(ui["extra"]["title"].removeprefix("SimSwap: "))}</text>']
    for _id, src, slot, dst, dslot, _typ in ui["links"]:
        a, b = nodes[src], nodes[dst]
        ya = a["pos"][1] + 14 + 20 * slot
        yb = b["pos"][1] + 14 + 20 * dslot
        xa, xb = a["pos"][0] + a["size"][0], b["pos"][0]
        mid = (xa + xb) / 2
        parts.append(f'<path d="M{pt(xa, ya)} C{pt(mid, ya)} {pt(mid, yb)} {pt(xb, yb)}" fill="none" '
                     f'stroke="#7aa7d8" stroke-width="2"/>')
    for n in nodes.values():
        x, y = n["pos"][0], n["pos"][1] - TITLE_H
        w, h = n["size"][0], n["size"][1] + TITLE_H
        note = n["type"] in FRONTEND_ONLY
        title = n.get("title") or object_info.get(n["type"], {}).get("display_name") or n["type"]
        parts.append(f'<rect x="{ox + x * scale:.1f}" y="{oy + y * scale:.1f}" width="{w * scale:.1f}" '
                     f'height="{h * scale:.1f}" rx="4" fill="{"#653" if note else "#353535"}" '
                     f'stroke="{"#432" if note else "#111"}"/>')
        parts.append(f'<text x="{ox + (x + 10) * scale:.1f}" y="{oy + (y + 21) * scale:.1f}" fill="#dddddd" '
                     f'font-family="sans-serif" font-size="{max(7.0, 17 * scale):.1f}">{escape(title)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--object-info", help="a saved /object_info JSON (default: start a test ComfyUI)")
    ap.add_argument("--check", action="store_true", help="compare with the committed files; exit 1 if stale")
    ap.add_argument("--save-object-info", metavar="PATH", help="also write the /object_info used to PATH")
    args = ap.parse_args(argv)
    if args.object_info:
        object_info = json.loads(Path(args.object_info).read_text())
    else:
        sys.path[:0] = [str(REPO / "tests"), str(REPO)]
        import comfy_harness

        object_info = comfy_harness.start_standalone().object_info()
    if args.save_object_info:
        Path(args.save_object_info).write_text(json.dumps(object_info))
    stale = []
    API_DIR.mkdir(parents=True, exist_ok=True)
    built = build_all(object_info)
    files: list[tuple[Path, dict | str]] = [(WORKFLOW_DIR / f"{name}.json", ui) for name, (ui, _api) in built.items()]
    files += [(API_DIR / f"{name}.json", api) for name, (_ui, api) in built.items()]
    files.append((TEMPLATES_INFO, templates_info(object_info)))
    files += [(WORKFLOW_DIR / f"{name}.svg", svg_thumbnail(ui, object_info)) for name, (ui, _api) in built.items()]
    for path, obj in files:
        text = obj if isinstance(obj, str) else dumps(obj)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(REPO)))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO)}")
    if stale:
        print("stale (run scripts/make_workflows.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
