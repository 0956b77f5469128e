// One task: its state, result, live token stream, and the actions on it.
import { api } from "./api.js";
import { badge, h, json, notice, table, when } from "./dom.js";

export function render(main, taskId) {
  const head = h("div");
  const actions = h("div", { class: "actions" });
  const summary = h("section");
  const stream = h("pre", { id: "token-stream", class: "stream" });
  const result = h("section", { id: "result" });
  const message = h("div");
  main.append(
    h("h1", {}, "Task ", h("code", { id: "task-id" }, taskId)),
    head,
    actions,
    message,
    summary,
    h("h2", {}, "Live output"),
    stream,
    h("h2", {}, "Result"),
    result,
  );

  let source = null;
  let timer = null;
  const show = (view) => {
    head.replaceChildren(badge(view.status));
    summary.replaceChildren(
      table(
        [
          ["Model", (v) => v.model],
          ["Action", (v) => v.action],
          ["Attempts", (v) => v.attempts],
          ["Created", (v) => when(v.created_at)],
          ["Started", (v) => when(v.started_at)],
          ["Finished", (v) => when(v.finished_at)],
          ["Webhook", (v) => `${v.webhook.status} (${v.webhook.attempts} attempts)`],
        ],
        [view],
        { class: "summary" },
      ),
    );
    if (Object.keys(view.metadata ?? {}).length) summary.append(h("h3", {}, "Metadata"), json(view.metadata));
    if (view.result) result.replaceChildren(json(view.result));
    else if (view.error) result.replaceChildren(notice(`${view.error.code}: ${view.error.message}`));
    else result.replaceChildren(notice("not finished yet", "muted"));
    actions.replaceChildren(
      h("button", { id: "cancel", disabled: isTerminal(view.status), onclick: () => act("cancel") }, "Cancel"),
      h(
        "button",
        { id: "redeliver", disabled: view.webhook.status === "none", onclick: () => act("webhook/redeliver") },
        "Redeliver webhook",
      ),
    );
  };
  const load = async () => {
    try {
      const view = await api(`/v1/tasks/${encodeURIComponent(taskId)}`);
      show(view);
      if (isTerminal(view.status) && !source) clearInterval(timer);
      return view;
    } catch (exc) {
      message.replaceChildren(notice(exc.message));
      clearInterval(timer);
      return null;
    }
  };
  const act = async (what) => {
    try {
      show(await api(`/v1/tasks/${encodeURIComponent(taskId)}/${what}`, { method: "POST" }));
      message.replaceChildren(notice(what === "cancel" ? "Cancel requested." : "Webhook queued again.", "ok"));
    } catch (exc) {
      message.replaceChildren(notice(exc.message));
    }
  };
  const follow = () => {
    source = new EventSource(`/v1/tasks/${encodeURIComponent(taskId)}/stream`);
    source.addEventListener("token", (event) => {
      stream.append(JSON.parse(event.data).delta);
    });
    source.addEventListener("end", () => {
      source.close();
      source = null;
      load();
    });
    source.onerror = () => {
      if (source && source.readyState === EventSource.CLOSED) source = null;
    };
  };
  load().then((view) => {
    if (view) follow();
  });
  timer = setInterval(load, 1000);
  return () => {
    clearInterval(timer);
    if (source) source.close();
  };
}

function isTerminal(status) {
  return ["succeeded", "failed", "cancelled", "expired"].includes(status);
}
