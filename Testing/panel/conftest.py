"""The panel tests' case and panel: a small clinical-realism CTA in the real widget."""
import pytest

from PromptEngines.data.synthetic.cta import vessel_volume
from panel_setup import build_panel


@pytest.fixture(scope="module")
def case():
    return vessel_volume(1008, shape=(48, 72, 72))


@pytest.fixture
def built_panel(case):
    built = build_panel(case)
    yield built
    built.widget.cleanup()
