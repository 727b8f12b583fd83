"""Widget values -> simswap_core FaceSelection (shared by the identity and swap nodes)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simswap_core import masks as _masks

if TYPE_CHECKING:
    from simswap_core.detection.select import FaceSelection
    from simswap_core.masks import MaskSpec

ORDERS = ["left-right", "top-bottom", "size", "score"]
SELECT_MODES = ["all", "largest", "best", "index", "reference"]


def parse_indices(text: str, name: str = "face_index") -> tuple[int, ...]:
    """'0' or '0, 2' -> (0,) / (0, 2); a clear error otherwise (also for numbers too large to be a face number,
    which would overflow later)."""
    from simswap_core.detection.select import MAX_FACE_INDEX
    from simswap_core.errors import InputError

    text = str(text)
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    ok = bool(parts) and all(p.isascii() and p.isdigit() and len(p) <= len(str(MAX_FACE_INDEX)) for p in parts)
    values = tuple(int(p) for p in parts) if ok else ()
    if not values or any(v > MAX_FACE_INDEX for v in values):
        shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "..."
        raise InputError(f"{name}: expected face numbers 0..{MAX_FACE_INDEX} separated by commas (e.g. '0' or "
                         f"'0,2'), got {shown}")
    return values


def validate_face_index(face_index: str | None) -> bool | str:
    """validate_inputs helper: True, or the error ComfyUI shows before anything runs (None = a linked input)."""
    if face_index is None:
        return True
    try:
        parse_indices(face_index)
    except Exception as e:  # InputError
        return str(e)
    return True


def make_selection(how: str, indices: str = "0", order: str = "left-right",
                   threshold: float | None = None) -> FaceSelection:
    from simswap_core.checks import check_number
    from simswap_core.detection.select import FaceSelection
    from simswap_core.errors import InputError

    if how not in SELECT_MODES:
        raise InputError(f"faces: expected one of {SELECT_MODES}, got {how!r}")
    if order not in ORDERS:
        raise InputError(f"order: expected one of {ORDERS}, got {order!r}")
    kwargs: dict[str, Any] = {"how": how, "order": order}
    if how == "index":
        kwargs["indices"] = parse_indices(indices)
    if how == "reference" and threshold is not None:
        kwargs["threshold"] = check_number(threshold, "reference_threshold", low=0.0, low_open=True, high=1.0)
    return FaceSelection(**kwargs)


# ---------------------------------------------------------------------------------------------- mask options
MASK_KINDS = list(_masks.MASK_KINDS)  # every registered CropMasker kind (simswap_core/masks/), in menu order
OFFICIAL_REGIONS_TEXT = "skin,brows,eyes,glasses,nose,lips,mouth"
# soft-edge widths offered by the mask_feather menu ("auto" = the kind's own: box 0, ellipse 0.06, parsing 0.03)
FEATHER_CHOICES = ["auto", "0", "0.01", "0.02", "0.03", "0.04", "0.05", "0.06", "0.08", "0.1", "0.12", "0.15",
                   "0.2", "0.3"]
FEATHER_TOOLTIP = ("Width of the mask's soft edge as a fraction of the crop size; auto = the kind's own (box 0, "
                   "ellipse 0.06, parsing 0.03, occlusion 0.03, sam 0.04, sam_parsing 0.03).")
#: tooltip of a ``mask`` combo (every kind of MASK_KINDS explained; what each one needs connected)
MASK_TOOLTIP = ("Region of each aligned face that is replaced: box = the whole aligned crop (official default), "
                "ellipse = a face ellipse from the 5 landmarks, parsing = BiSeNet regions of the target face (needs a "
                "face parser; official --use_mask), occlusion = the parsing regions that are the face itself (skin, "
                "brows, eyes, nose, lips, mouth) so a hand, hair or glasses in front stay in front (needs a face "
                "parser), sam = the face ellipse cut by Segment Anything's outline of the face, which leaves "
                "occluders out without a parser (needs a SAM model: SimSwap Load SAM), sam_parsing = occlusion "
                "regions cut by SAM's face (needs both).")


def region_inputs() -> list:
    """regions / grow / feather widgets of a crop mask (ids mask_regions, mask_grow, mask_feather)."""
    from comfy_api.latest import io

    return [
        io.String.Input("mask_regions", display_name="regions", default=OFFICIAL_REGIONS_TEXT,
                        tooltip="For mask = parsing, occlusion or sam_parsing: comma-separated regions among skin, "
                                "brows, eyes, glasses, nose, lips, mouth, ears, earrings, neck, hair, hat (default = "
                                "official set; occlusion and sam_parsing never swap glasses, hair, hat, earrings, "
                                "necklace, cloth)."),
        io.Float.Input("mask_grow", default=0.0, min=-0.5, max=0.5, step=0.005,
                       tooltip="Grow (> 0) or shrink (< 0) the mask, as a fraction of the aligned crop size (so it "
                               "scales with the face)."),
        io.Combo.Input("mask_feather", options=FEATHER_CHOICES, default="auto", tooltip=FEATHER_TOOLTIP),
    ]


def parse_feather(value: object) -> float | None:
    """mask_feather widget value -> MaskSpec.feather: "auto" (or -1, the value saved by older versions) -> None
    (the kind's default), a number 0..1 (a menu entry, or any number from an API prompt) -> that number."""
    from simswap_core.checks import check_number
    from simswap_core.errors import InputError

    if value == "auto" or (not isinstance(value, bool) and isinstance(value, (int, float, str)) and
                           str(value).strip() in ("-1", "-1.0")):
        return None
    number: object = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"mask_feather: expected 'auto' or a number 0..1 (fraction of the crop size), got "
                             f"{value[:40]!r}") from None
    return check_number(number, "mask_feather ('auto' or a fraction of the crop size)", low=0.0, high=1.0)


def validate_feather(value: object) -> bool | str:
    """validate_inputs helper for mask_feather (None = a linked input)."""
    if value is None:
        return True
    try:
        parse_feather(value)
    except Exception as e:  # InputError
        return str(e)
    return True


def mask_inputs(default_kind: str = "box") -> list:
    """The widgets that describe a crop-space face mask (SimSwap Face Mask; the swap node has ``mask`` and its
    options node ``region_inputs``)."""
    from comfy_api.latest import io

    return [
        io.Combo.Input("mask", options=MASK_KINDS, default=default_kind, tooltip=MASK_TOOLTIP),
        *region_inputs(),
    ]


def make_mask_spec(mask: str, mask_regions: str, mask_grow: float, mask_feather: float | str) -> MaskSpec:
    from simswap_core.checks import check_number
    from simswap_core.errors import InputError
    from simswap_core.masks import MaskSpec

    if mask not in MASK_KINDS:
        raise InputError(f"mask: expected one of {MASK_KINDS}, got {mask!r}")
    regions = tuple(r.strip() for r in str(mask_regions).split(",") if r.strip())
    if not regions:
        raise InputError(f"mask_regions: expected comma-separated region names, got {mask_regions!r}")
    feather = parse_feather(mask_feather)
    grow = check_number(mask_grow, "mask_grow (fraction of the crop size)", low=-0.5, high=0.5)
    return MaskSpec(kind=mask, regions=regions, grow=grow, feather=feather)
