// arcmill console: progressive enhancement only. Every form also works
// without this script (it then shows the API's JSON answer).
(function () {
  "use strict";
  var base = document.querySelector('meta[name="base"]').content;
  var csrf = document.querySelector('meta[name="csrf-token"]').content;

  function flash(msg, bad) {
    var el = document.getElementById("flash");
    if (!el) return;
    el.textContent = msg;
    el.className = bad ? "bad" : "";
    el.hidden = false;
  }

  // Mutations go through the JSON API with the CSRF header.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var kind = form.getAttribute("data-api");
    if (!kind) return;
    ev.preventDefault();
    var body = new URLSearchParams(new FormData(form));
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    fetch(form.action, {
      method: "POST", credentials: "same-origin", body: body,
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" }
    }).then(function (res) {
      return res.json().then(function (data) { return { ok: res.ok, data: data }; });
    }).then(function (r) {
      buttons.forEach(function (b) { b.disabled = false; });
      if (!r.ok) { flash(r.data.error || "failed", true); return; }
      if (kind === "redrive") { location.href = base + "/tasks/" + r.data.id; return; }
      if (kind === "purge") { flash("Purged " + r.data.purged + " dead letter(s)."); setTimeout(function () { location.reload(); }, 800); return; }
      if (kind === "cancel") { flash("Stopping…"); }
      if (kind === "parked") { flash(r.data.message); setTimeout(function () { location.reload(); }, 800); return; }
    }).catch(function (err) {
      buttons.forEach(function (b) { b.disabled = false; });
      flash(String(err), true);
    });
  });

  // A running task's page follows its progress until it ends.
  var task = document.getElementById("task");
  if (task && task.getAttribute("data-state") === "running") {
    var id = task.getAttribute("data-task");
    var poll = function () {
      fetch(base + "/api/tasks/" + encodeURIComponent(id), { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (res) { return res.json(); })
        .then(function (t) {
          document.getElementById("task-progress").value = t.moved;
          document.getElementById("task-moved").textContent = t.moved;
          document.getElementById("task-skipped").textContent = t.skipped;
          document.getElementById("task-error").textContent = t.error || "";
          var st = document.getElementById("task-state");
          st.textContent = t.state;
          st.className = "state-" + t.state;
          task.setAttribute("data-state", t.state);
          if (t.state === "running") { setTimeout(poll, 500); } else { document.getElementById("task-cancel").hidden = true; }
        })
        .catch(function () { setTimeout(poll, 2000); });
    };
    setTimeout(poll, 300);
  }

  // "/" focuses the search box, as on most consoles.
  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "/" || /input|select|textarea/i.test(document.activeElement.tagName)) return;
    var q = document.getElementById("filter-q");
    if (q) { ev.preventDefault(); q.focus(); }
  });
})();

// The live tail: Server-Sent Events from /api/tail, newest first, at most
// 500 kept. Text only (textContent), never HTML from an event.
(function () {
  "use strict";
  var status = document.getElementById("tail-status");
  var list = document.getElementById("tail");
  if (!status || !list || !window.EventSource) return;
  var base = document.querySelector('meta[name="base"]').content;
  var url = base + "/api/tail?stream=" + encodeURIComponent(status.getAttribute("data-stream")) +
    "&pattern=" + encodeURIComponent(status.getAttribute("data-pattern") || "*");
  var es = new EventSource(url, { withCredentials: true });
  es.addEventListener("ready", function (ev) {
    var d = JSON.parse(ev.data);
    status.textContent = "Following " + d.stream + " for " + d.pattern + ": new events appear here.";
    status.setAttribute("data-ready", "true");
  });
  es.addEventListener("event", function (ev) {
    var e = JSON.parse(ev.data);
    var li = document.createElement("li");
    li.className = "tail-event";
    var head = document.createElement("strong");
    head.textContent = e.type;
    li.appendChild(head);
    li.appendChild(document.createTextNode("  " + (e.eventId || e.entryId) + "  " + (e.time || "") +
      (e.correlationId ? "  correlation " + e.correlationId : "")));
    if (e.event) {
      var pre = document.createElement("pre");
      pre.textContent = JSON.stringify(e.event, null, 2);
      li.appendChild(pre);
    }
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 500) list.removeChild(list.lastChild);
  });
  es.addEventListener("failure", function (ev) { status.textContent = "Failed: " + JSON.parse(ev.data); });
  es.onerror = function () { if (status.getAttribute("data-ready")) status.textContent = "Reconnecting…"; };
})();
