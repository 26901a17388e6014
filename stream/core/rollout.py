"""rollout: traffic split, the tests that judge a challenger, and the rollout state machine.

Users are split by a keyed hash, so a user keeps a variant for the whole canary; :func:`judge`
compares one window (CTR: two-proportion z-test; log loss: Mann-Whitney U); :class:`RolloutState`
turns verdicts and commands into :class:`Transition` records or raises :class:`RolloutError`.

>>> st = RolloutState(model="reco", champion=7)
>>> [t.message for t in st.start_canary(8, now_ms=1, steps=[0.1, 0.5, 1.0])]
['canary v8 of reco started at 10% (steps 10%, 50%, 100%; champion v7)']
>>> ok, cfg = Verdict("promote_step", "challenger not worse"), JudgeConfig(step_windows=1, step_examples=500)
>>> [t.message for t in st.on_window(ok, 600, now_ms=2, cfg=cfg)]
['canary v8 of reco: 10% -> 50% (automatic, 600 examples, 1 window)']
>>> bad = Verdict("rollback", "challenger worse: ctr 0.100 vs 0.150")
>>> [[t.name for t in st.on_window(bad, 900, now_ms=t, cfg=cfg)] for t in (3, 4)], st.mode, st.champion
([[], ['rollout.rolled_back']], 'idle', 7)
"""

from __future__ import annotations

import copy
import hashlib
import random
from dataclasses import asdict, dataclass, field, fields


from stream.core.ab_stats import PairedLoss, mann_whitney, two_proportion_test  # noqa: F401 - re-exported

MODES = ("idle", "shadow", "canary")
AUTOMATIONS = ("auto", "manual")
DECISIONS = ("promote_step", "hold", "rollback")
DEFAULT_STEPS = (0.05, 0.10, 0.25, 0.50, 1.0)


class RolloutError(ValueError):
    """A rollout command that is not valid in the current state (one-line message)."""


class _Record:
    """``to_dict`` / ``from_dict`` (JSON-ready; unknown keys ignored, missing ones defaulted) for dataclasses."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**{f.name: copy.deepcopy(d[f.name]) for f in fields(cls) if f.name in d})


def bucket(user_id: str, salt: str) -> float:
    """A user's stable position in [0, 1): BLAKE2b keyed with ``salt``, first 8 bytes / 2**64
    (truncated to 53 bits so it never rounds up to 1.0; salts over 64 bytes are hashed first).

    >>> bucket("u1", "reco:8") == bucket("u1", "reco:8"), 0.0 <= bucket("u1", "reco:8") < 1.0
    (True, True)
    """
    key = salt.encode() if len(salt.encode()) <= 64 else hashlib.blake2b(salt.encode()).digest()
    head = int.from_bytes(hashlib.blake2b(user_id.encode(), key=key).digest()[:8], "big")
    return (head >> 11) / 2**53


def serves_challenger(user_id: str, share: float, salt: str) -> bool:
    """True if the user is in the challenger's ``share``; monotone: True at s stays True at s' > s."""
    return bucket(user_id, salt) < share


@dataclass
class VariantWindow(_Record):
    """One variant's labelled examples in one window; log losses kept in a bounded reservoir.

    ``mean_loss`` is exact; ``losses`` a uniform reservoir sample (generator seeded from ``(seed, served)``).

    >>> w = VariantWindow(max_losses=3)
    >>> for y, loss in [(1, 0.2), (0, 0.4), (0, 0.1), (1, 0.3), (0, 0.5)]: w.update(y, loss)
    >>> w.served, w.clicks, len(w.losses), w.ctr, round(w.mean_loss, 2)
    (5, 2, 3, 0.4, 0.3)
    >>> VariantWindow.from_dict(w.to_dict()) == w
    True
    """
    max_losses: int = 5000
    seed: int = 0
    served: int = 0
    clicks: int = 0
    loss_sum: float = 0.0
    losses: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"{self.seed}:{self.served}")

    def update(self, label: int, loss: float) -> None:
        self.served += 1
        self.clicks += 1 if label else 0
        self.loss_sum += loss
        if len(self.losses) < self.max_losses:
            self.losses.append(loss)
        elif (j := self._rng.randrange(self.served)) < self.max_losses:
            self.losses[j] = loss

    @property
    def ctr(self) -> float:
        return self.clicks / self.served if self.served else 0.0

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.served if self.served else 0.0


@dataclass
class JudgeConfig:
    """Thresholds of :func:`judge` and of the step / rollback rules of :class:`RolloutState`."""
    min_examples: int = 300      # per variant per window
    alpha: float = 0.05
    ctr_margin: float = 0.0      # CTR drop that counts as worse
    loss_margin: float = 0.0     # log-loss shift (location, Mann-Whitney) that counts as worse
    worse_windows: int = 2       # consecutive worse windows before a rollback
    step_windows: int = 2        # windows held at a step before advancing
    step_examples: int = 1000    # challenger examples held at a step before advancing


@dataclass
class Verdict(_Record):
    """One window's judgement: ``decision`` in promote_step / hold / rollback."""
    decision: str
    reason: str
    evidence: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, not {self.decision!r}")


def judge(champion: VariantWindow, challenger: VariantWindow, cfg: JudgeConfig | None = None,
          paired: PairedLoss | None = None) -> Verdict:
    """Compare one window: hold on too few samples, rollback if worse on CTR or loss, else promote_step.

    CTR compares what each variant served. Loss: with ``paired`` (both models scored on the
    same examples, the learner's progressive validation), a paired z-test of the mean loss
    difference; without it, Mann-Whitney on the two windows' losses. Per-example loss
    depends on the click rate of the traffic it is measured on and is bimodal (clicks cost
    much more), so the paired mean is the sound comparison: measured on the stream, a model
    with negated weights had a lower loss *median* (Mann-Whitney said "better") and a higher mean.
    """
    cfg = cfg or JudgeConfig()
    ev = {"champion_n": str(champion.served), "challenger_n": str(challenger.served),
          "champion_ctr": f"{champion.ctr:.4f}", "challenger_ctr": f"{challenger.ctr:.4f}",
          "champion_loss": f"{champion.mean_loss:.4f}", "challenger_loss": f"{challenger.mean_loss:.4f}"}
    if min(champion.served, challenger.served) < cfg.min_examples:
        return Verdict("hold", f"too few samples: champion {champion.served}, challenger "
                               f"{challenger.served}, need {cfg.min_examples} each", ev)
    counts = (champion.clicks, champion.served, challenger.clicks, challenger.served, cfg.ctr_margin)
    z, ctr_worse = two_proportion_test(*counts, alternative="worse")
    ctr_better = two_proportion_test(*counts, alternative="better")[1]
    if paired is not None:
        u, loss_worse = paired.test("worse", cfg.loss_margin)
        loss_better = paired.test("better", cfg.loss_margin)[1]
        loss = f"log loss {paired.mean:+.4f} per example on the same {paired.n} examples"
        ev.update(loss_test="paired_z", loss_diff_mean=f"{paired.mean:.5f}", paired_n=str(paired.n))
    else:
        u, loss_worse = mann_whitney(champion.losses, challenger.losses, "worse", cfg.loss_margin)
        loss_better = mann_whitney(champion.losses, challenger.losses, "better", cfg.loss_margin)[1]
        loss = f"log loss {challenger.mean_loss:.3f} vs {champion.mean_loss:.3f}"
        ev.update(loss_test="mann_whitney")
    ev.update(ctr_z=f"{z:.3f}", ctr_p_worse=f"{ctr_worse:.3g}", ctr_p_better=f"{ctr_better:.3g}",
              loss_stat=f"{u:.3f}", loss_p_worse=f"{loss_worse:.3g}", loss_p_better=f"{loss_better:.3g}")
    ctr = f"ctr {challenger.ctr:.3f} vs {champion.ctr:.3f}"
    worse = [f"{text} (p={p:.2g})" for text, p in ((ctr, ctr_worse), (loss, loss_worse)) if p < cfg.alpha]
    if worse:
        return Verdict("rollback", "challenger worse: " + "; ".join(worse), ev)
    better = [name for name, p in (("ctr", ctr_better), ("log loss", loss_better)) if p < cfg.alpha]
    label = f"challenger better on {' and '.join(better)}" if better else "challenger not worse"
    return Verdict("promote_step", f"{label}: {ctr}, {loss}", ev)


@dataclass
class Transition(_Record):
    """A change of rollout state, for the monitor stream and the alerts."""
    name: str
    severity: str  # INFO, WARNING, CRITICAL
    message: str
    evidence: dict[str, str] = field(default_factory=dict)


def _pct(share: float) -> str:
    return f"{share * 100:g}%"


def parse_steps(raw: tuple[str, ...] | str) -> list[float]:
    """Traffic shares from ``"0.05,0.25,1.0"`` (or a tuple of strings); checked by :func:`check_steps`."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    try:
        steps = [float(x) for x in items if str(x).strip()]
    except ValueError:
        raise RolloutError(f"steps must be numbers like 0.05,0.25,1.0, not {raw!r}") from None
    check_steps(steps)
    return steps


def check_steps(steps: list[float]) -> None:
    if not steps or any(not 0 < s <= 1 for s in steps) or any(a >= b for a, b in zip(steps, steps[1:])):
        raise RolloutError(f"steps must be a non-empty increasing list within (0, 1], not {steps!r}")


@dataclass
class RolloutState(_Record):
    """Rollout of one model: who serves what, and the counters of the current canary step.

    ``revision`` grows with every change (each transition and each recorded window). In
    ``manual`` automation the machine only recommends: it sets ``pending`` and emits one
    ``rollout.recommendation``; an operator command (``advance``, ``promote``, ``rollback``, ...) clears it.
    """
    model: str
    champion: int
    challenger: int | None = None
    mode: str = "idle"
    share: float = 0.0
    steps: list[float] = field(default_factory=lambda: list(DEFAULT_STEPS))
    step: int = 0
    windows_in_step: int = 0
    examples_in_step: int = 0
    worse_streak: int = 0
    automation: str = "auto"
    pending: str | None = None
    last_decision: dict | None = None
    blue: int | None = None
    revision: int = 0
    updated_at: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES or self.automation not in AUTOMATIONS:
            raise RolloutError(f"invalid mode {self.mode!r} or automation {self.automation!r}")
        check_steps(self.steps)

    def _describe(self) -> str:
        if self.mode == "canary":
            return f"canary v{self.challenger} of {self.model} at {_pct(self.share)}"
        return f"{self.mode} v{self.challenger} of {self.model}" if self.challenger is not None else f"{self.model} (idle)"

    def _emit(self, name: str, severity: str, message: str, evidence: dict | None, now_ms: int) -> list[Transition]:
        self.revision += 1
        self.updated_at = now_ms
        return [Transition(name, severity, message, {k: str(v) for k, v in (evidence or {}).items()})]

    def _enter(self, challenger: int | None, mode: str, share: float) -> None:
        self.challenger, self.mode, self.share, self.step, self.pending = challenger, mode, share, 0, None
        self.windows_in_step = self.examples_in_step = self.worse_streak = 0

    def _take_over(self) -> tuple[int, int]:
        old, new = self.champion, self.challenger
        self.champion, self.blue = new, old
        self._enter(None, "idle", 0.0)
        return old, new

    def _check_new(self, version: int, what: str) -> None:
        if self.mode == "canary" or (self.mode == "shadow" and what == "shadow"):
            raise RolloutError(f"{self.model}: cannot start {what} of v{version}: {self._describe()} is running")
        if version == self.champion:
            raise RolloutError(f"{self.model}: v{version} is already the champion")

    def start_shadow(self, version: int, now_ms: int) -> list[Transition]:
        self._check_new(version, "shadow")
        self._enter(version, "shadow", 0.0)
        return self._emit("rollout.shadow_started", "INFO", f"shadow v{version} of {self.model} started "
                          f"next to champion v{self.champion} (no traffic)", {"version": version}, now_ms)

    def start_canary(self, version: int | None, now_ms: int, steps: list[float] | None = None) -> list[Transition]:
        """Canary of ``version``, or of the shadow challenger when ``version`` is None."""
        if version is None and self.mode != "shadow":
            raise RolloutError(f"{self.model}: no version given and no shadow challenger to promote to canary")
        version = self.challenger if version is None else version
        self._check_new(version, "canary")
        if self.mode == "shadow" and version != self.challenger:
            raise RolloutError(f"{self.model}: {self._describe()} is running; roll it back before a canary of v{version}")
        if steps is not None:
            check_steps(list(steps))
            self.steps = [float(s) for s in steps]
        self._enter(version, "canary", self.steps[0])
        return self._emit("rollout.canary_started", "INFO", f"canary v{version} of {self.model} started at "
                          f"{_pct(self.share)} (steps {', '.join(map(_pct, self.steps))}; champion v{self.champion})",
                          {"version": version, "steps": self.steps}, now_ms)

    def advance(self, now_ms: int, reason: str = "operator", evidence: dict | None = None) -> list[Transition]:
        """Move the canary to its next step (past the last one: promote)."""
        if self.mode != "canary":
            raise RolloutError(f"{self.model}: no canary to advance ({self._describe()})")
        detail = (f"{reason}, {self.examples_in_step:,} examples, {self.windows_in_step} "
                  f"window{'s' if self.windows_in_step != 1 else ''}")
        if self.step + 1 >= len(self.steps):
            return self.promote(now_ms, detail, evidence)
        old, version, step = self.share, self.challenger, self.step + 1
        self._enter(version, "canary", self.steps[step])
        self.step = step
        return self._emit("rollout.step", "INFO", f"canary v{version} of {self.model}: {_pct(old)} -> "
                          f"{_pct(self.share)} ({detail})", evidence, now_ms)

    def promote(self, now_ms: int, reason: str = "operator", evidence: dict | None = None) -> list[Transition]:
        """The challenger becomes champion; the old champion is kept warm as ``blue``."""
        if self.challenger is None:
            raise RolloutError(f"{self.model}: nothing to promote: no challenger (champion v{self.champion})")
        old, new = self._take_over()
        return self._emit("rollout.promoted", "INFO", f"v{new} of {self.model} promoted to champion ({reason}); "
                          f"v{old} kept warm as blue", evidence, now_ms)

    def switch(self, now_ms: int) -> list[Transition]:
        """Blue-green: all traffic to the challenger at once, or with none, back to ``blue``."""
        if self.challenger is not None:
            (old, new), severity = self._take_over(), "INFO"
        elif self.blue is not None:
            (old, new), severity = (self.champion, self.blue), "WARNING"
            self.champion, self.blue, self.pending = new, old, None
        else:
            raise RolloutError(f"{self.model}: nothing to switch to: no challenger and no previous champion kept warm")
        return self._emit("rollout.switched", severity, f"blue-green switch on {self.model}: all traffic "
                          f"v{old} -> v{new} (v{old} kept warm)", {"from": old, "to": new}, now_ms)

    def rollback(self, now_ms: int, reason: str = "operator", evidence: dict | None = None) -> list[Transition]:
        """Drop the challenger; with none, go back to the champion kept warm (``blue``, then cleared)."""
        if self.challenger is not None:
            what = self._describe()
            self._enter(None, "idle", 0.0)
            message = f"{what} rolled back, all traffic to champion v{self.champion} ({reason})"
        elif self.blue is not None:
            bad, self.champion, self.blue, self.pending = self.champion, self.blue, None, None
            message = f"{self.model} rolled back from v{bad} to previous champion v{self.champion} ({reason})"
        else:
            raise RolloutError(f"{self.model}: nothing to roll back: no challenger and no previous champion kept warm")
        return self._emit("rollout.rolled_back", "WARNING", message, evidence, now_ms)

    def _act(self, action: str, why: str, evidence: dict | None, now_ms: int) -> list[Transition]:
        evidence = evidence or {}
        if self.automation == "manual":
            if self.pending == action:
                return []
            self.pending = action
            what = {"rollback": "rollback", "promote": "promotion",
                    "step": f"step to {_pct(self.steps[min(self.step + 1, len(self.steps) - 1)])}"}[action]
            return self._emit("rollout.recommendation", "INFO", f"{self._describe()}: {what} recommended "
                              f"({why}); waiting for an operator", {**evidence, "action": action}, now_ms)
        if action == "rollback":
            return self.rollback(now_ms, f"automatic: {why}", evidence)
        return self.advance(now_ms, why, evidence)

    def on_window(self, verdict: Verdict, challenger_examples: int, now_ms: int,
                  cfg: JudgeConfig | None = None) -> list[Transition]:
        """Count one judged window; roll back, step or promote when the rules say so."""
        cfg = cfg or JudgeConfig()
        if self.mode == "idle":
            return []
        self.last_decision = {**verdict.to_dict(), "at": now_ms}
        self.revision, self.updated_at = self.revision + 1, now_ms
        if self.mode == "shadow":
            return []
        self.windows_in_step += 1
        self.examples_in_step += challenger_examples
        self.worse_streak = self.worse_streak + 1 if verdict.decision == "rollback" else 0
        if verdict.decision == "rollback":  # a step is only passed by windows in a row that are not worse
            self.windows_in_step = self.examples_in_step = 0
        if self.worse_streak >= cfg.worse_windows:
            return self._act("rollback", f"{verdict.reason}, {self.worse_streak} windows in a row",
                             verdict.evidence, now_ms)
        if (verdict.decision == "promote_step" and self.windows_in_step >= cfg.step_windows
                and self.examples_in_step >= cfg.step_examples):
            ev = verdict.evidence
            why = (f"challenger ctr {float(ev['challenger_ctr']):.3f} vs {float(ev['champion_ctr']):.3f}"
                   if "challenger_ctr" in ev and "champion_ctr" in ev else "automatic")
            return self._act("promote" if self.step + 1 >= len(self.steps) else "step", why, ev, now_ms)
        return []

    def drift_alarm(self, variant: str, evidence: dict, now_ms: int) -> list[Transition]:
        """A drift alarm on the canary challenger's predictions: roll back at once (or recommend it)."""
        if self.mode != "canary" or variant != "challenger":
            return []
        return self._act("rollback", "drift alarm on the challenger's predictions", evidence, now_ms)

    def variant_for(self, user_id: str, salt: str) -> str:
        """"challenger" in the canary share, else "champion"; keep ``salt`` fixed per canary (e.g. "reco:8")."""
        in_canary = self.mode == "canary" and self.challenger is not None
        return "challenger" if in_canary and serves_challenger(user_id, self.share, salt) else "champion"

    def version_for(self, user_id: str, salt: str) -> int:
        return self.challenger if self.variant_for(user_id, salt) == "challenger" else self.champion
