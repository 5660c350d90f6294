// What the page's BokehJS fixes (paint_fix.js, leak_fix.js) share: finding a
// BokehJS module by name, and replacing a method once. Each fix is skipped
// where the BokehJS on the page lacks what it replaces.
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
  // Replace proto[name] with make(original), unless it is missing or already replaced.
  const replace = (proto, name, make) => {
    if (!proto || typeof proto[name] !== "function" || proto[name].__labscreen) return;
    const replacement = make(proto[name]);
    replacement.__labscreen = true;
    proto[name] = replacement;
  };
  return Object.freeze({ module, replace });
})();
