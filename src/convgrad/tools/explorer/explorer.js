/* convgrad gradient explorer. Draws the data that convgrad computed (the worked example and
   the per-dimension index tables) and expands a cell's terms from those tables; it computes
   no result of its own: every sum it writes is checked against the embedded result. */
(function () {
  "use strict";
  var me = document.currentScript;
  var wrap = me ? me.parentNode : null;
  if (!wrap || !wrap.classList.contains("cgx-wrap")) {
    var open = document.querySelectorAll(".cgx-wrap:not([data-ready])");
    wrap = open[open.length - 1];
  }
  if (!wrap || wrap.dataset.ready) return;
  wrap.dataset.ready = "1";
  var root = wrap.querySelector(".cgx");
  var D = JSON.parse(wrap.querySelector("script.cgx-data").textContent);
  var dims = D.dims, nd = D.nd, L = D.labels;
  var MAX_TERMS_SHOWN = 60;

  // ------------------------------------------------------------------ arrays
  function decode(e) {
    var bin = atob(e.b64), n = bin.length, u8 = new Uint8Array(n);
    for (var i = 0; i < n; i++) u8[i] = bin.charCodeAt(i);
    var T = { i1: Int8Array, i2: Int16Array, i4: Int32Array }[e.dtype];
    var strides = [], s = 1;
    for (var a = e.shape.length - 1; a >= 0; a--) { strides[a] = s; s *= e.shape[a]; }
    return { shape: e.shape, data: new T(u8.buffer), strides: strides };
  }
  var A = {};
  Object.keys(D.arrays).forEach(function (k) { A[k] = decode(D.arrays[k]); });
  function at(name, idx) {
    var arr = A[name], o = 0;
    for (var a = 0; a < idx.length; a++) o += idx[a] * arr.strides[a];
    return arr.data[o];
  }
  function product(lists) {  // cartesian product, first list outermost
    var out = [[]];
    lists.forEach(function (list) {
      var next = [];
      out.forEach(function (pre) { list.forEach(function (v) { next.push(pre.concat([v])); }); });
      out = next;
    });
    return out;
  }
  function range(n) { var r = []; for (var i = 0; i < n; i++) r.push(i); return r; }

  // ------------------------------------------------------------------ terms of a cell
  function smallAt(dim, t) {
    var r = t - dim.d * (dim.k - 1);
    if (r < 0 || r % dim.s || r / dim.s >= dim.out) return null;
    return r / dim.s;
  }
  function passById(id) { return D.passes.filter(function (p) { return p.id === id; })[0]; }
  function panelOf(pass, name) { return pass.panels.filter(function (p) { return p.name === name; })[0]; }

  /* The same expansion as convgrad._explorer.contributions: [[a, b], ...], each of a and b
     null (the number 1) or [array, shown_at, source or null]. */
  function contributions(passId, name, index) {
    var pass = passById(passId), panel = panelOf(pass, name), kind = panel.kind;
    var bg = D.big_ch / D.groups, sg = D.small_ch / D.groups, an = panel.a, terms = [];
    var g, c, bp;
    if (kind === "gather") {
      var sc = index[0], o = index.slice(1);
      g = Math.floor(sc / sg);
      var per = o.map(function (oa, a) {
        var dim = dims[a];
        return range(dim.k).map(function (j) {
          var p = oa * dim.s + j * dim.d;
          return [p, j, dim.src[p]];
        });
      });
      var combos = product(per);
      for (bp = 0; bp < bg; bp++) {
        c = g * bg + bp;
        combos.forEach(function (combo) {
          var p = combo.map(function (t) { return t[0]; });
          var j = combo.map(function (t) { return t[1]; });
          var src = combo.map(function (t) { return t[2]; });
          var ok = Math.min.apply(null, src) >= 0;
          var w = [sc, bp].concat(j);
          terms.push([[an, [c].concat(p), ok ? [c].concat(src) : null], [panel.b, w, w]]);
        });
      }
    } else if (kind === "scatter") {
      var bc = index[0], i = index.slice(1);
      g = Math.floor(bc / bg); bp = bc - g * bg;
      var perS = i.map(function (ia, a) {
        var dim = dims[a], opts = [];
        for (var p = 0; p < dim.L; p++) {
          if (dim.src[p] !== ia) continue;
          for (var jf = 0; jf < dim.k; jf++) {
            var t = p + jf * dim.d;
            opts.push([t, jf, smallAt(dim, t)]);
          }
        }
        return opts;
      });
      var combosS = product(perS);
      for (var s2 = g * sg; s2 < (g + 1) * sg; s2++) {
        combosS.forEach(function (combo) {
          var t = combo.map(function (v) { return v[0]; });
          var jf = combo.map(function (v) { return v[1]; });
          var o = combo.map(function (v) { return v[2]; });
          var real = o.every(function (v) { return v !== null; });
          var j = jf.map(function (v, a) { return dims[a].k - 1 - v; });
          terms.push([[an, [s2].concat(t), real ? [s2].concat(o) : null],
                      [panel.b, [s2, bp].concat(jf), [s2, bp].concat(j)]]);
        });
      }
    } else if (kind === "weight") {
      var sw = index[0], bw = index[1], jw = index.slice(2);
      g = Math.floor(sw / sg); c = g * bg + bw;
      var perW = jw.map(function (ja, a) {
        var dim = dims[a];
        return range(dim.out).map(function (oa) {
          var p = oa * dim.s + ja * dim.d;
          return [oa, p, dim.src[p]];
        });
      });
      product(perW).forEach(function (combo) {
        var o = combo.map(function (t) { return t[0]; });
        var p = combo.map(function (t) { return t[1]; });
        var src = combo.map(function (t) { return t[2]; });
        var ok = Math.min.apply(null, src) >= 0;
        terms.push([[an, [c].concat(p), ok ? [c].concat(src) : null],
                    [panel.b, [sw].concat(o), [sw].concat(o)]]);
      });
    } else if (kind === "sum") {
      var k = index[0], shape = A[an].shape.slice(1), view = panelOf(pass, an).view;
      product(shape.map(range)).forEach(function (pos) {
        var shown = view === "padded" ? pos.map(function (v, a) { return v + dims[a].lo; }) : pos;
        terms.push([[an, [k].concat(shown), [k].concat(pos)], null]);
      });
    }
    if (panel.bias) terms.push([null, [panel.bias, [index[0]], [index[0]]]]);
    return terms;
  }
  function termValue(term) {
    var v = 1;
    term.forEach(function (ref) { if (ref) v *= ref[2] ? at(ref[0], ref[2]) : 0; });
    return v;
  }

  // ------------------------------------------------------------------ what a panel shows
  function tileAxes(name) { return name === "F" || name === "dF" ? 2 : (name === "b" || name === "db" ? 0 : 1); }
  function geometry(panel) {
    var shape = A[panel.name].shape, t = tileAxes(panel.name), sp;
    if (panel.view === "padded") sp = dims.map(function (d) { return d.L; });
    else if (panel.view === "E") sp = dims.map(function (d) { return d.E; });
    else sp = shape.slice(t);
    return { tiles: shape.slice(0, t), sp: sp, full: shape.slice(0, t).concat(sp), t: t };
  }
  /* {src, cls, v} of the cell drawn at display index disp */
  function shown(panel, disp) {
    var name = panel.name, view = panel.view, cls = "", src;
    if (view === "plain") src = disp;
    else if (view === "flip") {
      src = disp.slice(0, 2).concat(disp.slice(2).map(function (v, a) { return dims[a].k - 1 - v; }));
    } else if (view === "padded") {
      var pos = disp.slice(1), s = pos.map(function (p, a) { return dims[a].src[p]; });
      var copy = false, unread = false;
      pos.forEach(function (p, a) {
        if (s[a] >= 0 && s[a] !== p - dims[a].lo) copy = true;
        if (p >= dims[a].read) unread = true;
      });
      if (Math.min.apply(null, s) < 0) { src = null; cls = "pad"; }
      else { src = [disp[0]].concat(s); if (copy) cls = "copy"; }
      if (unread) cls += " unread";
    } else {  // E: the small map with the stride's zeros inserted and d*(k-1) zeros around
      var posE = disp.slice(1), o = posE.map(function (t, a) { return smallAt(dims[a], t); });
      if (o.every(function (v) { return v !== null; })) src = [disp[0]].concat(o);
      else {
        src = null;
        var border = posE.some(function (t, a) {
          var d = dims[a], first = d.d * (d.k - 1);
          return t < first || t > first + (d.out - 1) * d.s;
        });
        cls = border ? "pad" : "ins";
      }
    }
    return { src: src, cls: cls, v: src ? at(name, src) : 0 };
  }
  function srcHome(panel, src) {  // where the cell a copy came from is drawn
    if (panel.view !== "padded" || !src) return null;
    return [src[0]].concat(src.slice(1).map(function (v, a) { return v + dims[a].lo; }));
  }

  // ------------------------------------------------------------------ state
  var state = { pass: null, views: {}, sel: {}, hover: null, timer: null };
  var cells = {};   // panel name -> {key: element}
  var marked = [];  // elements with highlight classes
  function key(idx) { return idx.join(","); }
  function view(passId, panel) {
    var id = passId + ":" + panel.name;
    if (!state.views[id]) {
      var geo = geometry(panel);
      var win = function (n, small, big) { return n <= small ? n : big; };
      var lone = nd === 1 || geo.t === 0;
      state.views[id] = {
        tile0: geo.tiles.map(function () { return 0; }),
        tileN: geo.tiles.map(function (n, a) {
          return geo.t === 1 ? win(n, 6, 5) : (a === 0 ? win(n, 6, 4) : win(n, 8, 6));
        }),
        z: 0,
        sp0: geo.sp.map(function () { return 0; }),
        spN: geo.sp.map(function (n, a) {
          if (lone || (geo.t === 0)) return win(n, 40, 32);
          if (nd === 3 && a === 0) return 1;
          return win(n, 16, 12);
        }),
        geo: geo,
      };
    }
    return state.views[id];
  }

  // ------------------------------------------------------------------ drawing
  function esc(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;"); }
  function num(v) { return v < 0 ? "\u2212" + (-v) : String(v); }
  function nameOf(name, idx) { return L[name] + "[" + idx.join(", ") + "]"; }
  function panelTitle(panel) {
    var geo = view(state.pass, panel).geo, label = L[panel.name];
    var shape = geo.full.join("\u00d7");
    var padded = dims.some(function (d) { return d.lo || d.L !== d.n + d.lo; });
    if (panel.view === "padded" && padded) {
      var pads = dims.map(function (d) { return "(" + d.lo + ", " + (d.L - d.n - d.lo) + ")"; }).join(" ");
      var mode = D.transposed ? "zeros" : D.mode;
      return label + " padded " + pads + " (" + mode + ") \u2192 " + shape;
    }
    if (panel.view === "E") return label + " with the stride's zeros inserted and d\u00b7(k\u22121) zeros around \u2192 " + shape;
    if (panel.view === "flip") return label + " flipped (rotated 180\u00b0) " + shape;
    return label + " " + shape;
  }
  function axisLabel(panel, a, p) {  // a: spatial axis, p: display position
    var d = dims[a];
    if (!d || tileAxes(panel.name) === 0) return String(p);
    if (panel.view === "padded") return String(p - d.lo);
    if (panel.view === "E") { var o = smallAt(d, p); return o === null ? "" : String(o); }
    if (panel.view === "flip") return String(d.k - 1 - p);
    return String(p);
  }
  function tileLabel(panel, t) {
    if (t.length === 0) return "";
    return L[panel.name] + "[" + t.join(", ") + "]";
  }

  function drawPanel(pass, panel, el) {
    var v = view(pass.id, panel), geo = v.geo, sp = geo.sp, out = [];
    // the displayed spatial axes: rows and columns of a tile
    var rowAx = null, colAx = sp.length - 1;
    if (sp.length >= 2 && geo.t > 0) rowAx = sp.length - 2;
    var rows = rowAx === null ? [null] : range(v.spN[rowAx]).map(function (r) { return v.sp0[rowAx] + r; });
    var cols = range(v.spN[colAx]).map(function (c) { return v.sp0[colAx] + c; });
    var tileIdx = product(geo.tiles.map(function (n, a) {
      return range(v.tileN[a]).map(function (i) { return v.tile0[a] + i; });
    }));
    var maxAbs = 1, shownCells = [];
    var lead = nd === 3 && geo.t > 0 ? [v.z] : [];
    tileIdx.forEach(function (t) {
      rows.forEach(function (r) {
        cols.forEach(function (c) {
          var disp = t.concat(lead, r === null ? [] : [r], [c]);
          var s = shown(panel, disp);
          maxAbs = Math.max(maxAbs, Math.abs(s.v));
          shownCells.push([disp, s]);
        });
      });
    });
    var cw = Math.max(20, 7 * (String(maxAbs).length + 1) + 4);
    out.push('<div class="cgx-ptitle">' + esc(panelTitle(panel)) + "</div>");
    out.push(navHtml(panel, v));
    var layoutCols = geo.t === 2 ? v.tileN[1] : 0;
    out.push('<div class="cgx-tiles' + (geo.t === 2 ? " cgx-mat" : (nd === 1 ? " cgx-col" : "")) + '"' +
      (layoutCols ? ' style="grid-template-columns:repeat(' + layoutCols + ',auto)"' : "") + ">");
    var n = 0, per = rows.length * cols.length;
    tileIdx.forEach(function (t) {
      out.push('<div class="cgx-tile"><div class="cgx-tlabel">' + esc(tileLabel(panel, t)) + "</div>");
      out.push('<div class="cgx-grid" style="grid-template-columns:auto repeat(' + cols.length + "," + cw + 'px)">');
      out.push("<b></b>");
      cols.forEach(function (c) { out.push("<b>" + esc(axisLabel(panel, colAx, c)) + "</b>"); });
      rows.forEach(function (r) {
        out.push("<b>" + (r === null ? "" : esc(axisLabel(panel, rowAx, r))) + "</b>");
        cols.forEach(function () {
          var item = shownCells[n++], s = item[1];
          out.push('<i data-i="' + key(item[0]) + '"' + (s.cls ? ' class="' + s.cls + '"' : "") + ">" + num(s.v) + "</i>");
        });
      });
      out.push("</div></div>");
    });
    if (n !== tileIdx.length * per) console.error("cgx: cell count");
    out.push("</div>");
    el.innerHTML = out.join("");
    var map = {};
    el.querySelectorAll("i[data-i]").forEach(function (c) { map[c.getAttribute("data-i")] = c; });
    cells[panel.name] = map;
    drawMinimap(panel, v, el);
  }

  function navHtml(panel, v) {
    var geo = v.geo, parts = [];
    geo.tiles.forEach(function (n, a) {
      if (v.tileN[a] >= n) return;
      var what = geo.t === 1 ? "channels" : (a === 0 ? "rows" : "columns");
      parts.push(navItem("t" + a, what + " " + v.tile0[a] + "\u2013" + (v.tile0[a] + v.tileN[a] - 1) + " of " + n));
    });
    geo.sp.forEach(function (n, a) {
      if (nd === 3 && geo.t > 0 && a === 0) {
        parts.push('<label class="cgx-depth">depth <input type="range" min="0" max="' + (n - 1) +
          '" value="' + v.z + '" data-nav="z"> <span class="cgx-z">' + v.z + " of 0\u2013" + (n - 1) + "</span>" +
          ' <span class="cgx-zhl"></span></label>');
        return;
      }
      if (v.spN[a] >= n) return;
      var names = geo.sp.length - (nd === 3 && geo.t > 0 ? 1 : 0) === 1 ? ["positions"] : ["rows", "columns"];
      var nm = names[a - (nd === 3 && geo.t > 0 ? 1 : 0)] || "positions";
      parts.push(navItem("s" + a, nm + " " + v.sp0[a] + "\u2013" + (v.sp0[a] + v.spN[a] - 1) + " of " + n));
    });
    var mini = needMinimap(v) ? '<div class="cgx-mini" title="the window on the whole map: click or drag to move it"><div class="cgx-mwin"></div><div class="cgx-mhl"></div></div>' : "";
    if (!parts.length && !mini) return "";
    return '<div class="cgx-nav">' + mini + parts.join("") + "</div>";
  }
  function navItem(ax, text) {
    return '<span class="cgx-navitem"><button data-nav="' + ax + '" data-step="-1" title="move the window back">\u25c0</button>' +
      '<span>' + text + '</span><button data-nav="' + ax + '" data-step="1" title="move the window on">\u25b6</button></span>';
  }
  function needMinimap(v) {
    var sp = v.geo.sp, k = sp.length;
    return v.geo.t > 0 && k >= 2 && (v.spN[k - 1] < sp[k - 1] || v.spN[k - 2] < sp[k - 2]);
  }
  function drawMinimap(panel, v, el) {
    var m = el.querySelector(".cgx-mini");
    if (!m) return;
    var sp = v.geo.sp, k = sp.length, H = sp[k - 2], W = sp[k - 1];
    var box = m.querySelector(".cgx-mwin");
    box.style.left = (100 * v.sp0[k - 1] / W) + "%";
    box.style.width = (100 * v.spN[k - 1] / W) + "%";
    box.style.top = (100 * v.sp0[k - 2] / H) + "%";
    box.style.height = (100 * v.spN[k - 2] / H) + "%";
    var hl = m.querySelector(".cgx-mhl"), bb = v.hlBox;
    if (bb) {
      hl.style.display = "block";
      hl.style.left = (100 * bb[k - 1][0] / W) + "%";
      hl.style.width = (100 * (bb[k - 1][1] - bb[k - 1][0] + 1) / W) + "%";
      hl.style.top = (100 * bb[k - 2][0] / H) + "%";
      hl.style.height = (100 * (bb[k - 2][1] - bb[k - 2][0] + 1) / H) + "%";
    } else hl.style.display = "none";
    var move = function (ev) {
      var r = m.getBoundingClientRect();
      var fx = (ev.clientX - r.left) / r.width, fy = (ev.clientY - r.top) / r.height;
      v.sp0[k - 1] = clamp(Math.round(fx * W - v.spN[k - 1] / 2), 0, W - v.spN[k - 1]);
      v.sp0[k - 2] = clamp(Math.round(fy * H - v.spN[k - 2] / 2), 0, H - v.spN[k - 2]);
      redraw(panel);
    };
    m.onpointerdown = function (ev) {
      ev.preventDefault();
      move(ev);
      var up = function () { document.removeEventListener("pointermove", move); document.removeEventListener("pointerup", up); };
      document.addEventListener("pointermove", move);
      document.addEventListener("pointerup", up);
    };
  }
  function clamp(x, lo, hi) { return Math.max(lo, Math.min(hi, x)); }

  // ------------------------------------------------------------------ page
  function build() {
    var tabs = D.passes.map(function (p) {
      return '<button class="cgx-tab" data-tab="' + p.id + '">' + esc(p.tab) + "</button>";
    }).join("");
    root.innerHTML =
      '<div class="cgx-head"><div class="cgx-h1">convgrad explorer \u2014 ' + esc(D.head) + "</div>" +
      '<div class="cgx-opts">' + esc(D.options) + "</div>" +
      '<div class="cgx-note">Point at any cell of a result (O, dE/dX, dE/dF, dE/db) to see every cell that makes it and its sum ' +
      "written out; click to keep it, arrow keys to move it. Worked example: random integers " + num(D.range[0]) + "\u2026" + num(D.range[1]) +
      " (seed " + D.seed + "), every result computed by convgrad. " + esc(D.sample_note) + "</div></div>" +
      '<div class="cgx-bar"><span class="cgx-tabs">' + tabs + "</span>" +
      '<span class="cgx-step"><button data-stepbtn="first" title="first cell">first</button><button data-stepbtn="prev" title="previous cell">\u25c0 step</button>' +
      '<button data-stepbtn="next" title="next cell">step \u25b6</button><button data-stepbtn="play" title="slide the window across the map">\u25b6 play</button></span></div>' +
      '<div class="cgx-text"></div><div class="cgx-panels"></div><div class="cgx-sum"></div><div class="cgx-info">&nbsp;</div>' +
      '<div class="cgx-legend"><span><i class="sel"></i>selected cell</span><span><i class="hl"></i>cells it is made of</span>' +
      '<span><i class="pad"></i>zero padding</span><span><i class="copy"></i>copied by a padding mode (reflect, replicate, circular)</span>' +
      '<span><i class="from"></i>where a copy comes from</span><span><i class="ins"></i>zero inserted by the stride</span>' +
      '<span><i class="unread"></i>never read (the stride does not reach it)</span></div>' +
      '<details class="cgx-report"><summary>the full report of <code>convgrad explain</code></summary><pre>' + esc(D.report || "") + "</pre></details>";
    root.querySelector(".cgx-tabs").addEventListener("click", function (ev) {
      var b = ev.target.closest("[data-tab]");
      if (b) { stop(); showPass(b.getAttribute("data-tab")); }
    });
    root.querySelector(".cgx-step").addEventListener("click", function (ev) {
      var b = ev.target.closest("[data-stepbtn]");
      if (b) step(b.getAttribute("data-stepbtn"));
    });
    var panels = root.querySelector(".cgx-panels");
    panels.addEventListener("mouseover", onOver);
    panels.addEventListener("mouseleave", function () { state.hover = null; refresh(); info(""); });
    panels.addEventListener("click", onClick);
    panels.addEventListener("input", onInput);
    root.tabIndex = 0;
    root.addEventListener("keydown", onKey);
  }

  function showPass(id) {
    var pass = passById(id);
    state.pass = id;
    state.hover = null;
    root.querySelectorAll("[data-tab]").forEach(function (b) { b.classList.toggle("on", b.getAttribute("data-tab") === id); });
    root.querySelector(".cgx-text").textContent = pass.text;
    var html = pass.panels.map(function (p) {
      return '<div class="cgx-panel cgx-' + p.role + '" data-p="' + p.name + '"></div>';
    }).join("");
    var box = root.querySelector(".cgx-panels");
    box.innerHTML = html;
    cells = {};
    marked = [];
    pass.panels.forEach(function (p) { drawPanel(pass, p, box.querySelector('[data-p="' + p.name + '"]')); });
    if (!state.sel[id]) {
      var first = pass.panels.filter(function (p) { return p.role === "out"; })[0];
      var t = tileAxes(first.name);
      state.sel[id] = { name: first.name, index: A[first.name].shape.map(function (n, a) {
        return a < t ? 0 : Math.floor((n - 1) / 2);
      }) };
    }
    refresh(true);
  }
  function redraw(panel) {
    var pass = passById(state.pass);
    drawPanel(pass, panel, root.querySelector('.cgx-panels [data-p="' + panel.name + '"]'));
    refresh(false);
  }

  /* highlight the current cell (hovered, else selected) and its terms; follow = move windows */
  function refresh(follow) {
    var pass = passById(state.pass), cur = state.hover || state.sel[state.pass];
    marked.forEach(function (el) { el.classList.remove("sel", "hl", "from"); });
    marked = [];
    if (!cur) return;
    var terms = contributions(state.pass, cur.name, cur.index);
    var want = {};  // panel -> {key: class}
    var addTo = function (name, idx, cls) {
      (want[name] = want[name] || {})[key(idx)] = cls;
    };
    terms.forEach(function (term) {
      term.forEach(function (ref) {
        if (!ref) return;
        addTo(ref[0], ref[1], "hl");
        var panel = panelOf(pass, ref[0]);
        var home = srcHome(panel, ref[2]);
        if (home && key(home) !== key(ref[1]) && !(want[ref[0]][key(home)] === "hl")) addTo(ref[0], home, "from");
      });
    });
    addTo(cur.name, cur.index, "sel");
    pass.panels.forEach(function (panel) {
      var w = want[panel.name], v = view(pass.id, panel);
      v.hlBox = null;
      if (!w) { drawMinimapOnly(panel, v); return; }
      var ks = Object.keys(w).filter(function (k2) { return w[k2] !== "from"; });
      var box = bbox(ks);
      v.hlBox = box.slice(v.geo.t);
      if (follow && followWindow(v, box, panel.name === cur.name)) {
        drawPanel(pass, panel, root.querySelector('.cgx-panels [data-p="' + panel.name + '"]'));
      } else drawMinimapOnly(panel, v);
      var map = cells[panel.name] || {};
      Object.keys(w).forEach(function (k2) {
        var el = map[k2];
        if (el) { el.classList.add(w[k2]); marked.push(el); }
      });
      var zl = root.querySelector('.cgx-panels [data-p="' + panel.name + '"] .cgx-zhl');
      if (zl && nd === 3) {
        var zs = {};
        ks.forEach(function (k2) { zs[k2.split(",")[v.geo.t]] = 1; });
        zl.textContent = "highlighted at depth " + Object.keys(zs).map(Number).sort(function (a, b) { return a - b; }).join(", ");
      }
    });
    writeSum(cur, terms);
  }
  function drawMinimapOnly(panel, v) {
    var el = root.querySelector('.cgx-panels [data-p="' + panel.name + '"]');
    if (el) drawMinimap(panel, v, el);
  }
  function bbox(keys) {
    var box = null;
    keys.forEach(function (k2) {
      var idx = k2.split(",").map(Number);
      if (!box) box = idx.map(function (x) { return [x, x]; });
      else idx.forEach(function (x, a) { box[a][0] = Math.min(box[a][0], x); box[a][1] = Math.max(box[a][1], x); });
    });
    return box;
  }
  /* move a panel's window so that the highlighted box is in view; true when it moved */
  function followWindow(v, box, isResult) {
    var moved = false, geo = v.geo;
    var fit = function (lo, hi, start, n, size) {
      if (lo >= start && hi < start + n) return start;
      var s = hi - lo + 1 <= n ? lo - Math.floor((n - (hi - lo + 1)) / 2) : lo;
      return clamp(s, 0, Math.max(0, size - n));
    };
    geo.tiles.forEach(function (n, a) {
      var s = fit(box[a][0], box[a][1], v.tile0[a], v.tileN[a], n);
      if (s !== v.tile0[a]) { v.tile0[a] = s; moved = true; }
    });
    geo.sp.forEach(function (n, a) {
      var b = box[geo.t + a];
      if (nd === 3 && geo.t > 0 && a === 0) {
        if (v.z < b[0] || v.z > b[1] || isResult) {
          var z = isResult ? b[0] : (v.z < b[0] ? b[0] : (v.z > b[1] ? b[1] : v.z));
          if (z !== v.z) { v.z = z; moved = true; }
        }
        return;
      }
      var s = fit(b[0], b[1], v.sp0[a], v.spN[a], n);
      if (s !== v.sp0[a]) { v.sp0[a] = s; moved = true; }
    });
    return moved;
  }

  // ------------------------------------------------------------------ the written sum
  function refText(ref, pass) {
    if (!ref) return "1";
    var panel = panelOf(pass, ref[0]);
    if (!ref[2]) {
      var s = shown(panel, ref[1]);
      return '<span class="cgx-z0">0<sub>' + (s.cls.indexOf("ins") >= 0 ? "stride" : "pad") + "</sub></span>";
    }
    var home = srcHome(panel, ref[2]), copy = home && key(home) !== key(ref[1]);
    var t = esc(nameOf(ref[0], ref[2]));
    if (copy) {
      var pos = ref[1].slice(1).map(function (p, a) { return p - dims[a].lo; });
      return '<span class="cgx-copy" title="' + D.mode + " padding at " + esc(L[ref[0]]) + "[" + ref[1][0] + ", " + pos.join(", ") + "] copies it" + '">' + t + "\u21a9</span>";
    }
    return t;
  }
  function writeSum(cur, terms) {
    var pass = passById(state.pass), box = root.querySelector(".cgx-sum");
    var total = 0, sym = [], zeros = 0, shownN = 0;
    terms.forEach(function (term) { total += termValue(term); });
    // terms with a zero of the padding or the stride go last
    var order = terms.slice().sort(function (a, b) {
      var za = (a[0] && !a[0][2]) || (a[1] && !a[1][2]) ? 1 : 0, zb = (b[0] && !b[0][2]) || (b[1] && !b[1][2]) ? 1 : 0;
      return za - zb;
    });
    order.forEach(function (term) {
      var isZero = (term[0] && !term[0][2]) || (term[1] && !term[1][2]);
      if (isZero) zeros++;
      if (shownN >= MAX_TERMS_SHOWN) return;
      shownN++;
      var parts = term.filter(function (r) { return r; });
      sym.push('<span class="cgx-term' + (isZero ? " cgx-zt" : "") + '"><span>' +
        parts.map(function (r) { return refText(r, pass); }).join("\u00b7") + "</span><span>" +
        parts.map(function (r) {
          var v = r[2] ? at(r[0], r[2]) : 0;
          return v < 0 ? "(" + num(v) + ")" : String(v);
        }).join("\u00b7") + "</span></span>");
    });
    var more = terms.length - shownN;
    var lib = at(cur.name, cur.index), same = lib === total;
    if (!same) console.error("cgx: the sum of the terms differs from convgrad's result", cur.name, cur.index, total, lib);
    var tail = more > 0 ? ' <span class="cgx-more">+ \u2026 ' + more + " more terms</span>" : "";
    box.innerHTML =
      '<div class="cgx-eq"><b class="cgx-lhs">' + esc(nameOf(cur.name, cur.index)) + '</b> <span class="cgx-op">=</span> ' +
      sym.join('<span class="cgx-op">+</span>') + tail + "</div>" +
      '<div class="cgx-eq cgx-total">= <b data-total="' + total + '">' + num(total) + "</b> " +
      (same ? '<span class="cgx-ok">\u2713 the value convgrad computed</span>' : '<span class="cgx-bad">\u2717 convgrad computed ' + num(lib) + "</span>") + "</div>" +
      '<div class="cgx-count">' + terms.length + " term" + (terms.length === 1 ? "" : "s") +
      (zeros ? ", " + zeros + " of them with a zero of the padding or of the stride (gray)" : "") + "</div>";
  }

  // ------------------------------------------------------------------ events
  function cellAt(target) {
    var c = target.closest && target.closest("i[data-i]");
    if (!c) return null;
    var p = c.closest("[data-p]");
    return { name: p.getAttribute("data-p"), index: c.getAttribute("data-i").split(",").map(Number), el: c };
  }
  function isResult(name) { return panelOf(passById(state.pass), name).role === "out"; }
  function onOver(ev) {
    var c = cellAt(ev.target);
    if (!c) return;
    if (isResult(c.name)) {
      var h = state.hover;
      if (!h || h.name !== c.name || key(h.index) !== key(c.index)) {
        state.hover = { name: c.name, index: c.index };
        refresh(false);
      }
      info(nameOf(c.name, c.index) + " = " + num(at(c.name, c.index)));
    } else describe(c);
  }
  function describe(c) {
    var panel = panelOf(passById(state.pass), c.name), s = shown(panel, c.index);
    var where = L[c.name] + " at [" + c.index.join(", ") + "]";
    if (panel.view === "padded") {
      var pos = c.index.slice(1).map(function (p, a) { return p - dims[a].lo; });
      where = L[c.name] + "[" + [c.index[0]].concat(pos).join(", ") + "]";
    }
    var text;
    if (!s.src) text = where + ": " + (s.cls.indexOf("ins") >= 0 ? "a zero inserted by the stride" : "zero padding") + " = 0";
    else if (s.cls.indexOf("copy") >= 0) text = where + ": " + D.mode + " padding, a copy of " + nameOf(c.name, s.src) + " = " + num(s.v);
    else text = nameOf(c.name, s.src) + " = " + num(s.v) + (panel.view === "flip" ? " (drawn flipped)" : "");
    if (s.cls.indexOf("unread") >= 0) text += "; no window of the stride reaches it";
    info(text);
  }
  function info(t) { root.querySelector(".cgx-info").textContent = t || "\u00a0"; }
  function onClick(ev) {
    var b = ev.target.closest("button[data-nav]");
    if (b) { nav(b); return; }
    var c = cellAt(ev.target);
    if (c && isResult(c.name)) {
      stop();
      state.sel[state.pass] = { name: c.name, index: c.index };
      state.hover = null;
      refresh(true);
    }
  }
  function nav(b) {
    var p = b.closest("[data-p]"), pass = passById(state.pass), panel = panelOf(pass, p.getAttribute("data-p"));
    var v = view(pass.id, panel), ax = b.getAttribute("data-nav"), d = Number(b.getAttribute("data-step"));
    var a = Number(ax.slice(1));
    if (ax[0] === "t") {
      v.tile0[a] = clamp(v.tile0[a] + d * v.tileN[a], 0, v.geo.tiles[a] - v.tileN[a]);
    } else {
      var stepN = Math.max(1, Math.floor(v.spN[a] / 2));
      v.sp0[a] = clamp(v.sp0[a] + d * stepN, 0, v.geo.sp[a] - v.spN[a]);
    }
    redraw(panel);
  }
  function onInput(ev) {
    var r = ev.target;
    if (r.getAttribute("data-nav") !== "z") return;
    var p = r.closest("[data-p]"), pass = passById(state.pass), panel = panelOf(pass, p.getAttribute("data-p"));
    view(pass.id, panel).z = Number(r.value);
    redraw(panel);
  }
  function onKey(ev) {
    var moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[ev.key];
    if (!moves) return;
    var sel = state.sel[state.pass];
    if (!sel) return;
    ev.preventDefault();
    var shape = A[sel.name].shape, idx = sel.index.slice(), last = idx.length - 1;
    if (moves[0]) idx[last] = clamp(idx[last] + moves[0], 0, shape[last] - 1);
    if (moves[1] && last >= 2) idx[last - 1] = clamp(idx[last - 1] + moves[1], 0, shape[last - 1] - 1);
    state.sel[state.pass] = { name: sel.name, index: idx };
    refresh(true);
  }

  // ------------------------------------------------------------------ step-through
  /* the cells of the selected result's map (one channel, or one filter tile), in order */
  function stepCells(sel) {
    var lead = sel.name === "db" ? 0 : tileAxes(sel.name);
    var shape = A[sel.name].shape;
    if (sel.name === "db") return range(shape[0]).map(function (k) { return [k]; });
    return product(shape.slice(lead).map(range)).map(function (pos) { return sel.index.slice(0, lead).concat(pos); });
  }
  function step(what) {
    if (what === "play") {
      if (state.timer) { stop(); return; }
      var btn = root.querySelector('[data-stepbtn="play"]');
      btn.textContent = "pause";
      var list0 = stepCells(state.sel[state.pass]), i0 = indexIn(list0, state.sel[state.pass].index);
      if (i0 === list0.length - 1) move(list0, 0);
      state.timer = setInterval(function () {
        var list = stepCells(state.sel[state.pass]), i = indexIn(list, state.sel[state.pass].index);
        if (i + 1 >= list.length) { stop(); return; }
        move(list, i + 1);
      }, 700);
      return;
    }
    stop();
    var sel = state.sel[state.pass], list = stepCells(sel), i = indexIn(list, sel.index);
    if (what === "first") move(list, 0);
    else if (what === "prev") move(list, Math.max(0, i - 1));
    else move(list, Math.min(list.length - 1, i + 1));
  }
  function indexIn(list, idx) {
    var k2 = key(idx);
    for (var i = 0; i < list.length; i++) if (key(list[i]) === k2) return i;
    return 0;
  }
  function move(list, i) {
    var sel = state.sel[state.pass];
    state.sel[state.pass] = { name: sel.name, index: list[i] };
    state.hover = null;
    refresh(true);
  }
  function stop() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
    var btn = root.querySelector('[data-stepbtn="play"]');
    if (btn) btn.textContent = "\u25b6 play";
  }

  // ------------------------------------------------------------------ start
  build();
  var start = (location.hash || "").slice(1);
  showPass(passById(start) ? start : D.passes[0].id);
  // for tests and the curious: the same expansion the page draws
  wrap.cgx = {
    contributions: contributions,
    select: function (passId, name, index) {
      if (state.pass !== passId) showPass(passId);
      stop();
      state.sel[passId] = { name: name, index: index };
      state.hover = null;
      refresh(true);
    },
    shown: function (passId, name, disp) { return shown(panelOf(passById(passId), name), disp); },
  };
  wrap.dataset.ready = "2";
})();
