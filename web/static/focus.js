// The error summary of a form that came back takes the focus, so that a screen reader reads it
// first and the keyboard starts from its links. Without this file the page works the same.
(function () {
  "use strict";
  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }
}());
