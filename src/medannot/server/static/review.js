// The review page: pick a case, look at the image and its mask, correct the mask, save versions, accept or
// reject. Drafts are autosaved to the server every AUTOSAVE_SECONDS while there are unsaved edits and
// restored when the case is opened again. API: see the server's OpenAPI docs (/docs).

import { ApiError, clearLogin, getToken, getUser, redirectToLogin, request, requestBytes, requestJson,
  sendBytes } from "./api.js";
import { MaskViewer } from "./viewer.js";
import { formatTime, hasRunningJobs, renderCaseList, renderEffort, renderLabels, renderModels, renderProvenance,
  renderVersions, setStatusBadge } from "./panels.js";
import { SmartTool } from "./smart.js";
import { installShortcuts, renderShortcutTable } from "./shortcuts.js";
import { ActiveClock } from "./clock.js";

/** Seconds between draft autosaves (when there are edits); `?autosave=N` in the page URL overrides it. */
const AUTOSAVE_SECONDS = Number(new URLSearchParams(location.search).get("autosave")) || 10;
/** Seconds between case-list refreshes while annotation jobs run. */
const JOB_POLL_SECONDS = 5;

const $ = (id) => document.getElementById(id);

const state = {
  projects: [],
  project: null,
  models: null, // GET /api/projects/{pid}/models
  cases: [],
  detail: null, // GET /api/cases/{cid} of the open case
  versions: [],
  base: null, // the version the edits start from (its id goes with every save)
  dirty: false, // edits not saved as a version
  draftDirty: false, // edits not yet in the server-side draft
  conflict: null, // the latest version after a 409
  busy: false,
};

const viewer = new MaskViewer($("viewer-canvas"), {
  onEdit: () => markEdited(),
  onLocation: (loc) => showLocation(loc),
  onWindow: (min, max) => showWindow(min, max),
});

const smart = new SmartTool(viewer, document.querySelector(".canvas-box"), {
  caseId: () => (state.detail && !state.busy ? state.detail.id : null),
  label: () => viewer.activeLabel,
  onResult: ({ voxels, seconds, count }) => {
    document.body.dataset.smartCount = String(count);
    message(`Smart: ${voxels} voxels after ${count} interaction${count === 1 ? "" : "s"} (${seconds.toFixed(2)} s).`);
  },
  onError: (err) => {
    if (isLocked(err)) showLocked();
    else message(`Smart tool: ${describeError(err)}`, "error");
  },
  busy: (on) => { document.body.dataset.smartBusy = String(on); },
});

// ---------------------------------------------------------------- small UI helpers

function setPageState(name) {
  document.body.dataset.state = name;
}

function message(text, kind = "info") {
  const node = $("message");
  node.textContent = text;
  node.className = `message ${kind}`;
}

function setSaveState(text) {
  $("save-state").textContent = text;
  document.body.dataset.dirty = String(state.dirty);
}

function showBanner(text, actions = []) {
  $("banner-text").textContent = text;
  $("banner-actions").replaceChildren(...actions.map(([label, handler, id]) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    if (id) button.id = id;
    button.addEventListener("click", handler);
    return button;
  }));
  $("banner").hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
  state.conflict = null;
}

function showLocation(loc) {
  const mm = Array.from(loc.mm).slice(0, 3);
  const vox = Array.from(loc.vox).slice(0, 3);
  const node = $("location");
  node.textContent = `voxel ${vox.join(", ")}  |  ${mm.map((v) => v.toFixed(1)).join(", ")} mm`;
  node.dataset.mm = mm.join(",");
  node.dataset.vox = vox.join(",");
}

function showWindow(min, max) {
  const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Number(v.toPrecision(4)));
  $("window-min").value = fmt(min);
  $("window-max").value = fmt(max);
}

function describeError(err) {
  if (err instanceof ApiError) {
    const detail = err.body && typeof err.body === "object" ? err.body.detail : err.body;
    return `${err.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`;
  }
  return err && err.message ? err.message : String(err);
}

function reviewable() {
  return Boolean(state.detail) && viewer.hasImage && !state.busy;
}

/** Accepting and rejecting need the reviewer or admin role in the case's project (annotators only edit). */
function mayDecide() {
  return !state.project || state.project.role !== "annotator";
}

function applyRole() {
  const allowed = mayDecide();
  for (const id of ["accept-button", "reject-button"]) {
    $(id).disabled = !allowed;
    $(id).title = allowed ? $(id).title.replace(/ - .*$/, "") : `${$(id).title.replace(/ - .*$/, "")} - needs the reviewer role`;
  }
}

// ---------------------------------------------------------------- time spent

const clock = new ActiveClock();

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") autosaveDraft();
});

// ---------------------------------------------------------------- projects and the case list

async function loadProjects() {
  state.projects = await requestJson("/api/projects");
  const select = $("project-select");
  select.replaceChildren(...state.projects.map((p) => {
    const option = document.createElement("option");
    option.value = String(p.id);
    option.textContent = `${p.name} (${p.role})`;
    return option;
  }));
  const wanted = new URLSearchParams(location.hash.slice(1)).get("project");
  const project = state.projects.find((p) => String(p.id) === wanted) || state.projects[0] || null;
  if (project) select.value = String(project.id);
  await selectProject(project);
}

async function selectProject(project) {
  state.project = project;
  applyRole();
  if (!project) {
    message("You are not a member of any project yet.", "warn");
    return;
  }
  await refreshCases();
  await refreshModels();
}

// ---------------------------------------------------------------- the project's model (learning loop)

function mayManage() {
  return Boolean(state.project) && state.project.role === "admin";
}

async function refreshModels() {
  if (!state.project) return;
  try {
    state.models = await requestJson(`/api/projects/${state.project.id}/models`);
  } catch (err) {
    message(`Could not load the project's models: ${describeError(err)}`, "error");
    return;
  }
  renderModels($("model-facts"), $("model-list"), state.models, mayManage(), (ref) => activateVersion(ref));
  $("train-button").hidden = !mayManage();
  $("repropose-button").hidden = state.project.role === "reviewer";
  const training = (state.models.training_jobs || []).some((j) => ["queued", "running"].includes(j.state));
  document.body.dataset.training = String(training);
}

async function trainModel() {
  try {
    const job = await requestJson(`/api/projects/${state.project.id}/train`, { method: "POST", json: {} });
    message(`Training queued (job ${job.id}): ${job.message}`);
  } catch (err) {
    message(`Could not train: ${describeError(err)}`, "error");
  }
  await refreshModels();
}

async function activateVersion(ref) {
  try {
    const answer = await requestJson(`/api/projects/${state.project.id}/models/${ref}/activate`, { method: "POST", json: {} });
    message(`${answer.proposing} proposes now; ${answer.reproposals} unreviewed case(s) queued for new proposals.`);
  } catch (err) {
    message(`Could not activate ${ref}: ${describeError(err)}`, "error");
  }
  await refreshModels();
  await refreshCases();
}

async function reproposeCases() {
  try {
    const answer = await requestJson(`/api/projects/${state.project.id}/repropose`, { method: "POST" });
    message(`${answer.queued} case(s) queued for new proposals.`);
  } catch (err) {
    message(`Could not re-propose: ${describeError(err)}`, "error");
  }
  await refreshCases();
}

async function openNextCase() {
  if (!state.project) return;
  try {
    const next = await requestJson(`/api/projects/${state.project.id}/next`);
    await openCase(next.id);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) message("Every case of this project has been reviewed.");
    else message(`Could not find the next case: ${describeError(err)}`, "error");
  }
}

async function refreshCases() {
  if (!state.project) return;
  const status = $("status-filter").value;
  const query = new URLSearchParams({ order: "strategy", ...(status ? { status } : {}) });
  state.cases = await requestJson(`/api/projects/${state.project.id}/cases?${query}`);
  const strategy = state.project.settings ? state.project.settings.strategy : null;
  $("case-order").textContent = strategy ? `Order: ${strategy}` : "";
  renderCases();
}

function renderCases() {
  const shown = renderCaseList($("case-list"), state.cases, $("case-search").value,
    state.detail ? state.detail.id : null, (c) => openCase(c.id));
  $("case-list-empty").hidden = shown > 0;
}

setInterval(() => {
  if (document.visibilityState !== "visible") return;
  if (hasRunningJobs(state.cases)) refreshCases().catch(() => {});
  if (document.body.dataset.training === "true") {
    refreshModels().then(() => (document.body.dataset.training === "true" ? null : refreshCases())).catch(() => {});
  }
}, JOB_POLL_SECONDS * 1000);

// ---------------------------------------------------------------- opening a case

async function openCase(caseId) {
  if (state.busy) return;
  if (state.detail && String(state.detail.id) === String(caseId)) return;
  await autosaveDraft();
  smart.finishObject();
  state.busy = true;
  setPageState("loading");
  hideBanner();
  message("Loading the case ...");
  try {
    const detail = await requestJson(`/api/cases/${caseId}`);
    if (detail.status === "pending") {
      await request(`/api/cases/${caseId}/open`, { method: "POST" }).catch(() => {});
      detail.status = "in_review";
    }
    const latest = detail.latest_version;
    const [imageBytes, maskBytes, draft, versions] = await Promise.all([
      requestBytes(detail.image_url || `/api/cases/${caseId}/image`),
      latest ? requestBytes(latest.mask_url) : Promise.resolve(null),
      fetchDraft(caseId),
      requestJson(`/api/cases/${caseId}/versions`),
    ]);
    state.detail = detail;
    state.versions = versions;
    state.base = latest;
    const labels = detail.labels || (state.project ? state.project.labels : []);
    await viewer.loadCase(imageBytes, draft ? draft.bytes : maskBytes, labels);
    setView(viewer.view);
    showLocation(viewer.location());
    $("viewer-placeholder").hidden = true;
    viewer.setOpacity(Number($("opacity").value));
    viewer.setPenSize(Number($("pen-size").value));
    renderLabelBar();
    renderCaseInfo();
    state.dirty = Boolean(draft);
    state.draftDirty = false;
    clock.restart();
    history.replaceState(null, "", `#project=${state.project.id}&case=${caseId}`);
    if (draft) {
      if (draft.baseId && latest && String(draft.baseId) !== String(latest.id)) {
        state.base = versions.find((v) => String(v.id) === String(draft.baseId)) || { id: draft.baseId };
      }
      showBanner(`Restored your unsaved draft${draft.saved ? ` from ${formatTime(draft.saved)}` : ""}.`,
        [["Discard draft", () => discardDraft(), "discard-draft"]]);
    }
    setSaveState(draft ? "draft restored (not saved as a version)" : latest ? `v${latest.number} loaded` : "no mask yet");
    const noModel = state.models && !state.models.proposing;
    message(latest ? "" : noModel ? "This project has no model yet: draw the mask or use the Smart tool (S); accepted cases train it."
      : "No proposal yet: the annotation job has not finished. You can draw from scratch.", latest ? "info" : "warn");
    const listed = state.cases.find((c) => String(c.id) === String(caseId));
    if (listed) listed.status = detail.status; // opening marked it in review
    renderCases();
    setPageState("ready");
  } catch (err) {
    setPageState("error");
    message(`Could not open the case: ${describeError(err)}`, "error");
  } finally {
    state.busy = false;
  }
}

/** The reviewer's draft of a case: {bytes, baseId, saved} or null. */
async function fetchDraft(caseId) {
  try {
    const response = await request(`/api/cases/${caseId}/draft`);
    return { bytes: await response.arrayBuffer(), baseId: response.headers.get("X-Base-Version"),
      saved: response.headers.get("X-Draft-Saved") || response.headers.get("Last-Modified") };
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

function renderLabelBar() {
  const labels = viewer.labels;
  if (!labels.some((l) => l.value === viewer.activeLabel) && labels.length) viewer.setActiveLabel(labels[0].value);
  renderLabels($("labels"), labels, viewer.activeLabel, viewer.hidden,
    (value) => { viewer.setActiveLabel(value); smart.finishObject(); if (viewer.tool === "navigate") setTool("draw"); renderLabelBar(); },
    (value, visible) => viewer.setLabelVisible(value, visible));
}

function renderCaseInfo() {
  const detail = state.detail;
  $("case-title").textContent = detail.name;
  setStatusBadge($("case-status"), detail.status);
  document.body.dataset.caseId = String(detail.id);
  renderProvenance($("provenance"), detail, state.versions);
  renderVersions($("version-list"), state.versions);
  renderEffort($("effort-section"), $("effort"), detail.effort);
  $("reopen-button").hidden = !(detail.locked && mayDecide());
}

/** True when the server refused a change because the case is accepted or rejected (it must be reopened first). */
function isLocked(err) {
  return err instanceof ApiError && err.status === 409 && Boolean(err.body && err.body.locked);
}

function showLocked() {
  state.draftDirty = false;
  setSaveState("not saved: the case is locked");
  message(`This case is ${state.detail.status}: ${mayDecide() ? "reopen it" : "a reviewer must reopen it"} to edit.`, "warn");
}

async function reopenCase() {
  state.busy = true;
  try {
    const detail = await requestJson(`/api/cases/${state.detail.id}/reopen`, { method: "POST", json: {} });
    await afterDecision(detail, "Reopened for editing.");
    state.base = detail.latest_version;
  } catch (err) {
    message(`Could not reopen: ${describeError(err)}`, "error");
  } finally {
    state.busy = false;
  }
}

// ---------------------------------------------------------------- editing, drafts, saving

function markEdited() {
  state.dirty = true;
  state.draftDirty = true;
  setSaveState("unsaved edits");
}

async function autosaveDraft() {
  if (!state.detail || !state.draftDirty || !viewer.hasImage) return;
  const caseId = state.detail.id;
  state.draftDirty = false;
  try {
    const bytes = await viewer.exportMask();
    const base = state.base ? `?base_version=${encodeURIComponent(state.base.id)}` : "";
    await sendBytes(`/api/cases/${caseId}/draft${base}`, "PUT", bytes);
    if (state.detail && state.detail.id === caseId && state.dirty && !state.conflict) {
      setSaveState(`draft autosaved ${formatTime(new Date().toISOString()).slice(11)}`);
    }
  } catch (err) {
    if (isLocked(err)) {
      showLocked();
      return;
    }
    state.draftDirty = true;
    message(`Autosave failed: ${describeError(err)}`, "error");
  }
}

setInterval(() => { autosaveDraft(); }, AUTOSAVE_SECONDS * 1000);

async function deleteDraft(caseId) {
  try {
    await request(`/api/cases/${caseId}/draft`, { method: "DELETE" });
  } catch (err) {
    if (!(err instanceof ApiError) || ![404, 405].includes(err.status)) throw err;
  }
}

async function discardDraft() {
  const detail = state.detail;
  state.draftDirty = false;
  await deleteDraft(detail.id);
  await reloadLatest();
  message("Draft discarded.");
}

/** Show the newest version's mask (dropping the edits on screen). */
async function reloadLatest() {
  const caseId = state.detail.id;
  const [detail, versions] = await Promise.all([requestJson(`/api/cases/${caseId}`),
    requestJson(`/api/cases/${caseId}/versions`)]);
  const latest = detail.latest_version;
  await viewer.loadMask(latest ? await requestBytes(latest.mask_url) : null);
  state.detail = detail;
  state.versions = versions;
  state.base = latest;
  state.dirty = false;
  state.draftDirty = false;
  hideBanner();
  renderCaseInfo();
  setSaveState(latest ? `v${latest.number} loaded` : "no mask yet");
}

/**
 * Save the mask as a new version on top of state.base.
 * @returns {Promise<boolean>} true when saved (or nothing to save), false on a conflict or an error.
 */
async function saveVersion({ force = false } = {}) {
  if (!reviewable() && !force) return false;
  if (!state.dirty) {
    message("Nothing to save: no edits since the last version.");
    return true;
  }
  const caseId = state.detail.id;
  state.busy = true;
  setSaveState("saving ...");
  try {
    const bytes = await viewer.exportMask();
    const base = state.base ? `?base_version=${encodeURIComponent(state.base.id)}` : "";
    const version = await sendBytes(`/api/cases/${caseId}/versions${base}`, "POST", bytes);
    state.base = version;
    state.dirty = false;
    state.draftDirty = false;
    smart.finishObject();
    state.versions = [version, ...state.versions.filter((v) => v.id !== version.id)];
    state.detail.latest_version = version;
    hideBanner();
    renderCaseInfo();
    setSaveState(`saved as v${version.number}`);
    message(`Saved as version ${version.number}.`);
    refreshCases().catch(() => {});
    return true;
  } catch (err) {
    if (isLocked(err)) {
      showLocked();
    } else if (err instanceof ApiError && err.status === 409) {
      state.draftDirty = true;
      setSaveState("not saved: conflict");
      showConflict(err.body && err.body.latest);
    } else {
      setSaveState("not saved");
      message(`Could not save: ${describeError(err)}`, "error");
    }
    return false;
  } finally {
    state.busy = false;
  }
}

function showConflict(latest) {
  state.conflict = latest || null;
  const who = latest ? `Version ${latest.number} was saved by ${latest.author} at ${formatTime(latest.created)}`
    : "Someone saved a newer version";
  showBanner(`${who} after you started editing. Your edits were NOT saved (they are kept in your draft).`, [
    ["Load the latest version", () => reloadLatest().catch((e) => message(describeError(e), "error")), "load-latest"],
    ["Save mine on top of it", () => saveOnTopOfLatest(), "save-on-top"],
  ]);
  $("banner").classList.add("conflict");
  autosaveDraft();
}

async function saveOnTopOfLatest() {
  if (state.conflict) state.base = state.conflict;
  await saveVersion();
}

// ---------------------------------------------------------------- accept and reject

async function acceptCase() {
  if (!reviewable() || !mayDecide()) return;
  if (state.dirty && !(await saveVersion())) return;
  if (!state.base) {
    message("Nothing to accept: the case has no mask yet.", "warn");
    return;
  }
  state.busy = true;
  try {
    const detail = await requestJson(`/api/cases/${state.detail.id}/accept`, {
      method: "POST", json: { version_id: state.base.id, seconds_spent: clock.seconds() } });
    await afterDecision(detail, "Accepted.");
  } catch (err) {
    if (isLocked(err)) message(`This case is ${state.detail.status}: reopen it first.`, "warn");
    else if (err instanceof ApiError && err.status === 409) showConflict(err.body && err.body.latest);
    else message(`Could not accept: ${describeError(err)}`, "error");
  } finally {
    state.busy = false;
  }
}

async function rejectCase(reason) {
  state.busy = true;
  try {
    const detail = await requestJson(`/api/cases/${state.detail.id}/reject`, { method: "POST", json: { reason } });
    await afterDecision(detail, "Rejected.");
  } catch (err) {
    message(`Could not reject: ${describeError(err)}`, "error");
  } finally {
    state.busy = false;
  }
}

async function afterDecision(detail, text) {
  state.detail = { ...state.detail, ...detail };
  state.versions = await requestJson(`/api/cases/${state.detail.id}/versions`);
  if (state.detail.accepted_version) state.base = state.detail.accepted_version;
  renderCaseInfo();
  setSaveState(text);
  message(text);
  await refreshCases();
  await refreshModels(); // an accepted case may have started a training round
}

function openRejectDialog() {
  if (!reviewable() || !mayDecide()) return;
  $("reject-reason").value = "";
  $("reject-dialog").hidden = false;
  $("reject-reason").focus();
}

// ---------------------------------------------------------------- tools and view

function setTool(tool) {
  viewer.setTool(tool);
  smart.setEnabled(tool === "smart");
  $("new-object-button").hidden = tool !== "smart";
  for (const button of document.querySelectorAll("[data-tool]")) {
    button.classList.toggle("active", button.dataset.tool === tool);
  }
  document.body.dataset.tool = tool;
}

function setView(name) {
  viewer.setView(name);
  for (const button of document.querySelectorAll("[data-view]")) {
    button.classList.toggle("active", button.dataset.view === name);
  }
  document.body.dataset.view = name;
}

function closeDialogs() {
  let closed = false;
  for (const overlay of document.querySelectorAll(".overlay")) {
    closed = closed || !overlay.hidden;
    overlay.hidden = true;
  }
  return closed;
}

function toggleHelp() {
  const help = $("help");
  help.hidden = !help.hidden;
}

function wireControls() {
  $("project-select").addEventListener("change", (e) => {
    selectProject(state.projects.find((p) => String(p.id) === e.target.value) || null);
  });
  $("status-filter").addEventListener("change", () => refreshCases());
  $("case-search").addEventListener("input", () => renderCases());
  for (const button of document.querySelectorAll("[data-view]")) {
    button.addEventListener("click", () => setView(button.dataset.view));
  }
  for (const button of document.querySelectorAll("[data-tool]")) {
    button.addEventListener("click", () => setTool(button.dataset.tool));
  }
  $("pen-size").addEventListener("change", (e) => viewer.setPenSize(Number(e.target.value)));
  for (const input of document.querySelectorAll(".toolbar input[type=number]")) {
    // Enter applies the value and gives the keyboard back to the shortcuts.
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") input.blur(); });
  }
  $("undo-button").addEventListener("click", () => undo());
  $("new-object-button").addEventListener("click", () => newObject());
  $("train-button").addEventListener("click", () => trainModel());
  $("repropose-button").addEventListener("click", () => reproposeCases());
  $("next-button").addEventListener("click", () => openNextCase());
  $("opacity").addEventListener("input", (e) => viewer.setOpacity(Number(e.target.value)));
  const applyWindow = () => viewer.setWindow(Number($("window-min").value), Number($("window-max").value));
  $("window-min").addEventListener("change", applyWindow);
  $("window-max").addEventListener("change", applyWindow);
  $("window-reset").addEventListener("click", () => { if (viewer.hasImage) showWindow(...viewer.resetWindow()); });
  $("save-button").addEventListener("click", () => saveVersion());
  $("accept-button").addEventListener("click", () => acceptCase());
  $("reject-button").addEventListener("click", () => openRejectDialog());
  $("reopen-button").addEventListener("click", () => reopenCase());
  $("help-button").addEventListener("click", () => toggleHelp());
  $("logout-button").addEventListener("click", async () => {
    await autosaveDraft();
    await request("/api/logout", { method: "POST" }).catch(() => {});
    clearLogin();
    redirectToLogin();
  });
  $("reject-form").addEventListener("submit", (e) => {
    e.preventDefault();
    $("reject-dialog").hidden = true;
    rejectCase($("reject-reason").value.trim());
  });
  for (const button of document.querySelectorAll("[data-close]")) {
    button.addEventListener("click", () => closeDialogs());
  }
}

function undo() {
  if (smart.canUndo()) {
    smart.undo().then((done) => { if (done) message(`Undone: ${smart.count} interaction(s) left on this object.`); });
    return;
  }
  if (!viewer.undo()) message("Nothing to undo.");
}

function newObject() {
  smart.finishObject();
  message("Smart tool: the next click starts a new object.");
}

function stepPen(delta) {
  viewer.setPenSize(viewer.penSize + delta);
  $("pen-size").value = String(viewer.penSize);
}

let maskHidden = false;

function toggleMask() {
  maskHidden = !maskHidden;
  viewer.setOpacity(maskHidden ? 0 : Number($("opacity").value));
}

function stepCase(delta) {
  const buttons = [...document.querySelectorAll("#case-list .case-button")];
  if (!buttons.length) return;
  const current = buttons.findIndex((b) => state.detail && b.dataset.caseId === String(state.detail.id));
  const next = current < 0 ? 0 : Math.max(0, Math.min(buttons.length - 1, current + delta));
  openCase(buttons[next].dataset.caseId);
}

// ---------------------------------------------------------------- start

async function main() {
  if (!getToken()) {
    redirectToLogin();
    return;
  }
  setPageState("starting");
  const user = getUser();
  $("user-name").textContent = user ? user.username : "";
  renderShortcutTable($("shortcut-table"));
  wireControls();
  installShortcuts({
    help: () => toggleHelp(),
    escape: () => closeDialogs(),
    tool: (tool) => reviewable() && setTool(tool),
    label: (index) => {
      const label = viewer.labels[index];
      if (!label) return;
      viewer.setActiveLabel(label.value);
      smart.finishObject();
      if (viewer.tool === "navigate") setTool("draw");
      renderLabelBar();
    },
    undo: () => undo(),
    newObject: () => newObject(),
    save: () => saveVersion(),
    accept: () => acceptCase(),
    reject: () => openRejectDialog(),
    slice: (delta) => viewer.moveSlice(delta),
    view: () => setView(viewer.cycleView()),
    pen: (delta) => stepPen(delta),
    toggleMask: () => toggleMask(),
    caseStep: (delta) => stepCase(delta),
  });
  await viewer.init();
  viewer.setPenSize(Number($("pen-size").value));
  setTool("navigate");
  setView("multiplanar");
  await loadProjects();
  const wantedCase = new URLSearchParams(location.hash.slice(1)).get("case");
  setPageState("idle");
  if (wantedCase) await openCase(wantedCase);
}

window.addEventListener("beforeunload", (event) => {
  if (state.dirty && state.draftDirty) event.preventDefault();
});

main().catch((err) => {
  setPageState("error");
  message(`The page could not start: ${describeError(err)}`, "error");
});
