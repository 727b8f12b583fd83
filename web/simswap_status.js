// SimSwap status: what a SimSwap node reports is shown where the artist looks.
//
// - Node text: a SimSwap node that returns ui={"text": [...]} (e.g. "swapped 6 faces in 1 frame", or the frames
//   where nothing was swapped and why) gets the text in a read-only box on the node (onExecuted); the box is
//   cleared when the node runs again. The box is never saved with the workflow (serialize = false), so the
//   positions of the saved widget values do not move.
// - Toasts: messages the server sends as "simswap.status" {node, message, level} (nodes/_common.report_status;
//   the same line is in the server log) appear as a toast.
// - Old workflows: a 'SimSwap Face Swap' (SimSwapSwap) saved before its settings moved to 'SimSwap Swap Options'
//   had 13 widget values; they are put back by name, so faces / face_index / order / mask / if_no_face keep theirs.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const PREFIX = "SimSwap";
const STATUS_WIDGET = "simswap_status";
const STATUS_EVENT = "simswap.status";
const SEVERITY = { info: "info", warning: "warn", error: "error" };

// SimSwapSwap widgets before the options node (widgets_values positions) and the defaults of the moved ones
const OLD_SWAP_WIDGETS = ["faces", "face_index", "order", "mask", "mask_regions", "mask_grow", "mask_feather",
    "paste_mode", "color_match", "if_no_face", "batch_size", "reference_threshold", "temporal_smoothing"];
const MOVED_DEFAULTS = { mask_regions: "skin,brows,eyes,glasses,nose,lips,mouth", mask_grow: 0, mask_feather: -1,
    paste_mode: "default", color_match: false, batch_size: 8, reference_threshold: 0.03, temporal_smoothing: 0 };
const NEW_DEFAULTS = { identity_strength: 1.0, restore_visibility: 1.0, gender: "any" };

function toast(message, level = "warning", summary = "SimSwap") {
    const severity = SEVERITY[level] ?? "warn";
    const toastApi = app.extensionManager?.toast;
    if (toastApi?.add) {
        toastApi.add({ severity, summary, detail: String(message), life: level === "error" ? 15000 : 8000 });
    } else {
        (level === "error" ? console.error : console.warn)(`[${summary}] ${message}`);
    }
}

function statusWidget(node) {
    let widget = node.widgets?.find((w) => w.name === STATUS_WIDGET);
    if (widget) return widget;
    if (typeof node.addDOMWidget === "function" && typeof document !== "undefined") {
        const el = document.createElement("textarea");
        el.readOnly = true;
        el.rows = 3;
        el.className = "comfy-multiline-input simswap-status";
        el.style.cssText = "width:100%;resize:vertical;font-size:11px;opacity:0.9;";
        widget = node.addDOMWidget(STATUS_WIDGET, "simswap_status", el, {
            serialize: false,
            getValue: () => el.value,
            setValue: (v) => { el.value = v ?? ""; },
        });
        widget.element = el;
    } else {
        widget = node.addWidget("text", STATUS_WIDGET, "", () => {}, { serialize: false });
    }
    widget.serialize = false;             // not in widgets_values: saved positions stay as they are
    widget.options = { ...(widget.options ?? {}), serialize: false };  // not sent in the prompt either
    return widget;
}

function setStatus(node, text) {
    if (!text && !node.widgets?.some((w) => w.name === STATUS_WIDGET)) return;
    const widget = statusWidget(node);
    widget.value = text;
    if (widget.element) widget.element.value = text;
    node.setDirtyCanvas?.(true, true);
}

function findNode(nodeId) {
    if (nodeId == null) return undefined;
    let graph = app.graph;
    let node;
    for (const part of String(nodeId).split(":")) {  // subgraph nodes: "12:5"
        node = graph?.getNodeById?.(Number.isNaN(Number(part)) ? part : Number(part)) ?? graph?.getNodeById?.(part);
        graph = node?.subgraph;
    }
    return node;
}

function remapOldSwapValues(node, info) {
    const values = info?.widgets_values;
    if (!Array.isArray(values) || values.length !== OLD_SWAP_WIDGETS.length) return;
    if (!["keep", "error"].includes(values[OLD_SWAP_WIDGETS.indexOf("if_no_face")])) return;
    const old = Object.fromEntries(OLD_SWAP_WIDGETS.map((name, i) => [name, values[i]]));
    for (const widget of node.widgets ?? []) {
        if (widget.name in old) widget.value = old[widget.name];
        else if (widget.name in NEW_DEFAULTS) widget.value = NEW_DEFAULTS[widget.name];
    }
    const changed = Object.keys(MOVED_DEFAULTS).filter((k) => old[k] !== undefined && old[k] !== MOVED_DEFAULTS[k]);
    if (changed.length) {
        toast(`'SimSwap Face Swap' (node ${node.id}) was saved by an older version: ${changed.join(", ")} now live in `
            + "'SimSwap Swap Options' (connect one to its 'options' input to set them again).", "warning");
    }
}

app.registerExtension({
    name: "SimSwap.Status",
    async setup() {
        api.addEventListener(STATUS_EVENT, (event) => {
            const d = event?.detail ?? {};
            if (d.message) toast(d.message, d.level);
        });
        api.addEventListener("executing", (event) => {
            // a SimSwap node starts: its old text goes (cached nodes do not run and keep theirs)
            const d = event?.detail;
            const id = d && typeof d === "object" ? (d.display_node ?? d.node) : d;
            const node = findNode(id);
            if (node && String(node.comfyClass ?? node.type ?? "").startsWith(PREFIX)) setStatus(node, "");
        });
    },
    async beforeRegisterNodeDef(nodeType, nodeData) {
        if (!nodeData?.name?.startsWith(PREFIX)) return;
        const onExecuted = nodeType.prototype.onExecuted;
        nodeType.prototype.onExecuted = function (message) {
            const result = onExecuted?.apply(this, arguments);
            const text = message?.text;
            if (text != null) setStatus(this, (Array.isArray(text) ? text : [text]).join("\n"));
            return result;
        };
        if (nodeData.name === "SimSwapSwap") {
            const onConfigure = nodeType.prototype.onConfigure;
            nodeType.prototype.onConfigure = function (info) {
                const result = onConfigure?.apply(this, arguments);
                try {
                    remapOldSwapValues(this, info);
                } catch (e) {
                    console.warn("[SimSwap] could not remap an old SimSwap Swap node", e);
                }
                return result;
            };
        }
    },
});
