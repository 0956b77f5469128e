// The dashboard's shell: sign-in, navigation, and one page at a time (hash routes).
import { api } from "./api.js";
import { h } from "./dom.js";
import { may, session } from "./session.js";
import * as dlq from "./dlq.js";
import * as overview from "./overview.js";
import * as task from "./task.js";
import * as tasks from "./tasks.js";
import * as webhooks from "./webhooks.js";
import * as workers from "./workers.js";

// Each page with the permission it needs: a role sees the pages it may use.
const ALL_PAGES = [
  ["overview", "Overview", overview, "queues:read"],
  ["tasks", "Tasks", tasks, "tasks:read"],
  ["workers", "Workers", workers, "workers:read"],
  ["webhooks", "Webhooks", webhooks, "dlq:manage"],
  ["dlq", "Dead letters", dlq, "dlq:manage"],
];
let PAGES = [];
const main = document.getElementById("main");
let cleanup = null;

function route() {
  const [path, search = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [page, ...rest] = path.split("/");
  return { page: page || "overview", rest, params: new URLSearchParams(search) };
}

function render() {
  if (cleanup) cleanup();
  cleanup = null;
  const { page, rest, params } = route();
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.page === page);
  }
  main.replaceChildren();
  if (page === "tasks" && rest.length) {
    cleanup = task.render(main, decodeURIComponent(rest[0]));
    return;
  }
  const entry = PAGES.find(([name]) => name === page) ?? PAGES[0];
  if (entry) cleanup = entry[2].render(main, params);
}

async function signIn() {
  const dialog = document.getElementById("login");
  if (!dialog.open) dialog.showModal();
}

function navigation() {
  PAGES = ALL_PAGES.filter(([, , , permission]) => may(permission));
  document.getElementById("nav").replaceChildren(
    ...PAGES.map(([name, title]) => h("a", { href: `#/${name}`, dataset: { page: name } }, title)),
  );
}

async function start() {
  document.getElementById("search").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("search-id");
    const id = input.value.trim();
    if (id) location.hash = `#/tasks/${encodeURIComponent(id)}`;
    input.value = "";
  });
  document.getElementById("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("login-error");
    error.textContent = "";
    try {
      await api("/ui/session", { method: "POST", body: { api_key: document.getElementById("api-key").value } });
      // The browser may refuse a Secure cookie over plain HTTP (anything but localhost).
      await api("/ui/session");
    } catch (exc) {
      error.textContent = exc.status === 401 && exc.message.includes("missing")
        ? "The browser did not keep the session cookie: serve the dashboard over HTTPS."
        : exc.message;
      return;
    }
    document.getElementById("api-key").value = "";
    document.getElementById("login").close();
    await whoAmI();
    render();
  });
  document.getElementById("logout").addEventListener("click", async () => {
    await api("/ui/session", { method: "DELETE" });
    location.reload();
  });
  window.addEventListener("autoglm:unauthorized", signIn);
  window.addEventListener("hashchange", render);
  if (await whoAmI()) render();
}

async function whoAmI() {
  try {
    const answer = await api("/ui/session");
    Object.assign(session, { project: answer.project, role: answer.role, permissions: new Set(answer.permissions) });
    document.getElementById("who").textContent = `project ${answer.project}`;
    document.getElementById("who").title = `role ${answer.role}`;
    document.getElementById("logout").hidden = !answer.auth;
    navigation();
    return true;
  } catch {
    return false;
  }
}

start();
