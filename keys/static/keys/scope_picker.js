// The API-key scope picker: a search box above the 49 permissions, hiding the boxes (and emptied areas) that do
// not match. A file, not inline: the CSP allows only the site's own scripts. Without it every box shows.
"use strict";
// Loaded in the page's head (form media): waits for the page.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("div.kw-scope-picker, ul.kw-scope-picker").forEach(function (picker) {
    var search = document.createElement("input");
    search.type = "search";
    search.placeholder = "Find a scope (e.g. convai, voices, read)";
    search.className = "kw-scope-search";
    search.setAttribute("aria-label", "Find a scope");
    picker.parentNode.insertBefore(search, picker);
    search.addEventListener("input", function () {
      var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      picker.querySelectorAll("input[type=checkbox]").forEach(function (box) {
        var text = (box.value + " " + (box.parentNode.textContent || "")).toLowerCase();
        var shown = words.every(function (w) { return text.indexOf(w) !== -1; });
        var item = box.closest("div") || box.parentNode;
        item.hidden = !shown && !box.checked;
      });
      picker.querySelectorAll(":scope > div").forEach(function (group) {
        var boxes = group.querySelectorAll("input[type=checkbox]");
        if (!boxes.length) { return; }
        var anyShown = Array.prototype.some.call(boxes, function (box) {
          return !(box.closest("div") || box.parentNode).hidden;
        });
        group.hidden = !anyShown;
      });
    });
  });
});
