// Overview: live charts of the caller's project, refreshed every second.
import { api } from "./api.js";
import { ago, h, notice, table } from "./dom.js";
import { Series } from "./charts.js";

export function render(main) {
  const grid = h("div", { class: "charts" });
  const status = h("div");
  const models = h("section");
  main.append(h("h1", {}, "Overview"), status, grid, h("h2", {}, "Queues"), models);
  const rates = new Series(grid, "Tasks per second", ["submitted", "succeeded", "failed"], { unit: "/s" });
  const workers = new Series(grid, "Workers", ["alive", "suspect", "failed"], { unit: "workers" });
  let backlog = null;
  let age = null;
  const refresh = async () => {
    try {
      const view = await api("/v1/queues?window_s=5");
      rates.push(view.rates);
      workers.push(view.workers);
      const names = view.queues.map((q) => q.model);
      backlog ??= new Series(grid, "Backlog", names, { unit: "tasks" });
      age ??= new Series(grid, "Oldest queued task", names, { unit: "s" });
      backlog.push(Object.fromEntries(view.queues.map((q) => [q.model, q.backlog])));
      age.push(Object.fromEntries(view.queues.map((q) => [q.model, q.oldest_queued_age_s ?? 0])));
      models.replaceChildren(
        table(
          [
            ["Model", (q) => q.model],
            ["Backlog", (q) => q.backlog],
            ["Oldest queued", (q) => ago(q.oldest_queued_age_s)],
            ["Running", (q) => q.running],
            ["Workers alive / suspect", (q) => `${q.workers.alive} / ${q.workers.suspect}`],
          ],
          view.queues,
          { id: "queues" },
        ),
      );
      status.replaceChildren();
    } catch (exc) {
      status.replaceChildren(notice(exc.message));
    }
  };
  refresh();
  const timer = setInterval(refresh, 1000);
  return () => clearInterval(timer);
}
