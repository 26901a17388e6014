"""Rollout core: bucketing, the statistics against scipy, the judge on synthetic windows, the state machine."""

import hashlib
import json

import numpy as np
import pytest
from scipy import stats

from stream.core.rollout import (JudgeConfig, RolloutError, RolloutState, Transition, VariantWindow, Verdict, bucket,
                                 judge, mann_whitney, serves_challenger, two_proportion_test)

RNG = np.random.default_rng(11)
USERS = [f"user-{i}" for i in range(100_000)]


# -- bucketing -------------------------------------------------------------------------------------

def test_bucket_is_the_keyed_blake2b_and_stable():
    raw = int.from_bytes(hashlib.blake2b(b"u42", key=b"reco:8").digest()[:8], "big") / 2**64
    assert bucket("u42", "reco:8") == pytest.approx(raw, abs=1e-15)
    assert bucket("u42", "reco:8") == bucket("u42", "reco:8")
    assert bucket("u42", "reco:8") != bucket("u42", "reco:9")
    assert 0.0 <= bucket("u42", "x" * 200) < 1.0  # long salts are hashed into a key


def test_shares_match_and_are_monotone():
    b = np.array([bucket(u, "reco:8") for u in USERS])
    assert b.min() >= 0.0 and b.max() < 1.0
    assert abs(np.mean([serves_challenger(u, 0.1, "reco:8") for u in USERS[:20_000]]) - 0.1) < 0.01
    for share in (0.05, 0.1, 0.25, 0.5):
        assert abs((b < share).mean() - share) < 0.005
    small = {u for u in USERS[:5000] if serves_challenger(u, 0.1, "reco:8")}
    large = {u for u in USERS[:5000] if serves_challenger(u, 0.25, "reco:8")}
    assert small <= large and len(large) > len(small)
    assert not any(serves_challenger(u, 0.0, "reco:8") for u in USERS[:1000])
    assert all(serves_challenger(u, 1.0, "reco:8") for u in USERS[:1000])


def test_a_new_salt_picks_an_independent_set_of_users():
    a = np.array([bucket(u, "reco:8") for u in USERS[:20_000]]) < 0.1
    b = np.array([bucket(u, "reco:9") for u in USERS[:20_000]]) < 0.1
    assert abs((a & b).mean() - 0.01) < 0.004


# -- statistics ------------------------------------------------------------------------------------

@pytest.mark.parametrize("x1,n1,x2,n2", [(170, 1000, 120, 1000), (50, 400, 70, 380), (300, 2000, 300, 2000),
                                         (3, 500, 9, 700)])
def test_two_proportion_pooled_matches_scipy(x1, n1, x2, n2):
    z, p_worse = two_proportion_test(x1, n1, x2, n2)
    z_b, p_better = two_proportion_test(x1, n1, x2, n2, alternative="better")
    chi2, p_two, _, _ = stats.chi2_contingency([[x1, n1 - x1], [x2, n2 - x2]], correction=False)
    assert z == z_b and z * z == pytest.approx(chi2, rel=1e-9)
    assert p_worse == pytest.approx(stats.norm.cdf(z), rel=1e-9)
    assert p_better == pytest.approx(stats.norm.sf(z), rel=1e-9)
    assert 2 * min(p_worse, p_better) == pytest.approx(p_two, rel=1e-6)
    assert (z < 0) == (x2 / n2 < x1 / n1) or z == 0


def test_two_proportion_with_a_margin_is_unpooled_and_shifted():
    x1, n1, x2, n2, m = 170, 1000, 150, 1000, 0.01
    p1, p2 = x1 / n1, x2 / n2
    se = np.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    z, p = two_proportion_test(x1, n1, x2, n2, margin=m)
    assert z == pytest.approx((p2 - p1 + m) / se) and p == pytest.approx(stats.norm.cdf((p2 - p1 + m) / se))
    zb, pb = two_proportion_test(x1, n1, x2, n2, margin=m, alternative="better")
    assert zb == pytest.approx((p2 - p1 - m) / se) and pb == pytest.approx(stats.norm.sf(zb))
    assert p > two_proportion_test(x1, n1, x2, n2)[1]  # a margin makes "worse" harder to claim


@pytest.mark.parametrize("args", [(0, 0, 5, 10), (5, 10, 0, 0), (0, 100, 0, 100), (100, 100, 50, 50)])
def test_two_proportion_degenerate_inputs(args):
    assert two_proportion_test(*args) == (0.0, 1.0)
    assert two_proportion_test(*args, margin=0.01, alternative="better") == (0.0, 1.0)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("shift", [0.0, 0.05, -0.05])
def test_mann_whitney_matches_scipy(ties, shift):
    a = RNG.gamma(2.0, 0.2, 800)
    b = RNG.gamma(2.0, 0.2, 600) + shift
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    u, p = mann_whitney(a, b)
    ref = stats.mannwhitneyu(b, a, alternative="greater", method="asymptotic")
    assert u == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
    u_b, p_b = mann_whitney(a, b, alternative="better")
    ref_b = stats.mannwhitneyu(b, a, alternative="less", method="asymptotic")
    assert u_b == u and p_b == pytest.approx(ref_b.pvalue, rel=1e-9, abs=1e-300)


def test_mann_whitney_margin_shifts_the_challenger():
    a, b = np.round(RNG.gamma(2.0, 0.2, 500), 2), np.round(RNG.gamma(2.0, 0.2, 400) + 0.03, 2)
    p = mann_whitney(a, b, margin=0.02)[1]
    assert p == pytest.approx(stats.mannwhitneyu(b - 0.02, a, alternative="greater", method="asymptotic").pvalue)
    p_b = mann_whitney(a, b, alternative="better", margin=0.02)[1]
    assert p_b == pytest.approx(stats.mannwhitneyu(b + 0.02, a, alternative="less", method="asymptotic").pvalue)


def test_mann_whitney_degenerate_inputs_and_direction():
    assert mann_whitney([], [1.0, 2.0]) == (0.0, 1.0) and mann_whitney([1.0], []) == (0.0, 1.0)
    assert mann_whitney([0.5] * 5, [0.5] * 4)[1] == 1.0
    low, high = RNG.normal(0, 1, 300), RNG.normal(1, 1, 300)
    assert mann_whitney(low, high)[1] < 1e-6 and mann_whitney(high, low)[1] > 0.99
    with pytest.raises(ValueError):
        mann_whitney(low, high, alternative="greater")


# -- variant windows -------------------------------------------------------------------------------

def test_variant_window_memory_is_bounded_and_the_reservoir_is_uniform():
    w = VariantWindow(max_losses=5000, seed=3)
    n = 40_000
    for i in range(n):
        w.update(i % 5 == 0, i / n)
    assert (w.served, w.clicks, len(w.losses)) == (n, n // 5, 5000)
    assert w.ctr == pytest.approx(0.2) and w.mean_loss == pytest.approx((n - 1) / (2 * n))
    assert abs(np.mean(w.losses) - 0.5) < 0.02  # the sample covers the whole window, not the start
    assert abs(np.mean(np.array(w.losses) > 0.875) - 0.125) < 0.02


def test_variant_window_round_trip_and_determinism():
    a, b = VariantWindow(max_losses=50, seed=1), VariantWindow(max_losses=50, seed=1)
    for i in range(300):
        a.update(i % 3 == 0, i * 0.01)
        b.update(i % 3 == 0, i * 0.01)
    assert a == b and a.losses == b.losses
    c = VariantWindow.from_dict(json.loads(json.dumps(a.to_dict())))
    d = VariantWindow.from_dict(json.loads(json.dumps(a.to_dict())))
    assert c == a
    for i in range(300):
        c.update(1, 1.0 + i)
        d.update(1, 1.0 + i)
    assert c.losses == d.losses and len(c.losses) == 50 and c.served == 600
    assert VariantWindow().ctr == 0.0 and VariantWindow().mean_loss == 0.0


# -- judge -----------------------------------------------------------------------------------------

# (ctr, quality) of champion and challenger. The better challenger needs much sharper predictions:
# at a higher CTR a calibrated model's per-example losses are higher (more label entropy).
WORSE = ((0.16, 0.1), (0.08, 0.1))
BETTER = ((0.12, 0.05), (0.18, 0.5))


def window(n, ctr, quality, seed):
    """A synthetic window: labels at ``ctr``, predictions that lean towards the label by ``quality``."""
    rng = np.random.default_rng(seed)
    w = VariantWindow(seed=seed)
    y = rng.random(n) < ctr
    p = np.clip(np.where(y, ctr + quality, ctr - quality * ctr) + rng.normal(0, 0.03, n), 1e-3, 1 - 1e-3)
    for yi, pi in zip(y, p):
        w.update(int(yi), float(-np.log(pi if yi else 1 - pi)))
    return w


def test_judge_holds_on_too_few_samples():
    v = judge(window(5000, 0.15, 0.1, 1), window(120, 0.15, 0.1, 2))
    assert v.decision == "hold" and v.reason.startswith("too few samples")
    assert "challenger 120" in v.reason and v.evidence["challenger_n"] == "120"


def test_judge_calls_a_lower_ctr_worse():
    v = judge(window(3000, 0.15, 0.1, 1), window(3000, 0.10, 0.1, 2))
    assert v.decision == "rollback" and "ctr" in v.reason and float(v.evidence["ctr_p_worse"]) < 0.05
    assert float(v.evidence["ctr_z"]) < 0


def test_judge_calls_a_higher_loss_worse_at_equal_ctr():
    v = judge(window(3000, 0.15, 0.15, 1), window(3000, 0.15, 0.0, 2))
    assert v.decision == "rollback" and v.reason.startswith("challenger worse: log loss")
    assert float(v.evidence["loss_p_worse"]) < 0.05 and float(v.evidence["ctr_p_worse"]) >= 0.05


def test_judge_lets_an_equal_challenger_step():
    v = judge(window(3000, 0.15, 0.1, 1), window(3000, 0.15, 0.1, 2))
    assert v.decision == "promote_step" and v.reason.startswith("challenger not worse")


def test_judge_names_a_better_challenger():
    v = judge(window(3000, *BETTER[0], 1), window(3000, *BETTER[1], 2))
    assert v.decision == "promote_step" and v.reason.startswith("challenger better on ctr and log loss")
    assert float(v.evidence["ctr_p_better"]) < 0.05 and float(v.evidence["ctr_z"]) > 0
    assert float(v.evidence["loss_p_better"]) < 0.05


def test_judge_margins_forgive_small_drops():
    champ, chall = window(3000, 0.15, 0.1, 1), window(3000, 0.13, 0.1, 2)
    assert judge(champ, chall).decision == "rollback"
    assert judge(champ, chall, JudgeConfig(ctr_margin=0.03, loss_margin=0.05)).decision == "promote_step"


# -- state machine ---------------------------------------------------------------------------------

CFG = JudgeConfig(min_examples=300, worse_windows=2, step_windows=2, step_examples=1000)


def run(state, variants, windows, cfg=CFG, per_window=800):
    """Judge ``windows`` synthetic windows; return the transitions and the shares seen."""
    (champ_ctr, champ_q), (chall_ctr, chall_q) = variants
    out, shares = [], [state.share]
    for i in range(windows):
        if state.mode == "idle":
            break
        v = judge(window(per_window, champ_ctr, champ_q, 2 * i), window(per_window, chall_ctr, chall_q, 2 * i + 1), cfg)
        out += state.on_window(v, per_window, now_ms=1000 + i, cfg=cfg)
        shares.append(state.share)
    return out, shares


def test_a_worse_challenger_is_rolled_back_before_the_second_step():
    st = RolloutState(model="reco", champion=7)
    st.start_canary(8, now_ms=1)
    out, shares = run(st, WORSE, windows=10)
    assert [t.name for t in out] == ["rollout.rolled_back"]
    assert max(shares) <= st.steps[1] and len(shares) - 1 == CFG.worse_windows
    assert (st.mode, st.champion, st.challenger, st.share, st.blue) == ("idle", 7, None, 0.0, None)
    assert out[0].severity == "WARNING" and "canary v8 of reco at 5% rolled back" in out[0].message
    assert "2 windows in a row" in out[0].message and out[0].evidence["challenger_ctr"]


def test_a_better_challenger_reaches_full_traffic_through_every_step():
    st = RolloutState(model="reco", champion=7)
    st.start_canary(8, now_ms=1)
    out, shares = run(st, BETTER, windows=30)
    steps = [t for t in out if t.name == "rollout.step"]
    assert [t.name for t in out] == ["rollout.step"] * 4 + ["rollout.promoted"]
    assert sorted(set(shares) - {0.0}) == [0.05, 0.10, 0.25, 0.50, 1.0]
    assert "canary v8 of reco: 5% -> 10% (challenger ctr" in steps[0].message and "2 windows)" in steps[0].message
    assert (st.mode, st.champion, st.challenger, st.blue, st.share) == ("idle", 8, None, 7, 0.0)
    assert "v8 of reco promoted to champion" in out[-1].message


def test_a_step_needs_both_windows_and_examples():
    st = RolloutState(model="reco", champion=7)
    st.start_canary(8, now_ms=1)
    ok = Verdict("promote_step", "challenger not worse")
    assert st.on_window(ok, 400, 2, CFG) == [] and st.on_window(ok, 400, 3, CFG) == []  # 2 windows, 800 examples
    assert [t.name for t in st.on_window(ok, 400, 4, CFG)] == ["rollout.step"] and st.share == 0.10
    assert (st.windows_in_step, st.examples_in_step) == (0, 0)


def test_a_hold_or_good_window_resets_the_worse_streak():
    st = RolloutState(model="reco", champion=7)
    st.start_canary(8, now_ms=1)
    bad, hold = Verdict("rollback", "challenger worse: ctr"), Verdict("hold", "too few samples")
    for v in (bad, hold, bad, Verdict("promote_step", "ok"), bad):
        assert st.on_window(v, 10, 2, CFG) == []
    assert st.worse_streak == 1 and st.mode == "canary"


def test_shadow_never_gets_traffic():
    st = RolloutState(model="reco", champion=7)
    out = st.start_shadow(8, now_ms=1)
    assert out[0].name == "rollout.shadow_started" and "no traffic" in out[0].message
    transitions, shares = run(st, BETTER, windows=8)
    assert transitions == [] and set(shares) == {0.0} and st.mode == "shadow"
    assert st.last_decision["decision"] == "promote_step" and st.last_decision["at"] == 1007
    assert all(st.variant_for(u, "reco:8") == "champion" and st.version_for(u, "reco:8") == 7 for u in USERS[:2000])
    assert st.drift_alarm("challenger", {"psi": 0.4}, 2) == []
    started = st.start_canary(None, now_ms=2)  # the shadow challenger moves on to a canary
    assert started[0].name == "rollout.canary_started" and (st.challenger, st.share) == (8, 0.05)


def test_manual_mode_only_recommends_once():
    st = RolloutState(model="reco", champion=7, automation="manual")
    st.start_canary(8, now_ms=1)
    out, shares = run(st, WORSE, windows=5)
    assert [t.name for t in out] == ["rollout.recommendation"] and out[0].severity == "INFO"
    assert "rollback recommended" in out[0].message and "waiting for an operator" in out[0].message
    assert (st.mode, st.share, st.pending, st.challenger) == ("canary", 0.05, "rollback", 8)
    assert set(shares) == {0.05}
    assert st.rollback(now_ms=9, reason="operator agreed")[0].name == "rollout.rolled_back" and st.pending is None


def test_manual_mode_recommends_steps_and_the_operator_advances():
    st = RolloutState(model="reco", champion=7, automation="manual")
    st.start_canary(8, now_ms=1)
    out, _ = run(st, BETTER, windows=4)
    assert [t.name for t in out] == ["rollout.recommendation"] and st.pending == "step" and st.share == 0.05
    assert "step to 10% recommended" in out[0].message
    step = st.advance(now_ms=5)
    assert step[0].name == "rollout.step" and st.share == 0.10 and st.pending is None
    assert "operator" in step[0].message


def test_drift_alarm_on_the_canary_challenger():
    st = RolloutState(model="reco", champion=7)
    st.start_canary(8, now_ms=1)
    assert st.drift_alarm("champion", {"psi": 0.4}, 2) == []
    out = st.drift_alarm("challenger", {"psi": 0.4}, 3)
    assert out[0].name == "rollout.rolled_back" and "drift alarm" in out[0].message and st.mode == "idle"
    assert out[0].evidence == {"psi": "0.4"}
    manual = RolloutState(model="reco", champion=7, automation="manual")
    manual.start_canary(8, now_ms=1)
    assert manual.drift_alarm("challenger", {"psi": 0.4}, 2)[0].name == "rollout.recommendation"
    assert manual.drift_alarm("challenger", {"psi": 0.5}, 3) == [] and manual.mode == "canary"


def test_blue_green_switch_and_switch_back():
    st = RolloutState(model="reco", champion=7)
    st.start_shadow(8, now_ms=1)
    out = st.switch(now_ms=2)
    assert out[0].name == "rollout.switched" and "v7 -> v8" in out[0].message
    assert (st.champion, st.blue, st.challenger, st.mode) == (8, 7, None, "idle")
    assert st.switch(now_ms=3)[0].message.endswith("v8 -> v7 (v8 kept warm)")
    assert (st.champion, st.blue) == (7, 8)
    assert st.switch(now_ms=4) and (st.champion, st.blue) == (8, 7)
    out = st.rollback(now_ms=5, reason="p99 latency")  # no challenger: back to the warm previous champion
    assert "rolled back from v8 to previous champion v7 (p99 latency)" in out[0].message
    assert (st.champion, st.blue) == (7, None)


def test_canary_traffic_follows_the_share():
    st = RolloutState(model="reco", champion=7)
    st.start_canary(8, now_ms=1, steps=[0.2, 1.0])
    versions = [st.version_for(u, "reco:8") for u in USERS[:20_000]]
    assert abs(versions.count(8) / len(versions) - 0.2) < 0.015 and set(versions) == {7, 8}
    before = {u for u in USERS[:5000] if st.variant_for(u, "reco:8") == "challenger"}
    st.advance(now_ms=2)
    assert st.share == 1.0 and all(st.variant_for(u, "reco:8") == "challenger" for u in before)
    assert st.advance(now_ms=3)[0].name == "rollout.promoted" and st.champion == 8


@pytest.mark.parametrize("setup,command,match", [
    (lambda s: s.start_canary(8, 1), lambda s: s.start_canary(9, 2), "canary v8 of reco at 5% is running"),
    (lambda s: s.start_canary(8, 1), lambda s: s.start_shadow(9, 2), "cannot start shadow"),
    (lambda s: s.start_shadow(8, 1), lambda s: s.start_shadow(9, 2), "cannot start shadow"),
    (lambda s: s.start_shadow(8, 1), lambda s: s.start_canary(9, 2), "roll it back before a canary of v9"),
    (lambda s: None, lambda s: s.start_canary(None, 2), "no shadow challenger"),
    (lambda s: None, lambda s: s.start_canary(7, 2), "already the champion"),
    (lambda s: None, lambda s: s.start_canary(8, 2, steps=[0.5, 0.2]), "steps must be"),
    (lambda s: None, lambda s: s.promote(2), "nothing to promote"),
    (lambda s: None, lambda s: s.rollback(2, "x"), "nothing to roll back"),
    (lambda s: None, lambda s: s.switch(2), "nothing to switch to"),
    (lambda s: s.start_shadow(8, 1), lambda s: s.advance(2), "no canary to advance"),
])
def test_invalid_commands_raise(setup, command, match):
    st = RolloutState(model="reco", champion=7)
    setup(st)
    before = st.to_dict()
    with pytest.raises(RolloutError, match=match) as err:
        command(st)
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)
    assert st.to_dict() == before  # a refused command changes nothing


def test_invalid_states_and_verdicts_are_refused():
    with pytest.raises(RolloutError):
        RolloutState(model="reco", champion=7, mode="blue")
    with pytest.raises(RolloutError):
        RolloutState(model="reco", champion=7, automation="yolo")
    with pytest.raises(ValueError):
        Verdict("promote", "typo")


def test_state_round_trips_through_json_and_revisions_grow():
    st = RolloutState(model="reco", champion=7, automation="manual")
    revisions = [st.revision]
    st.start_canary(8, now_ms=10, steps=[0.1, 0.5, 1.0])
    revisions.append(st.revision)
    st.on_window(Verdict("rollback", "challenger worse: ctr", {"challenger_ctr": "0.1"}), 500, now_ms=20, cfg=CFG)
    revisions.append(st.revision)
    st.on_window(Verdict("rollback", "challenger worse: ctr", {"challenger_ctr": "0.1"}), 500, now_ms=30, cfg=CFG)
    revisions.append(st.revision)
    assert revisions == sorted(set(revisions)) and st.updated_at == 30 and st.pending == "rollback"
    back = RolloutState.from_dict(json.loads(json.dumps(st.to_dict())))
    assert back == st and back.to_dict() == st.to_dict()
    assert RolloutState.from_dict({"model": "reco", "champion": 3}).steps == [0.05, 0.10, 0.25, 0.50, 1.0]
    t = Transition("rollout.step", "INFO", "m", {"a": "1"})
    assert Transition(**json.loads(json.dumps(t.to_dict()))) == t


def test_paired_loss_test_matches_a_one_sample_t_on_the_differences():
    from scipy import stats as sps

    from stream.core.rollout import PairedLoss
    rng = np.random.default_rng(3)
    champ = rng.exponential(0.4, 3000)
    chal = champ + rng.normal(0.01, 0.2, 3000)
    pl = PairedLoss()
    for a, b in zip(champ, chal):
        pl.update(float(a), float(b))
    z, p = pl.test("worse")
    ref = sps.ttest_1samp(chal - champ, 0.0, alternative="greater")
    assert z == pytest.approx(ref.statistic, rel=1e-6) and p == pytest.approx(ref.pvalue, rel=1e-2)
    assert pl.test("better")[1] == pytest.approx(1 - p, abs=1e-6)


def test_judge_uses_the_paired_mean_where_the_median_misleads():
    """Negated weights: lower loss on most non-clicks (lower median), far higher on clicks (higher mean)."""
    from stream.core.rollout import PairedLoss
    rng = np.random.default_rng(0)
    champion, challenger, paired = VariantWindow(), VariantWindow(), PairedLoss()
    for _ in range(4000):
        y = int(rng.random() < 0.15)
        l_champ = -np.log(0.3) if y else -np.log(1 - 0.12)
        l_chal = -np.log(0.02) if y else -np.log(1 - 0.01)
        champion.update(y, float(l_champ))
        challenger.update(y, float(l_chal))
        paired.update(float(l_champ), float(l_chal))
    assert judge(champion, challenger, JudgeConfig()).decision == "promote_step"  # Mann-Whitney: "better"
    v = judge(champion, challenger, JudgeConfig(), paired)
    assert v.decision == "rollback" and "log loss" in v.reason and v.evidence["loss_test"] == "paired_z"


def test_a_worse_window_restarts_the_steps_clock():
    st = RolloutState(model="reco", champion=1)
    st.start_canary(2, now_ms=0, steps=[0.05, 0.5, 1.0])
    cfg = JudgeConfig(step_windows=2, step_examples=0, worse_windows=3)
    ok, bad = Verdict("promote_step", "fine"), Verdict("rollback", "worse")
    assert st.on_window(ok, 100, 1, cfg) == [] and st.on_window(bad, 100, 2, cfg) == []
    assert st.on_window(ok, 100, 3, cfg) == [] and st.share == 0.05  # only 1 good window since the worse one
    assert [t.name for t in st.on_window(ok, 100, 4, cfg)] == ["rollout.step"] and st.share == 0.5
