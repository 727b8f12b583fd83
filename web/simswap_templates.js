// SimSwap: titles, descriptions and order of the pack's example workflows in the Templates menu.
//
// ComfyUI 0.3.75 lists a pack's templates by file name only (GET /api/workflow_templates, in the order the file
// system returns them) and frontend 1.32 shows the file name as both title and description; a pack has no way to
// give more (an index.json for custom-node templates is not supported by these versions). This extension keeps
// the pack's templates in their numbered order and gives each the title and description that
// scripts/make_workflows.py writes to simswap_templates.json (next to this file), and points the thumbnail at
// <name>.svg in the template folder (a drawing of the graph that make_workflows.py writes; the frontend asks for
// <name>.<mediaSubtype>). Without this extension (or on a frontend whose internals differ) the menu still works,
// with file names as titles and the stock thumbnail.
import { api } from "../../scripts/api.js";
import { app } from "../../scripts/app.js";

const INFO_URL = new URL("./simswap_templates.json", import.meta.url);
const PATCHED = Symbol.for("simswap.templates");
// the pack's folder name: /extensions/<folder>/simswap_templates.js; the templates are listed under that name
const MODULE = decodeURIComponent(new URL(import.meta.url).pathname.split("/").slice(-2)[0]);

let info = null;

function piniaStore(id) {
  const pinia = app.extensionManager?._p
    ?? document.getElementById("vue-app")?.__vue_app__?.config?.globalProperties?.$pinia;
  return pinia?._s?.get?.(id) ?? null;
}

function describe(template) {
  const meta = info?.templates?.[template.name];
  if (template.sourceModule !== MODULE || !meta) return template;
  return {
    ...template,
    title: meta.title,
    description: meta.description,
    mediaSubtype: "svg",
    searchableText: `${meta.title} ${meta.description} ${template.name} ${MODULE} extension`,
  };
}

function patchStore() {
  const store = piniaStore("workflowTemplates");
  if (!store || store[PATCHED] || typeof store.filterTemplatesByCategory !== "function") return;
  const original = store.filterTemplatesByCategory;
  store.filterTemplatesByCategory = (...args) => {
    const list = original(...args);
    return Array.isArray(list) ? list.map(describe) : list;
  };
  store[PATCHED] = true;
}

app.registerExtension({
  name: "SimSwap.Templates",
  async setup() {
    try {
      info = await (await fetch(INFO_URL)).json();
    } catch (e) {
      console.warn("SimSwap: template titles not loaded", e);
      return;
    }
    if (typeof api.getWorkflowTemplates !== "function" || api.getWorkflowTemplates[PATCHED]) return;
    const original = api.getWorkflowTemplates.bind(api);
    const wrapped = async () => {
      patchStore(); // the templates store exists now (it is the one asking)
      const listing = await original();
      const ours = listing?.[MODULE];
      if (Array.isArray(ours)) {
        const order = info.order || [];
        const rank = (n) => (order.includes(n) ? order.indexOf(n) : order.length);
        listing[MODULE] = [...ours].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
      }
      return listing;
    };
    wrapped[PATCHED] = true;
    api.getWorkflowTemplates = wrapped;
    patchStore();
  },
});
