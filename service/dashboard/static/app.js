// Entry point of the dashboard: sign-in and sign-out, the dataset picker, loading one
// dataset's view, redrawing charts on resize, and the certificate dialog.

import { ApiError, createClient, keyStore } from "./api.js";
import { renderCertificate } from "./certificate.js";
import { clear, h } from "./dom.js";
import { compositionError, compositionView, datasetView } from "./views.js";

const $ = (id) => document.getElementById(id);

const state = {
  client: null,
  me: null,
  names: new Map(),
  charts: [],
  drawnWidth: 0,
  loads: 0,
  opener: null,
};

function announce(text) {
  $("status").textContent = text;
}

function describe(error) {
  if (error instanceof ApiError) return `${error.message} (${error.code})`;
  if (error instanceof TypeError && /fetch/i.test(error.message)) {
    return "the service could not be reached.";
  }
  return `${error.name}: ${error.message}`;
}

function showSignIn(message) {
  $("app").hidden = true;
  $("session").hidden = true;
  $("sign-in").hidden = false;
  const error = $("sign-in-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("api-key").setAttribute("aria-invalid", message ? "true" : "false");
}

async function signIn(key, restored) {
  const client = createClient(key);
  const submit = $("sign-in-submit");
  submit.disabled = true;
  let me;
  try {
    me = await client.me();
  } catch (error) {
    keyStore.clear();
    showSignIn(
      error instanceof ApiError && error.code === "unauthenticated"
        ? "This key is not active: it is unknown or revoked."
        : `Sign-in failed: ${describe(error)}`,
    );
    if (!restored) $("api-key").focus();
    return;
  } finally {
    submit.disabled = false;
  }
  keyStore.set(key);
  state.client = client;
  state.me = me;
  $("api-key").value = "";
  $("sign-in-error").hidden = true;
  $("api-key").setAttribute("aria-invalid", "false");
  $("sign-in").hidden = true;
  $("session-name").textContent = me.name;
  $("session-role").textContent = me.role;
  $("session").hidden = false;
  $("app").hidden = false;
  $("app-title").focus();
  await loadDatasets();
}

async function loadDatasets() {
  const { client, me } = state;
  announce("Loading datasets…");
  try {
    state.names = new Map([[me.id, me.name]]);
    if (me.role === "admin") {
      for (const key of await client.keys()) state.names.set(key.id, key.name);
    }
    const datasets = await client.datasets();
    const select = $("dataset-select");
    const previous = select.value;
    clear(select).append(...datasets.map((d) => h("option", { value: d.id }, `${d.name} (${d.id})`)));
    $("empty").hidden = datasets.length > 0;
    select.disabled = datasets.length === 0;
    $("refresh").disabled = datasets.length === 0;
    if (!datasets.length) {
      clear($("dataset"));
      announce("No dataset is visible to this key.");
      return;
    }
    if (datasets.some((d) => d.id === previous)) select.value = previous;
    await loadDataset(select.value);
  } catch (error) {
    announce(`Could not load datasets: ${describe(error)}`);
  }
}

async function loadDataset(id) {
  const { client, me, names } = state;
  const load = ++state.loads;
  announce("Loading the dataset…");
  try {
    const pending = client.composition(id);
    pending.catch(() => {}); // handled below, once the rest is shown
    const [dataset, ledger, grants] = await Promise.all([
      client.dataset(id),
      client.ledger(id),
      client.grants(id),
    ]);
    if (load !== state.loads || state.client !== client) return; // a newer load or sign-out won
    const view = datasetView({ dataset, ledger, grants }, me, names, openCertificate);
    clear($("dataset")).append(view.node);
    state.charts = view.charts;
    drawCharts(true);
    announce(`Showing ${dataset.name}: ${ledger.length} ledger ${ledger.length === 1 ? "entry" : "entries"}.`);
    let part;
    try {
      part = compositionView(await pending);
    } catch (error) {
      part = { node: compositionError(`Could not load the composition: ${describe(error)}`), charts: [] };
    }
    if (load !== state.loads || state.client !== client) return;
    $("composition").replaceWith(part.node);
    state.charts = [...state.charts, ...part.charts];
    for (const chart of part.charts) chart.box.replaceChildren(chart.draw(chart.box.clientWidth));
  } catch (error) {
    if (load === state.loads) announce(`Could not load the dataset: ${describe(error)}`);
  }
}

function drawCharts(force) {
  const width = $("dataset").clientWidth;
  if (!force && width === state.drawnWidth) return;
  state.drawnWidth = width;
  for (const chart of state.charts) chart.box.replaceChildren(chart.draw(chart.box.clientWidth));
}

function dialogClose() {
  const dialog = $("certificate-dialog");
  if (dialog.open) dialog.close();
}

function openCertificate(entry, button) {
  const dialog = $("certificate-dialog");
  state.opener = button;
  $("certificate-title").textContent = `Certificate of ${entry.release_id}`;
  dialog.showModal();
  const body = $("certificate-body");
  renderCertificate(body, entry, body.clientWidth);
  body.scrollTop = 0;
  $("certificate-close").focus();
}

function signOut() {
  keyStore.clear();
  state.loads += 1;
  state.client = null;
  state.me = null;
  state.names = new Map();
  state.charts = [];
  dialogClose();
  clear($("dataset"));
  clear($("dataset-select"));
  showSignIn("");
  announce("Signed out. The key was removed from this tab.");
  $("api-key").focus();
}

function start() {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) {
      showSignIn("Enter an API key.");
      $("api-key").focus();
      return;
    }
    signIn(key, false);
  });
  $("sign-out").addEventListener("click", signOut);
  $("refresh").addEventListener("click", () => loadDatasets());
  $("dataset-select").addEventListener("change", (event) => loadDataset(event.target.value));

  const dialog = $("certificate-dialog");
  $("certificate-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close(); // a click on the backdrop
  });
  dialog.addEventListener("close", () => {
    if (state.opener && state.opener.isConnected) state.opener.focus();
    state.opener = null;
  });

  let pending = 0;
  window.addEventListener("resize", () => {
    window.clearTimeout(pending);
    pending = window.setTimeout(() => drawCharts(false), 120);
  });

  const saved = keyStore.get();
  if (saved) signIn(saved, true);
}

start();
