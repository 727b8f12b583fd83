// Drives the real ComfyUI frontend in headless chromium (playwright-core) for scripts/frontend_check.py.
//
//   node scripts/frontend_check.mjs JOB.json
//
// JOB.json (written by frontend_check.py):
//   {"url": "http://127.0.0.1:PORT", "chromium": "/usr/bin/chromium", "results": "/path/results.json",
//    "width": 1600, "height": 1000,
//    "workflows": [{"name": "basic_swap", "path": "/abs/ui.json"}, ...],
//    "screenshots": [{"workflow": "/abs/ui.json", "out": "/abs/shot.png", "run": false}],
//    "templates_shot": {"pack": "ComfyUI-SimSwap", "out": "/abs/templates.png"} | null,
//    "search": {"queries": ["face swap", ...]} | null,          (type each query into the real search box)
//    "missing_models": {"url": "http://127.0.0.1:PORT2", "workflow": "/abs/ui.json"} | null,
//    "templates_menu": {"pack": "ComfyUI-SimSwap"} | null}     (cards, titles and thumbnails of the pack)
// For every workflow: app.loadGraphData, then checks in the page (registered node types, widgets against the
// node definitions, links against the node definitions), any dialog the frontend opened, console errors, and
// app.graphToPrompt().output. Everything goes to results.json; the Python side decides what is a failure.
// Every request that does not go to the loopback server is aborted (and recorded).
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..");
const req = createRequire(import.meta.url);
let chromium;
for (const p of [process.env.SIMSWAP_NODE_MODULES, path.join(repo, ".cache", "node", "node_modules"), null]) {
  try {
    ({ chromium } = p ? req(path.join(p, "playwright-core")) : req("playwright-core"));
    break;
  } catch (e) { /* try the next place */ }
}
if (!chromium) {
  console.error("playwright-core not found: run `npm install --prefix .cache/node playwright-core`");
  process.exit(3);
}

const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const W = job.width || 1600, H = job.height || 1000;
const results = { workflows: [], screenshots: [], templates: null, blocked: [], fatal: null };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const browser = await chromium.launch({
  executablePath: job.chromium || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"],
});
let page;
let log = [];
try {
  page = await openPage();
  results.startup_log = log;
  results.extensions = await page.evaluate(() => ({
    search_aliases: window.__simswapSearchAliases ?? null,
    registered: (window.app.extensions || []).map((e) => e.name).filter((n) => n.startsWith("SimSwap")),
  }));

  if (job.search) {
    results.search = [];
    for (const query of job.search.queries) {
      const r = { query };
      try { r.options = await searchBox(query); } catch (e) { r.error = String(e && e.stack || e); }
      results.search.push(r);
    }
  }

  for (const wf of job.workflows) {
    log = [];
    const r = { name: wf.name, path: wf.path };
    try {
      const data = JSON.parse(fs.readFileSync(wf.path, "utf8"));
      Object.assign(r, await page.evaluate(checkInPage, [data, wf.name]));
      await sleep(300);
      r.dialogs = await dialogTexts();
      await closeDialogs();
    } catch (e) {
      r.error = String(e && e.stack || e);
    }
    r.console = log.filter((m) => ["error", "pageerror", "warning"].includes(m.type));
    results.workflows.push(r);
  }

  if ((job.screenshots || []).length || job.templates_shot) {
    await page.context().close();
    page = await openPage(true);  // a fresh page (no tabs from the checks) for the pictures
  }
  for (const shot of job.screenshots || []) {
    log = [];
    const s = { ...shot };
    try {
      const data = JSON.parse(fs.readFileSync(shot.workflow, "utf8"));
      await page.evaluate(async ([d, name]) => { await window.app.loadGraphData(d, true, false, name); },
                          [data, shot.name || null]);
      await sleep(500);
      await closeDialogs();
      const square = shot.out.endsWith(".jpg");  // a template thumbnail: the menu shows it in a square card
      let rect = await fitView(square);
      if (shot.run) {
        s.queued = await page.evaluate(async () => { await window.app.queuePrompt(0, 1); return true; });
        await page.waitForFunction(() => {
          const outs = window.app.graph.nodes.filter((n) => ["PreviewImage", "SaveImage"].includes(n.type));
          return outs.every((n) => n.imgs && n.imgs.length && n.imgs.every((i) => i.complete));
        }, null, { timeout: (shot.run_timeout_s || 300) * 1000 });
        rect = await fitView(square);
      }
      // LoadImage previews: wait for the images (or give up quietly after 10 s)
      await page.waitForFunction(() => window.app.graph.nodes.filter((n) => n.type === "LoadImage")
        .every((n) => !n.imgs || n.imgs.every((i) => i.complete)), null, { timeout: 10000 }).catch(() => {});
      await sleep(800);
      await page.evaluate(() => window.app.graph.setDirtyCanvas(true, true));
      await sleep(300);
      // .jpg = a template thumbnail: only the graph, no frontend chrome
      await page.screenshot({ path: shot.out, ...(shot.out.endsWith(".jpg") ? { type: "jpeg", quality: 90, ...(rect ? { clip: rect } : {}) } : {}) });
      s.ok = true;
      s.images = await page.evaluate(() => window.app.graph.nodes.filter((n) => n.imgs && n.imgs.length)
        .map((n) => ({ id: n.id, type: n.type, src: n.imgs.map((i) => i.src) })));
    } catch (e) {
      s.error = String(e && e.stack || e);
    }
    s.console = log.filter((m) => ["error", "pageerror"].includes(m.type));
    results.screenshots.push(s);
  }

  if (job.templates_shot) {
    const t = { ...job.templates_shot };
    try {
      await page.evaluate(() => window.app.extensionManager.command.execute("Comfy.BrowseTemplates"));
      await sleep(1500);
      // the left navigation of the templates dialog: "Custom Nodes" group, then the pack folder name
      const item = page.getByText(t.pack, { exact: true }).first();
      await item.waitFor({ timeout: 15000 });
      await item.click();
      await sleep(2000);
      t.dialog_text = (await dialogTexts()).join("\n---\n").slice(0, 4000);
      await page.screenshot({ path: t.out });
      t.ok = true;
      await closeDialogs();
    } catch (e) {
      t.error = String(e && e.stack || e);
      try { t.dialog_text = (await dialogTexts()).join("\n---\n").slice(0, 4000); } catch (e2) { /* ignore */ }
    }
    results.templates = t;
  }
  if (job.templates_menu) {
    const t = {};
    try { Object.assign(t, await templatesMenu(job.templates_menu.pack)); } catch (e) { t.error = String(e && e.stack || e); }
    results.templates_menu = t;
  }

  if (job.missing_models) {
    const m = { url: job.missing_models.url };
    try {
      await page.context().close();
      page = await openPage(false, job.missing_models.url);
      await closeDialogs();
      const data = JSON.parse(fs.readFileSync(job.missing_models.workflow, "utf8"));
      await page.evaluate(async (d) => { await window.app.loadGraphData(d, true, true, "missing_models_check"); }, data);
      await page.waitForSelector(".comfy-missing-models", { timeout: 15000 }).catch(() => {});
      await sleep(500);
      m.dialogs = await dialogTexts();
      m.items = await page.evaluate(() => [...document.querySelectorAll(".comfy-missing-models li")]
        .map((li) => ({ text: li.innerText.trim(), title: [...li.querySelectorAll("[title]")].map((e) => e.getAttribute("title")) })));
    } catch (e) {
      m.error = String(e && e.stack || e);
    }
    results.missing_models = m;
  }
} catch (e) {
  results.fatal = String(e && e.stack || e);
  results.fatal_log = log.slice(-50);
} finally {
  fs.writeFileSync(job.results, JSON.stringify(results, null, 1));
  await browser.close();
}

async function openPage(forShots = false, url = job.url) {
  const context = await browser.newContext({ viewport: { width: W, height: H }, deviceScaleFactor: forShots ? (job.scale || 1) : 1 });
  await context.route("**/*", (route) => {
    const u = new URL(route.request().url());
    if (["127.0.0.1", "localhost"].includes(u.hostname) || ["data:", "blob:"].includes(u.protocol)) return route.continue();
    results.blocked.push(u.href);
    return route.abort();
  });
  await context.addInitScript(() => { try { localStorage.setItem("vueNodesBannerDismissed", "true"); } catch (e) { /* */ } });
  const p = await context.newPage();
  p.on("console", (m) => log.push({ type: m.type(), text: m.text() }));
  p.on("pageerror", (e) => log.push({ type: "pageerror", text: String(e && e.stack || e) }));
  await p.goto(url, { waitUntil: "load", timeout: 120000 });
  await p.waitForFunction(() => window.app && window.app.graph && window.app.canvas && window.LiteGraph &&
                                window.app.extensionManager, null, { timeout: 120000 });
  await sleep(1500); // let the start-up workflow and extensions settle
  page = p;
  await closeDialogs();
  if (!results.startup_log) results.startup_log = log;
  return p;
}

async function dialogTexts() {
  return page.evaluate(() => [...document.querySelectorAll(".p-dialog, [role=dialog], .comfy-modal")]
    .filter((d) => d.offsetParent !== null || getComputedStyle(d).display !== "none" && d.getClientRects().length)
    .map((d) => d.innerText.trim()).filter(Boolean));
}

async function closeDialogs() {
  for (let i = 0; i < 4; i++) {
    const n = (await dialogTexts()).length;
    if (!n) return;
    await page.keyboard.press("Escape");
    await sleep(300);
  }
}

async function searchBox(query) {
  // the real node search: an empty graph, a double click on the canvas, the query typed into the box
  await page.evaluate(() => { window.app.graph.clear(); window.app.graph.setDirtyCanvas(true, true); });
  await closeDialogs();
  const box = await page.evaluate(() => {
    const r = window.app.canvas.canvas.getBoundingClientRect();
    return { x: r.left + r.width * 0.55, y: r.top + r.height * 0.55 };
  });
  await page.mouse.dblclick(box.x, box.y);
  const input = page.locator(".comfy-vue-node-search-box input").first();
  await input.waitFor({ timeout: 10000 });
  await input.fill("");
  await input.pressSequentially(query, { delay: 20 });
  await sleep(700);  // the box debounces (100 ms) and re-renders its options
  const options = await page.evaluate(() => [...document.querySelectorAll(
    ".comfy-vue-node-search-container .option-display-name")].map((e) => e.innerText.replace(/\s+/g, " ").trim()));
  await page.keyboard.press("Escape");
  await sleep(300);
  return options;
}

async function templatesMenu(pack) {
  // the Templates dialog, the pack's entry in its navigation; the cards in the order shown, with their
  // titles, descriptions and thumbnails (loaded or not)
  const fetched = [];  // the thumbnail requests the menu makes, with their HTTP status
  const onResponse = (r) => { if (/\/api\/workflow_templates\/.*\.(jpg|svg)/.test(r.url())) fetched.push({ url: r.url(), status: r.status() }); };
  page.on("response", onResponse);
  await page.evaluate(() => window.app.extensionManager.command.execute("Comfy.BrowseTemplates"));
  await sleep(1500);
  const item = page.getByText(pack, { exact: true }).first();
  await item.waitFor({ timeout: 15000 });
  await item.click();
  await sleep(1500);
  await page.waitForFunction(() => [...document.querySelectorAll("[data-testid^='template-workflow-'] img")]
    .every((i) => i.complete), null, { timeout: 15000 }).catch(() => {});
  await sleep(300);
  const cards = await page.evaluate(() => [...document.querySelectorAll("[data-testid^='template-workflow-']")].map((c) => ({
    name: c.getAttribute("data-testid").replace("template-workflow-", ""),
    text: c.innerText.trim(),
    images: [...c.querySelectorAll("img")].map((i) => ({ src: i.getAttribute("src"), complete: i.complete, width: i.naturalWidth })),
  })));
  page.off("response", onResponse);
  await closeDialogs();
  return { cards, fetched };
}

async function fitView(square = false) {
  // fit every node (title bar included) into the free part of the window: right of the side bar, below the
  // workflow name / Run button, above the bottom-right canvas controls; returns the graph's rectangle on screen
  const rect = await page.evaluate(([W, H, square]) => {
    const app = window.app, ds = app.canvas.ds, LG = window.LiteGraph;
    const th = LG.NODE_TITLE_HEIGHT || 30;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of app.graph.nodes) {
      x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - th);
      x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    for (const g of app.graph.groups || []) {
      const [gx, gy, gw, gh] = g._bounding || g.bounding || [g.pos[0], g.pos[1], g.size[0], g.size[1]];
      x0 = Math.min(x0, gx); y0 = Math.min(y0, gy); x1 = Math.max(x1, gx + gw); y1 = Math.max(y1, gy + gh);
    }
    if (!isFinite(x0)) return null;
    const box = { left: 80, top: 70, right: W - 24, bottom: H - 64 };
    if (square) {  // a centred square: the graph is fitted into it and the whole square is the picture
      const side = Math.min(box.right - box.left, box.bottom - box.top);
      box.left += Math.round((box.right - box.left - side) / 2); box.right = box.left + side;
      box.top += Math.round((box.bottom - box.top - side) / 2); box.bottom = box.top + side;
    }
    const bw = box.right - box.left, bh = box.bottom - box.top;
    const scale = Math.min(1.25, bw / (x1 - x0), bh / (y1 - y0));
    ds.scale = scale;
    ds.offset[0] = (box.left + (bw - (x1 - x0) * scale) / 2) / scale - x0;
    ds.offset[1] = (box.top + (bh - (y1 - y0) * scale) / 2) / scale - y0;
    app.graph.setDirtyCanvas(true, true);
    if (square) return { x: box.left, y: box.top, width: box.right - box.left, height: box.bottom - box.top };
    const pad = 12, sx = (x0 + ds.offset[0]) * scale, sy = (y0 + ds.offset[1]) * scale;
    const rx = Math.max(0, sx - pad), ry = Math.max(0, sy - pad);
    return { x: rx, y: ry, width: Math.min(W - rx, (x1 - x0) * scale + 2 * pad),
             height: Math.min(H - ry, (y1 - y0) * scale + 2 * pad) };
  }, [W, H, square]);
  await sleep(400);
  return rect;
}

// ---------------------------------------------------------------- runs inside the page
async function checkInPage([data, name]) {
  const app = window.app, LG = window.LiteGraph;
  const out = { missing_types: [], node_problems: [], link_problems: [] };
  const label = (n) => `node ${n.id} (${n.type}${n.title && n.title !== n.type ? `, "${n.title}"` : ""})`;
  const srcNodes = Array.isArray(data.nodes) ? data.nodes : [];
  out.expected_nodes = srcNodes.length;
  for (const n of srcNodes) if (!(n.type in LG.registered_node_types)) out.missing_types.push(n.type);

  await app.loadGraphData(data, true, true, name);
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const nodes = app.graph.nodes;
  {  // what a user sees first: the view the file restores (extra.ds) in this window, and the node rectangles
    const ds = app.canvas.ds, cr = app.canvas.canvas.getBoundingClientRect();
    const th = LG.NODE_TITLE_HEIGHT || 30;
    const visible = (el) => el && el.getClientRects().length && getComputedStyle(el).visibility !== "hidden";
    const rectOf = (sel) => [...document.querySelectorAll(sel)].filter(visible).map((e) => e.getBoundingClientRect());
    // the frontend's chrome over the canvas: side bar on the left, tab bar / menu / run button along the top
    const side = rectOf(".side-tool-bar-container");
    const top = [...rectOf(".workflow-tabs-container"), ...rectOf(".comfyui-menu"), ...rectOf(".actionbar"),
                 ...rectOf(".comfyui-body-top")].filter((r) => r.top < 150 && r.height > 0 && r.height < 150);
    const free = { left: Math.max(cr.left, ...side.map((r) => r.right)), top: Math.max(cr.top, ...top.map((r) => r.bottom)),
                   right: cr.right, bottom: cr.bottom };
    const rects = nodes.map((n) => {
      const x0 = n.pos[0], y0 = n.pos[1] - (n.flags?.collapsed ? 0 : th), x1 = n.pos[0] + n.size[0], y1 = n.pos[1] + n.size[1];
      return { id: n.id, type: n.type, title: n.title, graph: [x0, y0, x1, y1],
               screen: [cr.left + (x0 + ds.offset[0]) * ds.scale, cr.top + (y0 + ds.offset[1]) * ds.scale,
                        cr.left + (x1 + ds.offset[0]) * ds.scale, cr.top + (y1 + ds.offset[1]) * ds.scale] };
    });
    const off = rects.filter(({ screen: [a, b, c, d] }) => a < free.left || b < free.top || c > free.right || d > free.bottom)
      .map((r) => `${r.id}:${r.type}`);
    const overlaps = [];
    for (let i = 0; i < rects.length; i++) for (let j = i + 1; j < rects.length; j++) {
      const [a0, a1, a2, a3] = rects[i].graph, [b0, b1, b2, b3] = rects[j].graph;
      if (a0 < b2 && b0 < a2 && a1 < b3 && b1 < a3)
        overlaps.push(`${rects[i].id}:${rects[i].type} and ${rects[j].id}:${rects[j].type}`);
    }
    out.view = { scale: ds.scale, offset: [...ds.offset], window: [cr.width, cr.height], offscreen: off,
                 free, overlaps, side: side.map((r) => [r.left, r.top, r.right, r.bottom]),
                 top: top.map((r) => [r.left, r.top, r.right, r.bottom]) };
  }
  out.loaded_nodes = nodes.length;
  const defOf = (n) => n.constructor && n.constructor.nodeData;
  const defInputs = (def) => ({ ...(def?.input?.required || {}), ...(def?.input?.optional || {}) });
  const typeOfSpec = (spec) => (Array.isArray(spec) ? (Array.isArray(spec[0]) ? "COMBO" : spec[0]) : spec);
  const sameType = (a, b) => {
    if (a === b || a === "*" || b === "*" || a === "" || b === "") return true;
    const as = String(a).split(","), bs = String(b).split(",");
    return as.some((x) => bs.includes(x));
  };

  for (const n of nodes) {
    const src = srcNodes.find((s) => String(s.id) === String(n.id)) || {};
    const def = defOf(n);
    if (!def) {  // frontend-only nodes (Note, MarkdownNote, Reroute, PrimitiveNode) have no server definition
      if (!(n.type in LG.registered_node_types)) out.node_problems.push(`${label(n)}: node type not registered`);
      else out.frontend_only = [...(out.frontend_only || []), `${n.id}:${n.type}`];
      continue;
    }
    if (n.has_errors) out.node_problems.push(`${label(n)}: the frontend marked the node with has_errors`);
    // widgets: count and value per widget, against the node definition
    const ws = (n.widgets || []).filter((w) => w.serialize !== false);
    const wv = src.widgets_values;
    if (Array.isArray(wv) && wv.length !== ws.length) {
      out.node_problems.push(`${label(n)}: widgets_values has ${wv.length} values ${JSON.stringify(wv)}, ` +
        `the node has ${ws.length} widgets [${ws.map((w) => w.name).join(", ")}]`);
    } else if (wv !== undefined && !Array.isArray(wv)) {
      out.node_problems.push(`${label(n)}: widgets_values is not a list`);
    }
    for (const w of ws) {
      const v = w.value, o = w.options || {};
      if (w.type === "combo") {
        let vals = o.values;
        if (typeof vals === "function") { try { vals = vals(w, n); } catch (e) { vals = null; } }
        if (Array.isArray(vals) && !vals.includes(v)) {
          out.node_problems.push(`${label(n)}: widget "${w.name}" = ${JSON.stringify(v)} is not one of ` +
            `${JSON.stringify(vals.slice(0, 12))}${vals.length > 12 ? " ..." : ""}`);
        }
      } else if (w.type === "number" || w.type === "slider") {
        if (typeof v !== "number" || Number.isNaN(v)) out.node_problems.push(`${label(n)}: widget "${w.name}" = ${JSON.stringify(v)} is not a number`);
        else if ((o.min !== undefined && v < o.min) || (o.max !== undefined && v > o.max))
          out.node_problems.push(`${label(n)}: widget "${w.name}" = ${v} is outside [${o.min}, ${o.max}]`);
      } else if (w.type === "toggle" || w.type === "boolean") {
        if (typeof v !== "boolean") out.node_problems.push(`${label(n)}: widget "${w.name}" = ${JSON.stringify(v)} is not a boolean`);
      } else if (w.type === "text" || w.type === "customtext" || w.type === "string" || w.type === "textarea") {
        if (typeof v !== "string") out.node_problems.push(`${label(n)}: widget "${w.name}" = ${JSON.stringify(v)} is not a string`);
      }
    }
    // the frontend's own round trip of the widget values
    const ser = n.serialize();
    if (Array.isArray(wv) && wv.length === ws.length && JSON.stringify(ser.widgets_values) !== JSON.stringify(wv))
      out.node_problems.push(`${label(n)}: widgets_values change on load: file ${JSON.stringify(wv)} -> frontend ` +
        `${JSON.stringify(ser.widgets_values)}`);
    // inputs of the file against the definition
    const dIn = defInputs(def);
    for (const inp of n.inputs || []) {
      if (!(inp.name in dIn)) out.node_problems.push(`${label(n)}: input "${inp.name}" is not an input of ${n.type}`);
    }
    const dOut = def.output || [];
    for (let i = 0; i < (n.outputs || []).length; i++) {
      const o = n.outputs[i];
      if (i >= dOut.length) out.node_problems.push(`${label(n)}: output slot ${i} "${o.name}" does not exist (the node has ${dOut.length})`);
      else if (!sameType(o.type, dOut[i])) out.node_problems.push(`${label(n)}: output slot ${i} has type ${o.type}, the node's output ${i} is ${dOut[i]}`);
    }
    // required link-only inputs that are not connected
    for (const [name, spec] of Object.entries(def.input?.required || {})) {
      const t = typeOfSpec(spec);
      const isWidget = (n.widgets || []).some((w) => w.name === name);
      if (isWidget) continue;
      const inp = (n.inputs || []).find((x) => x.name === name);
      if (!inp || inp.link == null) out.node_problems.push(`${label(n)}: required input "${name}" (${t}) is not connected`);
    }
  }
  // links: every link against both ends and the node definitions
  const links = Array.isArray(data.links) ? data.links : [];
  out.expected_links = links.length;
  const loadedLinks = app.graph.links instanceof Map ? [...app.graph.links.values()] : Object.values(app.graph.links || {});
  out.loaded_links = loadedLinks.filter(Boolean).length;
  for (const l of links) {
    const [id, o, os, t, ts, type] = Array.isArray(l) ? l : [l.id, l.origin_id, l.origin_slot, l.target_id, l.target_slot, l.type];
    const on = app.graph.getNodeById(o), tn = app.graph.getNodeById(t);
    const tag = `link ${id} (${o}:${os} -> ${t}:${ts}, ${type})`;
    if (!on || !tn) { out.link_problems.push(`${tag}: node ${!on ? o : t} does not exist`); continue; }
    const oo = on.outputs?.[os], ti = tn.inputs?.[ts];
    if (!oo) { out.link_problems.push(`${tag}: ${label(on)} has no output slot ${os}`); continue; }
    if (!ti) { out.link_problems.push(`${tag}: ${label(tn)} has no input slot ${ts}`); continue; }
    if (!(oo.links || []).includes(id)) out.link_problems.push(`${tag}: not in the outputs[${os}].links of ${label(on)}`);
    if (ti.link !== id) out.link_problems.push(`${tag}: ${label(tn)} inputs[${ts}] ("${ti.name}") has link ${ti.link}`);
    const dOutT = (on.constructor.nodeData?.output || [])[os];
    const dInSpec = defInputs(tn.constructor.nodeData)[ti.name];
    const dInT = dInSpec ? typeOfSpec(dInSpec) : undefined;
    if (dOutT !== undefined && !sameType(dOutT, type)) out.link_problems.push(`${tag}: ${label(on)} output ${os} is ${dOutT}`);
    if (dInT !== undefined && !sameType(dInT, type) && !(dInT === "COMBO" && ti.widget))
      out.link_problems.push(`${tag}: ${label(tn)} input "${ti.name}" takes ${dInT}`);
  }
  try {
    const p = await app.graphToPrompt();
    out.prompt = p.output;
  } catch (e) {
    out.prompt_error = String(e && e.stack || e);
  }
  return out;
}
