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
