// Loaded after require.js and before embed-amd.js (see nb_ipywidgets_js in book/_config.yml).
// Points the widget manager at the folder this file is served from, so that its icon fonts and
// any AMD module it asks for are looked up next to it and never on a CDN.
(function () {
  var folder = document.currentScript.src.replace(/[^/]*$/, "");
  window.__jupyter_widgets_assets_path__ = folder;
  window.require.config({ baseUrl: folder });
})();
