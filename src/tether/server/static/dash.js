// tether dashboard: live updates, no dependencies. The pages work without it.
// - a page with data-poll="ms" re-reads itself and swaps its [data-live] parts;
// - a run's page follows the run's event stream (Server-Sent Events from
//   /run/events?id=..., the API's stream at an address that reaches any id; read
//   with fetch so that every event type arrives), appends each event, and re-reads
//   the page's parts as they change.
(function () {
  "use strict";
  var body = document.body;
  // where the dashboard is mounted ("/tether" behind a proxy; "" at the site's root):
  // the addresses this script makes start with it, as the page's links do
  var root = document.documentElement.dataset.root || "";

  function say(text) {
    var live = document.getElementById("live");
    if (live && live.textContent !== text) live.textContent = text;
  }

  // the page's own address: a form's answer (a payload refused) stands at the form's
  // address, which answers no GET, and names the run's page in data-page
  function readPage() {
    return fetch(body.dataset.page || location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (res) {
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.text();
      })
      .then(function (html) { return new DOMParser().parseFromString(html, "text/html"); });
  }

  // Replace each [data-live] part that changed, except one the reader is using
  // (focus inside it), or one whose data-version says it is the same (the forms
  // of the waits: a payload being typed survives a redraw).
  function swap(doc) {
    document.querySelectorAll("[data-live][id]").forEach(function (old) {
      var fresh = doc.getElementById(old.id);
      if (!fresh) return;
      var active = document.activeElement;
      if (active && active !== document.body && old.contains(active)) return;
      if (old.dataset.version !== undefined && old.dataset.version === fresh.dataset.version) return;
      if (old.innerHTML === fresh.innerHTML) return;
      var next = document.importNode(fresh, true);
      keepOpen(old, next);
      var scrolled = boxesOf(old).map(function (b) {
        return { top: b.scrollTop, atEnd: b.scrollTop > 0 && b.scrollHeight - b.scrollTop - b.clientHeight < 4 };
      });
      old.replaceWith(next);
      keepScrolled(next, scrolled);
    });
  }

  // A box that scrolls (a long timeline, a long table) keeps where the reader scrolled
  // it through a redraw (it went back to its top at each event of the run), or its end
  // if they followed it there.
  function boxesOf(part) {
    return Array.prototype.slice.call(part.querySelectorAll(".timeline, .scroll"));
  }
  function keepScrolled(part, scrolled) {
    boxesOf(part).forEach(function (b, i) {
      var was = scrolled[i];
      if (!was) return;
      b.scrollTop = was.atEnd ? b.scrollHeight : was.top;
    });
  }

  // A toggle the reader opened or shut stays so through a redraw (a long error being
  // read folded back at the run's next event): matched by its class, else its summary.
  function keepOpen(old, next) {
    function key(d) {
      var s = d.querySelector("summary");
      return d.className || (s ? s.textContent.trim() : "");
    }
    var was = {};
    old.querySelectorAll("details").forEach(function (d) { was[key(d)] = d.open; });
    next.querySelectorAll("details").forEach(function (d) {
      var k = key(d);
      if (Object.prototype.hasOwnProperty.call(was, k)) d.open = was[k];
    });
  }

  // A long error's toggle shut from the window's foot, where it stays while the whole
  // text is open: the text folds up above the reader, who is taken back to its top
  // (else they were left screens below it, at whatever followed it on the page).
  document.addEventListener("toggle", function (ev) {
    var d = ev.target;
    if (!d.classList || !d.classList.contains("err-more") || d.open) return;
    var box = d.closest(".last-error");
    if (box && box.getBoundingClientRect().top < 0) box.scrollIntoView({ block: "start" });
  }, true);

  // Times: the server writes UTC in <time datetime>; shown in the reader's zone unless
  // they chose UTC (the footer's switch, remembered in localStorage).
  var zone = (Intl.DateTimeFormat().resolvedOptions().timeZone) || "local time";
  // a reader whose zone is UTC has nothing to switch to: no switch
  var inUtc = /^(Etc\/)?(UTC|UCT|GMT|GMT[+-]?0|Greenwich|Universal|Zulu)$/.test(zone);
  function wantUtc() {
    try { return localStorage.getItem("tether.times") === "utc"; } catch (e) { return false; }
  }
  function two(n) { return (n < 10 ? "0" : "") + n; }
  function shown(date, utc) {
    if (utc) return date.toISOString().slice(0, 19).replace("T", " ");
    return date.getFullYear() + "-" + two(date.getMonth() + 1) + "-" + two(date.getDate()) +
      " " + two(date.getHours()) + ":" + two(date.getMinutes()) + ":" + two(date.getSeconds());
  }
  function localTimes(root) {
    var utc = wantUtc();
    (root || document).querySelectorAll("time[datetime]").forEach(function (t) {
      var date = new Date(t.getAttribute("datetime"));
      if (isNaN(date.getTime())) return;
      t.textContent = shown(date, utc);
      t.title = shown(date, !utc) + (utc ? " " + zone : " UTC");
    });
    document.querySelectorAll(".tz").forEach(function (s) { s.textContent = utc ? "UTC" : zone; });
    var button = document.getElementById("tz-switch");
    if (button && !inUtc) {
      button.hidden = false;
      button.textContent = utc ? "show " + zone : "show UTC";
    }
  }
  document.addEventListener("click", function (ev) {
    if (!ev.target || ev.target.id !== "tz-switch") return;
    try { localStorage.setItem("tether.times", wantUtc() ? "local" : "utc"); } catch (e) { }
    localTimes();
  });
  localTimes();

  function refresh() {
    return readPage().then(swap).then(function () { localTimes(); });
  }

  var pending = null;
  function refreshSoon() {
    if (pending) return;
    pending = setTimeout(function () {
      pending = null;
      refresh().catch(function () { say("could not refresh; retrying with the next event"); });
    }, 250);
  }

  function poll(every) {
    function tick() {
      if (document.visibilityState !== "visible") return setTimeout(tick, every);
      refresh()
        .then(function () { say("updated " + new Date().toLocaleTimeString()); })
        .catch(function () { say("could not refresh"); })
        .then(function () { setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  // A message or detail too long for its row comes as its beginning (the server's
  // preview: text, note, size, href), written as the page writes it: the whole a link away.
  function shownCell(td, preview) {
    if (!preview) return;
    td.textContent = preview.text;
    var mark = document.createElement("span");
    mark.className = "cut-mark";
    mark.textContent = "\u2026";
    var link = document.createElement("a");
    link.className = "value-whole";
    link.href = root + preview.href;
    link.title = preview.note;
    link.textContent = "whole (" + preview.size + ")";
    td.appendChild(mark);
    td.appendChild(document.createTextNode(" "));
    td.appendChild(link);
  }

  function addEvent(e) {
    var tbody = document.getElementById("events-body");
    if (!tbody || tbody.querySelector('tr[data-seq="' + e.seq + '"]')) return;
    var box = tbody.closest(".events-box");
    var atEnd = box && box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    var tr = document.createElement("tr");
    tr.dataset.seq = e.seq;
    tr.className = "fresh";
    cell(tr, String(e.seq), "num");
    var at = document.createElement("time");
    at.setAttribute("datetime", e.at);
    cell(tr, "").appendChild(at);
    var code = document.createElement("code");
    code.textContent = e.type;
    cell(tr, "").appendChild(code);
    shownCell(cell(tr, e.message || ""), e.message_preview);
    shownCell(cell(tr, e.detail === null || e.detail === undefined ? "" : JSON.stringify(e.detail), "detail"),
              e.detail_preview);
    tbody.appendChild(tr);
    localTimes(tr);
    if (atEnd) box.scrollTop = box.scrollHeight;
  }

  // the stream's own end is the frame "event: end" with no id: a run's own event of
  // type "end" (wf.append_event("end")) carries its seq as its id, and is an event
  function parseFrame(frame) {
    var out = { event: "message", data: "", id: null };
    frame.split("\n").forEach(function (line) {
      if (!line || line.charAt(0) === ":") return;
      var at = line.indexOf(":");
      var field = at < 0 ? line : line.slice(0, at);
      var value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
      if (field === "event") out.event = value;
      else if (field === "id") out.id = value;
      else if (field === "data") out.data += (out.data ? "\n" : "") + value;
    });
    return out.data ? out : null;
  }

  function follow(runId) {
    var after = Number(body.dataset.lastSeq || 0);
    var ended = false;
    var url = function () {
      // the API's stream (/api/v1/runs/{id}/events/stream) at the dashboard's address
      // that takes the id in the query: a browser resolves an id such as ".." in a path
      return root + "/run/events?id=" + encodeURIComponent(runId) + "&after=" + after;
    };
    function onFrame(frame) {
      var ev = parseFrame(frame);
      if (!ev) return;
      if (ev.event === "end" && ev.id === null) {
        ended = true;
      } else {
        var e = JSON.parse(ev.data);
        if (e.seq > after) after = e.seq;
        addEvent(e);
      }
      refreshSoon();
    }
    function read(reader, buffer) {
      return reader.read().then(function (got) {
        if (got.done) return;
        buffer += got.value.replace(/\r\n/g, "\n");
        var cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          onFrame(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
        }
        return read(reader, buffer);
      });
    }
    function connect() {
      say("live");
      fetch(url(), { credentials: "same-origin", headers: { Accept: "text/event-stream" } })
        .then(function (res) {
          if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
          return read(res.body.pipeThrough(new TextDecoderStream()).getReader(), "");
        })
        .catch(function () { say("connection lost; reconnecting"); })
        .then(function () {
          if (ended) {
            say("(the run has ended)");
            refreshSoon();
          } else {
            setTimeout(connect, 2000);
          }
        });
    }
    connect();
  }

  // a payload refused, shown again in its field (focused): the caret at its end, where
  // the fix of a text cut short goes, not before its first character
  var refused = document.querySelector('textarea[aria-invalid="true"]');
  if (refused) refused.setSelectionRange(refused.value.length, refused.value.length);
  if (body.dataset.run && body.dataset.ended !== "true") follow(body.dataset.run);
  if (body.dataset.poll) poll(Number(body.dataset.poll));
})();
