"""`ppminilm model count` prints the seed's three rows exactly."""

import json

from ppminilm.cli import main


def test_model_count_default_rows(capsys):
    assert main(["model", "count"]) == 0
    out = capsys.readouterr().out
    assert "102,267,648  102.3M  10,871,635,968  10.87B" in out
    assert "59,740,416   59.7M   5,435,817,984   5.44B" in out
    assert "49,115,520   49.1M   4,076,863,488   4.08B" in out


def test_model_count_json(capsys):
    assert main(["model", "count", "--layers", "6", "--width", "0.75", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert row == {"model": "6L-768H width 0.75", "params": 49115520, "flops": 4076863488}


def test_model_count_bad_width_is_a_usage_error(capsys):
    assert main(["model", "count", "--layers", "6", "--width", "0.7"]) == 2
