// The instructor's player: a recorded session replayed with its own timing, or a live one watched (read-only).
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const title = document.getElementById("player-title");
  const element = document.getElementById("player");
  if (!element) { return; }
  const term = new Terminal({fontSize: 13, scrollback: 5000, disableStdin: true});
  term.open(element);
  let timer = null;
  let socket = null;

  function reset(text) {
    if (timer) { clearTimeout(timer); timer = null; }
    if (socket) { socket.onclose = null; socket.close(); socket = null; }
    term.reset();
    title.textContent = text;
  }

  async function replay(student, name) {
    reset("replaying " + student + ": " + name);
    const response = await fetch("/api/sessions/" + encodeURIComponent(student) + "/" + encodeURIComponent(name),
                                 {credentials: "same-origin"});
    if (!response.ok) { title.textContent = "could not load the session (" + response.status + ")"; return; }
    const lines = (await response.text()).split("\n").filter(line => line.trim());
    const header = JSON.parse(lines[0]);
    term.resize(Math.min(header.width || 80, 250), Math.min(header.height || 24, 100));
    const events = lines.slice(1).map(line => JSON.parse(line));
    let index = 0;
    let last = 0;
    function next() {
      if (index >= events.length) { title.textContent = "replayed " + student + ": " + name; element.dataset.replayed = name; return; }
      const [when, kind, data] = events[index++];
      if (kind === "o") { term.write(data); }
      if (kind === "r") { const [c, r] = data.split("x").map(Number); term.resize(Math.min(c, 250), Math.min(r, 100)); }
      const wait = Math.min(Math.max(((events[index] || [when])[0] - when) * 1000, 0), 1000);  // long pauses: 1 s
      last = when;
      timer = setTimeout(next, wait);
    }
    next();
  }

  function watch(student, machine) {
    reset("watching " + student + " on " + machine + " (live, read-only)");
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(scheme + "://" + window.location.host + "/ws/watch/" + encodeURIComponent(student) + "/" +
                           encodeURIComponent(machine) + "?csrf=" + encodeURIComponent(csrf));
    socket.onmessage = event => term.write(event.data);
  }

  document.addEventListener("click", event => {
    const button = event.target.closest("button.replay, button.watch");
    if (!button) { return; }
    if (button.classList.contains("replay")) { replay(button.dataset.student, button.dataset.name); }
    else { watch(button.dataset.student, button.dataset.machine); }
  });
})();
