"""Which models are served, and how a broken plugin is reported."""

import importlib
import logging
import sys
import types

import pytest

from deepaas.exceptions import ModelLoadError, ModelNotFound, MultipleModelsFound
from deepaas.model.loading import (
    DEMO_MODEL_NAME,
    MODEL_NAMESPACE,
    ModelSpec,
    available_models,
    load_model,
    load_models,
    select_models,
)
from tests.conftest import FAKE_MODELS, spec, write_distribution


def installed(*names):
    found = {n: ModelSpec(n, f"pkg.{n}") for n in names}
    return dict(sorted(found.items()))


@pytest.fixture
def only_site(tmp_path, monkeypatch):
    """Install entry points in a fresh folder on sys.path."""

    def install(entry_points, name="only_model"):
        site = tmp_path / f"site-{name}"
        write_distribution(site, entry_points, name=name)
        monkeypatch.syspath_prepend(str(site))
        importlib.invalidate_caches()
        return site

    return install


# -- selection rules ------------------------------------------------------------


def test_named_models_are_served_in_order_once():
    chosen = select_models(["b", "a", "b"], installed("a", "b", "c"))
    assert [s.name for s in chosen] == ["b", "a"]


def test_unknown_name_lists_what_is_installed():
    with pytest.raises(ModelNotFound) as info:
        select_models(["nope"], installed("a", "b"))
    assert "'nope'" in info.value.message
    assert "a, b" in info.value.message


def test_the_only_installed_model_is_served():
    chosen = select_models([], installed("a", DEMO_MODEL_NAME))
    assert [s.name for s in chosen] == ["a"]


def test_several_models_without_a_name_is_an_error_listing_them():
    with pytest.raises(MultipleModelsFound) as info:
        select_models([], installed("a", "b", DEMO_MODEL_NAME))
    message = info.value.message
    assert "a, b" in message
    assert DEMO_MODEL_NAME not in message
    assert "--model-name" in message and "DEEPAAS_V2_MODEL" in message


def test_several_models_without_a_name_are_all_served_when_asked(caplog):
    chosen = select_models([], installed("a", "b", DEMO_MODEL_NAME),
                           all_when_unnamed=True)
    assert [s.name for s in chosen] == ["a", "b"]
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "serving all of them (a, b)" in warning.getMessage()
    assert "--model-name" in warning.getMessage()


def test_demo_only_when_nothing_else_is_installed():
    chosen = select_models([], installed(DEMO_MODEL_NAME))
    assert [s.name for s in chosen] == [DEMO_MODEL_NAME]


def test_demo_can_be_asked_for_by_name_beside_others():
    chosen = select_models([DEMO_MODEL_NAME], installed("a", DEMO_MODEL_NAME))
    assert [s.name for s in chosen] == [DEMO_MODEL_NAME]


def test_nothing_installed_is_a_clear_error():
    with pytest.raises(ModelNotFound) as info:
        select_models([], {})
    assert MODEL_NAMESPACE in info.value.message


# -- real entry points ------------------------------------------------------------


def test_installed_entry_points_are_listed_without_importing(installed_models):
    sys.modules.pop("tests.fake_models.broken", None)
    found = available_models()
    assert set(FAKE_MODELS) <= set(found)
    assert DEMO_MODEL_NAME in found
    assert found["echo"] == ModelSpec("echo", FAKE_MODELS["echo"], MODEL_NAMESPACE)
    assert "tests.fake_models.broken" not in sys.modules


def test_several_installed_and_no_name_lists_them_all(installed_models):
    with pytest.raises(MultipleModelsFound) as info:
        select_models([], available_models())
    for name in ("broken", "echo", "old-style", "new-style"):
        assert name in info.value.message


def test_only_one_installed_model_is_chosen(only_site):
    only_site({"lonely": "tests.fake_models.misc:PredictOnly"})
    found = available_models()
    real = {n for n in found if n != DEMO_MODEL_NAME}
    assert real == {"lonely"}
    assert [s.name for s in select_models([], found)] == ["lonely"]


def test_module_class_and_object_entry_points(installed_models):
    models = load_models([spec("old-style"), spec("new-style"), spec("echo")])
    assert isinstance(models["old-style"], types.ModuleType)
    assert models["old-style"].__name__ == "tests.fake_models.old_style"
    from tests.fake_models import misc, new_style

    assert isinstance(models["new-style"], new_style.Model)  # instantiated
    assert models["echo"] is misc.echo


def test_spec_without_namespace_imports_its_target():
    model = load_model(ModelSpec("x", "tests.fake_models.misc:echo", None))
    from tests.fake_models import misc

    assert model is misc.echo


# -- broken plugins ------------------------------------------------------------------


def test_broken_plugin_by_name_fails_with_its_reason(installed_models, caplog):
    with caplog.at_level(logging.ERROR):
        with pytest.raises(ModelLoadError) as info:
            load_model(spec("broken"))
    assert "'broken'" in info.value.message
    assert "this_module_does_not_exist" in info.value.message
    # The log has the whole traceback.
    assert "Traceback (most recent call last)" in caplog.text
    assert "this_module_does_not_exist" in caplog.text


def test_broken_plugin_never_hides_the_others(installed_models):
    assert "broken" in available_models()
    models = load_models([spec("echo"), spec("old-style")])
    assert set(models) == {"echo", "old-style"}
    with pytest.raises(MultipleModelsFound):
        select_models([], available_models())
    assert [s.name for s in select_models(["echo"], available_models())] == ["echo"]


def test_broken_beside_a_good_one_names_the_broken(installed_models):
    with pytest.raises(ModelLoadError) as info:
        load_models([spec("echo"), spec("broken")])
    assert "'broken'" in info.value.message


def test_class_whose_constructor_raises(installed_models):
    with pytest.raises(ModelLoadError) as info:
        load_model(spec("bad-init"))
    assert "BadInit()" in info.value.message
    assert "weights.bin is missing" in info.value.message


def test_entry_point_to_a_missing_attribute(only_site):
    only_site({"typo": "tests.fake_models.misc:NoSuchThing"}, name="typo_model")
    with pytest.raises(ModelLoadError) as info:
        load_model(available_models()["typo"])
    assert "NoSuchThing" in info.value.message


def test_name_not_installed_when_loading(installed_models):
    with pytest.raises(ModelLoadError) as info:
        load_model(ModelSpec("ghost", "x.y", MODEL_NAMESPACE))
    assert "'ghost'" in info.value.message


def test_a_model_installed_after_another_was_loaded_loads_too(only_site):
    """Loading sees what is installed now, as listing does: a process that
    has loaded one model (an embedding application, a test session) loads
    one installed after it, instead of calling it not installed."""
    demo = load_model(ModelSpec("deepaas-demo", "deepaas.model.demo", MODEL_NAMESPACE))
    assert demo is not None
    only_site({"echo": FAKE_MODELS["echo"]}, name="later_model")
    assert "echo" in available_models()
    assert load_model(spec("echo")) is not None
