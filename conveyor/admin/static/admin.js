// Conveyor admin: live refresh over server-sent events, tree toggles, bulk selection.
// Plain script, no build step; htmx does the requests.
(function () {
  "use strict";

  function refreshLive(tick) {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      if (el.querySelector("input[type=checkbox]:checked")) return; // keep a selection in progress
      var ids = el.dataset.liveIds;
      if (ids && !tick.all) {
        var wanted = ids.split(" ");
        if (!tick.ids.some(function (id) { return wanted.indexOf(id) >= 0; })) return;
      }
      htmx.trigger(el, "refresh");
    });
  }

  function connect() {
    var url = document.body.dataset.events;
    var status = document.getElementById("live-status");
    if (!url || !window.EventSource) return;
    var source = new EventSource(url);
    source.addEventListener("open", function () { status && status.classList.add("on"); });
    source.addEventListener("error", function () { status && status.classList.remove("on"); });
    source.addEventListener("tick", function (event) { refreshLive(JSON.parse(event.data)); });
  }

  function updateSelection(form) {
    var checked = form.querySelectorAll("input[name=ids]:checked").length;
    form.querySelectorAll(".needs-selection").forEach(function (b) { b.disabled = checked === 0; });
    var label = form.querySelector("#selected-count");
    if (label) label.textContent = checked ? checked + " selected" : "Select jobs to act on them";
  }

  document.addEventListener("change", function (event) {
    var form = event.target.closest("#bulk");
    if (!form) return;
    if (event.target.id === "select-all") {
      form.querySelectorAll("input[name=ids]").forEach(function (box) { box.checked = event.target.checked; });
    }
    updateSelection(form);
  });

  // "All matching" buttons send scope=matching and the confirmation flag.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("#bulk button[type=submit]");
    if (!button) return;
    var matching = button.dataset.scope === "matching";
    document.getElementById("bulk-scope").value = matching ? "matching" : "selected";
    document.querySelectorAll("#bulk .matching-only").forEach(function (el) { el.disabled = !matching; });
  }, true);

  // Tree toggles: the first click loads the level below (htmx); later clicks fold it.
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest(".toggle");
    if (!toggle) return;
    var box = toggle.closest("li").querySelector(".tree-children");
    var open = toggle.getAttribute("aria-expanded") === "true";
    if (open) {
      event.preventDefault(); event.stopPropagation();
      box.hidden = true; toggle.setAttribute("aria-expanded", "false"); toggle.textContent = "▸";
    } else if (box.childElementCount) {
      event.preventDefault(); event.stopPropagation();
      box.hidden = false; toggle.setAttribute("aria-expanded", "true"); toggle.textContent = "▾";
    } else {
      toggle.setAttribute("aria-expanded", "true"); toggle.textContent = "▾";
    }
  }, true);

  // After a bulk action, refresh the lists so they show the new states.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target.id === "notice" && event.target.querySelector("[data-refresh-after]")) {
      document.querySelectorAll("#bulk input[name=ids]:checked").forEach(function (b) { b.checked = false; });
      refreshLive({ ids: [], all: true });
    }
  });

  document.addEventListener("DOMContentLoaded", connect);
})();
