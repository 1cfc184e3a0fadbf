// New deletion request: fill in the due date of the regulation chosen (30 days for GDPR,
// 45 for CCPA), until the person types a date of their own. Without this script the
// field stays empty and the server applies the same default.
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var due = document.querySelector("input[data-due-dates]");
    if (!due) {
      return;
    }
    var dates = JSON.parse(due.dataset.dueDates);
    // A default sent back with a refused form is still a default: it follows the regulation.
    var defaults = Object.keys(dates).map(function (key) { return dates[key]; });
    var chosenByHand = due.value !== "" && defaults.indexOf(due.value) === -1;

    function fill() {
      var checked = document.querySelector("input[name='regulation']:checked");
      if (!chosenByHand && checked && dates[checked.value]) {
        due.value = dates[checked.value];
      }
    }

    due.addEventListener("input", function () {
      chosenByHand = due.value !== "" && defaults.indexOf(due.value) === -1;
    });
    document.querySelectorAll("input[name='regulation']").forEach(function (radio) {
      radio.addEventListener("change", fill);
    });
    fill();
  });
})();
