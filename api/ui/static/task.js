// One task: its state, input, result, timeline, webhooks, live token stream, and actions.
import { api } from "./api.js";
import { badge, h, json, notice, table, when } from "./dom.js";
import { may } from "./session.js";

const IMAGE_PREFIXES = { iVBOR: "image/png", "/9j/": "image/jpeg", R0lGOD: "image/gif", UklGR: "image/webp" };

export function render(main, taskId) {
  const id = encodeURIComponent(taskId);
  const head = h("div");
  const actions = h("div", { class: "actions" });
  const message = h("div");
  const summary = h("section");
  const payload = h("section", { id: "payload" });
  const stream = h("pre", { id: "token-stream", class: "stream" });
  const result = h("section", { id: "result" });
  const timeline = h("section", { id: "timeline" });
  const webhooks = h("section", { id: "webhook-attempts" });
  main.append(
    h("h1", {}, "Task ", h("code", { id: "task-id" }, taskId)),
    head, actions, message, summary,
    h("h2", {}, "Input"), payload,
    h("h2", {}, "Live output"), stream,
    h("h2", {}, "Result"), result,
    h("h2", {}, "Timeline"), timeline,
    h("h2", {}, "Webhooks"), webhooks,
  );

  let source = null;
  let timer = null;
  let shownPayload = false;
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
    if (view.result) result.replaceChildren(...withImages(view.result));
    else if (view.error) result.replaceChildren(notice(`${view.error.code}: ${view.error.message}`));
    else result.replaceChildren(notice("not finished yet", "muted"));
    if (!shownPayload && "payload" in view) {
      shownPayload = true;
      payload.replaceChildren(
        ...(view.payload === null ? [notice("The input was too large to keep; it is in Kafka.", "muted")] : withImages(view.payload)),
      );
    }
    const buttons = [
      may("tasks:cancel") &&
        h("button", { id: "cancel", disabled: isTerminal(view.status), onclick: () => act("cancel") }, "Cancel"),
      may("tasks:redeliver") &&
        h(
          "button",
          { id: "redeliver", disabled: view.webhook.status === "none", onclick: () => act("webhook/redeliver") },
          "Redeliver webhook",
        ),
    ];
    actions.replaceChildren(...buttons.filter(Boolean));
  };
  const loadSide = async () => {
    const [events, deliveries] = await Promise.all([
      api(`/v1/tasks/${id}/events`),
      api(`/v1/tasks/${id}/webhook/attempts`),
    ]);
    timeline.replaceChildren(
      table(
        [
          ["Status", (e) => badge(e.cancel_requested ? "cancel requested" : e.status)],
          ["At", (e) => when(e.at)],
          ["Attempt", (e) => e.attempt],
          ["Worker", (e) => e.worker_id ?? ""],
          ["Error", (e) => (e.error ? `${e.error.code}: ${e.error.message}` : "")],
        ],
        events.events,
        { id: "timeline-table" },
      ),
    );
    webhooks.replaceChildren(
      deliveries.deliveries.length
        ? table(
            [
              ["Type", (d) => d.type],
              ["Status", (d) => badge(d.status)],
              ["Attempts", (d) => d.attempts],
              ["Last answer", (d) => d.last_status_code ?? ""],
              ["Error", (d) => d.last_error],
              ["Next attempt", (d) => when(d.next_attempt_at)],
              ["History", (d) => d.history.map((a) => `#${a.attempt} ${when(a.at)} → ${a.status_code ?? a.error} (${a.duration_ms} ms)`).join("\n")],
            ],
            deliveries.deliveries,
            { id: "webhook-table" },
          )
        : notice("No webhook.", "muted"),
    );
  };
  const load = async () => {
    try {
      const view = await api(`/v1/tasks/${id}${shownPayload ? "" : "?include=payload"}`);
      show(view);
      await loadSide();
      return view;
    } catch (exc) {
      message.replaceChildren(notice(exc.message));
      clearInterval(timer);
      return null;
    }
  };
  const act = async (what) => {
    try {
      show(await api(`/v1/tasks/${id}/${what}`, { method: "POST" }));
      message.replaceChildren(notice(what === "cancel" ? "Cancel requested." : "Webhook queued again.", "ok"));
    } catch (exc) {
      message.replaceChildren(notice(exc.message));
    }
  };
  const follow = () => {
    source = new EventSource(`/v1/tasks/${id}/stream`);
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

// JSON, with base64 images (screenshots) shown as images instead of text.
function withImages(payload) {
  const images = [];
  const text = JSON.stringify(
    payload,
    (key, value) => {
      const type = typeof value === "string" && value.length > 64 ? imageType(value) : null;
      if (!type) return value;
      images.push(h("figure", {}, h("img", { class: "screenshot", src: `data:${type};base64,${value}`, alt: key }), h("figcaption", {}, key)));
      return `<image ${key}: ${value.length} base64 characters>`;
    },
    2,
  );
  return [h("pre", { class: "json" }, text), ...images];
}

function imageType(value) {
  for (const [prefix, type] of Object.entries(IMAGE_PREFIXES)) if (value.startsWith(prefix)) return type;
  return null;
}

function isTerminal(status) {
  return ["succeeded", "failed", "cancelled", "expired"].includes(status);
}
