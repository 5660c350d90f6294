// Skip rewriting a BokehJS inline stylesheet with the text it already holds.
//
// BokehJS 3.9 rewrites each renderer's "position" stylesheet on every paint,
// even when the position has not changed, and the very next step of the
// paint reads CSS custom properties through getComputedStyle. Each rewrite
// invalidates the page's styles, so every renderer of every repainted chart
// forced a style recalculation (about 145 a second, a fifth of the page's
// time at 1,000 points/s). Writing only changed text keeps the styles valid.
// If this BokehJS has no such stylesheet class, nothing is changed.
(() => {
  "use strict";
  let dom;
  try {
    dom = window.Bokeh && Bokeh.require("core/dom");
  } catch (error) {
    return;
  }
  const proto = dom && dom.InlineStyleSheet && dom.InlineStyleSheet.prototype;
  if (!proto || typeof proto._update !== "function" || proto._update.__labscreen) return;
  const update = proto._update;
  const skipping = function (css) {
    if (this.el && this.el.textContent === css) return;
    update.call(this, css);
  };
  skipping.__labscreen = true;
  proto._update = skipping;
})();
