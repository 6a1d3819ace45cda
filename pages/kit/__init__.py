"""The screen kit: what every page is built from, one concern per module.

    session  who acts, on which organization, through which engine (Screen); cached reads
    forms    writes with feedback, confirmations, parsed form input, dialogs, refusals shown
    formats  numbers and text as a person reads them
    tables   grids, columns, metric cards, CSV exports (formula-safe)
    charts   Plotly figures with one palette
    words    the words a person reads for the database's codes
    ranges   the date range control (presets, custom from–to) in the organization's time zone
    tabs     tabs that draw only the chosen one (its label in the URL)
    login    the login form and the browser session (app.py's front door)

Pages import the names from here (`from pages import kit`, then `kit.table(...)`). Nothing in the
kit holds SQL or invents a figure; formatting only changes how a number from billing_core is shown.
"""

from billing_core.exports import FORMULA_STARTS, csv_bytes, formula_safe, formula_safe_frame  # noqa: F401
from pages.kit.charts import (  # noqa: F401
    KNOWN_COLORS,
    LABEL_CHARACTERS,
    PALETTE,
    bar_chart,
    chart_frame,
    color_map,
    line_chart,
    pie_chart,
    show_chart,
    timeline_chart,
)
from pages.kit.formats import (  # noqa: F401
    card_credits,
    counted,
    fmt_count,
    fmt_credits,
    fmt_exact_money,
    fmt_money,
    fmt_percent,
    fmt_worth,
    md_text,
    plain_number,
)
from pages.kit.forms import (  # noqa: F401
    Refused,
    ask_confirmation,
    chosen_member,
    clear_fields,
    close_dialog,
    confirmation,
    dialog,
    effective_input,
    effective_moment,
    entered,
    flash,
    open_dialog,
    preset_effective,
    refuse,
    refusing,
    save_from_dialog,
    show_error,
    show_flash,
    write,
)
from pages.kit.ranges import date_range_control, range_text, zone_text  # noqa: F401
from pages.kit.session import (  # noqa: F401
    READ_TTL_SECONDS,
    Screen,
    chosen_org,
    clear_cached_reads,
    engine,
    read,
    require_actor,
    require_chosen_org,
)
from pages.kit.tables import (  # noqa: F401
    count_column,
    credits_column,
    csv_download,
    date_column,
    datetime_column,
    filter_rows,
    grid_frame,
    metric_card,
    money_column,
    percent_bar_column,
    percent_column,
    table,
    text_column,
)
from pages.kit.tabs import tabbed  # noqa: F401
from pages.kit.words import WORDS, term  # noqa: F401
