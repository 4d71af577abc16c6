/* The trading page: book, depth, candles, trades and ticker of one symbol from the public
   API and feed; order entry, open orders, fills and balances with the signed-in key. */
"use strict";

(() => {
  const CREDS_KEY = "raftex.creds";
  const BOOK_DEPTH = 12;
  const FILLS_SHOWN = 20;
  const TRADES_SHOWN = 30;
  const $ = (id) => document.getElementById(id);
  const state = {
    symbol: null, ws: null, creds: JSON.parse(sessionStorage.getItem(CREDS_KEY) || "null"),
    fills: [], fillsAfter: 0, pending: {},
    // Which sign-in the account tables belong to; one refresh of them at a time.
    generation: 0, accountLoad: null, accountAgain: false,
  };

  /* ---------------------------------------------------------------- charts */
  const candleChart = LightweightCharts.createChart($("candles"), {
    height: 300, layout: { background: { color: "#10151d" }, textColor: "#c9d1d9" },
    grid: { vertLines: { color: "#1d2530" }, horzLines: { color: "#1d2530" } },
    timeScale: { timeVisible: true, secondsVisible: false },
  });
  const candleSeries = candleChart.addCandlestickSeries();
  new ResizeObserver(() => candleChart.applyOptions({ width: $("candles").clientWidth }))
    .observe($("candles"));
  const depthChart = new Chart($("depth"), {
    type: "line",
    data: { datasets: [
      { label: "bids", data: [], stepped: true, fill: true, borderColor: "#26a69a",
        backgroundColor: "rgba(38,166,154,0.25)", pointRadius: 0 },
      { label: "asks", data: [], stepped: true, fill: true, borderColor: "#ef5350",
        backgroundColor: "rgba(239,83,80,0.25)", pointRadius: 0 },
    ] },
    options: { animation: false, responsive: true, maintainAspectRatio: false,
      scales: { x: { type: "linear", title: { display: true, text: "price" } },
                y: { title: { display: true, text: "cumulative quantity" } } } },
  });

  /* ---------------------------------------------------------------- public data */
  function throttled(name, fn, ms) {
    return () => {
      if (state.pending[name]) return;
      state.pending[name] = setTimeout(async () => {
        state.pending[name] = null;
        try { await fn(); } catch (error) { raftex.showError(`${name}: ${error.message}`); }
      }, ms);
    };
  }

  async function loadBook() {
    const book = await raftex.call("GET", `/v1/book/${state.symbol}`, { params: { depth: BOOK_DEPTH } });
    raftex.rows($("asks"), [...book.asks].reverse(), (i) => ({ class: "ask" }));
    raftex.rows($("bids"), book.bids, (i) => ({ class: "bid" }));
    const bid = book.bids[0], ask = book.asks[0];
    $("spread-cell").textContent = bid && ask
      ? `spread ${(Number(ask[0]) - Number(bid[0])).toFixed(ask[0].split(".")[1]?.length || 0)}` : "";
    const cumulative = (levels) => {
      let total = 0;
      return levels.map(([price, qty]) => ({ x: Number(price), y: (total += Number(qty)) }));
    };
    depthChart.data.datasets[0].data = cumulative(book.bids).reverse();
    depthChart.data.datasets[1].data = cumulative(book.asks);
    depthChart.update();
  }

  async function loadCandles() {
    const answer = await raftex.call("GET", `/v1/candles/${state.symbol}`, { params: { interval: "1m", limit: 200 } });
    candleSeries.setData(answer.candles.map((c) => ({
      time: c.open_ms / 1000, open: Number(c.open), high: Number(c.high),
      low: Number(c.low), close: Number(c.close),
    })).sort((a, b) => a.time - b.time));
  }

  function renderTrades(trades) {
    raftex.rows($("trades").tBodies[0], trades.slice(0, TRADES_SHOWN).map((t) => [
      raftex.clock(t.ts_ms), t.price, t.qty, t.auction ? t.auction.replace("_", " ") : t.aggressor_side,
    ]), (i) => ({ class: trades[i].aggressor_side === "buy" ? "bid" : "ask" }));
  }

  /* The trading phase, when it next changes, and in a call phase the auction as it stands. */
  function renderPhase(phase, untilMs, auction) {
    let text = phase.replace("_", " ");
    if (untilMs) text += ` until ${raftex.clock(untilMs)}`;
    if (auction) {
      text += auction.indicative_price
        ? ` | indicative ${auction.indicative_price} x ${auction.matched_qty}`
        : " | no cross";
      if (auction.imbalance_side) text += `, imbalance ${auction.imbalance_qty} ${auction.imbalance_side}`;
    }
    $("phase").textContent = text;
  }

  async function loadPhase() {
    const inst = await raftex.call("GET", `/v1/instruments/${state.symbol}`);
    renderPhase(inst.phase, inst.phase_until_ms, inst.auction);
  }

  async function loadTrades() {
    const answer = await raftex.call("GET", `/v1/trades/${state.symbol}`, { params: { limit: TRADES_SHOWN } });
    state.trades = answer.trades;
    renderTrades(state.trades);
  }

  function renderTicker(t) {
    $("ticker").textContent = `last ${t.last ?? "-"}  bid ${t.bid ?? "-"}  ask ${t.ask ?? "-"}  ` +
      `24h high ${t.high_24h ?? "-"} low ${t.low_24h ?? "-"} volume ${t.volume_24h ?? "0"}`;
  }

  const refreshBook = throttled("book", loadBook, 200);
  const refreshCandles = throttled("candles", loadCandles, 1000);

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/v1/ws`);
    state.ws = ws;
    ws.onopen = () => {
      for (const channel of ["book", "trades", "ticker", "candles", "auction"]) {
        ws.send(JSON.stringify({ op: "subscribe", channel, symbol: state.symbol }));
      }
    };
    ws.onmessage = (message) => {
      const m = JSON.parse(message.data);
      if (m.symbol && m.symbol !== state.symbol) return;
      if (m.channel === "book") refreshBook();
      else if (m.channel === "candles") refreshCandles();
      else if (m.channel === "ticker" && m.type === "ticker") renderTicker(m);
      else if (m.channel === "auction" && m.type === "phase") renderPhase(m.phase, m.until_ms, null);
      else if (m.channel === "auction" && m.type === "indicative") renderPhase(m.phase, 0, m);
      else if (m.channel === "auction" && m.type === "snapshot") renderPhase(m.phase, m.until_ms, m.auction);
      else if (m.channel === "trades" && m.type === "trade") {
        state.trades = [m, ...(state.trades || [])].slice(0, TRADES_SHOWN);
        renderTrades(state.trades);
      }
    };
    ws.onclose = () => { if (state.ws === ws) setTimeout(connect, 1000); };
  }

  async function selectSymbol(symbol) {
    state.symbol = symbol;
    state.trades = [];
    if (state.ws) { const old = state.ws; state.ws = null; old.close(); }
    try {
      await Promise.all([loadBook(), loadCandles(), loadTrades(), loadPhase(),
        raftex.call("GET", `/v1/ticker/${symbol}`).then(renderTicker)]);
    } catch (error) { raftex.showError(error.message); }
    connect();
  }

  /* ---------------------------------------------------------------- the account */
  function signedIn(creds) {
    state.generation += 1;
    state.creds = creds;
    state.fills = []; state.fillsAfter = 0;
    if (creds) sessionStorage.setItem(CREDS_KEY, JSON.stringify(creds));
    else sessionStorage.removeItem(CREDS_KEY);
    $("signin").hidden = !!creds;
    $("who").hidden = $("signout").hidden = !creds;
    $("account").classList.toggle("signed-out", !creds);
    if (!creds) for (const id of ["open-orders", "fills", "balances"]) raftex.rows($(id).tBodies[0], []);
  }

  function button(label, onClick) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = label; b.addEventListener("click", onClick);
    return b;
  }

  async function act(what, request) {
    try {
      const answer = await request();
      $("order-result").textContent = `${what}: ${answer.status || "done"}` +
        (answer.order_id ? ` (order ${answer.order_id})` : "");
      $("order-result").className = "result good";
      refreshAccount().catch((e) => raftex.showError(`account: ${e.message}`));
      return answer;
    } catch (error) {
      $("order-result").textContent = `${what} refused: ${error.code || error.status} ${error.message}`;
      $("order-result").className = "result bad";
      return null;
    }
  }

  /* Refreshes the account tables; a call while one runs asks for one more run after it,
     so refreshes never overlap (they share the fills cursor) and none is lost. */
  function refreshAccount() {
    if (state.accountLoad) { state.accountAgain = true; return state.accountLoad; }
    state.accountLoad = (async () => {
      do { state.accountAgain = false; await loadAccount(); } while (state.accountAgain);
    })().finally(() => { state.accountLoad = null; });
    return state.accountLoad;
  }

  async function loadAccount() {
    const creds = state.creds;
    const generation = state.generation;
    if (!creds) return;
    const [account, open, balances] = await Promise.all([
      raftex.call("GET", "/v1/account", { creds }),
      raftex.call("GET", "/v1/orders", { params: { status: "open", limit: 100 }, creds }),
      raftex.call("GET", "/v1/account/balances", { creds }),
    ]);
    if (generation !== state.generation) return;  // signed out or in again meanwhile
    $("who").textContent = `signed in: ${account.account || account.id || creds.key}`;
    raftex.rows($("open-orders").tBodies[0], open.orders.map((o) => [
      String(o.order_id), o.symbol, o.side, o.price, o.qty, o.leaves, o.status,
      Object.assign(document.createElement("span"), { className: "actions" }),
    ]), (i) => ({ "data-order-id": open.orders[i].order_id }));
    open.orders.forEach((o, i) => {
      const cell = $("open-orders").tBodies[0].rows[i].lastChild.firstChild;
      cell.append(
        button("Cancel", () => act("cancel", () =>
          raftex.call("DELETE", `/v1/orders/${o.order_id}`, { creds }))),
        button("Amend", () => {
          const qty = prompt(`New quantity for order ${o.order_id}`, o.qty);
          if (qty === null) return;
          const price = prompt(`New price for order ${o.order_id}`, o.price);
          if (price === null) return;
          act("amend", () => raftex.call("PATCH", `/v1/orders/${o.order_id}`,
            { body: { symbol: o.symbol, qty, price }, creds }));
        }));
    });
    raftex.rows($("balances").tBodies[0], balances.balances.map((b) => [
      b.asset, b.available, b.held, b.total]));
    for (;;) {
      const page = await raftex.call("GET", "/v1/fills", { params: { after: state.fillsAfter, limit: 1000 }, creds });
      if (generation !== state.generation) return;
      if (page.fills.length) state.fillsAfter = page.fills[page.fills.length - 1].trade_id;
      state.fills = [...page.fills.reverse(), ...state.fills].slice(0, FILLS_SHOWN);
      if (!page.next) break;
    }
    raftex.rows($("fills").tBodies[0], state.fills.map((f) => [
      raftex.clock(f.ts_ms), f.symbol, f.side, f.price, f.qty, f.role, f.fee]));
  }

  $("signin").addEventListener("submit", async (event) => {
    event.preventDefault();
    const creds = { key: $("key-id").value.trim(), secret: $("key-secret").value.trim() };
    try {
      await raftex.call("GET", "/v1/account", { creds });
      raftex.showError("");
      signedIn(creds);
      await refreshAccount();
    } catch (error) {
      raftex.showError(`Sign-in refused: ${error.code || error.status} ${error.message}`);
    }
  });
  $("signout").addEventListener("click", () => signedIn(null));

  $("order-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!state.creds) { raftex.showError("Sign in to trade."); return; }
    const order = {
      symbol: state.symbol, side: $("side").value, type: $("type").value, tif: $("tif").value,
      qty: $("qty").value.trim(), client_order_id: `ui-${crypto.randomUUID()}`,
    };
    if ($("price").value.trim()) order.price = $("price").value.trim();
    if ($("stop-price").value.trim()) order.stop_price = $("stop-price").value.trim();
    if ($("post-only").checked) order.post_only = true;
    const placed = await act("order", () => raftex.call("POST", "/v1/orders", { body: order, creds: state.creds }));
    if (placed) refreshBook();
  });

  /* ---------------------------------------------------------------- start */
  (async () => {
    try {
      const answer = await raftex.call("GET", "/v1/instruments");
      for (const inst of answer.instruments) {
        $("symbol").append(new Option(inst.symbol, inst.symbol));
      }
      $("symbol").addEventListener("change", () => selectSymbol($("symbol").value));
      signedIn(state.creds);
      await selectSymbol($("symbol").value);
      setInterval(() => refreshAccount().catch((e) => raftex.showError(`account: ${e.message}`)), 2000);
      if (state.creds) await refreshAccount();
    } catch (error) {
      raftex.showError(error.message);
    }
  })();
})();
