// The Smart tool: click inside an object (positive point), shift-click or right click outside it (negative point),
// drag a box around it; after each interaction the server's promptable engine returns the object's mask
// (POST /api/cases/{cid}/interactions) and it is painted in place with the active label over the mask as it was when
// the object was started. Undo removes the last interaction (POST .../interactions/undo). "New object" starts the
// next object. Each object is a session on the server; every interaction is recorded there (the case's effort counts
// clicks and boxes). The result is saved as a new version like any edit (Save).

import { ApiError, request } from "./api.js";

/** Pixels the pointer may move between press and release and still count as a click (not a box). */
const CLICK_SLOP = 5;

export class SmartTool {
  /**
   * @param {import("./viewer.js").MaskViewer} viewer
   * @param {HTMLElement} surface - the element around the canvas (its capture-phase listeners take the mouse first).
   * @param {object} callbacks - caseId() -> id, label() -> active label value, onResult({voxels, seconds, count}),
   *   onError(err), busy(flag).
   */
  constructor(viewer, surface, callbacks) {
    this.viewer = viewer;
    this.surface = surface;
    this.callbacks = callbacks;
    this.enabled = false;
    this.session = null; // server session id of the current object
    this.base = null; // the drawing (RAS bitmap) before the current object
    this.label = null;
    this.count = 0; // interactions of the current object not undone
    this.pending = false;
    this.press = null;
    this.band = document.createElement("div");
    this.band.className = "smart-band";
    this.band.hidden = true;
    surface.append(this.band);
    for (const type of ["mousedown", "mousemove", "mouseup", "contextmenu", "dblclick"]) {
      surface.addEventListener(type, (e) => this.handle(e), { capture: true });
    }
  }

  setEnabled(on) {
    this.enabled = on;
    this.surface.classList.toggle("smart-on", on);
    if (!on) this.finishObject();
  }

  /** Forget the current object (the next interaction starts a new one); its mask stays on the drawing. */
  finishObject() {
    this.session = null;
    this.base = null;
    this.count = 0;
    this.press = null;
    this.band.hidden = true;
  }

  /** Canvas pixel position of a mouse event -> world mm [x, y, z], or null outside the image. */
  worldAt(event) {
    const nv = this.viewer.nv;
    const rect = nv.canvas.getBoundingClientRect();
    const dpr = nv.uiData.dpr || window.devicePixelRatio || 1;
    const frac = nv.canvasPos2frac([(event.clientX - rect.left) * dpr, (event.clientY - rect.top) * dpr]);
    if (!frac || frac[0] < 0 || frac[1] < 0 || frac[2] < 0) return null;
    return Array.from(nv.frac2mm(frac, 0, true)).slice(0, 3);
  }

  handle(event) {
    if (!this.enabled || !this.viewer.hasImage) return;
    event.preventDefault();
    event.stopPropagation();
    if (event.type === "mousedown") {
      this.press = { x: event.clientX, y: event.clientY, button: event.button, shift: event.shiftKey, mm: this.worldAt(event) };
    } else if (event.type === "mousemove" && this.press && this.press.button === 0) {
      this.showBand(event);
    } else if (event.type === "mouseup" && this.press) {
      const press = this.press;
      this.press = null;
      this.band.hidden = true;
      const moved = Math.hypot(event.clientX - press.x, event.clientY - press.y);
      const here = this.worldAt(event);
      if (!press.mm || !here) {
        this.callbacks.onError?.(new Error("Click on the image (outside it there is nothing to segment)."));
        return;
      }
      if (moved > CLICK_SLOP && press.button === 0 && !press.shift) {
        this.interact({ kind: "box", box: [press.mm, here] });
      } else {
        const negative = press.button === 2 || press.shift;
        this.interact({ kind: "point", point: press.mm, positive: !negative });
      }
    }
  }

  showBand(event) {
    const rect = this.surface.getBoundingClientRect();
    const x0 = Math.min(this.press.x, event.clientX) - rect.left;
    const y0 = Math.min(this.press.y, event.clientY) - rect.top;
    Object.assign(this.band.style, { left: `${x0}px`, top: `${y0}px`, width: `${Math.abs(event.clientX - this.press.x)}px`,
      height: `${Math.abs(event.clientY - this.press.y)}px` });
    this.band.hidden = Math.hypot(event.clientX - this.press.x, event.clientY - this.press.y) <= CLICK_SLOP;
  }

  /** Send one interaction; paint the object's new mask. */
  async interact(body) {
    if (this.pending) return;
    const caseId = this.callbacks.caseId();
    if (!caseId) return;
    if (this.session === null) {
      this.base = this.viewer.drawingCopy();
      this.label = this.callbacks.label();
    }
    this.pending = true;
    this.callbacks.busy?.(true);
    try {
      const response = await request(`/api/cases/${caseId}/interactions`, {
        method: "POST", json: { ...body, session: this.session, label: this.label } });
      this.session = Number(response.headers.get("X-Session"));
      this.count += 1;
      await this.paint(response);
    } catch (err) {
      if (this.count === 0) this.finishObject();
      this.callbacks.onError?.(err);
    } finally {
      this.pending = false;
      this.callbacks.busy?.(false);
    }
  }

  /** True when Undo should remove an interaction (the Smart tool is on and its object has one). */
  canUndo() {
    return this.enabled && this.session !== null && this.count > 0;
  }

  async undo() {
    if (!this.canUndo() || this.pending) return false;
    const caseId = this.callbacks.caseId();
    this.pending = true;
    this.callbacks.busy?.(true);
    try {
      const response = await request(`/api/cases/${caseId}/interactions/undo`, { method: "POST", json: { session: this.session } });
      this.count = Number(response.headers.get("X-Remaining"));
      await this.paint(response);
      if (this.count === 0) this.finishObject();
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) this.finishObject();
      this.callbacks.onError?.(err);
      return false;
    } finally {
      this.pending = false;
      this.callbacks.busy?.(false);
    }
  }

  async paint(response) {
    const bytes = await response.arrayBuffer();
    const voxels = await this.viewer.composeObject(bytes, this.base, this.label);
    this.callbacks.onResult?.({ voxels, seconds: Number(response.headers.get("X-Seconds")), count: this.count,
      session: this.session });
  }
}
