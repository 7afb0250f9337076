/**
 * The live status page the admin endpoint serves at `/`: one self-contained HTML document
 * (no build step, no external assets), charts drawn as SVG by hand. It polls `/stats` and
 * `/stats/history` once a second. Every figure it shows carries an id, so a browser test can
 * read it back and compare it with `/stats`.
 */
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mongoplex status</title>
<style>
  :root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --a: #2563eb; --b: #f97316; --bad: #dc2626; --ok: #16a34a; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #f8fafc; }
  header { display: flex; align-items: baseline; gap: 16px; padding: 14px 24px; background: #fff; border-bottom: 1px solid var(--line); }
  header h1 { font-size: 18px; margin: 0; }
  header .state { font-weight: 600; }
  main { padding: 16px 24px; display: grid; gap: 16px; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
  h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 0 0 8px; }
  .figures { display: flex; gap: 20px; flex-wrap: wrap; margin-bottom: 6px; }
  .figure b { display: block; font-size: 22px; font-variant-numeric: tabular-nums; }
  .figure span { color: var(--muted); font-size: 12px; }
  svg { width: 100%; height: 130px; display: block; }
  .legend { font-size: 12px; color: var(--muted); }
  .legend i { display: inline-block; width: 10px; height: 3px; margin: 0 4px 3px 10px; vertical-align: middle; }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { color: var(--muted); font-weight: 500; font-size: 12px; }
  td.n, th.n { text-align: right; }
  .bad { color: var(--bad); } .ok { color: var(--ok); }
  footer { padding: 0 24px 16px; color: var(--muted); font-size: 12px; }
</style>
</head>
<body data-updated="">
<header>
  <h1>mongoplex</h1>
  <span class="state" id="state">loading…</span>
  <span class="legend" id="updated"></span>
</header>
<main>
  <section>
    <h2>Clients and upstream connections</h2>
    <div class="figures">
      <div class="figure"><b id="clients">–</b><span>client connections</span></div>
      <div class="figure"><b id="upstream">–</b><span>upstream connections</span></div>
      <div class="figure"><b id="ratio">–</b><span>clients per upstream connection</span></div>
    </div>
    <svg id="chart-connections" viewBox="0 0 400 130" preserveAspectRatio="none"></svg>
    <div class="legend"><i style="background:var(--a)"></i>clients<i style="background:var(--b)"></i>upstream</div>
  </section>
  <section>
    <h2>Pool saturation and wait</h2>
    <div class="figures">
      <div class="figure"><b id="inUse">–</b><span>in use</span></div>
      <div class="figure"><b id="maxPool">–</b><span>pool maximum</span></div>
      <div class="figure"><b id="waiting">–</b><span>waiting</span></div>
      <div class="figure"><b id="oldestWait">–</b><span>longest wait (ms)</span></div>
    </div>
    <svg id="chart-pool" viewBox="0 0 400 130" preserveAspectRatio="none"></svg>
    <div class="legend"><i style="background:var(--a)"></i>in use / maximum (%)<i style="background:var(--b)"></i>waiting</div>
  </section>
  <section>
    <h2>Commands</h2>
    <div class="figures">
      <div class="figure"><b id="rate">–</b><span>commands / s</span></div>
      <div class="figure"><b id="p50">–</b><span>p50 latency (ms, ≤)</span></div>
      <div class="figure"><b id="p99">–</b><span>p99 latency (ms, ≤)</span></div>
    </div>
    <svg id="chart-rate" viewBox="0 0 400 130" preserveAspectRatio="none"></svg>
    <div class="legend"><i style="background:var(--a)"></i>commands / s</div>
    <svg id="chart-latency" viewBox="0 0 400 130" preserveAspectRatio="none"></svg>
    <div class="legend"><i style="background:var(--a)"></i>p50<i style="background:var(--b)"></i>p99 (ms)</div>
  </section>
  <section style="overflow-x:auto">
    <h2>Servers</h2>
    <table id="servers"><thead><tr><th>server</th><th>type</th><th class="n">RTT ms</th><th>proxy address</th><th>error</th></tr></thead><tbody></tbody></table>
    <h2 style="margin-top:14px">Pools</h2>
    <table id="pools"><thead><tr><th>server</th><th class="n">total</th><th class="n">idle</th><th class="n">in use</th><th class="n">connecting</th><th class="n">waiting</th><th class="n">max</th></tr></thead><tbody></tbody></table>
  </section>
  <section style="grid-column: 1 / -1">
    <h2>Top collections (since start)</h2>
    <table id="collections"><thead><tr><th>db</th><th>collection</th><th>command</th><th class="n">count</th><th class="n">errors</th><th class="n">mean ms</th><th class="n">max ms</th><th class="n">docs returned</th><th class="n">bytes in</th><th class="n">bytes out</th></tr></thead><tbody></tbody></table>
  </section>
</main>
<footer>Refreshes every second from <a href="stats">/stats</a> and <a href="stats/history">/stats/history</a>. Prometheus: <a href="metrics">/metrics</a>. Inspection: <a href="clients">/clients</a> <a href="pools">/pools</a> <a href="servers">/servers</a> <a href="cursors">/cursors</a> <a href="commands">/commands</a>.</footer>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const WINDOW_MS = 10 * 60 * 1000;
let samples = [];
const fmt = (v, digits = 0) => v === undefined || v === null ? "–" : Number(v).toLocaleString("en-US", { maximumFractionDigits: digits });
function cell(text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; return td; }
function rows(table, items, columns) {
  const body = table.tBodies[0];
  body.replaceChildren(...items.map((item) => {
    const tr = document.createElement("tr");
    for (const [get, cls] of columns) tr.appendChild(cell(get(item), cls));
    return tr;
  }));
}
/** Draws series (arrays of [t, v]) as polylines scaled to the svg's 400x130 box, newest at the right. */
function chart(svg, series, colors) {
  const now = Date.now();
  // The x axis spans what history there is: at least a minute, at most ten.
  const span = Math.min(WINDOW_MS, Math.max(60 * 1000, samples.length ? now - samples[0].t : 0));
  const all = series.flat().map((p) => p[1]).filter((v) => v !== undefined && v !== null);
  const max = Math.max(1, ...all) * 1.1;
  const x = (t) => 400 - ((now - t) / span) * 400;
  const y = (v) => 125 - (v / max) * 120;
  let out = '<line x1="0" y1="125" x2="400" y2="125" stroke="#e4e7ec"/>' +
    '<text x="2" y="10" font-size="9" fill="#667085">' + fmt(max / 1.1) + '</text>';
  series.forEach((points, i) => {
    const d = points.filter((p) => p[1] !== undefined && p[1] !== null).map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ");
    if (d) out += '<polyline fill="none" stroke-width="1.5" vector-effect="non-scaling-stroke" stroke="' + colors[i] + '" points="' + d + '"/>';
  });
  svg.innerHTML = out;
}
function render(stats) {
  const pools = stats.pools;
  const upstream = pools.reduce((n, p) => n + p.total, 0);
  const inUse = pools.reduce((n, p) => n + p.inUse, 0);
  const waiting = pools.reduce((n, p) => n + p.waiting, 0);
  $("clients").textContent = fmt(stats.clients);
  $("upstream").textContent = fmt(upstream);
  $("ratio").textContent = upstream ? fmt(stats.clients / upstream, 1) : "–";
  $("inUse").textContent = fmt(inUse);
  $("waiting").textContent = fmt(waiting);
  const last = samples[samples.length - 1];
  $("maxPool").textContent = fmt(last ? last.maxPool : undefined);
  $("oldestWait").textContent = fmt(last ? last.oldestWaitMs : undefined);
  $("rate").textContent = fmt(last ? last.commandsPerSecond : undefined);
  $("p50").textContent = fmt(last ? last.p50Ms : undefined, 2);
  $("p99").textContent = fmt(last ? last.p99Ms : undefined, 2);
  const state = stats.draining ? ["draining: new clients refused", "bad"] : stats.pause.paused ? ["paused: " + stats.pause.waiting + " commands held", "bad"] : ["serving", "ok"];
  $("state").textContent = state[0];
  $("state").className = "state " + state[1];
  rows($("servers"), stats.topology, [[(m) => m.member + (m.worker === undefined ? "" : " · worker " + m.worker)], [(m) => m.type, ""], [(m) => fmt(m.rttMs, 1), "n"], [(m) => m.proxyAddress || "–"], [(m) => m.error || "", "bad"]]);
  rows($("pools"), pools, [[(p) => p.address + (p.worker === undefined ? "" : " · worker " + p.worker)], [(p) => p.total, "n"], [(p) => p.idle, "n"], [(p) => p.inUse, "n"], [(p) => p.connecting, "n"], [(p) => p.waiting, "n"], [(p) => fmt(p.maxPoolSize), "n"]]);
  rows($("collections"), stats.commandStats.collections, [[(r) => r.db], [(r) => r.collection], [(r) => r.command], [(r) => fmt(r.count), "n"], [(r) => fmt(r.errors), "n"], [(r) => fmt(r.meanMs, 2), "n"], [(r) => fmt(r.maxMs, 1), "n"], [(r) => fmt(r.documents), "n"], [(r) => fmt(r.bytesIn), "n"], [(r) => fmt(r.bytesOut), "n"]]);
  const pts = (f) => samples.map((s) => [s.t, f(s)]);
  chart($("chart-connections"), [pts((s) => s.clients), pts((s) => s.upstream)], ["#2563eb", "#f97316"]);
  chart($("chart-pool"), [pts((s) => (s.maxPool ? (100 * s.inUse) / s.maxPool : 0)), pts((s) => s.waiting)], ["#2563eb", "#f97316"]);
  chart($("chart-rate"), [pts((s) => s.commandsPerSecond)], ["#2563eb"]);
  chart($("chart-latency"), [pts((s) => s.p50Ms), pts((s) => s.p99Ms)], ["#2563eb", "#f97316"]);
  const when = new Date();
  $("updated").textContent = "updated " + when.toLocaleTimeString();
  document.body.dataset.updated = String(when.getTime());
}
async function refresh() {
  try {
    const since = samples.length ? samples[samples.length - 1].t : 0;
    const [history, stats] = await Promise.all([
      fetch("stats/history?since=" + since).then((r) => r.json()),
      fetch("stats").then((r) => r.json()),
    ]);
    samples = samples.concat(history.samples).filter((s) => s.t > Date.now() - WINDOW_MS);
    render(stats);
  } catch (err) {
    $("state").textContent = "admin endpoint unreachable (" + err.message + ")";
    $("state").className = "state bad";
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
`;
