// Tell the server the browser's time zone (the `tz` cookie, read by UserTimezoneMiddleware) so
// times are shown in the user's zone. Reload once when the zone was unknown or has changed.
(function () {
  "use strict";
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (error) {
    return;
  }
  // IANA names ("America/New_York", "Etc/GMT+5") are cookie-safe as they are; the server does
  // not URL-decode cookies, so the value is sent raw and anything else is ignored.
  if (!zone || !/^[A-Za-z0-9_+\/-]{1,64}$/.test(zone)) {
    return;
  }
  var wanted = "tz=" + zone;
  var cookies = document.cookie.split("; ");
  if (cookies.indexOf(wanted) !== -1) {
    return;
  }
  document.cookie = wanted + "; path=/; max-age=31536000; SameSite=Lax";
  var stored = document.cookie.split("; ").indexOf(wanted) !== -1;
  if (stored && document.querySelector("time")) {
    window.location.reload();
  }
})();

// Behaviour that would otherwise sit in inline handlers or htmx filters, which the
// Content-Security-Policy forbids (no inline script, no eval).
(function () {
  "use strict";
  // <button data-empty-closest=".case-more">: empty the nearest ancestor matching the selector.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-empty-closest]");
    if (!button) {
      return;
    }
    var container = button.closest(button.getAttribute("data-empty-closest"));
    if (container) {
      container.replaceChildren();
    }
  });
  // hx-trigger="every Ns" data-poll-while-visible: skip the poll while the tab is hidden.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var poller = event.detail.elt;
    if (document.visibilityState !== "visible" && poller.hasAttribute("data-poll-while-visible")) {
      event.preventDefault();
    }
  });
})();

// Working a list from the keyboard: a container marked data-key-list="<selector>" holds the rows
// the selector names. j/k or the arrow keys move between rows, x or Space selects the current row (its
// checkbox), and a key named by an element's data-key attribute inside the row clicks that element
// (e.g. data-key="a" on an Acknowledge button, data-key="Enter" on a Details button). Escape hides
// the current row's details. Nothing fires while the person types in a field.
(function () {
  "use strict";
  var current = null; // the id of the current row, kept across htmx swaps that replace the row

  function list() {
    return document.querySelector("[data-key-list]");
  }

  function rowOf(element) {
    var container = list();
    var row = container && element && element.closest ? element.closest(container.getAttribute("data-key-list")) : null;
    return row && container.contains(row) ? row : null;
  }

  function rows() {
    var container = list();
    return container ? Array.prototype.slice.call(container.querySelectorAll(container.getAttribute("data-key-list"))) : [];
  }

  function currentRow() {
    return current ? rowOf(document.getElementById(current)) : null;
  }

  function mark(row, focus) {
    rows().forEach(function (other) {
      if (other !== row) {
        other.classList.remove("is-current");
      }
    });
    if (!row) {
      current = null;
      return;
    }
    current = row.id;
    row.classList.add("is-current");
    row.tabIndex = -1;
    if (focus) {
      row.focus({ preventScroll: true });
      row.scrollIntoView({ block: "nearest" });
    }
  }

  function move(step) {
    var all = rows();
    if (!all.length) {
      return;
    }
    var index = all.indexOf(currentRow());
    var next = index === -1 ? (step > 0 ? 0 : all.length - 1) : Math.min(Math.max(index + step, 0), all.length - 1);
    mark(all[next], true);
  }

  function typing(target) {
    if (!target || !target.closest) {
      return false;
    }
    if (target.isContentEditable) {
      return true;
    }
    var field = target.closest("input, select, textarea");
    return Boolean(field) && !(field.type === "checkbox" || field.type === "radio");
  }

  function nativeControl(target) {
    return Boolean(target && target.closest && target.closest("a[href], button, input, summary"));
  }

  document.addEventListener("keydown", function (event) {
    if (!list() || event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) {
      return;
    }
    if (typing(event.target)) {
      return;
    }
    var key = event.key;
    var row = currentRow();
    if (key === "j" || key === "ArrowDown") {
      move(1);
    } else if (key === "k" || key === "ArrowUp") {
      move(-1);
    } else if (key === "x" || key === " ") {
      // Space on a link, button or checkbox keeps its own meaning.
      if (!row || (key === " " && nativeControl(event.target))) {
        return;
      }
      var box = row.querySelector("input[type=checkbox]");
      if (!box) {
        return;
      }
      box.click();
      row.focus({ preventScroll: true });
    } else if (key === "Escape") {
      if (!row) {
        return;
      }
      var more = document.getElementById(row.id + "-more");
      if (!more || !more.childElementCount) {
        return;
      }
      more.replaceChildren();
      row.focus({ preventScroll: true });
    } else {
      if (!row || (key === "Enter" && nativeControl(event.target) && event.target !== row)) {
        return;
      }
      var target = Array.prototype.find.call(row.querySelectorAll("[data-key]"), function (element) {
        return element.getAttribute("data-key") === key && !element.disabled;
      });
      if (!target) {
        return;
      }
      // A row an action has just re-rendered gets its htmx behaviour when the swap settles, some
      // milliseconds later; a key pressed meanwhile would click a dead button. Processing is
      // idempotent: htmx skips elements it already knows.
      if (window.htmx) {
        window.htmx.process(target);
      }
      target.click();
    }
    event.preventDefault();
  });

  // A click anywhere in a row makes it the current one.
  document.addEventListener("click", function (event) {
    var row = rowOf(event.target);
    if (row) {
      mark(row, false);
    }
  });

  // An action re-renders its row (or removes it once closed) and a live refresh replaces the list:
  // the current row stays current, or the next one takes its place.
  var following = null;
  document.addEventListener("htmx:beforeSwap", function () {
    var all = rows();
    var index = all.indexOf(currentRow());
    following = index === -1 ? null : all.slice(index + 1).map(function (row) { return row.id; });
  });
  var pending = false;
  function restore() {
    pending = false;
    if (!current) {
      return;
    }
    var row = currentRow();
    if (!row && following) {
      row = following.map(function (id) { return document.getElementById(id); }).find(Boolean) || null;
    }
    var active = document.activeElement;
    mark(row, !active || active === document.body);
  }
  // A swapped-out target no longer tells the document, so listen to every swap and restore once.
  ["htmx:afterSwap", "htmx:oobAfterSwap"].forEach(function (name) {
    document.addEventListener(name, function () {
      if (!pending) {
        pending = true;
        window.setTimeout(restore, 0);
      }
    });
  });
  // Settling puts back the class the server rendered, which drops "is-current": restore in the
  // same task, so no moment shows the row as not current.
  document.addEventListener("htmx:afterSettle", restore);
})();
