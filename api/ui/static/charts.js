// Rolling time-series charts over uPlot (vendored under vendor/): one chart per panel.
/* global uPlot */
import { h } from "./dom.js";

const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2"];
const KEEP_POINTS = 300;

export class Series {
  constructor(parent, title, names, { unit = "" } = {}) {
    this.names = names;
    this.data = [[], ...names.map(() => [])];
    const holder = h("figure", { class: "chart", dataset: { chart: title } }, h("figcaption", {}, title));
    parent.append(holder);
    this.plot = new uPlot(
      {
        width: 460,
        height: 200,
        series: [
          {},
          ...names.map((name, i) => ({ label: name, stroke: COLORS[i % COLORS.length], width: 2 })),
        ],
        axes: [{}, { label: unit, size: 60 }],
        scales: { x: { time: true } },
        legend: { live: false },
      },
      this.data,
      holder,
    );
  }

  push(values, at = Date.now() / 1000) {
    this.data[0].push(at);
    this.names.forEach((name, i) => this.data[i + 1].push(values[name] ?? 0));
    if (this.data[0].length > KEEP_POINTS) this.data.forEach((column) => column.shift());
    this.plot.setData(this.data);
  }
}
