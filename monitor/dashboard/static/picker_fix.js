// Two changes so that picking runs from the keyboard works, for BokehJS 3.9.
//
// 1. The run picker keeps what is typed in it while runs start. BokehJS's
//    MultiChoice renders its Choices.js widget anew whenever its options change,
//    and the dashboard adds an option whenever a run starts: in a lab running a
//    sweep, the open list closed and the search typed into it was wiped every
//    few seconds. While the list is open the render waits until it closes (one
//    render then, whatever changed meanwhile).
//
// 2. The runs table does not take the keyboard when the server selects its
//    rows. SlickGrid's copy plugin focuses the grid on every selection change
//    (so that Ctrl+C works after a drag), including the ones BokehJS makes
//    when the source's selection changes: with the Runs tab open, a run
//    picked from the keyboard in the picker selected its row, and every key
//    after that went to the table. A selection made in the table itself still
//    focuses it.
//
// Each is skipped, with a console warning, if the BokehJS on the page lacks
// what it replaces.
(() => {
  "use strict";
  const { module, replace, skipped } = window.LabscreenPatching;
  const tables = module("models/widgets/tables/data_table");
  const table = tables && tables.DataTableView && tables.DataTableView.prototype;
  replace(table, "updateSelection", (update) =>
    function (...args) {
      const { grid } = this;
      if (!grid || typeof grid.focus !== "function") return update.apply(this, args);
      const focus = grid.focus;
      grid.focus = () => {}; // the copy plugin asks for it on this selection change: not the user's
      try {
        return update.apply(this, args);
      } finally {
        grid.focus = focus;
      }
    });

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
