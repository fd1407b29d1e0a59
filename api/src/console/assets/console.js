// Switchyard console: the little that must run in the browser.
//
// An element with data-live="URL" is live: its content is re-fetched from
// URL and replaced, either when the server's event stream at data-stream
// says the task changed, or every data-every milliseconds. A region the
// user is typing in is left alone until they are done.
"use strict";
(function () {
  function refresh(el) {
    if (el.contains(document.activeElement) && document.activeElement.matches("input, textarea, select")) {
      el.dataset.pending = "1";
      return;
    }
    fetch(el.dataset.live, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) {
          el.innerHTML = html;
          el.dispatchEvent(new CustomEvent("console:refreshed", { bubbles: true }));
        }
      })
      .catch(function () {});
  }

  document.querySelectorAll("[data-live]").forEach(function (el) {
    if (!el.dataset.live) return;
    if (el.dataset.stream) {
      var stream = new EventSource(el.dataset.stream);
      stream.addEventListener("changed", function () { refresh(el); });
      stream.addEventListener("ended", function () { refresh(el); stream.close(); });
    } else if (el.dataset.every) {
      setInterval(function () { if (!document.hidden) refresh(el); }, Number(el.dataset.every));
    }
    el.addEventListener("focusout", function () {
      if (el.dataset.pending) { delete el.dataset.pending; setTimeout(function () { refresh(el); }, 0); }
    });
  });

  // Destructive forms ask first.
  document.addEventListener("submit", function (event) {
    var question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });
})();
