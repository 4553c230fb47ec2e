// The live status page: polls status.json, redraws the table and the chart.
// Plain JavaScript, no dependencies: the page must work with no internet.
(function () {
  "use strict";
  var PERIOD = 1000;

  function $(id) { return document.getElementById(id); }

  function duration(seconds) {
    seconds = Math.floor(seconds);
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds / 3600) % 24,
        m = Math.floor(seconds / 60) % 60, s = seconds % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + s + "s";
    return s + "s";
  }

  function bytes(n) {
    if (!n) return "\u2013";
    var units = ["B", "KiB", "MiB", "GiB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + " " + units[i];
  }

  function ping(seconds) {
    if (seconds === null || seconds === undefined) return "\u2013";
    return (seconds * 1000).toFixed(1) + " ms";
  }

  // The app's own series the app named for the page (statusSeries).
  function appFigures(figures) {
    if (!figures) return "\u2013";
    return Object.keys(figures).map(function (name) {
      return name + " " + figures[name];
    }).join(", ");
  }

  function cell(row, text, cls) {
    var td = document.createElement("td");
    if (cls) {
      var span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      td.appendChild(span);
    } else {
      td.textContent = text;
    }
    row.appendChild(td);
  }

  // One worker's buttons: restart (replaced gracefully), drain (finishes
  // its requests, one worker less), kill (SIGKILL, replaced).
  function workerActions(w) {
    var td = document.createElement("td");
    td.className = "worker-actions";
    [["restart", "restart"], ["drain", "drain"], ["kill", "kill"]].forEach(function (pair) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = pair[1];
      button.dataset.op = pair[0] + "?worker=" + encodeURIComponent(w.id);
      button.title = pair[0] + " worker " + w.id;
      td.appendChild(button);
    });
    return td;
  }

  function renderTable(workers) {
    var body = document.querySelector("#workers tbody");
    var rows = document.createDocumentFragment();
    workers.forEach(function (w) {
      var tr = document.createElement("tr");
      tr.className = "worker";
      tr.dataset.id = w.id;
      tr.dataset.pid = w.pid;
      tr.dataset.state = w.state;
      cell(tr, w.id);
      cell(tr, w.pid);
      cell(tr, w.state, "state state-" + w.state);
      cell(tr, duration(w.uptime));
      cell(tr, w.restarts);
      cell(tr, w.open);
      cell(tr, w.served);
      cell(tr, w.dispatched);
      cell(tr, bytes(w.rss));
      cell(tr, ping(w.ping));
      cell(tr, appFigures(w.app));
      tr.appendChild(workerActions(w));
      rows.appendChild(tr);
    });
    body.replaceChildren(rows);
  }

  function renderChart(history) {
    var canvas = $("chart"), ctx = canvas.getContext("2d");
    var ratio = window.devicePixelRatio || 1;
    var width = canvas.clientWidth || canvas.width, height = canvas.clientHeight || canvas.height;
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    var rates = history.rates, slots = Math.max(rates.length, 60);
    var top = Math.max.apply(null, rates.concat([1]));
    var scale = Math.pow(10, Math.floor(Math.log10(top)));
    top = Math.ceil(top / scale) * scale;
    var left = 48, bottom = height - 20, plotH = bottom - 10, plotW = width - left - 10;
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#6b7385";
    ctx.strokeStyle = "#dde1ea";
    ctx.lineWidth = 1;
    for (var g = 0; g <= 4; g++) {
      var y = bottom - plotH * g / 4;
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + plotW, y); ctx.stroke();
      ctx.fillText(String(Math.round(top * g / 4 * 10) / 10), 4, y + 4);
    }
    ctx.fillText("-" + duration(slots * history.interval), left, height - 4);
    ctx.fillText("now", left + plotW - 22, height - 4);
    if (!rates.length) return;
    var step = plotW / (slots - 1), start = left + plotW - step * (rates.length - 1);
    ctx.beginPath();
    rates.forEach(function (r, i) {
      var x = start + i * step, y = bottom - plotH * r / top;
      if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    });
    ctx.strokeStyle = "#2f6fd6";
    ctx.lineWidth = 2;
    ctx.stroke();
    ctx.lineTo(start + (rates.length - 1) * step, bottom);
    ctx.lineTo(start, bottom);
    ctx.closePath();
    ctx.fillStyle = "rgba(47, 111, 214, 0.12)";
    ctx.fill();
  }

  function render(status) {
    var c = status.cluster, m = status.master;
    var restarts = Object.keys(c.restarts).filter(function (k) { return c.restarts[k]; })
      .map(function (k) { return k + " " + c.restarts[k]; });
    $("summary").textContent = "master pid " + m.pid + " \u00b7 listening on " +
      m.listening.join(", ") + " \u00b7 " + c.target + " workers wanted";
    $("ready").textContent = c.states.ready + " / " + c.target;
    $("rate").textContent = c.rate.toFixed(1);
    $("accepted").textContent = c.accepted;
    $("failures").textContent = c.redispatched + c.dropped;
    $("failures").title = c.redispatched + " redispatched, " + c.dropped + " dropped";
    $("restarts").textContent = restarts.length ? restarts.join(", ") : "0";
    $("window").textContent = "(last " + duration(Math.max(status.history.rates.length, 60) * status.history.interval) + ")";
    renderTable(status.workers);
    renderChart(status.history);
    document.body.dataset.updated = status.time;
  }

  // The control token arrives once in the URL's fragment (/#token=...),
  // which the browser never sends to the server; it is kept for this tab
  // only (sessionStorage is per origin, port included) and removed from
  // the address bar.  No cookie: cookies go to every port of the host.
  var match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem("twisted-cluster-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }

  function headers(extra) {
    var token = sessionStorage.getItem("twisted-cluster-token");
    if (token) extra.Authorization = "Bearer " + token;
    return extra;
  }

  function refresh() {
    fetch("status.json", {cache: "no-store", headers: headers({})})
      .then(function (r) {
        if (r.status === 401) throw new Error("HTTP 401: open this page as /#token=TOKEN, with the token from the master's token file");
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (status) { $("error").hidden = true; render(status); })
      .catch(function (e) { $("error").hidden = false; $("error").textContent = "cannot reach the master: " + e.message; })
      .then(function () { setTimeout(refresh, PERIOD); });
  }

  // Every operation button, the rows' included (they are redrawn every
  // second): one listener on the page.
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-op]") : null;
    if (!button) return;
    var op = button.dataset.op;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    fetch(op, {method: "POST", headers: headers({"X-Cluster-Control": "1"})})
      .then(function (r) { return r.json(); })
      .then(function (answer) { $("opresult").textContent = answer.error ? answer.error : op + ": accepted"; });
  });

  refresh();
})();
