// troopauth tokens surface: plain script over the JSON API, no build step.
// The bearer token lives in sessionStorage (this tab only); no cookie is set.
// Every value from the server goes into the page through textContent.
"use strict";

(function () {
  const API = document.body.dataset.api || "";
  const KEY = "troopauth.bearer";
  const TROOP = "troopauth.troop";
  const $ = (id) => document.getElementById(id);
  let me = null;
  let troopId = null;
  // Pages of the troop's tokens: the `after` of each page seen so far.
  let cursors = [null];
  let nextCursor = null;

  function pageSize() { return Number(document.body.dataset.pageSize) || 50; }

  function bearer() { return sessionStorage.getItem(KEY); }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + bearer() };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(API + path, init);
    if (response.status === 204) return null;
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(data.detail || data.title || "HTTP " + response.status);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function notice(text, good) {
    const box = $("notice");
    box.textContent = text;
    box.classList.toggle("good", Boolean(good));
    box.hidden = !text;
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  function cell(row, label, content) {
    const td = document.createElement("td");
    td.dataset.label = label;
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
    row.appendChild(td);
    return td;
  }

  function grantText(grant) {
    return grant ? grant.permissions.join(", ") + " on " + grant.scope : "—";
  }

  function when(iso) {
    if (!iso) return "never";
    return iso.replace("T", " ").replace(/(\.\d+)?(\+00:00|Z)$/, "");
  }

  function checked(name) {
    return Array.from(document.querySelectorAll('input[name="' + name + '"]:checked')).map((i) => i.value);
  }

  // -- dialogs ----------------------------------------------------------------

  function confirmAction(title, text, label, withOverlap) {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = label;
    $("overlap-field").hidden = !withOverlap;
    $("overlap").value = "0";
    return new Promise((resolve) => {
      const done = (answer) => () => {
        $("confirm-ok").onclick = null;
        $("confirm-cancel").onclick = null;
        dialog.close();
        resolve(answer);
      };
      $("confirm-ok").onclick = done(true);
      $("confirm-cancel").onclick = done(false);
      dialog.onclose = () => resolve(false);
      dialog.showModal();
    });
  }

  function showSecret(title, value) {
    $("secret-title").textContent = title;
    $("secret-value").textContent = value;
    $("copied").hidden = true;
    $("secret").showModal();
  }

  function forgetSecret() {
    $("secret-value").textContent = "";
    $("secret").close();
  }

  async function copySecret() {
    const value = $("secret-value").textContent;
    try {
      // A clipboard that neither answers nor refuses (no focus, a pending
      // permission prompt) must not leave the button dead: give it a second.
      const late = new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), 1000));
      await Promise.race([navigator.clipboard.writeText(value), late]);
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents($("secret-value"));
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      document.execCommand("copy");
    }
    $("copied").hidden = false;
  }

  // -- loading ----------------------------------------------------------------

  async function signIn(value) {
    sessionStorage.setItem(KEY, value);
    try {
      me = await api("GET", "/me");
    } catch (error) {
      sessionStorage.removeItem(KEY);
      notice("Sign-in failed: " + error.message);
      return;
    }
    $("bearer").value = "";
    $("whoami").textContent = "Signed in as " + me.kind + (me.token_id ? " token " + me.token_id : " " + me.member_id) + " · account " + me.account_id;
    $("whoami").hidden = false;
    $("welcome").hidden = true;
    $("pick").hidden = false;
    $("logout").hidden = false;
    $("login").classList.add("signed-in");
    notice("");
    const remembered = sessionStorage.getItem(TROOP);
    await loadTroops(remembered);
    if (remembered) {
      $("troop-id").value = remembered;
      await openTroop(remembered);
    }
  }

  // The troops this caller may open, as a picker; typing an id stays possible
  // when the list is refused or empty.
  async function loadTroops(selected) {
    let troops = [];
    try {
      troops = (await api("GET", "/accounts/" + encodeURIComponent(me.account_id) + "/troops")).troops;
    } catch (_) {
      troops = [];
    }
    const select = $("troop-select");
    select.replaceChildren();
    for (const troop of troops) {
      const option = el("option", (troop.name || troop.troop_id) + " · " + troop.troop_id);
      option.value = troop.troop_id;
      select.appendChild(option);
    }
    const listed = troops.length > 0;
    if (listed && selected && troops.some((t) => t.troop_id === selected)) select.value = selected;
    select.hidden = !listed;
    $("troop-select-label").hidden = !listed;
    $("troop-id").hidden = listed;
    $("troop-id-label").hidden = listed;
  }

  function signOut() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(TROOP);
    me = null;
    troopId = null;
    cursors = [null];
    $("whoami").hidden = true;
    $("pick").hidden = true;
    $("workspace").hidden = true;
    $("welcome").hidden = false;
    $("logout").hidden = true;
    $("login").classList.remove("signed-in");
    notice("");
  }

  async function openTroop(id) {
    troopId = id;
    cursors = [null];
    sessionStorage.setItem(TROOP, id);
    try {
      await refresh();
    } catch (error) {
      $("workspace").hidden = true;
      notice("Cannot open troop: " + error.message);
      return;
    }
    $("troop-label").textContent = id;
    $("workspace").hidden = false;
    notice("");
  }

  function tokensPath() {
    const after = cursors[cursors.length - 1];
    let path = "/troops/" + encodeURIComponent(troopId) + "/tokens?limit=" + pageSize();
    if (after) path += "&after=" + encodeURIComponent(after);
    return path;
  }

  async function refresh() {
    const troop = "/troops/" + encodeURIComponent(troopId);
    const account = "/accounts/" + encodeURIComponent(me.account_id);
    // The tokens that expire soon span every troop: the account's PAT only.
    const owner = me.kind === "personal";
    const [tokens, seats, audit, check, members, expiring] = await Promise.all([
      api("GET", tokensPath()),
      api("GET", account + "/seats"),
      api("GET", troop + "/audit"),
      api("GET", troop + "/audit/check"),
      api("GET", troop + "/members"),
      owner ? api("GET", account + "/expiring?within=7d") : Promise.resolve(null),
    ]);
    if (tokens.tokens.length === 0 && cursors.length > 1) {
      // The page emptied (its tokens revoked or detached): back to the first.
      cursors = [null];
      return refresh();
    }
    nextCursor = tokens.next;
    renderTokens(tokens.tokens);
    renderPager();
    renderSeats(seats);
    renderAudit(audit.events, check);
    renderMembers(members.members);
    renderExpiring(expiring);
  }

  function renderExpiring(expiring) {
    $("expiring-card").hidden = expiring === null;
    if (expiring === null) return;
    const body = $("expiring").tBodies[0];
    body.replaceChildren();
    for (const token of expiring.tokens) {
      const row = document.createElement("tr");
      row.dataset.expiringId = token.token_id;
      const wrap = el("div");
      wrap.append(el("span", token.name || "(unnamed)"), el("span", token.token_id, "token-id mono"));
      cell(row, "Token", wrap);
      cell(row, "Expires", when(token.expires_at)).className = "nowrap";
      body.appendChild(row);
    }
    $("no-expiring").hidden = expiring.tokens.length > 0;
    $("expiring").hidden = expiring.tokens.length === 0;
  }

  function renderPager() {
    const paged = cursors.length > 1 || Boolean(nextCursor);
    $("pager").hidden = !paged;
    $("page-first").disabled = cursors.length === 1;
    $("page-next").disabled = !nextCursor;
    $("page-number").textContent = "Page " + cursors.length;
  }

  async function turnPage(cursor) {
    cursors = cursor ? cursors.concat([cursor]) : [null];
    try {
      await refresh();
    } catch (error) {
      notice(error.message);
    }
  }

  function renderMembers(members) {
    const body = $("members").tBodies[0];
    body.replaceChildren();
    for (const member of members) {
      const row = document.createElement("tr");
      row.dataset.memberId = member.member_id;
      cell(row, "Member", member.member_id);
      cell(row, "Grant", el("span", grantText(member.grant), "grant"));
      body.appendChild(row);
    }
    $("no-members").hidden = members.length > 0;
    $("members").hidden = members.length === 0;
  }

  function renderSeats(seats) {
    $("seats-used").textContent = seats.used;
    $("seats-free").textContent = seats.free;
    $("seats-capacity").textContent = seats.capacity;
    const share = seats.capacity ? Math.min(100, (100 * seats.used) / seats.capacity) : 100;
    $("seat-bar").style.width = share + "%";
    $("seat-bar").classList.toggle("full", seats.free <= 0);
  }

  function renderTokens(tokens) {
    const body = $("tokens").tBodies[0];
    body.replaceChildren();
    for (const token of tokens) {
      const row = document.createElement("tr");
      row.dataset.tokenId = token.token_id;
      const name = el("span", token.name || "(unnamed)");
      const wrap = el("div");
      wrap.append(name, el("span", token.token_id, "token-id mono"));
      cell(row, "Name", wrap);
      cell(row, "Hint", el("code", token.hint));
      cell(row, "Grant", el("span", grantText(token.grants[troopId]), "grant"));
      cell(row, "Expires", when(token.expires_at));
      cell(row, "Last used", token.last_used_at ? when(token.last_used_at) : "not yet");
      const actions = cell(row, "", "");
      actions.className = "actions";
      const rotate = el("button", "Rotate", "small");
      rotate.type = "button";
      rotate.dataset.action = "rotate";
      rotate.onclick = () => rotateToken(token);
      const detach = el("button", "Detach", "small");
      detach.type = "button";
      detach.dataset.action = "detach";
      detach.onclick = () => detachToken(token);
      const revoke = el("button", "Revoke", "small link-danger");
      revoke.type = "button";
      revoke.dataset.action = "revoke";
      revoke.onclick = () => revokeToken(token);
      actions.append(rotate, detach, revoke);
      body.appendChild(row);
    }
    $("no-tokens").hidden = tokens.length > 0;
    $("tokens").hidden = tokens.length === 0;
  }

  function renderAudit(events, check) {
    const body = $("audit").tBodies[0];
    body.replaceChildren();
    for (const event of events.slice().reverse()) {
      const row = document.createElement("tr");
      cell(row, "#", String(event.seq));
      cell(row, "When", when(event.at)).className = "nowrap";
      cell(row, "Action", event.action).className = "nowrap";
      cell(row, "Actor", event.actor);
      cell(row, "Subject", event.token_id || (event.member_id ? "member " + event.member_id : "—"));
      cell(row, "Grant", grantText(event.grant));
      body.appendChild(row);
    }
    $("no-audit").hidden = events.length > 0;
    $("audit").hidden = events.length === 0;
    const badge = $("chain");
    badge.textContent = check.intact ? "chain intact" : "broken at #" + check.first_broken;
    badge.className = "badge " + (check.intact ? "ok" : "broken");
  }

  // -- actions ------------------------------------------------------------------

  async function run(action, success) {
    try {
      const result = await action();
      await refresh();
      notice(success || "", true);
      return result;
    } catch (error) {
      notice(error.message);
      return null;
    }
  }

  async function issueToken(event) {
    event.preventDefault();
    const body = {
      name: $("issue-name").value.trim(),
      grant: { permissions: checked("perm"), scope: $("issue-scope").value.trim() },
    };
    const expires = $("issue-expires").value;
    if (expires) body.expires_at = new Date(expires).toISOString();
    const issued = await run(() => api("POST", "/troops/" + encodeURIComponent(troopId) + "/tokens", body), "Token issued.");
    if (issued) {
      $("issue-name").value = "";
      showSecret("Copy your new token", issued.value);
    }
  }

  async function attachToken(event) {
    event.preventDefault();
    const id = $("attach-id").value.trim();
    const body = { grant: { permissions: checked("aperm"), scope: $("attach-scope").value.trim() } };
    const done = await run(() => api("PUT", "/troops/" + encodeURIComponent(troopId) + "/tokens/" + encodeURIComponent(id), body), "Token attached.");
    if (done) $("attach-id").value = "";
  }

  async function rotateToken(token) {
    const ok = await confirmAction(
      "Rotate " + (token.name || token.token_id) + "?",
      "A new value replaces the current one, which stops working at once unless you keep it working a while below. Everything using the token must be given the new value.",
      "Rotate",
      true,
    );
    if (!ok) return;
    const overlap = Number($("overlap").value);
    const body = overlap > 0 ? { overlap_seconds: overlap } : undefined;
    const said = overlap > 0
      ? "Token rotated; the old value keeps working " + $("overlap").selectedOptions[0].textContent + "."
      : "Token rotated; the old value no longer works.";
    const issued = await run(() => api("POST", "/tokens/" + encodeURIComponent(token.token_id) + "/rotate", body), said);
    if (issued) showSecret("Copy the rotated token", issued.value);
  }

  async function revokeToken(token) {
    const ok = await confirmAction(
      "Revoke " + (token.name || token.token_id) + "?",
      "The token stops working everywhere, for good, and its seat is freed. This cannot be undone.",
      "Revoke",
    );
    if (!ok) return;
    await run(() => api("POST", "/tokens/" + encodeURIComponent(token.token_id) + "/revoke"), "Token revoked; its seat is free.");
  }

  async function detachToken(token) {
    await run(() => api("DELETE", "/troops/" + encodeURIComponent(troopId) + "/tokens/" + encodeURIComponent(token.token_id)), "Token detached from this troop.");
  }

  // -- wiring -------------------------------------------------------------------

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("bearer").value.trim();
    if (value) signIn(value);
  });
  $("logout").addEventListener("click", signOut);
  $("pick").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("troop-select").hidden ? $("troop-id").value.trim() : $("troop-select").value;
    if (id) openTroop(id);
  });
  $("troop-select").addEventListener("change", () => openTroop($("troop-select").value));
  $("page-next").addEventListener("click", () => turnPage(nextCursor));
  $("page-first").addEventListener("click", () => turnPage(null));
  $("issue-form").addEventListener("submit", issueToken);
  $("attach-form").addEventListener("submit", attachToken);
  $("copy").addEventListener("click", copySecret);
  $("secret-done").addEventListener("click", forgetSecret);
  $("secret").addEventListener("close", () => { $("secret-value").textContent = ""; });

  if (bearer()) signIn(bearer());
})();
