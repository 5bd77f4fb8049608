"""Tables for people: what ``orderrelay list`` and the demo print, fitted to the terminal's width."""

from __future__ import annotations

from rich.table import Table

# Column: (the widest it needs, the narrowest terminal that shows it). The id, the status and the detail always show.
COLUMNS = {
    "id": (8, 0),
    "provider": (10, 0),
    "status": (9, 0),
    "attempts": (3, 70),
    "reference": (20, 90),
    "key": (24, 110),
    "created": (19, 130),
    "detail": (30, 0),
}


def orders_table(rows: list[dict], title: str | None = None, width: int = 200) -> Table:
    """The readable table of orders: on a terminal of ``width`` columns, the columns that fit it (80 shows the id,
    provider, status, attempts and detail; a wider one adds the reference, the key and when it came)."""
    shown = [name for name, (_, narrowest) in COLUMNS.items() if width >= narrowest]
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
