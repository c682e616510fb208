/* tadkit view: renders the data of <script id="tadkit-data">. Matching at the picked tIoU follows
   tadkit.evaluation.detection exactly (activitynet: detections by score take the best free GT with
   tIoU >= t, later GT on ties; thumos14: GT in file order take the best free detection with tIoU > t,
   the higher-ranked one on ties; unmatched detections touching Ambiguous are ignored). Detections are
   stored per video sorted by class, score (desc), input row: the evaluator's ranking. */
(function () {
  "use strict";
  const started = performance.now();
  const D = JSON.parse(document.getElementById("tadkit-data").textContent);
  const THUMOS = D.protocol === "thumos14";
  const KINDS = ["tp", "double_detection", "wrong_label", "localization", "confusion", "background", "ignored"];
  const KIND_TEXT = ["TP", "FP: double detection", "FP: wrong label", "FP: localization", "FP: confusion",
    "FP: background", "ignored (Ambiguous)"];
  const NV = D.videos.id.length;
  const NC = D.classes.length;

  function decode(text, Type) {
    const bin = atob(text);
    const n = bin.length;
    const bytes = new Uint8Array(n);
    for (let i = 0; i < n; i++) bytes[i] = bin.charCodeAt(i);
    return new Type(bytes.buffer);
  }
  const G = { n: D.gt.n, off: decode(D.gt.off, Int32Array), cls: decode(D.gt.cls, Uint16Array),
    s: decode(D.gt.s, Float64Array), e: decode(D.gt.e, Float64Array) };
  const AMB = { off: decode(D.amb.off, Int32Array), s: decode(D.amb.s, Float64Array), e: decode(D.amb.e, Float64Array) };
  const RUNS = D.runs.map(function (r) {
    const d = r.det;
    return { info: r, n: d.n, off: decode(d.off, Int32Array), cls: decode(d.cls, Uint16Array),
      s: decode(d.s, Float64Array), e: decode(d.e, Float64Array), score: decode(d.score, Float32Array),
      above: decode(d.above, Int32Array), amb: decode(d.amb, Uint8Array), total: decode(d.total, Int32Array),
      best: null, cache: new Map() };
  });

  // ---------------------------------------------------------------------------------------------
  // matching (the evaluator's rules; see tadkit/evaluation/detection.py and analysis.py)
  // ---------------------------------------------------------------------------------------------
  function tiouAnet(s1, e1, s2, e2, samePoint) {
    const inter = Math.max(Math.min(e1, e2) - Math.max(s1, s2), 0.0);
    const union = (e1 - s1) + (e2 - s2) - inter;
    if (union > 0) return inter / union;
    return samePoint && s1 === s2 && e1 === e2 ? 1.0 : 0.0;
  }
  function tiouThumos(s1, e1, s2, e2) {
    const inter = Math.min(e1, e2) - Math.max(s1, s2);
    return inter > 0 ? inter / (Math.max(e1, e2) - Math.min(s1, s2)) : 0.0;
  }

  /* Best-overlapping GT of any class in the video (first GT on ties, tIoU > 0): the DETAD typing. */
  function bestOverlap(R) {
    if (R.best) return R.best;
    const gt = new Int32Array(R.n).fill(-1), iou = new Float64Array(R.n);
    for (let v = 0; v < NV; v++) {
      const g0 = G.off[v], g1 = G.off[v + 1];
      for (let d = R.off[v]; d < R.off[v + 1]; d++) {
        let bi = 0, bg = -1;
        for (let g = g0; g < g1; g++) {
          const x = THUMOS ? tiouThumos(R.s[d], R.e[d], G.s[g], G.e[g]) : tiouAnet(R.s[d], R.e[d], G.s[g], G.e[g], false);
          if (x > bi) { bi = x; bg = g; }
        }
        gt[d] = bg; iou[d] = bi;
      }
    }
    R.best = { gt: gt, iou: iou };
    return R.best;
  }

  function match(R, t) {
    const key = String(t);
    if (R.cache.has(key)) return R.cache.get(key);
    const n = R.n;
    const tp = new Uint8Array(n), kind = new Uint8Array(n), gtDet = new Int32Array(G.n).fill(-1);
    const detGt = new Int32Array(n).fill(-1);
    for (let v = 0; v < NV; v++) {
      const d1 = R.off[v + 1], g0 = G.off[v], g1 = G.off[v + 1];
      let a = R.off[v];
      while (a < d1) {
        const c = R.cls[a];
        let b = a + 1;
        while (b < d1 && R.cls[b] === c) b++;
        if (THUMOS) {
          for (let g = g0; g < g1; g++) {
            if (G.cls[g] !== c) continue;
            let bd = -1, bi = -1;
            for (let d = a; d < b; d++) {
              if (tp[d]) continue;
              const x = tiouThumos(G.s[g], G.e[g], Math.min(R.s[d], R.e[d]), Math.max(R.s[d], R.e[d]));
              if (x > t && x > bi) { bi = x; bd = d; }
            }
            if (bd >= 0) { tp[bd] = 1; gtDet[g] = bd; detGt[bd] = g; }
          }
        } else {
          for (let d = a; d < b; d++) {
            let bg = -1, bi = -1;
            for (let g = g0; g < g1; g++) {
              if (G.cls[g] !== c || gtDet[g] >= 0) continue;
              const x = tiouAnet(R.s[d], R.e[d], G.s[g], G.e[g], true);
              if (x >= t && x >= bi) { bi = x; bg = g; }  // >=: the later GT wins a tie
            }
            if (bg >= 0) { tp[d] = 1; gtDet[bg] = d; detGt[d] = bg; }
          }
        }
        a = b;
      }
    }
    const best = bestOverlap(R);
    for (let d = 0; d < n; d++) {
      if (tp[d]) { kind[d] = 0; continue; }
      if (THUMOS && R.amb[d]) { kind[d] = 6; continue; }
      const bi = best.iou[d], bg = best.gt[d];
      const above = THUMOS ? bi > t : bi >= t;
      const same = bg >= 0 && G.cls[bg] === R.cls[d];
      kind[d] = above ? (same ? 1 : 2) : (bi >= D.min_tiou ? (same ? 3 : 4) : 5);
    }
    const out = { t: t, tp: tp, kind: kind, gtDet: gtDet, detGt: detGt, video: videoStats(R, tp, kind, gtDet) };
    R.cache.set(key, out);
    return out;
  }

  /* Per video: #GT, TP, FP, missed, ignored and AP (mean over the video's GT classes of the protocol's
     AP computed on that video alone; dropped detections enter the ranking through R.above). */
  function videoStats(R, tp, kind, gtDet) {
    const ap = new Float64Array(NV), nTp = new Int32Array(NV), nFp = new Int32Array(NV);
    const nMiss = new Int32Array(NV), nGt = new Int32Array(NV), nIgn = new Int32Array(NV);
    const npos = new Int32Array(NC), prec = [];
    for (let v = 0; v < NV; v++) {
      const g0 = G.off[v], g1 = G.off[v + 1], d0 = R.off[v], d1 = R.off[v + 1];
      nGt[v] = g1 - g0;
      npos.fill(0);
      let classes = 0;
      for (let g = g0; g < g1; g++) { if (npos[G.cls[g]]++ === 0) classes++; if (gtDet[g] < 0) nMiss[v]++; }
      let sum = 0, a = d0;
      while (a < d1) {
        const c = R.cls[a];
        let b = a + 1;
        while (b < d1 && R.cls[b] === c) b++;
        let cnt = 0, kept = 0;
        prec.length = 0;
        for (let d = a; d < b; d++) {
          if (kind[d] === 6) { nIgn[v]++; continue; }
          kept++;
          if (tp[d]) { cnt++; nTp[v]++; prec.push(cnt / (kept + R.above[d])); } else nFp[v]++;
        }
        const np = npos[c];
        if (np > 0 && prec.length) {
          let s = 0;
          if (THUMOS) { for (let k = 0; k < prec.length; k++) s += prec[k]; sum += s / np; }
          else {
            const best = new Float64Array(prec.length);
            let m = 0;
            for (let k = prec.length - 1; k >= 0; k--) { m = Math.max(m, prec[k]); best[k] = m; }
            for (let k = 0; k < prec.length; k++) s += ((k + 1) / np - k / np) * best[k];
            sum += s;
          }
        }
        a = b;
      }
      ap[v] = classes ? sum / classes : NaN;
    }
    return { ap: ap, tp: nTp, fp: nFp, missed: nMiss, gt: nGt, ignored: nIgn };
  }

  function totals(R, t) {
    const m = match(R, t), out = { tp: 0, missed: 0, fp: 0 };
    KINDS.forEach(function (k) { out[k] = 0; });
    for (let d = 0; d < R.n; d++) out[KINDS[m.kind[d]]]++;
    for (let v = 0; v < NV; v++) out.missed += m.video.missed[v];
    out.fp = out.double_detection + out.wrong_label + out.localization + out.confusion + out.background;
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // small DOM helpers (data is inserted as text, never as markup)
  // ---------------------------------------------------------------------------------------------
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    if (attrs) for (const k in attrs) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "className") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c != null) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }
  const esc = function (s) {
    return String(s).replace(/[&<>"']/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]; });
  };
  const pct = function (x) { return x == null || isNaN(x) ? "–" : (100 * x).toFixed(2); };
  const sec = function (x) { return x == null ? "?" : x.toFixed(2); };
  const signed = function (x) { return x == null || isNaN(x) ? "–" : (x >= 0 ? "+" : "") + (100 * x).toFixed(2); };

  /* A sortable table: columns [{name, key(i) -> value, text(i) -> string, cls(i)}], rows = indices. */
  function sortableTable(table, columns, rows, initial, onRow, limit) {
    const state = { col: initial[0], dir: initial[1] };
    const thead = table.tHead || table.createTHead();
    let tbody = table.tBodies[0] || table.appendChild(document.createElement("tbody"));
    function draw() {
      thead.textContent = "";
      const tr = thead.insertRow();
      columns.forEach(function (c, j) {
        const th = el("th", { text: c.name, "data-col": String(j) });
        if (j === state.col) th.className = state.dir > 0 ? "asc" : "desc";
        th.addEventListener("click", function () {
          state.dir = state.col === j ? -state.dir : (c.numeric === false ? 1 : -1);
          state.col = j;
          draw();
        });
        tr.appendChild(th);
      });
      const c = columns[state.col];
      const order = rows().slice();
      order.sort(function (a, b) {
        let x = c.key(a), y = c.key(b);
        if (typeof x === "number" && isNaN(x)) x = -Infinity;
        if (typeof y === "number" && isNaN(y)) y = -Infinity;
        return (x < y ? -1 : x > y ? 1 : a - b) * state.dir;
      });
      const shown = limit ? order.slice(0, limit) : order;
      const parts = [];
      for (let k = 0; k < shown.length; k++) {
        const i = shown[k];
        parts.push('<tr data-row="' + i + '">');
        for (let j = 0; j < columns.length; j++) {
          const cls = columns[j].cls ? columns[j].cls(i) : "";
          parts.push("<td" + (cls ? ' class="' + cls + '"' : "") + ">" + esc(columns[j].text(i)) + "</td>");
        }
        parts.push("</tr>");
      }
      const fresh = document.createElement("tbody");
      fresh.innerHTML = parts.join("");
      table.replaceChild(fresh, tbody);
      tbody = fresh;
      if (onRow) tbody.addEventListener("click", function (ev) {
        const row = ev.target.closest("tr");
        if (row) onRow(Number(row.getAttribute("data-row")), row);
      });
      table.dispatchEvent(new CustomEvent("drawn", { detail: { total: order.length, shown: shown.length } }));
    }
    draw();
    return { redraw: draw, state: state };
  }

  // ---------------------------------------------------------------------------------------------
  // summary
  // ---------------------------------------------------------------------------------------------
  const A = RUNS[0], B = RUNS[1] || null;
  document.getElementById("title").textContent = D.title;
  document.getElementById("subtitle").textContent = [A.info.method && "method " + A.info.method,
    "protocol " + D.protocol, D.video_list].filter(Boolean).join(" · ");

  function protocolTable(name, res, boot) {
    const table = el("table", { className: "map", "data-protocol": name });
    const head = table.createTHead().insertRow();
    head.appendChild(el("th", { text: "tIoU" }));
    res.tiou.forEach(function (t) { head.appendChild(el("th", { text: t.toFixed(2) })); });
    head.appendChild(el("th", { text: "avg" }));
    const body = table.createTBody();
    const row = body.insertRow();
    row.appendChild(el("td", { text: "mAP %" }));
    res.mAP.forEach(function (m, i) { row.appendChild(el("td", { text: pct(m), "data-map": String(m), "data-tiou": String(res.tiou[i]) })); });
    row.appendChild(el("td", { text: pct(res.average_mAP), "data-map": String(res.average_mAP), "data-tiou": "avg" }));
    if (boot) {
      const ci = body.insertRow();
      ci.appendChild(el("td", { text: Math.round(100 * boot.confidence) + "% CI" }));
      boot.mAP_ci.forEach(function (c) { ci.appendChild(el("td", { text: pct(c[0]) + "–" + pct(c[1]) })); });
      ci.appendChild(el("td", { text: pct(boot.average_mAP_ci[0]) + "–" + pct(boot.average_mAP_ci[1]) }));
    }
    return table;
  }

  function renderSummary() {
    const root = document.getElementById("summary");
    RUNS.forEach(function (R, k) {
      const info = R.info;
      root.appendChild(el("h2", { text: (B ? (k ? "B: " : "A: ") : "") + (info.name || "run") }));
      Object.keys(info.protocols).forEach(function (name) {
        const boot = name === D.protocol ? info.bootstrap : null;
        root.appendChild(el("div", { className: "note", text: name + (name === D.protocol ? " (primary)" : "") }));
        root.appendChild(protocolTable(name, info.protocols[name], boot));
      });
      const c = info.protocols[D.protocol].counts;
      const ex = info.excluded;
      const dl = el("dl", { className: "kv" });
      const add = function (k, v) { dl.appendChild(el("dt", { text: k })); dl.appendChild(el("dd", { text: String(v) })); };
      add("videos", D.video_list);
      add("annotations", D.annotations || "–");
      add("subset", D.subset || "all");
      add("method", info.method || "–");
      add("predictions", info.predictions || "–");
      add("counts", c.num_videos + " videos, " + c.num_gt + " GT, " + c.num_classes + " classes, " + c.num_preds +
        " detections (" + c.num_preds_evaluated + " scored)");
      const notes = [];
      if (ex.unknown_video_preds) notes.push(ex.unknown_video_preds + " on videos without GT (false positives, not drawn)");
      if (ex.unknown_label_preds) notes.push(ex.unknown_label_preds + " with labels not in the GT (ignored)");
      if (ex.preds_of_classes_without_gt) notes.push(ex.preds_of_classes_without_gt + " of classes without GT (ignored)");
      if (ex.blocked_preds_dropped) notes.push(ex.blocked_preds_dropped + " on blocked videos (dropped)");
      if (info.det.dropped) notes.push("page keeps the top " + info.det.cap + " detections per video plus every TP: " +
        info.det.dropped + " false positives not stored (the scores above use all)");
      if (notes.length) add("notes", notes.join("; "));
      root.appendChild(dl);
      root.appendChild(durationTable(info.per_duration));
      root.appendChild(fpTable(info.fp_breakdown));
    });
  }

  function durationTable(pd) {
    const wrap = el("div", {}, [el("h2", { text: "mAP@0.5 per GT duration (" + pd.protocol + ")" })]);
    const table = el("table", { id: "duration-table" });
    const h = table.createTHead().insertRow();
    ["bin", "seconds", "#GT", "mAP@0.5 %", ""].forEach(function (x) { h.appendChild(el("th", { text: x })); });
    const body = table.createTBody();
    pd.bins.forEach(function (b) {
      const r = body.insertRow();
      r.appendChild(el("td", { text: b.name }));
      r.appendChild(el("td", { text: "[" + b.low + ", " + (b.high == null ? "∞" : b.high) + ")" }));
      r.appendChild(el("td", { text: String(b.num_gt) }));
      r.appendChild(el("td", { text: b.num_gt ? pct(b.mAP[0]) : "–" }));
      r.appendChild(el("td", {}, [el("span", { className: "bar", style: "width:" + (b.num_gt ? 150 * b.mAP[0] : 0).toFixed(1) + "px" })]));
    });
    wrap.appendChild(table);
    return wrap;
  }

  function fpTable(fp) {
    const wrap = el("div", {}, [el("h2", { text: "False positives by DETAD error type (" + fp.protocol + ", share of all FP)" })]);
    const table = el("table", { id: "fp-table" });
    const h = table.createTHead().insertRow();
    h.appendChild(el("th", { text: "type" }));
    fp.tiou.forEach(function (t) { h.appendChild(el("th", { text: "@" + t })); });
    h.appendChild(el("th", { text: "avg-mAP gain if removed" }));
    const body = table.createTBody();
    KINDS.slice(1, 6).forEach(function (k, j) {
      const r = body.insertRow();
      r.appendChild(el("td", {}, [el("i", { style: "display:inline-block;width:9px;height:9px;margin-right:4px;background:var(--" + k + ")" }), k.replace("_", " ")]));
      fp.fractions[k].forEach(function (f) { r.appendChild(el("td", { text: (100 * f).toFixed(1) + "%" })); });
      r.appendChild(el("td", { text: signed(fp.mAP_gain[k]) }));
    });
    const r = body.insertRow();
    r.appendChild(el("td", { text: "true positives" }));
    fp.true_positives.forEach(function (n) { r.appendChild(el("td", { text: String(n) })); });
    r.appendChild(el("td", { text: "" }));
    wrap.appendChild(table);
    return wrap;
  }

  // ---------------------------------------------------------------------------------------------
  // classes
  // ---------------------------------------------------------------------------------------------
  function renderClasses() {
    const root = document.getElementById("classes");
    const res = A.info.protocols[D.protocol];
    root.appendChild(el("p", { className: "note", text: "AP % per class, " + D.protocol + " (click a header to sort)" }));
    const npos = new Int32Array(NC);
    for (let g = 0; g < G.n; g++) npos[G.cls[g]]++;
    const cols = [{ name: "class", numeric: false, key: function (i) { return D.classes[i]; }, text: function (i) { return D.classes[i]; } },
      { name: "#GT", key: function (i) { return npos[i]; }, text: function (i) { return String(npos[i]); } }];
    res.tiou.forEach(function (t, j) {
      cols.push({ name: "@" + t, key: function (i) { return res.per_class[D.classes[i]][j]; }, text: function (i) { return pct(res.per_class[D.classes[i]][j]); } });
    });
    const mean = function (i) { const a = res.per_class[D.classes[i]]; return a.reduce(function (s, x) { return s + x; }, 0) / a.length; };
    cols.push({ name: "avg", key: mean, text: function (i) { return pct(mean(i)); } });
    const table = el("table", { id: "class-table", className: "sortable" });
    root.appendChild(table);
    sortableTable(table, cols, function () { return D.classes.map(function (_, i) { return i; }); }, [cols.length - 1, -1]);
  }

  // ---------------------------------------------------------------------------------------------
  // videos
  // ---------------------------------------------------------------------------------------------
  const S = { t: 0.5, cls: -1, score: 0, video: -1, view: null, search: "" };
  const tiouSel = document.getElementById("tiou");
  D.tiou_choices.forEach(function (t) { tiouSel.appendChild(el("option", { value: String(t), text: String(t) })); });
  S.t = D.tiou_choices.indexOf(0.5) >= 0 ? 0.5 : D.tiou_choices[0];
  tiouSel.value = String(S.t);
  const classSel = document.getElementById("class-filter");
  D.classes.forEach(function (c, i) { classSel.appendChild(el("option", { value: String(i), text: c })); });
  const scoreInput = document.getElementById("score");
  let maxScore = 0;
  RUNS.forEach(function (R) { for (let d = 0; d < R.n; d++) if (R.score[d] > maxScore) maxScore = R.score[d]; });
  let minScore = 0;
  RUNS.forEach(function (R) { for (let d = 0; d < R.n; d++) if (R.score[d] < minScore) minScore = R.score[d]; });
  if (maxScore > 1) scoreInput.max = String(Math.ceil(maxScore * 100) / 100);
  if (minScore < 0) { scoreInput.min = String(Math.floor(minScore * 100) / 100); scoreInput.value = scoreInput.min; }
  S.score = Number(scoreInput.value);
  document.getElementById("score-value").textContent = S.score.toFixed(2);

  function renderTotals() {
    const root = document.getElementById("totals");
    root.textContent = "";
    RUNS.forEach(function (R, k) {
      const tt = totals(R, S.t);
      const line = el("div", { className: "totals-run", "data-run": String(k) }, [el("b", { text: (B ? (k ? "B" : "A") + " " : "") + "at tIoU " + S.t + ": " })]);
      [["tp", "TP"], ["fp", "FP"], ["missed", "missed GT"], ["double_detection", "double"], ["wrong_label", "wrong label"],
        ["localization", "localization"], ["confusion", "confusion"], ["background", "background"], ["ignored", "ignored"]].forEach(function (p) {
        if (p[0] === "ignored" && !THUMOS) return;
        line.appendChild(el("span", { "data-k": p[0], "data-n": String(tt[p[0]]), text: p[1] + " " + tt[p[0]] }));
      });
      root.appendChild(line);
    });
  }

  let videoTable = null;
  function videoRows() {
    const q = S.search.toLowerCase();
    const rows = [];
    for (let v = 0; v < NV; v++) {
      if (q && D.videos.id[v].toLowerCase().indexOf(q) < 0) continue;
      if (S.cls >= 0) {
        let has = false;
        for (let g = G.off[v]; g < G.off[v + 1] && !has; g++) has = G.cls[g] === S.cls;
        for (let d = A.off[v]; d < A.off[v + 1] && !has; d++) has = A.cls[d] === S.cls;
        if (!has) continue;
      }
      rows.push(v);
    }
    return rows;
  }
  function renderVideoList() {
    const ma = match(A, S.t), mb = B ? match(B, S.t) : null;
    const va = ma.video;
    const cols = [
      { name: "video", numeric: false, key: function (v) { return D.videos.id[v]; }, text: function (v) { return D.videos.id[v]; } },
      { name: "AP %", key: function (v) { return va.ap[v]; }, text: function (v) { return pct(va.ap[v]); } },
      { name: "#GT", key: function (v) { return va.gt[v]; }, text: function (v) { return String(va.gt[v]); } },
      { name: "#TP", key: function (v) { return va.tp[v]; }, text: function (v) { return String(va.tp[v]); } },
      { name: "#FP", key: function (v) { return va.fp[v]; }, text: function (v) { return String(va.fp[v]); } },
      { name: "#missed", key: function (v) { return va.missed[v]; }, text: function (v) { return String(va.missed[v]); } },
    ];
    if (mb) {
      cols.push({ name: "AP B %", key: function (v) { return mb.video.ap[v]; }, text: function (v) { return pct(mb.video.ap[v]); } });
      const diff = function (v) { return mb.video.ap[v] - va.ap[v]; };
      cols.push({ name: "ΔAP", key: diff, text: function (v) { return signed(diff(v)); },
        cls: function (v) { const x = diff(v); return x > 0 ? "pos" : x < 0 ? "neg" : ""; } });
    }
    const table = document.getElementById("video-table");
    const initial = videoTable ? [videoTable.state.col, videoTable.state.dir] : [0, 1];
    videoTable = sortableTable(table, cols, videoRows, initial, function (v) { selectVideo(v); }, 1000);
  }
  document.getElementById("video-table").addEventListener("drawn", function (ev) {
    const note = document.getElementById("video-list-note");
    note.textContent = ev.detail.total + " videos" + (ev.detail.shown < ev.detail.total ? ", first " + ev.detail.shown + " shown (sort or search to see others)" : "");
    markSelected();
  });
  function markSelected() {
    document.querySelectorAll("#video-table tbody tr").forEach(function (tr) {
      tr.classList.toggle("sel", Number(tr.getAttribute("data-row")) === S.video);
    });
  }

  // timeline --------------------------------------------------------------------------------------
  const SVGNS = "http://www.w3.org/2000/svg";
  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVGNS, tag);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    return node;
  }
  function videoEnd(v) {
    let end = D.videos.duration[v] || 0;
    for (let g = G.off[v]; g < G.off[v + 1]; g++) end = Math.max(end, G.e[g]);
    RUNS.forEach(function (R) { for (let d = R.off[v]; d < R.off[v + 1]; d++) end = Math.max(end, R.e[d], R.s[d]); });
    return end > 0 ? end : 1;
  }

  function selectVideo(v) {
    S.video = v;
    S.view = [0, videoEnd(v)];
    markSelected();
    renderDetail();
  }

  function renderDetail() {
    const v = S.video;
    const root = document.getElementById("video-detail");
    root.textContent = "";
    if (v < 0) return;
    const ma = match(A, S.t);
    const title = el("h2", { id: "detail-title", text: D.videos.id[v] });
    root.appendChild(title);
    root.appendChild(el("div", { id: "detail-counts", "data-gt": String(ma.video.gt[v]), "data-tp": String(ma.video.tp[v]),
      "data-fp": String(ma.video.fp[v]), "data-missed": String(ma.video.missed[v]),
      text: "duration " + sec(D.videos.duration[v]) + " s · " + ma.video.gt[v] + " GT · TP " + ma.video.tp[v] + " · FP " +
        ma.video.fp[v] + " · missed " + ma.video.missed[v] + " · AP " + pct(ma.video.ap[v]) + " % (tIoU " + S.t + ")" }));
    RUNS.forEach(function (R) {
      const stored = R.off[v + 1] - R.off[v];
      if (R.total[v] > stored) {
        root.appendChild(el("div", { className: "note warn capped", text: (B ? R.info.name + ": " : "") + "showing " + stored + " of " +
          R.total[v] + " detections: the top " + R.info.det.cap + " by score plus every TP (the rest are false positives)" }));
      }
    });
    let player = null;
    const file = D.videos.file[v];
    if (file) {
      player = el("video", { controls: "", preload: "metadata", src: file, id: "player" });
      player.addEventListener("error", function () {
        player.replaceWith(el("div", { className: "note", text: "video file " + file + " cannot be played here" }));
      });
      root.appendChild(player);
    }
    const zoom = el("div", { className: "zoom" }, [
      el("button", { id: "zoom-in", text: "zoom +" }), " ", el("button", { id: "zoom-out", text: "zoom −" }), " ",
      el("button", { id: "zoom-reset", text: "whole video" }), " ",
      el("span", { className: "note", text: "wheel: zoom · drag: pan · click a segment" + (file ? " to seek" : "") })]);
    root.appendChild(zoom);
    const holder = el("div", { id: "timeline-holder" });
    root.appendChild(holder);
    const legend = el("div", { className: "legend" });
    [["gt", "GT"], ["missed", "missed GT"]].concat(KINDS.map(function (k, i) { return [k, KIND_TEXT[i]]; })).forEach(function (p) {
      if (p[0] === "ignored" && !THUMOS) return;
      legend.appendChild(el("span", {}, [el("i", { style: "background:var(--" + p[0] + ")" }), p[1]]));
    });
    root.appendChild(legend);
    const draw = function () { drawTimeline(holder, v, player); };
    zoom.querySelector("#zoom-in").addEventListener("click", function () { zoomBy(0.5, 0.5, draw); });
    zoom.querySelector("#zoom-out").addEventListener("click", function () { zoomBy(2, 0.5, draw); });
    zoom.querySelector("#zoom-reset").addEventListener("click", function () { S.view = [0, videoEnd(v)]; draw(); });
    draw();
    if (player) player.addEventListener("timeupdate", function () { moveCursor(holder, player.currentTime); });
  }

  function zoomBy(factor, at, draw) {
    const span = S.view[1] - S.view[0], full = videoEnd(S.video);
    const center = S.view[0] + at * span;
    let w = Math.min(full, Math.max(span * factor, full / 2000, 0.05));
    let lo = center - at * w;
    lo = Math.max(0, Math.min(lo, full - w));
    S.view = [lo, lo + w];
    draw();
  }

  function moveCursor(holder, time) {
    const svg = holder.querySelector("svg");
    if (!svg) return;
    const cur = svg.querySelector("line.cursor");
    const x = xOf(time, svg.__width);
    cur.setAttribute("x1", x); cur.setAttribute("x2", x);
    cur.setAttribute("data-time", String(time));
  }
  const LEFT = 34;
  function xOf(time, width) { return LEFT + (time - S.view[0]) / (S.view[1] - S.view[0]) * (width - LEFT - 6); }

  function drawTimeline(holder, v, player) {
    const width = Math.max(400, holder.clientWidth || 800);
    const lo = S.view[0], hi = S.view[1];
    const blocks = [];
    // GT lanes: greedy packing so overlapping instances stay visible
    const laneEnd = [], gtLane = [];
    for (let g = G.off[v]; g < G.off[v + 1]; g++) {
      if (S.cls >= 0 && G.cls[g] !== S.cls) { gtLane.push(-1); continue; }
      let lane = laneEnd.findIndex(function (e) { return e <= G.s[g]; });
      if (lane < 0) { lane = laneEnd.length; laneEnd.push(0); }
      laneEnd[lane] = G.e[g];
      gtLane.push(lane);
    }
    const gtH = 12, top = 18;
    let y = top + Math.max(1, laneEnd.length) * (gtH + 2) + 6;
    const runsDrawn = RUNS.map(function (R) {
      const m = match(R, S.t);
      const ds = [];
      for (let d = R.off[v]; d < R.off[v + 1]; d++) {
        if (R.score[d] < S.score) continue;
        if (S.cls >= 0 && R.cls[d] !== S.cls) continue;
        ds.push(d);
      }
      ds.sort(function (a, b) { return R.score[b] - R.score[a] || a - b; });
      const rowH = Math.max(2, Math.min(8, 240 / Math.max(1, ds.length)));
      const block = { R: R, m: m, ds: ds, y: y + 14, rowH: rowH };
      y += 14 + ds.length * rowH + 10;
      blocks.push(block);
      return block;
    });
    const height = y + 14;
    const svg = svgEl("svg", { class: "timeline", width: width, height: height, viewBox: "0 0 " + width + " " + height });
    svg.__width = width;
    // axis
    const axis = svgEl("g", { class: "axis" });
    const span = hi - lo, step = niceStep(span / 8);
    for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) {
      const x = xOf(t, width);
      axis.appendChild(svgEl("line", { x1: x, x2: x, y1: 12, y2: height - 12 }));
      const label = svgEl("text", { x: x + 2, y: 10 });
      label.textContent = (step < 1 ? t.toFixed(1) : t.toFixed(0)) + "s";
      axis.appendChild(label);
    }
    svg.appendChild(axis);
    const gLabel = svgEl("text", { x: 2, y: top + 10 });
    gLabel.textContent = "GT";
    svg.appendChild(gLabel);
    const clip = function (s, e) { const a = xOf(Math.max(s, lo), width), b = xOf(Math.min(e, hi), width); return [a, Math.max(1, b - a)]; };
    for (let k = AMB.off[v]; k < AMB.off[v + 1]; k++) {
      if (AMB.e[k] < lo || AMB.s[k] > hi) continue;
      const c = clip(AMB.s[k], AMB.e[k]);
      svg.appendChild(svgEl("rect", { class: "amb", x: c[0], width: c[1], y: top, height: Math.max(1, laneEnd.length) * (gtH + 2) }));
    }
    const ma = match(A, S.t);
    for (let g = G.off[v], i = 0; g < G.off[v + 1]; g++, i++) {
      const lane = gtLane[i];
      if (lane < 0 || G.e[g] < lo || G.s[g] > hi) continue;
      const c = clip(G.s[g], G.e[g]);
      svg.appendChild(svgEl("rect", { class: "gt" + (ma.gtDet[g] < 0 ? " missed" : ""), x: c[0], width: c[1],
        y: top + lane * (gtH + 2), height: gtH, "data-gt": String(g) }));
    }
    runsDrawn.forEach(function (b, k) {
      const label = svgEl("text", { x: 2, y: b.y - 3 });
      label.textContent = (B ? (k ? "B " : "A ") : "") + "detections by score (" + b.ds.length + " drawn)";
      svg.appendChild(label);
      const group = svgEl("g", { class: "dets", "data-run": String(k), "data-drawn": String(b.ds.length) });
      b.ds.forEach(function (d, r) {
        if (b.R.e[d] < lo || b.R.s[d] > hi) return;
        const c = clip(Math.min(b.R.s[d], b.R.e[d]), Math.max(b.R.s[d], b.R.e[d]));
        group.appendChild(svgEl("rect", { class: "det k" + b.m.kind[d], x: c[0], width: c[1], y: b.y + r * b.rowH,
          height: Math.max(1, b.rowH - 0.5), "data-det": String(d), "data-kind": KINDS[b.m.kind[d]] }));
      });
      svg.appendChild(group);
    });
    svg.appendChild(svgEl("line", { class: "cursor", x1: -10, x2: -10, y1: 12, y2: height - 4 }));
    // interaction: hover details, click to seek, wheel zoom, drag pan
    svg.addEventListener("mousemove", function (ev) { hover(ev, v); });
    svg.addEventListener("mouseleave", function () { document.getElementById("tooltip").hidden = true; });
    svg.addEventListener("click", function (ev) {
      const target = ev.target;
      if (svg.__dragged) return;
      let start = null;
      if (target.hasAttribute("data-det")) { const R = RUNS[Number(target.parentNode.getAttribute("data-run"))]; start = R.s[Number(target.getAttribute("data-det"))]; }
      else if (target.hasAttribute("data-gt")) start = G.s[Number(target.getAttribute("data-gt"))];
      if (start != null && player) { player.currentTime = Math.max(0, start); moveCursor(holder, player.currentTime); }
    });
    svg.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      const box = svg.getBoundingClientRect();
      const at = Math.min(1, Math.max(0, (ev.clientX - box.left - LEFT) / (box.width - LEFT - 6)));
      zoomBy(ev.deltaY < 0 ? 0.8 : 1.25, at, function () { drawTimeline(holder, v, player); });
    }, { passive: false });
    svg.addEventListener("mousedown", function (ev) {
      const x0 = ev.clientX, view0 = S.view.slice(), full = videoEnd(v);
      svg.__dragged = false;
      const move = function (e) {
        const dt = (e.clientX - x0) / (width - LEFT - 6) * (view0[1] - view0[0]);
        if (Math.abs(e.clientX - x0) > 3) svg.__dragged = true;
        const w = view0[1] - view0[0];
        const lo2 = Math.max(0, Math.min(full - w, view0[0] - dt));
        S.view = [lo2, lo2 + w];
      };
      const up = function () {
        window.removeEventListener("mousemove", move); window.removeEventListener("mouseup", up);
        if (svg.__dragged) drawTimeline(holder, v, player);
      };
      window.addEventListener("mousemove", move); window.addEventListener("mouseup", up);
    });
    holder.textContent = "";
    holder.appendChild(svg);
    if (player) moveCursor(holder, player.currentTime);
  }

  function niceStep(raw) {
    const p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-6))));
    const f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
  }

  function hover(ev, v) {
    const tip = document.getElementById("tooltip");
    const t = ev.target;
    let text = null;
    if (t.hasAttribute("data-det")) {
      const k = Number(t.parentNode.getAttribute("data-run")), R = RUNS[k], d = Number(t.getAttribute("data-det"));
      const m = match(R, S.t), best = bestOverlap(R);
      text = (B ? R.info.name + "\n" : "") + D.classes[R.cls[d]] + "  score " + R.score[d].toFixed(4) + "\n" + sec(R.s[d]) + " – " + sec(R.e[d]) +
        " s\n" + KIND_TEXT[m.kind[d]] + "\nbest tIoU " + best.iou[d].toFixed(3) +
        (best.gt[d] >= 0 ? " (GT " + D.classes[G.cls[best.gt[d]]] + " " + sec(G.s[best.gt[d]]) + "–" + sec(G.e[best.gt[d]]) + ")" : "") +
        (m.detGt[d] >= 0 ? "\nmatched GT " + sec(G.s[m.detGt[d]]) + "–" + sec(G.e[m.detGt[d]]) : "");
    } else if (t.hasAttribute("data-gt")) {
      const g = Number(t.getAttribute("data-gt")), m = match(A, S.t);
      text = "GT " + D.classes[G.cls[g]] + "\n" + sec(G.s[g]) + " – " + sec(G.e[g]) + " s\n" +
        (m.gtDet[g] >= 0 ? "matched (score " + A.score[m.gtDet[g]].toFixed(4) + ")" : "missed at tIoU " + S.t);
    }
    if (text == null) { tip.hidden = true; return; }
    tip.textContent = text;
    tip.hidden = false;
    tip.style.left = Math.min(window.innerWidth - 260, ev.clientX + 12) + "px";
    tip.style.top = (ev.clientY + 12) + "px";
  }

  // ---------------------------------------------------------------------------------------------
  // compare
  // ---------------------------------------------------------------------------------------------
  function renderCompare() {
    if (!B) return;
    document.getElementById("tab-compare").hidden = false;
    const root = document.getElementById("compare");
    const ra = A.info.protocols[D.protocol], rb = B.info.protocols[D.protocol];
    root.appendChild(el("p", {}, ["A = " + A.info.name + ", B = " + B.info.name + " (" + D.protocol + ")"]));
    const cmp = D.compare;
    if (cmp) {
      root.appendChild(el("h2", { text: "Paired bootstrap, " + cmp.n_resamples + " resamples of the videos (seed " + cmp.seed + ")" }));
      const table = el("table", { id: "bootstrap-table" });
      const h = table.createTHead().insertRow();
      h.appendChild(el("th", { text: "tIoU" }));
      cmp.tiou.forEach(function (t) { h.appendChild(el("th", { text: String(t) })); });
      h.appendChild(el("th", { text: "avg" }));
      const body = table.createTBody();
      const row = function (name, vals, avg, f) {
        const r = body.insertRow();
        r.appendChild(el("td", { text: name }));
        vals.forEach(function (x) { r.appendChild(el("td", { text: f(x) })); });
        r.appendChild(el("td", { text: f(avg) }));
      };
      const mean = function (a) { return a.reduce(function (s, x) { return s + x; }, 0) / a.length; };
      row("A mAP %", cmp.mAP_a, mean(cmp.mAP_a), pct);
      row("B mAP %", cmp.mAP_b, mean(cmp.mAP_b), pct);
      row("B − A", cmp.difference, cmp.average_difference, signed);
      row(Math.round(100 * cmp.confidence) + "% CI", cmp.difference_ci, cmp.average_difference_ci, function (c) { return signed(c[0]) + " … " + signed(c[1]); });
      row("p (two-sided)", cmp.p_value, cmp.average_p_value, function (x) { return x.toFixed(4); });
      root.appendChild(table);
    }
    root.appendChild(el("h2", { text: "AP difference per class (B − A, points)" }));
    const cols = [{ name: "class", numeric: false, key: function (i) { return D.classes[i]; }, text: function (i) { return D.classes[i]; } }];
    ra.tiou.forEach(function (t, j) {
      const dif = function (i) { return rb.per_class[D.classes[i]][j] - ra.per_class[D.classes[i]][j]; };
      cols.push({ name: "Δ@" + t, key: dif, text: function (i) { return signed(dif(i)); }, cls: function (i) { return dif(i) > 0 ? "pos" : dif(i) < 0 ? "neg" : ""; } });
    });
    const avg = function (r, i) { const a = r.per_class[D.classes[i]]; return a.reduce(function (s, x) { return s + x; }, 0) / a.length; };
    const davg = function (i) { return avg(rb, i) - avg(ra, i); };
    cols.push({ name: "A avg", key: function (i) { return avg(ra, i); }, text: function (i) { return pct(avg(ra, i)); } });
    cols.push({ name: "B avg", key: function (i) { return avg(rb, i); }, text: function (i) { return pct(avg(rb, i)); } });
    cols.push({ name: "Δ avg", key: davg, text: function (i) { return signed(davg(i)); }, cls: function (i) { return davg(i) > 0 ? "pos" : davg(i) < 0 ? "neg" : ""; } });
    const table = el("table", { id: "compare-class-table", className: "sortable" });
    root.appendChild(table);
    sortableTable(table, cols, function () { return D.classes.map(function (_, i) { return i; }); }, [cols.length - 1, -1]);
    root.appendChild(el("p", { className: "note", text: "Per-video differences: the Videos tab lists AP B and ΔAP at the picked tIoU; a video shows both runs' detections." }));
  }

  // ---------------------------------------------------------------------------------------------
  // wiring
  // ---------------------------------------------------------------------------------------------
  document.querySelectorAll("#tabs button").forEach(function (btn) {
    btn.addEventListener("click", function () {
      document.querySelectorAll("#tabs button").forEach(function (b) { b.classList.toggle("on", b === btn); });
      document.querySelectorAll(".tab").forEach(function (s) { s.classList.toggle("on", s.id === btn.getAttribute("data-tab")); });
      if (btn.getAttribute("data-tab") === "videos" && S.video >= 0) renderDetail();
    });
  });
  const refreshVideos = function () { renderTotals(); renderVideoList(); if (S.video >= 0) renderDetail(); };
  tiouSel.addEventListener("change", function () { S.t = Number(tiouSel.value); refreshVideos(); });
  classSel.addEventListener("change", function () { S.cls = Number(classSel.value); refreshVideos(); });
  scoreInput.addEventListener("input", function () {
    S.score = Number(scoreInput.value);
    document.getElementById("score-value").textContent = S.score.toFixed(2);
    if (S.video >= 0) renderDetail();
  });
  document.getElementById("video-search").addEventListener("input", function (ev) { S.search = ev.target.value; renderVideoList(); });

  renderSummary();
  renderClasses();
  renderTotals();
  renderVideoList();
  renderCompare();
  const firstRow = document.querySelector("#video-table tbody tr");  // the first video as listed (sorted)
  if (firstRow) selectVideo(Number(firstRow.getAttribute("data-row")));
  window.tadkitView = { data: D, runs: RUNS, match: match, totals: totals, selectVideo: selectVideo, state: S,
    loadMs: performance.now() - started };
  document.body.setAttribute("data-ready", "1");
})();
