// Time a reviewer spends on a case: counts only while the page is visible (seconds go with the accept).

export class ActiveClock {
  constructor() {
    this.activeMs = 0;
    this.since = null;
    this.running = false;
    document.addEventListener("visibilitychange", () => {
      if (!this.running) return;
      if (document.visibilityState === "visible") {
        if (this.since === null) this.since = performance.now();
      } else if (this.since !== null) {
        this.activeMs += performance.now() - this.since;
        this.since = null;
      }
    });
  }

  /** Start from zero (a case was opened). */
  restart() {
    this.running = true;
    this.activeMs = 0;
    this.since = document.visibilityState === "visible" ? performance.now() : null;
  }

  /** Visible time since restart(), in seconds. */
  seconds() {
    const current = this.since === null ? 0 : performance.now() - this.since;
    return (this.activeMs + current) / 1000;
  }
}
