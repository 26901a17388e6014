"""profile handler: fold events into the user's profile, skipping replays."""

from __future__ import annotations

import time
from typing import Callable

from stream.core import profile as core
from stream.core.profile import Position
from stream.monitor import StageStats
from stream.runner import RawMessage
from stream.users import UserStates


class ProfileStage:
    def __init__(self, cfg: core.ProfileConfig, users: UserStates, clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.users, self.clock = cfg, users, clock
        self.stats = StageStats("profile")

    def handle(self, ev: dict, pos: Position, msg: RawMessage) -> dict | None:
        stats = self.stats
        stats.count("in")
        user = ev["user_id"]
        st = self.users.get(user, pos.partition)
        if core.is_replay(st.profile, pos):
            stats.count("replay")
            return None
        st.profile = core.fold(st.profile, ev, pos, self.cfg)
        st.partition = pos.partition
        self.users.changed(user)
        stats.count("out")
        stats.event_lag(max(0.0, self.clock() - ev["timestamp"] / 1000))
        return ev  # on to feedback and score, when they run
