// Uploads with a progress bar and drag-and-drop. Without this script the forms
// post as plain multipart forms and work the same, only without progress.
(function () {
  "use strict";

  function human(n) {
    var units = ["bytes", "KB", "MB", "GB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }

  function init(root) {
    root.querySelectorAll("form[data-upload]").forEach(function (form) {
      var input = form.querySelector('input[type="file"]');
      var zone = form.querySelector("[data-dropzone]");
      var box = form.querySelector("[data-progress]");
      var bar = box && box.querySelector("progress");
      var text = box && box.querySelector("[data-progress-text]");
      var errorBox = form.querySelector("[data-upload-error]");
      var submit = form.querySelector('button[type="submit"]');
      var max = Number(form.getAttribute("data-max-bytes") || 0);

      function refuse(message) {
        if (!errorBox) return;
        errorBox.textContent = message;
        errorBox.hidden = false;
        errorBox.setAttribute("tabindex", "-1");
        errorBox.focus();
      }

      if (zone && input) {
        ["dragenter", "dragover"].forEach(function (name) {
          zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.add("dropzone-active"); });
        });
        ["dragleave", "drop"].forEach(function (name) {
          zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.remove("dropzone-active"); });
        });
        zone.addEventListener("drop", function (e) {
          if (e.dataTransfer && e.dataTransfer.files.length) { input.files = e.dataTransfer.files; }
        });
      }

      form.addEventListener("submit", function (e) {
        if (!window.FormData || !window.XMLHttpRequest || !input) return;
        e.preventDefault();
        var file = input.files && input.files[0];
        if (!file) { refuse("Choose a file to upload."); return; }
        if (max && file.size > max) { refuse("The file is larger than the limit of " + human(max) + "."); return; }
        if (errorBox) errorBox.hidden = true;
        var xhr = new XMLHttpRequest();
        xhr.open("POST", form.action);
        xhr.setRequestHeader("X-Portal-Upload", "1");
        xhr.upload.addEventListener("progress", function (ev) {
          if (!ev.lengthComputable) return;
          var percent = Math.floor((ev.loaded * 100) / ev.total);
          bar.value = percent;
          text.textContent = percent + "% · " + human(ev.loaded) + " of " + human(ev.total);
        });
        xhr.upload.addEventListener("load", function () {
          bar.value = 100;
          text.textContent = "Checking and storing the file…";
        });
        xhr.addEventListener("load", function () {
          var type = xhr.getResponseHeader("Content-Type") || "";
          if (xhr.status === 200 && type.indexOf("application/json") === 0) {
            try {
              var to = JSON.parse(xhr.responseText).location;
              var target = new URL(to, window.location.href);
              if (target.origin === window.location.origin) { window.location.assign(target.href); return; }
            } catch (err) { /* fall through to the generic message */ }
          }
          // A refused upload answers with the form and its message: show that page's content.
          if (type.indexOf("text/html") === 0) {
            var page = new DOMParser().parseFromString(xhr.responseText, "text/html");
            var fresh = page.querySelector("main");
            var current = document.querySelector("main");
            if (fresh && current) {
              current.replaceWith(document.adoptNode(fresh));
              init(fresh);
              var shown = fresh.querySelector("[data-upload-error]:not([hidden])") || fresh.querySelector("h1");
              if (shown) { shown.setAttribute("tabindex", "-1"); shown.focus(); }
              return;
            }
          }
          finish();
          refuse("The upload failed (" + xhr.status + "). Please try again.");
        });
        xhr.addEventListener("error", function () {
          finish();
          refuse("The upload was interrupted. Check your connection and try again.");
        });
        function finish() {
          box.hidden = true;
          if (submit) submit.disabled = false;
        }
        bar.value = 0;
        text.textContent = "Starting…";
        box.hidden = false;
        if (submit) submit.disabled = true;
        xhr.send(new FormData(form));
      });
    });
  }

  init(document);
})();
