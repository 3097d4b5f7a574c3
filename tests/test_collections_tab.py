"""The Collections tab: build, add, search (text, example image, arithmetic), and who may change what."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from adapters import registry
from adapters.registry import Provider
from adapters.tasks import ZeroShotClassifier
from adapters.types import Task
from demos import collections as tab

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


class ColourSpace(ZeroShotClassifier):
    """Images and words in one 3-D space: an image is its mean colour, a word its colour's vector."""

    embeds = True

    def _classify(self, image, labels):
        return [1.0] * len(labels)

    def _embed_images(self, images):
        return [np.asarray(im.convert("RGB"), dtype=np.float32).mean(axis=(0, 1)) + 1e-3 for im in images]

    def _embed_labels(self, labels):
        return [
            np.asarray(COLOURS.get(label.split()[-1].strip("."), (1, 1, 1)), dtype=np.float32) + 1e-3
            for label in labels
        ]


@pytest.fixture(autouse=True)
def space(tmp_path, monkeypatch):
    monkeypatch.setenv("FMG_COLLECTIONS", str(tmp_path / "collections"))
    registry.register(Provider("colours", "Colours", {Task.ZERO_SHOT: ColourSpace}, models=lambda t: "rgb"))
    yield
    registry.unregister("colours")


def pictures(tmp_path) -> list[str]:
    paths = []
    for name, rgb in COLOURS.items():
        path = tmp_path / f"{name}.png"
        Image.new("RGB", (64, 48), rgb).save(path)
        paths.append(str(path))
    return paths


def test_an_image_collection_is_built_and_searched_by_text_example_and_arithmetic(tmp_path):
    tab.create("shapes", "image", "colours")
    said, _ = tab.add("shapes", pictures(tmp_path))
    assert "Added 3" in said and "3 items" in said and "colours:rgb" in said
    gallery, table, found = tab.search("shapes", "red", None, "", "", 3)
    assert table[0][2] == "red.png" and gallery[0][1].endswith("red.png")
    assert found[0].getpixel((0, 0)) == COLOURS["red"]  # a decoded copy: Gradio never serves the data folder
    switch, *values = tab.send(found, 0, "captioning")
    assert switch.selected == "captioning" and values[1] is found[0]
    assert tab.send(found, 1, tab.GENERATE)[3]["background"] is found[1]
    with pytest.raises(gr.Error, match="Pick an image"):
        tab.send(found, None, "captioning")
    _, table, _ = tab.search("shapes", "", Image.new("RGB", (30, 30), (0, 0, 250)), "", "", 1)
    assert table[0][2] == "blue.png"
    purple = Image.new("RGB", (30, 30), (200, 0, 200))  # as close to red as to blue
    _, table, _ = tab.search("shapes", "", purple, "green", "blue", 1)
    assert table[0][2] == "green.png"  # purple + green - blue: (0.56, 0.79, -0.23) is nearest green
    _, table, _ = tab.search("shapes", "", purple, "", "blue", 1)
    assert table[0][2] == "red.png"  # purple - blue
    again, _ = tab.add("shapes", pictures(tmp_path))
    assert "unchanged 3" in again


def test_a_text_collection_answers_a_sentence_and_refuses_images(tmp_path, fake_provider):
    doc = tmp_path / "notes.txt"
    doc.write_text("Kittens are young cats.\n\nRockets fly to orbit.", encoding="utf-8")
    tab.create("notes", "text", "fake")
    tab.add("notes", [str(doc)])
    _, table, _ = tab.search("notes", "young cats", None, "", "", 1)
    assert "Kittens" in table[0][3]
    with pytest.raises(gr.Error, match="searched with a sentence"):
        tab.search("notes", "x", Image.new("RGB", (8, 8)), "", "", 1)


def test_an_image_collection_needs_an_embedder_of_images(fake_provider):
    with pytest.raises(gr.Error, match="no image embeddings"):
        tab.create("pics", "image", "fake")


def test_on_a_public_space_visitors_search_but_never_change(tmp_path, monkeypatch):
    tab.create("shapes", "image", "colours")
    tab.add("shapes", pictures(tmp_path))
    monkeypatch.setenv("FMG_PUBLIC", "1")
    monkeypatch.setenv("FMG_PUBLIC_ALLOW_UNPRICED", "true")  # the test's provider has no price
    for change in (
        lambda: tab.create("mine", "image", "colours"),
        lambda: tab.add("shapes", pictures(tmp_path)),
        lambda: tab.remove("shapes", ["red.png"]),
        lambda: tab.delete("shapes"),
    ):
        with pytest.raises(gr.Error, match="only its owner"):
            change()
    _, table, _ = tab.search("shapes", "green", None, "", "", 1)
    assert table[0][2] == "green.png"


@pytest.mark.e2e
def test_search_hands_images_to_the_browser_through_gradio(tmp_path):
    """Gradio serves only files it made: the hits reach a client as images it can download."""
    from gradio_client import Client

    from demos.widgets import standalone

    tab.create("shapes", "image", "colours")
    tab.add("shapes", pictures(tmp_path))
    page = standalone.standalone(tab)
    page.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(page.local_url, verbose=False)
        gallery, table = client.predict("shapes", "blue", None, "", "", 2, "", api_name="/collection_search")
        assert table["data"][0][2] == "blue.png" and len(gallery) == 2
        with Image.open(gallery[0]["image"]) as first:  # re-encoded by Gradio: blue, give or take
            red, green, blue = first.convert("RGB").getpixel((0, 0))
            assert blue > 240 and red < 16 and green < 16
    finally:
        page.close()


def zipped(tmp_path, members: dict[str, bytes]) -> str:
    import zipfile

    path = tmp_path / "set.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return str(path)


def png(rgb) -> bytes:
    import io

    out = io.BytesIO()
    Image.new("RGB", (32, 32), rgb).save(out, format="PNG")
    return out.getvalue()


def test_a_zip_adds_the_images_it_holds_and_refuses_paths_out_of_it(tmp_path):
    tab.create("shapes", "image", "colours")
    members = {
        "a/1.png": png(COLOURS["red"]),
        "b/1.png": png(COLOURS["blue"]),
        "__MACOSX/x.png": b"junk",
        "notes.txt": b"hi",
    }
    said, files = tab.add("shapes", [zipped(tmp_path, members)])
    assert "Added 2" in said and set(files["choices"]) == {"a__1.png", "b__1.png"}
    _, table, _ = tab.search("shapes", "blue", None, "", "", 1)
    assert table[0][2] == "b__1.png"
    (tmp_path / "set.zip").unlink()
    with pytest.raises(gr.Error, match="leads outside"):
        tab.add("shapes", [zipped(tmp_path, {"../evil.png": png(COLOURS["red"])})])
    assert not list(tmp_path.glob("evil.png")) and not list(tmp_path.parent.glob("evil.png"))


def test_only_a_folder_the_owner_lists_can_be_added(tmp_path, monkeypatch):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    Image.new("RGB", (32, 32), COLOURS["green"]).save(allowed / "g.png")
    (allowed / ".hidden.png").write_bytes(png(COLOURS["red"]))
    monkeypatch.setenv("FMG_COLLECTION_FOLDERS", str(allowed))
    tab.create("shapes", "image", "colours")
    said, files = tab.add_folder("shapes", str(allowed))
    assert "Added 1" in said and files["choices"] == ["g.png"]
    with pytest.raises(gr.Error, match="not one of the folders"):
        tab.add_folder("shapes", str(tmp_path))


def test_the_sample_images_come_from_the_installed_packages():
    tab.create("samples", "image", "colours")
    said, files = tab.add_samples("samples")
    assert "coffee.png" in files["choices"] and any(f.startswith("digit-seven-") for f in files["choices"])
    assert "Added 45" in said  # 15 scikit-image pictures and 3 digits of each of 10 classes


def test_the_collection_menu_lists_names_without_opening_them(tmp_path):
    tab.create("b-shapes", "image", "colours")
    tab.create("a-shapes", "image", "colours")
    (tmp_path / "collections" / ".partial").mkdir()
    assert tab._choices()["choices"] == ["a-shapes", "b-shapes"]
