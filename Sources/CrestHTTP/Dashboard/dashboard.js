// Crest's live dashboard: polls the sales (operators' API, with the admin token in the
// Authorization header) and /metrics once a second, and shows rates and latencies over the last
// ten seconds, computed here from the counters and histogram buckets of successive reads.
"use strict";

const TOKEN_KEY = "crest.adminToken";
const POLL_MS = 1000;
const WINDOW_MS = 10000;
const STAGES = ["admission", "write_path", "gate", "batch_wait", "commit", "answer"];
const PLACED = ["accepted"];
const NOT_REFUSALS = ["accepted", "replayed"];
const BREAKER = { 0: "closed", 1: "half-open", 2: "open" };

const history = []; // { at, samples }, oldest first, spanning a little more than WINDOW_MS
let timer = null;
// Counts sign-ins and sign-outs: a read that comes back after either is dropped.
let signIns = 0;

const $ = (id) => document.getElementById(id);

// --- Prometheus text exposition ----------------------------------------------------------

/** Parses the text format into [{ name, labels, value }]. */
function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const sample = parseSample(line);
    if (sample) samples.push(sample);
  }
  return samples;
}

function parseSample(line) {
  const brace = line.indexOf("{");
  const space = line.indexOf(" ");
  const labels = {};
  let name, rest;
  if (brace !== -1 && (space === -1 || brace < space)) {
    name = line.slice(0, brace);
    let i = brace + 1;
    while (i < line.length && line[i] !== "}") {
      const eq = line.indexOf("=", i);
      const key = line.slice(i, eq).trim();
      let j = eq + 2; // past ="
      let value = "";
      while (j < line.length && line[j] !== '"') {
        if (line[j] === "\\" && j + 1 < line.length) {
          const next = line[j + 1];
          value += next === "n" ? "\n" : next;
          j += 2;
        } else {
          value += line[j];
          j += 1;
        }
      }
      labels[key] = value;
      i = j + 1;
      if (line[i] === ",") i += 1;
    }
    rest = line.slice(i + 1).trim();
  } else {
    name = line.slice(0, space);
    rest = line.slice(space + 1).trim();
  }
  const value = Number(rest.split(" ")[0]);
  return Number.isNaN(value) && rest.split(" ")[0] !== "NaN" ? null : { name, labels, value };
}

/** The sum of the samples of `name` whose labels include `match`. */
function total(samples, name, match = {}) {
  let sum = 0;
  for (const s of samples) {
    if (s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}

/** Sums of `name` by the value of label `by` (with labels `match`). */
function byLabel(samples, name, by, match = {}) {
  const sums = new Map();
  for (const s of samples) {
    if (s.name !== name || !(by in s.labels)) continue;
    if (!Object.entries(match).every(([k, v]) => s.labels[k] === v)) continue;
    sums.set(s.labels[by], (sums.get(s.labels[by]) || 0) + s.value);
  }
  return sums;
}

/** A histogram's cumulative buckets [{ le, count }] by upper bound, summed over other labels. */
function buckets(samples, name, match = {}) {
  const sums = byLabel(samples, name + "_bucket", "le", match);
  return [...sums.entries()]
    .map(([le, count]) => ({ le: le === "+Inf" ? Infinity : Number(le), count }))
    .sort((a, b) => a.le - b.le);
}

/** Bucket counts observed between two reads. */
function bucketDelta(now, then) {
  const before = new Map(then.map((b) => [b.le, b.count]));
  return now.map((b) => ({ le: b.le, count: Math.max(0, b.count - (before.get(b.le) || 0)) }));
}

/** Prometheus' histogram_quantile: linear interpolation inside the bucket holding the rank. */
function quantile(q, cumulative) {
  if (cumulative.length === 0) return null;
  const count = cumulative[cumulative.length - 1].count;
  if (count === 0) return null;
  const rank = q * count;
  let lower = 0;
  let below = 0;
  for (const b of cumulative) {
    if (b.count >= rank) {
      if (b.le === Infinity) return lower;
      if (b.count === below) return b.le;
      return lower + (b.le - lower) * ((rank - below) / (b.count - below));
    }
    lower = b.le;
    below = b.count;
  }
  return lower;
}

// --- Formatting ---------------------------------------------------------------------------

function seconds(value) {
  if (value === null || value === undefined) return "—";
  if (value === 0) return "0 s";
  if (value < 0.001) return (value * 1e6).toFixed(0) + " µs";
  if (value < 1) return (value * 1000).toFixed(value < 0.01 ? 2 : 1) + " ms";
  return value.toFixed(2) + " s";
}

function perSecond(value) {
  if (value === null) return "—";
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

function integer(value) {
  return Math.round(value).toLocaleString("en");
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

/** Replaces a table body's rows with `rows` (arrays of cells); text only, never markup. */
function fill(tbody, rows) {
  tbody.replaceChildren(
    ...rows.map((cells) => {
      const tr = document.createElement("tr");
      for (const c of cells) tr.append(c);
      return tr;
    })
  );
}

// --- Reading ------------------------------------------------------------------------------

class SignedOut extends Error {}

async function read(token) {
  const [salesAnswer, metricsAnswer] = await Promise.all([
    fetch("/v1/sales?limit=200", { headers: { Authorization: "Bearer " + token }, cache: "no-store" }),
    fetch("/metrics", { cache: "no-store" }),
  ]);
  if (salesAnswer.status === 401) throw new SignedOut("The token was refused.");
  if (!salesAnswer.ok) throw new Error("sales: HTTP " + salesAnswer.status);
  if (!metricsAnswer.ok) throw new Error("metrics: HTTP " + metricsAnswer.status);
  const sales = await salesAnswer.json();
  const samples = parseMetrics(await metricsAnswer.text());
  return { sales, samples };
}

/** The oldest kept read within the window (for rates), or null while there is only one. */
function windowStart(now) {
  const candidates = history.filter((h) => h !== now && now.at - h.at <= WINDOW_MS + POLL_MS);
  return candidates.length ? candidates[0] : null;
}

function render({ sales, samples }) {
  const now = { at: Date.now(), samples };
  history.push(now);
  while (history.length && now.at - history[0].at > WINDOW_MS + 2 * POLL_MS) history.shift();
  const then = windowStart(now);
  const elapsed = then ? (now.at - then.at) / 1000 : null;
  const rate = (name, match) =>
    then && elapsed > 0 ? Math.max(0, total(samples, name, match) - total(then.samples, name, match)) / elapsed : null;

  const ready = total(samples, "crest_ready");
  $("readiness").textContent = ready === 1 ? "ready" : "not ready";
  $("readiness").className = "badge " + (ready === 1 ? "good" : "bad");
  $("updated").textContent = "updated " + new Date(now.at).toLocaleTimeString("en-GB");

  renderSales(sales);
  renderOrders(samples, then, rate);
  renderStages(samples, then);
  renderJobs(samples);
  renderProvider(samples, then, rate);
}

function renderSales(page) {
  fill(
    $("sales").tBodies[0],
    page.sales.map((sale) => {
      const s = sale.stock;
      const bar = document.createElement("div");
      bar.className = "bar";
      for (const [part, value] of [["sold", s.sold], ["reserved", s.reserved]]) {
        const span = document.createElement("span");
        span.className = part;
        span.style.width = s.total > 0 ? (100 * value) / s.total + "%" : "0";
        bar.append(span);
      }
      const barCell = document.createElement("td");
      barCell.append(bar);
      const cells = [
        cell(sale.title), cell(sale.sku), cell(integer(s.total), "num"), cell(integer(s.available), "num"),
        cell(integer(s.reserved), "num"), cell(integer(s.sold), "num"), barCell,
      ];
      cells[0].title = sale.id;
      for (const [i, field] of [[2, "total"], [3, "available"], [4, "reserved"], [5, "sold"]]) {
        cells[i].dataset.field = field;
      }
      return cells;
    })
  );
  // Rows carry their sale's id, for whoever reads the page by program.
  [...$("sales").tBodies[0].rows].forEach((row, i) => (row.dataset.sale = page.sales[i].id));
  $("sales-more").hidden = !page.next;
}

function renderOrders(samples, then, rate) {
  const placed = PLACED.reduce((sum, o) => sum + total(samples, "crest_order_attempts_total", { outcome: o }), 0);
  $("orders-total").textContent = integer(placed);
  $("orders-rate").textContent = perSecond(then ? PLACED.reduce((sum, o) => sum + rate("crest_order_attempts_total", { outcome: o }), 0) : null);

  // Every way an attempt is turned away: by the order rules, the write path, rate limits, risk
  // rules and shedding.
  const sources = [];
  for (const [outcome] of byLabel(samples, "crest_order_attempts_total", "outcome")) {
    if (!NOT_REFUSALS.includes(outcome)) sources.push([outcome, "crest_order_attempts_total", { outcome }]);
  }
  for (const [scope] of byLabel(samples, "crest_rate_limited_total", "scope")) {
    sources.push(["rate limit: " + scope, "crest_rate_limited_total", { scope }]);
  }
  for (const [type] of byLabel(samples, "crest_risk_refusals_total", "type")) {
    sources.push(["risk rule: " + type, "crest_risk_refusals_total", { type }]);
  }
  for (const [cls] of byLabel(samples, "crest_shed_total", "class")) {
    sources.push(["shed: " + cls, "crest_shed_total", { class: cls }]);
  }
  const rows = sources
    .map(([reason, name, match]) => ({ reason, count: total(samples, name, match), rate: rate(name, match) }))
    .filter((r) => r.count > 0)
    .sort((a, b) => b.count - a.count);
  fill($("refusals").tBodies[0], rows.map((r) => [cell(r.reason), cell(perSecond(r.rate), "num"), cell(integer(r.count), "num")]));
  $("no-refusals").hidden = rows.length > 0;
  $("refusals-rate").textContent = perSecond(then ? rows.reduce((sum, r) => sum + (r.rate || 0), 0) : null);

  const limit = total(samples, "crest_write_path_limit");
  const inFlight = total(samples, "crest_write_path_in_flight");
  $("write-path").textContent = limit > 0 ? integer(inFlight) + " / " + integer(limit) : integer(inFlight);
}

function renderStages(samples, then) {
  fill(
    $("stages").tBodies[0],
    STAGES.map((stage) => {
      const now = buckets(samples, "crest_order_stage_seconds", { stage });
      const recent = then ? bucketDelta(now, buckets(then.samples, "crest_order_stage_seconds", { stage })) : [];
      const count = recent.length ? recent[recent.length - 1].count : 0;
      const row = [cell(stage.replace("_", " ")), cell(seconds(quantile(0.5, recent)), "num"),
        cell(seconds(quantile(0.99, recent)), "num"), cell(integer(count), "num")];
      row[0].dataset.stage = stage;
      return row;
    })
  );
}

function renderJobs(samples) {
  $("jobs-due").textContent = integer(total(samples, "crest_job_queue_depth"));
  $("jobs-oldest").textContent = seconds(total(samples, "crest_job_oldest_due_age_seconds"));
  const states = byLabel(samples, "crest_jobs", "state");
  fill($("jobs").tBodies[0], [...states.entries()].map(([state, count]) => [cell(state), cell(integer(count), "num")]));
  $("no-jobs").hidden = states.size > 0;
}

function renderProvider(samples, then, rate) {
  const state = samples.find((s) => s.name === "crest_provider_breaker_state");
  $("breaker").textContent = state ? BREAKER[state.value] || String(state.value) : "no provider";
  if (then) {
    const calls = rate("crest_provider_calls_total", {});
    const succeeded = rate("crest_provider_calls_total", { outcome: "success" });
    $("provider-rate").textContent = perSecond(calls);
    $("provider-success").textContent = calls > 0 ? ((100 * succeeded) / calls).toFixed(1) + " %" : "—";
    const recent = bucketDelta(
      buckets(samples, "crest_provider_call_duration_seconds"),
      buckets(then.samples, "crest_provider_call_duration_seconds")
    );
    $("provider-p99").textContent = seconds(quantile(0.99, recent));
  }
  $("webhooks-refused").textContent = integer(total(samples, "crest_provider_webhooks_refused_total"));
}

// --- Signing in and polling ---------------------------------------------------------------

function show(signedIn) {
  $("sign-in").hidden = signedIn;
  $("board").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
}

async function poll() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return signOut("");
  const session = signIns;
  try {
    const answer = await read(token);
    // Signed out (or in again) while the read was out: its answer belongs to no one now.
    if (session !== signIns) return;
    render(answer);
    show(true);
  } catch (error) {
    if (session !== signIns) return;
    if (error instanceof SignedOut) return signOut(error.message);
    // A node restarting or a dropped connection: say so and keep trying.
    $("readiness").textContent = "unreachable";
    $("readiness").className = "badge bad";
  }
  timer = setTimeout(poll, POLL_MS);
}

function signOut(message) {
  signIns += 1;
  clearTimeout(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  history.length = 0;
  $("sign-in-error").textContent = message;
  show(false);
  $("token").focus();
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("sign-in-error").textContent = "";
    signIns += 1;
    clearTimeout(timer);
    poll();
  });
  $("sign-out").addEventListener("click", () => signOut(""));
  if (sessionStorage.getItem(TOKEN_KEY)) poll();
  else show(false);
});
