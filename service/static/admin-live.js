/* supportbot admin pages: live updates from GET /admin/api/events (Server-Sent Events).
 *
 * The pages are complete without this script; it only spares a reload. On an event it fetches the page it
 * is on again (same URL, same session) and takes the changed parts from there, so what it shows is exactly
 * what a reload would show:
 * - the inbox swaps its table when a conversation gets a message, a handoff, an assignee or is resolved;
 * - a conversation page appends the transcript's new messages, swaps the status line and its actions, and
 *   shows "visitor is typing…" and whether the visitor is on the page.
 * Elements with an id and the attribute data-live-swap are replaced from the fetched page too.
 */
(function () {
  "use strict";
  if (!window.EventSource || !window.fetch || !window.DOMParser) return;

  var TYPING_MS = 6000; // a typing signal older than this is stale (the visitor closed the tab mid-word)
  var ONLINE_MS = 45000; // as the service counts it: three missed heartbeats
  var match = location.pathname.match(/^\/admin\/conversations\/([^/]+)\/?$/);
  var conversationId = match ? decodeURIComponent(match[1]) : null;
  var onInbox = /^\/admin\/?$/.test(location.pathname);
  if (!conversationId && !onInbox) return;

  var refreshing = false;
  var again = false;

  function fetchPage() {
    return fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) { return new DOMParser().parseFromString(html, "text/html"); });
  }

  // One fetch at a time; events that come meanwhile cause one more fetch after it.
  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetchPage().then(conversationId ? applyConversation : applyInbox).catch(function () {
      notice("Live update failed: reload the page to see the latest.");
    }).then(function () {
      refreshing = false;
      if (again) { again = false; refresh(); }
    });
  }

  // Replace each element matching `selector` by its counterpart in the fetched page (when both have as many).
  function swap(selector, fresh) {
    var mine = document.querySelectorAll(selector);
    var theirs = fresh.querySelectorAll(selector);
    if (mine.length !== theirs.length) return;
    Array.prototype.forEach.call(mine, function (element, index) {
      element.replaceWith(document.importNode(theirs[index], true));
    });
  }

  function swapMarked(fresh) {
    Array.prototype.forEach.call(fresh.querySelectorAll("[data-live-swap][id]"), function (element) {
      var mine = document.getElementById(element.id);
      if (mine) mine.replaceWith(document.importNode(element, true));
    });
  }

  function applyInbox(fresh) {
    swap("main table", fresh);
    swap("main .pager", fresh);
    swapMarked(fresh);
  }

  function applyConversation(fresh) {
    var articles = document.querySelectorAll("main article.message[id]");
    var last = articles.length ? articles[articles.length - 1] : transcriptHeading();
    Array.prototype.forEach.call(fresh.querySelectorAll("main article.message[id]"), function (article) {
      if (document.getElementById(article.id)) return;
      var added = document.importNode(article, true);
      added.classList.add("live-new");
      if (last) last.after(added);
      last = added;
    });
    swap("main > p", fresh); // the status and assignee lines
    swap("main .actions", fresh);
    swap("main .notice", fresh);
    swapMarked(fresh);
    placeTyping();
    if (online !== null) showPresence(online, true);
  }

  function transcriptHeading() {
    var headings = document.querySelectorAll("main h2");
    for (var i = 0; i < headings.length; i++) if (headings[i].textContent.trim() === "Transcript") return headings[i];
    return null;
  }

  function notice(text) {
    var element = document.getElementById("live-notice");
    if (!element) {
      element = document.createElement("div");
      element.id = "live-notice";
      element.className = "live-notice";
      element.setAttribute("role", "status");
      var main = document.querySelector("main");
      if (main) main.prepend(element);
    }
    element.textContent = text;
  }

  // ------------------------------------------------------------ typing and presence (conversation page)

  var typing = null;
  var typingTimer = 0;
  var presenceTimer = 0;
  var online = null; // what the last presence event said (null: none yet; the page shows the server's view)

  function typingElement() {
    if (!typing) {
      typing = document.createElement("p");
      typing.id = "live-typing";
      typing.className = "live-typing";
      typing.setAttribute("role", "status");
      typing.hidden = true;
      typing.textContent = "Visitor is typing…";
    }
    return typing;
  }

  function placeTyping() {
    var articles = document.querySelectorAll("main article.message[id]");
    var anchor = articles.length ? articles[articles.length - 1] : transcriptHeading();
    if (anchor) anchor.after(typingElement());
  }

  function showTyping(on) {
    var element = typingElement();
    clearTimeout(typingTimer);
    element.hidden = !on;
    if (on) typingTimer = setTimeout(function () { element.hidden = true; }, TYPING_MS);
  }

  function showPresence(isOnline, keepTimer) {
    online = isOnline;
    var element = document.getElementById("live-presence");
    if (!element) {
      element = document.createElement("span");
      element.id = "live-presence";
      var line = document.querySelector("main > p");
      if (line) line.append(" ", element);
    }
    element.className = "badge" + (isOnline ? " good" : "");
    element.textContent = isOnline ? "visitor on the page" : "visitor left";
    if (keepTimer) return;
    clearTimeout(presenceTimer);
    if (isOnline) presenceTimer = setTimeout(function () { showPresence(false); }, ONLINE_MS);
  }

  // ------------------------------------------------------------ the stream

  var url = "/admin/api/events" + (conversationId ? "?conversation_id=" + encodeURIComponent(conversationId) : "");
  var source = new EventSource(url, { withCredentials: true });
  var data = function (event) {
    try { return JSON.parse(event.data); } catch (error) { return {}; }
  };
  var changes = ["message", "escalation", "agent_reply", "resolved", "assignment", "resync"];

  changes.forEach(function (name) {
    source.addEventListener(name, function (event) {
      var detail = data(event);
      if (conversationId && detail.conversation_id && detail.conversation_id !== conversationId) return;
      if (conversationId && name === "message") showTyping(false);
      refresh();
    });
  });
  if (conversationId) {
    placeTyping();
    var initial = document.getElementById("live-presence");
    if (initial && initial.classList.contains("good")) showPresence(true);
    source.addEventListener("typing", function (event) {
      var detail = data(event);
      if (detail.conversation_id === conversationId) showTyping(Boolean(detail.typing));
    });
    source.addEventListener("presence", function (event) {
      var detail = data(event);
      if (detail.conversation_id !== conversationId) return;
      showPresence(Boolean(detail.online));
      if (!detail.online) showTyping(false);
    });
  }
  var opened = false;
  source.addEventListener("open", function () {
    // Back after a break: what happened meanwhile came as no event, so fetch the page once.
    if (opened) refresh();
    opened = true;
    var element = document.getElementById("live-notice");
    if (element) element.remove();
    document.documentElement.setAttribute("data-live", "on");
  });
  source.addEventListener("error", function () {
    // The browser reconnects by itself; a 401 (signed out) closes the stream for good.
    document.documentElement.setAttribute("data-live", source.readyState === EventSource.CLOSED ? "off" : "retrying");
  });
  window.addEventListener("pagehide", function () { source.close(); });
})();
