// The portal's buttons: every POST carries the page's CSRF token; the progress part of the page is then read
// again (terminals on the page stay connected).
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const note = document.getElementById("note");

  async function refreshProgress() {
    const response = await fetch("/", {credentials: "same-origin", cache: "no-store"});
    if (!response.ok) { throw new Error("the page answered " + response.status); }
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById("progress");
    const here = document.getElementById("progress");
    if (fresh && here) { here.replaceChildren(...Array.from(fresh.childNodes, node => document.importNode(node, true))); }
  }

  async function post(url, button, busyText) {
    button.disabled = true;
    note.textContent = busyText;
    try {
      const response = await fetch(url, {method: "POST", headers: {"X-CSRF-Token": csrf}, credentials: "same-origin"});
      if (!response.ok) { note.textContent = (await response.text()).trim(); return; }
      await refreshProgress();
      note.textContent = "checked";
    } catch (error) {
      note.textContent = "could not reach the portal: " + error.message;
    } finally {
      button.disabled = false;
    }
  }

  const check = document.getElementById("check");
  if (check) { check.addEventListener("click", () => post("/api/check", check, "checking your lab…")); }
  const all = document.getElementById("check-all");
  if (all) {
    all.addEventListener("click", () => post("/api/refresh", all, "checking every lab…"));
    // the instructor's view stays live: current steps, times on step, new sessions
    setInterval(() => { if (!all.disabled) { refreshProgress().catch(error => { note.textContent = error.message; }); } },
                10000);
  }
})();
