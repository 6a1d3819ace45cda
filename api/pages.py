"""Paged answers: a table's rows from an offset, with how many there are in all."""

from __future__ import annotations

from typing import Annotated, Any

import pandas as pd
from fastapi import Query
from pydantic import BaseModel

from api import rows

Limit = Annotated[int, Query(ge=1, le=1000, description="rows per page (1 to 1,000)")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="rows to skip")]


class Page(BaseModel):
    """One page of a table: its rows (JSON objects keyed by column), the page's bounds and the total."""

    items: list[dict[str, Any]]
    limit: int
    offset: int
    total: int | None


def page_of(frame: pd.DataFrame, limit: int, offset: int) -> Page:
    """The page of `frame` from `offset`, at most `limit` rows."""
    return Page(items=rows.records(frame.iloc[offset:offset + limit]), limit=limit, offset=offset, total=len(frame))
