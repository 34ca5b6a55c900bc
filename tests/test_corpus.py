"""The external yardstick: picklescan's test fixtures in ../shared/corpus/picklescan.

labels.json says what a correct tool must say about each file:
  malicious      -> never clean
  clean          -> clean
  not-malicious  -> anything but malicious
One test per file, so a failure names the file. Skipped when the corpus is absent.
"""
from __future__ import annotations

import json
import os

import pytest

import aisbom
from aisbom import Verdict
from asm import describe
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS_DIR = os.path.join(REPO_ROOT, "..", "shared", "corpus", "picklescan")

LABELS = os.path.join(CORPUS_DIR, "labels.json")


def _cases():
    if not os.path.isfile(LABELS):
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=f"corpus not present at {CORPUS_DIR}"), id="no-corpus")]
    with open(LABELS, encoding="utf-8") as f:
        labels = json.load(f)
    return [pytest.param(rel, label, id=f"{label}:{rel}") for rel, label in sorted(labels.items())]


CASES = _cases()


def test_corpus_labels_are_understood():
    if not os.path.isfile(LABELS):
        pytest.skip(f"corpus not present at {CORPUS_DIR}")
    with open(LABELS, encoding="utf-8") as f:
        labels = json.load(f)
    assert set(labels.values()) <= {"malicious", "clean", "not-malicious"}
    assert sum(1 for v in labels.values() if v == "malicious") > 0
    assert sum(1 for v in labels.values() if v == "clean") > 0
    missing = [rel for rel in labels if not os.path.isfile(os.path.join(CORPUS_DIR, rel))]
    assert not missing, f"labelled files missing from the corpus: {missing}"


@pytest.mark.parametrize("rel, label", CASES)
def test_corpus_file(rel, label):
    path = os.path.join(CORPUS_DIR, rel)
    r = aisbom.scan(path)
    if label == "malicious":
        assert r.verdict is not Verdict.CLEAN, describe(r)
    elif label == "clean":
        assert r.verdict is Verdict.CLEAN, describe(r)
    else:
        assert label == "not-malicious"
        assert r.verdict is not Verdict.MALICIOUS, describe(r)
