"""rollout: the controller next to the single learner (it sees every labelled example).

It owns the rollout state (in the registry, so it survives restarts; scorers follow it),
learns the challenger (and the previous champion, kept warm after a switch) from the same
feedback as the champion, judges each window, applies operator commands from control.v1
and drift alarms on the challenger's predictions, and publishes every transition as an
Alert on alerts.v1 and a log line.

Every command gets an answer on alerts.v1 carrying its ``command_id`` in the evidence:
the transitions it caused, ``rollout.applied`` when it changed nothing visible, or
``rollout.refused`` with the reason (also kept in the registry for ``stream model
status``). The CLI waits for that answer.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Callable

from stream.adapters.registry import ModelIntegrityError
from stream.config import RolloutSettings
from stream.core.drift_quantities import log_loss
from stream.core.learn import Learner
from stream.core.rollout import (JudgeConfig, PairedLoss, RolloutError, RolloutState, Transition, VariantWindow, judge,
                                 parse_steps)
from stream.errors import StreamError
from stream.log import event
from stream.monitor import StageStats

if TYPE_CHECKING:
    from stream.stages.learn import LearnLoop

log = logging.getLogger("stream.rollout")
#: ControlCommand actions the controller applies (the others are the learner's or drift's)
ACTIONS = ("SHADOW", "CANARY", "SET_CANARY", "PROMOTE", "SWITCH", "ROLLBACK", "STOP_SHADOW")


def judge_config(s: RolloutSettings) -> JudgeConfig:
    return JudgeConfig(min_examples=s.min_examples, alpha=s.alpha, ctr_margin=s.ctr_margin,
                       loss_margin=s.loss_margin, worse_windows=s.worse_windows, step_windows=s.step_windows,
                       step_examples=s.step_examples)


class RolloutController:
    """Runs inside the :class:`~stream.stages.learn.LearnLoop` (``loop``), whose learner is the champion."""

    def __init__(self, loop: "LearnLoop", settings: RolloutSettings, clock: Callable[[], float] = time.time) -> None:
        self.loop = loop
        self.registry, self.serde, self.out, self.name = loop.registry, loop.serde, loop.out, loop.name
        self.settings, self.cfg, self.clock = settings, judge_config(settings), clock
        self.stats = StageStats("rollout")
        self.state: RolloutState | None = None
        self.learners: dict[str, Learner] = {}  # "challenger", "blue" (the champion is the loop's)
        self._answering: str | None = None  # the command_id whose transitions are being published
        self._reset_windows()

    def _reset_windows(self) -> None:
        self.served = {"champion": VariantWindow(), "challenger": VariantWindow()}
        self.paired = {"champion": VariantWindow(), "challenger": VariantWindow()}
        self.diff = PairedLoss()
        self.window_started = self.collecting_since = self.clock()

    # -- start and persistence -----------------------------------------------------------------
    def start(self, champion_version: int) -> None:
        raw = self.registry.rollout(self.name)
        self.state = RolloutState.from_dict(raw) if raw else RolloutState(
            self.name, champion_version, steps=parse_steps(self.settings.steps), automation=self.settings.automation)
        self.state.automation = self.settings.automation
        self.state.champion = champion_version  # the champion's newest release, whatever was saved
        if self.state.challenger is not None and self.state.mode != "idle":
            self.learners["challenger"] = self._load(self.registry.pointer(self.name, "challenger")
                                                     or self.registry.release_record(self.name, self.state.challenger))
        if self.state.blue is not None:
            try:
                self.learners["blue"] = self._load(self.registry.release_record(self.name, self.state.blue))
            except StreamError:
                self.state.blue = None
        self.save()
        event(log, "rollout_resumed", model=self.name, mode=self.state.mode, champion=self.state.champion,
              challenger=self.state.challenger, share=self.state.share, automation=self.state.automation)

    def _load(self, release: dict | None) -> Learner:
        if release is None:
            raise RolloutError(f"model {self.name}: no such version in the registry")
        return self.loop.new_learner(self.registry.load(release), release["version"])

    def save(self) -> None:
        self.registry.save_rollout(self.name, self.state.to_dict())
        g = self.stats.gauges
        g["rollout_share"] = self.state.share
        g["rollout_mode"] = {"idle": 0.0, "shadow": 1.0, "canary": 2.0}[self.state.mode]
        if self.state.mode == "idle":  # no comparison running: no stale window figures
            for key in [k for k in g if k.startswith("rollout_window_")]:
                del g[key]

    # -- every labelled example ----------------------------------------------------------------
    def observe(self, fb: dict, p_champion: float, k: int) -> None:
        """Both models are scored on every example (paired losses); CTR is counted by who served it."""
        y = fb["label"]
        losses = {"champion": log_loss(p_champion, y)}
        self.paired["champion"].update(y, losses["champion"])
        ch = self.learners.get("challenger")
        if ch is not None:
            p = ch.learn(fb["features"], y, fb["rec_id"], "challenger", k, source=fb["variant"])
            losses["challenger"] = log_loss(p, y)
            self.paired["challenger"].update(y, losses["challenger"])
            self.diff.update(losses["champion"], losses["challenger"])
        blue = self.learners.get("blue")
        if blue is not None:  # the previous champion stays warm for an instant switch back
            blue.learn(fb["features"], y, fb["rec_id"], "blue", k, source=fb["variant"])
        if fb["variant"] == "organic":
            return  # nobody served it: it counts in the paired comparison only
        served = fb["variant"] if fb["variant"] in self.served else "champion"
        self.served[served].update(y, losses.get(served, losses["champion"]))

    def maybe_judge(self) -> list[Transition]:
        if self.clock() - self.window_started < self.settings.window_s:
            return []
        st = self.state
        transitions: list[Transition] = []
        if st.mode in ("shadow", "canary") and "challenger" in self.learners:
            # shadow: nothing served by the challenger, compare on the same examples
            windows = self.paired if st.mode == "shadow" else self.served
            verdict = judge(windows["champion"], windows["challenger"], self.cfg, self.diff)
            now_ms = int(self.clock() * 1000)
            if min(windows["champion"].served, windows["challenger"].served) < self.cfg.min_examples:
                # too few examples to judge: the window goes on collecting rather than starting
                # again empty (a 5% canary on a quiet stream never reached min_examples in one
                # window and stayed at 5% for ever); it is not a judged window of the step
                st.last_decision = {**verdict.to_dict(), "at": now_ms}
                event(log, "rollout_window", model=self.name, mode=st.mode, share=st.share,
                      decision=verdict.decision, reason=verdict.reason, collecting_s=round(
                          self.clock() - self.collecting_since, 1))
                self.window_started = self.clock()
                self.stats.add_output("verdicts_hold")
                self.save()
                return []
            transitions = self.apply(st.on_window(verdict, self.served["challenger"].served, now_ms, self.cfg))
            self.stats.add_output(f"verdicts_{verdict.decision}")
            g = self.stats.gauges  # the judged window, per variant (what the verdict saw)
            for variant, w in windows.items():
                g[f"rollout_window_ctr|variant={variant}"] = w.ctr
                g[f"rollout_window_log_loss|variant={variant}"] = w.mean_loss
                g[f"rollout_window_examples|variant={variant}"] = float(w.served)
            event(log, "rollout_window", model=self.name, mode=st.mode, share=st.share, decision=verdict.decision,
                  reason=verdict.reason)
            self.save()
        self._reset_windows()
        return transitions

    # -- commands and alarms -------------------------------------------------------------------
    def command(self, cmd: dict) -> list[Transition]:
        """Apply one ControlCommand once (commands at or before the last applied one are skipped,
        so a restart that re-reads control.v1 does not apply them twice); a command the state
        refuses becomes a ``rollout.refused`` alert."""
        action, now = cmd["action"], int(self.clock() * 1000)
        if action not in ACTIONS or cmd["model_name"] != self.name:
            return []
        applied = self.registry.meta(self.name, "rollout_applied_at")
        if applied is not None and cmd["issued_at"] <= int(applied):
            return []
        self.stats.count("in")
        self._answering = cmd["command_id"]
        try:
            return self._command(cmd, action, now)
        finally:
            self._answering = None

    def _command(self, cmd: dict, action: str, now: int) -> list[Transition]:
        st = self.state
        try:
            if action == "SHADOW":
                learner = self._load(self.registry.release_record(self.name, cmd["version"] or -1))
                ts = st.start_shadow(learner.version, now)
                self.learners["challenger"] = learner
            elif action == "CANARY":
                steps = parse_steps(cmd["args"].get("steps") or self.settings.steps)
                learner = None
                if cmd["version"] is not None and cmd["version"] != st.challenger:
                    learner = self._load(self.registry.release_record(self.name, cmd["version"]))
                ts = st.start_canary(cmd["version"], now, steps)
                if learner is not None:
                    self.learners["challenger"] = learner
            elif action == "SET_CANARY":
                ts = st.advance(now, reason=f"operator {cmd['issued_by']}")
            elif action == "PROMOTE":
                ts = st.promote(now, reason=f"operator {cmd['issued_by']}")
            elif action == "SWITCH":
                ts = st.switch(now)
            elif action in ("ROLLBACK", "STOP_SHADOW"):
                ts = st.rollback(now, reason=cmd["args"].get("reason") or f"operator {cmd['issued_by']}")
            else:  # pragma: no cover - ACTIONS is checked above
                return []
        except (RolloutError, ModelIntegrityError) as exc:
            refusal = Transition("rollout.refused", "WARNING", f"{action.lower()} refused: {exc}",
                                 {"command_id": cmd["command_id"], "issued_by": cmd["issued_by"]})
            self.publish([refusal])
            self.registry.set_meta(self.name, "rollout_last_refusal", json.dumps(
                {"at": now, "action": action.lower(), "message": refusal.message, "issued_by": cmd["issued_by"],
                 "command_id": cmd["command_id"]}))
            ts = [refusal]
        else:
            ts = self.apply(ts)
            if not ts:  # an answer all the same: the CLI waits for one
                self.publish([Transition("rollout.applied", "INFO", f"{action.lower()} applied (no change of state)",
                                         {"issued_by": cmd["issued_by"]})])
            self.save()
        # marked once done: a worker that dies half-way applies the command again after its restart
        self.registry.set_meta(self.name, "rollout_applied_at", cmd["issued_at"])
        return ts

    def drift_alarm(self, alert: dict) -> list[Transition]:
        """A drift alarm on the challenger's predictions: roll back (auto) or recommend it (manual)."""
        ts = self.apply(self.state.drift_alarm("challenger", {"alert": alert["name"], **alert["evidence"]},
                                               int(self.clock() * 1000)))
        if ts:
            self.save()
        return ts

    # -- transitions: move learners and pointers, then publish -----------------------------------
    def apply(self, transitions: list[Transition]) -> list[Transition]:
        for t in transitions:
            if t.name in ("rollout.shadow_started", "rollout.canary_started"):
                # the challenger's newest snapshot (a canary after a shadow has learned since)
                self.registry.set_pointer(self.name, "challenger", self.learners["challenger"].version)
                self._reset_windows()
            elif t.name in ("rollout.promoted", "rollout.switched", "rollout.rolled_back"):
                self._take_over(t)
            elif t.name == "rollout.step":
                self._reset_windows()
        self.publish(transitions)
        return transitions

    def _take_over(self, t: Transition) -> None:
        """Make the learners match the state: the champion is st.champion, blue is st.blue."""
        st, loop = self.state, self.loop
        current = loop.learner
        if t.name == "rollout.rolled_back" and "challenger" in self.learners:
            self.learners.pop("challenger")  # the challenger is dropped; the champion goes on
        else:  # promoted / switched to the challenger, or switched / rolled back to blue
            incoming = self.learners.pop("challenger" if "challenger" in self.learners else "blue", None)
            if incoming is not None:
                self.learners["blue"] = current
                loop.learner = incoming
                rec = loop.release(parent=incoming.version)
                st.champion, st.blue = rec["version"], current.version
            if t.name == "rollout.rolled_back":  # switched back to blue: nothing to keep warm
                self.learners.pop("blue", None)
                st.blue = None
        self.registry.set_pointer(self.name, "challenger", None)
        self._reset_windows()

    def publish(self, transitions: list[Transition]) -> None:
        for t in transitions:
            alert = {"alert_id": uuid.uuid4().hex, "name": t.name, "severity": t.severity, "stage": "rollout",
                     "message": t.message, "created": int(self.clock() * 1000), "model_name": self.name,
                     "evidence": {**t.evidence, **({"command_id": self._answering} if self._answering else {}),
                                  "automation": self.state.automation, "mode": self.state.mode,
                                  "share": str(self.state.share), "champion": str(self.state.champion),
                                  "challenger": str(self.state.challenger)}}
            self.out.produce("alerts.v1", self.serde.encode("Alert", alert), key=t.name.encode())
            self.stats.add_output("transitions")
            event(log, "rollout_transition", logging.WARNING if t.severity != "INFO" else logging.INFO,
                  transition=t.name, model=self.name, message=t.message, automation=self.state.automation)
