// The show-once page of a new API key: copy the secret to the clipboard (a file, not inline: the CSP allows
// only the site's own scripts).
"use strict";
(function () {
  var button = document.getElementById("copy-secret");
  if (!button) {
    return;
  }
  button.addEventListener("click", function () {
    var field = document.getElementById("api-key-secret");
    var result = document.getElementById("copy-result");
    field.select();
    var fallback = function () {
      var copied = document.execCommand && document.execCommand("copy");
      result.textContent = copied ? "Copied." : "Select the key and copy it by hand.";
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(field.value).then(function () { result.textContent = "Copied."; }, fallback);
    } else {
      fallback();
    }
  });
})();
