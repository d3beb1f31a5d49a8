// The link's token is in its fragment: never sent to a server by the browser, never in a log.
(function () {
  "use strict";
  const note = document.getElementById("note");
  const token = decodeURIComponent(window.location.hash.slice(1));
  history.replaceState(null, "", window.location.pathname);  // the token leaves the address bar at once
  if (!token) { note.textContent = "No token in this link: open the whole link you were given."; return; }
  fetch("/login", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({token: token}),
                   credentials: "same-origin"})
    .then(async response => {
      if (response.status === 204) { window.location.replace("/"); return; }
      note.textContent = (await response.text()).trim();
    })
    .catch(error => { note.textContent = "Could not log in: " + error.message; });
})();
