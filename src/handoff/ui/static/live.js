/* The dashboard's own script (MIT, like the project): what the live pages need beyond htmx's SSE extension.
 *
 * - Lease countdowns: every <time class="countdown" datetime="..."> says, in words, how long its lease has left,
 *   rewritten each second from the datetime (so it stays right between server updates).
 * - The element a stream feeds says whether it is connected (data-live="open" or "closed"), for styles and tests.
 * - A stream that says "signed-out" (the key was revoked, or the sign-in expired) reloads the page, which the
 *   server answers with the sign-in form and the reason, as any other page would.
 */
(function () {
  "use strict";

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

  document.addEventListener("htmx:sseError", function (event) {
    event.target.setAttribute("data-live", "closed");
  });
  document.addEventListener("htmx:sseOpen", function (event) {
    event.target.setAttribute("data-live", "open");
    event.detail.source.addEventListener("signed-out", function () {
      event.detail.source.close();
      window.location.reload();
    });
  });
  document.addEventListener("htmx:afterSwap", tick);
  tick();
  window.setInterval(tick, 1000);
})();
