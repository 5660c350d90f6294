// The run picker keeps what is typed in it while runs start. BokehJS 3.9's
// MultiChoice renders its Choices.js widget anew whenever its options change,
// and the dashboard adds an option whenever a run starts: in a lab running a
// sweep, the open list closed and the search typed into it was wiped every
// few seconds. While the list is open the render waits until it closes (one
// render then, whatever changed meanwhile).
//
// Skipped, with a console warning, if the BokehJS on the page lacks what it
// replaces.
(() => {
  "use strict";
  const { module, replace, skipped } = window.LabscreenPatching;
  const multi = module("models/widgets/multi_choice");
  const picker = multi && multi.MultiChoiceView && multi.MultiChoiceView.prototype;
  if (!picker) {
    skipped("MultiChoiceView");
    return;
  }
  replace(picker, "rerender", (rerender) =>
    function (...args) {
      const widget = this.choice_el;
      const open = widget && widget.dropdown && widget.dropdown.isActive && this.input_el;
      if (!open) return rerender.apply(this, args);
      if (!this.__labscreenRerender) {
        this.__labscreenRerender = true;
        this.input_el.addEventListener("hideDropdown", () => {
          this.__labscreenRerender = false;
          if (!this.is_destroyed) rerender.apply(this, args);
        }, { once: true });
      }
    });
})();
