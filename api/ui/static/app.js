// The dashboard's shell: sign-in, navigation, and one page at a time (hash routes).
import { api } from "./api.js";
import { h } from "./dom.js";
import * as overview from "./overview.js";
import * as task from "./task.js";
import * as workers from "./workers.js";

const PAGES = [
  ["overview", "Overview", overview],
  ["workers", "Workers", workers],
];
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
  cleanup = entry[2].render(main, params);
}

async function signIn() {
  const dialog = document.getElementById("login");
  if (!dialog.open) dialog.showModal();
}

async function start() {
  document.getElementById("nav").replaceChildren(
    ...PAGES.map(([name, title]) => h("a", { href: `#/${name}`, dataset: { page: name } }, title)),
  );
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
    const session = await api("/ui/session");
    document.getElementById("who").textContent = `project ${session.project}`;
    document.getElementById("logout").hidden = !session.auth;
    return true;
  } catch {
    return false;
  }
}

start();
