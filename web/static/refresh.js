// The cycle overview refreshes itself: it polls a small version and, when that changes, fetches
// the page again and swaps the figures, keeping focus where it is. Without JavaScript the page
// keeps its "Aktualisieren" link and the time of its figures.
(function () {
  "use strict";
  var INTERVAL = 10000;
  var timer = null;
  var busy = false;
  var GONE = "signed out or gone";  // polling stops; a network hiccup only skips a round

  function region() { return document.getElementById("overview-figures"); }

  function focusKey(element, within) {
    // Where focus is, as "n-th focusable element of the region" plus its text, to find it again.
    var items = within.querySelectorAll("a, button, input, select, textarea, summary, [tabindex]");
    for (var i = 0; i < items.length; i++) {
      if (items[i] === element) { return { index: i, text: element.textContent }; }
    }
    return null;
  }

  function restoreFocus(key, within) {
    var items = within.querySelectorAll("a, button, input, select, textarea, summary, [tabindex]");
    var match = null;
    for (var i = 0; i < items.length && !match; i++) {
      if (items[i].textContent === key.text) { match = items[i]; }
    }
    match = match || items[Math.min(key.index, items.length - 1)];
    if (match) { match.focus({ preventScroll: true }); }
  }

  function announce() {
    var live = document.getElementById("overview-announce");
    if (!live) { return; }
    live.textContent = "";
    window.setTimeout(function () { live.textContent = live.getAttribute("data-message"); }, 100);
  }

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    var next = fresh.getElementById("overview-figures");
    var current = region();
    if (!next || !current) { return; }
    var open = {};
    current.querySelectorAll("details[id]").forEach(function (d) { open[d.id] = d.open; });
    var key = current.contains(document.activeElement) ? focusKey(document.activeElement, current) : null;
    current.innerHTML = next.innerHTML;
    current.setAttribute("data-version", next.getAttribute("data-version"));
    current.querySelectorAll("details[id]").forEach(function (d) {
      if (d.id in open) { d.open = open[d.id]; }
    });
    var stamp = document.querySelector(".live-bar p");
    var freshStamp = fresh.querySelector(".live-bar p");
    if (stamp && freshStamp) { stamp.innerHTML = freshStamp.innerHTML; }
    if (key) { restoreFocus(key, current); }
    announce();
  }

  function check() {
    var current = region();
    if (!current || busy || document.visibilityState === "hidden") { return; }
    busy = true;
    fetch(current.getAttribute("data-live-url"), { credentials: "same-origin", cache: "no-store",
                                                    headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok || response.redirected) { throw new Error(GONE); }
        return response.json();
      })
      .then(function (data) {
        if (data.version === current.getAttribute("data-version")) { return null; }
        return fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
          .then(function (response) {
            if (!response.ok || response.redirected) { throw new Error(GONE); }
            return response.text();
          })
          .then(swap);
      })
      .catch(function (error) { if (error && error.message === GONE) { stop(); } })
      .then(function () { busy = false; });
  }

  function start() {
    if (timer === null) { timer = window.setInterval(check, INTERVAL); }
  }

  function stop() {
    if (timer !== null) { window.clearInterval(timer); timer = null; }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") { stop(); } else { check(); start(); }
  });

  if (region()) { start(); }
}());
