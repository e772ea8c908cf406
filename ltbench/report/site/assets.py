"""The site's one stylesheet and one script, kept as strings so the package needs no data files.

Nothing here refers to the network: the pages work opened from disk (file://) or served as static files.
"""

CSS = """\
:root { --fg: #1d2330; --muted: #5b6474; --line: #d9dee7; --head: #f3f5f9; --accent: #1f5fbf; --best: #e8f1ff; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); background: #fff; }
header.top { background: #17223b; color: #fff; padding: 10px 20px; display: flex; flex-wrap: wrap; gap: 6px 18px;
             align-items: baseline; }
header.top a { color: #cfe0ff; text-decoration: none; }
header.top a.home { color: #fff; font-weight: 600; font-size: 17px; }
header.top a[aria-current] { color: #fff; text-decoration: underline; }
main { padding: 14px 20px 40px; max-width: 1500px; }
h1 { font-size: 22px; margin: 6px 0 4px; }
h2 { font-size: 18px; margin: 26px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
p.note, .muted { color: var(--muted); font-size: 13px; }
a { color: var(--accent); }
.scroll { overflow-x: auto; max-width: 100%; border: 1px solid var(--line); border-radius: 4px; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; text-align: right; }
th { background: var(--head); position: sticky; top: 0; font-weight: 600; }
th.l, td.l { text-align: left; }
tbody tr:hover { background: #fafbfd; }
td.best { background: var(--best); font-weight: 600; }
table.sortable th[data-sort] { cursor: pointer; user-select: none; }
table.sortable th[data-sort]::after { content: " \\2195"; color: #a3abb9; font-weight: 400; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; color: var(--accent); }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; color: var(--accent); }
.pair { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.pair > section { flex: 3 1 1180px; min-width: 0; }
.pair > section.narrow { flex: 1 1 380px; }
.figs { display: flex; flex-wrap: wrap; gap: 14px; }
.figs figure { margin: 0; flex: 1 1 420px; max-width: 720px; }
.figs figure.small { flex: 0 1 300px; }
.figs.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); }
.figs.grid figure { max-width: none; }
.figs img, .figs svg { width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { font-size: 12px; color: var(--muted); }
.cards { display: flex; flex-wrap: wrap; gap: 14px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; flex: 1 1 300px; }
.card h2 { border: 0; margin: 0 0 6px; }
pre { background: #f6f8fa; border: 1px solid var(--line); border-radius: 4px; padding: 8px; overflow-x: auto;
      font-size: 12px; }
details { margin: 6px 0; }
span.tag { display: inline-block; font-size: 11px; padding: 0 5px; border-radius: 3px; background: #fff1d6;
           color: #7a4b00; border: 1px solid #f0d08c; }
span.tag.full { background: #e3f6e8; color: #1d6b34; border-color: #9fd8b0; }
span.tag.unstable { background: #fde2e1; color: #8a1c1c; border-color: #f0a3a0; }
@media (max-width: 600px) {
  main { padding: 10px 10px 30px; }
  header.top { padding: 8px 10px; }
  h1 { font-size: 19px; }
  .pair > section, .pair > section.narrow, .figs figure, .figs figure.small { flex-basis: 100%; }
  .figs.grid { grid-template-columns: 1fr; }
}
"""

JS = """\
// Sortable tables: click (or Enter on) a header with data-sort. Numbers sort by each cell's data-v; empty values
// stay last in both directions; the first click uses the header's data-first ("descending" for higher-is-better).
(function () {
  function value(row, i, numeric) {
    var c = row.cells[i];
    var v = c.hasAttribute('data-v') ? c.getAttribute('data-v') : c.textContent.trim();
    if (!numeric) return v === '' ? null : v.toLowerCase();
    return v === '' || isNaN(parseFloat(v)) ? null : parseFloat(v);
  }
  function sortBy(table, th) {
    var i = Array.prototype.indexOf.call(th.parentNode.cells, th);
    var numeric = th.getAttribute('data-sort') === 'num';
    var cur = th.getAttribute('aria-sort');
    var dir = cur === 'descending' ? 'ascending' : cur === 'ascending' ? 'descending'
      : (th.getAttribute('data-first') || 'ascending');
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (r, k) { return [r, value(r, i, numeric), k]; });
    var sign = dir === 'ascending' ? 1 : -1;
    rows.sort(function (a, b) {
      if (a[1] === null || b[1] === null) return (a[1] === null) - (b[1] === null) || a[2] - b[2];
      if (a[1] < b[1]) return -sign;
      if (a[1] > b[1]) return sign;
      return a[2] - b[2];
    });
    rows.forEach(function (r) { body.appendChild(r[0]); });
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      if (!th.hasAttribute('data-sort')) return;
      th.tabIndex = 0;
      th.addEventListener('click', function () { sortBy(table, th); });
      th.addEventListener('keydown', function (e) {
        if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sortBy(table, th); }
      });
    });
  });
})();
"""
