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


# --- scoped patches: used by one call, with the same version range and opt-out -------------------


@pytest.fixture
def fake_llama(monkeypatch):
    """A stand-in for `llama_cpp.llama.llama_cpp`, the library module whose defaults `Llama()` reads."""
    import types

    class Params:
        use_extra_bufts = True

    library = types.SimpleNamespace(llama_model_default_params=Params)
    monkeypatch.setitem(sys.modules, "llama_cpp", types.ModuleType("llama_cpp"))
    monkeypatch.setitem(sys.modules, "llama_cpp.llama", types.SimpleNamespace(llama_cpp=library))
    monkeypatch.setattr(compat, "_version", lambda package: (0, 3))
    return library


def test_llama_defaults_lose_the_extra_buffers_only_inside_the_block(fake_llama):
    original = fake_llama.llama_model_default_params
    with compat.llama_without_extra_buffers() as patched:
        assert patched and fake_llama.llama_model_default_params().use_extra_bufts is False
    assert fake_llama.llama_model_default_params is original and original().use_extra_bufts is True


@pytest.mark.parametrize("version, env", [((0, 4), ""), ((0, 3), "off")])
def test_llama_defaults_stay_when_the_patch_is_off_or_outside_its_versions(fake_llama, monkeypatch, version, env):
    monkeypatch.setattr(compat, "_version", lambda package: version)
    monkeypatch.setenv(compat.LLAMA_DEFAULT_PARAMS.env_var, env)
    with compat.llama_without_extra_buffers() as patched:
        assert not patched and fake_llama.llama_model_default_params().use_extra_bufts is True


def test_the_hf_hook_is_added_once_and_not_when_off(monkeypatch):
    from huggingface_hub.utils import get_session

    def hook(response):
        pass

    hooks = get_session().event_hooks["response"]
    monkeypatch.setenv(compat.HF_RESPONSE_HOOK.env_var, "off")
    assert not compat.add_hf_response_hook(hook) and hook not in hooks
    monkeypatch.delenv(compat.HF_RESPONSE_HOOK.env_var)
    try:
        assert compat.add_hf_response_hook(hook) and compat.add_hf_response_hook(hook)
        assert hooks.count(hook) == 1
    finally:
        hooks.remove(hook)


def test_a_scoped_patch_says_once_that_it_is_skipped(monkeypatch, caplog, fake_llama):
    caplog.set_level("INFO", logger="fm_gallery.compat")
    monkeypatch.setattr(compat, "_logged", set())
    monkeypatch.setenv(compat.LLAMA_DEFAULT_PARAMS.env_var, "off")
    for _ in range(3):
        with compat.llama_without_extra_buffers():
            pass
    assert caplog.text.count("compat patch llama_default_params is off") == 1


def test_session_configs_are_built_on_first_read_and_equal_upstream_ones():
    import gradio as gr
    from gradio.state_holder import SessionState

    with gr.Blocks() as page:
        box = gr.Textbox("hello")
        gr.Number(3)
        gr.State([1])
    assert compat.apply(compat.LAZY_SESSION_CONFIGS)
    eager = object.__new__(SessionState)
    SessionState.__init__.upstream(eager, page)  # type: ignore[attr-defined]
    lazy = SessionState(page)
    assert isinstance(lazy.config_values, compat.LazyConfigs) and dict.__len__(lazy.config_values) == 0
    assert lazy.config_values[box._id] == eager.config_values[box._id]
    assert dict.__len__(lazy.config_values) == 1  # only what was read
    lazy._update_value_in_config(box._id, "changed")
    assert lazy.config_values[box._id]["props"]["value"] == "changed"
    assert {k: v for k, v in lazy.config_values.items() if k != box._id} == {
        k: v for k, v in eager.config_values.items() if k != box._id
    }
    assert list(lazy.components) and len(list(lazy.components)) == len(list(eager.components))
    assert compat.LAZY_SESSION_CONFIGS.apply() is False  # in place already
