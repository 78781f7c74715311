"""HTML tables of report.html: sortable (click a header), and with a filter per text column
(a drop-down of its values) when asked; the script that drives them is inline, no library."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

TABLE_JS = """
function fzooRows(table) { return Array.from(table.tBodies[0].rows); }
function fzooFilter(table) {
  var sel = Array.from(table.querySelectorAll('select[data-col]'));
  var shown = 0, rows = fzooRows(table);
  rows.forEach(function (r) {
    var ok = sel.every(function (s) {
      return !s.value || r.cells[+s.dataset.col].textContent === s.value;
    });
    r.hidden = !ok; if (ok) shown++;
  });
  var count = document.getElementById(table.id + '-count');
  if (count) count.textContent = shown + ' of ' + rows.length + ' rows';
}
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('thead tr:first-child th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = fzooRows(table);
      var asc = th.dataset.order !== 'asc';
      table.querySelectorAll('th').forEach(function (h) { delete h.dataset.order; });
      th.dataset.order = asc ? 'asc' : 'desc';
      var keyed = rows.map(function (r) {
        var c = r.cells[col], x = c.dataset.v !== undefined ? c.dataset.v : c.textContent;
        return [parseFloat(x), x, r];
      });
      keyed.sort(function (a, b) {
        var cmp = (!isNaN(a[0]) && !isNaN(b[0])) ? a[0] - b[0]
          : isNaN(a[0]) !== isNaN(b[0]) ? (isNaN(a[0]) ? 1 : -1) : a[1].localeCompare(b[1]);
        return asc ? cmp : -cmp;
      });
      var frag = document.createDocumentFragment();
      keyed.forEach(function (k) { frag.appendChild(k[2]); });
      body.appendChild(frag);
    });
  });
  table.querySelectorAll('select[data-col]').forEach(function (s) {
    s.addEventListener('change', function () { fzooFilter(table); });
  });
});
"""


def fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(str(v))


def table(
    rows: Sequence[Mapping[str, Any]],
    columns: list[str],
    text_cols: set[str],
    *,
    table_id: str = "",
    filters: set[str] | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """A sortable table of ``columns``; ``filters`` names the columns that get a drop-down."""
    headers = headers or {}
    head = "".join(
        f'<th class="{"t" if c in text_cols else ""}" title="{html.escape(c)}">'
        f"{html.escape(headers.get(c, c))}</th>"
        for c in columns
    )
    filter_row = ""
    if filters:
        cells = []
        for k, c in enumerate(columns):
            if c not in filters:
                cells.append("<td></td>")
                continue
            values = sorted({fmt(r.get(c)) for r in rows})
            opts = "".join(f"<option>{v}</option>" for v in values)
            cells.append(
                f'<td class="t"><select data-col="{k}" aria-label="filter {html.escape(c)}">'
                f'<option value="">all</option>{opts}</select></td>'
            )
        filter_row = f'<tr class="filters">{"".join(cells)}</tr>'
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            num = "" if not isinstance(v, float) or math.isnan(v) else f' data-v="{v}"'
            cls = ' class="t"' if c in text_cols else ""
            cells.append(f"<td{cls}{num}>{fmt(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    count = (
        f'<p class="count" id="{table_id}-count">{len(rows)} of {len(rows)} rows</p>'
        if table_id and filters
        else ""
    )
    return (
        f'{count}<div class="scroll"><table class="sortable"{ident}><thead><tr>{head}</tr>'
        f"{filter_row}</thead><tbody>" + "".join(body) + "</tbody></table></div>"
    )
