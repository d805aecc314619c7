"The `paper` preset holds the official code's values (nbs/fidelity.ipynb), except the documented deviations."
from unsupervised_landmarks.fidelity import SETTINGS, fidelity_mismatches, fidelity_markdown


def test_paper_preset_matches_the_official_code():
    bad = fidelity_mismatches()
    assert bad == [], "paper preset differs from the official code without a documented deviation: " + \
        "; ".join(f"{s.path} ({s.dataset}): official {s.official!r}" for s in bad)


def test_every_setting_has_a_source_and_deviations_say_why():
    for s in SETTINGS:
        assert s.source, s
        assert s.deviation is None or len(s.deviation) > 20, s
        assert s.path is not None or s.deviation or s.note, s      # a behaviour row says where it is tested


def test_table_renders_every_row():
    md = fidelity_markdown()
    assert md.count("\n") == len(SETTINGS) + 1
