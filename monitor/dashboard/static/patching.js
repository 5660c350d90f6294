// What the page's BokehJS fixes (paint_fix.js, leak_fix.js) share: finding a
// BokehJS module by name, and replacing a method once. Each fix is skipped
// where the BokehJS on the page lacks what it replaces, with a console warning
// (the dashboard's browser tests fail on one).
window.LabscreenPatching = (() => {
  "use strict";
  // The module exported as `name` ("core/dom"...), or undefined if this BokehJS has none.
  const module = (name) => {
    try {
      return window.Bokeh && Bokeh.require(name);
    } catch (error) {
      return undefined;
    }
  };
  // Says on the console that a fix is skipped: the BokehJS on the page lacks `what`.
  const skipped = (what) => {
    console.warn(`labscreen: BokehJS lacks ${what}; the page fix that needs it is skipped`);
  };
  // Replace proto[name] with make(original), unless proto itself has it replaced; if proto[name] is
  // missing, nothing is replaced and skipped(name) says so.
  const replace = (proto, name, make) => {
    if (!proto || typeof proto[name] !== "function") {
      skipped(name);
      return;
    }
    // Replaced here already (a script run twice); one replaced on a base class is replaced again here.
    if (Object.prototype.hasOwnProperty.call(proto, name) && proto[name].__labscreen) return;
    const replacement = make(proto[name]);
    replacement.__labscreen = true;
    proto[name] = replacement;
  };
  return Object.freeze({ module, replace, skipped });
})();
