// The page over the API's JSON endpoints. Plain JavaScript, no build step, nothing fetched but this API.
"use strict";

const $ = (id) => document.getElementById(id);

async function getJSON(path) {
  return answer(await fetch(path, {headers: {Accept: "application/json"}}));
}

async function postJSON(path, body) {
  return answer(await fetch(path, {method: "POST", body: JSON.stringify(body),
                                   headers: {Accept: "application/json", "Content-Type": "application/json"}}));
}

async function answer(response) {
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    // The app's own errors carry a message; a 422 carries FastAPI's list of invalid fields.
    const detail = Array.isArray(body.detail) ? body.detail.map((e) => e.msg).join("; ") : body.detail;
    throw new Error(detail || `${response.status} ${response.statusText}`);
  }
  return body;
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);  // strings become text, never HTML
  return node;
}

const date = (iso) => (iso ? iso.slice(0, 16).replace("T", " ") : "–");
const fixed = (value, digits = 3) => (value === null || value === undefined ? "–" : value.toFixed(digits));

function itemLink(item) {
  const link = element("a", {href: "#item", class: "title", "data-item": item.item_id, title: item.item_id},
                       item.title);
  link.addEventListener("click", (event) => {
    event.preventDefault();
    $("item-id").value = item.item_id;
    showSimilar(item.item_id);
    $("item").scrollIntoView({behavior: "smooth"});
  });
  return link;
}

function fill(list, items, describe) {
  list.replaceChildren(...items.map((item) => element("li", {}, itemLink(item),
                                                       element("span", {class: "detail"}, describe(item)))));
}

async function showChampion() {
  try {
    const model = await getJSON("/model");
    $("serving").textContent = `serving ${model.model} version ${model.version}`;
    $("champion-status").textContent = `Version ${model.version}, promoted ${date(model.promoted_at)} UTC.`;
    const facts = [
      ["Metrics measured", model.measured_at ? `${date(model.measured_at)} UTC` : "–"],
      ["Test window from", date(model.test_cutoff)],
      ["Data version", model.data_version || "–"],
      ["Data up to", date(model.as_of)],
      ["Ranks by", model.serves === "ranker" ? "the LightGBM re-ranker over all sources" : `${model.serves} alone (it won the evaluation)`],
      ["Candidates", `${model.n_candidates} from ${model.sources.join(", ")}`],
      ["Earlier champions", model.previous_champions.length ? model.previous_champions.join(", ") : "none"],
    ];
    $("champion-facts").replaceChildren(...facts.flatMap(([name, value]) => [element("dt", {}, name),
                                                                             element("dd", {}, value)]));
    const rows = Object.entries(model.metrics).map(([name, value]) => element("tr", {}, element("td", {}, name),
                                                                              element("td", {}, fixed(value, 4))));
    $("champion-metrics").querySelector("tbody").replaceChildren(...rows);
    $("champion-metrics").hidden = rows.length === 0;
    const reasons = model.promotion_reasons.length ? model.promotion_reasons : ["No reasons recorded."];
    $("champion-reasons").replaceChildren(...reasons.map((reason) => element("li", {}, reason)));
  } catch (error) {
    $("serving").textContent = "no champion";
    $("champion-status").textContent = error.message;
  }
}

async function showPopular() {
  try {
    const popular = await getJSON("/popular?k=8");
    fill($("popular-items"), popular.items, (item) => `score ${fixed(item.score)}`);
  } catch (error) {
    $("popular-items").replaceChildren(element("li", {class: "muted"}, error.message));
  }
}

async function showCustomer(customer) {
  const id = encodeURIComponent(customer.trim());
  $("customer-status").textContent = "Loading…";
  try {
    const [history, recommended] = await Promise.all([getJSON(`/customers/${id}/history?n=8`),
                                                      getJSON(`/recommendations/${id}?k=8`)]);
    $("customer-status").textContent = history.known_user
      ? `${history.purchases} purchases on record; recommendations from the ${recommended.strategy} model.`
      : "No purchases on record: the popular items are recommended.";
    fill($("customer-history"), history.items, (item) => `${date(item.occurred_at)} · ${item.quantity ?? "?"} ×`);
    if (!history.items.length) $("customer-history").replaceChildren(element("li", {class: "muted"}, "none"));
    fill($("customer-recommendations"), recommended.items, (item) => item.reason);
    $("customer-recommendations").setAttribute("data-user", recommended.user_id);
  } catch (error) {
    $("customer-status").textContent = error.message;
    $("customer-history").replaceChildren();
    $("customer-recommendations").replaceChildren();
  }
}

async function showSimilar(item) {
  $("item-status").textContent = "Loading…";
  try {
    const similar = await getJSON(`/similar/${encodeURIComponent(item.trim())}?k=8`);
    $("item-status").textContent = `Like ${similar.title}` +
      (similar.known_item ? ":" : " (outside the model's catalogue, matched by its description):");
    fill($("similar-items"), similar.items,
         (row) => `bought together ${fixed(row.co_purchase, 2)} · described alike ${fixed(row.text_cosine, 2)}`);
  } catch (error) {
    $("item-status").textContent = error.message;
    $("similar-items").replaceChildren();
  }
}

// The session box: the events added so far, oldest first, as POST /recommendations/session takes them.
const sessionEvents = [];
const DID = {view: "viewed", cart: "put in the cart", favourite: "marked as favourite", purchase: "bought"};
// Each event starts a request; answers can arrive out of order, and only the newest request's may be shown.
let sessionRequests = 0;

async function showSession() {
  const request = ++sessionRequests;
  const events = sessionEvents.map(({item_id, event_type}) => ({item_id, event_type}));
  $("session-events").replaceChildren(...sessionEvents.map((event) => element(
    "li", {"data-event": event.event_type}, itemLink(event), element("span", {class: "detail"}, DID[event.event_type]))));
  if (!events.length) {
    $("session-status").textContent = "Add an event to see the session's recommendations.";
    $("session-recommendations").replaceChildren();
    return;
  }
  const customer = $("session-customer").value.trim();
  const seen = $("session-seen").checked ? "?include_seen=true" : "";
  $("session-status").textContent = "Loading…";
  try {
    const recommended = await postJSON(`/recommendations/session${seen}`,
                                       {events, k: 8, ...(customer ? {user_id: customer} : {})});
    if (request !== sessionRequests) return;  // a newer event's request is on its way
    const unknown = recommended.unknown_items.length ? ` Unknown items, ignored: ${recommended.unknown_items.join(", ")}.` : "";
    $("session-status").textContent = (customer
      ? `Customer ${customer}'s session${recommended.known_user ? "" : " (no purchases on record)"}`
      : "An anonymous session") + `: recommendations from the ${recommended.strategy} model.${unknown}`;
    fill($("session-recommendations"), recommended.items, (item) => item.reason);
  } catch (error) {
    if (request !== sessionRequests) return;
    $("session-status").textContent = error.message;
    $("session-recommendations").replaceChildren();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("session-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const item = $("session-item").value.trim();
    if (!item) return;
    sessionEvents.push({item_id: item, title: item, event_type: $("session-type").value});
    $("session-item").value = "";
    showSession();
  });
  $("session-options").addEventListener("submit", (event) => {
    event.preventDefault();
    showSession();
  });
  $("session-customer").addEventListener("change", showSession);
  $("session-seen").addEventListener("change", showSession);
  $("session-clear").addEventListener("click", () => {
    sessionEvents.length = 0;
    showSession();
  });
  $("customer-form").addEventListener("submit", (event) => {
    event.preventDefault();
    showCustomer($("customer-id").value);
  });
  $("item-form").addEventListener("submit", (event) => {
    event.preventDefault();
    showSimilar($("item-id").value);
  });
  showChampion();
  showPopular();
  // /?customer=ID and /?item=ID open with them filled in.
  const query = new URLSearchParams(location.search);
  if (query.get("customer")) {
    $("customer-id").value = query.get("customer");
    showCustomer(query.get("customer"));
  }
  if (query.get("item")) {
    $("item-id").value = query.get("item");
    showSimilar(query.get("item"));
  }
});
