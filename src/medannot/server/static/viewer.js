// The image and its label mask in NiiVue (vendored, ./vendor/niivue/niivue.js): loading from bytes, the label
// colours and their visibility, the drawing tools, undo, slices, window/level, and exporting the mask as NIfTI.
//
// The mask lives in NiiVue's drawing layer (one uint8 value per voxel, 0 = background). NiiVue keeps it in RAS
// voxel order internally and writes it back in the image's own voxel order with the image's header
// (`saveImage({isSaveDrawing: true})`), so an exported mask is on the image grid: same dims, same affine.

import { Niivue, NVImage, SLICE_TYPE, SHOW_RENDER, DRAG_MODE, cmapper } from "./vendor/niivue/niivue.js";

export const VIEWS = {
  multiplanar: SLICE_TYPE.MULTIPLANAR,
  axial: SLICE_TYPE.AXIAL,
  coronal: SLICE_TYPE.CORONAL,
  sagittal: SLICE_TYPE.SAGITTAL,
};
export const VIEW_ORDER = ["multiplanar", "axial", "coronal", "sagittal"];
export const TOOLS = ["navigate", "draw", "erase", "smart"];

/** Steps NiiVue keeps for undo (each is an RLE copy of the mask). */
const UNDO_STEPS = 32;
/** Colours for labels that the project's label map gives none (hex). */
const FALLBACK_COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
  "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324"];

function hexToRgb(hex) {
  const value = parseInt(hex.replace("#", ""), 16);
  return [(value >> 16) & 255, (value >> 8) & 255, value & 255];
}

/** The colour of a label as "#rrggbb": its own, else a fixed fallback by value. */
export function labelColor(label) {
  if (label.color && /^#[0-9a-fA-F]{6}$/.test(label.color)) return label.color;
  return FALLBACK_COLORS[(label.value - 1) % FALLBACK_COLORS.length];
}

/** gzip bytes in the browser (CompressionStream). */
export async function gzip(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * A label volume's voxels in NiiVue's drawing order (RAS), as NiiVue's loadDrawing lays them out: the file's axes
 * permuted and flipped by the image's permRAS.
 * @param {NVImage} volume - a loaded one-channel volume on the image grid.
 * @returns {Uint8Array}
 */
export function rasBitmap(volume) {
  const dims = volume.hdr.dims;
  const perm = volume.permRAS;
  const layout = [0, 0, 0];
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      if (Math.abs(perm[i]) - 1 === j) layout[j] = i * Math.sign(perm[i]);
    }
  }
  let stride = 1;
  const instride = [1, 1, 1];
  const inflip = [false, false, false];
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      if (Math.abs(layout[j]) !== i) continue;
      instride[j] = stride;
      if (layout[j] < 0 || Object.is(layout[j], -0)) inflip[j] = true;
      stride *= dims[j + 1];
    }
  }
  const lut = (n, step, flip) => Array.from({ length: n }, (_, k) => (flip ? n - 1 - k : k) * step);
  const [xl, yl, zl] = [lut(dims[1], instride[0], inflip[0]), lut(dims[2], instride[1], inflip[1]), lut(dims[3], instride[2], inflip[2])];
  const out = new Uint8Array(dims[1] * dims[2] * dims[3]);
  const img = volume.img;
  let j = 0;
  for (let z = 0; z < dims[3]; z++) {
    for (let y = 0; y < dims[2]; y++) {
      for (let x = 0; x < dims[1]; x++) out[xl[x] + yl[y] + zl[z]] = img[j++] ? 1 : 0;
    }
  }
  return out;
}

export class MaskViewer {
  /**
   * @param {HTMLCanvasElement} canvas - where NiiVue draws.
   * @param {object} callbacks - onEdit(action) after a stroke/undo, onLocation(loc), onWindow(min, max).
   */
  constructor(canvas, callbacks = {}) {
    this.canvas = canvas;
    this.callbacks = callbacks;
    this.labels = [];
    this.hidden = new Set();
    this.tool = "navigate";
    this.activeLabel = 1;
    this.penSize = 1;
    this.view = "multiplanar";
    this.undoDepth = 0;
    this.nv = null;
  }

  async init() {
    this.nv = new Niivue({
      backColor: [0.08, 0.08, 0.1, 1],
      crosshairColor: [1, 0.85, 0, 0.9],
      show3Dcrosshair: false,
      multiplanarShowRender: SHOW_RENDER.NEVER,
      isOrientationTextVisible: true,
      dragAndDropEnabled: false,
      dragMode: DRAG_MODE.windowing, // right-drag: window (horizontal) and level (vertical)
      maxDrawUndoBitmaps: UNDO_STEPS,
      penSize: 1,
      // The page owns the keyboard (see review.js); NiiVue's own hot keys are switched off.
      viewModeHotKey: "None",
      clipPlaneHotKey: "None",
      cycleClipPlaneHotKey: "None",
      logLevel: "warn",
      loadingText: "",
    });
    await this.nv.attachToCanvas(this.canvas);
    this.nv.onDrawingChanged = (action) => {
      if (action === "draw") this.undoDepth = Math.min(this.undoDepth + 1, UNDO_STEPS - 1);
      if (action === "draw" || action === "undo") this.callbacks.onEdit?.(action);
    };
    this.nv.onLocationChange = (loc) => this.callbacks.onLocation?.(loc);
    this.nv.onIntensityChange = (vol) => this.callbacks.onWindow?.(vol.cal_min, vol.cal_max);
  }

  /** True once an image is shown. */
  get hasImage() {
    return this.nv !== null && this.nv.volumes.length > 0;
  }

  /** Voxel counts of the image (RAS order), e.g. [181, 217, 181]; [1, 1, 1] before loading. */
  get dims() {
    return this.hasImage ? this.nv.back.dimsRAS.slice(1, 4) : [1, 1, 1];
  }

  /**
   * Show a case: the image and its mask (or an empty mask).
   * @param {ArrayBuffer} imageBytes - NIfTI (gz or not) of the image.
   * @param {ArrayBuffer|null} maskBytes - uint8 label NIfTI on the image grid, or null for an empty mask.
   * @param {Array<{value:number,name:string,color?:string}>} labels - the project's label map.
   */
  async loadCase(imageBytes, maskBytes, labels) {
    const nv = this.nv;
    // Both files are parsed before the viewer changes: a broken file leaves the previous case on screen.
    const image = await NVImage.loadFromUrl({ url: imageBytes, name: "image.nii.gz", colormap: "gray" });
    const mask = maskBytes ? await NVImage.loadFromUrl({ url: maskBytes, name: "mask.nii.gz" }) : null;
    nv.closeDrawing();
    while (nv.volumes.length > 0) nv.removeVolumeByIndex(0);
    this.labels = labels;
    this.hidden = new Set();
    this.applyLabelColors(); // before addVolume: its colour table goes up with the volume
    nv.addVolume(image);
    const is2D = this.dims[2] === 1;
    this.setView(is2D ? "axial" : this.view);
    this.showMask(mask);
    this.setTool(this.tool);
    this.callbacks.onWindow?.(image.cal_min, image.cal_max);
  }

  /** Replace the mask (null: an empty one). Resets undo. Throws when the mask is not on the image grid. */
  async loadMask(maskBytes) {
    this.showMask(maskBytes ? await NVImage.loadFromUrl({ url: maskBytes, name: "mask.nii.gz" }) : null);
  }

  showMask(mask) {
    const nv = this.nv;
    if (mask) {
      if (!nv.loadDrawing(mask)) throw new Error("the mask's dimensions differ from the image's");
    } else {
      nv.createEmptyDrawing();
    }
    this.undoDepth = 0;
    nv.drawScene();
  }

  /** The drawing as a gzipped uint8 NIfTI with the image's header (its grid). */
  async exportMask() {
    const raw = await this.nv.saveImage({ filename: "", isSaveDrawing: true, volumeByIndex: 0 });
    if (!(raw instanceof Uint8Array)) throw new Error("NiiVue has no drawing to export");
    return await gzip(raw);
  }

  /** A copy of the drawing (RAS voxel order), or null before a case is open. */
  drawingCopy() {
    return this.nv && this.nv.drawBitmap ? this.nv.drawBitmap.slice() : null;
  }

  /**
   * Paint an object's mask over a base drawing: where the mask (a 0/1 NIfTI on the image grid) is set the voxels get
   * `label`, elsewhere the base stays. The result is the drawing (one undo step, an edit).
   * @param {ArrayBuffer} maskBytes - the object's mask as the server sent it.
   * @param {Uint8Array|null} base - the drawing before the object was started (RAS order).
   * @param {number} label - the value painted.
   * @returns {Promise<number>} voxels of the object.
   */
  async composeObject(maskBytes, base, label) {
    const nv = this.nv;
    const mask = await NVImage.loadFromUrl({ url: maskBytes, name: "object.nii.gz" });
    const object = rasBitmap(mask);
    if (object.length !== nv.drawBitmap.length) throw new Error("the object's mask does not fit the image grid");
    const out = base && base.length === object.length ? base.slice() : new Uint8Array(object.length);
    let voxels = 0;
    for (let i = 0; i < object.length; i++) {
      if (object[i]) {
        out[i] = label;
        voxels++;
      }
    }
    nv.drawBitmap = out;
    nv.drawAddUndoBitmap();
    this.undoDepth = Math.min(this.undoDepth + 1, UNDO_STEPS - 1);
    nv.refreshDrawing(true);
    nv.drawScene();
    this.callbacks.onEdit?.("smart");
    return voxels;
  }

  /** Counts of voxels per label value in the current drawing (for the status panel). */
  labelCounts() {
    const counts = new Map();
    const bitmap = this.nv.drawBitmap;
    if (!bitmap) return counts;
    for (let i = 0; i < bitmap.length; i++) {
      const v = bitmap[i];
      if (v) counts.set(v, (counts.get(v) || 0) + 1);
    }
    return counts;
  }

  /** Build NiiVue's drawing colour table from the label map; hidden labels get alpha 0. */
  applyLabelColors() {
    const maxValue = Math.max(1, ...this.labels.map((l) => l.value));
    const size = maxValue + 1;
    const table = { R: new Array(size).fill(0), G: new Array(size).fill(0), B: new Array(size).fill(0),
      A: new Array(size).fill(0), labels: new Array(size).fill("") };
    for (const label of this.labels) {
      const [r, g, b] = hexToRgb(labelColor(label));
      table.R[label.value] = r;
      table.G[label.value] = g;
      table.B[label.value] = b;
      table.A[label.value] = this.hidden.has(label.value) ? 0 : 255;
      table.labels[label.value] = label.name;
    }
    // Same as nv.setDrawColormap(table) but without its updateGLVolume(), which re-renders the whole image
    // volume (seconds for 256^3 in software WebGL): only the colour-table texture changes.
    this.nv.drawLut = cmapper.makeDrawLut(table);
    if (this.hasImage) this.nv.refreshColormaps();
    this.nv.drawScene();
  }

  setLabelVisible(value, visible) {
    if (visible) this.hidden.delete(value);
    else this.hidden.add(value);
    this.applyLabelColors();
  }

  /** "navigate" (click moves the crosshair), "draw" (paint the active label), "erase" (paint 0) or "smart" (smart.js). */
  setTool(tool) {
    this.tool = tool;
    if (!this.hasImage) return;
    const nv = this.nv;
    if (tool === "navigate" || tool === "smart") {  // the Smart tool takes the mouse itself (smart.js)
      nv.setDrawingEnabled(false);
    } else {
      nv.setDrawingEnabled(true);
      nv.setPenValue(tool === "erase" ? 0 : this.activeLabel, false);
    }
  }

  setActiveLabel(value) {
    this.activeLabel = value;
    if (this.tool === "draw") this.nv.setPenValue(value, false);
  }

  /** Pen diameter in voxels (1 = one voxel). */
  setPenSize(size) {
    this.penSize = Math.max(1, Math.min(25, Math.round(size)));
    if (this.nv) this.nv.opts.penSize = this.penSize;
  }

  /** Undo the last stroke; returns false when there is nothing left to undo. */
  undo() {
    if (!this.hasImage || this.undoDepth < 1) return false;
    this.undoDepth -= 1;
    this.nv.drawUndo();
    return true;
  }

  setView(name) {
    if (!(name in VIEWS)) throw new Error(`unknown view ${name}`);
    this.view = name;
    if (this.nv) this.nv.setSliceType(VIEWS[name]);
  }

  cycleView() {
    const next = VIEW_ORDER[(VIEW_ORDER.indexOf(this.view) + 1) % VIEW_ORDER.length];
    this.setView(next);
    return next;
  }

  /** Move the slice of the plane being scrolled (the shown plane; axial in the multiplanar view). */
  moveSlice(delta) {
    if (!this.hasImage) return;
    const step = Math.round(delta);
    if (this.view === "sagittal") this.nv.moveCrosshairInVox(step, 0, 0);
    else if (this.view === "coronal") this.nv.moveCrosshairInVox(0, step, 0);
    else this.nv.moveCrosshairInVox(0, 0, step);
  }

  /** Crosshair position: RAS voxel indices of the displayed grid and world mm. */
  location() {
    const nv = this.nv;
    return { vox: Array.from(nv.frac2vox(nv.scene.crosshairPos)),
      mm: Array.from(nv.frac2mm(nv.scene.crosshairPos, 0, true)).slice(0, 3) };
  }

  /** Display range of the image (its intensity units): everything <= min black, >= max white. */
  setWindow(min, max) {
    if (!this.hasImage || !(max > min)) return;
    const vol = this.nv.volumes[0];
    vol.cal_min = min;
    vol.cal_max = max;
    this.nv.updateGLVolume();
  }

  getWindow() {
    const vol = this.nv.volumes[0];
    return [vol.cal_min, vol.cal_max];
  }

  /** Robust range of the image (2nd..98th percentile), NiiVue's default window. */
  resetWindow() {
    const vol = this.nv.volumes[0];
    const [lo, hi] = vol.calMinMax();
    this.setWindow(lo, hi);
    return [lo, hi];
  }

  /** Mask opacity, 0 (invisible) to 1 (opaque). */
  setOpacity(opacity) {
    this.nv.setDrawOpacity(Math.max(0, Math.min(1, opacity)));
  }
}
