// natter web chat (first version: connects and shows the state).
"use strict";
(function () {
  const conn = document.getElementById("conn");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(scheme + "//" + location.host + "/ws");
  ws.onopen = () => { conn.textContent = "Online"; };
  ws.onclose = () => { conn.textContent = "Offline"; };
})();
