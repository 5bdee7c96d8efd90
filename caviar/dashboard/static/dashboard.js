// caviar dashboard: each page polls the JSON API every 2 s and redraws. Text goes in with
// textContent only (names, ids and values come from files, never trusted as HTML).
"use strict";
var caviar = (function () {
  var POLL_MS = 2000;
  var COLORS = { completed: "#2e7d32", early_stopped: "#6a1b9a", running: "#1565c0",
    unfinished: "#ef6c00", paused: "#90a4ae", error: "#c62828", diverged: "#c62828" };

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "-";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(4);
    return String(v);
  }
  function duration(s) {
    if (s === null || s === undefined) return "-";
    s = Math.round(s);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + r + "s";
  }
  function when(t) { return t ? new Date(t * 1000).toLocaleString() : "-"; }
  function counts(c) {
    return Object.keys(c || {}).sort().map(function (k) { return c[k] + " " + k; }).join(", ");
  }
  function fill(table, columns, rows) {
    var head = table.querySelector("thead"), body = table.querySelector("tbody");
    if (columns) {
      head.textContent = "";
      var tr = el("tr");
      columns.forEach(function (c) { tr.appendChild(el("th", c)); });
      head.appendChild(tr);
    }
    body.textContent = "";
    rows.forEach(function (row) {
      var tr = el("tr");
      row.forEach(function (cell) {
        if (cell instanceof Node) { var td = el("td"); td.appendChild(cell); tr.appendChild(td); }
        else tr.appendChild(el("td", fmt(cell)));
      });
      body.appendChild(tr);
    });
  }
  function poll(url, then) {
    var last = null;  // the ETag drawn last: a sweep that did not change is not redrawn
    function tick() {
      fetch(url, { credentials: "same-origin" }).then(function (r) {
        if (!r.ok) throw new Error(url + ": " + r.status);
        var etag = r.headers.get("ETag");
        if (etag && etag === last) return;
        return r.json().then(function (d) { then(d); last = etag; });
      }).catch(function (e) { console.log(e); }).finally(function () {
        setTimeout(tick, POLL_MS);
      });
    }
    tick();
  }
  function nameFromPath() {
    return decodeURIComponent(location.pathname.split("/").pop());
  }
  function sweepLink(name) {
    var a = el("a", name);
    a.href = "/sweep/" + encodeURIComponent(name);
    return a;
  }

  function index() {
    poll("/api/sweeps", function (d) {
      document.getElementById("root").textContent = "storage root: " + d.root;
      fill(document.getElementById("sweeps"), null, d.sweeps.map(function (s) {
        var best = s.best ? fmt(s.best.value) + " (" + s.best.trial_id + ")" : "-";
        return [sweepLink(s.name), el("span", s.status, "status " + s.status),
          s.trials !== undefined ? s.trials + "/" + s.num_samples : "-",
          counts(s.counts), best, when(s.started), duration(s.duration_s)];
      }));
      ["ca", "cb"].forEach(function (id, i) {
        var sel = document.getElementById(id), had = sel.value;
        if (sel.options.length === d.sweeps.length) return;
        sel.textContent = "";
        d.sweeps.forEach(function (s) { sel.appendChild(el("option", s.name)); });
        if (had) sel.value = had; else if (d.sweeps[i]) sel.value = d.sweeps[i].name;
      });
    });
  }

  // A choice's values in order: numbers by value, other values as they sort.
  function ordered(values) {
    var unique = Array.from(new Set(values));
    var numeric = unique.every(function (v) { return v !== null && v !== "" && !isNaN(Number(v)); });
    return unique.sort(numeric ? function (a, b) { return Number(a) - Number(b); } : undefined);
  }

  var drawn = {};
  function plot(id, traces, layout) {
    if (typeof Plotly === "undefined") return;
    layout = Object.assign({ margin: { t: 30, r: 10 }, showlegend: true }, layout || {});
    Plotly.react(id, traces, layout, { displaylogo: false, responsive: true });
    drawn[id] = true;
  }

  var importanceFor = null;
  function importance(url) {
    var note = document.getElementById("importance-note");
    note.textContent = "importance: computing ...";
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); })
      .then(function (d) {
        var div = document.getElementById("importance");
        if (!d.importance) { note.textContent = "importance: " + d.reason; return; }
        note.textContent = "permutation importance of a random forest fitted on the ranked " +
          "trials (caviar.analysis.importance)";
        div.hidden = false;
        var rows = d.importance.slice().reverse();
        plot("importance", [{ type: "bar", orientation: "h",
          x: rows.map(function (r) { return r.value; }),
          y: rows.map(function (r) { return r.param; }) }],
          { showlegend: false, margin: { t: 30, l: 120 }, xaxis: { title: { text: "importance" } } });
      });
  }

  function sweep() {
    var name = nameFromPath(), api = "/api/sweep/" + encodeURIComponent(name);
    document.title = "caviar: " + name;
    document.getElementById("title").textContent = name;
    var stop = document.getElementById("stop");
    stop.onclick = function () {
      if (!confirm("Stop sweep " + name + "? Running trials are kept as unfinished; " +
        "`caviar resume` continues them.")) return;
      fetch(api + "/stop", { method: "POST", credentials: "same-origin",
        headers: { "X-Caviar": "1" } }).then(function (r) { return r.json(); })
        .then(function (d) {
          document.getElementById("note").textContent = d.stopped
            ? "stop requested (" + d.how + ")" : "not stopped: " + d.reason;
        });
    };
    poll(api, function (d) {
      var st = document.getElementById("status");
      st.textContent = d.status; st.className = "status " + d.status;
      stop.hidden = d.status !== "running";
      document.getElementById("summary").textContent = d.trials + " of " + d.num_samples +
        " trials (" + counts(d.counts) + "); " + d.modes[0] + " " + d.metric + "; best " +
        (d.best ? fmt(d.best.value) + " (" + d.best.trial_id + ")" : "-") +
        "; started " + when(d.started) + ", " + duration(d.duration_s);
      var p = d.progress;
      document.getElementById("progress").textContent = p.done + "/" + p.total + " done, " +
        p.running.length + " running, " + p.stopped_early + " stopped early" +
        (p.eta_s !== null ? ", ETA " + duration(p.eta_s) : "");
      document.getElementById("running").hidden = !p.running.length;
      fill(document.getElementById("running"), null, p.running.map(function (r) {
        return [r.trial_id, r.epoch + "/" + d.max_epochs];
      }));
      var lb = d.leaderboard;
      fill(document.getElementById("leaderboard"), lb.columns, lb.rows.map(function (row) {
        return row.map(function (v, i) {
          return lb.columns[i] === "status" ? el("span", v, v) : v;
        });
      }));
      plot("curves", d.curves.groups.map(function (g) {
        return { x: g.x, y: g.y, text: g.text, name: g.name, mode: "lines+markers",
          type: "scatter", connectgaps: false, hovertemplate: "%{text}: %{y}<extra></extra>",
          line: g.best ? { color: "#000", width: 3 } : { color: COLORS[g.name] || "#888", width: 1 },
          marker: { size: g.best ? 5 : 3 }, opacity: g.best ? 1 : 0.6 };
      }), { xaxis: { title: { text: "epoch" } }, yaxis: { title: { text: d.curves.metric } } });
      var s = d.stopping;
      document.getElementById("rungs").textContent = "scheduler " + s.scheduler +
        (s.rungs.length ? "; rungs at epochs " + s.rungs.join(", ") : "; no rungs");
      fill(document.getElementById("reached"), null, s.reached.map(function (r) {
        return [r.epoch, r.trials];
      }));
      var audit = document.getElementById("audit");
      if (s.audit) fill(audit, s.audit.columns, s.audit.rows);
      var box = document.getElementById("effects");
      d.effects.forEach(function (e) {
        var id = "effect-" + e.param.replace(/[^A-Za-z0-9_-]/g, "_");
        if (!document.getElementById(id)) { var div = el("div", null, "effect"); div.id = id; box.appendChild(div); }
        plot(id, [{ x: e.x, y: e.y, text: e.text, mode: "markers", type: "scatter",
          hovertemplate: "%{text}: %{x}, %{y}<extra></extra>", marker: { size: 5 } }],
          { showlegend: false, margin: { t: 30, r: 10 },
            xaxis: { title: { text: e.param }, type: e.log ? "log" : (e.categorical ? "category" : "linear"),
                     categoryorder: "array", categoryarray: ordered(e.x) },
            yaxis: { title: { text: "best " + d.metric } } });
      });
      if (d.status !== "running" && d.status !== "starting" && importanceFor !== d.trials) {
        importanceFor = d.trials;
        importance(api + "/importance");
      }
      var spec = document.getElementById("spec");
      if (spec.textContent !== d.spec) spec.textContent = d.spec;
    });
  }

  function compare() {
    var q = new URLSearchParams(location.search), a = q.get("a"), b = q.get("b");
    poll("/api/compare?a=" + encodeURIComponent(a || "") + "&b=" + encodeURIComponent(b || ""),
      function (d) {
        var A = d.a, B = d.b, ba = A.best || { config: {} }, bb = B.best || { config: {} };
        var keys = Object.keys(ba.config).concat(Object.keys(bb.config))
          .filter(function (k, i, all) { return all.indexOf(k) === i; });
        var rows = [["status", A.status, B.status], ["metric", A.mode + " " + A.metric,
          B.mode + " " + B.metric], ["best trial", ba.trial_id, bb.trial_id],
          ["best value", ba.value, bb.value], ["epochs", ba.epochs, bb.epochs]];
        keys.forEach(function (k) { rows.push([k, ba.config[k], bb.config[k]]); });
        fill(document.getElementById("compare"), ["", A.name, B.name], rows);
        var traces = [];
        [[A, ba], [B, bb]].forEach(function (p) {
          if (p[1].curve) traces.push({ x: p[1].curve.x, y: p[1].curve.y, type: "scatter",
            mode: "lines+markers", name: p[0].name + " " + p[1].trial_id });
        });
        plot("curves", traces, { xaxis: { title: { text: "epoch" } },
          yaxis: { title: { text: A.metric === B.metric ? A.metric : A.metric + " / " + B.metric } } });
      });
  }

  return { index: index, sweep: sweep, compare: compare };
})();
