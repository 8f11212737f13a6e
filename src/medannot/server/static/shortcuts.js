// Keyboard shortcuts of the review page: one table that drives both the key handling and the help overlay.

/** [keys shown in the help, what it does, action name, matcher(event) -> argument or undefined]. */
export const SHORTCUTS = [
  ["?", "show or hide this help", "help", (e) => (e.key === "?" ? true : undefined)],
  ["D", "draw with the active label", "tool", (e) => (plain(e) && e.key.toLowerCase() === "d" ? "draw" : undefined)],
  ["E", "erase", "tool", (e) => (plain(e) && e.key.toLowerCase() === "e" ? "erase" : undefined)],
  ["N", "navigate (clicks move the crosshair)", "tool", (e) => (plain(e) && e.key.toLowerCase() === "n" ? "navigate" : undefined)],
  ["S", "Smart tool: click inside an object, shift-click or right click outside it, drag a box", "tool",
    (e) => (plain(e) && e.key.toLowerCase() === "s" ? "smart" : undefined)],
  ["O", "Smart tool: start the next object", "newObject", (e) => (plain(e) && e.key.toLowerCase() === "o" ? true : undefined)],
  ["1 - 9", "make label 1-9 of the list the active label", "label",
    (e) => (plain(e) && /^[1-9]$/.test(e.key) ? Number(e.key) - 1 : undefined)],
  ["Ctrl+Z", "undo the last stroke (Smart tool: the last interaction)", "undo", (e) => (ctrl(e) && e.key.toLowerCase() === "z" ? true : undefined)],
  ["Ctrl+S", "save as a new version", "save", (e) => (ctrl(e) && e.key.toLowerCase() === "s" ? true : undefined)],
  ["A", "accept the case (saves edits first)", "accept", (e) => (plain(e) && e.key.toLowerCase() === "a" ? true : undefined)],
  ["R", "reject the case", "reject", (e) => (plain(e) && e.key.toLowerCase() === "r" ? true : undefined)],
  ["Up / Down", "next / previous slice", "slice",
    (e) => (e.key === "ArrowUp" ? 1 : e.key === "ArrowDown" ? -1 : undefined)],
  ["PageUp / PageDown", "10 slices forward / back", "slice",
    (e) => (e.key === "PageUp" ? 10 : e.key === "PageDown" ? -10 : undefined)],
  ["V", "cycle the view: 3 planes, axial, coronal, sagittal", "view",
    (e) => (plain(e) && e.key.toLowerCase() === "v" ? true : undefined)],
  ["[ / ]", "smaller / bigger pen", "pen", (e) => (e.key === "[" ? -1 : e.key === "]" ? 1 : undefined)],
  ["H", "hide or show the mask", "toggleMask", (e) => (plain(e) && e.key.toLowerCase() === "h" ? true : undefined)],
  ["J / K", "next / previous case in the list", "caseStep",
    (e) => (plain(e) && e.key.toLowerCase() === "j" ? 1 : plain(e) && e.key.toLowerCase() === "k" ? -1 : undefined)],
  ["Esc", "close a dialog", "escape", (e) => (e.key === "Escape" ? true : undefined)],
];

function plain(e) {
  return !e.ctrlKey && !e.metaKey && !e.altKey;
}

function ctrl(e) {
  return (e.ctrlKey || e.metaKey) && !e.altKey;
}

function isTyping(target) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable) return true;
  if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  return target instanceof HTMLInputElement && !["checkbox", "radio", "range", "button"].includes(target.type);
}

/**
 * Route key presses to `actions[name](argument)`. Keys typed into a text field are left alone (Esc excepted).
 * Handled keys do not reach NiiVue's own canvas handlers (capture phase + stopPropagation).
 */
export function installShortcuts(actions) {
  window.addEventListener("keydown", (event) => {
    if (isTyping(event.target) && event.key !== "Escape") return;
    for (const [, , name, match] of SHORTCUTS) {
      const argument = match(event);
      if (argument === undefined || !actions[name]) continue;
      event.preventDefault();
      event.stopPropagation();
      actions[name](argument);
      return;
    }
  }, { capture: true });
}

/** Fill the help overlay's table from SHORTCUTS. */
export function renderShortcutTable(table) {
  table.replaceChildren(...SHORTCUTS.map(([keys, what]) => {
    const row = document.createElement("tr");
    const key = document.createElement("th");
    const kbd = document.createElement("kbd");
    kbd.textContent = keys;
    key.append(kbd);
    const text = document.createElement("td");
    text.textContent = what;
    row.append(key, text);
    return row;
  }));
}
