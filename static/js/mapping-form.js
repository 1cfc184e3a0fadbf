// The mapping form without the clutter: only the chosen system's fields in the field
// list, and only the chosen transform's settings in each chain row. Without this
// script every choice is shown and the server still checks each one.
(function () {
  "use strict";
  var form = document.querySelector("[data-mapping-form]");
  if (!form) { return; }

  var connection = form.querySelector("select[name=connection]");
  var external = form.querySelector("select[name=external_field]");

  function showConnectionFields() {
    if (!connection || !external) { return; }
    var chosen = connection.value + ":";
    Array.prototype.forEach.call(external.querySelectorAll("option"), function (option) {
      var other = option.value !== "" && option.value.indexOf(chosen) !== 0;
      option.hidden = other;
      option.disabled = other;
      if (other && option.selected) { external.value = ""; }
    });
    Array.prototype.forEach.call(external.querySelectorAll("optgroup"), function (group) {
      group.hidden = group.querySelectorAll("option:not([hidden])").length === 0;
    });
  }

  function showRowParams(row) {
    var name = row.querySelector("select[name$='-name']");
    var chosen = name ? name.value : "";
    Array.prototype.forEach.call(row.querySelectorAll("[data-params-for]"), function (group) {
      group.hidden = group.getAttribute("data-params-for") !== chosen;
    });
  }

  var hubField = form.querySelector("select[name=hub_field]");
  var attribute = form.querySelector("input[name=attribute_name]");
  function showAttributeName() {
    if (!hubField || !attribute) { return; }
    var wrapper = attribute.closest(".form-field");
    if (wrapper) { wrapper.hidden = hubField.value !== "__custom__"; }
  }

  if (connection) { connection.addEventListener("change", showConnectionFields); }
  if (hubField) { hubField.addEventListener("change", showAttributeName); }
  Array.prototype.forEach.call(form.querySelectorAll("[data-chain-row]"), function (row) {
    var name = row.querySelector("select[name$='-name']");
    if (name) { name.addEventListener("change", function () { showRowParams(row); }); }
    showRowParams(row);
  });
  showConnectionFields();
  showAttributeName();
})();
