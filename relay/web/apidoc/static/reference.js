// Render /openapi.json with the vendored Swagger UI. A file, not an inline script, so the
// Content-Security-Policy can forbid inline script as it does on the dashboard.
"use strict";

window.addEventListener("DOMContentLoaded", function () {
  const root = document.getElementById("reference");
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.spec,
    domNode: root,
    deepLinking: true,
    validatorUrl: null, // never call swagger.io's validator: the page talks to this relay only
    tryItOutEnabled: false,
  });
});
