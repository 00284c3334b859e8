// Progressive enhancement: the form works without this file. With it, a draft is saved in the
// background a few seconds after the last change, and the result is announced politely.
(function () {
  "use strict";
  var form = document.querySelector("form[data-autosave]");
  if (!form || !window.fetch || !window.FormData) { return; }
  var status = document.getElementById("autosave-status");
  var version = form.querySelector("input[name=version]");
  var timer = null, dirty = false, busy = false;
  var lang = document.documentElement.lang;
  var text = lang === "en"
    ? {saved: "Draft saved at ", conflict: "Someone else saved this report meanwhile. Your changes are not saved yet: please save by hand.", failed: "Could not save automatically. Please save by hand."}
    : {saved: "Entwurf gespeichert um ", conflict: "Jemand anderes hat den Bericht inzwischen gespeichert. Ihre Änderungen sind noch nicht gespeichert: bitte speichern Sie von Hand.", failed: "Automatisches Speichern nicht möglich. Bitte speichern Sie von Hand."};

  function save() {
    if (!dirty || busy) { return; }
    busy = true; dirty = false;
    var data = new FormData(form);
    data.set("action", "autosave");
    form.querySelectorAll("input[type=file]").forEach(function (input) { data.delete(input.name); });
    fetch(form.dataset.autosave, {method: "POST", body: data, credentials: "same-origin",
                                  headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (response.status === 409) { status.textContent = text.conflict; return null; }
        if (!response.ok) { throw new Error(response.status); }
        return response.json();
      })
      .then(function (result) {
        if (!result) { return; }
        version.value = result.version;
        var now = new Date();
        status.textContent = text.saved + now.toTimeString().slice(0, 5);
      })
      .catch(function () { status.textContent = text.failed; dirty = true; })
      .finally(function () { busy = false; });
  }

  function changed() {
    dirty = true;
    clearTimeout(timer);
    timer = setTimeout(save, 3000);
  }
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  form.addEventListener("submit", function () { clearTimeout(timer); dirty = false; });

  var summary = document.getElementById("error-summary") || document.getElementById("conflict");
  if (summary) { summary.focus(); }
})();
