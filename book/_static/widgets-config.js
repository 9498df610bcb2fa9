// Loaded after require.js and before the ipywidgets HTML manager (embed-amd.js). The manager's
// bundles are AMD modules named "@jupyter-widgets/..."; webpack resolves the fonts they load
// against each module's URL, which requirejs derives from baseUrl and the module name, so
// baseUrl is the copy of the manager served next to this file (with its fonts).
require.config({baseUrl: new URL("html-manager/", document.currentScript.src).href});
