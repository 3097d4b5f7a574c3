"""pytest's warning filter (pyproject.toml): the project's own warnings fail, others' do not."""

from __future__ import annotations

import warnings

import pytest


def test_a_warning_raised_by_the_project_is_an_error():
    with pytest.raises(UserWarning, match="ours"):
        warnings.warn("ours", UserWarning, stacklevel=1)  # attributed to this module, tests.*


def test_a_warning_from_another_library_is_only_shown():
    with warnings.catch_warnings(record=True) as caught:  # keeps the filters pytest set for this test
        warnings.warn_explicit("theirs", UserWarning, "site-packages/somelib/mod.py", 1, module="somelib.mod")
    assert [str(w.message) for w in caught] == ["theirs"]
