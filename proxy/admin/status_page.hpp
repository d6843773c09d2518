#pragma once
// The status page served at GET / on the admin listener: a live view of the proxy for those
// who do not run Grafana. It polls /drain and /metrics from the browser; the server sends
// only this static page.

namespace wsdrain::admin {

inline constexpr const char* status_page = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>wsdrain</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 52rem; color: #1d2330; }
  h1 { font-size: 1.4rem; margin: 0 0 1rem; }
  .state { display: inline-block; padding: .15rem .6rem; border-radius: .8rem; color: #fff; font-weight: 600; }
  .serving { background: #2e7d32; } .draining { background: #ef6c00; } .drained { background: #1565c0; }
  .bar { height: 1.4rem; background: #e3e7ee; border-radius: .7rem; overflow: hidden; margin: .6rem 0 1.2rem; }
  .fill { height: 100%; width: 0; background: linear-gradient(90deg, #ef6c00, #1565c0); transition: width .4s; }
  table { border-collapse: collapse; width: 100%; margin-bottom: 1.2rem; }
  td, th { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #e3e7ee; }
  td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
  .muted { color: #6b7385; font-size: .85rem; }
</style>
</head>
<body>
<h1>wsdrain <span id="state" class="state" data-value="">…</span></h1>
<div>Drain progress: <b id="progress" data-value="0">0%</b>
  <span class="muted" id="elapsed" data-value="0"></span></div>
<div class="bar"><div class="fill" id="bar"></div></div>
<table>
  <tr><th>Sessions open</th><td class="n" id="sessions-active" data-value="0">0</td></tr>
  <tr><th>Sessions at the drain's start</th><td class="n" id="sessions-at-start" data-value="0">0</td></tr>
  <tr><th>Closed cleanly during the drain</th><td class="n" id="closed-clean" data-value="0">0</td></tr>
  <tr><th>Forced during the drain</th><td class="n" id="closed-forced" data-value="0">0</td></tr>
</table>
<table id="reasons"><tr><th>Sessions closed, by reason</th><th class="n">count</th></tr></table>
<p class="muted">Refreshes every second from <a href="/drain">/drain</a> and <a href="/metrics">/metrics</a>.
  Updated <span id="updated">never</span>.</p>
<script>
const set = (id, value, text) => {
  const e = document.getElementById(id);
  e.dataset.value = value;
  e.textContent = text === undefined ? value : text;
};
async function refresh() {
  try {
    const d = await (await fetch("/drain", {cache: "no-store"})).json();
    const s = document.getElementById("state");
    s.className = "state " + d.state;
    set("state", d.state);
    set("progress", d.progress, Math.round(d.progress * 100) + "%");
    set("elapsed", d.elapsed_seconds, d.state === "serving" ? "" : d.elapsed_seconds.toFixed(1) + " s");
    document.getElementById("bar").style.width = (d.progress * 100) + "%";
    set("sessions-active", d.sessions_active);
    set("sessions-at-start", d.sessions_at_start);
    set("closed-clean", d.closed_clean);
    set("closed-forced", d.closed_forced);
    const text = await (await fetch("/metrics", {cache: "no-store"})).text();
    const reasons = {};
    for (const m of text.matchAll(/^wsdrain_sessions_closed_total\{([^}]*)\} (\S+)$/gm)) {
      const reason = /reason="([^"]*)"/.exec(m[1])[1];
      reasons[reason] = (reasons[reason] || 0) + Number(m[2]);
    }
    const table = document.getElementById("reasons");
    table.querySelectorAll("tr.r").forEach(r => r.remove());
    for (const [reason, n] of Object.entries(reasons)) {
      const row = table.insertRow();
      row.className = "r";
      row.insertCell().textContent = reason;
      const c = row.insertCell();
      c.className = "n";
      c.id = "reason-" + reason;
      c.dataset.value = n;
      c.textContent = n;
    }
    document.getElementById("updated").textContent = new Date().toISOString();
  } catch (e) {
    document.getElementById("updated").textContent = "failed: " + e;
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
)html";

}  // namespace wsdrain::admin
