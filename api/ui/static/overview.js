// Overview: live charts of the platform, refreshed every second.
import { api } from "./api.js";
import { h, notice } from "./dom.js";
import { Series } from "./charts.js";

export function render(main) {
  const grid = h("div", { class: "charts" });
  const status = h("div");
  main.append(h("h1", {}, "Overview"), status, grid);
  const workers = new Series(grid, "Workers", ["alive", "suspect"], { unit: "workers" });
  const refresh = async () => {
    try {
      const { workers: list } = await api("/v1/workers");
      const count = (state) => list.filter((w) => w.state === state).length;
      workers.push({ alive: count("alive"), suspect: count("suspect") });
      status.replaceChildren();
    } catch (exc) {
      status.replaceChildren(notice(exc.message));
    }
  };
  refresh();
  const timer = setInterval(refresh, 1000);
  return () => clearInterval(timer);
}
