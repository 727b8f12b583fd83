// Drives the real ComfyUI frontend in headless chromium (playwright-core) for scripts/frontend_check.py.
//
//   node scripts/frontend_check.mjs JOB.json
//
// JOB.json (written by frontend_check.py):
//   {"url": "http://127.0.0.1:PORT", "chromium": "/usr/bin/chromium", "results": "/path/results.json",
//    "width": 1600, "height": 1000,
//    "workflows": [{"name": "basic_swap", "path": "/abs/ui.json"}, ...],
//    "screenshots": [{"workflow": "/abs/ui.json", "out": "/abs/shot.png", "run": false}],
//    "templates_shot": {"pack": "ComfyUI-SimSwap", "out": "/abs/templates.png"} | null}
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
      let rect = await fitView();
      if (shot.run) {
        s.queued = await page.evaluate(async () => { await window.app.queuePrompt(0, 1); return true; });
        await page.waitForFunction(() => {
          const outs = window.app.graph.nodes.filter((n) => ["PreviewImage", "SaveImage"].includes(n.type));
          return outs.every((n) => n.imgs && n.imgs.length && n.imgs.every((i) => i.complete));
        }, null, { timeout: (shot.run_timeout_s || 300) * 1000 });
        rect = await fitView();
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
} catch (e) {
  results.fatal = String(e && e.stack || e);
  results.fatal_log = log.slice(-50);
} finally {
  fs.writeFileSync(job.results, JSON.stringify(results, null, 1));
  await browser.close();
}

async function openPage(forShots = false) {
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
  await p.goto(job.url, { waitUntil: "load", timeout: 120000 });
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

async function fitView() {
  // fit every node (title bar included) into the free part of the window: right of the side bar, below the
  // workflow name / Run button, above the bottom-right canvas controls; returns the graph's rectangle on screen
  const rect = await page.evaluate(([W, H]) => {
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
    const bw = box.right - box.left, bh = box.bottom - box.top;
    const scale = Math.min(1.25, bw / (x1 - x0), bh / (y1 - y0));
    ds.scale = scale;
    ds.offset[0] = (box.left + (bw - (x1 - x0) * scale) / 2) / scale - x0;
    ds.offset[1] = (box.top + (bh - (y1 - y0) * scale) / 2) / scale - y0;
    app.graph.setDirtyCanvas(true, true);
    const pad = 12, sx = (x0 + ds.offset[0]) * scale, sy = (y0 + ds.offset[1]) * scale;
    const rx = Math.max(0, sx - pad), ry = Math.max(0, sy - pad);
    return { x: rx, y: ry, width: Math.min(W - rx, (x1 - x0) * scale + 2 * pad),
             height: Math.min(H - ry, (y1 - y0) * scale + 2 * pad) };
  }, [W, H]);
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
  {  // what a user sees first: the view the file restores (extra.ds) in this window
    const ds = app.canvas.ds, cw = app.canvas.canvas.clientWidth, ch = app.canvas.canvas.clientHeight;
    const th = LG.NODE_TITLE_HEIGHT || 30;
    const off = [];
    for (const n of nodes) {
      const x0 = (n.pos[0] + ds.offset[0]) * ds.scale, y0 = (n.pos[1] - th + ds.offset[1]) * ds.scale;
      const x1 = (n.pos[0] + n.size[0] + ds.offset[0]) * ds.scale, y1 = (n.pos[1] + n.size[1] + ds.offset[1]) * ds.scale;
      if (x0 < 0 || y0 < 0 || x1 > cw || y1 > ch) off.push(`${n.id}:${n.type}`);
    }
    out.view = { scale: ds.scale, offset: [...ds.offset], window: [cw, ch], offscreen: off };
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
