"""Tables for people: what ``orderrelay list`` and the demo print."""

from __future__ import annotations

from rich.table import Table


def orders_table(rows: list[dict], title: str | None = None) -> Table:
    """The readable table of orders that ``list`` and the demo print."""
    table = Table("id", "provider", "status", "key", "reference", "attempts", "created", "detail", title=title)
    table.columns[-1].overflow = "fold"
    for r in rows:
        detail = ""
        if r.get("errors"):
            first, *rest = r["errors"].items()
            detail = f"{first[0]}: {' '.join(first[1])}" + (f" (+{len(rest)} more)" if rest else "")
        elif r.get("last_error"):
            detail = r["last_error"].get("message", "")
        table.add_row(
            str(r["id"])[:8],
            r["provider"] or "-",
            r["status"],
            r.get("idempotency_key") or "",
            r.get("provider_ref") or "",
            str(r["attempt_count"]),
            str(r["created_at"])[:19],
            detail,
        )
    return table
