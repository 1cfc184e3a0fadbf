// A deletion request's page while it is carried out: poll its progress JSON, and when
// anything changed (a system answered, an attempt failed, the request completed) fetch
// the page again and swap its live sections, without reloading. Everything shown comes
// from the server's own rendering, escaped there.
(function () {
  "use strict";

  var POLL_MS = 2000;
  var MAX_FAILURES = 10;

  function swapSections() {
    return fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok || response.redirected) {
          throw new Error("page unavailable (HTTP " + response.status + ")");
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-deletion-live]").forEach(function (section) {
          var name = section.getAttribute("data-deletion-live");
          var replacement = fresh.querySelector("[data-deletion-live='" + name + "']");
          if (replacement) {
            section.replaceWith(document.importNode(replacement, true));
          }
        });
      });
  }

  function poll(header) {
    var url = header.dataset.progressUrl;
    var version = header.dataset.version;
    var failures = 0;

    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (response) {
          var json = (response.headers.get("Content-Type") || "").indexOf("application/json") === 0;
          if (!response.ok || response.redirected || !json) {
            throw new Error("progress unavailable (HTTP " + response.status + ")");
          }
          return response.json();
        })
        .then(function (data) {
          failures = 0;
          if (data.version === version) {
            return data;
          }
          version = data.version;
          return swapSections().then(function () { return data; });
        })
        .then(function (data) {
          if (!data.completed) {
            window.setTimeout(tick, POLL_MS);
          }
        })
        .catch(function () {
          failures += 1;
          if (failures < MAX_FAILURES) {
            window.setTimeout(tick, POLL_MS * failures);
          }
        });
    }

    window.setTimeout(tick, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var header = document.querySelector("[data-deletion-live='header'][data-progress-url]");
    if (header && header.dataset.completed !== "true") {
      poll(header);
    }
  });
})();
