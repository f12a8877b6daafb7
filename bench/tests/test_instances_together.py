"""The analysis of `instances.py --together`: added CPU is taken against the same turn's (a),
so a machine whose speed moves from turn to turn does not move the ratio."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import instances  # noqa: E402

LABELS = ["a1", "a2", "b3", "h4"]


def round_at(speeds, b_added, h_added):
    """One round: each turn runs at its own speed factor; (a) costs 100 µs at factor 1."""
    return {
        "a1": [100.0 * s for s in speeds],
        "a2": [102.0 * s for s in speeds],
        "b3": [(101.0 + b_added) * s for s in speeds],
        "h4": [(101.0 + h_added) * s for s in speeds],
    }


def test_added_is_taken_against_the_same_turn():
    rounds = [round_at([1.0, 2.0], b_added=20.0, h_added=30.0)]
    added = instances.added_by_turn(rounds, LABELS)
    assert added == [{"b": [20.0, 40.0], "h": [30.0, 60.0]}]


def test_ratio_holds_while_the_machine_speed_moves():
    # Turns at speeds from 1.0 to 1.6: the ratio of added CPU stays 1.5 in every round.
    rounds = [round_at([1.0 + 0.1 * r, 1.3, 1.6 - 0.05 * r], 20.0, 30.0) for r in range(6)]
    point, (lo, hi) = instances.ratio_with_interval(instances.added_by_turn(rounds, LABELS), "h", "b")
    assert abs(point - 1.5) < 1e-9
    assert abs(lo - 1.5) < 1e-9 and abs(hi - 1.5) < 1e-9


def test_interval_widens_when_rounds_disagree():
    rounds = [round_at([1.0, 1.0], 20.0, h) for h in (24.0, 30.0, 36.0, 26.0, 34.0)]
    point, (lo, hi) = instances.ratio_with_interval(instances.added_by_turn(rounds, LABELS), "h", "b")
    assert lo < point < hi
    assert lo >= 1.2 - 1e-9 and hi <= 1.8 + 1e-9


def test_summary_names_a_missed_target():
    rounds = [round_at([1.0, 1.1], 20.0, 40.0) for _ in range(4)]
    text = "\n".join(instances.together_summary(rounds, LABELS))
    assert "| (h)/(b) | 2.00× | 2.00–2.00× | ≤ 1.30×: missed |" in text


def test_c_below_e_is_strict():
    # The "(c) costs less than (e)": a tie misses, as does more; less meets.
    labels = ["a1", "c2", "e3"]

    def rounds(c_added, e_added):
        return [{"a1": [100.0, 110.0], "c2": [100.0 + c_added, 110.0 + c_added],
                 "e3": [100.0 + e_added, 110.0 + e_added]} for _ in range(4)]

    def row(c_added, e_added):
        text = "\n".join(instances.together_summary(rounds(c_added, e_added), labels))
        return next(line for line in text.splitlines() if line.startswith("| (c)/(e) |"))

    assert row(30.0, 10.0).endswith("| < 1.00×: missed |")
    assert row(20.0, 20.0).endswith("| < 1.00×: missed |")
    assert row(10.0, 20.0).endswith("| < 1.00×: met |")


def test_verdict_is_unresolved_when_the_interval_straddles_the_limit():
    # One rule for the alone report (bench.py) and --together (instances.py).
    assert instances.bench.verdict(1.25, (1.1, 1.4), 1.3) == "unresolved"
    assert instances.bench.verdict(1.2, (1.1, 1.3), 1.3) is True
    assert instances.bench.verdict(1.2, (1.1, 1.3), 1.3, strict=True) == "unresolved"
    assert instances.bench.verdict(1.5, None, 1.3) is False


def test_alone_report_names_the_ratios_together_reports():
    # One list of added-CPU ratios (bench.ADDED_RATIOS) for both reports; the alone report
    # names each row from it.
    names = [instances.bench.added_ratio_name(*r) for r in instances.bench.ADDED_RATIOS]
    assert "(c) added CPU < (e) added CPU" in names
    assert "(d) added CPU ≤ 1.10 × (c) added CPU" in names
    assert "(b) added / (l) added (what the SDK's unused exports cost the floor)" in names
    assert len(set(names)) == len(names)


def write_report(path, rounds):
    lines = ["# CPU per request by Envoy instance", "", "| round | instance | median µs/req | t1 | t2 |",
             "| ---: | --- | ---: | ---: | ---: |"]
    for r, cpu in enumerate(rounds):
        for label, values in cpu.items():
            lines.append("| %d | %s | %.1f | %s |" % (r + 1, label, sum(values) / len(values),
                                                     " | ".join("%.1f" % v for v in values)))
    path.write_text("\n".join(lines) + "\n")


def test_ratio_across_two_reports(tmp_path):
    # (b) in one run, (j) in another, each at its own speeds: added 20 and 26 µs at speed 1.
    b_rounds = [{"a1": [100.0, 150.0], "b2": [120.0, 180.0]} for _ in range(4)]
    j_rounds = [{"a1": [100.0, 120.0], "j2": [126.0, 151.2]} for _ in range(4)]
    write_report(tmp_path / "ab.md", b_rounds)
    write_report(tmp_path / "aj.md", j_rounds)
    rounds, labels = instances.read_report(str(tmp_path / "aj.md"))
    assert labels == ["a1", "j2"] and rounds[0]["j2"] == [126.0, 151.2]
    point, (lo, hi) = instances.ratio_across_reports(str(tmp_path / "aj.md"), "j",
                                                     str(tmp_path / "ab.md"), "b")
    # Medians of added: (j) 26.0 and 31.2 → 28.6; (b) 20 and 30 → 25.
    assert abs(point - 28.6 / 25.0) < 1e-9
    assert lo <= point <= hi


def test_pooled_reports_are_one_sample(tmp_path, capsys):
    first = [{"a1": [100.0, 100.0], "b2": [120.0, 120.0], "j3": [124.0, 124.0]} for _ in range(2)]
    second = [{"a1": [100.0, 100.0], "b2": [120.0, 120.0], "j3": [128.0, 128.0]} for _ in range(2)]
    write_report(tmp_path / "one.md", first)
    write_report(tmp_path / "two.md", second)
    assert instances.pooled_main(["j", "b", str(tmp_path / "one.md"), str(tmp_path / "two.md")]) == 0
    out = capsys.readouterr().out
    # (j) added 24 and 28 over four rounds: median 26 over (b)'s 20.
    assert out.startswith("(j)/(b): 1.30× (90% interval 1.20–1.40×; 4 rounds of one.md, two.md)")
