// A terminal per machine of the student's lab: xterm.js over a websocket to an SSH session on that machine.
// Keys and pastes go in as they are typed, the size follows the window, and a dropped connection is opened again.
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  function start(element) {
    const machine = element.dataset.machine;
    const state = document.querySelector('.term-state[data-machine="' + machine + '"]');
    const term = new Terminal({cursorBlink: true, fontSize: 14, scrollback: 5000});
    const fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(element);
    fit.fit();
    let socket = null;
    let delay = 1000;

    function connect() {
      const scheme = window.location.protocol === "https:" ? "wss" : "ws";
      const url = scheme + "://" + window.location.host + "/ws/terminal/" + encodeURIComponent(machine) +
        "?csrf=" + encodeURIComponent(csrf) + "&cols=" + term.cols + "&rows=" + term.rows;
      socket = new WebSocket(url);
      state.textContent = "connecting…";
      socket.onopen = () => { state.textContent = "connected"; delay = 1000; element.dataset.connected = "yes"; };
      socket.onmessage = event => { term.write(event.data); };
      socket.onclose = () => {
        element.dataset.connected = "no";
        state.textContent = "disconnected; connecting again in " + Math.round(delay / 1000) + " s";
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 15000);
      };
    }

    function send(message) {
      if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify(message)); }
    }

    term.onData(data => send({type: "input", data: data}));
    term.onResize(size => send({type: "resize", cols: size.cols, rows: size.rows}));
    window.addEventListener("resize", () => fit.fit());
    connect();
  }

  document.querySelectorAll(".terminal[data-machine]").forEach(start);
})();
