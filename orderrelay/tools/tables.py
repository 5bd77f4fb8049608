"""Tables for people: what ``orderrelay list`` and the demo print, fitted to the terminal's width."""

from __future__ import annotations

from rich.table import Table

# Each column, and the narrowest terminal that shows it: the id, provider, status and detail always show.
COLUMNS = {
    "id": 0,
    "provider": 0,
    "status": 0,
    "attempts": 70,
    "reference": 90,
    "key": 110,
    "created": 130,
    "detail": 0,
}


def orders_table(rows: list[dict], title: str | None = None, width: int = 200) -> Table:
    """The readable table of orders: on a terminal of ``width`` columns, the columns that fit it (80 shows the id,
    provider, status, attempts and detail; a wider one adds the reference, the key and when it came)."""
    shown = [name for name, narrowest in COLUMNS.items() if width >= narrowest]
    table = Table(*shown, title=title, expand=False)
    for column in table.columns:
        column.overflow = "fold" if column.header in ("detail", "key", "reference") else "ellipsis"
        column.no_wrap = column.header not in ("detail", "key", "reference")
    for r in rows:
        detail = ""
        if r.get("errors"):
            first, *rest = r["errors"].items()
            detail = f"{first[0]}: {' '.join(first[1])}" + (f" (+{len(rest)} more)" if rest else "")
        elif r.get("last_error"):
            detail = r["last_error"].get("message", "")
        values = {
            "id": str(r["id"])[:8],
            "provider": r["provider"] or "-",
            "status": r["status"],
            "key": r.get("idempotency_key") or "",
            "reference": r.get("provider_ref") or "",
            "attempts": str(r["attempt_count"]),
            "created": str(r["created_at"])[:19],
            "detail": detail,
        }
        table.add_row(*(values[name] for name in shown))
    return table
