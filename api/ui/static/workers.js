// Workers: each heartbeat key with its state (alive, suspect), host, models and age.
import { api } from "./api.js";
import { ago, badge, h, notice, table, when } from "./dom.js";

export function render(main) {
  const body = h("div");
  main.append(h("h1", {}, "Workers"), body);
  const refresh = async () => {
    try {
      const { workers } = await api("/v1/workers");
      body.replaceChildren(
        workers.length
          ? table(
              [
                ["Worker", (w) => w.worker_id],
                ["State", (w) => badge(w.state)],
                ["Model", (w) => w.model ?? ""],
                ["Host", (w) => (w.host ? `${w.host} (pid ${w.pid})` : "")],
                ["Started", (w) => when(w.started_at)],
                ["Last beat", (w) => (w.state === "failed" ? `expired at ${when(w.failed_at)}` : ago(w.age_s))],
              ],
              workers,
              { id: "workers-table" },
            )
          : notice("No worker is alive.", "muted"),
      );
    } catch (exc) {
      body.replaceChildren(notice(exc.message));
    }
  };
  refresh();
  const timer = setInterval(refresh, 2000);
  return () => clearInterval(timer);
}
