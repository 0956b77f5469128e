// Tasks: the project's tasks, newest first, with filters, paging and live refresh.
import { api, query } from "./api.js";
import { badge, h, notice, table, when } from "./dom.js";

const STATUSES = ["", "queued", "running", "succeeded", "failed", "cancelled", "expired"];
const FIELDS = ["status", "model", "action", "metadata", "since", "until"];

export function render(main, params) {
  const filters = Object.fromEntries(FIELDS.map((name) => [name, params.get(name) ?? ""]));
  const cursors = [null];
  const body = h("div");
  const pager = h("div", { class: "actions" });
  const live = h("input", { type: "checkbox", id: "live", checked: true });
  const form = h(
    "form",
    { class: "filters", id: "task-filters" },
    h("label", {}, "Status", h("select", { name: "status" }, STATUSES.map((s) => option(s, filters.status)))),
    field("model", "Model", filters.model, "echo"),
    field("action", "Action", filters.action, "generate"),
    field("metadata", "Metadata", filters.metadata, "key=value"),
    field("since", "Created since", filters.since, "2026-01-01T00:00:00Z"),
    field("until", "Created until", filters.until, ""),
    h("button", { type: "submit" }, "Filter"),
    h("label", { class: "inline" }, live, "live"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    location.hash = `#/tasks${query(data)}`;
  });
  main.append(h("h1", {}, "Tasks"), form, body, pager);

  const load = async () => {
    const cursor = cursors[cursors.length - 1];
    try {
      const page = await api(`/v1/tasks${query({ ...filters, cursor, limit: 25 })}`);
      body.replaceChildren(
        page.tasks.length
          ? table(
              [
                ["Task", (t) => h("a", { href: `#/tasks/${t.task_id}`, class: "task-link" }, t.task_id)],
                ["Status", (t) => badge(t.status)],
                ["Model", (t) => t.model],
                ["Action", (t) => t.action],
                ["Attempts", (t) => t.attempts],
                ["Created", (t) => when(t.created_at)],
                ["Finished", (t) => when(t.finished_at)],
                ["Error", (t) => (t.error ? t.error.code : "")],
              ],
              page.tasks,
              { id: "tasks-table" },
            )
          : notice("No task matches.", "muted"),
      );
      pager.replaceChildren(
        h("button", { disabled: cursors.length === 1, onclick: () => { cursors.pop(); load(); } }, "Newer"),
        h("button", { disabled: !page.next_cursor, onclick: () => { cursors.push(page.next_cursor); load(); } }, "Older"),
      );
    } catch (exc) {
      body.replaceChildren(notice(exc.message));
    }
  };
  load();
  // Live refresh only on the first page: older pages stay put while you read them.
  const timer = setInterval(() => {
    if (live.checked && cursors.length === 1) load();
  }, 2000);
  return () => clearInterval(timer);
}

function field(name, title, value, placeholder) {
  return h("label", {}, title, h("input", { name, value, placeholder }));
}

function option(value, selected) {
  return h("option", { value, selected: value === selected }, value || "any");
}
