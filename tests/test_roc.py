"""ROC utilities and the empirical ε lower bound on hand-checkable numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ppds_core.evaluation import (
    auc,
    auc_confidence_interval,
    balanced_accuracy,
    clopper_pearson,
    epsilon_lower_bound,
    membership_measurements,
    read_scores,
    roc_curve,
    tpr_at_fpr,
    write_scores,
)


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    s = np.round(np.r_[rng.normal(1, 1, 300), rng.normal(0, 1, 200)], 1)  # many ties
    m = np.r_[np.ones(300, bool), np.zeros(200, bool)]
    assert auc(roc_curve(s, m)) == pytest.approx(roc_auc_score(m, s), abs=1e-12)


def test_auc_interval_covers_chance_only_for_chance_scores():
    rng = np.random.default_rng(3)
    m = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    lo, hi = auc_confidence_interval(roc_curve(rng.normal(size=400), m))
    assert lo < 0.5 < hi and hi - lo < 0.15
    lo, hi = auc_confidence_interval(roc_curve(np.r_[rng.normal(1, 1, 200), rng.normal(0, 1, 200)], m))
    assert lo > 0.6


def test_perfect_and_inverted_separation():
    m = np.r_[np.ones(5, bool), np.zeros(5, bool)]
    s = np.r_[np.arange(10, 15), np.arange(5)].astype(float)
    c = roc_curve(s, m)
    assert auc(c) == 1.0 and balanced_accuracy(c) == 1.0
    assert auc(roc_curve(-s, m)) == 0.0


def test_tpr_at_fpr_is_strict():
    # 4 non-members: FPR steps are 0, .25, .5, ...; "at FPR < 0.25" must exclude the .25 point
    m = np.array([1, 1, 0, 1, 0, 0, 0], bool)
    s = np.array([7, 6, 5, 4, 3, 2, 1], float)
    c = roc_curve(s, m)
    assert tpr_at_fpr(c, 0.25) == pytest.approx(2 / 3)
    assert tpr_at_fpr(c, 0.2501) == pytest.approx(1.0)
    assert tpr_at_fpr(c, 0.0) == 0.0


def test_balanced_accuracy_best_threshold():
    m = np.array([1, 1, 0, 1, 0, 0], bool)
    s = np.array([6, 5, 4, 3, 2, 1], float)
    # threshold 3: TPR 1, FPR 1/3 → (1 + 2/3)/2
    assert balanced_accuracy(roc_curve(s, m)) == pytest.approx((1 + 2 / 3) / 2)


def test_clopper_pearson_known_values():
    lo, hi = clopper_pearson(np.array([0, 5, 10]), 10)
    assert lo[0] == 0.0 and hi[2] == 1.0
    assert hi[0] == pytest.approx(1 - 0.025 ** (1 / 10))  # exact for k = 0
    assert lo[1] == pytest.approx(0.18708, abs=1e-4) and hi[1] == pytest.approx(0.81292, abs=1e-4)


def test_epsilon_lb_perfect_separation_value():
    n = 1000
    m = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    s = m.astype(float)
    b = epsilon_lower_bound(s, m, delta=0.0)
    # evaluated on the held-out half (n/2 per side): TPR = 1 (CP low = 0.025^(2/n)),
    # FPR = 0 (CP high = 1 − 0.025^(2/n))
    half = n // 2
    expected = math.log(0.025 ** (1 / half) / (1 - 0.025 ** (1 / half)))
    assert b.lower == pytest.approx(expected, rel=1e-9)
    assert b.point == math.inf and b.tpr == 1.0 and b.fpr == 0.0
    assert b.selection == "split" and (b.n_members, b.n_nonmembers) == (half, half)
    # a threshold fixed in advance: all candidates, each direction at α/2 (0.0125 per end)
    fixed = epsilon_lower_bound(s, m, delta=0.0, threshold=0.5)
    assert fixed.lower == pytest.approx(math.log(0.0125 ** (1 / n) / (1 - 0.0125 ** (1 / n))),
                                        rel=1e-9)
    # Bonferroni over every threshold and both directions: 3 thresholds here → α/6 per test
    bonf = epsilon_lower_bound(s, m, delta=0.0, selection="bonferroni")
    a = 0.05 / 6 / 2
    assert bonf.lower == pytest.approx(math.log(a ** (1 / n) / (1 - a ** (1 / n))), rel=1e-9)


def test_epsilon_lb_of_chance_scores_is_small():
    rng = np.random.default_rng(1)
    s = rng.normal(size=2000)
    m = rng.random(2000) < 0.5
    assert epsilon_lower_bound(s, m, delta=1e-5).lower < 0.3


@pytest.mark.parametrize("selection", ["split", "bonferroni"])
def test_epsilon_lb_without_leakage_is_positive_at_most_5_percent_of_the_time(selection):
    # scores independent of membership, 1,000 candidates per side: a 95 % lower bound may
    # rule out ε = 0 in at most 5 % of repetitions (the old max over thresholds: 8 %)
    rng = np.random.default_rng(12)
    m = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
    reps = 200
    positive = sum(
        epsilon_lower_bound(rng.normal(size=2000), m, delta=1e-5, selection=selection,
                            seed=r).lower > 0
        for r in range(reps)
    )
    assert positive / reps <= 0.05


def test_epsilon_lb_split_is_seeded_and_held_out():
    rng = np.random.default_rng(4)
    m = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    s = np.r_[rng.normal(2, 1, 300), rng.normal(0, 1, 300)]
    a, b = epsilon_lower_bound(s, m, delta=1e-5, seed=1), epsilon_lower_bound(s, m, delta=1e-5, seed=1)
    assert a == b and a.lower > 0.5
    assert (a.n_members, a.n_nonmembers) == (150, 150)
    # a class too small to split: Bonferroni over all candidates instead
    tiny = epsilon_lower_bound([3.0, 1.0, 0.0], [True, False, False], delta=0.0)
    assert tiny.selection == "bonferroni" and tiny.lower == 0.0
    with pytest.raises(ValueError, match="selection"):
        epsilon_lower_bound(s, m, delta=0.0, selection="none")


def test_epsilon_lb_respects_gaussian_mechanism():
    # scores of a μ=1 Gaussian mechanism: ε(δ=1e-5) ≈ 4.4; a 95 % bound must stay below
    rng = np.random.default_rng(2)
    n = 20000
    s = np.r_[rng.normal(1, 1, n), rng.normal(0, 1, n)]
    m = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    b = epsilon_lower_bound(s, m, delta=1e-5)
    assert 0.5 < b.lower < 4.4


def test_complementary_test_is_used():
    # every member scores high, half the non-members too: "score < t" ⇒ non-member is
    # never wrong (FNR = 0), the test itself only has TPR/FPR = 2
    m = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    s = np.r_[np.ones(500), np.ones(250), np.zeros(250)]
    b = epsilon_lower_bound(s, m, delta=0.0)
    assert b.complementary and b.lower > 3


def test_measurements_and_violation(tmp_path):
    m = np.r_[np.ones(400, bool), np.zeros(400, bool)]
    s = m.astype(float)
    rows = {r.name: r for r in membership_measurements("x", s, m, delta=1e-5, epsilon_spent=1.0)}
    assert set(rows) == {"x-auc", "x-tpr@1%fpr", "x-tpr@0.1%fpr", "x-balanced-accuracy",
                         "x-epsilon-lb", "x-epsilon-violation"}
    assert all(r.higher_is_better is False for r in rows.values())
    # what the leaderboard's compact attack table shows of a membership attack
    assert {n for n, r in rows.items() if r.headline} == {"x-auc", "x-tpr@1%fpr", "x-epsilon-lb"}
    only_lb = membership_measurements("x", s, m, delta=1e-5, epsilon_spent=1.0, headline=("epsilon-lb",))
    assert [r.name for r in only_lb if r.headline] == ["x-epsilon-lb"]
    assert rows["x-epsilon-violation"].value == 1.0
    assert rows["x-epsilon-lb"].extra["ci_low"] == rows["x-epsilon-lb"].value
    assert rows["x-epsilon-lb"].extra["threshold_selection"] == "split"
    assert rows["x-epsilon-lb"].extra["n_eval_members"] == 200
    assert rows["x-epsilon-violation"].extra["threshold_selection"] == "split"
    nonpriv = membership_measurements("x", s, m, delta=1e-5, epsilon_spent=math.inf)
    assert "x-epsilon-violation" not in {r.name for r in nonpriv}
    weak = {r.name: r for r in membership_measurements("x", s, m, delta=1e-5, epsilon_spent=50.0)}
    assert weak["x-epsilon-violation"].value == 0.0
    p = write_scores(tmp_path / "scores.npz", s, m, extra=np.arange(3))
    s2, m2 = read_scores(p)
    assert (s2 == s).all() and (m2 == m).all()


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        roc_curve([1.0, 2.0], [True, True])
    with pytest.raises(ValueError):
        roc_curve([1.0, float("nan")], [True, False])
