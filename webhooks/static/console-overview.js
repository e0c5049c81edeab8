// The console's overview charts (webhooks/console/overview.py): fetches /console/overview.json
// (named by the conversion canvas's data-source attribute) and draws them with Chart.js, served
// from /static/vendor/chartjs/. No inline script or style: the console's CSP allows neither.
// The page's tables carry the same numbers for readers without script.
(function () {
  "use strict";

  var COLOURS = {
    offers_sent: "#0b57d0",
    answered_yes: "#9334e6",
    funded: "#137333",
    card_declined: "#d93025",
    said_no: "#f29900",
    expired: "#80868b",
  };

  function drawConversion(canvas, data) {
    return new window.Chart(canvas, {
      type: "line",
      data: {
        labels: data.days,
        datasets: [{
          label: "Funded ÷ offers sent",
          data: data.conversion.map(function (v) { return v === null ? null : v * 100; }),
          borderColor: "#137333",
          backgroundColor: "#137333",
          spanGaps: true,
          tension: 0.2,
        }],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: {
          y: { min: 0, suggestedMax: 100, ticks: { callback: function (v) { return v + "%"; } } },
        },
        plugins: { legend: { display: false } },
      },
    });
  }

  function drawFunnel(canvas, data) {
    var names = Object.keys(COLOURS);
    return new window.Chart(canvas, {
      type: "line",
      data: {
        labels: data.days,
        datasets: names.map(function (name) {
          return {
            label: data.labels[name],
            data: data.series[name],
            borderColor: COLOURS[name],
            backgroundColor: COLOURS[name],
            tension: 0.2,
          };
        }),
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
  }

  function start() {
    var conversion = document.getElementById("conversion-chart");
    var funnel = document.getElementById("funnel-chart");
    if (!conversion || !window.Chart) { return; }
    fetch(conversion.getAttribute("data-source"), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (answer) {
        if (!answer.ok) { throw new Error("overview.json answered " + answer.status); }
        return answer.json();
      })
      .then(function (data) {
        drawConversion(conversion, data);
        if (funnel) { drawFunnel(funnel, data); }
        document.body.setAttribute("data-charts", "drawn");
      })
      .catch(function (error) {
        document.body.setAttribute("data-charts", "failed");
        if (window.console) { window.console.error(error); }
      });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
