"""compat.py: each patch applies within its versions, stays off when asked, and is harmless twice."""

from __future__ import annotations

import importlib.util
import sys

import pytest

import compat


def test_matplotlib_is_marked_missing_only_where_it_is_not_installed(monkeypatch):
    monkeypatch.delitem(sys.modules, "matplotlib", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert compat.apply(compat.MISSING_MATPLOTLIB)
    with pytest.raises(ImportError):
        import matplotlib  # noqa: F401
    assert compat.MISSING_MATPLOTLIB.apply() is False  # in place already
    monkeypatch.delitem(sys.modules, "matplotlib")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())  # installed: leave it alone
    assert compat.MISSING_MATPLOTLIB.apply() is False and "matplotlib" not in sys.modules


def test_every_patch_is_skipped_outside_its_versions_and_when_turned_off(monkeypatch, caplog):
    caplog.set_level("INFO", logger="fm_gallery.compat")
    monkeypatch.setattr(compat, "_version", lambda package: (99, 0))
    assert compat.install() == {p.name: False for p in compat.PATCHES}
    assert caplog.text.count("skipped: written for gradio") == len(compat.PATCHES)
    monkeypatch.undo()
    for patch in compat.PATCHES:
        monkeypatch.setenv(patch.env_var, "off")
    assert compat.install() == {p.name: False for p in compat.PATCHES}


def test_component_signatures_are_the_ones_inspect_computes():
    import inspect

    import gradio as gr

    assert compat.apply(compat.COMPONENT_SIGNATURES)
    for cls in (gr.Textbox, gr.Image, gr.Dropdown, gr.Chatbot):
        init = cls.__dict__["__init__"]
        given = init.__dict__["__signature__"]
        del init.__signature__
        try:
            assert inspect.signature(init) == given
        finally:
            init.__signature__ = given
