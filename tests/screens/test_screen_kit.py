"""The screen kit's pure helpers: number formats, text escaping, filtering, CSV and chart data (no database)."""

from __future__ import annotations

import io
from decimal import Decimal

import pandas as pd
import pytest
from screen_testing import plain

from pages import kit


@pytest.mark.parametrize(
    ("value", "credits", "card"),
    [
        (Decimal("10000.000000"), "10,000", "10,000"),
        (Decimal("1442.044550"), "1,442.04455", "1,442.04"),
        (Decimal("11299.5"), "11,299.5", "11,300"),  # whole credits on a card from 10,000 up
        (Decimal("0.375"), "0.375", "0.38"),
        (Decimal(-5), "-5", "-5"),
        (Decimal("0E-6"), "0", "0"),
        (None, "—", "—"),
    ],
)
def test_credit_formats(value, credits, card):
    assert kit.fmt_credits(value) == credits
    assert kit.card_credits(value) == card


def test_money_percent_and_count_formats():
    assert kit.fmt_money(Decimal("1234.5")) == "$1,234.50"
    assert kit.fmt_money(Decimal(99), "EUR") == "99.00 EUR"
    assert kit.fmt_percent(Decimal("17.75")) == "17.8%"
    assert kit.fmt_count(1702) == "1,702"


@pytest.mark.parametrize(
    "text",
    ['<script>alert("x")</script>', "**bold** _it_ `code` [link](javascript:alert(1))", "$x$ :red[hi] # h & &amp;",
     "a\\b"],
)
def test_md_text_escapes_every_markup_character(text):
    escaped = kit.md_text(text)
    assert plain(escaped) == text
    for special in "<>*_`[]()$:#&":
        assert escaped.count(special) == escaped.count("\\" + special)


def test_filter_rows_is_plain_case_insensitive_text():
    frame = pd.DataFrame({"name": ["Ada", "Bob (admin)", None], "email": ["ada@x.io", "bob@y.io", "c@z.io"]})
    assert kit.filter_rows(frame, " ADA ", ["name", "email"]).name.tolist() == ["Ada"]
    assert kit.filter_rows(frame, "(admin", ["name"]).email.tolist() == ["bob@y.io"]  # not a regex
    assert kit.filter_rows(frame, "z.io", ["name", "email"]).email.tolist() == ["c@z.io"]
    assert len(kit.filter_rows(frame, "", ["name"])) == 3


def test_csv_cells_never_run_as_spreadsheet_formulas():
    frame = pd.DataFrame({"name": ["=HYPERLINK(\"x\")", "+1", "@cmd", "plain"], "credits": [Decimal(-5), 1, 2, 3]})
    back = pd.read_csv(io.BytesIO(kit.csv_bytes(frame)), dtype=str)
    assert back.name.tolist() == ["'=HYPERLINK(\"x\")", "'+1", "'@cmd", "plain"]
    assert back.credits.tolist() == ["-5", "1", "2", "3"]  # numbers stay numbers


def test_known_categories_keep_their_colour_and_others_get_distinct_ones():
    colors = kit.color_map(["llm", "zeta", "alpha", "contact_lookup"])
    assert colors["llm"] == kit.KNOWN_COLORS["llm"] and colors["contact_lookup"] == kit.KNOWN_COLORS["contact_lookup"]
    assert len(set(colors.values())) == 4
    assert kit.color_map(["alpha", "zeta"]) == kit.color_map(["zeta", "alpha"])


def test_bar_chart_keeps_people_with_the_same_name_apart_and_escapes_names():
    frame = pd.DataFrame({"user_id": ["u1", "u2"], "name": ["<b>Sam</b>", "<b>Sam</b>"],
                          "credits": [Decimal("2.5"), Decimal(1)]})
    fig = kit.bar_chart(frame, "name", "credits", key="user_id", horizontal=True).to_plotly_json()
    [trace] = fig["data"]
    assert list(trace["x"]) == [2.5, 1.0] and list(trace["y"]) == [0, 1]
    assert list(fig["layout"]["yaxis"]["ticktext"]) == ["&lt;b&gt;Sam&lt;/b&gt;"] * 2


def test_grids_show_text_formula_safe_and_keep_numbers_numeric():
    frame = pd.DataFrame({"name": ['=HYPERLINK("http://evil.example","click")', "-2+3", "\tx", "Ada"],
                          "credits": [Decimal("-5.5"), Decimal(1), Decimal(2), Decimal(3)], "count": [1, -2, 3, 4]})
    shown = kit.grid_frame(frame)
    assert shown.name.tolist() == ['\'=HYPERLINK("http://evil.example","click")', "'-2+3", "'\tx", "Ada"]
    assert pd.api.types.is_float_dtype(shown.credits) and shown.credits.tolist() == [-5.5, 1.0, 2.0, 3.0]
    assert pd.api.types.is_integer_dtype(shown["count"])  # numbers stay numbers: the grid sorts them as numbers
    assert kit.formula_safe("=1") == kit.csv_bytes(pd.DataFrame({"a": ["=1"]})).decode().splitlines()[1]  # one rule


def test_every_grid_of_the_pages_goes_through_the_kit():
    """st.dataframe / st.data_editor only in kit.table, which makes the grid's own export formula-safe."""
    from billing_core.database import PROJECT_ROOT as root

    direct = [
        f"{path.relative_to(root)}:{number}"
        for path in [root / "app.py", *sorted((root / "pages").glob("*.py"))]
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "st.dataframe(" in line or "st.data_editor(" in line or "st.table(" in line
    ]
    assert direct == [], f"render grids with kit.table: {direct}"


def test_a_chart_without_data_says_nothing_yet_instead_of_an_empty_axis():
    from streamlit.testing.v1 import AppTest

    def page() -> None:
        import pandas as pd

        from pages import kit

        empty_pool = pd.DataFrame({"figure": ["total", "used"], "credits": [0, 0]})
        kit.show_chart(kit.bar_chart(empty_pool, "figure", "credits", horizontal=True, title="Pool"), key="pool")
        kit.show_chart(kit.line_chart(pd.DataFrame({"day": [], "credits": []}), "day", "credits"), key="usage")
        kit.show_chart(kit.bar_chart(pd.DataFrame({"figure": ["total"], "credits": [5]}), "figure", "credits",
                                     title="Filled"), key="filled")

    at = AppTest.from_function(page).run()
    assert not at.exception
    assert [plain(c.value) for c in at.caption] == ["Pool: Nothing yet.", "Nothing yet."]
    assert len(at.get("plotly_chart")) == 1  # only the chart with a figure is drawn
