(function () {
  "use strict";
  // Nothing here is needed to read the page: it adds expand/collapse-all buttons, opens the
  // disclosures that hold a linked finding, and expands everything for printing.
  var all = function () { return Array.prototype.slice.call(document.querySelectorAll("details")); };
  var tools = document.querySelector(".tools");
  if (tools) {
    tools.hidden = false;
    tools.addEventListener("click", function (ev) {
      var act = ev.target && ev.target.getAttribute ? ev.target.getAttribute("data-act") : null;
      if (act) { all().forEach(function (d) { d.open = act === "open"; }); }
    });
  }
  var reveal = function () {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id ? document.getElementById(id) : null;
    for (var p = el; p; p = p.parentElement) { if (p.tagName === "DETAILS") { p.open = true; } }
    if (el) { el.scrollIntoView(); }
  };
  window.addEventListener("hashchange", reveal);
  if (location.hash) { reveal(); }
  var closed = [];
  window.addEventListener("beforeprint", function () {
    closed = all().filter(function (d) { return !d.open; });
    closed.forEach(function (d) { d.open = true; });
  });
  window.addEventListener("afterprint", function () { closed.forEach(function (d) { d.open = false; }); closed = []; });
}());
