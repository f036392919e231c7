// modelyard console: the live charts of the overview page (uPlot), refreshed every few seconds.
// Everything else in the console is plain HTML forms; this file only draws what /console/overview/data answers.
(function () {
  "use strict";
  var REFRESH_MS = 5000;
  var COLOURS = ["#0b57d0", "#c4530b", "#137333", "#a50e0e", "#6f42c1", "#00838f", "#8a6d00", "#5f6368"];
  var section = document.querySelector("section.charts[data-feed]");
  if (!section || typeof uPlot === "undefined") { return; }
  var feed = section.getAttribute("data-feed");
  var source = document.getElementById("chart-source");
  var plots = {};

  function format(value, unit) {
    if (value === null || value === undefined) { return "—"; }
    if (unit === "s") { return value < 1 ? (value * 1000).toFixed(0) + " ms" : value.toFixed(2) + " s"; }
    return (Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(2)) + " " + unit;
  }

  function tick(value, unit) {
    if (unit === "s") { return value < 1 ? Math.round(value * 1000) + " ms" : value.toFixed(1) + " s"; }
    return Math.abs(value) >= 10 ? value.toFixed(0) : String(Math.round(value * 100) / 100);
  }

  function lastValue(values) {
    for (var i = values.length - 1; i >= 0; i--) { if (values[i] !== null) { return values[i]; } }
    return null;
  }

  function draw(figure, times, series) {
    var key = figure.getAttribute("data-chart");
    var unit = figure.getAttribute("data-unit");
    var names = Object.keys(series);
    var box = figure.querySelector(".chart");
    var latest = figure.querySelector(".latest");
    var data = [times].concat(names.map(function (n) { return series[n]; }));
    var signature = names.join("|");
    var width = Math.max(300, box.clientWidth || 380);
    var plot = plots[key];
    if (plot && plot.signature !== signature) { plot.uplot.destroy(); plot = null; }
    if (!plot) {
      box.textContent = "";
      var options = {
        width: width, height: 180, legend: { show: true, live: false }, cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true } },
        axes: [{}, { values: function (u, ticks) { return ticks.map(function (t) { return tick(t, unit); }); }, size: 56 }],
        series: [{}].concat(names.map(function (n, i) {
          return { label: n, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: false,
                   value: function (u, v) { return format(v, unit); } };
        }))
      };
      plot = { uplot: new uPlot(options, data, box), signature: signature };
      plots[key] = plot;
    } else {
      plot.uplot.setData(data);
    }
    var points = 0;
    names.forEach(function (n) { series[n].forEach(function (v) { if (v !== null) { points++; } }); });
    figure.setAttribute("data-points", String(points));
    latest.textContent = names.length === 0 ? "No data yet." :
      "Latest: " + names.map(function (n) { return n + " " + format(lastValue(series[n]), unit); }).join(" · ");
  }

  function refresh() {
    fetch(feed, { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (answer) {
        if (answer.status === 401) { window.location.href = "/console/login?next=/console/overview"; return null; }
        if (!answer.ok) { throw new Error("the gateway answered " + answer.status); }
        return answer.json();
      })
      .then(function (data) {
        if (!data) { return; }
        if (data.error) { source.textContent = data.error; source.classList.add("failed"); }
        else { source.classList.remove("failed"); }
        section.querySelectorAll("figure[data-chart]").forEach(function (figure) {
          draw(figure, data.t, data.charts[figure.getAttribute("data-chart")] || {});
        });
        section.setAttribute("data-updated", String(Date.now()));
      })
      .catch(function (error) {
        source.textContent = "Could not load the charts: " + error.message;
        source.classList.add("failed");
      });
  }

  window.addEventListener("resize", function () {
    Object.keys(plots).forEach(function (key) {
      var box = section.querySelector('figure[data-chart="' + key + '"] .chart');
      plots[key].uplot.setSize({ width: Math.max(300, box.clientWidth), height: 180 });
    });
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
