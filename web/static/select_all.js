// The partner table's "select all on this page": shown only where scripts run (the table works
// without it; each row has its own checkbox).
(function () {
  var all = document.getElementById("select-all");
  if (!all) {
    return;
  }
  var rows = document.querySelectorAll('input[type="checkbox"][name="submission_id"]');
  all.parentNode.hidden = false;
  all.addEventListener("change", function () {
    rows.forEach(function (row) { row.checked = all.checked; });
  });
  rows.forEach(function (row) {
    row.addEventListener("change", function () {
      all.checked = Array.prototype.every.call(rows, function (r) { return r.checked; });
    });
  });
})();
