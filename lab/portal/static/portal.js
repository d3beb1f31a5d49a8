// The portal's buttons: every POST carries the page's CSRF token; the page is re-read after each.
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const note = document.getElementById("note");

  async function post(url, button, busyText) {
    button.disabled = true;
    note.textContent = busyText;
    try {
      const response = await fetch(url, {method: "POST", headers: {"X-CSRF-Token": csrf}, credentials: "same-origin"});
      if (!response.ok) { note.textContent = (await response.text()).trim(); return; }
      window.location.reload();
    } catch (error) {
      note.textContent = "could not reach the portal: " + error.message;
    } finally {
      button.disabled = false;
    }
  }

  const check = document.getElementById("check");
  if (check) { check.addEventListener("click", () => post("/api/check", check, "checking your lab…")); }
  const all = document.getElementById("check-all");
  if (all) { all.addEventListener("click", () => post("/api/refresh", all, "checking every lab…")); }
})();
