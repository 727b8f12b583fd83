// SimSwap identities: after "SimSwap Save Identity" has run, the "SimSwap Load Identity" lists show the new file
// without a page reload.
//
// The server lists identities afresh on every /object_info (Save Identity also drops ComfyUI's cached file list of
// models/simswap), so the frontend only has to ask again: app.refreshComboInNodes() (frontend 1.x; what the "R" key
// does) refreshes every combo of every node and the node definitions new nodes are made from. Several saves in one
// run (a list of identities, or several Save Identity nodes) cause one refresh, once the run has finished.
// Older frontends without refreshComboInNodes: the Load Identity nodes' combos are updated from
// /object_info/SimSwapLoadIdentity.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SAVE_TYPE = "SimSwapSaveIdentity";
const LOAD_TYPE = "SimSwapLoadIdentity";
const SAVED_KEY = "simswap_identity_saved"; // ui key the Save Identity node returns (the file names written)

let pending = false;

function nodeType(nodeId) {
    // "executed" names the node by id; subgraph nodes have ids like "12:5" (the last part is the inner node)
    const graph = app.graph;
    if (!graph || nodeId == null) return undefined;
    const direct = graph.getNodeById?.(nodeId);
    if (direct) return direct.type;
    const parts = String(nodeId).split(":");
    let g = graph;
    let node;
    for (const part of parts) {
        node = g?.getNodeById?.(part);
        g = node?.subgraph;
    }
    return node?.type;
}

function allNodes(graph, out = []) {
    for (const node of graph?._nodes ?? graph?.nodes ?? []) {
        out.push(node);
        if (node.subgraph) allNodes(node.subgraph, out);
    }
    return out;
}

async function refreshLoadIdentityLists() {
    if (typeof app.refreshComboInNodes === "function") {
        await app.refreshComboInNodes();
        return;
    }
    const res = await api.fetchApi(`/object_info/${LOAD_TYPE}`);
    if (!res.ok) return;
    const info = (await res.json())[LOAD_TYPE];
    const spec = info?.input?.required?.identity_name;
    if (!spec) return;
    const values = spec[0] === "COMBO" ? spec[1]?.options : spec[0];
    if (!Array.isArray(values)) return;
    for (const node of allNodes(app.graph)) {
        if (node.type !== LOAD_TYPE) continue;
        for (const w of node.widgets ?? []) {
            if (w.name === "identity_name") w.options.values = values;
        }
    }
    app.graph?.setDirtyCanvas?.(true, true);
}

async function flush() {
    if (!pending) return;
    pending = false;
    try {
        await refreshLoadIdentityLists();
    } catch (err) {
        console.warn("SimSwap: could not refresh the identity lists", err);
    }
}

app.registerExtension({
    name: "SimSwap.IdentityLists",
    setup() {
        api.addEventListener("executed", ({ detail }) => {
            if (!detail) return;
            const saved = detail.output?.[SAVED_KEY];
            const type = nodeType(detail.display_node ?? detail.node);
            if (type === SAVE_TYPE || (Array.isArray(saved) && saved.length)) pending = true;
        });
        // one refresh when the run is over (a run may save several identities)
        api.addEventListener("execution_success", flush);
        api.addEventListener("execution_error", flush);
        api.addEventListener("execution_interrupted", flush);
    },
});
