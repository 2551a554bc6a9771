// Staff orders list: a "select all" box and a count of the ticked orders for the
// bulk move. Without this script every order is ticked one by one; nothing else changes.
(function () {
  "use strict";

  var all = document.querySelector("[data-select-all]");
  if (!all) return;
  var wrap = document.querySelector("[data-select-all-wrap]");
  var fallback = document.querySelector("[data-select-all-fallback]");
  var count = document.querySelector("[data-selected-count]");

  function boxes() {
    return Array.prototype.slice.call(document.querySelectorAll('input[type="checkbox"][name="order_id"]'));
  }

  function sync() {
    var list = boxes();
    var ticked = list.filter(function (box) { return box.checked; }).length;
    all.checked = ticked > 0 && ticked === list.length;
    all.indeterminate = ticked > 0 && ticked < list.length;
    if (count) {
      count.textContent = ticked === 0 ? "No orders ticked." : ticked === 1 ? "1 order ticked." : ticked + " orders ticked.";
      count.hidden = false;
    }
  }

  all.addEventListener("change", function () {
    boxes().forEach(function (box) { box.checked = all.checked; });
    sync();
  });
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target && target.name === "order_id") sync();
  });

  if (wrap) wrap.hidden = false;
  if (fallback) fallback.hidden = true;
  sync();
})();
