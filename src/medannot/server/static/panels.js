// Rendering of the page's lists and panels from API objects (no requests here): case list, label bar,
// provenance, version history, correction effort. All text goes in through textContent (never innerHTML).

import { labelColor } from "./viewer.js";

const STATUS_TEXT = { pending: "pending", in_review: "in review", accepted: "accepted", rejected: "rejected" };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "className") node.className = value;
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

/** "2026-11-22 08:01" in the reader's time zone, from an ISO time. */
export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export function statusText(status) {
  return STATUS_TEXT[status] || status || "";
}

export function setStatusBadge(node, status) {
  node.hidden = !status;
  node.textContent = statusText(status);
  node.className = `badge status-${status || "none"}`;
}

/** A job that has not finished, as short text ("annotating 40 %"), or "". */
function jobText(job) {
  if (!job || job.state === "done" || job.state === "succeeded") return "";
  if (job.state === "failed") return "annotation failed";
  const pct = typeof job.progress === "number" ? ` ${Math.round(job.progress * (job.progress <= 1 ? 100 : 1))} %` : "";
  return job.state === "running" ? `annotating${pct}` : job.state;
}

/**
 * Fill the case list.
 * @param {HTMLUListElement} list
 * @param {Array} cases - as from GET /api/projects/{pid}/cases.
 * @param {string} query - text the name must contain (case-insensitive).
 * @param {string|null} openId - the case shown now.
 * @param {(c) => void} onOpen
 * @returns {number} how many cases are shown.
 */
export function renderCaseList(list, cases, query, openId, onOpen) {
  const needle = query.trim().toLowerCase();
  const shown = cases.filter((c) => !needle || String(c.name).toLowerCase().includes(needle));
  list.replaceChildren(...shown.map((c) => {
    const job = jobText(c.job);
    const meta = caseMeta(c);
    const button = el("button", { type: "button", className: "case-button", dataset: { caseId: String(c.id) } },
      el("span", { className: "case-name", textContent: c.name }),
      el("span", { className: `badge status-${c.status}`, textContent: statusText(c.status) }),
      meta ? el("span", { className: "case-meta", textContent: meta }) : null,
      job ? el("span", { className: "job", textContent: job }) : null);
    button.addEventListener("click", () => onOpen(c));
    const item = el("li", { className: String(c.id) === String(openId) ? "current" : "" }, button);
    return item;
  }));
  return shown.length;
}

/** "#3 score 0.412 · proposed by v2": the case's place in the project's order and the model that proposed it. */
function caseMeta(c) {
  const parts = [];
  if (c.rank) parts.push(`#${c.rank}`);
  if (typeof c.score === "number") parts.push(`score ${c.score.toFixed(3)}`);
  const v = c.latest_version;
  if (v && v.kind === "proposal" && v.model_name) parts.push(`proposed by ${v.model_version || v.model_name}`);
  return parts.join(" \u00b7 ");
}

/** True when some case of the list still waits for its annotation job. */
export function hasRunningJobs(cases) {
  return cases.some((c) => c.job && ["queued", "running", "pending"].includes(c.job.state));
}

/**
 * The label bar: one entry per label with its colour, number key, a button that makes it the active label and
 * a checkbox for its visibility.
 */
export function renderLabels(container, labels, activeValue, hidden, onPick, onVisible) {
  container.replaceChildren(...labels.map((label, index) => {
    const swatch = el("span", { className: "swatch" });
    swatch.style.background = labelColor(label);
    const pick = el("button", {
      type: "button", className: label.value === activeValue ? "label-pick active" : "label-pick",
      title: index < 9 ? `Paint with this label (${index + 1})` : "Paint with this label",
      dataset: { label: String(label.value) },
    }, swatch, el("span", { textContent: `${index < 9 ? index + 1 : "-"} ${label.name}` }));
    pick.addEventListener("click", () => onPick(label.value));
    const box = el("input", { type: "checkbox", checked: !hidden.has(label.value), title: "Show this label",
      dataset: { visible: String(label.value) } });
    box.setAttribute("aria-label", `Show ${label.name}`);
    box.addEventListener("change", () => onVisible(label.value, box.checked));
    return el("span", { className: "label-entry" }, box, pick);
  }));
}

function fact(term, value) {
  return [el("dt", { textContent: term }), el("dd", { textContent: value === null || value === undefined ? "-" : String(value) })];
}

/** Model and version facts of the case: where its masks came from. */
export function renderProvenance(container, detail, versions) {
  const proposal = versions.find((v) => v.kind === "proposal") || null; // the newest proposal
  const latest = versions[0] || detail.latest_version || null;
  const by = detail.proposed_by || proposal;
  const model = by && by.model_name ? `${by.model_name}${by.model_version ? ` ${by.model_version}` : ""}` : null;
  container.replaceChildren(
    ...fact("Case", detail.name),
    ...fact("Status", statusText(detail.status)),
    ...fact("Proposed by", model || (proposal ? proposal.author : "no proposal yet")),
    ...fact("Split", detail.split ? (detail.split === "val" ? "validation (never trains)" : "training") : null),
    ...fact("Proposed", proposal ? formatTime(proposal.created) : null),
    ...fact("Latest version", latest ? `v${latest.number} ${latest.kind} by ${latest.author}` : null),
    ...fact("Accepted version", detail.accepted_version ? `v${detail.accepted_version.number}` : null),
  );
}

/** The version history, newest first. */
export function renderVersions(list, versions) {
  list.replaceChildren(...versions.map((v) => {
    const model = v.kind === "proposal" && v.model_name
      ? ` (${v.model_name}${v.model_version ? ` ${v.model_version}` : ""})` : "";
    return el("li", { value: v.number, dataset: { versionId: String(v.id), kind: v.kind } },
      el("span", { className: `kind kind-${v.kind}`, textContent: `v${v.number} ${v.kind}` }),
      el("span", { textContent: ` ${v.author || ""}${model}` }),
      el("div", { className: "muted", textContent: formatTime(v.created) }));
  }));
}

function round(value, digits) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : value;
}

/** Dice and HD95 between proposal and accepted mask, voxels changed, time spent. */
export function renderEffort(section, container, effort) {
  section.hidden = !effort;
  if (!effort) {
    container.replaceChildren();
    return;
  }
  const seconds = typeof effort.seconds === "number" ? effort.seconds : null;
  const time = seconds === null ? null : seconds >= 60
    ? `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s` : `${round(seconds, 1)} s`;
  const none = effort.proposal === "none"; // nothing was proposed (a project without a model yet)
  container.replaceChildren(
    ...fact("Dice vs proposal", none ? "no proposal (annotated from nothing)" : round(effort.dice, 4)),
    ...fact("HD95 vs proposal (mm)", none ? "-" : effort.hd95_mm === null ? "n/a (empty mask)" : round(effort.hd95_mm, 2)),
    ...fact("Voxels changed", effort.voxels_changed),
    ...fact("Smart clicks / boxes", typeof effort.clicks === "number" ? `${effort.clicks} / ${effort.boxes}` : null),
    ...fact("Time spent", time),
  );
}

/**
 * The model panel: what proposes now, the versions (status, validation Dice, the gate's reason) and, for project
 * admins, an Activate button per version.
 * @param {object} models - GET /api/projects/{pid}/models.
 * @param {boolean} manage - the caller may train and activate.
 * @param {(ref: string) => void} onActivate
 */
export function renderModels(facts, list, models, manage, onActivate) {
  const job = (models.training_jobs || []).find((j) => ["queued", "running"].includes(j.state));
  facts.replaceChildren(
    ...fact("Proposing", models.proposing || "nothing yet (no model: draw or use Smart)"),
    ...fact("Base model", models.base_model || "none"),
    ...fact("Training", job ? `${job.state} ${Math.round(job.progress * 100)} %: ${job.message}` : "idle"),
  );
  list.replaceChildren(...(models.versions || []).map((v) => {
    const dice = v.validation && typeof v.validation.mean_dice === "number" ? v.validation.mean_dice.toFixed(3) : "-";
    const before = v.gate && v.gate.active && typeof v.gate.active.mean_dice === "number" ? v.gate.active.mean_dice.toFixed(3) : null;
    const item = el("li", { dataset: { version: v.name, status: v.status } },
      el("span", { className: `kind status-${v.status}`, textContent: `${v.name} ${v.status}` }),
      el("span", { textContent: ` val Dice ${dice}${before ? ` (active had ${before})` : ""}` }),
      el("div", { className: "muted", textContent: `${v.train_cases.length} train / ${v.val_cases.length} val \u00b7 ${v.trigger}` }),
      el("div", { className: "muted", textContent: v.gate && v.gate.reason ? `gate: ${v.gate.reason}` : "" }));
    if (manage && !v.active) {
      const button = el("button", { type: "button", textContent: "Activate", dataset: { activate: v.name } });
      button.addEventListener("click", () => onActivate(v.name));
      item.append(button);
    }
    return item;
  }));
}
