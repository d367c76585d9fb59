// neurochange serve: the pages' script. Every value comes from the JSON API (/api, see /docs);
// every curation change is one POST /api/curation that says the value this page showed (409 if it changed).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
};

function say(text, kind = "error") {
  const box = $("#message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

async function call(method, url, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  const data = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) {
    const err = new Error(data.error || response.statusText);
    err.status = response.status;
    throw err;
  }
  return data;
}

// One curation edit: {field, value, study_id | experiment_id [, focus], expected}.
async function edit(edits) {
  try {
    const out = await call("POST", "/api/curation", { edits });
    document.body.dataset.curationVersion = out.version;
    say("");
    return true;
  } catch (err) {
    say(err.status === 409 ? `${err.message}` : `not saved: ${err.message}`);
    return false;
  }
}

const VOCAB = {
  reason: ["not_treatment", "no_change_contrast", "wrong_population", "wrong_imaging", "roi_only",
    "duplicate_sample", "incomplete_data", "other"],
  direction: ["", "increase", "decrease", "unsigned", "unknown"],
  include: ["", "yes", "no"],
  flag: ["", "wrong_sign", "duplicate", "out_of_brain"],
};
const linkList = (links) => Object.entries(links).flatMap(([k, url], i) =>
  [i ? " " : "", el("a", { href: url, target: "_blank", rel: "noopener" }, k === "pubmed" ? "PubMed" : "DOI")]);
const options = (values, chosen) => values.map((v) => el("option", { value: v, selected: v === chosen }, v || "—"));

// ------------------------------------------------------------------ screening
async function screening() {
  const params = new URLSearchParams(location.search);
  const state = { offset: Number(params.get("offset") || 0), limit: 50, rows: [], at: 0 };
  $("#query").value = params.get("query") || "";
  $("#text").value = params.get("text") || "";
  $("#reason").append(...options(VOCAB.reason, "not_treatment"));

  async function load() {
    const q = new URLSearchParams({ query: $("#query").value, text: $("#text").value, offset: state.offset,
      limit: state.limit });
    history.replaceState(null, "", `?${q}`);
    let page;
    try {
      page = await call("GET", `/api/candidates?${q}`);
    } catch (err) {
      say(err.message);
      state.rows = [];
      $("#candidates tbody").replaceChildren();
      $("#range").textContent = "";
      return;
    }
    say("");
    state.rows = page.studies;
    state.total = page.total;
    const last = Math.min(page.offset + page.studies.length, page.total);
    $("#range").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total.toLocaleString()}` : "none";
    const body = $("#candidates tbody");
    body.replaceChildren(...page.studies.map(row));
    state.at = Math.min(state.at, Math.max(page.studies.length - 1, 0));
    mark();
    prisma();
  }

  function row(s, i) {
    const tags = ["modality", "subtype", "disorder", "design", "imaging"].filter((t) => s[t])
      .map((t) => el("span", { class: "tag", title: s.evidence[t] || "" }, s[t]));
    const links = linkList(s.links);
    const decision = s.include === "yes" ? "included" : s.include === "no" ? `excluded: ${s.reason}` : "";
    return el("tr", { "data-study": s.study_id, onclick: () => { state.at = i; mark(); } },
      el("td", { class: `decision ${s.include}` }, decision),
      el("td", {}, el("a", { href: `/extraction?study=${encodeURIComponent(s.study_id)}` }, s.study_id)),
      el("td", {}, s.title || ""), el("td", {}, s.year ?? ""), el("td", {}, ...tags), el("td", {}, ...links));
  }

  function mark() {
    document.querySelectorAll("#candidates tbody tr").forEach((tr, i) => tr.classList.toggle("at", i === state.at));
    const tr = document.querySelectorAll("#candidates tbody tr")[state.at];
    if (tr) tr.scrollIntoView({ block: "nearest" });
  }

  async function decide(include) {
    const s = state.rows[state.at];
    if (!s) return;
    const reason = include === "no" ? $("#reason").value : "";
    const edits = [];
    // the order keeps every intermediate table valid: a reason never stands without include=no
    if (include !== "no" && s.reason) edits.push({ field: "reason", value: "", study_id: s.study_id, expected: s.reason });
    edits.push({ field: "include", value: include, study_id: s.study_id, expected: s.include });
    if (include === "no") edits.push({ field: "reason", value: reason, study_id: s.study_id, expected: s.reason });
    if (await edit(edits)) {
      s.include = include;
      s.reason = reason;
      const tr = row(s, state.at);
      document.querySelectorAll("#candidates tbody tr")[state.at].replaceWith(tr);
      state.at = Math.min(state.at + 1, state.rows.length - 1);
      mark();
      prisma();
    } else {
      load();
    }
  }

  async function prisma() {
    const q = new URLSearchParams({ query: $("#query").value });
    try {
      const f = await call("GET", `/api/prisma?${q}`);
      const box = $("#prisma");
      const line = (label, c) => el("li", {}, `${label}: ${c.studies.toLocaleString()} studies, `
        + `${c.experiments.toLocaleString()} tables or contrasts`);
      const reasons = (s) => Object.entries(s.reasons).map(([k, v]) => `${k} ${v.toLocaleString()}`).join(", ");
      const steps = f.excluded.filter((s) => s.experiments > 0).map((s) => s.criterion === "curation"
        ? el("li", {}, `excluded by curation: ${s.experiments.toLocaleString()} tables or contrasts (${reasons(s)})`)
        : el("li", {}, `excluded by ${s.criterion}: ${s.studies.toLocaleString()} studies (${reasons(s)}), `
          + `${s.experiments.toLocaleString()} tables or contrasts`));
      const waiting = f.included.awaiting_decision;
      box.replaceChildren(el("ul", {}, line("identified", f.identified), line("duplicates removed", f.duplicates_removed),
        line("screened", f.screened), ...steps, line("included", f.included),
        waiting ? el("li", {}, `of which awaiting a decision (no include yet): ${waiting.studies.toLocaleString()} `
          + `studies, ${waiting.experiments.toLocaleString()} tables or contrasts`) : ""));
      box.dataset.included = f.included.experiments;
    } catch (err) {
      $("#prisma").textContent = err.message;
    }
  }

  $("#search").addEventListener("submit", (e) => { e.preventDefault(); state.offset = 0; load(); });
  $("#prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); load(); });
  $("#next").addEventListener("click", () => {
    if (state.offset + state.limit < state.total) { state.offset += state.limit; load(); }
  });
  document.addEventListener("keydown", (e) => {
    if (["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName)) return;
    const keys = {
      j: () => { state.at = Math.min(state.at + 1, state.rows.length - 1); mark(); },
      k: () => { state.at = Math.max(state.at - 1, 0); mark(); },
      ArrowDown: () => keys.j(), ArrowUp: () => keys.k(),
      i: () => decide("yes"), x: () => decide("no"), u: () => decide(""),
      n: () => $("#next").click(), p: () => $("#prev").click(),
      Enter: () => { const s = state.rows[state.at]; if (s) location.href = `/extraction?study=${s.study_id}`; },
    };
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
  });
  await load();
  document.body.dataset.ready = "1";
}

// ------------------------------------------------------------------ extraction
let OUTLINE = null;

function glassBrain(foci, flags) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 540 170");
  svg.setAttribute("class", "glass");
  const views = [["sagittal", 1, 2, 0, "P", "A"], ["coronal", 0, 2, 180, "L", "R"], ["axial", 0, 1, 360, "L", "R"]];
  for (const [name, a, b, left, low, high] of views) {
    const g = document.createElementNS(ns, "g");
    for (const [text, x] of [[low, left + 4], [high, left + 168]]) {
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", x);
      label.setAttribute("y", 14);
      label.setAttribute("class", "side");
      label.textContent = text;
      g.append(label);
    }
    // MNI mm -> panel pixels: 180 x 170 panels, y up
    const px = (u) => left + 90 + u * 0.72, py = (v) => 92 - v * 0.72;
    for (const line of OUTLINE.views[name]) {
      const path = document.createElementNS(ns, "path");
      path.setAttribute("d", line.map(([u, v], i) => `${i ? "L" : "M"}${px(u).toFixed(1)},${py(v).toFixed(1)}`).join(""));
      path.setAttribute("class", "outline");
      g.append(path);
    }
    for (const f of foci) {
      const xyz = [f.x, f.y, f.z];
      const dot = document.createElementNS(ns, "circle");
      dot.setAttribute("cx", px(xyz[a]).toFixed(1));
      dot.setAttribute("cy", py(xyz[b]).toFixed(1));
      dot.setAttribute("r", 3);
      dot.setAttribute("class", `focus ${flags[f.focus] || ""}`);
      const title = document.createElementNS(ns, "title");
      title.textContent = `focus ${f.focus}: (${xyz.map((v) => v.toFixed(1)).join(", ")})`;
      dot.append(title);
      g.append(dot);
    }
    svg.append(g);
  }
  return svg;
}

async function extraction() {
  const params = new URLSearchParams(location.search);
  const id = params.get("study") || "";
  $("#study").value = id;
  $("#pick").addEventListener("submit", (e) => {
    e.preventDefault();
    location.search = `?study=${encodeURIComponent($("#study").value.trim())}`;
  });
  if (!id) { document.body.dataset.ready = "1"; return; }
  OUTLINE = OUTLINE || await call("GET", "/api/outline");
  let s;
  try {
    s = await call("GET", `/api/studies/${encodeURIComponent(id)}?experiments=table`);
  } catch (err) {
    say(err.message);
    document.body.dataset.ready = "1";
    return;
  }
  const links = linkList(s.links);
  $("#study-head").replaceChildren(
    el("h2", {}, `${s.study_id}: ${s.title || ""}`),
    el("p", {}, [s.authors, s.journal, s.year].filter(Boolean).join(" · "), " ", ...links),
    el("p", {}, ...["modality", "subtype", "disorder", "design", "imaging"].filter((t) => s[t])
      .map((t) => el("span", { class: "tag", title: s.evidence[t] || "" }, `${t}=${s[t]}`))),
    decisionFields({ study_id: s.study_id }, s.curation));
  $("#tables").replaceChildren(...s.experiments.map((ex) => tableCard(ex)));
  document.body.dataset.ready = "1";
}

// include / reason (and for experiments: direction, n, contrast) of one record, each saved on change
function decisionFields(key, current, more = []) {
  const values = { ...current };
  const box = el("div", { class: "fields" });
  const save = async (field, value, input) => {
    const edits = [{ ...key, field, value, expected: values[field] || "" }];
    if (field === "include" && value !== "no" && values.reason)
      edits.unshift({ ...key, field: "reason", value: "", expected: values.reason });
    if (field === "include" && value === "no") {
      const reason = box.querySelector("[name=reason]").value;
      if (!reason) {
        say("choose the reason first, then set include to no");
        input.value = values[field] || "";
        return;
      }
      edits.push({ ...key, field: "reason", value: reason, expected: values.reason || "" });
    }
    if (await edit(edits)) {
      for (const e of edits) values[e.field] = e.value;
      box.querySelector("[name=reason]").value = values.reason || "";
      input.classList.add("saved");
    } else {
      input.value = values[field] || "";
    }
  };
  const select = (field, list) => {
    const s = el("select", { name: field }, ...options(list, values[field] || ""));
    s.addEventListener("change", () => {
      if (field === "reason" && values.include !== "no") return;  // saved with include = no
      save(field, s.value, s);
    });
    return el("label", {}, `${field} `, s);
  };
  const text = (field, attrs) => {
    const input = el("input", { name: field, value: values[field] || "", ...attrs });
    input.addEventListener("change", () => save(field, input.value.trim(), input));
    return el("label", {}, `${field} `, input);
  };
  box.append(select("include", VOCAB.include), select("reason", ["", ...VOCAB.reason]));
  for (const field of more) {
    box.append(field === "direction" ? select("direction", VOCAB.direction)
      : text(field, field === "n" ? { size: 4, inputmode: "numeric" } : { size: 28 }));
  }
  return box;
}

function tableCard(ex) {
  const flags = Object.fromEntries(ex.foci.filter((f) => f.flag).map((f) => [f.focus, f.flag]));
  const card = el("article", { class: "table", "data-experiment": ex.experiment_id },
    el("h3", {}, `${ex.name} `, el("small", {}, `${ex.experiment_id} · ${ex.foci.length} foci`)));
  const glass = el("div", {}, glassBrain(ex.foci, flags));
  card.append(decisionFields({ experiment_id: ex.experiment_id }, ex.curation, ["direction", "n", "contrast"]), glass);
  const rows = ex.foci.map((f) => {
    const flag = el("select", { name: "flag" }, ...options(VOCAB.flag, f.flag || ""));
    flag.addEventListener("change", async () => {
      const key = { experiment_id: ex.experiment_id, focus: String(f.focus) };
      const edits = [{ ...key, field: "flag", value: flag.value, expected: f.flag || "" }];
      if (flag.value) for (const a of ["x", "y", "z"]) edits.push({ ...key, field: a, value: f[a].toFixed(2) });
      if (await edit(edits)) {
        f.flag = flag.value;
        flags[f.focus] = f.flag;
        glass.replaceChildren(glassBrain(ex.foci, flags));
      } else {
        flag.value = f.flag || "";
      }
    });
    const db = [f.duplicate ? "repeats a row" : "", f.out_of_bounds ? "beyond ±128 mm" : ""].filter(Boolean).join(", ");
    return el("tr", { "data-focus": f.focus }, el("td", {}, f.focus), el("td", {}, f.x.toFixed(1)),
      el("td", {}, f.y.toFixed(1)), el("td", {}, f.z.toFixed(1)), el("td", {}, f.space), el("td", {}, db),
      el("td", {}, flag));
  });
  card.append(el("details", {}, el("summary", {}, "foci (x, y, z in MNI mm; Talairach foci converted, Lancaster 2007)"),
    el("table", { class: "rows" }, el("thead", {}, el("tr", {}, ...["#", "x (MNI)", "y", "z", "reported in", "database",
      "flag"]
      .map((h) => el("th", {}, h)))), el("tbody", {}, ...rows))));
  return card;
}

// ------------------------------------------------------------------ runs
async function runs() {
  const specs = await call("GET", "/api/specs");
  $("#spec").replaceChildren(...specs.specs.map((s) => el("option", { value: s }, s)));
  $("#run").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { spec: $("#spec").value, name: $("#run-name").value.trim() };
    if ($("#seed").value) body.seed = Number($("#seed").value);
    if ($("#iters").value) body.iters = Number($("#iters").value);
    if ($("#overwrite").checked) body.overwrite = true;
    try {
      await call("POST", "/api/jobs", body);
      say("");
      refresh();
    } catch (err) { say(err.message); }
  });
  $("#build").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const groups = String(form.get("groups")).split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
      const [name, ...query] = l.split(":");
      return { name: name.trim(), query: query.join(":").trim() };
    });
    const body = { name: form.get("name"), title: form.get("title"), selection: form.get("selection"),
      experiments: form.get("experiments"), use_curation: form.get("use_curation") === "on",
      estimator: form.get("estimator"), n_iters: Number(form.get("n_iters")),
      min_experiments: Number(form.get("min_experiments")), groups, overwrite: form.get("overwrite") === "on" };
    if (form.get("file")) body.file = form.get("file");
    try {
      const out = await call("POST", "/api/specs", body);
      const all = await call("GET", "/api/specs");
      $("#spec").replaceChildren(...all.specs.map((s) => el("option", { value: s, selected: s === out.spec }, s)));
      say(`wrote ${out.spec}`, "info");
    } catch (err) { say(err.message); }
  });
  $("#upload").addEventListener("submit", async (e) => {
    e.preventDefault();
    const file = $("#upload-file").files[0];
    if (!file) return;
    const response = await fetch(`/api/uploads/${encodeURIComponent(file.name)}`, { method: "PUT", body: file });
    const data = await response.json();
    say(response.ok ? `uploaded ${data.file}: ${data.experiments} experiments, ${data.foci} foci` : data.error,
      response.ok ? "info" : "error");
  });
  async function refresh() {
    const { jobs } = await call("GET", "/api/jobs");
    $("#jobs tbody").replaceChildren(...jobs.slice().reverse().map((j) => el("tr", { "data-job": j.id, "data-state": j.state },
      el("td", {}, j.id), el("td", {}, j.spec),
      el("td", {}, j.state === "done" ? el("a", { href: `/results?folder=${encodeURIComponent(j.out)}` }, j.out) : j.out),
      el("td", { class: j.state }, j.state), el("td", { class: "progress" }, j.progress),
      el("td", {}, ["queued", "running"].includes(j.state)
        ? el("button", { onclick: () => call("DELETE", `/api/jobs/${j.id}`).then(refresh) }, "Cancel") : ""))));
  }
  await refresh();
  setInterval(refresh, 1000);
  document.body.dataset.ready = "1";
}

// ------------------------------------------------------------------ results
async function results() {
  const params = new URLSearchParams(location.search);
  const { folders } = await call("GET", "/api/results");
  if (!folders.length) {
    say("no results folder in this project yet: start a run on the Runs page", "info");
    document.body.dataset.ready = "1";
    return;
  }
  const chosen = params.get("folder") || folders[0].folder;
  $("#folder").replaceChildren(...folders.map((f) => el("option", { value: f.folder, selected: f.folder === chosen }, f.folder)));
  $("#folder").addEventListener("change", () => { location.search = `?folder=${encodeURIComponent($("#folder").value)}`; });
  const folder = folders.find((f) => f.folder === chosen) || folders[0];
  const dir = (path) => path.slice(0, path.lastIndexOf("/"));
  const thresholded = folder.maps.filter((m) => m.endsWith("_thresh-05.nii.gz") && m.includes("/z_desc-size_level"));
  // open on a thresholded map whose folder has clusters (the unsigned map of a review first)
  const withClusters = new Set(folder.cluster_tables.filter((t) => t.endsWith("/clusters.tsv")).map(dir));
  const preferred = thresholded.find((m) => withClusters.has(dir(m)) && !dir(m).includes("_dir-"))
    || thresholded.find((m) => withClusters.has(dir(m))) || thresholded[0]
    || folder.maps.find((m) => m.endsWith("/z.nii.gz")) || folder.maps[0];
  $("#map").replaceChildren(...folder.maps.map((m) => el("option", { value: m, selected: m === preferred }, m)));
  $("#map2").append(...folder.maps.map((m) => el("option", { value: m }, m)));
  $("#downloads").replaceChildren(...folder.files.map((f) => el("li", {}, el("a", { href: `/files/${f}`, download: "" }, f))));
  if (folder.report) { $("#report").href = `/files/${folder.report}`; $("#report").hidden = false; }

  const nv = new niivue.Niivue({ backColor: [0, 0, 0, 1], show3Dcrosshair: true, isColorbar: true,
    onLocationChange: (d) => { $("#location").textContent = d.string; } });
  window.viewer = nv;
  await nv.attachTo("gl");
  nv.setSliceType(nv.sliceTypeMultiplanar);
  async function show() {
    const threshold = Number($("#threshold").value);
    const overlay = (url, colormap, colormapNegative) => ({ url: `/files/${url}`, colormap, colormapNegative,
      cal_min: threshold, cal_max: Math.max(threshold + 1, 6), opacity: 0.9 });
    const volumes = [{ url: "/static/mni152_2mm.nii.gz", colormap: "gray" }, overlay($("#map").value, "warm", "winter")];
    if ($("#map2").value) volumes.push(overlay($("#map2").value, "green", "violet"));
    try {
      await nv.loadVolumes(volumes);
      document.body.dataset.drawn = String(nv.volumes.length);
    } catch (err) { say(`cannot show the map: ${err.message}`); }
  }
  $("#threshold").addEventListener("input", () => {
    const t = Number($("#threshold").value);
    $("#threshold-value").textContent = t.toFixed(1);
    for (const v of nv.volumes.slice(1)) { v.cal_min = t; v.cal_max = Math.max(t + 1, v.cal_max); }
    nv.updateGLVolume();
  });
  $("#map").addEventListener("change", async () => { await show(); await clusterTables(folder, nv, dir($("#map").value)); });
  $("#map2").addEventListener("change", show);
  await show();
  await clusterTables(folder, nv, dir($("#map").value));
  document.body.dataset.ready = "1";
}

// the cluster tables of the folder of the map shown (FWE, then FDR and uncorrected ones when written)
async function clusterTables(folder, nv, mapFolder) {
  const box = $("#clusters");
  box.replaceChildren();
  for (const path of folder.cluster_tables.filter((t) => t.slice(0, t.lastIndexOf("/")) === mapFolder)) {
    const t = await call("GET", `/api/table?path=${encodeURIComponent(path)}`);
    const shown = t.columns.filter((c) => !c.startsWith("label_") || c === t.columns.find((x) => x.startsWith("label_")));
    const rows = t.rows.map((r) => {
      const cell = (c) => c === "experiments" && r[c]
        ? el("td", {}, el("details", {}, el("summary", {}, `${r[c].split(";").length} contributing`),
          r[c].split(";").join(", ")))
        : el("td", {}, r[c]);
      const tr = el("tr", { class: "cluster" }, ...shown.map(cell));
      if (r.peak_x !== undefined) {
        tr.addEventListener("click", () => {
          const mm = [Number(r.peak_x), Number(r.peak_y), Number(r.peak_z)];
          nv.scene.crosshairPos = nv.mm2frac(mm);
          nv.drawScene();
          nv.createOnLocationChange();
          document.body.dataset.crosshair = mm.join(",");
          box.querySelectorAll("tr.at").forEach((x) => x.classList.remove("at"));
          tr.classList.add("at");
        });
      }
      return tr;
    });
    box.append(el("h3", {}, path), el("table", { class: "rows", "data-table": path },
      el("thead", {}, el("tr", {}, ...shown.map((c) => el("th", {}, c)))), el("tbody", {}, ...rows)));
  }
}

const PAGES = { screening, extraction, runs, results };
PAGES[document.body.dataset.page]().catch((err) => { say(err.message); document.body.dataset.ready = "1"; });
