// SimSwap: search aliases for the node search box (double-click on the canvas) and the node library.
//
// Users of other face-swap packs type "face swap", "faceswap" or "reactor"; the search of frontend 1.32 (ComfyUI
// 0.3.75) only looks at a node's id and display name (Fuse.js over `name` and `display_name`). Newer ComfyUI and
// frontends read `search_aliases` from the node definitions themselves (nodes/search_aliases.py passes them where
// the running ComfyUI's io.Schema has the field); there this file does nothing. Elsewhere it wraps the search
// service's `searchNode` so that a query naming one of our aliases lists those nodes first. The aliases are in
// simswap_search_aliases.json next to this file (one list for both sides).
import { app } from "../../scripts/app.js";

const ALIASES_URL = new URL("./simswap_search_aliases.json", import.meta.url);
const PATCHED = Symbol.for("simswap.searchAliases");
// a query this long may start an alias; a shorter one ("face", "load", "mask") only counts when it IS an alias
// ("roop", "gpen"): short words are left to the frontend's own search
const MIN_PREFIX = 5, MIN_EXACT = 4;

const norm = (s) => String(s ?? "").toLowerCase().replace(/[^a-z0-9]+/g, "");

/** How well the query names one of the aliases (case, spaces and punctuation ignored): 0 = it is an alias,
 *  1 = it starts one, null = neither (or the query is too short to mean anything particular). */
export function aliasRank(query, aliases) {
  const q = norm(query);
  if (q.length < MIN_EXACT) return null;
  const names = (aliases || []).map(norm);
  if (names.includes(q)) return 0;
  return q.length >= MIN_PREFIX && names.some((a) => a.startsWith(q)) ? 1 : null;
}

function piniaStore(id) {
  // the pinia instance behind the frontend's stores (app.extensionManager is the workspace store)
  const pinia = app.extensionManager?._p
    ?? document.getElementById("vue-app")?.__vue_app__?.config?.globalProperties?.$pinia;
  return pinia?._s?.get?.(id) ?? null;
}

function install(aliases) {
  const store = piniaStore("nodeDef");
  const service = store?.nodeSearchService;
  if (!service || typeof service.searchNode !== "function") return "unsupported frontend (no node search service)";
  const keys = (service.nodeFuseSearch?.keys ?? []).map((k) => (typeof k === "string" ? k : k?.name));
  if (keys.includes("search_aliases")) return "native search_aliases";
  const proto = Object.getPrototypeOf(service);
  if (proto[PATCHED]) return "installed";
  const original = proto.searchNode;
  proto.searchNode = function searchNodeWithAliases(query, filters = [], options, extraOptions = {}) {
    const found = original.call(this, query, filters, undefined, extraOptions);
    const limit = options?.limit;
    const q = String(query ?? "").trim();
    if (q) {
      const wildcard = (extraOptions?.matchWildcards ?? true) ? "*" : undefined;
      const data = this.nodeFuseSearch?.data ?? [];
      const ranked = [];
      for (const def of data) {
        const rank = aliasRank(q, aliases[def.name] ?? def.search_aliases);
        if (rank !== null && filters.every(({ filterDef, value }) => filterDef.matches(def, value, { wildcard })))
          ranked.push({ def, rank });
      }
      // exact aliases first, then aliases the query starts; each group in the frontend's own order
      const order = new Map(found.map((d, i) => [d.name, i]));
      const pos = (d) => order.get(d.name) ?? found.length;
      ranked.sort((a, b) => a.rank - b.rank || pos(a.def) - pos(b.def));
      const hits = ranked.map((r) => r.def);
      if (hits.length) {
        const names = new Set(hits.map((d) => d.name));
        const out = [...hits, ...found.filter((d) => !names.has(d.name))];
        return limit ? out.slice(0, limit) : out;
      }
    }
    return limit ? found.slice(0, limit) : found;
  };
  proto[PATCHED] = true;
  return "installed";
}

app.registerExtension({
  name: "SimSwap.SearchAliases",
  async setup() {
    let aliases;
    try {
      const res = await fetch(ALIASES_URL);
      const data = await res.json();
      aliases = Object.fromEntries(Object.entries(data).filter(([k]) => !k.startsWith("_")));
    } catch (e) {
      console.warn("SimSwap: search aliases not loaded", e);
      return;
    }
    window.__simswapSearchAliases = install(aliases);
  },
});
