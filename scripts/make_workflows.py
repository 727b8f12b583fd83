"""Build the example workflows of the pack, in both formats, from ONE description (this file).

    workflows/<name>.json      UI format (what ComfyUI's frontend loads; listed in its template browser)
    workflows/api/<name>.json  API format (what POST /prompt takes; executed by tests/test_comfyui_workflows.py)

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
    if opts.get("image_upload"):
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

    def __init__(self, name: str, title: str):
        self.name, self.title = name, title
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
        nodes = []
        for node in self.nodes:
            pos = [round(40 + node.col * 460), round(40 + node.row * 150)]
            if node.type in FRONTEND_ONLY:
                assert node.size is not None, f"{node.type} (frontend-only) needs a size"
                nodes.append({"id": node.id, "type": node.type, "pos": pos, "size": list(node.size),
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
            n_rows = max(len(inputs), len(outputs)) + len(widget_names(info))
            size = list(node.size) if node.size else [340, 46 + 24 * n_rows]
            item = {"id": node.id, "type": node.type, "pos": pos, "size": size, "flags": {},
                    "order": order[node.id], "mode": 0, "inputs": inputs, "outputs": outputs,
                    "properties": {"Node name for S&R": node.type}, "widgets_values": wv}
            if node.title:
                item["title"] = node.title
            nodes.append(item)
        return {"last_node_id": max(n.id for n in self.nodes), "last_link_id": link_id, "nodes": nodes,
                "links": links, "groups": [], "config": {},
                "extra": {"ds": fit_view(nodes), "simswap_workflow": self.name,
                          "title": self.title},
                "version": 0.4}


def fit_view(nodes: list[dict], width: int = 1500, height: int = 900, margin: int = 40) -> dict:
    """The saved canvas view (``extra.ds``) that shows every node, title bars included, in a ``width`` x ``height``
    window (a 1600x1000 browser less the side bar): scale at most 0.8, offset = top-left node corner - margin."""
    title = 30  # the title bar sits above a node's pos
    x0 = min(n["pos"][0] for n in nodes)
    y0 = min(n["pos"][1] for n in nodes) - title
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes)
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes)
    scale = min(0.8, (width - 2 * margin) / max(x1 - x0, 1), (height - 2 * margin) / max(y1 - y0, 1))
    scale = round(scale, 3)
    return {"scale": scale, "offset": [round(-x0 + margin / scale, 1), round(-y0 + margin / scale, 1)]}


# ------------------------------------------------------------------------------------------ the workflows
SEEDED_NOTE = ("Model files go into ComfyUI/models/simswap (generator: latest_net_G.pth = official 224 'people' "
               "model, or 550000_net_G.pth = 512 beta; ArcFace: arcface_checkpoint.tar; optional BiSeNet "
               "79999_iter.pth). The detector 'yunet (offline default)' needs no file; insightface SCRFD packs go "
               "into models/insightface. Pick your own photos in the Load Image nodes.")


def _loaders(wf: Workflow, row: float = 0.0, col: float = 0.0):
    gen = wf.add("SimSwapGeneratorLoader", col=col, row=row, generator_name=GENERATOR_224, variant="auto",
                 crop_size="auto")
    arc = wf.add("SimSwapArcFaceLoader", col=col, row=row + 1.2, arcface_name=ARCFACE)
    det = wf.add("SimSwapDetectorLoader", col=col, row=row + 2.1, detector=DETECTOR, threshold=0.5, det_size=640)
    return gen, arc, det


def basic_image_swap() -> Workflow:
    wf = Workflow("01_basic_image_swap", "SimSwap: basic image swap")
    wf.note("Basic face swap.\n\n1. Load Image (source): a photo of the person to swap IN.\n2. Load Image "
            "(target): the photo whose faces are replaced.\n3. Queue. The mask output shows where pixels "
            "changed.\n\n" + SEEDED_NOTE, col=0, row=-2, size=(740, 250))
    gen, arc, det = _loaders(wf, row=0)
    src = wf.add("LoadImage", col=0, row=3.4, title="Load Image (source face)", image=SOURCE_PHOTO)
    tgt = wf.add("LoadImage", col=1, row=3.4, title="Load Image (target)", image=GROUP_PHOTO)
    ident = wf.add("SimSwapExtractIdentity", col=1, row=0, source_images=src[0], generator=gen[0],
                   arcface=arc[0], detector=det[0], face="largest", face_index=0, order="left-right",
                   combine="mean", if_no_face="error")
    swap = wf.add("SimSwapSwap", col=2, row=0, images=tgt[0], identity=ident[0], generator=gen[0],
                  arcface=arc[0], detector=det[0], faces="all", face_index="0", order="left-right", mask="box",
                  paste_mode="default", if_no_face="keep", batch_size=8)
    wf.add("SaveImage", col=3, row=0, size=(420, 400), images=swap[0], filename_prefix="simswap/basic")
    m = wf.add("MaskToImage", col=3, row=3, mask=swap[1])
    wf.add("PreviewImage", col=3, row=4, size=(420, 360), title="Preview swap mask", images=m[0])
    return wf


def pick_faces_with_preview() -> Workflow:
    wf = Workflow("02_pick_faces_with_preview", "SimSwap: pick faces with the preview")
    wf.note("Swap only some faces of a group photo.\n\n1. Queue once: 'SimSwap Detect Faces' shows every face "
            "with its number (numbered left to right here).\n2. Type the numbers you want into face_index of "
            "'SimSwap Swap' (e.g. 0,2) with faces = index and the SAME order, and queue again. Swap takes the "
            "faces Detect Faces found (detected_faces), so nothing is detected twice.\n\nThe other "
            "modes: all, largest, best (detection score) and reference (the face matching a reference "
            "identity).\n\n" + SEEDED_NOTE, col=0, row=-2.2, size=(740, 280))
    gen, arc, det = _loaders(wf, row=0)
    src = wf.add("LoadImage", col=0, row=3.4, title="Load Image (source face)", image=SOURCE_PHOTO)
    tgt = wf.add("LoadImage", col=1, row=3.4, title="Load Image (group photo)", image=GROUP_PHOTO)
    faces = wf.add("SimSwapDetectFaces", col=2, row=3.4, images=tgt[0], detector=det[0], order="left-right")
    wf.add("PreviewImage", col=3, row=3.4, size=(420, 360), title="Preview numbered faces", images=faces[1])
    ident = wf.add("SimSwapExtractIdentity", col=1, row=0, source_images=src[0], generator=gen[0],
                   arcface=arc[0], detector=det[0], face="largest", face_index=0, order="left-right",
                   combine="mean", if_no_face="error")
    swap = wf.add("SimSwapSwap", col=2, row=0, images=tgt[0], identity=ident[0], generator=gen[0],
                  arcface=arc[0], detector=det[0], faces="index", face_index="0,2", order="left-right",
                  mask="ellipse", paste_mode="default", if_no_face="keep", batch_size=8,
                  detected_faces=faces[0])
    wf.add("SaveImage", col=3, row=0, size=(420, 400), images=swap[0], filename_prefix="simswap/picked")
    m = wf.add("MaskToImage", col=4, row=0, mask=swap[1])
    wf.add("PreviewImage", col=4, row=1, size=(420, 360), title="Preview swap mask", images=m[0])
    return wf


def identity_from_several_photos() -> Workflow:
    wf = Workflow("03_identity_from_several_photos", "SimSwap: identity from several photos, saved")
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
                   arcface=arc[0], detector=det[0], face="largest", face_index=0, order="left-right",
                   combine="median", if_no_face="error")
    saved = wf.add("SimSwapSaveIdentity", col=2, row=0, identity=ident[0], name="my_identity",
                   if_exists="overwrite")
    tgt = wf.add("LoadImage", col=2, row=3.4, title="Load Image (target)", image=SOURCE_PHOTO)
    swap = wf.add("SimSwapSwap", col=3, row=0, images=tgt[0], identity=saved[0], generator=gen[0],
                  arcface=arc[0], detector=det[0], faces="largest", face_index="0", order="left-right",
                  mask="box", paste_mode="default", if_no_face="keep", batch_size=8)
    wf.add("SaveImage", col=4, row=0, size=(420, 400), images=swap[0], filename_prefix="simswap/identity")
    return wf


def swap_restore_paste() -> Workflow:
    wf = Workflow("04_swap_restore_paste", "SimSwap: swap, restore the faces, paste back")
    wf.note("Restore (or upscale) only the swapped faces, without detecting them again.\n\n'SimSwap Split Face "
            "Crops' gives the swapped faces as aligned crops plus their alignment. Put your face restorer "
            "between them and 'SimSwap Paste Faces': a GFPGAN / CodeFormer / GPEN node of a restoration pack "
            "(e.g. facerestore_cf) goes where 'Image Sharpen' stands here (Sharpen is only a core stand-in). "
            "Crops of another size (a 2x restorer) are resized back. 'SimSwap Face Mask' makes a soft "
            "landmark ellipse per face so the restored face blends in.\n\n" + SEEDED_NOTE,
            col=0, row=-2.2, size=(740, 280))
    gen, arc, det = _loaders(wf, row=0)
    src = wf.add("LoadImage", col=0, row=3.4, title="Load Image (source face)", image=SOURCE_PHOTO)
    tgt = wf.add("LoadImage", col=1, row=3.4, title="Load Image (target)", image=GROUP_PHOTO)
    ident = wf.add("SimSwapExtractIdentity", col=1, row=0, source_images=src[0], generator=gen[0],
                   arcface=arc[0], detector=det[0], face="largest", face_index=0, order="left-right",
                   combine="mean", if_no_face="error")
    swap = wf.add("SimSwapSwap", col=2, row=0, images=tgt[0], identity=ident[0], generator=gen[0],
                  arcface=arc[0], detector=det[0], faces="largest", face_index="0", order="left-right",
                  mask="box", paste_mode="default", if_no_face="keep", batch_size=8)
    split = wf.add("SimSwapSplitFaceCrops", col=3, row=0, face_crops=swap[2])
    restore = wf.add("ImageSharpen", col=3, row=1.5, title="Face restorer goes here (stand-in: Image Sharpen)",
                     image=split[0], sharpen_radius=2, sigma=1.0, alpha=1.0)
    fmask = wf.add("SimSwapFaceMask", col=3, row=3, face_crops=swap[2], mask="ellipse", mask_grow=0.0,
                   mask_feather=-1.0)
    paste = wf.add("SimSwapPasteFaces", col=4, row=0, images=swap[0], crops=restore[0], alignment=split[1],
                   crop_masks=fmask[1], paste_mode="default", color_match=False, feather=0.12, erode=0.04)
    wf.add("SaveImage", col=5, row=0, size=(420, 400), images=paste[0], filename_prefix="simswap/restored")
    wf.add("PreviewImage", col=4, row=3, size=(300, 300), title="Preview restored crops", images=restore[0])
    return wf


def video_frames_batch() -> Workflow:
    wf = Workflow("05_video_frames_batch", "SimSwap: a batch of video frames")
    wf.note("Swap every frame of a video (an IMAGE batch; frame count and order are kept, frames without a "
            "face are returned unchanged with if_no_face = keep).\n\nWith ComfyUI-VideoHelperSuite, replace "
            "the frame source by 'Load Video (Upload)' (VHS_LoadVideo; use frame_load_cap / skip_first_frames "
            "for long videos) and 'Save Image' by 'Video Combine' (VHS_VideoCombine). Here core nodes build a "
            "4-frame 'video': 3 copies of a photo and one empty frame. batch_size = frames per batch (and faces "
            "per generator call on a GPU); the progress bar advances frame by frame and Cancel stops it. "
            "temporal_smoothing = 0.5 steadies each tracked face's landmarks from frame to frame (no jitter); "
            "set it to 0 for a batch of unrelated photos.\n\n"
            + SEEDED_NOTE, col=0, row=-2.4, size=(740, 300))
    gen, arc, det = _loaders(wf, row=0)
    src = wf.add("LoadImage", col=0, row=3.4, title="Load Image (source face)", image=SOURCE_PHOTO)
    frame = wf.add("LoadImage", col=1, row=3.4, title="Load Image (frame)", image=SOURCE_PHOTO)
    rep = wf.add("RepeatImageBatch", col=2, row=3.4, image=frame[0], amount=3)
    empty = wf.add("EmptyImage", col=2, row=4.6, width=512, height=512, batch_size=1, color=8421504)
    frames = wf.add("ImageBatch", col=3, row=3.4, title="Frames (stand-in for Load Video)", image1=rep[0],
                    image2=empty[0])
    ident = wf.add("SimSwapExtractIdentity", col=1, row=0, source_images=src[0], generator=gen[0],
                   arcface=arc[0], detector=det[0], face="largest", face_index=0, order="left-right",
                   combine="mean", if_no_face="error")
    swap = wf.add("SimSwapSwap", col=3, row=0, images=frames[0], identity=ident[0], generator=gen[0],
                  arcface=arc[0], detector=det[0], faces="all", face_index="0", order="left-right",
                  mask="ellipse", paste_mode="default", if_no_face="keep", batch_size=2, temporal_smoothing=0.5)
    wf.add("SaveImage", col=4, row=0, size=(420, 400), images=swap[0], filename_prefix="simswap/frames")
    m = wf.add("MaskToImage", col=4, row=3, mask=swap[1])
    wf.add("SaveImage", col=5, row=0, size=(420, 400), title="Save masks", images=m[0],
           filename_prefix="simswap/frames_mask")
    return wf


WORKFLOWS = [basic_image_swap, pick_faces_with_preview, identity_from_several_photos, swap_restore_paste,
             video_frames_batch]


def build_all(object_info: dict) -> dict[str, tuple[dict, dict]]:
    """name -> (UI workflow, API prompt)."""
    out = {}
    for make in WORKFLOWS:
        wf = make()
        out[wf.name] = (wf.to_ui(object_info), wf.to_api(object_info))
    return out


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--object-info", help="a saved /object_info JSON (default: start a test ComfyUI)")
    ap.add_argument("--check", action="store_true", help="compare with the committed files; exit 1 if stale")
    args = ap.parse_args(argv)
    if args.object_info:
        object_info = json.loads(Path(args.object_info).read_text())
    else:
        sys.path[:0] = [str(REPO / "tests"), str(REPO)]
        import comfy_harness

        object_info = comfy_harness.start_standalone().object_info()
    stale = []
    API_DIR.mkdir(parents=True, exist_ok=True)
    for name, (ui, api) in build_all(object_info).items():
        for path, obj in ((WORKFLOW_DIR / f"{name}.json", ui), (API_DIR / f"{name}.json", api)):
            text = dumps(obj)
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
