// Webhooks: the deliveries that ran out of retries, and sending them again.
import { api, query } from "./api.js";
import { badge, h, notice, table, when } from "./dom.js";

export function render(main) {
  const body = h("div");
  const message = h("div");
  const chosen = new Set();
  main.append(h("h1", {}, "Dead webhooks"), message, body);

  const redeliver = async (ids) => {
    try {
      const answer = await api("/v1/webhooks/dead/redeliver", { method: "POST", body: ids ? { webhook_ids: ids } : {} });
      message.replaceChildren(notice(`Queued again: ${answer.redelivered.length}.`, "ok"));
      chosen.clear();
      load();
    } catch (exc) {
      message.replaceChildren(notice(exc.message));
    }
  };
  const load = async () => {
    try {
      const page = await api(`/v1/webhooks/dead${query({ limit: 100 })}`);
      if (!page.webhooks.length) {
        body.replaceChildren(notice("No dead webhook.", "muted"));
        return;
      }
      body.replaceChildren(
        h(
          "div",
          { class: "actions" },
          h("button", { id: "redeliver-selected", onclick: () => redeliver([...chosen]) }, "Redeliver selected"),
          h("button", { id: "redeliver-all", onclick: () => redeliver(null) }, "Redeliver all"),
        ),
        table(
          [
            ["", (w) => h("input", {
              type: "checkbox",
              checked: chosen.has(w.webhook_id),
              dataset: { webhook: w.webhook_id },
              onchange: (e) => (e.target.checked ? chosen.add(w.webhook_id) : chosen.delete(w.webhook_id)),
            })],
            ["Task", (w) => h("a", { href: `#/tasks/${w.task_id}` }, w.task_id)],
            ["Type", (w) => w.type],
            ["URL", (w) => w.url],
            ["Status", (w) => badge(w.status)],
            ["Attempts", (w) => w.attempts],
            ["Last answer", (w) => w.last_status_code ?? w.last_error],
            ["Given up", (w) => when(w.finished_at)],
          ],
          page.webhooks,
          { id: "dead-webhooks" },
        ),
      );
    } catch (exc) {
      body.replaceChildren(notice(exc.message));
    }
  };
  load();
  const timer = setInterval(load, 3000);
  return () => clearInterval(timer);
}
