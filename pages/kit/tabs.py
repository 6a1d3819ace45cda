"""Tabs that draw only the chosen one: a screen with several heavy tabs pays for one, and the URL keeps it."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import streamlit as st


def tabbed(key: str, sections: Mapping[str, Callable[[], None]]) -> str:
    """Tabs labelled by `sections`' keys; only the chosen tab's section runs. A switch reruns the screen, and the
    choice rides in the URL (?<key>=<label>), so a reload or a copied link opens the same tab. Returns the label
    of the tab drawn. Labels must stay the same from run to run (no counts in them)."""
    containers = st.tabs(list(sections), key=key, bind="query-params")
    chosen = next(label for label, container in zip(sections, containers, strict=True) if container.open)
    for (label, draw), container in zip(sections.items(), containers, strict=True):
        if label == chosen:
            with container:
                draw()
    return chosen
