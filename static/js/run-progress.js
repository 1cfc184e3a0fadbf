// Live progress of a sync run: poll the run's progress JSON and update the panel.
// Text from the server is set with textContent only, never as HTML: phases and errors
// can quote what external systems sent.
(function () {
  "use strict";

  var POLL_MS = 500;
  var MAX_FAILURES = 10;
  var numberFormat = new Intl.NumberFormat(document.documentElement.lang || undefined);

  function formatNumber(value) {
    return numberFormat.format(value);
  }

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined) {
      return "—";
    }
    return seconds.toFixed(1) + " s";
  }

  function setText(panel, selector, text) {
    var element = panel.querySelector(selector);
    if (element) {
      element.textContent = text;
    }
  }

  function render(panel, data) {
    var bar = panel.querySelector("[data-field='percent']");
    var determinate = data.total > 0 || data.finished;
    if (determinate) {
      // A new phase starts again from zero: jump back rather than slide backwards.
      bar.classList.toggle("is-resetting", bar.hasAttribute("value") && data.percent < bar.value);
      bar.value = data.percent;
      bar.textContent = data.percent + "%";
      setText(panel, "[data-field='percent-text']", data.percent + "%");
    } else {
      // No total yet: an indeterminate bar that still shows the run is alive.
      bar.removeAttribute("value");
      setText(panel, "[data-field='percent-text']", "");
    }

    var badge = panel.querySelector("[data-field='status']");
    badge.textContent = data.status_label;
    badge.className = "badge badge-" + data.status;

    setText(panel, "[data-field='phase']", data.finished ? "Finished" : (data.phase || "Waiting for a worker…"));
    setText(panel, "[data-field='done-total']", data.total > 0 ? formatNumber(data.done) + " of " + formatNumber(data.total) : "");
    Object.keys(data.counts).forEach(function (name) {
      setText(panel, "[data-count='" + name + "']", formatNumber(data.counts[name]));
    });
    setText(panel, "[data-field='api-calls']", formatNumber(data.api_calls));
    panel.querySelector("[data-field='failed-box']").classList.toggle("has-failures", data.counts.failed > 0);
    panel.querySelector("[data-field='warnings-box']").classList.toggle("has-warnings", data.counts.warnings > 0);
    setText(panel, "[data-field='duration']", formatDuration(data.duration_seconds));

    var error = panel.querySelector("[data-field='error']");
    error.textContent = data.error;
    error.hidden = !data.error;

    if (data.finished) {
      panel.classList.add("is-finished");
      panel.dataset.finished = "true";
      var summary = panel.querySelector("[data-field='summary']");
      if (summary) {
        summary.hidden = false;
      }
      document.querySelectorAll("[data-run-now]").forEach(function (button) {
        button.disabled = false;
      });
    }
  }

  // The page's other sections (timings, API calls, recent runs, record errors) were
  // rendered while the run worked: once it ends, fetch the page again and swap them for
  // their final state, without reloading (which would lose the reader's place).
  function refreshSections() {
    var sections = document.querySelectorAll("[data-refresh-on-finish]");
    if (!sections.length) {
      return;
    }
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok || response.redirected) {
          throw new Error("page unavailable (HTTP " + response.status + ")");
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        sections.forEach(function (section) {
          var name = section.getAttribute("data-refresh-on-finish");
          var replacement = fresh.querySelector("[data-refresh-on-finish='" + name + "']");
          if (replacement) {
            section.replaceWith(document.importNode(replacement, true));
          }
        });
      })
      .catch(function () {
        // The sections keep what they showed; a reload brings the rest.
      });
  }

  function poll(panel) {
    var failures = 0;
    var url = panel.dataset.progressUrl;

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
          render(panel, data);
          if (!data.finished) {
            window.setTimeout(tick, POLL_MS);
          } else {
            refreshSections();
          }
        })
        .catch(function () {
          failures += 1;
          if (failures < MAX_FAILURES) {
            window.setTimeout(tick, POLL_MS * failures);
          } else {
            setText(panel, "[data-field='phase']", "Progress is unavailable; reload the page to try again.");
          }
        });
    }

    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-run-panel]").forEach(function (panel) {
      if (panel.dataset.finished !== "true") {
        poll(panel);
      }
    });
  });
})();
