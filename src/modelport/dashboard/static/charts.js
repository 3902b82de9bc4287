// Plots for the Modelport dashboard, over the vendored uPlot (static/uplot/).
// Two kinds: time series (one line per series) and bars per category (a second series is
// drawn narrower, in front of the first). One chart per container; drawing again replaces it.
(function () {
  "use strict";

  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c"];
  const HEIGHT = 220;
  const charts = new Map();

  function width(container) {
    return Math.max(container.clientWidth || 0, 320);
  }

  // Tick labels that stay readable for counts, milliseconds and fractions of a cent.
  function tick(v) {
    const a = Math.abs(v);
    if (a === 0) return "0";
    if (a >= 10000) return (v / 1000).toFixed(0) + "k";
    if (a >= 1) return String(+v.toFixed(2));
    return String(+v.toPrecision(2));
  }

  const yAxis = { size: 64, values: (u, splits) => splits.map(tick) };
  // From zero, with headroom; [0, 1] while everything is zero or missing.
  const fromZero = { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] };

  function place(container, options, data) {
    const old = charts.get(container.id);
    if (old) {
      old.destroy();
    }
    container.replaceChildren();
    const chart = new uPlot(options, data, container);
    charts.set(container.id, chart);
    return chart;
  }

  function empty(container, text) {
    const old = charts.get(container.id);
    if (old) {
      old.destroy();
      charts.delete(container.id);
    }
    const note = document.createElement("p");
    note.className = "empty";
    note.textContent = text || "No data yet.";
    container.replaceChildren(note);
  }

  // series: [{label, color?}], data: [x values (unix seconds), ...one array per series].
  function time(container, series, data) {
    const options = {
      width: width(container),
      height: HEIGHT,
      scales: { x: { time: true }, y: fromZero },
      series: [
        {},
        ...series.map((s, i) => {
          const color = s.color || COLORS[i % COLORS.length];
          // Points too: a bucket between two empty ones has no line to draw.
          return { label: s.label, stroke: color, width: 2,
            points: { show: true, size: 4, fill: color } };
        }),
      ],
      axes: [{}, yAxis],
    };
    return place(container, options, data);
  }

  function short(label) {
    return label.length > 22 ? label.slice(0, 21) + "\u2026" : label;
  }

  // labels: one per category; series: [{label, values, color?}], the first drawn widest.
  function bars(container, labels, series) {
    if (!labels.length) {
      empty(container);
      return null;
    }
    const xs = labels.map((_, i) => i);
    const options = {
      width: width(container),
      height: HEIGHT,
      scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: fromZero },
      series: [
        { label: "", value: (u, v) => (v == null ? "" : labels[v] || "") },
        ...series.map((s, i) => {
          const color = s.color || COLORS[i % COLORS.length];
          return {
            label: s.label,
            stroke: color,
            fill: color + "aa",
            width: 1,
            points: { show: false },
            paths: uPlot.paths.bars({ size: [i === 0 ? 0.7 : 0.4, 80] }),
          };
        }),
      ],
      axes: [
        {
          splits: () => xs,
          values: (u, splits) => splits.map((v) => short(labels[v] || "")),
          gap: 6,
        },
        yAxis,
      ],
      cursor: { points: { show: false } },
    };
    return place(container, options, [xs, ...series.map((s) => s.values)]);
  }

  window.addEventListener("resize", () => {
    for (const [id, chart] of charts) {
      const container = document.getElementById(id);
      if (container && container.clientWidth) {
        chart.setSize({ width: width(container), height: HEIGHT });
      }
    }
  });

  window.ModelportCharts = { time, bars, empty };
})();
