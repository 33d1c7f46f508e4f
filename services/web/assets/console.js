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

  // The map's points, redrawn a while after changes arrive (the grids stay).
  const map = document.getElementById("grid-map");
  const points = document.getElementById("map-cases");
  let redraw = null;
  const SVG = "http://www.w3.org/2000/svg";

  function refreshMap() {
    if (!map || !points || redraw) return;
    redraw = setTimeout(async function () {
      redraw = null;
      const frame = ["west", "north", "xs", "ys", "h"].map(function (k) { return k + "=" + encodeURIComponent(map.dataset[k]); });
      try {
        const answer = await fetch("/board/map?region=" + encodeURIComponent(region) + "&" + frame.join("&"), { credentials: "same-origin" });
        if (!answer.ok) return;
        const drawn = [];
        for (const p of await answer.json()) {
          const link = document.createElementNS(SVG, "a");
          link.setAttribute("href", "/cases/" + encodeURIComponent(p.case_id));
          link.dataset.case = p.case_id;
          const dot = document.createElementNS(SVG, "circle");
          dot.setAttribute("class", p.class);
          dot.setAttribute("cx", p.x.toFixed(1));
          dot.setAttribute("cy", p.y.toFixed(1));
          dot.setAttribute("r", p.r.toFixed(1));
          const title = document.createElementNS(SVG, "title");
          title.textContent = p.title;
          dot.append(title);
          link.append(dot);
          drawn.push(link);
        }
        points.replaceChildren.apply(points, drawn);
      } catch (e) {
        /* the next change redraws again */
      }
    }, 1000);
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
      refreshMap();
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
  setInterval(function () { refreshCounts(); refreshMap(); }, 60000);
})();
