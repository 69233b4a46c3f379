// The dashboard's only script: confirmations, select-all, the body editor, the live overview.
// Served from /dashboard/static so the Content-Security-Policy can forbid inline script.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const SERIES = ["accepted", "delivered", "failed", "dead"];
  const CHART = { width: 1200, height: 260, left: 44, right: 24, top: 12, bottom: 28 };

  function askBeforeSubmitting() {
    document.addEventListener("submit", function (event) {
      const source = event.submitter && event.submitter.dataset.confirm ? event.submitter : event.target;
      const question = source.dataset ? source.dataset.confirm : null;
      if (question && !window.confirm(question)) {
        event.preventDefault();
      }
    });
  }

  function wireSelectAll() {
    const all = document.getElementById("select-all");
    if (!all) return;
    all.addEventListener("change", function () {
      document.querySelectorAll('input[name="ids"]').forEach(function (box) {
        if (!box.disabled) box.checked = all.checked;
      });
    });
  }

  function lookUp(data, path) {
    return path.split(".").reduce(function (value, key) {
      return value == null ? undefined : value[key];
    }, data);
  }

  function showCounts(data) {
    document.querySelectorAll("[data-count]").forEach(function (element) {
      const value = lookUp(data, element.dataset.count);
      if (value === undefined || value === null) {
        element.textContent = element.dataset.unit ? "—" : "0";
      } else {
        element.textContent = element.dataset.unit ? value + " " + element.dataset.unit : String(value);
      }
    });
  }

  function node(name, attributes, text) {
    const element = document.createElementNS(SVG, name);
    Object.keys(attributes).forEach(function (key) {
      element.setAttribute(key, attributes[key]);
    });
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function niceCeiling(value) {
    if (value <= 4) return 4;
    const magnitude = Math.pow(10, Math.floor(Math.log10(value)));
    const steps = [1, 2, 2.5, 5, 10];
    for (const step of steps) {
      if (step * magnitude >= value) return step * magnitude;
    }
    return 10 * magnitude;
  }

  function clock(epochSeconds) {
    return new Date(epochSeconds * 1000).toISOString().slice(11, 16);
  }

  function drawAxes(svg, series, top, x, y) {
    const plotRight = CHART.width - CHART.right;
    for (let i = 0; i <= 4; i += 1) {
      const value = (top * i) / 4;
      const at = y(value);
      svg.appendChild(node("line", { x1: CHART.left, x2: plotRight, y1: at, y2: at, class: "gridline" }));
      svg.appendChild(node("text", { x: CHART.left - 6, y: at + 4, class: "tick", "text-anchor": "end" }, String(Math.round(value * 10) / 10)));
    }
    series.forEach(function (point, index) {
      const last = index === series.length - 1;
      if (index % 10 === 0 || last) {
        // The newest minute sits on the right edge: anchor its label there so it is not cut.
        const anchor = last ? "end" : index === 0 ? "start" : "middle";
        svg.appendChild(node("text", { x: x(index), y: CHART.height - 8, class: "tick", "text-anchor": anchor }, clock(point.minute)));
      }
    });
  }

  function drawChart(series) {
    const svg = document.getElementById("throughput");
    if (!svg || !series.length) return;
    svg.replaceChildren();
    const peak = Math.max.apply(null, series.map(function (point) {
      return Math.max.apply(null, SERIES.map(function (name) { return point[name] || 0; }));
    }));
    const top = niceCeiling(peak);
    const plotWidth = CHART.width - CHART.left - CHART.right;
    const plotHeight = CHART.height - CHART.top - CHART.bottom;
    const x = function (index) { return CHART.left + (plotWidth * index) / Math.max(1, series.length - 1); };
    const y = function (value) { return CHART.top + plotHeight - (plotHeight * value) / top; };
    drawAxes(svg, series, top, x, y);
    SERIES.forEach(function (name) {
      const points = series.map(function (point, index) { return x(index) + "," + y(point[name] || 0); });
      svg.appendChild(node("polyline", { points: points.join(" "), class: "line line-" + name }));
    });
  }

  function pollOverview() {
    const stamp = document.getElementById("updated");
    if (!stamp) return;
    const every = 1000 * Number(stamp.dataset.pollSeconds || 3);
    function refresh() {
      fetch(stamp.dataset.source, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (response.status === 401) {
            window.location.assign(stamp.dataset.signIn);
            throw new Error("signed out");
          }
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) {
          showCounts(data);
          drawChart(data.series || []);
          stamp.textContent = "as of " + new Date(data.generated_at * 1000).toISOString().slice(0, 19) + "Z";
          stamp.classList.remove("stale");
        })
        .catch(function () {
          stamp.classList.add("stale");
        })
        .finally(function () {
          window.setTimeout(refresh, every);
        });
    }
    refresh();
  }

  // The dead letter's body editor: says at once whether the text is a JSON object, and keeps
  // a broken one from being sent (the server checks it again, with ingest's own rules).
  function wireJsonEditors() {
    document.querySelectorAll("[data-json-editor]").forEach(function (editor) {
      const status = document.getElementById(editor.getAttribute("aria-describedby"));
      const save = editor.form.querySelector("button[type=submit]");
      function check() {
        let problem = null;
        try {
          const value = JSON.parse(editor.value);
          if (value === null || typeof value !== "object" || Array.isArray(value)) {
            problem = "The body must be a JSON object.";
          }
        } catch (error) {
          problem = "Not valid JSON: " + error.message;
        }
        status.textContent = problem || "Valid JSON object.";
        status.classList.toggle("error", Boolean(problem));
        editor.classList.toggle("invalid", Boolean(problem));
        save.disabled = Boolean(problem);
      }
      editor.addEventListener("input", check);
      check();
    });
  }

  // Connect ManyChat: copy a URL or a body as shown, without selecting it by hand.
  function wireCopyButtons() {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        const source = document.getElementById(button.dataset.copy);
        if (!source || !navigator.clipboard) return;
        navigator.clipboard.writeText(source.textContent).then(function () {
          button.textContent = "Copied";
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    askBeforeSubmitting();
    wireSelectAll();
    wireJsonEditors();
    wireCopyButtons();
    pollOverview();
  });
})();
