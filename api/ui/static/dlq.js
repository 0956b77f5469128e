// Dead letters: tasks that failed every attempt, and requeuing them as new tasks.
import { api, query } from "./api.js";
import { h, notice, table, when } from "./dom.js";

export function render(main) {
  const body = h("div");
  const message = h("div");
  main.append(h("h1", {}, "Dead letters"), message, body);

  const requeue = async (taskId) => {
    try {
      const answer = await api(`/v1/dlq/${encodeURIComponent(taskId)}/requeue`, { method: "POST" });
      message.replaceChildren(
        h("p", { class: "ok", role: "status" }, "Requeued as ", h("a", { href: `#/tasks/${answer.task_id}`, id: "requeued-task" }, answer.task_id)),
      );
      load();
    } catch (exc) {
      message.replaceChildren(notice(exc.message));
    }
  };
  const load = async () => {
    try {
      const page = await api(`/v1/dlq${query({ limit: 100 })}`);
      body.replaceChildren(
        page.dead_letters.length
          ? table(
              [
                ["Task", (d) => h("a", { href: `#/tasks/${d.task_id}` }, d.task_id)],
                ["Model", (d) => d.model],
                ["Action", (d) => d.action],
                ["Error", (d) => d.error],
                ["Dead since", (d) => when(d.dead_at)],
                ["Requeued as", (d) => (d.requeued_as
                  ? h("a", { href: `#/tasks/${d.requeued_as}` }, d.requeued_as)
                  : h("button", { class: "requeue", dataset: { task: d.task_id }, onclick: () => requeue(d.task_id) }, "Requeue"))],
              ],
              page.dead_letters,
              { id: "dead-letters" },
            )
          : notice("The dead-letter topic holds no task of this project.", "muted"),
      );
    } catch (exc) {
      body.replaceChildren(notice(exc.message));
    }
  };
  load();
  const timer = setInterval(load, 3000);
  return () => clearInterval(timer);
}
