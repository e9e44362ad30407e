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
