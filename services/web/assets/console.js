// gridcase console: the board's live feed and counts. No framework, nothing
// fetched from elsewhere; text is inserted as text (never as HTML).
"use strict";

(function () {
  const feed = document.getElementById("feed");
  if (!feed) return;
  const township = feed.dataset.township;
  const region = feed.dataset.region || "";
  const state = document.getElementById("live-state");
  // Where the page's counts were taken: the feed resumes right after it.
  let lastId = Number(feed.dataset.after) || 0;
  let source = null;
  let refresh = null;

  function live(on) {
    if (!state) return;
    state.textContent = on ? state.dataset.on : state.dataset.off;
    state.className = on ? "on" : "off";
    document.body.dataset.live = on ? "on" : "off";
  }

  function refreshCounts() {
    if (refresh) return;
    refresh = setTimeout(async function () {
      refresh = null;
      try {
        const answer = await fetch("/board/counts?region=" + encodeURIComponent(region), { credentials: "same-origin" });
        if (!answer.ok) return;
        const counts = await answer.json();
        for (const [id, value] of Object.entries(counts)) {
          const cell = id === "as_of" ? document.getElementById("as-of") : document.getElementById("count-" + id);
          if (cell) cell.textContent = value;
        }
      } catch (e) {
        /* the next change refreshes again */
      }
    }, 300);
  }

  function show(change) {
    const item = document.createElement("li");
    item.dataset.case = change.case_id;
    item.dataset.sequence = change.sequence;
    item.dataset.type = change.event_type;
    const when = document.createElement("time");
    when.textContent = change.occurred_at;
    const what = document.createElement("strong");
    what.textContent = change.words;
    const link = document.createElement("a");
    link.href = "/cases/" + encodeURIComponent(change.case_id);
    link.textContent = change.case_id.slice(0, 8);
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = change.actor + " " + change.organisation;
    item.append(when, " ", what, " ", link, " ", who);
    feed.prepend(item);
    while (feed.children.length > 200) feed.lastElementChild.remove();
  }

  function connect() {
    const url = "/live?township=" + encodeURIComponent(township) + (lastId ? "&after=" + lastId : "");
    source = new EventSource(url);
    source.addEventListener("ready", function () { live(true); });
    source.addEventListener("change", function (e) {
      lastId = Math.max(lastId, Number(e.lastEventId) || 0);
      show(JSON.parse(e.data));
      refreshCounts();
    });
    source.addEventListener("signin", function () {
      source.close();
      window.location = "/signin?expired=1&next=" + encodeURIComponent(window.location.pathname + window.location.search);
    });
    source.addEventListener("end", function () {
      // The watch ended (a service restarting): start again after the last change seen.
      source.close();
      live(false);
      setTimeout(connect, 1500);
    });
    source.addEventListener("error", function () {
      live(false);
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 1500);
    });
  }

  connect();
  // Time alone moves cases (due today, overdue): refresh the counts each minute too.
  setInterval(refreshCounts, 60000);
})();
