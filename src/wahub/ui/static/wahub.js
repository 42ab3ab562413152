// wahub dashboard: small progressive enhancement in plain JavaScript (no build step).
// Every page works without it; it adds the live parts: the 24-hour window countdowns,
// and delivery ticks that change as statuses arrive on /ui/stream (server-sent events).
"use strict";

(function () {
  const TICKS = {
    queued: "\u25f7", sending: "\u25f7", uncertain: "?", sent: "\u2713",
    delivered: "\u2713\u2713", read: "\u2713\u2713", failed: "\u2717",
  };

  function countdownText(until) {
    const left = Math.floor(until - Date.now() / 1000);
    if (!until || left <= 0) return "closed";
    const minutes = Math.floor(left / 60);
    return "closes in " + Math.floor(minutes / 60) + " h " + String(minutes % 60).padStart(2, "0") + " min";
  }

  function tickCountdowns() {
    for (const el of document.querySelectorAll(".countdown[data-until]")) {
      const until = parseFloat(el.dataset.until);
      el.textContent = countdownText(isNaN(until) ? 0 : until);
    }
  }

  function applyStatus(event) {
    const el = document.querySelector('.tick[data-message-id="' + CSS.escape(event.message_id) + '"]');
    if (!el) return;
    el.dataset.status = event.status;
    el.title = event.status;
    el.textContent = TICKS[event.status] || event.status;
  }

  function listen() {
    const thread = document.getElementById("thread");
    if (!document.querySelector(".tick[data-message-id]") || !window.EventSource) return;
    const source = new EventSource("/ui/stream");
    source.onmessage = function (message) {
      let event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      if (event.type === "message.status") applyStatus(event);
      // A new message in this chat: show it (the page is the thread as the server has it).
      if (thread && event.type === "message.received" && event.chat_id === thread.dataset.chatId) {
        window.location.reload();
      }
    };
  }

  // Parts the server draws and that change by themselves (a campaign's funnel, a web
  // channel's QR and session state): fetch the fragment at data-refresh again every two
  // seconds. A funnel's counters change with every status, too often for one event each.
  function refreshFragments() {
    if (!window.fetch) return;
    for (const box of document.querySelectorAll("[data-refresh]")) {
      setInterval(function () {
        fetch(box.dataset.refresh, { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) { if (html !== null && html !== box.innerHTML) box.innerHTML = html; })
          .catch(function () { /* the next round tries again */ });
      }, 2000);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    refreshFragments();
    if (document.querySelector(".countdown[data-until]")) {
      tickCountdowns();
      setInterval(tickCountdowns, 1000);
    }
    listen();
  });
})();
