// Overview: live charts of the caller's project, refreshed every second.
import { api } from "./api.js";
import { ago, h, notice, table } from "./dom.js";
import { Series } from "./charts.js";

const seconds = (s) => (s == null ? "-" : `${s.toFixed(3)} s`);

export function render(main) {
  const grid = h("div", { class: "charts" });
  const status = h("div");
  const models = h("section");
  main.append(h("h1", {}, "Overview"), status, grid, h("h2", {}, "Queues"), models);
  const rates = new Series(grid, "Tasks per second", ["submitted", "succeeded", "failed"], { unit: "/s" });
  const workers = new Series(grid, "Workers", ["alive", "suspect", "failed"], { unit: "workers" });
  let backlog = null;
  let age = null;
  let lag = null;
  let wait = null;
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
      // Every project's: the worker group's Kafka lag, and the queue waits of the last minute.
      lag ??= new Series(grid, "Consumer lag", names, { unit: "records" });
      wait ??= new Series(grid, "Queue wait p95", names, { unit: "s" });
      lag.push(Object.fromEntries(view.queues.map((q) => [q.model, q.lag ?? 0])));
      wait.push(Object.fromEntries(view.queues.map((q) => [q.model, q.queue_wait_p95_s ?? 0])));
      models.replaceChildren(
        table(
          [
            ["Model", (q) => q.model],
            ["Backlog", (q) => q.backlog],
            ["Oldest queued", (q) => ago(q.oldest_queued_age_s)],
            ["Running", (q) => q.running],
            ["Consumer lag", (q) => q.lag ?? "?"],
            ["Queue wait p50 / p95", (q) => `${seconds(q.queue_wait_p50_s)} / ${seconds(q.queue_wait_p95_s)}`],
            ["Done last minute", (q) => q.completed_last_minute],
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
