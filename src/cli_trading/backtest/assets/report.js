/* cli-trading backtest report: a small SVG chart renderer, inlined into report.html (works
   offline, no library). Charts share one time axis: drag across a chart to zoom every chart,
   double-click (or "reset zoom") to see the whole run; hover for values. */
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("bt-data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const T = D.t;
  const view = { lo: T[0], hi: T[T.length - 1] };
  const charts = [];

  function el(tag, attrs, parent) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function lowerBound(a, x) {
    let lo = 0, hi = a.length;
    while (lo < hi) { const m = (lo + hi) >> 1; if (a[m] < x) lo = m + 1; else hi = m; }
    return lo;
  }
  function ticks(lo, hi, n) {
    const span = hi - lo || Math.abs(hi) || 1;
    let step = Math.pow(10, Math.floor(Math.log10(span / n)));
    const err = span / n / step;
    if (err >= 7.5) step *= 10; else if (err >= 3.5) step *= 5; else if (err >= 1.5) step *= 2;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
    return out;
  }
  function num(v, unit) {
    if (v == null || !isFinite(v)) return "–";
    const a = Math.abs(v);
    const s = a >= 1e6 ? (v / 1e6).toFixed(2) + "M" : a >= 1e3 ? Math.round(v).toLocaleString("en-US")
      : a >= 10 ? v.toFixed(1) : v.toFixed(2);
    return s + (unit || "");
  }
  function date(ms, span) {
    const iso = new Date(ms).toISOString();
    if (span === undefined) return iso.slice(0, 16).replace("T", " ");
    return span > 90 * 864e5 ? iso.slice(0, 10) : span > 2 * 864e5 ? iso.slice(5, 10) + " " + iso.slice(11, 16)
      : iso.slice(11, 16);
  }

  function Chart(host, spec) {
    this.host = host; this.spec = spec; charts.push(this);
  }
  Chart.prototype.render = function () {
    const spec = this.spec, host = this.host;
    const W = Math.max(host.clientWidth || 0, 320), H = spec.height || 240;
    const m = { l: 72, r: 14, t: 8, b: 24 };
    const pw = W - m.l - m.r, ph = H - m.t - m.b;
    host.textContent = "";
    const svg = el("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" }, host);
    const i0 = Math.max(0, lowerBound(T, view.lo) - 1), i1 = Math.min(T.length, lowerBound(T, view.hi) + 2);
    let lo = Infinity, hi = -Infinity;
    for (const s of spec.series) for (let i = i0; i < i1; i++) {
      const v = s.values[i]; if (v == null) continue; if (v < lo) lo = v; if (v > hi) hi = v;
    }
    for (const mk of spec.markers || []) if (mk.t >= view.lo && mk.t <= view.hi) { lo = Math.min(lo, mk.v); hi = Math.max(hi, mk.v); }
    if (spec.zero) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (hi === lo) { hi += Math.abs(hi) * 0.01 || 1; lo -= Math.abs(lo) * 0.01 || 1; }
    const pad = (hi - lo) * 0.04; lo -= spec.zero && lo === 0 ? 0 : pad; hi += pad;
    const x = (t) => m.l + (t - view.lo) / (view.hi - view.lo || 1) * pw;
    const y = (v) => m.t + (hi - v) / (hi - lo) * ph;
    const clip = "clip" + charts.indexOf(this);
    el("rect", { x: m.l, y: m.t, width: pw, height: ph }, el("clipPath", { id: clip }, el("defs", {}, svg)));
    const grid = el("g", { class: "grid" }, svg);
    for (const v of ticks(lo, hi, 5)) {
      el("line", { x1: m.l, x2: m.l + pw, y1: y(v), y2: y(v) }, grid);
      el("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end" }, grid).textContent = num(v, spec.unit);
    }
    for (const t of ticks(view.lo, view.hi, Math.max(2, Math.floor(pw / 130)))) {
      el("line", { x1: x(t), x2: x(t), y1: m.t, y2: m.t + ph }, grid);
      el("text", { x: x(t), y: H - 6, "text-anchor": "middle" }, grid).textContent = date(t, view.hi - view.lo);
    }
    const plot = el("g", { "clip-path": `url(#${clip})` }, svg);
    for (const s of spec.series) {
      let d = "", pen = "M";
      for (let i = i0; i < i1; i++) {
        const v = s.values[i];
        if (v == null) { pen = "M"; continue; }
        d += pen + x(T[i]).toFixed(1) + "," + y(v).toFixed(1); pen = "L";
      }
      if (s.fill && d) d += `L${x(T[i1 - 1]).toFixed(1)},${y(0).toFixed(1)}L${x(T[i0]).toFixed(1)},${y(0).toFixed(1)}Z`;
      el("path", { d: d, class: "series", stroke: s.color, fill: s.fill ? s.color : "none", "fill-opacity": s.fill ? 0.25 : 0 }, plot);
    }
    for (const mk of spec.markers || []) {
      if (mk.t < view.lo || mk.t > view.hi) continue;
      const cx = x(mk.t), cy = y(mk.v), up = mk.side === "buy";
      const pts = up ? `${cx},${cy - 1} ${cx - 5},${cy + 8} ${cx + 5},${cy + 8}` : `${cx},${cy + 1} ${cx - 5},${cy - 8} ${cx + 5},${cy - 8}`;
      const p = el("polygon", { points: pts, class: "marker " + mk.side }, plot);
      el("title", {}, p).textContent = `${mk.side} ${mk.q} @ ${mk.v} — ${date(mk.t)}`;
    }
    el("rect", { x: m.l, y: m.t, width: pw, height: ph, class: "frame" }, svg);
    this.interact(svg, { x, m, pw, ph, i0, i1, y });
  };
  Chart.prototype.interact = function (svg, g) {
    const spec = this.spec, host = this.host;
    const overlay = el("rect", { x: g.m.l, y: g.m.t, width: g.pw, height: g.ph, class: "overlay" }, svg);
    const cross = el("line", { y1: g.m.t, y2: g.m.t + g.ph, class: "cross", visibility: "hidden" }, svg);
    const sel = el("rect", { y: g.m.t, height: g.ph, class: "selection", visibility: "hidden" }, svg);
    const tip = document.createElement("div"); tip.className = "tip"; host.appendChild(tip);
    const tAt = (px) => view.lo + (px - g.m.l) / g.pw * (view.hi - view.lo);
    const pxOf = (ev) => { const r = svg.getBoundingClientRect(); return ev.clientX - r.left; };
    let drag = null;
    overlay.addEventListener("mousemove", (ev) => {
      const px = pxOf(ev);
      if (drag !== null) {
        sel.setAttribute("x", Math.min(drag, px)); sel.setAttribute("width", Math.abs(px - drag)); sel.setAttribute("visibility", "visible");
      }
      let i = lowerBound(T, tAt(px));
      if (i >= T.length) i = T.length - 1;
      if (i > 0 && tAt(px) - T[i - 1] < T[i] - tAt(px)) i -= 1;
      cross.setAttribute("x1", g.x(T[i])); cross.setAttribute("x2", g.x(T[i])); cross.setAttribute("visibility", "visible");
      tip.innerHTML = `<b>${date(T[i])}</b>` + spec.series.map((s) => `<br><span style="color:${s.color}">■</span> ${s.name}: ${num(s.values[i], spec.unit)}`).join("");
      tip.style.left = Math.min(px + 12, g.m.l + g.pw - 200) + "px"; tip.style.display = "block";
    });
    overlay.addEventListener("mouseleave", () => { cross.setAttribute("visibility", "hidden"); tip.style.display = "none"; });
    overlay.addEventListener("mousedown", (ev) => { drag = pxOf(ev); ev.preventDefault(); });
    overlay.addEventListener("mouseup", (ev) => {
      const px = pxOf(ev), a = drag; drag = null; sel.setAttribute("visibility", "hidden");
      if (a === null || Math.abs(px - a) < 5) return;
      zoom(tAt(Math.min(a, px)), tAt(Math.max(a, px)));
    });
    overlay.addEventListener("dblclick", () => zoom(T[0], T[T.length - 1]));
  };

  function zoom(lo, hi) {
    view.lo = lo; view.hi = hi;
    renderAll();
  }
  function renderAll() {
    for (const c of charts) c.render();
    document.body.dataset.rendered = String(charts.length);
  }

  function metricsTable() {
    const tbody = document.querySelector("#metrics tbody");
    for (const row of D.rows) {
      const tr = document.createElement("tr");
      for (const cell of row) { const td = document.createElement("td"); td.textContent = cell; tr.appendChild(td); }
      tbody.appendChild(tr);
    }
  }

  const host = (id) => document.getElementById(id);
  metricsTable();
  new Chart(host("equity"), {
    unit: "", series: [
      { name: "strategies", color: "#1f6feb", values: D.equity },
      { name: "buy and hold", color: "#8b949e", values: D.bh },
    ],
  });
  new Chart(host("drawdown"), { unit: "%", zero: true, height: 160, series: [{ name: "drawdown", color: "#d1242f", values: D.dd, fill: true }] });
  const prices = host("prices");
  D.symbols.forEach((sym, k) => {
    const h = document.createElement("h2"); h.textContent = `${sym}: price, entries (▲ buy) and exits (▼ sell)`; prices.appendChild(h);
    const div = document.createElement("div"); div.className = "plot"; prices.appendChild(div);
    new Chart(div, {
      unit: "", series: [{ name: sym, color: "#24292f", values: D.prices[k] }],
      markers: D.fills.filter((f) => f.s === sym).map((f) => ({ t: f.t, v: f.p, side: f.side, q: f.q })),
    });
  });
  host("reset").addEventListener("click", () => zoom(T[0], T[T.length - 1]));
  let pending = 0;
  window.addEventListener("resize", () => { clearTimeout(pending); pending = setTimeout(renderAll, 100); });
  renderAll();
})();
