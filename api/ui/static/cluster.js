/* The cluster page: every member's status, once a second, with the admin token. */
"use strict";

(() => {
  const TOKEN_KEY = "raftex.adminToken";
  const body = document.querySelector("#nodes tbody");

  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    refresh();
  });

  document.getElementById("check-hashes").addEventListener("click", async () => {
    /* An entry after which every node records its state hash: the table shows them. */
    const token = sessionStorage.getItem(TOKEN_KEY);
    try {
      await raftex.call("POST", "/v1/admin/hash-mark", { token, body: {} });
      raftex.showError("");
    } catch (error) {
      raftex.showError(`Hash mark: ${error.message}`);
    }
  });

  function agreement(nodes) {
    /* Nodes that recorded a hash at the same index must hold the same hash there. */
    const byIndex = new Map();
    for (const n of nodes) {
      if (!n.state_hash_index) continue;
      const seen = byIndex.get(n.state_hash_index) || new Set();
      seen.add(n.state_hash);
      byIndex.set(n.state_hash_index, seen);
    }
    if (!byIndex.size) return ["no hash recorded yet", "unknown"];
    const split = [...byIndex.values()].some((hashes) => hashes.size > 1);
    return split ? ["state hashes DIFFER", "bad"] : ["state hashes agree", "good"];
  }

  function projectionLag(p) {
    if (!p || p.state !== "running") return p ? p.state : "";
    return `${p.lag_entries} / ${p.lag_ms} ms`;
  }

  async function refresh() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) { raftex.showError("Enter the admin token (data/admin.token)."); return; }
    try {
      const answer = await raftex.call("GET", "/v1/admin/cluster-status", { token });
      raftex.showError("");
      document.getElementById("asked").textContent = `asked ${answer.asked}`;
      const nodes = answer.nodes;
      raftex.rows(body, nodes.map((n) => [
        n.id, n.role, n.http, n.term, n.leader, n.commit_index, n.applied_index, n.lag,
        projectionLag(n.projection),
        n.state_hash ? `${n.state_hash.slice(0, 12)}… (${n.state_hash_index})` : "",
        n.uptime_s === undefined ? "" : `${n.uptime_s} s`, n.last_snapshot_index,
        n.feed_connections,
        n.data_key_id === undefined ? "" : (n.data_key_id ? `encrypted (${n.data_key_id})` : "in clear"),
      ]), (i) => ({ "data-node": nodes[i].id, "data-role": nodes[i].role }));
      const [text, kind] = agreement(nodes);
      const badge = document.getElementById("agreement");
      badge.textContent = text;
      badge.className = `badge ${kind}`;
    } catch (error) {
      raftex.showError(`Cluster status: ${error.message}`);
    }
  }

  refresh();
  setInterval(refresh, 1000);
})();
