"""The code of Getting started, Concepts and the tutorials runs as written, and learns what the pages say.

Each page's ```python blocks run in order in one namespace (tests/docs_helpers.py), with JAX's default
dtype promotion, as a reader runs them; the asserts check the numbers the pages state, with some margin.
"""

import pytest

from docs_helpers import run_page


def test_getting_started():
    page = run_page("docs/getting-started.md")
    assert page["test_mse"] < 0.02, page["test_mse"]  # the page: about 0.002; predicting the mean: 0.167


@pytest.mark.slow  # about 25 s of CPU: a dozen small programs, each compiled once
def test_concepts():
    run_page("docs/concepts.md")  # the page checks its own claims with asserts


@pytest.mark.slow
def test_tutorial_many_to_one():
    page = run_page("docs/tutorials/many-to-one.md")
    assert page["accuracy"] > 0.95, page["accuracy"]  # the page: 1.000 on parity of 1..10 bits


@pytest.mark.slow
def test_tutorial_many_to_many():
    page = run_page("docs/tutorials/many-to-many.md")
    assert page["token_accuracy"] > 0.98, page["token_accuracy"]  # the page: 1.000
    assert page["sequence_accuracy"] > 0.9, page["sequence_accuracy"]  # the page: 1.000


@pytest.mark.slow
def test_tutorial_one_to_many():
    page = run_page("docs/tutorials/one-to-many.md")
    assert page["exact"] > 0.9, page["exact"]  # the page: 1.00 of the 50 counts
    assert page["beam_best"] == "7 8 9 0 <eos>"


@pytest.mark.slow
def test_tutorial_seq2seq_attention():
    page = run_page("docs/tutorials/seq2seq-attention.md")
    assert page["greedy_accuracy"] > 0.9, page["greedy_accuracy"]  # the page: 0.983
    assert page["beam_accuracy"] > 0.9, page["beam_accuracy"]  # the page: 0.984
