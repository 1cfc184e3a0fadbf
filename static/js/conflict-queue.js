// The review queue's bulk form: a "select all" box, and the typed value shown only
// when "Type a value" is chosen. Without this script the form still works.
(function () {
  "use strict";

  function init() {
    var form = document.querySelector("[data-bulk-form]");
    if (!form) {
      return;
    }
    var selectAll = form.querySelector("[data-select-all]");
    var boxes = form.querySelectorAll("input[name='conflicts']");
    if (selectAll) {
      selectAll.addEventListener("change", function () {
        boxes.forEach(function (box) {
          box.checked = selectAll.checked;
        });
      });
      boxes.forEach(function (box) {
        box.addEventListener("change", function () {
          var checked = form.querySelectorAll("input[name='conflicts']:checked").length;
          selectAll.checked = checked === boxes.length;
          selectAll.indeterminate = checked > 0 && checked < boxes.length;
        });
      });
    }
    var keep = form.querySelector("[data-keep]");
    var typed = form.querySelector("[data-typed-value]");
    if (keep && typed) {
      var label = typed.closest("label");
      var update = function () {
        label.hidden = keep.value !== "typed";
      };
      keep.addEventListener("change", update);
      update();
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
