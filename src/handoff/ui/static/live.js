/* The dashboard's own script (MIT, like the project): what the live pages need beyond htmx's SSE extension.
 *
 * - Lease countdowns: every <time class="countdown" datetime="..."> says, in words, how long its lease has left,
 *   rewritten each second from the datetime (so it stays right between server updates).
 * - The state of a page's stream, in words and as data-live on the element it feeds ("open", "reconnecting" or
 *   "off"), in that element's .live-state line (a polite live region): "off" is the server's own words, sent as
 *   a "live-off" event (the key holds all the streams it may); a stream that ended (a restart: its retry hint)
 *   or failed is "reconnecting" until the browser's next connection opens, which htmx's extension keeps trying.
 * - A stream that says "signed-out" (the key was revoked, or the sign-in expired) reloads the page, which the
 *   server answers with the sign-in form and the reason, as any other page would.
 * - A row or entry that arrives ("session-added": a session that started matching the filters; "entry": a new
 *   entry at the live edge) replaces the same one if the page already shows it, rather than appear twice (a
 *   fresh stream re-sends what changed since the page was rendered, which its events may also bring).
 */
(function () {
  "use strict";

  var WORDS = {
    open: "Live: changes appear here as they happen.",
    reconnecting: "Reconnecting to live updates…"
  };

  function leaseLeft(seconds) {
    if (seconds <= 0) return "lease expired";
    var minutes = Math.floor(seconds / 60);
    var rest = seconds % 60;
    if (minutes >= 60) return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min left";
    return (minutes ? minutes + " min " : "") + rest + " s left";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("time.countdown").forEach(function (element) {
      var ends = Date.parse(element.getAttribute("datetime"));
      if (isNaN(ends)) return;
      var text = leaseLeft(Math.max(0, Math.ceil((ends - now) / 1000)));
      if (element.textContent !== text) element.textContent = text;
    });
  }

  function show(element, state, words) {
    element.setAttribute("data-live", state);
    var line = element.querySelector(".live-state");
    if (line && line.textContent !== words) line.textContent = words;
  }

  // A stream that ended with its retry hint (a restart) is one the browser reconnects by itself (readyState is
  // CONNECTING): that is no error, but htmx's extension would report it as one (htmx logs every *Error event to
  // the console). Its sources keep their onerror for the failures the browser gives up on (CLOSED), which the
  // extension then retries itself.
  var createEventSource = htmx.createEventSource;
  htmx.createEventSource = function (url) {
    var source = createEventSource(url);
    var onerror = null;
    Object.defineProperty(source, "onerror", {
      get: function () { return onerror; },
      set: function (handler) { onerror = handler; }
    });
    source.addEventListener("error", function (event) {
      if (source.readyState === EventSource.CONNECTING && source.handoffElement) {
        reconnecting(source.handoffElement);
      } else if (onerror) {
        onerror.call(source, event);
      }
    });
    return source;
  };

  function reconnecting(element) {
    // Paused by the server: its words stay until a connection opens again.
    if (element.getAttribute("data-live") !== "off") show(element, "reconnecting", WORDS.reconnecting);
  }

  document.addEventListener("htmx:sseError", function (event) {
    reconnecting(event.target);
  });
  document.addEventListener("htmx:sseOpen", function (event) {
    var element = event.target;
    var source = event.detail.source;
    show(element, "open", WORDS.open);
    if (source.handoffElement) return; // onopen fires again on each of the browser's own reconnections
    source.handoffElement = element;
    source.addEventListener("signed-out", function () {
      source.close();
      window.location.reload();
    });
    source.addEventListener("live-off", function (message) {
      show(element, "off", message.data);
    });
  });
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    if (event.detail.type !== "session-added" && event.detail.type !== "entry") return;
    var parsed = document.createElement("template"); // inert: nothing in it loads or runs
    parsed.innerHTML = event.detail.data;
    var arriving = parsed.content.firstElementChild;
    var shown = arriving && arriving.id && document.getElementById(arriving.id);
    if (shown) shown.remove();
  });
  document.addEventListener("htmx:afterSwap", tick);
  tick();
  window.setInterval(tick, 1000);
})();
