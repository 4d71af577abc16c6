/* Shared by the trading and cluster pages: the node's own API, signed requests, rendering. */
"use strict";

const raftex = (() => {
  const encoder = new TextEncoder();

  function showError(message) {
    const box = document.getElementById("error");
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }

  async function hmacHex(secret, payload) {
    const key = await crypto.subtle.importKey(
      "raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const signature = await crypto.subtle.sign("HMAC", key, encoder.encode(payload));
    return Array.from(new Uint8Array(signature), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  /* One request to this node. `creds` ({key, secret}) signs it as the API wants:
     "{timestamp}\n{METHOD}\n{path}\n{raw query}\n" + raw body, HMAC-SHA256 in hex. */
  async function call(method, path, { params, body, creds, token } = {}) {
    const query = params ? new URLSearchParams(params).toString() : "";
    const raw = body === undefined ? "" : JSON.stringify(body);
    const headers = {};
    if (raw) headers["Content-Type"] = "application/json";
    if (creds) {
      const timestamp = String(Date.now());
      const payload = `${timestamp}\n${method}\n${path}\n${query}\n${raw}`;
      headers["X-Raftex-Key"] = creds.key;
      headers["X-Raftex-Timestamp"] = timestamp;
      headers["X-Raftex-Signature"] = await hmacHex(creds.secret, payload);
    }
    if (token) headers["Authorization"] = `Bearer ${token}`;
    const response = await fetch(path + (query ? `?${query}` : ""), {
      method, headers, body: raw || undefined,
    });
    const text = await response.text();
    let answer = {};
    try { answer = text ? JSON.parse(text) : {}; } catch (e) { answer = { message: text }; }
    if (!response.ok) {
      const error = new Error(answer.message || `${response.status}`);
      error.code = answer.code;
      error.status = response.status;
      throw error;
    }
    return answer;
  }

  /* Replaces a table body's rows; each row is a list of cells (text, or a DOM node). */
  function rows(tbody, data, attrs) {
    tbody.replaceChildren(...data.map((cells, i) => {
      const tr = document.createElement("tr");
      if (attrs) for (const [k, v] of Object.entries(attrs(i))) tr.setAttribute(k, v);
      for (const cell of cells) {
        const td = document.createElement("td");
        if (cell instanceof Node) td.append(cell); else td.textContent = cell ?? "";
        tr.append(td);
      }
      return tr;
    }));
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour12: false });
  }

  return { call, rows, clock, showError };
})();
